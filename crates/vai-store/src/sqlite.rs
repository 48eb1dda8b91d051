//! The embedded engine: one SQLite file ([`Sqlite`]), written by one thread (`writer`) that
//! group-commits, checkpointed by another (`checkpoint`), read through a pool of read-only
//! connections (`pool`), each read one deferred transaction.
//!
//! This is the [`Backend`] the store opens for a path. Every SQLite type stays behind it: the
//! front sees [`Reads`] and the store's own types only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::broadcast;

use crate::backend::{Backend, Bound, ListPart, Reads};
use crate::object::StoredObject;
use crate::request::{Column, ItemSink, ListRequest, PacedSink, PageMeta, PageRequest, Summary};
use crate::sealed::Sealer;
use crate::work::WriteRequest;
use crate::writer::Writer;
use crate::{
    Compression, Document, Error, Event, FieldSet, Footprint, Item, ResourceState, Result,
    StoreConfig, SyncState, WritesHeld, checkpoint, counts, pool, registry, schema, sealed, sql,
};

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

/// A vai database file, open for reading (and, holding its lock, for writing).
#[derive(Debug)]
pub(crate) struct Sqlite {
    path: PathBuf,
    /// Held (with an exclusive lock) while this process may write the file.
    lock: Option<std::fs::File>,
    requests: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    readers: pool::ReaderPool,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(checkpoint::Checkpointer, JoinHandle<()>)>>,
    /// How long writes were held for the journal (`None` when read-only).
    holds: Option<Arc<checkpoint::Holds>>,
    /// Seals and opens the rows of encrypted types: every body read goes through it.
    sealer: Arc<Sealer>,
}

impl Sqlite {
    /// Opens (creating and migrating if needed) the file for writing, and starts its writer
    /// and checkpointer; the writer publishes what it commits on `events`. Returns the field
    /// registry the writer keeps (the front parses with it).
    pub(crate) fn open(
        path: &Path,
        config: &StoreConfig,
        events: broadcast::Sender<Arc<[Event]>>,
    ) -> Result<(Sqlite, Arc<registry::FieldRegistry>)> {
        let lock = lock_file(path)?;
        let mut conn = schema::open_writer(path)?;
        if let Some(bytes) = config.max_size_bytes {
            let page_size: u64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(|e| crate::error::classify(path, e))?;
            conn.pragma_update(None, "max_page_count", (bytes / page_size).max(1))
                .map_err(|e| crate::error::classify(path, e))?;
        }
        let sealer = Arc::new(
            sealed::prepare(
                &mut conn,
                path,
                config.encryption.as_ref(),
                config.compress_bodies,
            )
            .map_err(|e| e.about_file(path))?,
        );
        let fields = Arc::new(registry::FieldRegistry::new(
            config.indexed_fields.clone(),
            sealer.clone(),
        ));
        let (checkpoints, asks) = checkpoint::channel();
        let writer = Writer::new(
            conn,
            path,
            config.clone(),
            events,
            fields.clone(),
            checkpoints.clone(),
            sealer.clone(),
        )
        .map_err(|e| e.about_file(path))?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("vai-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Io("spawning the writer thread".into(), e))?;
        let checkpoint_conn = schema::open_checkpointer(path)?;
        let (db_path, journal_limit) = (path.to_path_buf(), config.journal_limit_bytes);
        let checkpointer = std::thread::Builder::new()
            .name("vai-store-checkpoint".into())
            .spawn(move || checkpoint::run(checkpoint_conn, db_path, journal_limit, asks))
            .map_err(|e| Error::Io("spawning the checkpoint thread".into(), e))?;
        let sqlite = Sqlite {
            path: path.to_path_buf(),
            lock: Some(lock),
            requests: Mutex::new(Some(tx)),
            readers: pool::ReaderPool::new(config.read_connections),
            writer: Mutex::new(Some(handle)),
            holds: Some(checkpoints.holds().clone()),
            checkpointer: Mutex::new(Some((checkpoints, checkpointer))),
            sealer,
        };
        Ok((sqlite, fields))
    }

    /// Opens an existing file for reading only, beside a process that may be writing it; its
    /// keys checked as [`Sqlite::open`] checks them.
    pub(crate) fn open_read_only(path: &Path, config: &StoreConfig) -> Result<Sqlite> {
        schema::check_readable(path)?;
        let sealer = {
            let conn = schema::open_reader(path)?;
            sealed::check(&conn, path, config.encryption.as_ref(), false)
                .map_err(|e| e.about_file(path))?
        };
        Ok(Sqlite {
            path: path.to_path_buf(),
            lock: None,
            readers: pool::ReaderPool::new(config.read_connections),
            requests: Mutex::new(None),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            holds: None,
            sealer: Arc::new(sealer),
        })
    }
}

impl Backend for Sqlite {
    fn read(&self, f: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()> {
        let mut conn = self.readers.take(&self.path)?;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            f(&SnapshotTx {
                tx: &tx,
                sealer: &self.sealer,
                path: &self.path,
            })?;
            tx.finish()?;
            Ok(())
        })();
        self.readers.give(conn);
        result.map_err(|e: Error| e.about_file(&self.path))
    }

