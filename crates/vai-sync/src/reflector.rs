//! The list/watch loop of one resource type, as an explicit state machine.
//!
//! ```text
//!   start ──(store has a list RV)──▶ Watch(last RV) ◀──────────────┐
//!     │                                 │  events → store           │ stream ended: re-watch
//!     └──(never listed)──▶ List ────────┘  410 Gone ──▶ List        │
//!                           ▲              error / upstream down ──▶ Stale, backoff ┘
//! ```
//!
//! `List` streams the initial list (`sendInitialEvents`) where upstream supports it and pages
//! through a plain list otherwise; either way the store swaps the whole set atomically
//! (deletions included). `Watch` resumes from the persisted resource version, so a restart
//! costs no relist while that version is still inside upstream's window; a stream upstream
//! ends with 410 after it made progress is watched again from its last version first (a 410
//! when that watch opens relists).
//!
//! This module never serves anything and never decides what to cache (see `discovery`).

use std::sync::Arc;
use std::time::Duration;

use vai_store::{Batch, Document, SyncState};

use crate::discovery::{ResourceInfo, table_columns_key};
use crate::upstream::{EventStream, TABLE_ACCEPT, WatchEvent, parse_list_page};
use crate::{Error, Shared};

/// Events applied in one store batch at most.
const MAX_BATCH: usize = 512;
/// Objects per page of a plain (non-streaming) list.
const PAGE_SIZE: usize = 500;
/// Objects of a streaming list handed to the store at a time (memory stays bounded by a chunk,
/// not by the list; see `vai_store::Relist`).
const LIST_CHUNK: usize = 500;

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
        streaming: true,
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
                Ok((rv, Some(stream))) => reflector.follow(rv, stream, true).await,
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
    /// Try streaming lists (cleared when upstream refuses them).
    streaming: bool,
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

    /// A full list. Returns its resource version, and the open stream when it was a streaming
    /// list (which continues as the watch).
    async fn list(&mut self) -> Result<(u64, Option<EventStream>), Error> {
        if self.state.is_none() {
            self.set_state(SyncState::Syncing, None).await;
        }
        self.shared
            .metrics
            .lists
            .with_label_values(&[&self.key])
            .inc();
        let started = std::time::Instant::now();
        let result = if self.streaming {
            match self.streaming_list().await {
                Err(Error::Status {
                    code: 400 | 403 | 422,
                    message,
                }) => {
                    tracing::info!(resource = %self.key, %message,
                        "upstream refuses streaming lists; paging a plain list");
                    self.streaming = false;
                    self.paged_list().await.map(|rv| (rv, None))
                }
                // As client-go's reflector does, any other failure of a streaming list is
                // followed by one paged list, because progress beats retrying forever: under
                // churn an overloaded apiserver's watch cache trails etcd and answers every
                // streaming list `504 Too large resource version` (seen at 500 changes/s over
                // 110,000 objects: vai never became ready), while a plain list falls back to
                // etcd. The next list streams again.
                Err(e @ (Error::Status { .. } | Error::Upstream(_) | Error::Timeout(..))) => {
                    tracing::warn!(resource = %self.key, error = %e,
                        "the streaming list failed; paging a plain list instead");
                    self.paged_list().await.map(|rv| (rv, None))
                }
                other => other.map(|(rv, stream)| (rv, Some(stream))),
            }
        } else {
            self.paged_list().await.map(|rv| (rv, None))
        };
        let (rv, stream) = result?;
        let count = self.shared.status.loaded(&self.key);
        tracing::info!(resource = %self.key, objects = count, resource_version = rv,
            seconds = started.elapsed().as_secs_f64(), "listed");
        self.failures = 0;
        self.set_state(SyncState::Live, None).await;
        self.shared.status.mark_synced(&self.key);
        Ok((rv, stream))
    }

    async fn streaming_list(&mut self) -> Result<(u64, EventStream), Error> {
        let query = self.query(&format!(
            "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&includeObject=Object&timeoutSeconds={}",
            self.watch_timeout_seconds()
        ));
        let config = &self.shared.config;
        let mut stream = EventStream::open(
            &self.shared.client,
            &query,
            config.timeout,
            config.idle_timeout,
        )
        .await?;
        let mut relist = self.shared.store.relist(&self.key)?;
        let mut chunk = Vec::with_capacity(LIST_CHUNK);
        self.shared.status.set_loaded(&self.key, 0);
        loop {
            let event = stream.next().await?;
            self.save_columns(stream.take_columns()).await?;
            match event {
                Some(WatchEvent::Object(_, object)) => {
                    chunk.push(object);
                    if chunk.len() == LIST_CHUNK {
                        relist.push(std::mem::take(&mut chunk)).await?;
                    }
                    self.shared
                        .status
                        .set_loaded(&self.key, relist.len() + chunk.len() as u64);
                }
                Some(WatchEvent::Bookmark(rv, true)) => {
                    relist.push(chunk).await?;
                    relist.finish(rv).await?;
                    return Ok((rv, stream));
                }
                Some(WatchEvent::Bookmark(..)) => {}
                Some(WatchEvent::Error(status)) => {
                    return Err(Error::Status {
                        code: status.code,
                        message: status.message,
                    });
                }
                None => {
                    return Err(Error::Upstream(
                        "the streaming list ended before its initial events did".into(),
                    ));
                }
            }
        }
    }

    async fn paged_list(&mut self) -> Result<u64, Error> {
        let mut relist = self.shared.store.relist(&self.key)?;
        let mut token: Option<String> = None;
        self.shared.status.set_loaded(&self.key, 0);
        loop {
            let mut params = format!("limit={PAGE_SIZE}&includeObject=Object");
            if let Some(t) = &token {
                params.push_str("&continue=");
                params.push_str(&percent_encode(t));
            }
            let (_, body) = crate::upstream::get(
                &self.shared.client,
                &self.query(&params),
                TABLE_ACCEPT,
                self.shared.config.list_timeout,
            )
            .await?;
            let page = parse_list_page(&body, &self.info.api_version(), &self.info.kind)?;
            self.save_columns(page.columns).await?;
            relist.push(page.items).await?;
            self.shared.status.set_loaded(&self.key, relist.len());
            match page.continue_token {
                Some(next) => token = Some(next),
                None => {
                    let rv = page.resource_version;
                    relist.finish(rv).await?;
                    return Ok(rv);
                }
            }
        }
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

    /// Opens a watch from `rv` and follows it.
    async fn watch(&mut self, rv: u64) -> Phase {
        let query = self.query(&format!(
            "watch=1&resourceVersion={rv}&allowWatchBookmarks=true&includeObject=Object&timeoutSeconds={}",
            self.watch_timeout_seconds()
        ));
        let config = &self.shared.config;
        match EventStream::open(
            &self.shared.client,
            &query,
            config.timeout,
            config.idle_timeout,
        )
        .await
        {
            Ok(stream) => {
                self.failures = 0;
                if self.state != Some(SyncState::Live) {
                    self.set_state(SyncState::Live, None).await;
                }
                self.shared.status.mark_synced(&self.key);
                self.follow(rv, stream, false).await
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
    /// `listed`: the stream is a streaming list's, whose initial events were the list.
    async fn follow(&mut self, mut rv: u64, mut stream: EventStream, listed: bool) -> Phase {
        let started_at = rv;
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
            // took, and usually gone: see docs/ARCHITECTURE.md.)
            Ok(WatchEnd::Gone) if listed || rv > started_at => {
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
        let mut events = 0u64;
        loop {
            let event = stream.next().await?;
            self.save_columns(stream.take_columns()).await?;
            match event {
                None => {
                    end = Some(WatchEnd::Closed);
                    break;
                }
                Some(WatchEvent::Object(kind, object)) => {
                    batch = batch.event(kind, object);
                    events += 1;
                }
                Some(WatchEvent::Bookmark(at, _)) => batch = batch.bookmark(at),
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
            // Applied events include bookmarks; skipped replays are older than `rv` already.
            let applied = self.shared.store.write(batch).await?;
            if let Some(last) = applied.iter().map(|e| e.resource_version).max() {
                *rv = (*rv).max(last);
            }
            self.shared
                .metrics
                .events
                .with_label_values(&[&self.key])
                .inc_by(events);
        }
        Ok(end)
    }
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
