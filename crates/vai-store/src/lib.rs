//! The storage engine of vai: Kubernetes objects in an embedded SQLite database.
//!
//! Events go in, snapshot-consistent reads come out. The store knows nothing of HTTP or of the
//! kube client; it keeps what upstream sent and answers with the apiserver's semantics.
//!
//! - **Writes** ([`Store::write`]) are batches per resource type — ADDED/MODIFIED/DELETED with
//!   the object's JSON, BOOKMARK with a resource version, and *replace* (a full relist) that
//!   swaps the set atomically and yields the diff as events. One thread owns the only write
//!   connection and group-commits ([`writer`]); subscribers ([`Store::subscribe`]) see events
//!   after the commit, in order.
//! - **Reads** ([`Store::get`], [`Store::list`]) each run in one read transaction on a pool of
//!   read-only connections (readers beyond its size wait in turn: `pool`), so a list is one
//!   snapshot; `limit`/`continue` chains stay on the
//!   first page's snapshot; a list can be asked "as of" any resource version in the history
//!   window ([`query`]).
//! - **History**: every version is kept until it falls out of the window (count and age
//!   limits), so watches resume from a resource version ([`Store::watch`]) with no gap and no
//!   duplicate; older than the window is [`Error::Gone`], as upstream answers `410`.
//! - **Fields** ([`fields`], [`Store::fields`]): what field selectors and the query API can
//!   name per type — built in, declared by CRDs ([`Store::declare_fields`]) or configured
//!   ([`StoreConfig::indexed_fields`]) — indexed in the label table, and reindexed (stored
//!   objects backfilled) when a type's fields change.
//! - **Files** ([`schema`]): private (0600), marked and versioned; foreign, corrupt or newer
//!   files are refused with an error that says so.
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

mod checkpoint;
mod counts;
pub mod fields;
pub mod object;
pub mod page;
mod pool;
pub mod query;
mod registry;
mod relist;
pub mod schema;
pub mod selector;
mod watch;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::TransactionBehavior;
use tokio::sync::{broadcast, oneshot};

pub use fields::{ConfiguredField, FieldSet};
pub use object::StoredObject;
pub use page::{Column, Condition, Filter, Operator, PageMeta, PageRequest, SortKey};
pub use query::{ListMeta, ListRequest, Row};
pub use relist::Relist;
pub use selector::{FieldSelector, LabelSelector};
pub use watch::Watch;
use writer::{ParsedOp, Work, WriteRequest, Writer};

/// Takes the exclusive lock that makes one process the file's only writer. The lock is held
/// by an open file (`<db>.lock`, created 0600), so the kernel releases it when the process
/// dies, however it dies.
fn lock_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| Error::Io(PathBuf::from(&lock_path).display().to_string(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(path.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io(
            PathBuf::from(&lock_path).display().to_string(),
            e,
        )),
    }
}

/// What the store can answer instead of data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file is not a vai database (not SQLite, or another program's database).
    #[error(
        "{0} is not a vai database (hint: point --db at a new or a vai file; nothing was changed)"
    )]
    ForeignFile(String),
    /// The file is damaged.
    #[error("{0} is corrupt (hint: move it aside; vai rebuilds a cache from the cluster)")]
    Corrupt(String),
    /// The file was written by a newer vai.
    #[error(
        "{path} has schema version {found}, this vai understands up to {supported} (hint: use a newer vai)"
    )]
    NewerSchema {
        /// The file.
        path: String,
        /// Its schema version.
        found: i32,
        /// The newest this build supports.
        supported: i32,
    },
    /// No space left for the database.
    #[error("{0}: the disk is full; nothing of the failed batch was applied")]
    DiskFull(String),
    /// An object upstream sent cannot be stored.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// A resource version that is not an integer.
    #[error("invalid resource version {0:?}")]
    InvalidResourceVersion(String),
    /// A malformed label or field selector.
    #[error("{0}")]
    InvalidSelector(String),
    /// A field selector on a field the store does not index.
    #[error("{0}")]
    UnsupportedField(String),
    /// A configured field (`--index-field`) that is not written as one.
    #[error("--index-field {0}")]
    InvalidIndexField(String),
    /// A malformed continue token.
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// Nothing has been stored for this resource type.
    #[error("no data for resource {0}")]
    UnknownResource(String),
    /// The resource version is older than the history window (HTTP 410).
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// The version asked for.
        requested: u64,
        /// The oldest version still answerable.
        oldest: u64,
    },
    /// A continue token whose snapshot fell out of the history window (HTTP 410, `Expired`).
    #[error("the provided continue parameter is too old to display a consistent list result")]
    Expired,
    /// The resource version is newer than anything the store has seen (HTTP 504 upstream).
    #[error("too large resource version: {requested}, current resource version is {current}")]
    TooLargeResourceVersion {
        /// The version asked for.
        requested: u64,
        /// The newest version the store has.
        current: u64,
    },
    /// The transaction holding this batch failed to commit; nothing of it was applied.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// A watch fell too far behind the live events; re-watch from its last resource version.
    #[error("the watch fell behind; re-watch from the last resource version")]
    WatchLagged,
    /// The file was written by an older vai and is opened read-only, so it cannot be migrated.
    #[error("{0} has an older schema (hint: run `vai serve` once to upgrade it)")]
    OlderSchema(String),
    /// Another process has the database open for writing.
    #[error("{0} is in use by another vai process (hint: stop it, or pass a different --db)")]
    Locked(String),
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// The store is closed.
    #[error("the store is closed")]
    Closed,
}

