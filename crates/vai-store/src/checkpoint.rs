//! The checkpointer: a thread with its own connection that copies the WAL back into the
//! database, so that commits never do it.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, which made
//! that commit 50× slower than the others (p99 of a single event). Here the writer's automatic
//! checkpoints are off and this thread runs a PASSIVE checkpoint (concurrent with the writer and
//! the readers) at most a second after anything was written, or sooner when the WAL grew by
//! 8 MB (or a quarter of the limit). A WAL whose every frame is copied is restarted from its
//! start by the next commit, so it stops growing — unless readers keep old snapshots open all
//! the time (a stream of overlapping long lists). Only then, when the frames in the WAL pass
//! `wal_limit_bytes`, a TRUNCATE checkpoint runs: it holds off the writer while it waits (up to
//! the connection's busy timeout, 2 s) for the readers of old snapshots — new readers do not
//! hold it — so a steady stream of readers cannot starve the WAL into growing without bound.
//!
//! A writer faster than this thread's polling (a release build writes 30 MB a second) would
//! still outrun it, so the writer asks too ([`Checkpointer::over_limit`]): after a commit that
//! leaves more than the limit in the WAL it waits until this thread has checkpointed. The WAL's
//! bound is then the limit plus one group of batches, however fast the writes.
//!
//! Why not on the file's size: the file keeps its size after a restart, so a size trigger saw
//! no growth, ran no passive checkpoint, and the WAL went past the limit every 64 MB written —
//! each time a TRUNCATE that held the writer while a long list ran (found by the benchmark
//! harness as a pod watch trailing upstream by 90 s while the pod garbage collector deleted
//! 7,000 pods during ten full lists).

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

/// How often the WAL is looked at.
const INTERVAL: Duration = Duration::from_millis(200);
/// WAL growth that triggers a passive checkpoint at once (a quarter of the limit, if smaller).
const PASSIVE_AFTER_BYTES: u64 = 8 << 20;
/// Longest a write waits to be checkpointed.
const PASSIVE_EVERY: Duration = Duration::from_secs(1);
/// A truncating checkpoint that held the writer longer than this is logged as a warning.
const SLOW_TRUNCATE: Duration = Duration::from_secs(1);

/// The writer's line to the checkpointer; the checkpointer stops once every one is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Checkpointer(Sender<Sender<()>>);

impl Checkpointer {
    /// Asks for a checkpoint now and waits until it has run (whatever its outcome).
    pub(crate) fn over_limit(&self) {
        let (done, wait) = mpsc::channel();
        if self.0.send(done).is_ok() {
            let _ = wait.recv();
        }
    }
}

/// A checkpointer's channel: the handle to give out, and the end [`run`] reads.
pub(crate) fn channel() -> (Checkpointer, Receiver<Sender<()>>) {
    let (tx, rx) = mpsc::channel();
    (Checkpointer(tx), rx)
}

/// Runs until every [`Checkpointer`] is dropped.
pub(crate) fn run(
    conn: Connection,
    db_path: PathBuf,
    wal_limit_bytes: u64,
    asks: Receiver<Sender<()>>,
) {
    let wal = PathBuf::from(format!("{}-wal", db_path.display()));
    let frame_bytes = frame_bytes(&conn);
    let (mut size_then, mut modified_then) = (0u64, None::<SystemTime>);
    let mut passive_at = Instant::now();
    loop {
        let asked = match asks.recv_timeout(INTERVAL) {
            Ok(done) => Some(done),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let meta = std::fs::metadata(&wal).ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let modified = meta.and_then(|m| m.modified().ok());
        let grown = size > size_then + PASSIVE_AFTER_BYTES.min(wal_limit_bytes / 4);
        let written = modified != modified_then && passive_at.elapsed() >= PASSIVE_EVERY;
        if asked.is_none() && !(grown || written) {
            continue;
        }
        (size_then, modified_then, passive_at) = (size, modified, Instant::now());
        if bound(&conn, frame_bytes, wal_limit_bytes) {
            size_then = 0;
        }
        if let Some(done) = asked {
            let _ = done.send(());
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

/// A WAL frame is a page and its 24-byte header.
pub(crate) fn frame_bytes(conn: &Connection) -> u64 {
    conn.query_row("PRAGMA page_size", [], |r| r.get::<_, u64>(0))
        .unwrap_or(4096)
        + 24
}

/// A passive checkpoint, then a truncating one if old snapshots kept the WAL over the limit.
/// True when the WAL was truncated.
fn bound(conn: &Connection, frame_bytes: u64, wal_limit_bytes: u64) -> bool {
    let Some((_, frames, _)) = checkpoint(conn, "PASSIVE") else {
        return false;
    };
    if frames.saturating_mul(frame_bytes) <= wal_limit_bytes {
        return false;
    }
    // Old snapshots kept the WAL from restarting: wait for their readers, writer held off.
    let started = Instant::now();
    let outcome = checkpoint(conn, "TRUNCATE");
    let held = started.elapsed();
    let done = matches!(outcome, Some((0, ..)));
    if held > SLOW_TRUNCATE {
        tracing::warn!(wal_bytes = frames * frame_bytes, held = ?held, truncated = done,
            "a truncating checkpoint held writes while it waited for long readers");
    }
    done
}

/// Runs a checkpoint: `(busy, frames in the WAL, frames copied)`, `None` when it failed.
fn checkpoint(conn: &Connection, mode: &str) -> Option<(i64, u64, u64)> {
    let started = Instant::now();
    let outcome = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match outcome {
        Ok((busy, frames, copied)) => {
            tracing::debug!(mode, busy, frames, copied, elapsed = ?started.elapsed(), "checkpoint");
            // -1: not in WAL mode (cannot happen here); read as empty.
            Some((busy, frames.max(0) as u64, copied.max(0) as u64))
        }
        Err(e) => {
            tracing::warn!(mode, error = %e, "checkpoint failed");
            None
        }
    }
}
