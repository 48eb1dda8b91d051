//! The reflector of one type, and what every phase of its loop records: the sync state (in the
//! store and on the status board), the table column definitions, the watch events applied,
//! and the waits (for upstream to answer, and the backoff after a failure).
//!
//! This module never decides what the loop does next (that is `state`) and never talks to
//! upstream (that is `list` and `watch`).

use std::sync::Arc;
use std::time::Duration;

use vai_store::{Batch, Document, Op, SyncState};

use crate::discovery::ResourceInfo;
use crate::{Error, Shared, one_line};

/// Events applied in one store batch (one transaction) at most. A backlog (a spool after a
/// list, a watch the store fell behind) goes faster in larger transactions: the scale bench's
/// 20,000 random modifications of 100,000 pods took 3,600 / 5,100 events/s (plain /
/// compressed) in batches of 500 and 6,200 / 9,900 in batches of 2,000.
pub(super) const MAX_BATCH: usize = 2048;

/// The loop of one type: what it shares with the others, and what it last wrote.
pub(super) struct Reflector {
    pub key: String,
    pub info: ResourceInfo,
    pub shared: Arc<Shared>,
    /// The state last written to the store.
    pub state: Option<SyncState>,
    /// The table column definitions last stored.
    columns: Option<Vec<u8>>,
    /// Its store is behind its watch past `SyncConfig::max_lag` (logged once, until it has
    /// caught up).
    pub lagging: bool,
}

impl Reflector {
    /// The reflector of `info`, with nothing recorded yet.
    pub fn new(shared: Arc<Shared>, info: ResourceInfo) -> Reflector {
        Reflector {
            key: info.key(),
            info,
            shared,
            state: None,
            columns: None,
            lagging: false,
        }
    }

    /// The last version the store holds, when it holds a whole set of the type (it was listed
    /// before); `None` when it must be listed.
    pub fn stored_version(&self) -> Option<u64> {
        match self.shared.store.resource_state(&self.key) {
            Ok(Some(s)) if s.list_resource_version.is_some() => Some(s.last_resource_version),
            _ => None,
        }
    }

    /// The type's path with a query.
    pub fn query(&self, params: &str) -> String {
        format!("{}?{params}", self.info.path())
    }

    /// Waits while the health probe says upstream does not answer, marking the type stale.
    pub async fn wait_for_upstream(&mut self) {
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

    /// Takes this type's place in the queue of reconnects (see `crate::admission`): before
    /// waiting for upstream, so that the order is decided among all who waited.
    pub fn queue(&self) -> crate::admission::Ticket {
        self.shared.admission.queue(&self.key)
    }

    /// Waits for this type's turn to reconnect.
    pub async fn turn(&self, ticket: crate::admission::Ticket) -> crate::admission::Permit {
        let status = &self.shared.status;
        let permit = ticket.admitted(|key| status.last_read(key)).await;
        tracing::debug!(resource = %self.key, "its turn to reconnect");
        permit
    }

    /// Records the sync state on the status board, and in the store when it changed.
    pub async fn set_state(&mut self, state: SyncState, error: Option<String>) {
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
            tracing::error!(resource = %self.key, error = %one_line(&e), "cannot record the sync state");
            return;
        }
        self.state = Some(state);
    }

    /// Records a failure (the `failures`-th in a row), marks the type stale and waits a random
    /// time below `ceiling` (full jitter).
    pub async fn back_off(&mut self, error: Error, failures: u32, ceiling: Duration) {
        let error = one_line(&error);
        tracing::warn!(resource = %self.key, error = %error, failures,
            "sync failed; serving last-good data");
        self.set_state(SyncState::Stale, Some(error)).await;
        let delay = ceiling.mul_f64(fastrand::f64());
        let mut health = self.shared.health.subscribe();
        // A change of upstream's reachability ends the wait early: back, retry at once; gone,
        // the loop waits for it instead.
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = health.changed() => {}
        }
    }

    /// Stores the table column definitions upstream sent (they come with the first event or
    /// page of each request; kept only when they changed).
    pub async fn save_columns(&mut self, columns: Option<Vec<u8>>) -> Result<(), Error> {
        let Some(columns) = columns.filter(|c| self.columns.as_ref() != Some(c)) else {
            return Ok(());
        };
        self.shared
            .store
            .put_documents(vec![Document {
                key: vai_store::keys::table_columns(&self.key),
                content_type: "application/json".into(),
                body: columns.clone(),
            }])
            .await?;
        self.columns = Some(columns);
        Ok(())
    }

    /// Writes a batch of watch events and bookmarks; `rv` advances to the newest version
    /// applied (the store skips replays older than it already holds). Returns the events in it.
    pub async fn apply(&mut self, batch: Batch, rv: &mut u64) -> Result<u64, Error> {
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