impl Error {
    /// Names what SQLite's error says of the file (corrupt, not a database, disk full) where
    /// it can; other errors are unchanged.
    pub(crate) fn about_file(self, path: &Path) -> Error {
        match self {
            Error::Sqlite(e) => schema::classify(path, e),
            other => other,
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The object appeared.
    Added = 0,
    /// The object changed.
    Modified = 1,
    /// The object was deleted; the event carries its last state.
    Deleted = 2,
    /// Only a resource version: everything up to it has been seen.
    Bookmark = 3,
}

impl EventKind {
    fn from_i64(v: i64) -> EventKind {
        match v {
            0 => EventKind::Added,
            1 => EventKind::Modified,
            2 => EventKind::Deleted,
            _ => EventKind::Bookmark,
        }
    }
}

/// A committed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The resource type.
    pub resource: Arc<str>,
    /// Commit order (0 for bookmarks, which are not stored).
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The resource version of the change.
    pub resource_version: u64,
    /// The object's namespace (`""` if cluster-scoped or a bookmark).
    pub namespace: String,
    /// The object's name (`""` for a bookmark).
    pub name: String,
    /// The object's JSON (its last state for `Deleted`; empty for a bookmark).
    pub body: Arc<[u8]>,
    /// The table cells upstream printed for this version, if sync captured them.
    pub cells: Option<Arc<[u8]>>,
}

impl Event {
    fn bookmark(resource: Arc<str>, rv: u64) -> Event {
        Event {
            resource,
            seq: 0,
            kind: EventKind::Bookmark,
            resource_version: rv,
            namespace: String::new(),
            name: String::new(),
            body: Arc::from(&[][..]),
            cells: None,
        }
    }
}

/// How a resource type's sync is doing (written by sync, read by status pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Listing or catching up.
    Syncing,
    /// Watch healthy.
    Live,
    /// Upstream unreachable or erroring; data is last-good.
    Stale,
}

impl SyncState {
    fn as_str(self) -> &'static str {
        match self {
            SyncState::Syncing => "syncing",
            SyncState::Live => "live",
            SyncState::Stale => "stale",
        }
    }

    fn parse(s: &str) -> SyncState {
        match s {
            "live" => SyncState::Live,
            "stale" => SyncState::Stale,
            _ => SyncState::Syncing,
        }
    }
}

/// The persisted sync state of one resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceState {
    /// The resource type's key.
    pub resource: String,
    /// The resource version of the last full list, if any.
    pub list_resource_version: Option<u64>,
    /// The newest resource version seen (events and bookmarks).
    pub last_resource_version: u64,
    /// The oldest resource version still answerable from history.
    pub oldest_resource_version: u64,
    /// When upstream was last heard from (ms since the Unix epoch).
    pub last_contact_ms: Option<i64>,
    /// The last error, if the state is not live.
    pub last_error: Option<String>,
    /// Syncing, live or stale.
    pub state: SyncState,
}

