//! Listing: a full list of one type, paged, stored as one atomic replacement of the whole set,
//! with the watch opened from the list's first page read meanwhile into a spool on disk
//! (`crate::tail`, `crate::spool`) and applied once the list is stored (the catch-up).
//!
//! A list of a large type under churn can take longer than upstream keeps history; a watch
//! opened only after it would be refused `410` and the type listed again, forever. Watching
//! from the first page on makes such a list end live.
//!
//! This module never decides what follows a list (that is `state`), and it never lets the
//! overlapping watch's events into the store before the list is stored.

use vai_store::{Batch, SyncState};

use super::record::{MAX_BATCH, Reflector};
use super::state::{OverlapEnd, OverlapNext, after_overlap};
use crate::spool::Spool;
use crate::tail::{Received, Tail};
use crate::upstream::{
    EventStream, ListPage, TABLE_ACCEPT, WatchEvent, parse_list_page, resource_version_of,
};
use crate::{Error, one_line};

/// What the watch during a list may hold in memory, not yet moved to the spool: no bound of
/// its own (the spool on disk is the buffer, and it is drained whenever the reflector is not
/// storing a page).
const OVERLAP_WAITING: usize = tokio::sync::Semaphore::MAX_PERMITS;

impl Reflector {
    /// A full list, paged, stored as the whole set; the type is then live and synced. The
    /// first page gives the list's resource version; a watch from it is opened at once and
    /// read while the rest is fetched and stored. Returns the list's version and that watch
    /// ([`Overlap`]), when it opened: what it received is for [`Reflector::catch_up`].
    pub async fn list(&mut self) -> Result<(u64, Option<Overlap>), Error> {
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
        self.set_state(SyncState::Live, None).await;
        self.shared.status.mark_synced(&self.key);
        Ok((rv, overlap))
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
                tail: Some(Tail::start(stream, OVERLAP_WAITING)),
                spool,
                columns: None,
                since: rv,
                last: rv,
                failed: false,
            }),
            Err(e) => {
                tracing::warn!(resource = %self.key, resource_version = rv, error = %one_line(&e),
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
                overlap.tail = Some(Tail::start(stream, OVERLAP_WAITING));
                overlap.since = overlap.last;
            }
            Err(e) => {
                tracing::info!(resource = %self.key, resource_version = overlap.last, error = %one_line(&e),
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
    pub async fn catch_up(
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
                    match overlap.spool.pop().map_err(Error::Spool)? {
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
                Some(stream) => overlap.tail = Some(Tail::start(stream, OVERLAP_WAITING)),
                None => {}
            }
        };
        self.save_columns(overlap.columns.take()).await?;
        tracing::info!(resource = %self.key, events = applied, spooled, resource_version = rv,
            seconds = started.elapsed().as_secs_f64(), following = stream.is_some(),
            "applied the events watched during the list");
        Ok((rv, stream.map(|s| (s, overlap.since))))
    }
}

/// The watch opened at a list's first page while the list goes on, and what it received that
/// is not stored yet. See the `spool` module.
pub(super) struct Overlap {
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
    /// Spools an event the watch received, or notes that it ended: to be renewed, or given up
    /// (see `state::after_overlap`).
    fn take(&mut self, resource: &str, received: Received) -> Result<(), Error> {
        let (end, why) = match received {
            Received::Event(WatchEvent::Error(status), ..) => {
                let why = format!("upstream answered {}: {}", status.code, status.message);
                match status.code {
                    410 => (OverlapEnd::Cut, why),
                    _ => (OverlapEnd::Failed, why),
                }
            }
            Received::Event(event, columns, _) => {
                self.columns = columns.or(self.columns.take());
                let rv = match &event {
                    WatchEvent::Object(_, item) => resource_version_of(&item.object),
                    WatchEvent::Bookmark(rv) => Some(*rv),
                    WatchEvent::Error(_) => None,
                };
                self.last = self.last.max(rv.unwrap_or(0));
                return self.spool.push(&event).map_err(Error::Spool);
            }
            Received::End(Ok(())) => (OverlapEnd::Closed, "closed".into()),
            Received::End(Err(e)) => (OverlapEnd::Failed, one_line(&e)),
        };
        self.tail = None;
        match after_overlap(end, self.since, self.last) {
            OverlapNext::GiveUp => {
                tracing::info!(resource, reason = %why,
                    "the watch during the list failed; watching again after the list");
                self.failed = true;
            }
            OverlapNext::Renew => tracing::debug!(
                resource,
                resource_version = self.last,
                "upstream ended the watch during the list; renewing it"
            ),
        }
        Ok(())
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
