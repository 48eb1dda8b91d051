//! The checkpointer: a thread with its own connection that copies the WAL back into the
//! database, so that commits never do it.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, which made
//! that commit 50× slower than the others (p99 of a single event). Here the writer's automatic
//! checkpoints are off; this thread runs a PASSIVE checkpoint (concurrent with the writer and
//! the readers) whenever the WAL has grown, and a TRUNCATE checkpoint past `wal_limit_bytes`:
//! that one waits (bounded by the busy timeout) for the readers of old snapshots, so a steady
//! stream of readers cannot starve the WAL into growing without bound.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL's size is looked at.
const INTERVAL: Duration = Duration::from_millis(200);
/// WAL growth that triggers a passive checkpoint.
const PASSIVE_AFTER_BYTES: u64 = 8 << 20;

/// Runs until `stop` is dropped or sends.
pub(crate) fn run(conn: Connection, db_path: PathBuf, wal_limit_bytes: u64, stop: Receiver<()>) {
    let wal = PathBuf::from(format!("{}-wal", db_path.display()));
    let mut size_after_last = 0u64;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let mode = if size > wal_limit_bytes {
            "TRUNCATE"
        } else if size > size_after_last + PASSIVE_AFTER_BYTES {
            "PASSIVE"
        } else {
            continue;
        };
        let started = std::time::Instant::now();
        let outcome = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        // A passive checkpoint does not shrink the file; remember its size so that only new
        // growth triggers the next one.
        size_after_last = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        match outcome {
            Ok((busy, frames, done)) => tracing::debug!(
                mode, wal_bytes = size, busy, frames, done, elapsed = ?started.elapsed(), "checkpoint"
            ),
            Err(e) => tracing::warn!(mode, error = %e, "checkpoint failed"),
        }
        if mode == "TRUNCATE" {
            size_after_last = 0;
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}