/// An object as sync received it: its JSON, and the table cells upstream printed for it when
/// sync asked for tables (`as=Table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The object's JSON.
    pub object: Vec<u8>,
    /// Its table row's cells (a JSON array), if any.
    pub cells: Option<Vec<u8>>,
}

impl From<Vec<u8>> for Item {
    fn from(object: Vec<u8>) -> Item {
        Item {
            object,
            cells: None,
        }
    }
}

/// An operation in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// An upstream watch event with the object.
    Event(EventKind, Item),
    /// A bookmark: upstream has sent everything up to this resource version.
    Bookmark(u64),
    /// A full list at this resource version: replaces the resource's whole set.
    Replace(u64, Vec<Item>),
    /// The sync state, and the last error.
    State(SyncState, Option<String>),
}

/// Operations for one resource type, applied atomically and in order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The resource type's key (e.g. `/v1/pods`, `apps/v1/deployments`).
    pub resource: String,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Batch {
    /// An empty batch for a resource type.
    pub fn new(resource: impl Into<String>) -> Batch {
        Batch {
            resource: resource.into(),
            ops: Vec::new(),
        }
    }

    /// Adds a watch event.
    pub fn event(mut self, kind: EventKind, object: impl Into<Item>) -> Batch {
        self.ops.push(Op::Event(kind, object.into()));
        self
    }

    /// Adds a bookmark.
    pub fn bookmark(mut self, resource_version: u64) -> Batch {
        self.ops.push(Op::Bookmark(resource_version));
        self
    }

    /// Adds a replace (full list).
    pub fn replace<I: Into<Item>>(
        mut self,
        resource_version: u64,
        objects: impl IntoIterator<Item = I>,
    ) -> Batch {
        let objects = objects.into_iter().map(Into::into).collect();
        self.ops.push(Op::Replace(resource_version, objects));
        self
    }

    /// Sets the sync state.
    pub fn state(mut self, state: SyncState, error: Option<String>) -> Batch {
        self.ops.push(Op::State(state, error));
        self
    }
}

/// A stored document that is not an object: a discovery document, `/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its key (vai uses the request path, plus a suffix per representation).
    pub key: String,
    /// The `Content-Type` to serve it with.
    pub content_type: String,
    /// The bytes, as upstream sent them.
    pub body: Vec<u8>,
}

/// Tuning of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Keep `metadata.managedFields` (dropped by default: large, and rarely read from a cache).
    pub keep_managed_fields: bool,
    /// History kept per resource type, in events.
    pub history_max_events: u64,
    /// History kept per resource type, in time.
    pub history_max_age: Duration,
    /// Read connections open at most (readers beyond wait for one; see `pool`).
    pub read_connections: usize,
    /// Frames in the WAL (bytes) past which a truncating checkpoint waits for old readers
    /// (see `checkpoint`).
    pub wal_limit_bytes: u64,
    /// Capacity of the live event channel (a subscriber further behind gets `WatchLagged`).
    pub event_buffer: usize,
    /// A cap on the database's size: a write that would grow it further fails with
    /// [`Error::DiskFull`], exactly as when the disk itself is full. `None`: the disk's size.
    pub max_size_bytes: Option<u64>,
    /// Fields to index besides the built-in ones and those CRDs declare, for the query API's
    /// filters, sorts and summaries ([`ConfiguredField::parse_list`] reads `--index-field`'s
    /// syntax). A file opened with a different list is reindexed at open.
    pub indexed_fields: Vec<ConfiguredField>,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            keep_managed_fields: false,
            history_max_events: writer::DEFAULT_HISTORY_MAX_EVENTS,
            history_max_age: writer::DEFAULT_HISTORY_MAX_AGE,
            read_connections: 8,
            wal_limit_bytes: 64 << 20,
            event_buffer: 4096,
            max_size_bytes: None,
            indexed_fields: Vec::new(),
        }
    }
}

