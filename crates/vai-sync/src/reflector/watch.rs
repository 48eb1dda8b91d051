//! Watching: opening a watch from a resource version and applying its events to the store, in
//! batches, until it ends; how it ended is reported, never acted on.
//!
//! This module never decides what follows a watch (that is `state`: re-watch, relist or back
//! off).

use vai_store::Batch;

use super::record::{MAX_BATCH, Reflector};
use crate::Error;
use crate::upstream::{EventStream, WatchEvent};

/// How a watch ended.
pub(super) enum WatchEnd {
    /// Upstream closed the stream normally.
    Closed,
    /// Upstream ended it with a `410` ERROR event.
    Gone,
    /// It failed: an error, a silence longer than the idle timeout, upstream stopped answering.
    Failed(Error),
}

impl Reflector {
    fn watch_timeout_seconds(&self) -> u64 {
        // Spread re-watches so that types do not reconnect in lockstep.
        let max = self.shared.config.watch_timeout.as_secs().max(2);
        fastrand::u64(max / 2..=max)
    }

    /// Opens a watch of the events after `rv`.
    pub async fn open_watch(&self, rv: u64) -> Result<EventStream, Error> {
        let query = self.query(&format!(
            "watch=1&resourceVersion={rv}&allowWatchBookmarks=true&includeObject=Object&timeoutSeconds={}",
            self.watch_timeout_seconds()
        ));
        let config = &self.shared.config;
        EventStream::open(
            &self.shared.client,
            &query,
            config.timeout,
            config.idle_timeout,
        )
        .await
    }

    /// Applies a watch stream's events to the store (at `rv`) until it ends; returns the
    /// version the store reached and how the stream ended.
    pub async fn follow(&mut self, mut rv: u64, mut stream: EventStream) -> (u64, WatchEnd) {
        let mut health = self.shared.health.subscribe();
        let end = loop {
            let next = tokio::select! {
                next = self.next_batch(&mut stream, &mut rv) => next,
                _ = health.wait_for(|h| !h.reachable) => {
                    break WatchEnd::Failed(Error::Unreachable);
                }
            };
            match next {
                Ok(Some(end)) => break end,
                Ok(None) => {}
                Err(e) => break WatchEnd::Failed(e),
            }
        };
        (rv, end)
    }

    /// Reads the events available now (at least one) into one store batch and applies it.
    /// `Some` when the stream ended.
    async fn next_batch(
        &mut self,
        stream: &mut EventStream,
        rv: &mut u64,
    ) -> Result<Option<WatchEnd>, Error> {
        let mut batch = Batch::new(&self.key);
        let mut end = None;
        loop {
            let event = stream.next().await?;
            self.save_columns(stream.take_columns()).await?;
            match event {
                None => {
                    end = Some(WatchEnd::Closed);
                    break;
                }
                Some(WatchEvent::Object(kind, object)) => batch = batch.event(kind, object),
                Some(WatchEvent::Bookmark(at)) => batch = batch.bookmark(at),
                Some(WatchEvent::Error(status)) if status.code == 410 => {
                    end = Some(WatchEnd::Gone);
                    break;
                }
                Some(WatchEvent::Error(status)) => {
                    return Err(Error::Status {
                        code: status.code,
                        message: status.message,
                    });
                }
            }
            if batch.ops.len() >= MAX_BATCH || !stream.has_buffered_event() {
                break;
            }
        }
        if !batch.ops.is_empty() {
            self.apply(batch, rv).await?;
        }
        Ok(end)
    }
}
