//! A resumable reflector: syncs one resource type into a vai store file with the same list/watch
//! state machine as `vai serve` (vai-sync's, not a copy), so that after a restart it resumes from
//! the stored resource version instead of relisting, and relists atomically on `410 Gone`.
//!
//! Several reflectors (for different types) may share one store file. Dropping a reflector stops
//! its sync; its data stays, readable and resumable.

use std::collections::VecDeque;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast::error::RecvError;
use vai_store::EventKind;
use vai_sync::{ResourceInfo, SyncConfig, Syncer};

use crate::store::{Store, decode, resource_key};

/// A change to an object, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<K> {
    /// Created or updated (or, after the stream fell behind, re-announced).
    Applied(K),
    /// Deleted (its last state).
    Deleted(K),
}

/// A running sync of one type into a store.
pub struct Reflector<K: Resource> {
    syncer: Syncer,
    store: Store<K>,
}

/// Starts a reflector for `K` with default settings.
pub fn reflector<K>(client: kube::Client, store: vai_store::Store) -> Reflector<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
    K::DynamicType: Default,
{
    reflector_with(
        client,
        store,
        &K::DynamicType::default(),
        SyncConfig::default(),
        &prometheus::Registry::new(),
    )
}

/// Starts a reflector for `K` (`dyntype` for dynamic types), with sync settings and a registry
/// for its metrics (`vai_sync_lists_total`, `vai_sync_events_total`).
pub fn reflector_with<K>(
    client: kube::Client,
    store: vai_store::Store,
    dyntype: &K::DynamicType,
    config: SyncConfig,
    registry: &prometheus::Registry,
) -> Reflector<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let info = ResourceInfo {
        group: K::group(dyntype).into_owned(),
        version: K::version(dyntype).into_owned(),
        plural: K::plural(dyntype).into_owned(),
        kind: K::kind(dyntype).into_owned(),
        // Sync lists every namespace either way; scope only matters for serving.
        namespaced: true,
    };
    let typed = Store::for_key(store.clone(), resource_key::<K>(dyntype));
    let syncer = Syncer::start_types(client, store, config, registry, vec![info]);
    Reflector {
        syncer,
        store: typed,
    }
}

impl<K> Reflector<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The typed store the reflector fills (clone it freely).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Whether upstream answers, and since when (the health probe's view).
    pub fn health(&self) -> vai_sync::UpstreamHealth {
        self.syncer.health().borrow().clone()
    }

    /// The references of changed objects, for `kube::runtime::Controller::reconcile_on`: a
    /// kube-runtime controller is then triggered by what this reflector commits.
    pub fn object_refs(&self) -> BoxStream<'static, ObjectRef<K>>
    where
        K::DynamicType: Default,
    {
        self.changes()
            .map(|change| match change {
                Change::Applied(k) | Change::Deleted(k) => ObjectRef::from_obj(&k),
            })
            .boxed()
    }

    /// The changes committed from now on, decoded, in commit order — what a controller
    /// reconciles on. If the stream falls behind the store's live buffer, every current object
    /// is announced again as `Applied` (a resync), so nothing is silently missed.
    pub fn changes(&self) -> BoxStream<'static, Change<K>> {
        struct State<K: Resource> {
            events: tokio::sync::broadcast::Receiver<std::sync::Arc<[vai_store::Event]>>,
            pending: VecDeque<Change<K>>,
            store: Store<K>,
        }
        let state = State {
            events: self.store.inner().subscribe(),
            pending: VecDeque::new(),
            store: self.store.clone(),
        };
        futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(change) = state.pending.pop_front() {
                    return Some((change, state));
                }
                match state.events.recv().await {
                    Ok(batch) => {
                        for event in batch.iter().filter(|e| *e.resource == *state.store.key()) {
                            let Ok(object) = decode::<K>(&event.body) else {
                                continue;
                            };
                            match event.kind {
                                EventKind::Added | EventKind::Modified => {
                                    state.pending.push_back(Change::Applied(object))
                                }
                                EventKind::Deleted => {
                                    state.pending.push_back(Change::Deleted(object))
                                }
                                EventKind::Bookmark => {}
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let all = state.store.state();
                        state
                            .pending
                            .extend(all.into_iter().map(|o| Change::Applied((*o).clone())));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}
