//! The checkpointer: a thread with its own connection that copies the WAL back into the
//! database, so that commits never do it.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, which made
//! that commit 50× slower than the others (p99 of a single event). Here the writer's automatic
//! checkpoints are off and this thread runs a PASSIVE checkpoint (concurrent with the writer and
//! the readers) at most a second after anything was written, or sooner when the WAL grew by
//! 8 MB (or a quarter of the limit). A WAL whose every frame is copied is restarted from its
//! start by the next commit, so it stops growing — unless some reader is always active (then
//! SQLite never restarts it by itself: past a quarter of the limit this thread restarts it,
//! waiting at most 10 ms for readers, see `bound`), or readers keep old snapshots open all the
//! time (a stream of overlapping long lists). Only then, when the frames in the WAL pass
//! `journal_limit_bytes`, a TRUNCATE checkpoint runs: it holds off the writer while it waits (up to
//! the connection's busy timeout, 2 s) for the readers of old snapshots — new readers do not
//! hold it — so a steady stream of readers cannot starve the WAL into growing without bound.
//!
//! A writer faster than this thread's polling (a release build writes 30 MB a second) would
//! still outrun it, so the writer asks too ([`Checkpointer::over_limit`]): after a commit that
//! leaves more than the limit in the WAL it waits until a checkpoint has actually brought the WAL
//! back under the limit, asking again after each attempt that could not (readers of old
//! snapshots outlasted its wait). What is guaranteed, whatever the scheduling: the WAL holds at
//! most the limit plus one group of batches, as long as no reader keeps one snapshot for longer
//! than [`JOURNAL_WAIT_MAX`]. One that does makes the writer give up waiting and go on (writes
//! are slowed down by such a reader, never stopped), and the WAL may then grow by another
//! limit's worth before the writer waits again. (Before, the writer waited for one attempt only:
//! on a busy 2-core machine an attempt that timed out let the WAL reach 2.2× the limit.)
//!
//! Why not on the file's size: the file keeps its size after a restart, so a size trigger saw
//! no growth, ran no passive checkpoint, and the WAL went past the limit every 64 MB written —
//! each time a TRUNCATE that held the writer while a long list ran (found by the benchmark
//! harness as a pod watch trailing upstream by 90 s while the pod garbage collector deleted
//! 7,000 pods during ten full lists).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

/// How often the WAL is looked at.
const INTERVAL: Duration = Duration::from_millis(200);
/// WAL growth that triggers a passive checkpoint at once (a quarter of the limit, if smaller).
const PASSIVE_AFTER_BYTES: u64 = 8 << 20;
/// Longest a write waits to be checkpointed.
const PASSIVE_EVERY: Duration = Duration::from_secs(1);
/// Longest a restart of the WAL ahead of its limit waits for readers (holding the writer).
const AHEAD_WAIT: Duration = Duration::from_millis(10);
/// A truncating checkpoint that held the writer longer than this is logged as a warning.
const SLOW_TRUNCATE: Duration = Duration::from_secs(1);
/// Longest the writer keeps asking for the WAL to be brought under its limit: what a reader
/// must hold one snapshot for to let the WAL grow past the limit plus one group.
pub(crate) const JOURNAL_WAIT_MAX: Duration = Duration::from_secs(10);
/// Pause between two of the writer's asks.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A wait of the writer shorter than this is not a hold (beginning a transaction takes µs).
const HELD_AT_LEAST: Duration = Duration::from_millis(1);

/// How long writes have been held for the journal since the store opened, by cause
/// ([`crate::Store::writes_held`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WritesHeld {
    /// The writer's transaction could not begin: a checkpoint that restarts or truncates the
    /// WAL held the lock while it waited for readers of old snapshots.
    pub behind_checkpoint: Held,
    /// After a commit past `journal_limit_bytes`, the writer waited for the WAL to come back
    /// under it.
    pub for_journal_limit: Held,
}

/// Waits of a millisecond or more of one cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// How many.
    pub count: u64,
    /// Their time in all.
    pub total: Duration,
    /// The longest one.
    pub longest: Duration,
}

/// Why the writer waited (see [`WritesHeld`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cause {
    Checkpoint,
    JournalLimit,
}

/// The writer's record of [`WritesHeld`], read by the store.
#[derive(Debug, Default)]
pub(crate) struct Holds([HoldCounter; 2]);

#[derive(Debug, Default)]
struct HoldCounter {
    count: AtomicU64,
    total_ns: AtomicU64,
    longest_ns: AtomicU64,
}

