//! Watching: opening a watch from a resource version and applying its events to the store, in
//! batches of what was received meanwhile, until it ends; how it ended is reported, never
//! acted on. While following, how far the store is behind the watch (the oldest event
//! received and not stored, how many wait) is kept on the status board.
//!
//! This module never decides what follows a watch (that is `state`: re-watch, relist or back
//! off).

use vai_store::{Batch, Op};

use super::record::{MAX_BATCH, Reflector};
use crate::tail::{Received, Tail};
use crate::upstream::{EventStream, WatchEvent, resource_version_of};
use crate::{Behind, Error};

/// Events received from a followed watch that may wait in memory to be stored: two batches
/// (~20 MB of pods), so the store always has the next one at hand; past it, reading pauses
/// (see `crate::tail`).
const FOLLOW_WAITING: usize = 2 * MAX_BATCH;

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
    /// version the store reached and how the stream ended. The stream is read ahead in its
    /// own task ([`Tail`]), so what waits to be stored, and since when, is known: it is put on
    /// the status board for each batch (see [`crate::Freshness`]).
    pub async fn follow(&mut self, mut rv: u64, stream: EventStream) -> (u64, WatchEnd) {
        let mut health = self.shared.health.subscribe();
        let mut tail = Tail::start(stream, FOLLOW_WAITING);
        let end = loop {
            let next = tokio::select! {
                next = self.next_batch(&mut tail, &mut rv) => next,
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
        // What the tail held is read again from `rv` by the next watch.
        self.shared.status.set_behind(&self.key, None);
        self.lagging = false;
        (rv, end)
    }

    /// Nothing received waits to be stored: not behind.
    fn caught_up(&mut self) {
        self.shared.status.set_behind(&self.key, None);
        if std::mem::take(&mut self.lagging) {
            tracing::info!(resource = %self.key, "the store has caught up with upstream");
        }
    }

    /// Takes the events received (waiting for one when none is) into one store batch and
    /// applies it. `Some` when the stream ended.
    async fn next_batch(
        &mut self,
        tail: &mut Tail,
        rv: &mut u64,
    ) -> Result<Option<WatchEnd>, Error> {
        let mut batch = Batch::new(&self.key);
        let mut end = None;
        let mut oldest = None;
        let mut received = match tail.try_recv() {
            Some(received) => received,
            None => {
                // Everything received is stored.
                self.caught_up();
                tail.recv().await
            }
        };
        loop {
            let event = match received {
                Received::Event(event, columns, at) => {
                    oldest.get_or_insert(at);
                    self.save_columns(columns).await?;
                    event
                }
                Received::End(Ok(())) => {
                    end = Some(WatchEnd::Closed);
                    break;
                }
                Received::End(Err(e)) => match batch.ops.is_empty() {
                    true => return Err(e),
                    // What came before the failure is stored first.
                    false => {
                        end = Some(WatchEnd::Failed(e));
                        break;
                    }
                },
            };
            match event {
                WatchEvent::Object(kind, object) => batch = batch.event(kind, object),
                WatchEvent::Bookmark(at) => batch = batch.bookmark(at),
                WatchEvent::Error(status) if status.code == 410 => {
                    end = Some(WatchEnd::Gone);
                    break;
                }
                WatchEvent::Error(status) => {
                    return Err(Error::Status {
                        code: status.code,
                        message: status.message,
                    });
                }
            }
            if batch.ops.len() >= MAX_BATCH {
                break;
            }
            match tail.try_recv() {
                Some(next) => received = next,
                None => break,
            }
        }
        if !batch.ops.is_empty() {
            let newest = match batch.ops.last() {
                Some(Op::Event(_, item)) => resource_version_of(&item.object),
                Some(Op::Bookmark(at)) => Some(*at),
                _ => None,
            };
            let behind = Behind {
                since_ms: oldest.unwrap_or_else(crate::now_ms),
                events: (batch.ops.len() + tail.waiting()) as u64,
                versions: newest.map_or(0, |n| n.saturating_sub(*rv)),
            };
            let waited = crate::now_ms() - behind.since_ms;
            if !self.lagging && waited > self.shared.config.max_lag.as_millis() as i64 {
                self.lagging = true;
                tracing::warn!(resource = %self.key, seconds = waited as f64 / 1000.0,
                    events = behind.events, resource_versions = behind.versions,
                    "the store is behind upstream: events wait longer than --max-sync-lag to be stored; served as stale until it catches up");
            }
            self.shared.status.set_behind(&self.key, Some(behind));
            self.apply(batch, rv).await?;
        }
        Ok(end)
    }
}
