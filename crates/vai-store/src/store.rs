//! The front of the store: [`Store`], which parses what is written, keeps the field registry
//! and the broadcast of committed events, and hands writes and reads to the engine underneath
//! (a [`Backend`]: the SQLite file, `crate::sqlite`).
//!
//! Everything a caller does goes through here; this module must never expose the engine's
//! types (connections, transactions, engine errors) in a public signature, nor use them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::{broadcast, oneshot};

use crate::fields::{self, FieldSet};
use crate::object::StoredObject;
use crate::request::{
    Column, ListMeta, ListRequest, ListSink, Pace, PageMeta, PageRequest, Row, Summary,
};
use crate::watch::Watch;
use crate::work::{ParsedOp, Work, WriteRequest};

/// Batches of up to this many objects are parsed on the thread that writes them (a thread
/// hop costs more than parsing a few); larger ones on a blocking thread.
const PARSE_INLINE: usize = 16;

/// Items one read of a list serves at most (see [`Store::list_paced`]).
const LIST_PART_ITEMS: usize = 5_000;
/// How long one read of a list lasts at most (see [`Store::list_paced`]): what a list can
/// hold a checkpoint, and so the writer, waiting.
const LIST_PART_HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs `f` on tokio's blocking threads; a panic in it goes on in the caller, and a runtime
/// shutting down is [`Error::Closed`].
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Closed),
    }
}
use crate::backend::{Backend, Bound, Reads};
use crate::sqlite::Sqlite;
use crate::{
    Batch, Document, Error, Event, EventKind, Item, Op, ResourceState, Result, Snapshot,
    StoreConfig, registry,
};

/// A vai database. Cheap to clone; every clone is the same store.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The engine that keeps the data (see [`crate::backend`]).
    backend: Box<dyn Backend>,
    config: StoreConfig,
    events: broadcast::Sender<Arc<[Event]>>,
    /// The fields of each type (`None` when read-only: reads take them from the store).
    fields: Option<Arc<registry::FieldRegistry>>,
}

impl Store {
    /// Opens (or creates) a database file for writing. Only one process may do so at a time:
    /// a second gets [`Error::Locked`]. With [`StoreConfig::encryption`], a file encrypted
    /// with a key the configuration lacks (or holds under its name with another secret) is
    /// refused ([`Error::KeyMissing`], [`Error::KeyMismatch`]), as is an encrypted file opened
    /// without one ([`Error::Encrypted`]); stored rows are brought under the configuration's
    /// keys before anything is read (see `sealed`).
    pub fn open(path: &Path, config: StoreConfig) -> Result<Store> {
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let (backend, fields) = Sqlite::open(path, &config, events.clone())?;
        Ok(Store::over(Box::new(backend), config, events, Some(fields)))
    }

    /// Opens (or creates) a store in a PostgreSQL database for writing: `url` as libpq reads
    /// it (`postgresql://user@host/db`, `postgresql:///db?host=/socket/dir`). One process per
    /// database writes: a second gets [`Error::Locked`] (the database's advisory lock, held by
    /// the writer's connection). A database of another program, or of a newer vai, is refused
    /// untouched. Not yet on this backend: encryption at rest ([`Error::Unsupported`]), and
    /// vai's own compression of bodies (PostgreSQL compresses large values itself).
    ///
    /// The right to write is the lock's: when the writer's session with the database is lost
    /// (the server restarted, the connection cut), the store stops writing (writes fail with
    /// [`Error::ReadOnly`], [`Store::writes`] turns false) and follows the database as
    /// [`Store::open_postgres_replica`] does, taking the lock again when it is free.
    pub fn open_postgres(url: &str, config: StoreConfig) -> Result<Store> {
        Store::on_postgres(url, config, crate::postgres::Mode::Write)
    }

    /// Opens a store in a PostgreSQL database as one of several replicas: it writes if no
    /// other process does; otherwise it reads, follows what the writer commits (as
    /// [`Store::open_postgres_read_only`]), and takes over writing as soon as the writer's lock
    /// is free (the writer stopped, died, or lost its session), with every commit of the last
    /// writer published before its own. [`Store::writer_changes`] tells when.
    pub fn open_postgres_replica(url: &str, config: StoreConfig) -> Result<Store> {
        Store::on_postgres(url, config, crate::postgres::Mode::Replica)
    }

