//! A small bounded map whose entries expire ([`Expiring`]): what access remembers for a
//! while — verified tokens, upstream's authorization answers. Past its bound, expired entries
//! are dropped, then everything (each entry is cheap to learn again).
//!
//! This module only remembers; it never decides what to keep or for how long.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries that hold until their own deadline. See the [module](self).
pub(crate) struct Expiring<K, V> {
    max: usize,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> Expiring<K, V> {
    /// An empty map of at most `max` entries.
    pub fn new(max: usize) -> Expiring<K, V> {
        Expiring {
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key`, while it holds.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().expect("expiring lock");
        entries
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(value, _)| value.clone())
    }

    /// Remembers `value` for `key` for `ttl`.
    pub fn put(&self, key: K, value: V, ttl: Duration) {
        let mut entries = self.entries.lock().expect("expiring lock");
        if entries.len() >= self.max {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.max {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now() + ttl));
    }

    /// How long `key` still holds, if it does.
    #[cfg(test)]
    pub fn left(&self, key: &K) -> Option<Duration> {
        let entries = self.entries.lock().expect("expiring lock");
        entries
            .get(key)
            .and_then(|(_, until)| until.checked_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_bound_holds() {
        let map = Expiring::new(2);
        map.put("a", 1, Duration::from_secs(60));
        map.put("gone", 2, Duration::ZERO);
        assert_eq!(map.get(&"a"), Some(1));
        assert_eq!(map.get(&"gone"), None, "expired");
        // Full: the expired entry makes room.
        map.put("b", 3, Duration::from_secs(60));
        assert_eq!((map.get(&"a"), map.get(&"b")), (Some(1), Some(3)));
        // Full of live entries: everything goes.
        map.put("c", 4, Duration::from_secs(60));
        assert_eq!((map.get(&"a"), map.get(&"c")), (None, Some(4)));
        assert!(map.left(&"c").unwrap() > Duration::from_secs(59));
    }
}
