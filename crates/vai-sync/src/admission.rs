//! Who reconnects first: at most a few types at a time open a watch after a failure or an
//! outage, resume at start, or list — the types clients read most recently first.
//!
//! When upstream answers again after an outage every type wants its watch back in the same
//! instant, and over HTTP/1.1 each is a new TLS connection: on a slow link they would share its
//! bandwidth evenly and finish together, late. Admitted a few at a time in order of their last
//! read, the type a user is looking at is live first and upstream sees no burst. Admission waits
//! a moment (`SETTLE`) before its first decision so that types woken together are ranked
//! together, not first come first served. Routine re-watches (upstream ended a watch) do not
//! queue here. This module only orders; it never talks to upstream.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Types admitted at once.
pub(crate) const IN_FLIGHT: usize = 8;
/// How long a newcomer waits for the others woken with it before admission decides.
const SETTLE: Duration = Duration::from_millis(10);

/// A place in the queue: the most recent read first (never read: last), then by key.
type Ticket = (Reverse<i64>, String);

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
    waiting: BTreeSet<Ticket>,
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

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().expect("admission lock")
    }

    /// Waits for a turn: `last_read_ms` is when a client last read the type (`None`: never).
    pub(crate) async fn enter(self: &Arc<Self>, key: &str, last_read_ms: Option<i64>) -> Permit {
        let ticket = (Reverse(last_read_ms.unwrap_or(i64::MIN)), key.to_string());
        self.queue().waiting.insert(ticket.clone());
        // Taken back if this wait is dropped (its loop stopped).
        let mut queued = Queued {
            admission: self,
            ticket: Some(ticket),
        };
        tokio::time::sleep(SETTLE).await;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut queue = self.queue();
                let ticket = queued.ticket.as_ref().expect("queued");
                if queue.admitted < self.limit && queue.waiting.first() == Some(ticket) {
                    queue.waiting.pop_first();
                    queue.admitted += 1;
                    queued.ticket = None;
                    drop(queue);
                    // The next in line may fit too.
                    self.changed.notify_waiters();
                    return Permit {
                        admission: self.clone(),
                    };
                }
            }
            notified.await;
        }
    }

    #[cfg(test)]
    fn admitted(&self) -> usize {
        self.queue().admitted
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.queue().admitted -= 1;
        self.admission.changed.notify_waiters();
    }
}

/// A ticket in the queue, removed if its wait ends without a permit.
struct Queued<'a> {
    admission: &'a Arc<Admission>,
    ticket: Option<Ticket>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.admission.queue().waiting.remove(&ticket);
            self.admission.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn types_woken_together_are_admitted_a_few_at_a_time_most_recently_read_first() {
        let admission = Admission::new(2);
        let (order, done) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Notify::new()));
        let read = [
            ("never-a", None),
            ("old", Some(10)),
            ("newest", Some(30)),
            ("never-b", None),
            ("newer", Some(20)),
        ];
        let mut tasks = Vec::new();
        for (key, last_read) in read {
            let (admission, order, done) = (admission.clone(), order.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let permit = admission.enter(key, last_read).await;
                order.lock().unwrap().push(key);
                assert!(admission.admitted() <= 2, "at most two at once");
                done.notified().await;
                drop(permit);
            }));
        }
        // Let everyone queue and the first two in.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*order.lock().unwrap(), ["newest", "newer"]);
        for _ in 0..5 {
            done.notify_waiters();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["newest", "newer", "old", "never-a", "never-b"]
        );
        assert_eq!(admission.admitted(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_given_up_leaves_the_queue() {
        let admission = Admission::new(1);
        let held = admission.enter("first", Some(5)).await;
        let gave_up = tokio::spawn({
            let admission = admission.clone();
            async move { admission.enter("impatient", Some(9)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        gave_up.abort();
        let _ = gave_up.await;
        drop(held);
        // Had the aborted wait kept its place (it ranks first), this would wait forever.
        let next =
            tokio::time::timeout(Duration::from_secs(1), admission.enter("patient", None)).await;
        assert!(next.is_ok(), "the queue moved on");
    }
}