    /// Opens a store in a PostgreSQL database for reading only, beside the process that writes
    /// it. Writes fail with [`Error::ReadOnly`]. What the writer commits reaches this store's
    /// subscribers and watches too, read back from the database (the writer's `NOTIFY` rings,
    /// and it looks at least once a second).
    pub fn open_postgres_read_only(url: &str, config: StoreConfig) -> Result<Store> {
        Store::on_postgres(url, config, crate::postgres::Mode::Read)
    }

    fn on_postgres(url: &str, config: StoreConfig, mode: crate::postgres::Mode) -> Result<Store> {
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let (backend, fields) =
            crate::postgres::Postgres::open(url, &config, events.clone(), mode)?;
        let fields = (mode != crate::postgres::Mode::Read).then_some(fields);
        Ok(Store::over(Box::new(backend), config, events, fields))
    }

    /// Whether this process writes the store now (a store opened read-only never does; a
    /// replica on PostgreSQL does while it holds the writer's lock).
    pub fn writes(&self) -> bool {
        self.inner.backend.writes()
    }

    /// Changes of [`Store::writes`], for a store where they happen (on PostgreSQL, opened
    /// for writing or as a replica); `None` where it is fixed for the store's life.
    pub fn writer_changes(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.inner.backend.writer_changes()
    }

    fn over(
        backend: Box<dyn Backend>,
        config: StoreConfig,
        events: broadcast::Sender<Arc<[Event]>>,
        fields: Option<Arc<registry::FieldRegistry>>,
    ) -> Store {
        Store {
            inner: Arc::new(Inner {
                backend,
                config,
                events,
                fields,
            }),
        }
    }

    /// Opens an existing database for reading only, alongside a process that writes it (this
    /// is how `vai status` reads a running server's file). Writes fail with [`Error::ReadOnly`].
    /// An encrypted file is refused ([`Error::Encrypted`]): see [`Store::open_read_only_with`].
    pub fn open_read_only(path: &Path) -> Result<Store> {
        Store::open_read_only_with(path, StoreConfig::default())
    }

    /// [`Store::open_read_only`] with a configuration: its keys ([`StoreConfig::encryption`]),
    /// checked against the file as [`Store::open`] checks them, and its reader pool's size.
    pub fn open_read_only_with(path: &Path, config: StoreConfig) -> Result<Store> {
        let backend = Sqlite::open_read_only(path, &config)?;
        Ok(Store::over(
            Box::new(backend),
            config,
            broadcast::channel(1).0,
            None,
        ))
    }

    /// The database file (empty for a store in PostgreSQL).
    pub fn path(&self) -> &Path {
        self.inner.backend.path()
    }

    /// Where the data lives, for people and logs: the file's path, or the PostgreSQL
    /// database's name and host (never its password).
    pub fn describe(&self) -> String {
        self.inner.backend.describe()
    }

