//! The one writer: a thread that owns the only write connection and applies batches.
//!
//! Batches queued while a transaction is being committed are applied together in the next one
//! (group commit), each inside its own savepoint so that one bad batch fails alone. The sync
//! state (resource versions) is updated in the same transaction as the objects, so a crash can
//! never leave a stored resource version ahead of the stored objects. Subscribers are told of
//! the events only after the commit. History beyond the retention limits is pruned here too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{broadcast, oneshot};

use crate::checkpoint::Checkpointer;
use crate::counts;
use crate::object::StoredObject;
use crate::registry::FieldRegistry;
use crate::{Error, Event, EventKind, Result, StoreConfig, SyncState};

/// What the writer applies: a batch for one resource type (already parsed), documents, or the
/// fields CRDs declare.
pub(crate) struct WriteRequest {
    pub work: Work,
    pub reply: oneshot::Sender<Result<Arc<[Event]>>>,
}

/// The kinds of write.
pub(crate) enum Work {
    /// Operations on one resource type, whose objects were parsed under the field registry's
    /// generation `parsed_with` (see [`crate::registry`]).
    Batch {
        resource: String,
        ops: Vec<ParsedOp>,
        parsed_with: u64,
    },
    /// Documents stored by key, replacing the previous version of each.
    Documents(Vec<crate::Document>),
    /// The `jsonPath`s CRDs declare selectable, per store key (all of them: replaces the
    /// previous declarations). Applied in a transaction of its own.
    Fields(std::collections::BTreeMap<String, Vec<String>>),
}

/// An operation whose objects are already parsed (parsing happens on the caller's thread).
pub(crate) enum ParsedOp {
    Apply(EventKind, StoredObject),
    Bookmark(u64),
    Replace(u64, Vec<StoredObject>),
    /// Objects of a resource's first list, written above its last resource version, where no
    /// read sees them until [`ParsedOp::CommitStaged`] (see [`crate::Relist`]). `first` starts
    /// a new list: whatever an abandoned one staged is discarded.
    Stage {
        first: bool,
        objects: Vec<StoredObject>,
    },
    /// The end of a staged first list, at this resource version: the staged objects become the
    /// resource's state in one commit.
    CommitStaged(u64),
    /// The end of a relist of a resource that has data: the objects that differ from the stored
    /// ones, and the key of every listed object (what is not listed is deleted).
    ReplaceListed {
        rv: u64,
        changed: Vec<StoredObject>,
        listed: HashSet<(String, String)>,
    },
    State {
        state: SyncState,
        error: Option<String>,
    },
}

pub(crate) struct Writer {
    conn: Connection,
    path: std::path::PathBuf,
    config: StoreConfig,
    events: broadcast::Sender<Arc<[Event]>>,
    resource_ids: HashMap<String, i64>,
    /// History rows (`prune_rv` set) per resource id, counted once and then kept here, so that
    /// retention by count need not step over the whole history at every commit (20,000 rows:
    /// ~1 ms, most of a single event's commit). Dropped with `resource_ids` on a rollback.
    history: HashMap<i64, u64>,
    next_seq: u64,
    fields: Arc<FieldRegistry>,
    checkpointer: Checkpointer,
    /// WAL frame size, and the WAL's size (bytes) past which the writer next waits for a
    /// checkpoint (see [`Writer::bound_wal`]).
    frame_bytes: u64,
    wal_mark: u64,
}

thread_local! {
    /// Frames in the WAL after the writer's last commit, as SQLite's WAL hook reports them (on
    /// the committing thread, which is the writer's).
    static WAL_FRAMES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames.max(0) as u64));
    Ok(())
}

/// What a batch produced: its events, and a staged list to publish once committed.
struct Applied {
    events: Vec<Event>,
    staged: Option<StagedList>,
    /// How many rows the batch made history.
    history_added: u64,
}

