//! The list/watch loop of one resource type, as an explicit state machine.
//!
//! ```text
//!   start ──(store has a list RV)──▶ Watch(last RV) ◀──────────────┐
//!     │                                 │  events → store           │ stream ended: re-watch
//!     └──(never listed)──▶ List ────────┘  410 Gone ──▶ List        │
//!                           ▲              error / upstream down ──▶ Stale, backoff ┘
//! ```
//!
//! `List` pages through a plain list and the store swaps the whole set atomically (deletions
//! included). The first page gives the list's resource version, and a watch from it opens at
//! once, read into a spool on disk while the rest of the list arrives (`tail`, `spool`); after
//! the list its events are applied and it goes on as the `Watch` — so a list that takes longer
//! than upstream keeps history (minutes, for a large type under churn) still ends live.
//! `Watch` resumes from the persisted resource version, so a restart costs no relist while
//! that version is still inside upstream's window; a stream upstream ends with 410 after it
//! made progress is watched again from its last version first (a 410 when that watch opens
//! relists).
//!
//! This module never serves anything and never decides what to cache (see `discovery`).

use std::sync::Arc;
use std::time::Duration;

use vai_store::{Batch, Document, Op, SyncState};

use crate::discovery::{ResourceInfo, table_columns_key};
use crate::spool::Spool;
use crate::tail::{Received, Tail};
use crate::upstream::{
    EventStream, ListPage, TABLE_ACCEPT, WatchEvent, parse_list_page, resource_version_of,
};
use crate::{Error, Shared};

/// Events applied in one store batch at most.
const MAX_BATCH: usize = 512;

enum Phase {
    List,
    Watch(u64),
}

/// What ended a watch.
enum WatchEnd {
    /// Upstream closed the stream normally: watch again from the last RV.
    Closed,
    /// The RV fell out of upstream's window: relist.
    Gone,
}

/// Runs the loop of one type until the task is aborted.
pub(crate) async fn run(shared: Arc<Shared>, info: ResourceInfo) {
    let mut reflector = Reflector {
        key: info.key(),
        info,
        shared,
        state: None,
        failures: 0,
        columns: None,
    };
    let mut phase = match reflector.shared.store.resource_state(&reflector.key) {
        Ok(Some(s)) if s.list_resource_version.is_some() => {
            tracing::info!(resource = %reflector.key, resource_version = s.last_resource_version,
                "resuming from the stored resource version");
            // Stored data can be served at once (stale, if upstream does not answer).
            reflector.shared.status.mark_synced(&reflector.key);
            Phase::Watch(s.last_resource_version)
        }
        _ => Phase::List,
    };
    loop {
        reflector.wait_for_upstream().await;
        phase = match phase {
            Phase::List => match reflector.list().await {
                Ok((rv, Some((stream, since)))) => reflector.follow(rv, stream, since).await,
                Ok((rv, None)) => Phase::Watch(rv),
                Err(e) => {
                    reflector.failed(e).await;
                    Phase::List
                }
            },
            Phase::Watch(rv) => reflector.watch(rv).await,
        };
    }
}

struct Reflector {
    key: String,
    info: ResourceInfo,
    shared: Arc<Shared>,
    /// The state last written to the store.
    state: Option<SyncState>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// The table column definitions last stored.
    columns: Option<Vec<u8>>,
}

impl Reflector {
    fn query(&self, params: &str) -> String {
        format!("{}?{params}", self.info.path())
    }

    fn watch_timeout_seconds(&self) -> u64 {
        // Spread re-watches so that types do not reconnect in lockstep.
        let max = self.shared.config.watch_timeout.as_secs().max(2);
        fastrand::u64(max / 2..=max)
    }

    /// Waits while the health probe says upstream does not answer, marking the type stale.
    async fn wait_for_upstream(&mut self) {
        let mut health = self.shared.health.subscribe();
        let down = health.borrow().clone();
        if down.reachable {
            return;
        }
        let error = format!(
            "upstream unreachable: {}",
            down.error.as_deref().unwrap_or("no answer")
        );
        self.set_state(SyncState::Stale, Some(error)).await;
        let _ = health.wait_for(|h| h.reachable).await;
    }

    async fn set_state(&mut self, state: SyncState, error: Option<String>) {
        let changed = self.state != Some(state);
        self.shared.status.set(&self.key, state, error.clone());
        if !changed {
            return;
        }
        if let Err(e) = self
            .shared
            .store
            .write(Batch::new(&self.key).state(state, error))
            .await
        {
            tracing::error!(resource = %self.key, error = %e, "cannot record the sync state");
            return;
        }
        self.state = Some(state);
    }

