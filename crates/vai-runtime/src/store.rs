//! A typed view of one resource type in a vai store, with kube-runtime's reader surface.
//!
//! Objects live in SQLite, not in memory: each read decodes what it returns. `get`, `state`,
//! `find`, `len`, `is_empty` and `wait_until_ready` mean what they mean on
//! `kube::runtime::reflector::Store`; queries, indexers and versioned reads are added.
//! Methods named as kube-runtime's are infallible like them (a failed read is logged and
//! reads as absent); the others return [`Error`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use vai_store::{ListRequest, PageMeta, PageRequest};

use crate::indexer::Indexers;
use crate::{Error, decode};

/// Objects of type `K` in a vai store. Cheap to clone; clones share indexers.
pub struct Store<K: Resource> {
    store: vai_store::Store,
    key: String,
    indexers: Arc<Indexers<K>>,
    _kind: PhantomData<fn() -> K>,
}

impl<K: Resource> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            store: self.store.clone(),
            key: self.key.clone(),
            indexers: self.indexers.clone(),
            _kind: PhantomData,
        }
    }
}

/// The store key of a kube-rs resource type (`group/version/plural`, as vai-sync keys it).
pub fn resource_key<K: Resource>(dyntype: &K::DynamicType) -> String {
    format!(
        "{}/{}/{}",
        K::group(dyntype),
        K::version(dyntype),
        K::plural(dyntype)
    )
}

impl<K> Store<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// The type `K` (for `DynamicObject`, see [`Store::for_key`]) in `store`.
    pub fn new(store: vai_store::Store) -> Store<K> {
        Store::for_key(store, resource_key::<K>(&K::DynamicType::default()))
    }
}

