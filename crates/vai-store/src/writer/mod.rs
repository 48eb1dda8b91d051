//! The one writer: a thread that owns the only write connection and applies batches.
//!
//! Batches queued while a transaction is being committed are applied together in the next one
//! (group commit), each inside its own savepoint so that one bad batch fails alone. The sync
//! state (resource versions) is updated in the same transaction as the objects, so a crash can
//! never leave a stored resource version ahead of the stored objects. Subscribers are told of
//! the events only after the commit. History beyond the retention limits is pruned here too
//! ([`retention`]); what one batch does to the tables is [`apply`]'s.
//!
//! This module must never be reached but through the request channel: the write connection is
//! the writer thread's alone.

mod apply;
mod retention;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use tokio::sync::{broadcast, oneshot};

use crate::checkpoint::{self, Cause, Checkpointer};
use crate::codec::Trainer;
use crate::registry::FieldRegistry;
use crate::sealed::{Part, Place, Sealer};
use crate::work::{ParsedOp, Work, WriteRequest};
use crate::{Error, Event, EventKind, Result, StoreConfig};
use apply::{Applied, StagedList, apply_batch, discard_all_staged, put_documents};
use retention::prune;

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
    /// Seals the rows of encrypted types before they are written, and compresses the others'.
    sealer: Arc<Sealer>,
    /// Trains the compression dictionaries.
    trainer: Trainer,
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
        sealer: Arc<Sealer>,
    ) -> Result<Writer> {
        conn.wal_hook(Some(count_frames));
        discard_all_staged(&conn)?;
        fields.open(&mut conn)?;
        let max_seq: Option<i64> =
            conn.query_row("SELECT max(seq) FROM versions", [], |r| r.get(0))?;
        let frame_bytes = checkpoint::frame_bytes(&conn);
        Ok(Writer {
            conn,
            path: path.to_path_buf(),
            events,
            resource_ids: HashMap::new(),
            history: HashMap::new(),
            next_seq: max_seq.unwrap_or(0) as u64 + 1,
            fields,
            checkpointer,
            sealer,
            trainer: Trainer::default(),
            frame_bytes,
            wal_mark: config.journal_limit_bytes,
            config,
        })
    }

    /// After a commit that left more than the limit in the WAL, waits until the checkpointer
    /// has brought it back under the limit: each attempt is a truncating checkpoint that holds
    /// the next write while it waits for the readers of old snapshots, and the writer asks
    /// again until one succeeds. So however the threads are scheduled, the WAL holds at most
    /// the limit plus one group of batches — unless a reader keeps one snapshot longer than
    /// [`checkpoint::JOURNAL_WAIT_MAX`]: then the writer gives up, goes on, and waits again once
    /// the WAL has grown by another limit's worth. A reader that never lets go slows writes
    /// down instead of stopping them.
    fn bound_wal(&mut self) {
        let limit = self.config.journal_limit_bytes;
        let bytes = WAL_FRAMES.with(std::cell::Cell::get) * self.frame_bytes;
        if bytes <= limit {
            self.wal_mark = limit;
            return;
        }
        if bytes <= self.wal_mark {
            return;
        }
        let started = std::time::Instant::now();
        loop {
            if self.checkpointer.over_limit() {
                self.wal_mark = limit;
                self.checkpointer
                    .holds()
                    .record(Cause::JournalLimit, started.elapsed());
                return;
            }
            if started.elapsed() >= checkpoint::JOURNAL_WAIT_MAX {
                tracing::warn!(wal_bytes = bytes, waited = ?started.elapsed(),
                    "a reader held an old snapshot past the journal wait; writes go on and the WAL grows");
                self.wal_mark = bytes + limit;
                self.checkpointer
                    .holds()
                    .record(Cause::JournalLimit, started.elapsed());
                return;
            }
            // A failed attempt already waited for the readers (the checkpointer's busy
            // timeout), unless it failed outright: then not in a tight loop.
            std::thread::sleep(checkpoint::RETRY_PAUSE);
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
            // Staged chunks of a list are grouped only with the chunks that follow them of the
            // same list, and such a group takes no savepoints (see `commit_group`).
            let staged = Self::staged_resource(&first).map(str::to_string);
            let mut group = vec![first];
            while group.len() < 256 {
                match requests.try_recv() {
                    Ok(next) if matches!(next.work, Work::Fields(_)) => {
                        held = Some(next);
                        break;
                    }
                    Ok(next)
                        if staged.is_some()
                            && staged.as_deref() != Self::staged_resource(&next) =>
                    {
                        held = Some(next);
                        break;
                    }
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit_group(group, staged.is_some());
        }
    }

    /// The resource whose list a request stages a chunk of, if it does.
    fn staged_resource(request: &WriteRequest) -> Option<&str> {
        match &request.work {
            Work::Batch { resource, ops, .. }
                if !ops.is_empty() && ops.iter().all(|op| matches!(op, ParsedOp::Stage { .. })) =>
            {
                Some(resource)
            }
            _ => None,
        }
    }

    /// Lets the trainer see the bodies a group is about to write, so that a type that has
    /// gathered enough gets its dictionary (committed on its own) before they are written.
    fn train(&mut self, group: &[WriteRequest]) {
        for request in group {
            let Work::Batch { resource, ops, .. } = &request.work else {
                continue;
            };
            if self.sealer.writes_with(resource).is_some() {
                continue;
            }
            let bodies = ops.iter().flat_map(|op| {
                let objects: &[_] = match op {
                    ParsedOp::Apply(kind, object) if *kind != EventKind::Deleted => {
                        std::slice::from_ref(object)
                    }
                    ParsedOp::Replace(_, objects)
                    | ParsedOp::Stage { objects, .. }
                    | ParsedOp::ReplaceListed {
                        changed: objects, ..
                    } => objects,
                    _ => &[],
                };
                objects.iter().map(|o| o.body.as_slice())
            });
            self.trainer
                .observe(&self.conn, self.sealer.codec(), resource, bodies);
        }
    }

    /// Applies a group of batches in one transaction. `one_list`: the group is staged chunks
    /// of one list, which fail together.
    fn commit_group(&mut self, group: Vec<WriteRequest>, one_list: bool) {
        self.train(&group);
        let seq_before = self.next_seq;
        // Every reply is owed an answer, even when the group fails before or half-way.
        let (works, mut outcomes): (Vec<Work>, Vec<(oneshot::Sender<_>, Result<Applied>)>) = group
            .into_iter()
            .map(|request| (request.work, (request.reply, Err(Error::Closed))))
            .unzip();
        let mut touched = Vec::new();
        // A batch alone in its group needs no savepoint: if it fails, the transaction is only
        // its own. Nor do staged chunks of one list: if one fails, the list is started again
        // whatever the others did, so they fail with it. (A savepoint makes SQLite copy every
        // page the batch changes into a journal first: a quarter of the writer's time while a
        // list is stored.)
        let alone = works.len() == 1;
        let savepoints = !alone && !one_list;
        // One commit, one time: every batch of the group and the pruning after it see it.
        let now = now_ms();
        let result = (|| -> Result<()> {
            // IMMEDIATE: take the write lock up front, so waiting for a checkpoint goes through
            // the busy handler instead of failing on a stale read snapshot.
            let began = std::time::Instant::now();
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Longer than a moment only behind a truncating checkpoint's lock.
            self.checkpointer
                .holds()
                .record(Cause::Checkpoint, began.elapsed());
            for (at, mut work) in works.into_iter().enumerate() {
                if let Work::Batch { resource, .. } = &work {
                    self.fields.ensure(&tx, resource)?;
                }
                if savepoints {
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
                                &self.sealer,
                                &mut self.resource_ids,
                                &mut self.next_seq,
                                resource,
                                ops,
                                now,
                            )
                        }),
                    Work::Documents(documents) => {
                        put_documents(&tx, documents, now).map(|()| Applied {
                            events: Vec::new(),
                            staged: None,
                            history_added: 0,
                        })
                    }
                    Work::Fields(_) => unreachable!("declarations are applied alone"),
                };
                let applied = match applied {
                    Ok(applied) if !savepoints => Ok(applied),
                    Ok(applied) => {
                        tx.execute_batch("RELEASE batch")?;
                        Ok(applied)
                    }
                    Err(e) if !savepoints => return Err(e),
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
                    now,
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
                let refused = (alone || one_list) && matches!(e, Error::InvalidObject(_));
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
                        Error::InvalidObject(why) if one_list => Error::InvalidObject(why.clone()),
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
                "SELECT v.seq, v.namespace, v.name, v.body, v.cells, v.created,
                     (SELECT json_group_object(l.key, l.value) FROM labels l
                      WHERE l.version_id = v.id)
                 FROM versions v WHERE v.resource_id = ?1 AND v.rv = ?2 ORDER BY v.seq",
            )?;
            let mut rows = stmt.query(params![list.rid, list.stored_rv as i64])?;
            let mut chunk = Vec::with_capacity(PUBLISH_CHUNK);
            while let Some(r) = rows.next()? {
                let (namespace, name): (String, String) = (r.get(1)?, r.get(2)?);
                let place = Place {
                    resource: &list.resource,
                    namespace: &namespace,
                    name: &name,
                };
                let blob = |i| {
                    r.get_ref(i)?
                        .as_blob_or_null()
                        .map_err(rusqlite::Error::from)
                };
                let body = self
                    .sealer
                    .open(place, Part::Body, blob(3)?.unwrap_or_default())?
                    .into_owned();
                let cells = self
                    .sealer
                    .open_opt(place, Part::Cells, blob(4)?)?
                    .map(|c| c.into_owned().into());
                chunk.push(Event {
                    resource: list.resource.clone(),
                    seq: r.get::<_, i64>(0)? as u64,
                    kind: EventKind::Added,
                    resource_version: list.rv,
                    namespace,
                    name,
                    body: body.into(),
                    cells,
                    attributes: Arc::new(crate::Attributes::from_label_json(
                        r.get::<_, Option<String>>(6)?.as_deref(),
                        r.get(5)?,
                    )),
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