    /// Records a failure, marks the type stale and sleeps the backoff.
    async fn failed(&mut self, error: Error) {
        self.failures += 1;
        tracing::warn!(resource = %self.key, error = %error, failures = self.failures,
            "sync failed; serving last-good data");
        self.set_state(SyncState::Stale, Some(error.to_string()))
            .await;
        // Full jitter over an exponential ceiling: 0.2 s doubling to 30 s.
        let ceiling = Duration::from_millis(200)
            .saturating_mul(1 << self.failures.min(8))
            .min(Duration::from_secs(30));
        let delay = ceiling.mul_f64(fastrand::f64());
        let mut health = self.shared.health.subscribe();
        // A change of upstream's reachability ends the wait early: back, retry at once; gone,
        // the loop waits for it instead.
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = health.changed() => {}
        }
    }

    /// A full list, paged. The first page gives the list's resource version; a watch from it
    /// is opened at once and read while the rest is fetched and stored ([`Overlap`]), and what
    /// it received is applied after the list. Returns the version the store reached and that
    /// watch with the version it was opened at, when it is still open (it continues as the
    /// watch).
    async fn list(&mut self) -> Result<(u64, Option<(EventStream, u64)>), Error> {
        if self.state.is_none() {
            self.set_state(SyncState::Syncing, None).await;
        }
        self.shared
            .metrics
            .lists
            .with_label_values(&[&self.key])
            .inc();
        let started = std::time::Instant::now();
        let mut relist = self.shared.store.relist(&self.key)?;
        self.shared.status.set_loaded(&self.key, 0);
        let mut overlap = None;
        let mut page = self.page(None, &mut overlap).await?;
        let rv = page.resource_version;
        if page.continue_token.is_some() {
            overlap = self.overlap(rv).await;
        }
        loop {
            self.save_columns(page.columns.take()).await?;
            relist.push(page.items).await?;
            self.shared.status.set_loaded(&self.key, relist.len());
            match page.continue_token {
                Some(token) => page = self.page(Some(&token), &mut overlap).await?,
                None => break,
            }
        }
        relist.finish(rv).await?;
        let count = self.shared.status.loaded(&self.key);
        tracing::info!(resource = %self.key, objects = count, resource_version = rv,
            seconds = started.elapsed().as_secs_f64(), "listed");
        self.failures = 0;
        self.set_state(SyncState::Live, None).await;
        self.shared.status.mark_synced(&self.key);
        match overlap {
            Some(overlap) => self.catch_up(overlap, rv).await,
            None => Ok((rv, None)),
        }
    }

    /// Opens the watch that overlaps a list from its first page's version, in a spool beside
    /// the database. `None` (the list goes on; a watch opens after it) when it cannot.
    async fn overlap(&mut self, rv: u64) -> Option<Overlap> {
        let path = self.shared.store.path();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let spool = match Spool::new(dir) {
            Ok(spool) => spool,
            Err(e) => {
                tracing::warn!(resource = %self.key, dir = %dir.display(), error = %e,
                    "cannot create a spool for the watch during the list; watching after it");
                return None;
            }
        };
        match self.open_watch(rv).await {
            Ok(stream) => Some(Overlap {
                tail: Some(Tail::start(stream)),
                spool,
                columns: None,
                since: rv,
                last: rv,
                failed: false,
            }),
            Err(e) => {
                tracing::warn!(resource = %self.key, resource_version = rv, error = %e,
                    "cannot watch during the list; watching after it");
                None
            }
        }
    }

    /// Opens the overlapping watch again from the newest version it delivered, when upstream
    /// ended it (its `timeoutSeconds` can be shorter than a list).
    async fn renew(&mut self, overlap: &mut Overlap) {
        if overlap.tail.is_some() || overlap.failed {
            return;
        }
        match self.open_watch(overlap.last).await {
            Ok(stream) => {
                overlap.tail = Some(Tail::start(stream));
                overlap.since = overlap.last;
            }
            Err(e) => {
                tracing::info!(resource = %self.key, resource_version = overlap.last, error = %e,
                    "cannot renew the watch during the list; watching again after it");
                overlap.failed = true;
            }
        }
    }

    /// One page of the list, spooling what the overlapping watch receives meanwhile.
    async fn page(
        &mut self,
        token: Option<&str>,
        overlap: &mut Option<Overlap>,
    ) -> Result<ListPage, Error> {
        let mut params = format!(
            "limit={}&includeObject=Object",
            self.shared.config.list_page_size
        );
        if let Some(t) = token {
            params.push_str("&continue=");
            params.push_str(&percent_encode(t));
        }
        let (client, query) = (self.shared.client.clone(), self.query(&params));
        let fetch = crate::upstream::get(
            &client,
            &query,
            TABLE_ACCEPT,
            self.shared.config.list_timeout,
        );
        tokio::pin!(fetch);
        let (_, body) = loop {
            if let Some(o) = overlap.as_mut() {
                self.renew(o).await;
            }
            let Some(o) = overlap.as_mut().filter(|o| o.tail.is_some()) else {
                break fetch.await?;
            };
            let tail = o.tail.as_mut().expect("filtered on a tail");
            tokio::select! {
                fetched = &mut fetch => break fetched?,
                received = tail.recv() => o.take(&self.key, received)?,
            }
        };
        parse_list_page(&body, &self.info.api_version(), &self.info.kind)
    }

    /// Applies what the overlapping watch received during the list (older events are skipped
    /// by the store), receiving more meanwhile, until nothing waits; returns the version
    /// reached and the watch, when it is still open, with the version it was opened at.
    async fn catch_up(
        &mut self,
        mut overlap: Overlap,
        listed: u64,
    ) -> Result<(u64, Option<(EventStream, u64)>), Error> {
        let mut rv = listed;
        let (spooled, started) = (overlap.spool.len(), std::time::Instant::now());
        let mut applied = 0u64;
        let stream = loop {
            self.renew(&mut overlap).await;
            while let Some(received) = overlap.tail.as_mut().and_then(Tail::try_recv) {
                overlap.take(&self.key, received)?;
            }
            if overlap.spool.len() > 0 {
                let mut batch = Batch::new(&self.key);
                while batch.ops.len() < MAX_BATCH {
                    match overlap.spool.pop().map_err(spool_error)? {
                        Some(WatchEvent::Object(kind, object)) => batch = batch.event(kind, object),
                        Some(WatchEvent::Bookmark(at)) => batch = batch.bookmark(at),
                        Some(WatchEvent::Error(_)) | None => break,
                    }
                }
                applied += self.apply(batch, &mut rv).await?;
                continue;
            }
            // Caught up: take the watch back (unless it failed; one that ended is renewed).
            let Some(tail) = overlap.tail.take() else {
                if overlap.failed {
                    break None;
                }
                continue;
            };
            let (open, rest) = tail.into_stream().await;
            let more = !rest.is_empty();
            for received in rest {
                overlap.take(&self.key, received)?;
            }
            match open {
                Some(stream) if !more => break Some(stream),
                Some(stream) => overlap.tail = Some(Tail::start(stream)),
                None => {}
            }
        };
        self.save_columns(overlap.columns.take()).await?;
        tracing::info!(resource = %self.key, events = applied, spooled, resource_version = rv,
            seconds = started.elapsed().as_secs_f64(), following = stream.is_some(),
            "applied the events watched during the list");
        Ok((rv, stream.map(|s| (s, overlap.since))))
    }

    /// Stores the table column definitions upstream sent (they come with the first event or
    /// page of each request; kept only when they changed).
    async fn save_columns(&mut self, columns: Option<Vec<u8>>) -> Result<(), Error> {
        let Some(columns) = columns.filter(|c| self.columns.as_ref() != Some(c)) else {
            return Ok(());
        };
        self.shared
            .store
            .put_documents(vec![Document {
                key: table_columns_key(&self.key),
                content_type: "application/json".into(),
                body: columns.clone(),
            }])
            .await?;
        self.columns = Some(columns);
        Ok(())
    }

    /// Opens a watch of the events after `rv`.
    async fn open_watch(&self, rv: u64) -> Result<EventStream, Error> {
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

    /// Opens a watch from `rv` and follows it.
    async fn watch(&mut self, rv: u64) -> Phase {
        match self.open_watch(rv).await {
            Ok(stream) => {
                self.failures = 0;
                if self.state != Some(SyncState::Live) {
                    self.set_state(SyncState::Live, None).await;
                }
                self.shared.status.mark_synced(&self.key);
                self.follow(rv, stream, rv).await
            }
            Err(Error::Status { code: 410, .. }) => {
                tracing::info!(resource = %self.key, resource_version = rv,
                    "resource version expired upstream (410); relisting");
                Phase::List
            }
            Err(e) => {
                self.failed(e).await;
                Phase::Watch(rv)
            }
        }
    }

    /// Applies a watch stream's events to the store until it ends; returns what comes next.
    /// `since`: the version the stream was opened at (`rv` is where the store is).
    async fn follow(&mut self, mut rv: u64, mut stream: EventStream, since: u64) -> Phase {
        let mut health = self.shared.health.subscribe();
        let end = loop {
            let next = tokio::select! {
                next = self.next_batch(&mut stream, &mut rv) => next,
                _ = health.wait_for(|h| !h.reachable) => {
                    break Err(Error::Upstream("upstream stopped answering".into()));
                }
            };
            match next {
                Ok(Some(end)) => break Ok(end),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        };
        match end {
            Ok(WatchEnd::Closed) => Phase::Watch(rv),
            // A stream that delivered events and then ended with 410 was cut for falling
            // behind (an apiserver does so to a watcher that reads slower than events come),
            // not necessarily because its version left upstream's window: after an ordinary
            // watch that version is recent, and re-watching from it costs one request where a
            // relist costs a full list. If the version is gone, the new watch is refused 410
            // and that relists. (After a long streaming list the version is as old as the list
            Ok(WatchEnd::Gone) if rv > since => {
                tracing::info!(resource = %self.key, resource_version = rv,
                    "upstream ended the watch with 410 after it made progress; re-watching from the last version");
                Phase::Watch(rv)
            }
            Ok(WatchEnd::Gone) => {
                tracing::info!(resource = %self.key, resource_version = rv,
                    "resource version expired upstream (410); relisting");
                Phase::List
            }
            Err(e) => {
                self.failed(e).await;
                Phase::Watch(rv)
            }
        }
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

    /// Writes a batch of watch events and bookmarks; `rv` advances to the newest version
    /// applied (the store skips replays older than it already holds). Returns the events in it.
    async fn apply(&mut self, batch: Batch, rv: &mut u64) -> Result<u64, Error> {
        let events = batch
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Event(..)))
            .count() as u64;
        let applied = self.shared.store.write(batch).await?;
        if let Some(last) = applied.iter().map(|e| e.resource_version).max() {
            *rv = (*rv).max(last);
        }
        self.shared
            .metrics
            .events
            .with_label_values(&[&self.key])
            .inc_by(events);
        Ok(events)
    }
}