/// A committed staged list, whose events are read back and published in chunks after the
/// commit rather than held in memory (a first list can be the whole cluster).
struct StagedList {
    resource: Arc<str>,
    rid: i64,
    stored_rv: u64,
    rv: u64,
}

/// Events per published chunk of a staged list.
const PUBLISH_CHUNK: usize = 1024;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Writer {
    pub fn new(
        mut conn: Connection,
        path: &std::path::Path,
        config: StoreConfig,
        events: broadcast::Sender<Arc<[Event]>>,
        fields: Arc<FieldRegistry>,
        checkpointer: Checkpointer,
    ) -> Result<Writer> {
        conn.wal_hook(Some(count_frames));
        discard_all_staged(&conn)?;
        fields.open(&mut conn)?;
        let max_seq: Option<i64> =
            conn.query_row("SELECT max(seq) FROM versions", [], |r| r.get(0))?;
        let frame_bytes = crate::checkpoint::frame_bytes(&conn);
        Ok(Writer {
            conn,
            path: path.to_path_buf(),
            events,
            resource_ids: HashMap::new(),
            history: HashMap::new(),
            next_seq: max_seq.unwrap_or(0) as u64 + 1,
            fields,
            checkpointer,
            frame_bytes,
            wal_mark: config.wal_limit_bytes,
            config,
        })
    }

    /// After a commit that left more than the limit in the WAL, waits for the checkpointer (which
    /// holds the next write while old snapshots keep it from truncating). If it could not bring
    /// the WAL down, the writer waits again once the WAL has grown by another limit's worth: a
    /// reader that never lets go slows writes down instead of stopping them.
    fn bound_wal(&mut self) {
        let limit = self.config.wal_limit_bytes;
        let bytes = WAL_FRAMES.with(std::cell::Cell::get) * self.frame_bytes;
        if bytes <= limit {
            self.wal_mark = limit;
        } else if bytes > self.wal_mark {
            self.checkpointer.over_limit();
            self.wal_mark = bytes + limit;
        }
    }

    /// Runs until every sender is gone.
    pub fn run(mut self, requests: Receiver<WriteRequest>) {
        // Field declarations change how later batches are indexed: each is applied alone,
        // between groups.
        let mut held = None;
        while let Some(first) = held.take().or_else(|| requests.recv().ok()) {
            if let Work::Fields(declared) = first.work {
                let result = self.fields.declare(&mut self.conn, declared);
                let result = result.map_err(|e| e.about_file(&self.path));
                let _ = first.reply.send(result.map(|()| Arc::from([])));
                continue;
            }
            let mut group = vec![first];
            while group.len() < 256 {
                match requests.try_recv() {
                    Ok(next) if matches!(next.work, Work::Fields(_)) => {
                        held = Some(next);
                        break;
                    }
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<WriteRequest>) {
        let seq_before = self.next_seq;
        // Every reply is owed an answer, even when the group fails before or half-way.
        let (works, mut outcomes): (Vec<Work>, Vec<(oneshot::Sender<_>, Result<Applied>)>) = group
            .into_iter()
            .map(|request| (request.work, (request.reply, Err(Error::Closed))))
            .unzip();
        let mut touched = Vec::new();
        // A batch alone in its group needs no savepoint: if it fails, the transaction is only
        // its own. (A savepoint makes SQLite copy every page the batch changes into a journal
        // first: a quarter of the writer's time while a list is stored.)
        let alone = works.len() == 1;
        let result = (|| -> Result<()> {
            // IMMEDIATE: take the write lock up front, so waiting for a checkpoint goes through
            // the busy handler instead of failing on a stale read snapshot.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (at, mut work) in works.into_iter().enumerate() {
                if let Work::Batch { resource, .. } = &work {
                    self.fields.ensure(&tx, resource)?;
                }
                if !alone {
                    tx.execute_batch("SAVEPOINT batch")?;
                }
                let applied = match &mut work {
                    Work::Batch {
                        resource,
                        ops,
                        parsed_with,
                    } => self
                        .fields
                        .refresh(resource, *parsed_with, ops)
                        .and_then(|()| {
                            apply_batch(
                                &tx,
                                &mut self.resource_ids,
                                &mut self.next_seq,
                                resource,
                                ops,
                            )
                        }),
                    Work::Documents(documents) => put_documents(&tx, documents).map(|()| Applied {
                        events: Vec::new(),
                        staged: None,
                        history_added: 0,
                    }),
                    Work::Fields(_) => unreachable!("declarations are applied alone"),
                };
                let applied = match applied {
                    Ok(applied) if alone => Ok(applied),
                    Ok(applied) => {
                        tx.execute_batch("RELEASE batch")?;
                        Ok(applied)
                    }
                    Err(e) if alone => return Err(e),
                    // Some failures (a full disk) end the whole transaction, savepoint and
                    // all: then the group fails, with that failure as its cause.
                    Err(e) => match tx.execute_batch("ROLLBACK TO batch; RELEASE batch") {
                        Ok(()) => {
                            // The batch may have created its resource's row: forget its id.
                            if let Work::Batch { resource, .. } = &work
                                && let Some(rid) = self.resource_ids.remove(resource)
                            {
                                self.history.remove(&rid);
                            }
                            Err(e)
                        }
                        Err(_) => return Err(e),
                    },
                };
                if let (Ok(applied), Work::Batch { resource, .. }) = (&applied, &work) {
                    touched.push(resource.clone());
                    if let Some(rows) = self
                        .resource_ids
                        .get(resource)
                        .and_then(|rid| self.history.get_mut(rid))
                    {
                        *rows += applied.history_added;
                    }
                }
                outcomes[at].1 = applied;
            }
            for resource in &touched {
                prune(
                    &tx,
                    &self.resource_ids,
                    &mut self.history,
                    resource,
                    &self.config,
                )?;
            }
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                for (reply, outcome) in outcomes {
                    let outcome = outcome.map_err(|e| e.about_file(&self.path));
                    let outcome = outcome.map(|applied| {
                        let events = Arc::<[Event]>::from(applied.events);
                        if !events.is_empty() {
                            // No subscriber is not an error.
                            let _ = self.events.send(events.clone());
                        }
                        if let Some(list) = applied.staged {
                            self.publish_staged(&list);
                        }
                        events
                    });
                    let _ = reply.send(outcome);
                }
                self.bound_wal();
            }
            Err(e) => {
                let e = e.about_file(&self.path);
                // A batch refused for what it holds is its caller's to report; anything else
                // (a full disk, an I/O error, a corrupt file) is the store's.
                let refused = alone && matches!(e, Error::InvalidObject(_));
                if !refused {
                    tracing::error!(error = %e, "store commit failed; the batches are not applied");
                }
                self.next_seq = seq_before;
                // The transaction rolled back: drop cached ids of resources it may have created,
                // and the fields it recorded.
                self.resource_ids.clear();
                self.history.clear();
                self.fields.rolled_back();
                if alone && let Some((reply, _)) = outcomes.pop() {
                    // The batch's own failure, or its commit's: its own error.
                    let _ = reply.send(Err(e));
                    return;
                }
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(match &e {
                        Error::DiskFull(path) => Error::DiskFull(path.clone()),
                        other => Error::CommitFailed(other.to_string()),
                    }));
                }
            }
        }
    }

    /// Publishes a committed staged list's events (ADDED at the list's resource version), read
    /// back from the file in chunks. A failed read is logged: the data is committed, and a
    /// subscriber that misses events resynchronises as after a lag.
    fn publish_staged(&self, list: &StagedList) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let result = (|| -> Result<()> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, namespace, name, body, cells FROM versions
                 WHERE resource_id = ?1 AND rv = ?2 ORDER BY seq",
            )?;
            let mut rows = stmt.query(params![list.rid, list.stored_rv as i64])?;
            let mut chunk = Vec::with_capacity(PUBLISH_CHUNK);
            while let Some(r) = rows.next()? {
                chunk.push(Event {
                    resource: list.resource.clone(),
                    seq: r.get::<_, i64>(0)? as u64,
                    kind: EventKind::Added,
                    resource_version: list.rv,
                    namespace: r.get(1)?,
                    name: r.get(2)?,
                    body: r.get::<_, Vec<u8>>(3)?.into(),
                    cells: r.get::<_, Option<Vec<u8>>>(4)?.map(Into::into),
                });
                if chunk.len() == PUBLISH_CHUNK {
                    let _ = self.events.send(std::mem::take(&mut chunk).into());
                }
            }
            if !chunk.is_empty() {
                let _ = self.events.send(chunk.into());
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, resource = %list.resource,
                "reading back a committed list to publish it failed; watchers will resync");
        }
    }
}