    fn submit(&self, request: WriteRequest) -> Result<()> {
        if self.lock.is_none() {
            return Err(Error::ReadOnly);
        }
        self.requests
            .lock()
            .expect("requests lock")
            .as_ref()
            .ok_or(Error::Closed)?
            .send(request)
            .map_err(|_| Error::Closed)
    }

    fn writes(&self) -> bool {
        self.lock.is_some()
    }

    fn writer_changes(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn compression(&self) -> BTreeMap<String, Compression> {
        self.sealer.codec().report().into_iter().collect()
    }

    fn writes_held(&self) -> WritesHeld {
        self.holds.as_ref().map(|h| h.read()).unwrap_or_default()
    }

    /// Stops the writer (after its queued batches), then the checkpointer (so the writer's
    /// last commits are checkpointed too).
    fn close(&self) {
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

impl Drop for Sqlite {
    fn drop(&mut self) {
        self.close();
    }
}

/// One read transaction: what [`Reads`] is on SQLite.
struct SnapshotTx<'a> {
    tx: &'a Transaction<'a>,
    sealer: &'a Sealer,
    path: &'a Path,
}

impl Reads for SnapshotTx<'_> {
    fn document(&self, key: &str) -> Result<Option<Document>> {
        Ok(self
            .tx
            .prepare_cached("SELECT key, content_type, body FROM documents WHERE key = ?1")?
            .query_row([key], |r| {
                Ok(Document {
                    key: r.get(0)?,
                    content_type: r.get(1)?,
                    body: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn get_row(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<Option<Item>> {
        sql::list::get(
            self.tx,
            self.sealer,
            resource,
            namespace,
            name,
            resource_version,
        )
    }

    fn resource_states(&self) -> Result<Vec<ResourceState>> {
        let mut stmt = self.tx.prepare_cached(
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
    }

    fn count(&self, resource: &str) -> Result<u64> {
        match sql::resource_row(self.tx, resource) {
            Ok(row) => Ok(counts::objects(self.tx, row.id, None)?),
            Err(Error::UnknownResource(_)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn fields(&self, resource: &str) -> Result<FieldSet> {
        registry::stored(self.tx, resource)
    }

    fn has_data(&self, resource: &str) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM versions
                                WHERE resource_id = r.id AND rv <= r.last_rv)
                        OR r.list_rv IS NOT NULL
                 FROM resources r WHERE r.key = ?1",
            )?
            .query_row([resource], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false))
    }

    fn unchanged(&self, resource: &str, objects: &[StoredObject]) -> Result<Vec<bool>> {
        let row = sql::resource_row(self.tx, resource)?;
        let mut stmt = self.tx.prepare_cached(
            "SELECT body FROM versions
             WHERE resource_id = ?1 AND namespace = ?2 AND name = ?3 AND rv_to IS NULL
               AND kind != 2",
        )?;
        objects
            .iter()
            .map(|o| {
                let mut rows = stmt.query(params![row.id, o.namespace, o.name])?;
                Ok(match rows.next()? {
                    Some(r) => {
                        let place = sealed::Place {
                            resource,
                            namespace: &o.namespace,
                            name: &o.name,
                        };
                        let stored = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
                        *self.sealer.open(place, sealed::Part::Body, stored)? == *o.body
                    }
                    None => false,
                })
            })
            .collect()
    }

    fn list_part(
        &self,
        resource: &str,
        request: &ListRequest,
        bound: &Bound,
        each: &mut PacedSink,
    ) -> Result<ListPart> {
        sql::list::list_part(self.tx, self.sealer, resource, request, bound, each)
    }

    fn page(&self, resource: &str, request: &PageRequest, each: &mut ItemSink) -> Result<PageMeta> {
        sql::page::page_each(self.tx, self.sealer, resource, request, each)
    }

    fn summary(&self, resource: &str, request: &PageRequest, column: &Column) -> Result<Summary> {
        sql::page::summary(self.tx, resource, request, column)
    }

    fn events_since(&self, resource: &str, resource_version: u64) -> Result<Vec<Event>> {
        sql::events::events_since(self.tx, self.sealer, resource, resource_version)
    }

    fn footprint(&self) -> Result<BTreeMap<String, Footprint>> {
        crate::codec::footprint(self.tx)
    }

    fn check_integrity(&self) -> Result<()> {
        let verdict: String = self
            .tx
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(Error::Corrupt(format!(
                "{}: {verdict}",
                self.path.display()
            )))
        }
    }
}
