//! How fresh a cached type's data is: one rule, used by every place that reports it (the
//! server's headers, `/vai/v1/status`, the metrics, the progress display).
//!
//! Upstream unreachable makes every type stale since upstream stopped answering; otherwise a
//! type is what its loop last said (stale with its error, syncing, or live), and a live type
//! whose store is behind its watch by more than a bound (`SyncConfig::max_lag`) is stale since
//! the oldest event it has not stored came. This module only decides; it never reads the
//! store or talks to upstream.

use std::time::Duration;

use vai_store::SyncState;

use crate::{ResourceStatus, UpstreamHealth};

/// The freshness of one cached type's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Its watch is healthy.
    Live,
    /// Its list (or catch-up) is in progress.
    Syncing,
    /// Possibly stale: last-good data.
    Stale {
        /// Since when (ms since the Unix epoch).
        since_ms: i64,
        /// Why, for people.
        cause: String,
    },
}

impl Freshness {
    /// Decides from upstream's health and the type's live status (`None`: not known to sync,
    /// taken as live) at `now_ms`, a store behind its watch by more than `max_lag` being stale.
    pub fn of(
        health: &UpstreamHealth,
        status: Option<&ResourceStatus>,
        now_ms: i64,
        max_lag: Duration,
    ) -> Freshness {
        if !health.reachable {
            return Freshness::Stale {
                since_ms: health.since_ms,
                cause: format!(
                    "upstream unreachable ({})",
                    health.error.as_deref().unwrap_or("no answer")
                ),
            };
        }
        match status {
            Some(s) if s.state == SyncState::Stale => Freshness::Stale {
                since_ms: s.since_ms,
                cause: s.error.clone().unwrap_or_else(|| "watch unhealthy".into()),
            },
            Some(s) if s.state == SyncState::Syncing => Freshness::Syncing,
            Some(ResourceStatus {
                behind: Some(behind),
                ..
            }) if now_ms - behind.since_ms > max_lag.as_millis() as i64 => Freshness::Stale {
                since_ms: behind.since_ms,
                cause: format!(
                    "vai is {:.1} s behind upstream ({} events received, not stored yet)",
                    (now_ms - behind.since_ms) as f64 / 1000.0,
                    behind.events
                ),
            },
            _ => Freshness::Live,
        }
    }

    /// `live`, `syncing` or `stale`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Freshness::Live => "live",
            Freshness::Syncing => "syncing",
            Freshness::Stale { .. } => "stale",
        }
    }

    /// Since when the data may be stale, if it may.
    pub fn stale_since_ms(&self) -> Option<i64> {
        match self {
            Freshness::Stale { since_ms, .. } => Some(*since_ms),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: SyncState, error: Option<&str>) -> ResourceStatus {
        ResourceStatus {
            state,
            since_ms: 20,
            error: error.map(String::from),
            loaded: 0,
            synced: true,
            behind: None,
            last_read_ms: None,
        }
    }

    const LAG: Duration = Duration::from_secs(2);

    #[test]
    fn upstream_down_makes_every_type_stale_since_it_went_down() {
        let down = UpstreamHealth {
            reachable: false,
            since_ms: 10,
            last_ok_ms: Some(5),
            error: Some("connection refused".into()),
        };
        let live = status(SyncState::Live, None);
        let f = Freshness::of(&down, Some(&live), 30, LAG);
        assert_eq!(f.stale_since_ms(), Some(10));
        assert_eq!(
            f,
            Freshness::Stale {
                since_ms: 10,
                cause: "upstream unreachable (connection refused)".into()
            }
        );
        let up = UpstreamHealth {
            reachable: true,
            ..down
        };
        assert_eq!(Freshness::of(&up, Some(&live), 30, LAG), Freshness::Live);
        assert_eq!(Freshness::of(&up, None, 30, LAG), Freshness::Live);
        let syncing = status(SyncState::Syncing, None);
        assert_eq!(
            Freshness::of(&up, Some(&syncing), 30, LAG).as_str(),
            "syncing"
        );
        let stale = status(SyncState::Stale, Some("watch failed"));
        assert_eq!(
            Freshness::of(&up, Some(&stale), 30, LAG),
            Freshness::Stale {
                since_ms: 20,
                cause: "watch failed".into()
            }
        );
    }

    #[test]
    fn a_live_type_behind_its_watch_past_the_bound_is_stale_since_the_oldest_event_waiting() {
        let up = UpstreamHealth {
            reachable: true,
            since_ms: 0,
            last_ok_ms: Some(0),
            error: None,
        };
        let behind = ResourceStatus {
            behind: Some(crate::Behind {
                since_ms: 1_000,
                events: 700,
                versions: 900,
            }),
            ..status(SyncState::Live, None)
        };
        // Within the bound (and at it): live.
        assert_eq!(
            Freshness::of(&up, Some(&behind), 2_500, LAG),
            Freshness::Live
        );
        assert_eq!(
            Freshness::of(&up, Some(&behind), 3_000, LAG),
            Freshness::Live
        );
        assert_eq!(
            Freshness::of(&up, Some(&behind), 4_500, LAG),
            Freshness::Stale {
                since_ms: 1_000,
                cause: "vai is 3.5 s behind upstream (700 events received, not stored yet)".into()
            }
        );
        // A list in progress stays syncing, and upstream down says so first.
        let syncing = ResourceStatus {
            state: SyncState::Syncing,
            ..behind.clone()
        };
        assert_eq!(
            Freshness::of(&up, Some(&syncing), 9_000, LAG),
            Freshness::Syncing
        );
        let down = UpstreamHealth {
            reachable: false,
            since_ms: 4_000,
            ..up
        };
        assert_eq!(
            Freshness::of(&down, Some(&behind), 9_000, LAG).stale_since_ms(),
            Some(4_000)
        );
    }
}