/// Drops the rows of staged lists that never committed (the process stopped mid-list): every
/// row above its resource's last resource version.
fn discard_all_staged(conn: &Connection) -> Result<()> {
    let resources: Vec<(i64, i64)> = conn
        .prepare("SELECT id, last_rv FROM resources")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (rid, last_rv) in resources {
        discard_staged(conn, rid, last_rv as u64)?;
    }
    Ok(())
}

/// Deletes the rows staged above `last_rv` for one resource (and their label rows).
fn discard_staged(conn: &Connection, rid: i64, last_rv: u64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM labels WHERE version_id IN
           (SELECT id FROM versions WHERE resource_id = ?1 AND rv > ?2)",
    )?
    .execute(params![rid, last_rv as i64])?;
    conn.prepare_cached("DELETE FROM versions WHERE resource_id = ?1 AND rv > ?2")?
        .execute(params![rid, last_rv as i64])?;
    Ok(())
}

fn resource_id(tx: &Transaction, ids: &mut HashMap<String, i64>, resource: &str) -> Result<i64> {
    if let Some(id) = ids.get(resource) {
        return Ok(*id);
    }
    tx.execute(
        "INSERT INTO resources (key) VALUES (?1) ON CONFLICT (key) DO NOTHING",
        [resource],
    )?;
    let id = tx.query_row("SELECT id FROM resources WHERE key = ?1", [resource], |r| {
        r.get(0)
    })?;
    ids.insert(resource.to_string(), id);
    Ok(id)
}