/// The watch opened at a list's first page while the list goes on, and what it received that
/// is not stored yet. See the `spool` module.
struct Overlap {
    /// The watch, until it ends (then renewed) or fails.
    tail: Option<Tail>,
    spool: Spool,
    /// The table columns the watch sent last (saved once the list is stored).
    columns: Option<Vec<u8>>,
    /// The version the watch was opened at, and the newest it delivered.
    since: u64,
    last: u64,
    /// The watch failed: what it spooled holds, but it is not renewed.
    failed: bool,
}

impl Overlap {
    /// Spools an event the watch received, or notes that it ended (to be renewed: upstream
    /// closed it, or cut it with 410 after it delivered) or failed.
    fn take(&mut self, resource: &str, received: Received) -> Result<(), Error> {
        let failure = match received {
            // Cut for reading slowly, after progress: renewed from the newest version.
            Received::Event(WatchEvent::Error(status), _)
                if status.code == 410 && self.last > self.since =>
            {
                None
            }
            Received::Event(WatchEvent::Error(status), _) => Some(format!(
                "upstream answered {}: {}",
                status.code, status.message
            )),
            Received::Event(event, columns) => {
                self.columns = columns.or(self.columns.take());
                let rv = match &event {
                    WatchEvent::Object(_, item) => resource_version_of(&item.object),
                    WatchEvent::Bookmark(rv) => Some(*rv),
                    WatchEvent::Error(_) => None,
                };
                self.last = self.last.max(rv.unwrap_or(0));
                return self.spool.push(&event).map_err(spool_error);
            }
            Received::End(Ok(())) => None,
            Received::End(Err(e)) => Some(e.to_string()),
        };
        self.tail = None;
        match failure {
            Some(why) => {
                tracing::info!(resource, reason = %why,
                    "the watch during the list failed; watching again after the list");
                self.failed = true;
            }
            None => tracing::debug!(
                resource,
                resource_version = self.last,
                "upstream ended the watch during the list; renewing it"
            ),
        }
        Ok(())
    }
}

fn spool_error(e: std::io::Error) -> Error {
    Error::Upstream(format!("spooling watch events during a list: {e}"))
}

/// Percent-encodes a query value (continue tokens are base64 and may hold `+`, `/`, `=`).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_are_percent_encoded() {
        assert_eq!(percent_encode("a+b/c="), "a%2Bb%2Fc%3D");
        assert_eq!(percent_encode("Az09-_.~"), "Az09-_.~");
    }
}