impl<K> Store<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The objects stored under a resource key (`group/version/plural`).
    pub fn for_key(store: vai_store::Store, key: String) -> Store<K> {
        Store {
            indexers: Arc::new(Indexers::new(store.clone(), key.clone())),
            store,
            key,
            _kind: PhantomData,
        }
    }

    /// The store key of this type.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The underlying store (for queries this view does not wrap).
    pub fn inner(&self) -> &vai_store::Store {
        &self.store
    }

    fn logged<T>(&self, what: &str, result: Result<T, Error>, fallback: T) -> T {
        result.unwrap_or_else(|e| {
            tracing::warn!(resource = %self.key, error = %e, "{what} failed");
            fallback
        })
    }

    /// The object a reference names, decoded, if it is stored.
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        let found = self.try_get(key.namespace.as_deref(), &key.name, None);
        self.logged("get", found, None).map(Arc::new)
    }

    /// One object, now (`resource_version: None`) or as it was at a resource version inside
    /// the history window.
    pub fn try_get(
        &self,
        namespace: Option<&str>,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<Option<K>, Error> {
        match self
            .store
            .get(&self.key, namespace.unwrap_or(""), name, resource_version)
        {
            Ok(Some(body)) => decode(&body).map(Some),
            Ok(None) | Err(vai_store::Error::UnknownResource(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored object, in Kubernetes key order.
    pub fn state(&self) -> Vec<Arc<K>> {
        let all = self.list(&ListRequest::default());
        self.logged("state", all, Vec::new())
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    /// The first object (in key order) that `predicate` accepts.
    pub fn find<P: Fn(&K) -> bool>(&self, predicate: P) -> Option<Arc<K>> {
        let mut found = None;
        let scan = self.each(&ListRequest::default(), |object| {
            if predicate(&object) {
                found = Some(object);
                return Ok(false);
            }
            Ok(true)
        });
        self.logged("find", scan, ());
        found.map(Arc::new)
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        let n = match self.store.count(&self.key) {
            Ok(n) => Ok(n as usize),
            Err(e) => Err(e.into()),
        };
        self.logged("len", n, 0)
    }

    /// Whether no object is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the type has been listed once (now or in an earlier run: the store
    /// resumes), like kube-runtime's store after its first relist.
    pub async fn wait_until_ready(&self) -> Result<(), Error> {
        let mut events = self.store.subscribe();
        loop {
            if self.is_ready()? {
                return Ok(());
            }
            // A commit may carry the first list; a timeout re-checks in case events lagged.
            let _ = tokio::time::timeout(Duration::from_millis(250), events.recv()).await;
        }
    }

    /// Whether the type has been listed once.
    pub fn is_ready(&self) -> Result<bool, Error> {
        Ok(self
            .store
            .resource_state(&self.key)?
            .is_some_and(|s| s.list_resource_version.is_some()))
    }

    /// Calls `each` with every object a list request selects (namespace, label and field
    /// selectors, `resource_version` for an earlier snapshot), decoded one at a time, until it
    /// returns `false`.
    pub fn each(
        &self,
        request: &ListRequest,
        mut each: impl FnMut(K) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let mut failure = None;
        let listed = self.store.list(&self.key, request, |_, _, body| {
            let go_on = decode(body).and_then(&mut each);
            match go_on {
                Ok(true) => Ok(()),
                Ok(false) => Err(vai_store::Error::Closed),
                Err(e) => {
                    failure = Some(e);
                    Err(vai_store::Error::Closed)
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        match listed {
            Ok(_) | Err(vai_store::Error::Closed) | Err(vai_store::Error::UnknownResource(_)) => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The objects a list request selects, decoded.
    pub fn list(&self, request: &ListRequest) -> Result<Vec<K>, Error> {
        let mut out = Vec::new();
        self.each(request, |object| {
            out.push(object);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every object as it was at a resource version inside the history window (time travel).
    pub fn state_at(&self, resource_version: u64) -> Result<Vec<K>, Error> {
        self.list(&ListRequest {
            resource_version: Some(resource_version),
            ..ListRequest::default()
        })
    }

    /// A page for a UI: filters, sorts, an offset page and the total count, in one snapshot.
    ///
    /// Filters and sorts name `metadata` fields, labels and the type's indexed fields: the
    /// built-in ones, those its CRD declares selectable, and those configured in the store's
    /// [`vai_store::StoreConfig::indexed_fields`]:
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use k8s_openapi::api::core::v1::Pod;
    /// use vai_runtime::{Column, Condition, Filter, Operator, PageRequest};
    /// use vai_store::{Batch, ConfiguredField, StoreConfig};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let config = StoreConfig {
    ///     indexed_fields: ConfiguredField::parse_list("pods=spec.serviceAccountName")?,
    ///     ..StoreConfig::default()
    /// };
    /// let db = vai_store::Store::open(&dir.path().join("pods.db"), config)?;
    /// let pod = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","resourceVersion":"5"},"spec":{"serviceAccountName":"robot","containers":[]}}"#;
    /// db.write_blocking(Batch::new("/v1/pods").replace(5, vec![pod.to_vec()]))?;
    ///
    /// let pods = vai_runtime::Store::<Pod>::new(db.clone());
    /// let column = Column::parse_for(&db.fields(pods.key()), "spec.serviceAccountName")?;
    /// let robots = PageRequest {
    ///     filters: vec![Filter(vec![Condition {
    ///         column,
    ///         operator: Operator::Eq,
    ///         values: vec!["robot".into()],
    ///     }])],
    ///     ..PageRequest::default()
    /// };
    /// let (page, meta) = pods.page(&robots)?;
    /// assert_eq!((page.len(), meta.total), (1, 1));
    /// # Ok(()) }
    /// ```
    pub fn page(&self, request: &PageRequest) -> Result<(Vec<K>, PageMeta), Error> {
        let mut out = Vec::new();
        let mut failure = None;
        let meta = self.store.page(&self.key, request, |_, _, body| {
            match decode(body) {
                Ok(object) => out.push(object),
                Err(e) => failure = Some(e),
            }
            Ok(())
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok((out, meta)),
        }
    }

    /// The indexers of this store (see [`crate::indexer`]).
    pub fn indexers(&self) -> &Indexers<K> {
        &self.indexers
    }
}