/// A key's current row.
#[derive(Clone, Copy)]
struct Current {
    id: i64,
    rv: u64,
    tombstone: bool,
}

/// The current row of a key (read from the key index alone).
fn current(tx: &Transaction, rid: i64, ns: &str, name: &str) -> Result<Option<Current>> {
    Ok(tx
        .prepare_cached(
            "SELECT id, rv, kind FROM versions
             WHERE resource_id = ?1 AND namespace = ?2 AND name = ?3 AND rv_to IS NULL",
        )?
        .query_row(params![rid, ns, name], |r| {
            Ok(Current {
                id: r.get(0)?,
                rv: r.get::<_, i64>(1)? as u64,
                tombstone: r.get::<_, i64>(2)? == EventKind::Deleted as i64,
            })
        })
        .optional()?)
}

struct Ctx<'a> {
    tx: &'a Transaction<'a>,
    rid: i64,
    resource: Arc<str>,
    next_seq: &'a mut u64,
    now: i64,
    events: Vec<Event>,
    /// The batch's changes to the counts, written at its end.
    counts: counts::Deltas,
    /// Rows this batch made history (superseded live versions, tombstones).
    history_added: u64,
    /// On while staging a first list: its events are published from the file after commit,
    /// and its counts are computed whole at the commit (until then no read may see them).
    staging: bool,
}