/// A vai database. Cheap to clone; every clone is the same store.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Held (with an exclusive lock) while this process may write the file.
    _lock: Option<std::fs::File>,
    config: StoreConfig,
    requests: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    readers: pool::ReaderPool,
    events: broadcast::Sender<Arc<[Event]>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(checkpoint::Checkpointer, JoinHandle<()>)>>,
    /// The fields of each type (`None` when read-only: reads take them from the file).
    fields: Option<Arc<registry::FieldRegistry>>,
}

impl Store {
    /// Opens (or creates) a database file for writing. Only one process may do so at a time:
    /// a second gets [`Error::Locked`].
    pub fn open(path: &Path, config: StoreConfig) -> Result<Store> {
        let lock = lock_file(path)?;
        let conn = schema::open_writer(path)?;
        if let Some(bytes) = config.max_size_bytes {
            let page_size: u64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(|e| schema::classify(path, e))?;
            conn.pragma_update(None, "max_page_count", (bytes / page_size).max(1))
                .map_err(|e| schema::classify(path, e))?;
        }
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let fields = Arc::new(registry::FieldRegistry::new(config.indexed_fields.clone()));
        let (checkpoints, asks) = checkpoint::channel();
        let writer = Writer::new(
            conn,
            path,
            config.clone(),
            events.clone(),
            fields.clone(),
            checkpoints.clone(),
        )
        .map_err(|e| e.about_file(path))?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("vai-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Io("spawning the writer thread".into(), e))?;
        let checkpoint_conn = schema::open_checkpointer(path)?;
        let (db_path, wal_limit) = (path.to_path_buf(), config.wal_limit_bytes);
        let checkpointer = std::thread::Builder::new()
            .name("vai-store-checkpoint".into())
            .spawn(move || checkpoint::run(checkpoint_conn, db_path, wal_limit, asks))
            .map_err(|e| Error::Io("spawning the checkpoint thread".into(), e))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                _lock: Some(lock),
                requests: Mutex::new(Some(tx)),
                readers: pool::ReaderPool::new(config.read_connections),
                config,
                events,
                writer: Mutex::new(Some(handle)),
                checkpointer: Mutex::new(Some((checkpoints, checkpointer))),
                fields: Some(fields),
            }),
        })
    }

    /// Opens an existing database for reading only, alongside a process that writes it (this
    /// is how `vai status` reads a running server's file). Writes fail with [`Error::ReadOnly`].
    pub fn open_read_only(path: &Path) -> Result<Store> {
        schema::check_readable(path)?;
        let (events, _) = broadcast::channel(1);
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                _lock: None,
                config: StoreConfig::default(),
                requests: Mutex::new(None),
                readers: pool::ReaderPool::new(StoreConfig::default().read_connections),
                events,
                writer: Mutex::new(None),
                checkpointer: Mutex::new(None),
                fields: None,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn submit(&self, batch: Batch) -> Result<oneshot::Receiver<Result<Arc<[Event]>>>> {
        let (parsed_with, fields) = self.field_registry()?.get(&batch.resource);
        let parse = |item: Item| -> Result<StoredObject> {
            Ok(self
                .parse_with(&fields, vec![item])?
                .pop()
                .expect("one item parses into one object"))
        };
        let mut ops = Vec::with_capacity(batch.ops.len());
        for op in batch.ops {
            ops.push(match op {
                Op::Event(EventKind::Bookmark, _) => {
                    return Err(Error::InvalidObject(
                        "a bookmark is not an object event".into(),
                    ));
                }
                Op::Event(kind, item) => ParsedOp::Apply(kind, parse(item)?),
                Op::Bookmark(rv) => ParsedOp::Bookmark(rv),
                Op::Replace(rv, objects) => {
                    ParsedOp::Replace(rv, self.parse_with(&fields, objects)?)
                }
                Op::State(state, error) => ParsedOp::State { state, error },
            });
        }
        self.send(Work::Batch {
            resource: batch.resource,
            ops,
            parsed_with,
        })
    }

    /// The field registry (writable stores only).
    fn field_registry(&self) -> Result<&registry::FieldRegistry> {
        self.inner.fields.as_deref().ok_or(Error::ReadOnly)
    }

    /// The fields of a resource type (`group/version/plural`): its built-in field selectors,
    /// the fields its CRD declares selectable, and the configured ones (see [`fields`]). What
    /// field selectors and the query API accept for the type.
    pub fn fields(&self, resource: &str) -> Arc<FieldSet> {
        match &self.inner.fields {
            Some(registry) => registry.get(resource).1,
            None => Arc::new(
                self.read(|tx| registry::stored(tx, resource))
                    .unwrap_or_else(|_| fields::builtin(resource)),
            ),
        }
    }

    /// Sets the fields CRDs declare selectable (`spec.versions[].selectableFields`): their
    /// `jsonPath`s per store key of the custom resource's version (`example.com/v1/widgets` →
    /// `[".spec.color"]`). Replaces every earlier declaration (a key left out has none). Returns
    /// once the types whose fields changed are reindexed (their stored objects backfilled) and
    /// the change is committed: from then on field selectors and filters on them are answered.
    pub async fn declare_fields(&self, declared: BTreeMap<String, Vec<String>>) -> Result<()> {
        self.send(Work::Fields(declared))?
            .await
            .map_err(|_| Error::Closed)?
            .map(|_| ())
    }

    fn send(&self, work: Work) -> Result<oneshot::Receiver<Result<Arc<[Event]>>>> {
        if self.inner._lock.is_none() {
            return Err(Error::ReadOnly);
        }
        let (reply, receiver) = oneshot::channel();
        self.inner
            .requests
            .lock()
            .expect("requests lock")
            .as_ref()
            .ok_or(Error::Closed)?
            .send(WriteRequest { work, reply })
            .map_err(|_| Error::Closed)?;
        Ok(receiver)
    }

    /// Stores documents (replacing earlier versions with the same keys) and waits for the commit.
    pub async fn put_documents(&self, documents: Vec<Document>) -> Result<()> {
        self.send(Work::Documents(documents))?
            .await
            .map_err(|_| Error::Closed)?
            .map(|_| ())
    }

    /// A stored document, if there is one with this key.
    pub fn document(&self, key: &str) -> Result<Option<Document>> {
        use rusqlite::OptionalExtension;
        self.read(|tx| {
            Ok(tx
                .prepare_cached("SELECT key, content_type, body FROM documents WHERE key = ?1")?
                .query_row([key], |r| {
                    Ok(Document {
                        key: r.get(0)?,
                        content_type: r.get(1)?,
                        body: r.get(2)?,
                    })
                })
                .optional()?)
        })
    }

    /// How many objects of `resource` exist now.
    pub fn count(&self, resource: &str) -> Result<u64> {
        self.read(|tx| match query::resource_row(tx, resource) {
            Ok(row) => Ok(counts::objects(tx, row.id, None)?),
            Err(Error::UnknownResource(_)) => Ok(0),
            Err(e) => Err(e),
        })
    }

    /// Applies a batch and waits for its commit; returns the events it produced (what
    /// subscribers receive). Objects are parsed on the calling thread.
    pub async fn write(&self, batch: Batch) -> Result<Arc<[Event]>> {
        self.submit(batch)?.await.map_err(|_| Error::Closed)?
    }

    /// [`Store::write`] for callers outside an async runtime.
    pub fn write_blocking(&self, batch: Batch) -> Result<Arc<[Event]>> {
        self.submit(batch)?
            .blocking_recv()
            .map_err(|_| Error::Closed)?
    }

    /// Live events, in commit order, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[Event]>> {
        self.inner.events.subscribe()
    }

    /// Runs `f` in one read transaction (one snapshot).
    pub fn read<T>(&self, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.inner.readers.take(&self.inner.path)?;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&tx)?;
            tx.finish()?;
            Ok(out)
        })();
        self.inner.readers.give(conn);
        result.map_err(|e: Error| e.about_file(&self.inner.path))
    }

    /// One object, latest (`resource_version: None`) or as of a resource version.
    pub fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_row(resource, namespace, name, resource_version)?
            .map(|item| item.object))
    }

    /// [`Store::get`] with the object's table cells, if captured.
    pub fn get_row(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<Option<Item>> {
        self.read(|tx| query::get(tx, resource, namespace, name, resource_version))
    }

    /// Lists objects in Kubernetes key order (namespace, name), calling `each(namespace, name,
    /// json)` per item without collecting them, so a huge list streams.
    pub fn list(
        &self,
        resource: &str,
        request: &ListRequest,
        mut each: impl FnMut(&str, &str, &[u8]) -> Result<()>,
    ) -> Result<ListMeta> {
        self.list_rows(resource, request, |r| each(r.namespace, r.name, r.body))
    }

    /// [`Store::list`] with each item's table cells too.
    pub fn list_rows(
        &self,
        resource: &str,
        request: &ListRequest,
        mut each: impl FnMut(Row) -> Result<()>,
    ) -> Result<ListMeta> {
        self.read(|tx| query::list_each(tx, resource, request, &mut each))
    }

    /// A page for a UI: filters, sort and an offset page, with the total count, in one
    /// snapshot (see [`page`]).
    pub fn page(
        &self,
        resource: &str,
        request: &PageRequest,
        mut each: impl FnMut(&str, &str, &[u8]) -> Result<()>,
    ) -> Result<PageMeta> {
        self.page_rows(resource, request, |r| each(r.namespace, r.name, r.body))
    }

    /// [`Store::page`] with each item's table cells too.
    pub fn page_rows(
        &self,
        resource: &str,
        request: &PageRequest,
        mut each: impl FnMut(Row) -> Result<()>,
    ) -> Result<PageMeta> {
        self.read(|tx| page::page_each(tx, resource, request, &mut each))
    }

    /// Counts a page request's matches (every page) per value of `column` — e.g. pods per
    /// `status.phase` — in one snapshot.
    pub fn summary(
        &self,
        resource: &str,
        request: &PageRequest,
        column: &Column,
    ) -> Result<page::Summary> {
        self.read(|tx| page::summary(tx, resource, request, column))
    }

    /// Every stored event of `resource` after `resource_version`, in commit order.
    pub fn events_since(&self, resource: &str, resource_version: u64) -> Result<Vec<Event>> {
        self.read(|tx| query::events_since(tx, resource, resource_version).map(|(e, _)| e))
    }

    /// Watches `resource` from `resource_version`: first the stored events after it, then live
    /// events, with no gap and no duplicate.
    pub fn watch(&self, resource: &str, resource_version: u64) -> Result<Watch> {
        // Subscribe before reading, so nothing committed in between is missed; the snapshot's
        // highest sequence number tells which live events the replay already holds.
        let live = self.subscribe();
        let (replay, seen_seq) =
            self.read(|tx| query::events_since(tx, resource, resource_version))?;
        Ok(Watch::new(
            resource,
            replay,
            seen_seq,
            resource_version,
            live,
        ))
    }

    /// The sync state of one resource type.
    pub fn resource_state(&self, resource: &str) -> Result<Option<ResourceState>> {
        Ok(self
            .resource_states()?
            .into_iter()
            .find(|s| s.resource == resource))
    }

    /// The sync state of every resource type.
    pub fn resource_states(&self) -> Result<Vec<ResourceState>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT key, list_rv, last_rv, compacted_rv, last_contact_ms, last_error, state
                 FROM resources ORDER BY key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ResourceState {
                    resource: r.get(0)?,
                    list_resource_version: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                    last_resource_version: r.get::<_, i64>(2)? as u64,
                    oldest_resource_version: r.get::<_, i64>(3)? as u64,
                    last_contact_ms: r.get(4)?,
                    last_error: r.get(5)?,
                    state: SyncState::parse(&r.get::<_, String>(6)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Runs SQLite's full integrity check; `Ok` means the file is sound.
    pub fn check_integrity(&self) -> Result<()> {
        let path = self.inner.path.display().to_string();
        self.read(|tx| {
            let verdict: String = tx.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if verdict == "ok" {
                Ok(())
            } else {
                Err(Error::Corrupt(format!("{path}: {verdict}")))
            }
        })
    }

    /// Stops the writer after the queued batches and closes the file. Other clones of this
    /// store can still read; writes fail with [`Error::Closed`].
    pub fn close(&self) {
        self.inner.shut_down();
    }
}

impl Inner {
    /// Stops the writer (after its queued batches), then the checkpointer (so the writer's
    /// last commits are checkpointed too). Idempotent.
    fn shut_down(&self) {
        self.requests.lock().expect("requests lock").take();
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.checkpointer.lock().expect("checkpointer lock").take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shut_down();
    }
}
