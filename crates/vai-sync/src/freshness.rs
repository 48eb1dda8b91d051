//! How fresh a cached type's data is: one rule, used by every place that reports it (the
//! server's headers, `/vai/v1/status`, the metrics, the progress display).
//!
//! Upstream unreachable makes every type stale since upstream stopped answering; otherwise a
//! type is what its loop last said (stale with its error, syncing, or live). This module only
//! decides; it never reads the store or talks to upstream.

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
    /// taken as live).
    pub fn of(health: &UpstreamHealth, status: Option<&ResourceStatus>) -> Freshness {
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
        }
    }

    #[test]
    fn upstream_down_makes_every_type_stale_since_it_went_down() {
        let down = UpstreamHealth {
            reachable: false,
            since_ms: 10,
            last_ok_ms: Some(5),
            error: Some("connection refused".into()),
        };
        let live = status(SyncState::Live, None);
        let f = Freshness::of(&down, Some(&live));
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
        assert_eq!(Freshness::of(&up, Some(&live)), Freshness::Live);
        assert_eq!(Freshness::of(&up, None), Freshness::Live);
        let syncing = status(SyncState::Syncing, None);
        assert_eq!(Freshness::of(&up, Some(&syncing)).as_str(), "syncing");
        let stale = status(SyncState::Stale, Some("watch failed"));
        assert_eq!(
            Freshness::of(&up, Some(&stale)),
            Freshness::Stale {
                since_ms: 20,
                cause: "watch failed".into()
            }
        );
    }
}