impl Ctx<'_> {
    /// Writes a new version of a key at `rv`, superseding its current row if it has one, and
    /// records the event.
    fn put(
        &mut self,
        kind: EventKind,
        rv: u64,
        obj: &StoredObject,
        superseded: Option<Current>,
    ) -> Result<()> {
        let (tx, rid) = (self.tx, self.rid);
        // The superseded version's indexed fields, if it was a live object (for the counts).
        let mut old_fields = None;
        if let Some(old) = superseded {
            // A superseded live version becomes history at `rv`; a superseded tombstone was
            // already history at its own rv.
            tx.prepare_cached(
                "UPDATE versions SET rv_to = ?2,
                     prune_rv = CASE WHEN kind = 2 THEN rv ELSE ?2 END,
                     prune_ms = CASE WHEN kind = 2 THEN prune_ms ELSE ?3 END
                 WHERE id = ?1",
            )?
            .execute(params![old.id, rv as i64, self.now])?;
            if !old.tombstone {
                old_fields = Some(counts::fields_of(tx, old.id)?);
                self.history_added += 1;
            }
        }
        let seq = *self.next_seq;
        *self.next_seq += 1;
        let deleted = kind == EventKind::Deleted;
        self.history_added += u64::from(deleted);
        tx.prepare_cached(
            "INSERT INTO versions (resource_id, namespace, name, rv, rv_to, kind, seq, prune_rv, prune_ms, created, body, cells, fields)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            rid,
            obj.namespace,
            obj.name,
            rv as i64,
            kind as i64,
            seq as i64,
            deleted.then_some(rv as i64),
            deleted.then_some(self.now),
            obj.created,
            obj.body,
            obj.cells,
            (!deleted).then(|| crate::fields::column(&obj.fields)).flatten()
        ])?;
        if !deleted {
            let version_id = tx.last_insert_rowid();
            let mut insert = tx.prepare_cached(
                "INSERT INTO labels (version_id, key, value, resource_id) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (k, v) in obj
                .labels
                .iter()
                .chain(obj.fields.iter().map(|(k, v)| (k, v)))
            {
                insert.execute(params![version_id, k, v, rid])?;
            }
        }
        if self.staging {
            return Ok(());
        }
        self.counts.replace_object(
            &obj.namespace,
            old_fields.as_deref(),
            (!deleted).then_some(obj.fields.as_slice()),
        );
        self.events.push(Event {
            resource: self.resource.clone(),
            seq,
            kind,
            resource_version: rv,
            namespace: obj.namespace.clone(),
            name: obj.name.clone(),
            body: obj.body.clone().into(),
            cells: obj.cells.clone().map(Into::into),
        });
        Ok(())
    }
}

fn put_documents(tx: &Transaction, documents: &[crate::Document]) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO documents (key, content_type, body, fetched_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET content_type = excluded.content_type,
             body = excluded.body, fetched_ms = excluded.fetched_ms",
    )?;
    for doc in documents {
        insert.execute(params![doc.key, doc.content_type, doc.body, now_ms()])?;
    }
    Ok(())
}

