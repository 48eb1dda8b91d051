//! The pool of read-only connections: at most `size` open, the rest of the readers wait.
//!
//! A connection's page cache is what makes reads fast; a reader that opened a fresh connection
//! whenever the pool was empty (50 concurrent readers on a pool of 8) read every page cold and
//! paid SQLite's open and schema parse, so pages got slower the more there were (109 pages/s
//! under 50 clients). Waiting for a warm connection is cheaper on any number of cores. A reader
//! that waits longer than [`MAX_WAIT`] opens one more connection, closed when it is returned:
//! a read made inside another read's callback can never deadlock, only be slower.
//!
//! Never hand a connection to two readers at once, and never keep more than `size` idle.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{Result, schema};

/// How long a reader waits for a pooled connection before it opens one of its own.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

/// Read connections to one database file.
#[derive(Debug)]
pub(crate) struct ReaderPool {
    size: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Connection>,
    /// Connections open: idle and in use.
    open: usize,
    /// Readers waiting, first come first served (a returned connection goes to the one that
    /// waited longest, so that no reader's wait grows with the others': p99 under 50 readers).
    waiting: VecDeque<Arc<Slot>>,
}

/// Where a returned connection is handed to one waiting reader.
#[derive(Debug, Default)]
struct Slot {
    conn: Mutex<Option<Connection>>,
    filled: Condvar,
}

impl ReaderPool {
    /// A pool of at most `size` connections (at least one).
    pub(crate) fn new(size: usize) -> ReaderPool {
        ReaderPool {
            size: size.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// A connection to `path`: an idle one, a new one while fewer than `size` are open, else
    /// the next one returned, in turn, within [`MAX_WAIT`], else one more.
    pub(crate) fn take(&self, path: &Path) -> Result<Connection> {
        let slot = {
            let mut state = self.state.lock().expect("reader pool lock");
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return self.open(path);
            }
            let slot = Arc::new(Slot::default());
            state.waiting.push_back(slot.clone());
            slot
        };
        let deadline = Instant::now() + MAX_WAIT;
        let mut conn = slot.conn.lock().expect("reader slot lock");
        while conn.is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            conn = slot
                .filled
                .wait_timeout(conn, deadline - now)
                .expect("reader slot lock")
                .0;
        }
        if let Some(conn) = conn.take() {
            return Ok(conn);
        }
        drop(conn);
        let mut state = self.state.lock().expect("reader pool lock");
        // Handed a connection between the timeout and this lock: take it after all.
        if let Some(conn) = slot.conn.lock().expect("reader slot lock").take() {
            return Ok(conn);
        }
        state.waiting.retain(|s| !Arc::ptr_eq(s, &slot));
        state.open += 1;
        drop(state);
        self.open(path)
    }

    fn open(&self, path: &Path) -> Result<Connection> {
        schema::open_reader(path).inspect_err(|_| {
            self.state.lock().expect("reader pool lock").open -= 1;
        })
    }

    /// Gives back a connection [`ReaderPool::take`] returned: to the longest waiting reader,
    /// else to the idle ones; one beyond `size` is closed.
    pub(crate) fn give(&self, conn: Connection) {
        let mut state = self.state.lock().expect("reader pool lock");
        if state.open > self.size {
            state.open -= 1;
            drop(state);
            drop(conn);
        } else if let Some(slot) = state.waiting.pop_front() {
            *slot.conn.lock().expect("reader slot lock") = Some(conn);
            slot.filled.notify_one();
        } else {
            state.idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vai.db");
        drop(schema::open_writer(&path).unwrap());
        (dir, path)
    }

    #[test]
    fn a_returned_connection_is_reused_not_reopened() {
        let (_dir, path) = database();
        let pool = ReaderPool::new(2);
        let conn = pool.take(&path).unwrap();
        conn.execute_batch("PRAGMA cache_size = -1234;").unwrap();
        pool.give(conn);
        let again = pool.take(&path).unwrap();
        let cache: i64 = again
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(cache, -1234, "the same connection came back");
    }

    #[test]
    fn a_reader_beyond_the_size_waits_for_a_returned_connection() {
        let (_dir, path) = database();
        let pool = ReaderPool::new(1);
        let held = pool.take(&path).unwrap();
        held.execute_batch("PRAGMA cache_size = -4321;").unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let conn = pool.take(&path).unwrap();
                conn.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))
                    .unwrap()
            });
            // The waiter cannot have a connection until this one is given back.
            while pool.state.lock().unwrap().waiting.is_empty() {
                assert!(
                    !waiter.is_finished(),
                    "the waiter opened a second connection"
                );
                std::thread::yield_now();
            }
            assert_eq!(pool.state.lock().unwrap().open, 1);
            pool.give(held);
            assert_eq!(
                waiter.join().unwrap(),
                -4321,
                "it got the returned connection"
            );
        });
        assert_eq!(pool.state.lock().unwrap().open, 1);
    }

    #[test]
    fn a_reader_that_waited_too_long_opens_one_more_which_is_closed_when_returned() {
        let (_dir, path) = database();
        let pool = ReaderPool::new(1);
        let held = pool.take(&path).unwrap();
        let started = Instant::now();
        let extra = pool.take(&path).unwrap();
        assert!(started.elapsed() >= MAX_WAIT);
        assert_eq!(pool.state.lock().unwrap().open, 2);
        pool.give(extra);
        pool.give(held);
        let state = pool.state.lock().unwrap();
        assert_eq!((state.open, state.idle.len()), (1, 1));
    }

    #[test]
    fn returned_connections_go_to_waiting_readers_in_turn() {
        let (_dir, path) = database();
        let pool = ReaderPool::new(1);
        let held = pool.take(&path).unwrap();
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let mut waiters = Vec::new();
            for k in 0..3 {
                // Each waiter queues before the next starts.
                waiters.push(s.spawn({
                    let (pool, path, order) = (&pool, &path, &order);
                    move || {
                        let conn = pool.take(path).unwrap();
                        order.lock().unwrap().push(k);
                        pool.give(conn);
                    }
                }));
                while pool.state.lock().unwrap().waiting.len() < k + 1 {
                    std::thread::yield_now();
                }
            }
            pool.give(held);
            for w in waiters {
                w.join().unwrap();
            }
        });
        assert_eq!(
            *order.lock().unwrap(),
            vec![0, 1, 2],
            "first come, first served"
        );
    }
}