    /// Parses items as [`Store::write`] does, extracting `fields` (on the calling thread, so
    /// the writer only applies).
    pub(crate) fn parse_with(
        &self,
        fields: &FieldSet,
        items: Vec<Item>,
    ) -> Result<Vec<StoredObject>> {
        let keep = self.inner.config.keep_managed_fields;
        items
            .into_iter()
            .map(|item| {
                let mut object = StoredObject::with_fields(item.object, keep, fields)?;
                object.cells = item.cells;
                Ok(object)
            })
            .collect()
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

    /// The field registry (while this process writes: a reader takes the fields from the
    /// store, where the writer records them).
    pub(crate) fn field_registry(&self) -> Result<&registry::FieldRegistry> {
        self.registry().ok_or(Error::ReadOnly)
    }

    fn registry(&self) -> Option<&registry::FieldRegistry> {
        self.inner
            .fields
            .as_deref()
            .filter(|_| self.inner.backend.writes())
    }

    /// The fields of a resource type (`group/version/plural`): its built-in field selectors,
    /// the fields its CRD declares selectable, and the configured ones (see [`fields`]). What
    /// field selectors and the query API accept for the type.
    pub fn fields(&self, resource: &str) -> Arc<FieldSet> {
        match self.registry() {
            Some(registry) => registry.get(resource).1,
            None => Arc::new(
                self.read(|r| r.fields(resource))
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

    pub(crate) fn send(&self, work: Work) -> Result<oneshot::Receiver<Result<Arc<[Event]>>>> {
        let (reply, receiver) = oneshot::channel();
        self.inner.backend.submit(WriteRequest { work, reply })?;
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
        self.snapshot(|s| s.document(key))
    }

    /// Runs `f` over one snapshot of the store: every read through the [`Snapshot`] sees the
    /// same state (what a request that needs several things read together wants, e.g. a
    /// type's state and its table columns).
    pub fn snapshot<T>(&self, f: impl FnOnce(&Snapshot) -> Result<T>) -> Result<T> {
        self.read(|r| f(&Snapshot::new(r)))
    }

    /// How many objects of `resource` exist now.
    pub fn count(&self, resource: &str) -> Result<u64> {
        self.read(|r| r.count(resource))
    }

    /// Applies a batch and waits for its commit; returns the events it produced (what
    /// subscribers receive). Objects are parsed on the calling thread, or, more than 16 of
    /// them (a list's page, a backlog), on a blocking thread: milliseconds
    /// of parsing stay off the async runtime's threads, which serve requests.
    pub async fn write(&self, batch: Batch) -> Result<Arc<[Event]>> {
        let objects: usize = batch
            .ops
            .iter()
            .map(|op| match op {
                Op::Replace(_, objects) => objects.len(),
                _ => 1,
            })
            .sum();
        let committed = if objects > PARSE_INLINE {
            let store = self.clone();
            off_the_runtime(move || store.submit(batch)).await?
        } else {
            self.submit(batch)?
        };
        committed.await.map_err(|_| Error::Closed)?
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

    /// Runs `f` over one snapshot (see [`crate::backend`]). Crate-private: the engine's
    /// reads are no caller's business.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn Reads) -> Result<T>) -> Result<T> {
        self.read_with(false, f)
    }

    /// [`Store::read`] by `f` reading with one statement (`one`): see `Backend::read_one`.
    fn read_with<T>(&self, one: bool, f: impl FnOnce(&dyn Reads) -> Result<T>) -> Result<T> {
        let mut f = Some(f);
        let mut out = None;
        let mut run = |reads: &dyn Reads| {
            let f = f.take().expect("a snapshot is read once");
            out = Some(f(reads)?);
            Ok(())
        };
        if one {
            self.inner.backend.read_one(&mut run)?;
        } else {
            self.inner.backend.read(&mut run)?;
        }
        Ok(out.expect("the snapshot was read"))
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
        // One statement on every engine (the object with its type's window).
        self.read_with(true, |r| {
            r.get_row(resource, namespace, name, resource_version)
        })
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
        each: impl FnMut(Row) -> Result<()>,
    ) -> Result<ListMeta> {
        struct Each<F>(F);
        impl<F: FnMut(Row) -> Result<()>> ListSink for Each<F> {
            fn item(&mut self, row: Row) -> Result<Pace> {
                (self.0)(row).map(|()| Pace::On)
            }
            fn between(&mut self) -> Result<()> {
                Ok(())
            }
        }
        self.list_paced(resource, request, &mut Each(each))
    }

    /// [`Store::list_rows`] into a sink that may ask to wait between items. A list is one
    /// snapshot, but not one read: it is read in parts of at most 5,000 items or 20 ms,
    /// each in its own read transaction, the next continuing after the
    /// last key at the first part's resource version (as a continue token does: the versions
    /// of that snapshot stay in the file while it is inside the history window). A sink that
    /// yields ends its part at once, and waits in [`ListSink::between`], outside any read. So
    /// a long list, or a slow client of one, never holds a snapshot (which would keep the
    /// journal from being checkpointed and the writer waiting) nor a reader connection for
    /// longer than a part. A list that outlasts the history window fails midway with
    /// [`Error::Expired`], as its continue token would.
    pub fn list_paced(
        &self,
        resource: &str,
        request: &ListRequest,
        sink: &mut dyn ListSink,
    ) -> Result<ListMeta> {
        let mut part_request = request.clone();
        let mut listed = ListMeta {
            resource_version: 0,
            continue_token: None,
            count: 0,
        };
        loop {
            part_request.limit = request.limit.map(|limit| limit - listed.count);
            let bound = Bound {
                items: LIST_PART_ITEMS,
                until: std::time::Instant::now() + LIST_PART_HOLD,
            };
            let part = self
                .read(|r| r.list_part(resource, &part_request, &bound, &mut |row| sink.item(row)));
            let between = sink.between();
            let part = part?;
            between?;
            // Every part is of the first's snapshot.
            listed.resource_version = part.meta.resource_version;
            listed.count += part.meta.count;
            listed.continue_token = part.meta.continue_token;
            match part.resume {
                Some(resume) => {
                    part_request.continue_token = Some(resume);
                    part_request.resource_version = None;
                }
                None => return Ok(listed),
            }
        }
    }

    /// A page for a UI: filters, sort and an offset page, with the total count, in one
    /// snapshot (see [`PageRequest`]).
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
        self.read(|r| r.page(resource, request, &mut each))
    }

    /// Counts a page request's matches (every page) per value of `column` — e.g. pods per
    /// `status.phase` — in one snapshot.
    pub fn summary(
        &self,
        resource: &str,
        request: &PageRequest,
        column: &Column,
    ) -> Result<Summary> {
        self.read(|r| r.summary(resource, request, column))
    }

    /// Every stored event of `resource` after `resource_version`, in commit order.
    pub fn events_since(&self, resource: &str, resource_version: u64) -> Result<Vec<Event>> {
        self.read(|r| r.events_since(resource, resource_version))
    }

    /// Watches `resource` from `resource_version`: first the stored events after it, then live
    /// events, with no gap and no duplicate.
    pub fn watch(&self, resource: &str, resource_version: u64) -> Result<Watch> {
        // Subscribe before reading, so nothing committed in between is missed. A live event
        // the snapshot holds too is either in the replay (after `resource_version`: at most the
        // replay's highest sequence number, as everything committed after the snapshot is
        // above it) or at or below `resource_version` (which the watch drops anyway). So the
        // replay itself says which live events it holds: no scan of the type's versions.
        let live = self.subscribe();
        let replay = self.read(|r| r.events_since(resource, resource_version))?;
        let seen_seq = replay.iter().map(|e| e.seq).max().unwrap_or(0);
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
        self.snapshot(|s| s.resource_state(resource))
    }

    /// The sync state of every resource type.
    pub fn resource_states(&self) -> Result<Vec<ResourceState>> {
        self.snapshot(|s| s.resource_states())
    }

    /// How each type's bodies are compressed at rest (types with a dictionary; see
    /// [`Compression`](crate::Compression)). A read-only store reports each dictionary's
    /// ratio on its training samples; the writing one, over the bodies written since it opened.
    pub fn compression(&self) -> BTreeMap<String, crate::Compression> {
        self.inner.backend.compression()
    }

    /// What each type's bodies take at rest, history included, and their ratio to the JSON
    /// they hold (see [`Footprint`](crate::Footprint)). Reads every stored body's length and
    /// header: a scan of the file, for `vai status` and benchmarks, not for a hot path.
    pub fn footprint(&self) -> Result<BTreeMap<String, crate::Footprint>> {
        self.read(|r| r.footprint())
    }

    /// How long writes have been held since the store opened, by cause: the writer waiting
    /// for a truncating checkpoint (which waits for readers of old snapshots), or for the WAL
    /// to come back under [`StoreConfig::journal_limit_bytes`]. Nothing for a read-only store.
    pub fn writes_held(&self) -> crate::WritesHeld {
        self.inner.backend.writes_held()
    }

    /// Runs SQLite's full integrity check; `Ok` means the file is sound.
    pub fn check_integrity(&self) -> Result<()> {
        self.read(|r| r.check_integrity())
    }

    /// Stops the writer after the queued batches and closes the file. Other clones of this
    /// store can still read; writes fail with [`Error::Closed`].
    pub fn close(&self) {
        self.inner.backend.close();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.backend.close();
    }
}