fn apply_batch(
    tx: &Transaction,
    ids: &mut HashMap<String, i64>,
    next_seq: &mut u64,
    resource: &str,
    ops: &[ParsedOp],
) -> Result<Applied> {
    let rid = resource_id(tx, ids, resource)?;
    let (mut last_rv, mut compacted, mut listed): (u64, u64, Option<i64>) = tx.query_row(
        "SELECT last_rv, compacted_rv, list_rv FROM resources WHERE id = ?1",
        [rid],
        |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get(2)?,
            ))
        },
    )?;
    // A staged list's rows are those above the last resource version, at the version just
    // above it. Anything but the staged list's own operations means that list was abandoned:
    // its rows must go before they could become visible.
    let staged_at = last_rv + 1;
    let abandons = ops.iter().any(|op| {
        matches!(
            op,
            ParsedOp::Apply(..)
                | ParsedOp::Bookmark(_)
                | ParsedOp::Replace(..)
                | ParsedOp::ReplaceListed { .. }
        )
    });
    if abandons {
        discard_staged(tx, rid, last_rv)?;
    }
    let mut ctx = Ctx {
        tx,
        rid,
        resource: Arc::from(resource),
        next_seq,
        now: now_ms(),
        events: Vec::new(),
        counts: counts::Deltas::default(),
        history_added: 0,
        staging: false,
    };
    let mut state_update = None;
    let mut published = None;
    // A committed staged list is counted whole, once the resource's version includes it.
    let mut recount = false;
    // Only data from upstream counts as contact; a state change alone (e.g. "stale") does not.
    let contact = ops.iter().any(|op| !matches!(op, ParsedOp::State { .. }));
    // A list's resource version becomes the resource's: listed, the window's start on a first
    // list, and the newest seen.
    let listed_at = |rv: u64, last_rv: &mut u64, compacted: &mut u64, listed: &mut Option<i64>| {
        if listed.is_none() && *compacted == 0 {
            // Nothing is known of this resource before its first list.
            *compacted = rv;
        }
        *listed = Some(rv as i64);
        *last_rv = (*last_rv).max(rv);
    };
    for op in ops {
        match op {
            ParsedOp::Apply(kind, obj) => {
                let rv = obj.resource_version;
                let existing = current(tx, rid, &obj.namespace, &obj.name)?;
                // Events at or below what we hold for this key are replays: skip them, so a
                // resumed watch never duplicates or reorders. So are events at or below the
                // last list's version, which that list already reflects (whatever version its
                // rows are stored at: a staged first list's sit below it).
                if existing.is_some_and(|cur| cur.rv >= rv)
                    || listed.is_some_and(|at| rv <= at as u64)
                {
                    last_rv = last_rv.max(rv);
                    continue;
                }
                let live = existing.is_some_and(|cur| !cur.tombstone);
                if *kind == EventKind::Deleted {
                    if live {
                        ctx.put(EventKind::Deleted, rv, obj, existing)?;
                    }
                } else {
                    let kind = if live {
                        EventKind::Modified
                    } else {
                        EventKind::Added
                    };
                    ctx.put(kind, rv, obj, existing)?;
                }
                last_rv = last_rv.max(rv);
            }
            ParsedOp::Bookmark(rv) => {
                last_rv = last_rv.max(*rv);
                ctx.events.push(Event::bookmark(ctx.resource.clone(), *rv));
            }
            ParsedOp::Replace(rv, objects) => {
                let keys = objects
                    .iter()
                    .map(|o| (o.namespace.clone(), o.name.clone()))
                    .collect();
                replace(&mut ctx, *rv, objects, &keys)?;
                listed_at(*rv, &mut last_rv, &mut compacted, &mut listed);
            }
            ParsedOp::ReplaceListed {
                rv,
                changed,
                listed: keys,
            } => {
                replace(&mut ctx, *rv, changed, keys)?;
                listed_at(*rv, &mut last_rv, &mut compacted, &mut listed);
            }
            ParsedOp::Stage { first, objects } => {
                if *first {
                    discard_staged(tx, rid, last_rv)?;
                    let has_rows: bool = tx
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM versions WHERE resource_id = ?1)",
                        )?
                        .query_row([rid], |r| r.get(0))?;
                    if has_rows || listed.is_some() {
                        return Err(Error::InvalidObject(format!(
                            "{resource} has data: its relist must compare, not stage"
                        )));
                    }
                }
                ctx.staging = true;
                for obj in objects {
                    ctx.put(EventKind::Added, staged_at, obj, None)?;
                }
                ctx.staging = false;
            }
            ParsedOp::CommitStaged(rv) => {
                let any: bool = tx
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM versions WHERE resource_id = ?1 AND rv = ?2)",
                    )?
                    .query_row(params![rid, staged_at as i64], |r| r.get(0))?;
                let mut stored_rv = staged_at;
                if any && staged_at > *rv {
                    // Rows are visible from the version they are stored at: above the list's
                    // they would stay hidden (only if upstream's version went backwards).
                    tx.prepare_cached(
                        "UPDATE versions SET rv = ?3 WHERE resource_id = ?1 AND rv = ?2",
                    )?
                    .execute(params![rid, staged_at as i64, *rv as i64])?;
                    stored_rv = *rv;
                }
                recount |= any;
                published = any.then(|| StagedList {
                    resource: ctx.resource.clone(),
                    rid,
                    stored_rv,
                    rv: *rv,
                });
                listed_at(*rv, &mut last_rv, &mut compacted, &mut listed);
            }
            ParsedOp::State { state, error } => state_update = Some((*state, error.clone())),
        }
    }
    tx.prepare_cached(
        "UPDATE resources SET last_rv = ?2, compacted_rv = ?3, list_rv = ?4,
             last_contact_ms = CASE WHEN ?5 THEN ?6 ELSE last_contact_ms END
         WHERE id = ?1",
    )?
    .execute(params![
        rid,
        last_rv as i64,
        compacted as i64,
        listed,
        contact,
        ctx.now
    ])?;
    if let Some((state, error)) = state_update {
        tx.prepare_cached("UPDATE resources SET state = ?2, last_error = ?3 WHERE id = ?1")?
            .execute(params![rid, state.as_str(), error])?;
    }
    ctx.counts.write(tx, rid)?;
    if recount {
        counts::recount(tx, rid)?;
    }
    Ok(Applied {
        events: ctx.events,
        staged: published,
        history_added: ctx.history_added,
    })
}

