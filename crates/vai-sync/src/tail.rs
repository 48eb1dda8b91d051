//! A watch read in its own task, as fast as upstream sends it, while the reflector stores what
//! it received.
//!
//! Upstream cuts a watcher that reads slower than events come (the kube-apiserver's cacher
//! gives each a small buffer), so a watch must be read at upstream's pace even while the
//! reflector waits on list pages and on the store. A [`Tail`] reads it into a channel as it
//! arrives, each event stamped with when it came:
//! - during a list, the reflector moves what it received to a [`crate::spool::Spool`] and,
//!   once the list is stored and the spool applied, takes the stream back
//!   ([`Tail::into_stream`]);
//! - while following a watch, the reflector stores what waits in the channel in batches, and
//!   what waits there, and since when, is how far vai is behind upstream (`reflector::watch`).
//!
//! The channel is bounded: when it is full the reading pauses, and upstream's own limit on a
//! slow watcher applies (it ends the watch, which is watched again from the stored version).
//! This module never writes to the store: it only moves events from the stream to the channel.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Error;
use crate::upstream::{EventStream, WatchEvent};

/// What the tail received: an event (with the table columns sent with it, if any, and when
/// it came, in ms since the Unix epoch), or the end.
pub(crate) enum Received {
    Event(WatchEvent, Option<Vec<u8>>, i64),
    /// The stream ended (`Ok`: upstream closed it normally) or failed; nothing follows.
    End(Result<(), Error>),
}

/// A watch stream being read in the background. Dropping it stops the reading.
pub(crate) struct Tail {
    events: mpsc::Receiver<Received>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Option<EventStream>>,
}

impl Tail {
    /// Starts reading `stream`, holding at most `capacity` received events not taken yet.
    pub fn start(mut stream: EventStream, capacity: usize) -> Tail {
        let (sender, events) = mpsc::channel(capacity);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                // Room first, then the event: what is read always has a place, and stopping
                // while the channel is full loses nothing. `EventStream::next` keeps what it
                // read across a cancellation, so stopping between events loses none either.
                let permit = tokio::select! {
                    biased;
                    _ = &mut stopped => return Some(stream),
                    permit = sender.reserve() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return None,
                    },
                };
                let next = tokio::select! {
                    biased;
                    _ = &mut stopped => return Some(stream),
                    next = stream.next() => next,
                };
                let received = match next {
                    Ok(Some(event)) => {
                        Received::Event(event, stream.take_columns(), crate::now_ms())
                    }
                    Ok(None) => Received::End(Ok(())),
                    Err(e) => Received::End(Err(e)),
                };
                let ended = matches!(received, Received::End(_));
                permit.send(received);
                if ended {
                    return None;
                }
            }
        });
        Tail {
            events,
            stop: Some(stop),
            task,
        }
    }

    /// How many received events wait to be taken.
    pub fn waiting(&self) -> usize {
        self.events.len()
    }

    /// The next thing received, waiting for it.
    pub async fn recv(&mut self) -> Received {
        self.events
            .recv()
            .await
            .unwrap_or(Received::End(Err(Error::ReaderStopped)))
    }

    /// What was received and not taken yet, without waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        self.events.try_recv().ok()
    }

    /// Stops reading; returns the stream (if it had not ended) and what was received before.
    pub async fn into_stream(mut self) -> (Option<EventStream>, Vec<Received>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stream = (&mut self.task).await.ok().flatten();
        let mut rest = Vec::new();
        while let Ok(received) = self.events.try_recv() {
            rest.push(received);
        }
        (stream, rest)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}
