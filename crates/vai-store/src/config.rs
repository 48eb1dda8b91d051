//! How a store is tuned: [`StoreConfig`], its defaults and their reasons.
//!
//! Plain data: this module must never open, read or write anything.

use std::time::Duration;

use crate::fields::ConfiguredField;

/// Tuning of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Keep `metadata.managedFields` (dropped by default: large, and rarely read from a cache).
    pub keep_managed_fields: bool,
    /// History kept per resource type, in events.
    pub history_max_events: u64,
    /// History kept per resource type, in time.
    pub history_max_age: Duration,
    /// Read connections open at most (readers beyond wait for one; see `pool`).
    pub read_connections: usize,
    /// A bound on the write-ahead journal (bytes): the changes committed but not yet copied
    /// into the database file. A commit that leaves more makes the writer wait until the
    /// journal is brought back under it, which waits for readers of old snapshots (see
    /// `checkpoint` for what is guaranteed, and what a reader that never lets go does).
    pub journal_limit_bytes: u64,
    /// Capacity of the live event channel (a subscriber further behind gets `WatchLagged`).
    pub event_buffer: usize,
    /// A cap on the database's size: a write that would grow it further fails with
    /// [`crate::Error::DiskFull`], exactly as when the disk itself is full. `None`: the disk's size.
    pub max_size_bytes: Option<u64>,
    /// Fields to index besides the built-in ones and those CRDs declare, for the query API's
    /// filters, sorts and summaries ([`ConfiguredField::parse_list`] reads `--index-field`'s
    /// syntax). A file opened with a different list is reindexed at open.
    pub indexed_fields: Vec<ConfiguredField>,
    /// Types whose rows are encrypted in the file, and the keys (`--encryption-provider-config`,
    /// read by [`crate::Encryption::from_file`]). `None`: nothing is encrypted, and a file
    /// that holds encrypted rows is refused at open.
    pub encryption: Option<crate::Encryption>,
    /// Compress bodies at rest with a zstd dictionary trained per type (see `codec`; on by
    /// default). Off, new bodies are stored plain; compressed ones still read.
    pub compress_bodies: bool,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            keep_managed_fields: false,
            history_max_events: DEFAULT_HISTORY_MAX_EVENTS,
            history_max_age: DEFAULT_HISTORY_MAX_AGE,
            read_connections: 8,
            journal_limit_bytes: 64 << 20,
            event_buffer: 4096,
            max_size_bytes: None,
            indexed_fields: Vec::new(),
            encryption: None,
            compress_bodies: true,
        }
    }
}

/// The default retention of history: 20,000 events per resource type, 30 minutes.
pub(crate) const DEFAULT_HISTORY_MAX_EVENTS: u64 = 20_000;
/// See [`DEFAULT_HISTORY_MAX_EVENTS`].
pub(crate) const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(30 * 60);
