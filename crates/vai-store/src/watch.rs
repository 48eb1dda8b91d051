//! A watch on one resource type: stored events after a resource version, then live events,
//! joined by sequence number so nothing is missed or delivered twice.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::{Error, Event, EventKind, Result};

/// An ordered stream of one resource type's events. See [`crate::Store::watch`].
#[derive(Debug)]
pub struct Watch {
    resource: Arc<str>,
    pending: VecDeque<Event>,
    /// Highest sequence number already delivered or covered by the replay.
    seen_seq: u64,
    /// The version the watch starts after: an event at or below it is one the client holds.
    from_rv: u64,
    /// Highest resource version delivered (bookmarks at or below it are dropped).
    seen_rv: u64,
    live: broadcast::Receiver<Arc<[Event]>>,
}

impl Watch {
    pub(crate) fn new(
        resource: &str,
        replay: Vec<Event>,
        seen_seq: u64,
        from_rv: u64,
        live: broadcast::Receiver<Arc<[Event]>>,
    ) -> Watch {
        Watch {
            resource: resource.into(),
            pending: replay.into(),
            seen_seq,
            from_rv,
            seen_rv: from_rv,
            live,
        }
    }

    /// The next event. Fails with [`Error::WatchLagged`] if this watch fell further behind
    /// than the live buffer holds, and [`Error::Closed`] when the store closes.
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.seen_rv = self.seen_rv.max(event.resource_version);
                return Ok(event);
            }
            let batch = match self.live.recv().await {
                Ok(batch) => batch,
                Err(RecvError::Lagged(_)) => return Err(Error::WatchLagged),
                Err(RecvError::Closed) => return Err(Error::Closed),
            };
            for event in batch.iter().filter(|e| e.resource == self.resource) {
                let fresh = if event.kind == EventKind::Bookmark {
                    event.resource_version > self.seen_rv
                } else {
                    event.seq > self.seen_seq && event.resource_version > self.from_rv
                };
                if fresh {
                    self.seen_seq = self.seen_seq.max(event.seq);
                    self.pending.push_back(event.clone());
                }
            }
        }
    }
}