/// Swaps the live set of a resource for a full list at `rv`, of which `objects` are the
/// members that may differ from what is stored and `listed` every member's key: what changed
/// is written as new versions at `rv`, what vanished becomes a tombstone at `rv`.
fn replace(
    ctx: &mut Ctx,
    rv: u64,
    objects: &[StoredObject],
    listed: &HashSet<(String, String)>,
) -> Result<()> {
    for obj in objects {
        let existing = current(ctx.tx, ctx.rid, &obj.namespace, &obj.name)?;
        match existing {
            // Already newer than the list, or unchanged: nothing to write.
            Some(cur) if !cur.tombstone && cur.rv >= rv => {}
            Some(cur) if !cur.tombstone => {
                if body_of(ctx.tx, cur.id)?.0 != obj.body {
                    ctx.put(EventKind::Modified, rv, obj, existing)?;
                }
            }
            _ => ctx.put(EventKind::Added, rv, obj, existing)?,
        }
    }
    let mut vanished = Vec::new();
    {
        let mut stmt = ctx.tx.prepare_cached(
            "SELECT namespace, name, rv, id FROM versions INDEXED BY versions_by_key
             WHERE resource_id = ?1 AND rv_to IS NULL AND kind != 2",
        )?;
        let mut rows = stmt.query([ctx.rid])?;
        while let Some(row) = rows.next()? {
            let key: (String, String) = (row.get(0)?, row.get(1)?);
            let cur_rv = row.get::<_, i64>(2)? as u64;
            if cur_rv < rv && !listed.contains(&key) {
                let cur = Current {
                    id: row.get(3)?,
                    rv: cur_rv,
                    tombstone: false,
                };
                vanished.push((key, cur));
            }
        }
    }
    vanished.sort_by(|a, b| a.0.cmp(&b.0));
    for ((namespace, name), cur) in vanished {
        let (body, cells) = body_of(ctx.tx, cur.id)?;
        let obj = StoredObject {
            namespace,
            name,
            resource_version: rv,
            labels: Default::default(),
            created: None,
            body,
            cells,
            fields: Vec::new(),
        };
        ctx.put(EventKind::Deleted, rv, &obj, Some(cur))?;
    }
    Ok(())
}

/// A version's body and table cells.
type BodyAndCells = (Vec<u8>, Option<Vec<u8>>);

