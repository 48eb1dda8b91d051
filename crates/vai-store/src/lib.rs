//! The storage engine of vai: Kubernetes objects in an embedded SQLite database.
//!
//! Events go in, snapshot-consistent reads come out. The store knows nothing of HTTP or of the
//! kube client; it keeps what upstream sent and answers with the apiserver's semantics.
//!
//! - **Writes** ([`Store::write`]) are batches per resource type — ADDED/MODIFIED/DELETED with
//!   the object's JSON, BOOKMARK with a resource version, and *replace* (a full relist) that
//!   swaps the set atomically and yields the diff as events. One thread owns the only write
//!   connection and group-commits (`writer`); subscribers ([`Store::subscribe`]) see events
//!   after the commit, in order.
//! - **Reads** ([`Store::get`], [`Store::list`]) each run in one read transaction on a pool of
//!   read-only connections (readers beyond its size wait in turn: `pool`), so a list is one
//!   snapshot; `limit`/`continue` chains stay on the
//!   first page's snapshot; a list can be asked "as of" any resource version in the history
//!   window (`sql`).
//! - **History**: every version is kept until it falls out of the window (count and age
//!   limits), so watches resume from a resource version ([`Store::watch`]) with no gap and no
//!   duplicate; older than the window is [`Error::Gone`], as upstream answers `410`.
//! - **Fields** ([`fields`], [`Store::fields`]): what field selectors and the query API can
//!   name per type — built in, declared by CRDs ([`Store::declare_fields`]) or configured
//!   ([`StoreConfig::indexed_fields`]) — indexed in the label table, and reindexed (stored
//!   objects backfilled) when a type's fields change.
//! - **Files** (`schema`): private (0600), marked and versioned; foreign, corrupt or newer
//!   files are refused with an error that says so.
//! - **Encryption at rest** (`sealed`, [`Encryption`]): the bodies of the types a key file
//!   names (`secrets`) are AES-256-GCM encrypted before SQLite sees them; names, namespaces and
//!   labels stay readable for the indexes. A missing or wrong key is refused at open.
//!
//! ```
//! # fn main() -> Result<(), vai_store::Error> {
//! use vai_store::{Batch, ListRequest, Store, StoreConfig};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(&dir.path().join("vai.db"), StoreConfig::default())?;
//! let pod = br#"{"kind":"Pod","metadata":{"name":"web","namespace":"default","resourceVersion":"10","labels":{"app":"web"}}}"#;
//! store.write_blocking(Batch::new("/v1/pods").replace(10, vec![pod.to_vec()]))?;
//! let mut names = Vec::new();
//! let page = store.list("/v1/pods", &ListRequest::default(), |_, name, _| {
//!     names.push(name.to_string());
//!     Ok(())
//! })?;
//! assert_eq!((names, page.resource_version), (vec!["web".to_string()], 10));
//! # Ok(()) }
//! ```

mod backend;
mod batch;
mod checkpoint;
mod codec;
mod comma_list;
mod config;
mod counts;
mod encryption;
mod error;
pub mod fields;
pub mod keys;
mod matching;
pub mod object;
mod pool;
mod postgres;
mod registry;
mod relist;
mod request;
mod schema;
mod sealed;
pub mod selector;
mod snapshot;
mod sql;
mod sqlite;
mod store;
mod watch;
mod work;
mod writer;

pub use batch::{
    Attributes, Batch, Document, Event, EventKind, Item, Op, ResourceState, SyncState,
};
pub use checkpoint::{Held, WritesHeld};
pub use codec::{Compression, Footprint};
pub use config::StoreConfig;
pub use encryption::Encryption;
pub use error::{Error, Result};
pub use fields::{ConfiguredField, FieldSet};
pub use object::StoredObject;
pub use relist::Relist;
pub use request::{
    Column, Condition, Filter, ListMeta, ListRequest, ListSink, Operator, Pace, PageMeta,
    PageRequest, Row, SortKey, Summary,
};
pub use selector::{FieldSelector, LabelSelector};
pub use snapshot::Snapshot;
pub use store::Store;
pub use watch::Watch;

/// What the `floor` benchmark needs to measure SQLite itself under the store's schema: a
/// write connection to a file the store's own schema code prepared. Not part of the API (it
/// names the engine's connection type, which nothing else public does); hidden so that the
/// bench, a separate crate, can reach it without making `schema` public.
#[doc(hidden)]
pub mod bench_support {
    /// Opens (creating and migrating if needed) a database file for writing, as the store
    /// does, and returns the raw connection.
    pub fn open_writer(path: &std::path::Path) -> crate::Result<rusqlite::Connection> {
        crate::schema::open_writer(path)
    }
}
