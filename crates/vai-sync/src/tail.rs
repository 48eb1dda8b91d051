//! A watch read in its own task while the reflector is busy storing a list.
//!
//! Upstream cuts a watcher that reads slower than events come (the kube-apiserver's cacher
//! gives each a small buffer), so the watch opened at a list's first page must be read at
//! upstream's pace even while the reflector waits on pages and on the store. A [`Tail`] reads it
//! into a channel as fast as it arrives; the reflector moves what it received to a
//! [`crate::spool::Spool`] and, once the list is stored and the spool applied, takes the stream
//! back ([`Tail::into_stream`]) and follows it as any watch.
//!
//! This module never writes to the store: it only moves events from the stream to the channel.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Error;
use crate::upstream::{EventStream, WatchEvent};

/// What the tail received: an event (with the table columns sent with it, if any), or the end.
pub(crate) enum Received {
    Event(WatchEvent, Option<Vec<u8>>),
    /// The stream ended (`Ok`: upstream closed it normally) or failed; nothing follows.
    End(Result<(), Error>),
}

/// A watch stream being read in the background. Dropping it stops the reading.
pub(crate) struct Tail {
    events: mpsc::UnboundedReceiver<Received>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Option<EventStream>>,
}

impl Tail {
    /// Starts reading `stream`.
    pub fn start(mut stream: EventStream) -> Tail {
        let (sender, events) = mpsc::unbounded_channel();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                // `EventStream::next` keeps what it read across a cancellation, so stopping
                // between events loses none.
                let next = tokio::select! {
                    biased;
                    _ = &mut stopped => return Some(stream),
                    next = stream.next() => next,
                };
                let received = match next {
                    Ok(Some(event)) => Received::Event(event, stream.take_columns()),
                    Ok(None) => Received::End(Ok(())),
                    Err(e) => Received::End(Err(e)),
                };
                let ended = matches!(received, Received::End(_));
                if sender.send(received).is_err() || ended {
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