/// The body and cells of a version.
fn body_of(conn: &Connection, id: i64) -> Result<BodyAndCells> {
    Ok(conn
        .prepare_cached("SELECT body, cells FROM versions WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Applies the retention limits to one resource's history: raises `compacted_rv` so that at
/// most `history_max_events` history rows remain and none older than `history_max_age`, then
/// deletes what fell out of the window.
fn prune(
    tx: &Transaction,
    ids: &HashMap<String, i64>,
    history: &mut HashMap<i64, u64>,
    resource: &str,
    config: &StoreConfig,
) -> Result<()> {
    let Some(&rid) = ids.get(resource) else {
        return Ok(());
    };
    let rows_now = match history.get(&rid) {
        Some(&rows) => rows,
        None => history_rows(tx, rid)?,
    };
    debug_assert_eq!(
        rows_now,
        history_rows(tx, rid)?,
        "history rows kept by the writer"
    );
    history.insert(rid, rows_now);
    // By count: the newest `history_max_events` rows stay, found from the oldest end (the
    // excess is one row per event in a steady state; from the newest end it was every row).
    let by_count: Option<i64> =
        match rows_now.checked_sub(config.history_max_events.saturating_add(1)) {
            Some(excess) => tx
                .prepare_cached(
                    "SELECT prune_rv FROM versions WHERE resource_id = ?1 AND prune_rv IS NOT NULL
                 ORDER BY prune_rv LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![rid, excess as i64], |r| r.get(0))
                .optional()?,
            None => None,
        };
    // By age: the oldest history rows while they are past the age. History becomes history in
    // resource-version order, so `prune_ms` grows with `prune_rv` (a clock stepped back only
    // keeps some rows longer). Walking from the oldest reads one row when nothing is due;
    // `max(prune_rv) WHERE prune_ms <= cutoff` read every history row, each a table lookup (80 ms
    // per commit with 13,000 rows: the writer fell minutes behind a burst of deletes).
    let cutoff_ms = now_ms() - config.history_max_age.as_millis() as i64;
    let mut by_age: Option<i64> = None;
    {
        let mut oldest = tx.prepare_cached(
            "SELECT prune_rv, prune_ms FROM versions WHERE resource_id = ?1 AND prune_rv IS NOT NULL
             ORDER BY prune_rv",
        )?;
        let mut rows = oldest.query(params![rid])?;
        while let Some(row) = rows.next()? {
            match row.get::<_, Option<i64>>(1)? {
                Some(ms) if ms <= cutoff_ms => by_age = Some(row.get(0)?),
                _ => break,
            }
        }
    }
    let Some(new_compacted) = by_count.max(by_age) else {
        return Ok(());
    };
    tx.prepare_cached("UPDATE resources SET compacted_rv = max(compacted_rv, ?2) WHERE id = ?1")?
        .execute(params![rid, new_compacted])?;
    tx.prepare_cached(
        "DELETE FROM labels WHERE version_id IN
           (SELECT id FROM versions
            WHERE resource_id = ?1 AND prune_rv IS NOT NULL AND prune_rv <= ?2 AND kind != 2)",
    )?
    .execute(params![rid, new_compacted])?;
    let deleted = tx
        .prepare_cached(
            "DELETE FROM versions WHERE resource_id = ?1 AND prune_rv IS NOT NULL AND prune_rv <= ?2",
        )?
        .execute(params![rid, new_compacted])?;
    history.insert(rid, rows_now.saturating_sub(deleted as u64));
    Ok(())
}

/// Counts a resource's history rows.
fn history_rows(tx: &Transaction, rid: i64) -> Result<u64> {
    Ok(tx
        .prepare_cached(
            "SELECT count(*) FROM versions WHERE resource_id = ?1 AND prune_rv IS NOT NULL",
        )?
        .query_row([rid], |r| r.get::<_, i64>(0))? as u64)
}

/// The default retention of history: 20,000 events per resource type, 30 minutes.
pub(crate) const DEFAULT_HISTORY_MAX_EVENTS: u64 = 20_000;
pub(crate) const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(30 * 60);
