//! kube-rs components backed by vai's SQLite store.
//!
//! `kube::runtime::reflector` keeps every object in memory and rebuilds it from a full list at
//! every start. This crate keeps them in a SQLite file instead (decoded when read), resumes from
//! the stored resource version after a restart (no relist while upstream still holds it), and
//! adds what kube-runtime lacks: selectors and queries over the cache, client-go's indexers, and
//! reads as of an earlier resource version.
//!
//! - [`Store`]: the typed reader — `get`, `state`, `find`, `len`, `is_empty`,
//!   `wait_until_ready` as on kube-runtime's store, plus `list`/`each` (selectors), `page`
//!   (filters, sorts, offset pages with totals), `try_get`/`state_at` (versioned reads) and
//!   [`indexer`]s.
//! - [`reflector()`]: syncs one type into a store file with vai-sync's list/watch state
//!   machine (the one `vai serve` runs); [`Reflector::changes`] streams what changes, for a
//!   controller to act on.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use futures::StreamExt;
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::runtime::reflector::ObjectRef;
//! use vai_runtime::{Change, reflector};
//!
//! let client = kube::Client::try_default().await?;
//! let db = vai_store::Store::open("pods.db".as_ref(), Default::default())?;
//! let pods = reflector::<Pod>(client, db);
//! let store = pods.store();
//! store.wait_until_ready().await?; // at once after a restart: the file already holds them
//! println!("{} pods", store.len());
//! if let Some(pod) = store.get(&ObjectRef::new("web-0").within("default")) {
//!     println!("web-0 is {:?}", pod.status.as_ref().and_then(|s| s.phase.clone()));
//! }
//! // Index pods by node, as client-go's indexers do.
//! store.indexers().add([(
//!     "node".to_string(),
//!     std::sync::Arc::new(|p: &Pod| p.spec.iter().filter_map(|s| s.node_name.clone()).collect())
//!         as vai_runtime::indexer::IndexFn<Pod>,
//! )])?;
//! let on_node = store.indexers().by_index("node", "node-1")?;
//! println!("{} pods on node-1", on_node.len());
//! let mut changes = pods.changes();
//! while let Some(change) = changes.next().await {
//!     match change {
//!         Change::Applied(pod) => println!("applied {:?}", pod.metadata.name),
//!         Change::Deleted(pod) => println!("deleted {:?}", pod.metadata.name),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! This crate reads and syncs; it never serves HTTP (that is `vai-server`).

mod changes;
pub mod indexer;
mod reflector;
mod store;

pub use changes::Change;
pub use reflector::{Reflector, reflector, reflector_with};
pub use store::{Store, resource_key};
pub use vai_store::{Column, Condition, Filter, ListRequest, Operator, PageRequest, SortKey};

/// Decodes stored JSON into `K`.
pub(crate) fn decode<K: serde::de::DeserializeOwned>(body: &[u8]) -> Result<K, Error> {
    serde_json::from_slice(body).map_err(Error::Decode)
}

/// What can go wrong reading the cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed (or the asked resource version is outside the history window).
    #[error(transparent)]
    Store(#[from] vai_store::Error),
    /// A stored object does not decode as the asked type.
    #[error("a stored object does not decode: {0}")]
    Decode(#[source] serde_json::Error),
    /// An indexer problem (unknown index, a name used twice).
    #[error("{0}")]
    Index(String),
}
