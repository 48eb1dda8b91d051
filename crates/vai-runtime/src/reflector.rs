//! A resumable reflector: syncs one resource type into a vai store file with the same list/watch
//! state machine as `vai serve` (vai-sync's, not a copy), so that after a restart it resumes from
//! the stored resource version instead of relisting, and relists atomically on `410 Gone`.
//!
//! Several reflectors (for different types) may share one store file. Dropping a reflector stops
//! its sync; its data stays, readable and resumable.

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use vai_sync::{ResourceInfo, SyncConfig, Syncer};

use crate::changes::Change;
use crate::store::{Store, resource_key};

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

    /// The changes committed from now on, decoded, in commit order: [`Store::changes`].
    pub fn changes(&self) -> BoxStream<'static, Change<K>> {
        self.store.changes()
    }
}
