//! Who reconnects first: at most a few types at a time open a watch after a failure or an
//! outage, resume at start, or list — the types clients read most recently first.
//!
//! When upstream answers again after an outage every type wants its watch back in the same
//! instant, and over HTTP/1.1 each is a new TLS connection: on a slow link they would share its
//! bandwidth evenly and finish together, late. Admitted a few at a time in order of their last
//! read, the type a user is looking at is live first and upstream sees no burst.
//!
//! A loop takes its place in the queue ([`Admission::queue`]) *before* it waits for upstream,
//! and asks for its turn ([`Ticket::admitted`]) once upstream answers: every type that waited
//! through the outage is in the queue when the first of them asks, so the order is by last read
//! (looked up when the turn is decided), never by who woke first. Routine re-watches (upstream
//! ended a watch) do not queue. This module only orders; it never talks to upstream.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Types admitted at once.
pub(crate) const IN_FLIGHT: usize = 8;

/// The admission queue shared by every loop of a syncer.
#[derive(Debug)]
pub(crate) struct Admission {
    limit: usize,
    state: Mutex<Queue>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    admitted: usize,
    waiting: BTreeSet<String>,
}

/// A type's place in the queue; dropped without being admitted, it leaves the queue.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    key: Option<String>,
}

/// Held while a type reconnects; dropping it admits the next.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
}

impl Admission {
    pub(crate) fn new(limit: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limit: limit.max(1),
            state: Mutex::new(Queue::default()),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().expect("admission lock")
    }

    /// Takes a place in the queue for the type with store key `key`.
    pub(crate) fn queue(self: &Arc<Self>, key: &str) -> Ticket {
        self.lock().waiting.insert(key.to_string());
        Ticket {
            admission: self.clone(),
            key: Some(key.to_string()),
        }
    }

    #[cfg(test)]
    fn admitted(&self) -> usize {
        self.lock().admitted
    }
}

impl Ticket {
    /// Waits for this type's turn: the first of those queued by `last_read` (when a client last
    /// read a type, `None` for never, newest first; then by key), once fewer than the limit
    /// reconnect.
    pub(crate) async fn admitted(mut self, last_read: impl Fn(&str) -> Option<i64>) -> Permit {
        let admission = self.admission.clone();
        let key = self.key.clone().expect("a ticket not admitted yet");
        loop {
            let notified = admission.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut queue = admission.lock();
                let first = queue
                    .waiting
                    .iter()
                    .max_by_key(|k| (last_read(k).unwrap_or(i64::MIN), Reverse(*k)));
                if queue.admitted < admission.limit && first == Some(&key) {
                    queue.waiting.remove(&key);
                    queue.admitted += 1;
                    self.key = None;
                    drop(queue);
                    // The next in line may fit too.
                    admission.changed.notify_waiters();
                    return Permit {
                        admission: self.admission.clone(),
                    };
                }
            }
            notified.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.admission.lock().waiting.remove(&key);
            self.admission.changed.notify_waiters();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.lock().admitted -= 1;
        self.admission.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_at(key: &str) -> Option<i64> {
        match key {
            "old" => Some(10),
            "newer" => Some(20),
            "newest" => Some(30),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_queued_are_admitted_a_few_at_a_time_most_recently_read_first_whoever_asks_first() {
        let admission = Admission::new(2);
        let keys = ["never-b", "old", "newest", "never-a", "newer"];
        let tickets: Vec<Ticket> = keys.iter().map(|k| admission.queue(k)).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = tokio::sync::watch::channel(false);
        // They ask in the order they were queued, the least recently read first.
        let mut tasks = Vec::new();
        for (key, ticket) in keys.into_iter().zip(tickets) {
            let (admission, order, mut released) =
                (admission.clone(), order.clone(), released.clone());
            tasks.push(tokio::spawn(async move {
                let permit = ticket.admitted(read_at).await;
                order.lock().unwrap().push(key);
                assert!(admission.admitted() <= 2, "at most two at once");
                released.wait_for(|r| *r).await.unwrap();
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        while order.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*order.lock().unwrap(), ["newest", "newer"]);
        release.send(true).unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["newest", "newer", "old", "never-a", "never-b"]
        );
        assert_eq!(admission.admitted(), 0);
    }

    #[tokio::test]
    async fn a_ticket_given_up_leaves_the_queue() {
        let admission = Admission::new(1);
        let first = admission.queue("first").admitted(read_at).await;
        // Ranks first ("newest") but its loop stops before it asks.
        let gone = admission.queue("newest");
        let patient = tokio::spawn({
            let ticket = admission.queue("patient");
            async move { ticket.admitted(read_at).await }
        });
        drop(first);
        drop(gone);
        let admitted = tokio::time::timeout(std::time::Duration::from_secs(10), patient).await;
        assert!(admitted.is_ok(), "the queue moved on");
    }
}