impl HoldCounter {
    fn read(&self) -> Held {
        Held {
            count: self.count.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.total_ns.load(Ordering::Relaxed)),
            longest: Duration::from_nanos(self.longest_ns.load(Ordering::Relaxed)),
        }
    }
}

impl Holds {
    pub(crate) fn record(&self, cause: Cause, waited: Duration) {
        if waited < HELD_AT_LEAST {
            return;
        }
        let counter = &self.0[cause as usize];
        let ns = waited.as_nanos().min(u64::MAX as u128) as u64;
        counter.count.fetch_add(1, Ordering::Relaxed);
        counter.total_ns.fetch_add(ns, Ordering::Relaxed);
        counter.longest_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> WritesHeld {
        WritesHeld {
            behind_checkpoint: self.0[Cause::Checkpoint as usize].read(),
            for_journal_limit: self.0[Cause::JournalLimit as usize].read(),
        }
    }
}

/// The writer's line to the checkpointer; the checkpointer stops once every one is dropped.
/// It carries the record of how long writes were held.
#[derive(Clone, Debug)]
pub(crate) struct Checkpointer(Sender<Sender<bool>>, Arc<Holds>);

impl Checkpointer {
    /// The record of how long writes were held.
    pub(crate) fn holds(&self) -> &Arc<Holds> {
        &self.1
    }

    /// Asks for a checkpoint now and waits until it has run: true when the WAL is then within
    /// the limit (truncated, or found small). True too when the checkpointer is gone (the
    /// store is closing: nothing to wait for).
    pub(crate) fn over_limit(&self) -> bool {
        let (done, wait) = mpsc::channel();
        if self.0.send(done).is_err() {
            return true;
        }
        wait.recv().unwrap_or(true)
    }
}

/// A checkpointer's channel: the handle to give out, and the end [`run`] reads.
pub(crate) fn channel() -> (Checkpointer, Receiver<Sender<bool>>) {
    let (tx, rx) = mpsc::channel();
    (Checkpointer(tx, Arc::default()), rx)
}

/// Runs until every [`Checkpointer`] is dropped.
pub(crate) fn run(
    conn: Connection,
    db_path: PathBuf,
    wal_limit_bytes: u64,
    asks: Receiver<Sender<bool>>,
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
        let outcome = bound(&conn, frame_bytes, wal_limit_bytes);
        if outcome == Bound::Truncated {
            size_then = 0;
        }
        if let Some(done) = asked {
            let _ = done.send(outcome != Bound::Over);
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

/// Where a checkpoint left the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// Within the limit without truncating.
    Within,
    /// Truncated (empty).
    Truncated,
    /// Still over the limit (old snapshots outlasted the wait), or the checkpoint failed.
    Over,
}

/// A passive checkpoint, then a truncating one if old snapshots kept the WAL over the limit.
///
/// Ahead of the limit (past a quarter of it), a WAL whose every frame is copied but which has
/// not restarted (with readers always active, it never does by itself) is restarted: a
/// RESTART checkpoint, which has nothing left to copy and makes the next commit write from
/// the WAL's start. It waits at most [`AHEAD_WAIT`] for readers of old snapshots (holding the
/// writer no longer), else it is tried again next round. Before, such a WAL grew to the limit,
/// and the writer waited while the checkpointer copied and truncated it: in the harness's quick
/// run (debug, 2,000 pods, churn and 200 clients) the writer's longest hold was 42–50 ms and
/// 633–725 ms in all; restarting ahead, 8.7–10.7 ms and 91–96 ms (truncating ahead instead:
/// 34 ms and 726 ms, the truncation's own file work).
fn bound(conn: &Connection, frame_bytes: u64, wal_limit_bytes: u64) -> Bound {
    let Some((_, frames, copied)) = checkpoint(conn, "PASSIVE") else {
        return Bound::Over;
    };
    let bytes = frames.saturating_mul(frame_bytes);
    if bytes <= wal_limit_bytes {
        if copied == frames && bytes > wal_limit_bytes / 4 {
            quick_restart(conn);
        }
        return Bound::Within;
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
    if done { Bound::Truncated } else { Bound::Over }
}

/// A RESTART checkpoint that waits at most [`AHEAD_WAIT`] for readers (see [`bound`]).
fn quick_restart(conn: &Connection) {
    if conn.busy_timeout(AHEAD_WAIT).is_ok() {
        let _ = checkpoint(conn, "RESTART");
        let _ = conn.busy_timeout(crate::schema::CHECKPOINT_BUSY_TIMEOUT);
    }
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
