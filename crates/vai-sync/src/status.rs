//! The live sync status of every cached type, in memory, for the server's freshness headers,
//! `/vai/v1/status`, readiness and the progress display. The store keeps the durable copy
//! (what `vai status` reads); this board is what a request consults, with no I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;

use vai_store::SyncState;

use crate::now_ms;

/// The live status of one cached type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceStatus {
    /// Syncing, live or stale.
    pub state: SyncState,
    /// When it entered that state (ms since the Unix epoch).
    pub since_ms: i64,
    /// Why it is not live, if it is not.
    pub error: Option<String>,
    /// Objects received by the current (or last) full list.
    pub loaded: u64,
    /// The store holds a whole set for it: listed since start, or listed before and resumed.
    pub synced: bool,
    /// Events received from its watch and not stored yet, when any wait.
    pub behind: Option<Behind>,
    /// When a client last read it through vai (ms since the Unix epoch), since start.
    pub last_read_ms: Option<i64>,
}

/// How far a type's store is behind what its watch received (see `reflector::watch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    /// When the oldest event not stored yet came (ms since the Unix epoch).
    pub since_ms: i64,
    /// How many events wait (the batch being stored and those received after it).
    pub events: u64,
    /// Resource versions between the stored one and the newest event being stored.
    pub versions: u64,
}

/// Status per type, keyed by the store's resource key.
#[derive(Debug, Default)]
pub struct StatusBoard {
    entries: Mutex<BTreeMap<String, ResourceStatus>>,
}

impl StatusBoard {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, ResourceStatus>) -> T) -> T {
        f(&mut self.entries.lock().expect("status lock"))
    }

    pub(crate) fn add(&self, key: &str) {
        self.with(|m| {
            m.entry(key.to_string()).or_insert(ResourceStatus {
                state: SyncState::Syncing,
                since_ms: now_ms(),
                error: None,
                loaded: 0,
                synced: false,
                behind: None,
                last_read_ms: None,
            });
        });
    }

    pub(crate) fn remove(&self, key: &str) {
        self.with(|m| m.remove(key));
    }

    pub(crate) fn set(&self, key: &str, state: SyncState, error: Option<String>) {
        self.with(|m| {
            if let Some(s) = m.get_mut(key) {
                if s.state != state {
                    s.since_ms = now_ms();
                }
                s.state = state;
                s.error = error;
            }
        });
    }

    pub(crate) fn set_loaded(&self, key: &str, loaded: u64) {
        self.with(|m| m.get_mut(key).map(|s| s.loaded = loaded));
    }

    pub(crate) fn loaded(&self, key: &str) -> u64 {
        self.with(|m| m.get(key).map_or(0, |s| s.loaded))
    }

    pub(crate) fn set_behind(&self, key: &str, behind: Option<Behind>) {
        self.with(|m| m.get_mut(key).map(|s| s.behind = behind));
    }

    pub(crate) fn set_read(&self, key: &str, at_ms: i64) {
        self.with(|m| m.get_mut(key).map(|s| s.last_read_ms = Some(at_ms)));
    }

    pub(crate) fn last_read(&self, key: &str) -> Option<i64> {
        self.with(|m| m.get(key).and_then(|s| s.last_read_ms))
    }

    pub(crate) fn mark_synced(&self, key: &str) {
        self.with(|m| m.get_mut(key).map(|s| s.synced = true));
    }

    /// The status of one type.
    pub fn get(&self, key: &str) -> Option<ResourceStatus> {
        self.with(|m| m.get(key).cloned())
    }

    /// Every type's status, by key.
    pub fn all(&self) -> BTreeMap<String, ResourceStatus> {
        self.with(|m| m.clone())
    }

    /// Every type has synced once.
    pub fn all_synced(&self) -> bool {
        self.with(|m| m.values().all(|s| s.synced))
    }
}
