//! The PostgreSQL writer: one thread, one connection (the one holding the writer's lock),
//! batches group-committed in one transaction each inside its own savepoint, with the same
//! semantics as the SQLite writer — replays skipped, full lists swapped in with tombstones for
//! what vanished, staged first lists invisible until committed, the resource's versions in the
//! same transaction as its objects, retention applied, events published after the commit.
//!
//! This module must never be reached but through the request channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use super::rows::{At, Current, NewVersion, Rows};
use super::{Statements, Tx};
use tokio::sync::broadcast;

use super::block;
use crate::object::StoredObject;
use crate::registry::FieldRegistry;
use crate::work::{ParsedOp, Work, WriteRequest};
use crate::{Attributes, Error, Event, EventKind, Result, StoreConfig};

/// Events per published chunk of a staged list.
const PUBLISH_CHUNK: i64 = 1024;

pub(super) struct Writer {
    client: tokio_postgres::Client,
    /// The writer connection's prepared statements.
    statements: Statements,
    config: StoreConfig,
    events: broadcast::Sender<Arc<[Event]>>,
    fields: Arc<FieldRegistry>,
    next_seq: i64,
    /// Each type's last resource version as committed (what a standby taking over from this
    /// writer knows: see `role`).
    committed: HashMap<String, u64>,
    /// What committed transactions told of each type, so that a batch asks the database
    /// only what it does not know (each statement is a round trip).
    known: Known,
    /// Versions written by this writer, and how many it had written when it last took the
    /// tables' statistics (see [`Writer::keep_statistics`]).
    written: (u64, u64),
}

/// The writer's memory of committed state (only this process writes the database while it
/// holds the lock, so it stays true): a group's batches see what those before them did, and
/// it is kept only if the group commits.
#[derive(Clone, Default)]
struct Known {
    /// Each type's row id in `vai_resources` (never deleted).
    rids: HashMap<String, i64>,
    /// The types that may have staged rows (a first list begun and not committed): the others
    /// have none to discard. Empty at open, which discards them all.
    staging: HashSet<i64>,
}

/// Why [`Writer::run`] returned.
pub(super) enum Ended {
    /// Every sender is gone: the store closed.
    Closed,
    /// The session (and the writer's lock with it) is lost: each type's last committed version.
    Lost(HashMap<String, u64>),
}

/// Versions written before the writer first takes the tables' statistics.
const STATISTICS_FROM: u64 = 10_000;

/// How often an idle writer checks that its session is still there.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A committed staged list, published after the commit from the database.
struct StagedList {
    resource: Arc<str>,
    rid: i64,
    stored_rv: i64,
    rv: i64,
}

/// What one batch produced.
#[derive(Default)]
struct Applied {
    events: Vec<Event>,
    staged: Option<StagedList>,
    /// The type and its last resource version after it (none for documents).
    last_rv: Option<(String, u64)>,
    /// The type's row id and its count of history rows after the batch (none for documents).
    resource: Option<(i64, i64)>,
    /// Whether the type has staged rows after the batch, if the batch changed that.
    staging: Option<bool>,
    /// Versions the batch wrote.
    written: usize,
}

impl Writer {
    pub(super) fn new(
        client: tokio_postgres::Client,
        config: StoreConfig,
        events: broadcast::Sender<Arc<[Event]>>,
        fields: Arc<FieldRegistry>,
    ) -> Result<Writer> {
        // The writer's statements are kept prepared, but each is planned for its arguments:
        // they are over arrays of one to thousands of rows, and a generic plan for one length
        // is wrong for others (the look-up of current rows hashed the whole table, 6 ms for
        // one key). Planning costs little beside them.
        block(client.batch_execute("SET plan_cache_mode = force_custom_plan"))?;
        // Rows a list staged and never committed (the writer stopped mid-list) go at open.
        block(client.execute(
            "DELETE FROM vai_versions v USING vai_resources r
             WHERE v.resource_id = r.id AND v.rv > r.last_rv",
            &[],
        ))?;
        let max: Option<i64> =
            block(client.query_one("SELECT max(seq) FROM vai_versions", &[]))?.get(0);
        let committed = block(client.query("SELECT key, last_rv FROM vai_resources", &[]))?
            .into_iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
            .collect();
        // What CRDs declared in earlier runs, and every stored type's set brought up to date
        // (a configuration that indexes other fields reindexes them here).
        let mut client = client;
        let statements = Statements::default();
        let raw = block(client.transaction())?;
        let tx = Tx::new(&raw, &statements);
        fields.load(super::fields::declared(&tx)?);
        let keys = super::fields::keys(&tx)?;
        for key in &keys {
            super::fields::reconcile(&tx, key, &fields.get(key).1)?;
        }
        block(raw.commit())?;
        for key in keys {
            fields.reconciled_now(key);
        }
        Ok(Writer {
            client,
            statements,
            config,
            events,
            fields,
            next_seq: max.unwrap_or(0) + 1,
            committed,
            known: Known::default(),
            written: (0, 0),
        })
    }

    /// Runs until every sender is gone, or the session is lost (a closed connection, seen
    /// after a failed commit or within [`SESSION_CHECK`] while idle).
    pub(super) fn run(mut self, requests: &Receiver<WriteRequest>) -> Ended {
        // Field declarations change how later batches are indexed: each is applied alone,
        // between groups.
        let mut held = None;
        loop {
            if self.client.is_closed() {
                return Ended::Lost(self.committed);
            }
            let first = match held.take() {
                Some(first) => first,
                None => match requests.recv_timeout(SESSION_CHECK) {
                    Ok(first) => first,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            if let Work::Fields(declared) = first.work {
                let _ = first
                    .reply
                    .send(self.declare(declared).map(|()| Arc::from([])));
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
        // Let the next writer in at once, not when the server notices the closed connection,
        // and ring the standbys' doorbell so that one takes over now, not at its next look.
        if let Err(e) = block(
            self.client
                .execute("SELECT pg_advisory_unlock($1)", &[&super::WRITER_LOCK]),
        )
        .and_then(|_| {
            block(
                self.client
                    .batch_execute(&format!("NOTIFY {}", super::tail::CHANNEL)),
            )
        }) {
            tracing::warn!(error = %e, "PostgreSQL: releasing the writer's lock");
        }
        Ended::Closed
    }

    /// Replaces what CRDs declare: the types whose declarations changed are reindexed in one
    /// transaction, and the registry changes once it has committed.
    fn declare(&mut self, declared: std::collections::BTreeMap<String, Vec<String>>) -> Result<()> {
        let Some(plan) = self.fields.plan(declared) else {
            return Ok(());
        };
        let raw = block(self.client.transaction())?;
        let tx = Tx::new(&raw, &self.statements);
        for (key, set) in &plan.sets {
            super::fields::reconcile(&tx, key, set)?;
        }
        block(raw.commit())?;
        self.fields.adopt(plan);
        Ok(())
    }

    fn commit_group(&mut self, group: Vec<WriteRequest>) {
        let seq_before = self.next_seq;
        let alone = group.len() == 1;
        let (works, mut outcomes): (Vec<Work>, Vec<_>) = group
            .into_iter()
            .map(|r| (r.work, (r.reply, Err::<Applied, _>(Error::Closed))))
            .unzip();
        let now = now_ms();
        let mut next_seq = self.next_seq;
        let (config, fields, statements) = (&self.config, &self.fields, &self.statements);
        // What the group's batches learn, for the batches after them; kept if it commits.
        let mut known = self.known.clone();
        let mut recorded: Vec<String> = Vec::new();
        let result = (|| -> Result<()> {
            let raw = block(self.client.transaction())?;
            let tx = Tx::new(&raw, statements);
            // Each type written: its id and count of history rows after its last batch.
            let mut touched = std::collections::BTreeMap::new();
            for (at, mut work) in works.into_iter().enumerate() {
                // A type written for the first time in this run: its set recorded (outside
                // the batch's savepoint, so it stays even if the batch fails).
                if let Work::Batch { resource, .. } = &work
                    && !fields.is_reconciled(resource)
                    && !recorded.contains(resource)
                {
                    super::fields::reconcile(&tx, resource, &fields.get(resource).1)?;
                    recorded.push(resource.clone());
                }
                if !alone {
                    tx.batch_execute("SAVEPOINT batch")?;
                }
                let applied = match &mut work {
                    Work::Batch {
                        resource,
                        ops,
                        parsed_with,
                    } => fields
                        .refresh(resource, *parsed_with, ops)
                        .and_then(|()| apply_batch(&tx, &known, &mut next_seq, resource, ops, now)),
                    Work::Documents(documents) => {
                        put_documents(&tx, documents, now).map(|()| Applied::default())
                    }
                    Work::Fields(_) => unreachable!("declarations are applied alone"),
                };
                let applied = match applied {
                    Ok(applied) => {
                        if !alone {
                            tx.batch_execute("RELEASE batch")?;
                        }
                        if let (Some((resource, _)), Some((rid, history_rows))) =
                            (&applied.last_rv, applied.resource)
                        {
                            touched.insert(rid, history_rows);
                            known.rids.insert(resource.clone(), rid);
                            match applied.staging {
                                Some(true) => known.staging.insert(rid),
                                Some(false) => known.staging.remove(&rid),
                                None => false,
                            };
                        }
                        Ok(applied)
                    }
                    Err(e) if alone => return Err(e),
                    Err(e) => {
                        tx.batch_execute("ROLLBACK TO batch; RELEASE batch")?;
                        Err(e)
                    }
                };
                outcomes[at].1 = applied;
            }
            for (rid, history_rows) in &touched {
                prune(&tx, *rid, *history_rows, config, now)?;
            }
            if !touched.is_empty() {
                // Delivered at the commit: readers in other processes look (see `tail`).
                tx.batch_execute(&format!("NOTIFY {}", super::tail::CHANNEL))?;
            }
            block(raw.commit())?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.next_seq = next_seq;
                self.known = known;
                for key in recorded {
                    self.fields.reconciled_now(key);
                }
                let written = outcomes
                    .iter()
                    .filter_map(|(_, o)| o.as_ref().ok())
                    .map(|a| a.written as u64)
                    .sum::<u64>();
                for (reply, outcome) in outcomes {
                    let outcome = outcome.map(|applied| {
                        if let Some((resource, rv)) = applied.last_rv {
                            self.committed.insert(resource, rv);
                        }
                        let events = Arc::<[Event]>::from(applied.events);
                        if !events.is_empty() {
                            let _ = self.events.send(events.clone());
                        }
                        if let Some(list) = applied.staged {
                            self.publish_staged(&list);
                        }
                        events
                    });
                    let _ = reply.send(outcome);
                }
                self.keep_statistics(written);
            }
            Err(e) => {
                self.next_seq = seq_before;
                if !matches!(e, Error::InvalidObject(_) | Error::Unsupported(_)) {
                    tracing::error!(error = %e, "store commit failed; the batches are not applied");
                }
                self.fields.rolled_back();
                if alone && let Some((reply, _)) = outcomes.pop() {
                    let _ = reply.send(Err(e));
                    return;
                }
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(Error::CommitFailed(e.to_string())));
                }
            }
        }
    }

    /// Takes the tables' statistics again when what this writer wrote has doubled since it
    /// last did (from [`STATISTICS_FROM`] versions): the planner's choices follow them, and
    /// those of an empty table are wrong once a first list is in (the server's own autovacuum
    /// comes later, and by thresholds that a table's first growth outruns).
    fn keep_statistics(&mut self, written: u64) {
        let (total, at) = &mut self.written;
        *total += written;
        if *total < STATISTICS_FROM || *total < 2 * *at {
            return;
        }
        *at = *total;
        let started = std::time::Instant::now();
        match block(self.client.batch_execute("ANALYZE vai_versions")) {
            Ok(()) => {
                tracing::debug!(took = ?started.elapsed(), versions = *total, "PostgreSQL: statistics taken")
            }
            Err(e) => tracing::warn!(error = %e, "PostgreSQL: taking the tables' statistics"),
        }
    }

    /// Publishes a committed staged list's events (ADDED at the list's resource version),
    /// read back in chunks. A failed read is logged: the data is committed, and a subscriber
    /// that misses events resynchronises as after a lag.
    fn publish_staged(&self, list: &StagedList) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let mut after = 0i64;
        loop {
            let rows = match block(self.client.query(
                "SELECT v.seq, v.namespace, v.name, v.body, v.cells, v.created,
                     v.attributes::text
                 FROM vai_versions v
                 WHERE v.resource_id = $1 AND v.rv = $2 AND v.seq > $3
                 ORDER BY v.seq LIMIT $4",
                &[&list.rid, &list.stored_rv, &after, &PUBLISH_CHUNK],
            )) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, resource = %list.resource, "publishing a stored list's events");
                    return;
                }
            };
            let Some(last) = rows.last() else { return };
            after = last.get(0);
            let events: Vec<Event> = rows
                .iter()
                .map(|r| Event {
                    resource: list.resource.clone(),
                    seq: r.get::<_, i64>(0) as u64,
                    kind: EventKind::Added,
                    resource_version: list.rv as u64,
                    namespace: r.get(1),
                    name: r.get(2),
                    body: r.get::<_, Vec<u8>>(3).into(),
                    cells: r.get::<_, Option<Vec<u8>>>(4).map(Into::into),
                    attributes: Arc::new(Attributes::from_label_json(
                        r.get::<_, Option<String>>(6).as_deref(),
                        r.get(5),
                    )),
                })
                .collect();
            let _ = self.events.send(events.into());
        }
    }
}

fn put_documents(tx: &Tx, documents: &[crate::Document], now: i64) -> Result<()> {
    for doc in documents {
        tx.execute(
            "INSERT INTO vai_documents (key, content_type, body, fetched_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET content_type = excluded.content_type,
                 body = excluded.body, fetched_ms = excluded.fetched_ms",
            &[&doc.key, &doc.content_type, &doc.body, &now],
        )?;
    }
    Ok(())
}

fn resource_id(tx: &Tx, known: &Known, resource: &str) -> Result<i64> {
    if let Some(rid) = known.rids.get(resource) {
        return Ok(*rid);
    }
    tx.execute(
        "INSERT INTO vai_resources (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
        &[&resource],
    )?;
    Ok(tx
        .query_one("SELECT id FROM vai_resources WHERE key = $1", &[&resource])?
        .get(0))
}

/// Deletes the rows staged above `last_rv` for one resource.
fn discard_staged(tx: &Tx, rid: i64, last_rv: i64) -> Result<()> {
    tx.execute(
        "DELETE FROM vai_versions WHERE resource_id = $1 AND rv > $2",
        &[&rid, &last_rv],
    )?;
    Ok(())
}

struct Ctx<'a, 'b> {
    tx: &'a Tx<'a, 'b>,
    rows: Rows,
    resource: Arc<str>,
    next_seq: &'a mut i64,
    now: i64,
    events: Vec<Event>,
    staging: bool,
}

impl Ctx<'_, '_> {
    /// Adds a new version of a key at `rv`, superseding its current row if it has one (see
    /// `rows`: written in bulk), and its event unless it is staged.
    fn put(
        &mut self,
        kind: EventKind,
        rv: i64,
        obj: &StoredObject,
        superseded: Option<Current>,
    ) -> Result<()> {
        let seq = *self.next_seq;
        *self.next_seq += 1;
        let version = NewVersion::of(obj, kind, rv, seq, self.now);
        if !self.staging {
            self.events.push(Event {
                resource: self.resource.clone(),
                seq: seq as u64,
                kind,
                resource_version: rv as u64,
                namespace: obj.namespace.clone(),
                name: obj.name.clone(),
                body: version.body.clone(),
                cells: version.cells.clone(),
                attributes: Arc::new(Attributes::from_pairs(
                    obj.labels.clone(),
                    obj.fields.iter().cloned(),
                    obj.created.clone(),
                )),
            });
        }
        self.rows.put(self.tx, version, superseded, !self.staging)
    }
}

fn apply_batch(
    tx: &Tx,
    known: &Known,
    next_seq: &mut i64,
    resource: &str,
    ops: &[ParsedOp],
    now: i64,
) -> Result<Applied> {
    let rid = resource_id(tx, known, resource)?;
    let row = tx.query_one(
        "SELECT last_rv, compacted_rv, list_rv FROM vai_resources WHERE id = $1 FOR UPDATE",
        &[&rid],
    )?;
    let (mut last_rv, mut compacted, mut listed): (i64, i64, Option<i64>) =
        (row.get(0), row.get(1), row.get(2));
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
    // Whether the type has staged rows after this batch, when the batch changes that.
    let mut staging = None;
    if abandons && known.staging.contains(&rid) {
        discard_staged(tx, rid, last_rv)?;
        staging = Some(false);
    }
    let mut ctx = Ctx {
        tx,
        rows: Rows::new(rid, now),
        resource: Arc::from(resource),
        next_seq,
        now,
        events: Vec::new(),
        staging: false,
    };
    let mut state_update = None;
    let mut published = None;
    let contact = ops.iter().any(|op| !matches!(op, ParsedOp::State { .. }));
    let listed_at = |rv: i64, last_rv: &mut i64, compacted: &mut i64, listed: &mut Option<i64>| {
        if listed.is_none() && *compacted == 0 {
            *compacted = rv;
        }
        *listed = Some(rv);
        *last_rv = (*last_rv).max(rv);
    };
    // Every key the batch's events touch, looked up at once.
    ctx.rows.look_up(
        tx,
        ops.iter().filter_map(|op| match op {
            ParsedOp::Apply(_, obj) => Some((obj.namespace.as_str(), obj.name.as_str())),
            _ => None,
        }),
    )?;
    for op in ops {
        if !matches!(op, ParsedOp::Apply(..) | ParsedOp::Bookmark(_)) {
            // What follows reads or changes stored rows.
            ctx.rows.flush(tx)?;
        }
        match op {
            ParsedOp::Apply(kind, obj) => {
                let rv = obj.resource_version as i64;
                let existing = ctx.rows.current(tx, &obj.namespace, &obj.name)?;
                // Replays (at or below what is held for the key, or what the last list
                // reflects) are skipped: a resumed watch never duplicates or reorders.
                if existing.is_some_and(|cur| cur.rv >= rv) || listed.is_some_and(|at| rv <= at) {
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
                last_rv = last_rv.max(*rv as i64);
                ctx.events.push(Event::bookmark(ctx.resource.clone(), *rv));
            }
            ParsedOp::Replace(rv, objects) => {
                let keys = objects
                    .iter()
                    .map(|o| (o.namespace.clone(), o.name.clone()))
                    .collect();
                replace(&mut ctx, *rv as i64, objects, &keys)?;
                listed_at(*rv as i64, &mut last_rv, &mut compacted, &mut listed);
            }
            ParsedOp::ReplaceListed {
                rv,
                changed,
                listed: keys,
            } => {
                replace(&mut ctx, *rv as i64, changed, keys)?;
                listed_at(*rv as i64, &mut last_rv, &mut compacted, &mut listed);
            }
            ParsedOp::Stage { first, objects } => {
                if *first {
                    discard_staged(tx, rid, last_rv)?;
                    let has_rows: bool = tx
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM vai_versions WHERE resource_id = $1)",
                            &[&rid],
                        )?
                        .get(0);
                    if has_rows || listed.is_some() {
                        return Err(Error::InvalidObject(format!(
                            "{resource} has data: its relist must compare, not stage"
                        )));
                    }
                }
                ctx.staging = true;
                staging = Some(true);
                for obj in objects {
                    ctx.put(EventKind::Added, staged_at, obj, None)?;
                }
                ctx.staging = false;
            }
            ParsedOp::CommitStaged(rv) => {
                let rv = *rv as i64;
                let any: bool = tx.query_one(
                    "SELECT EXISTS (SELECT 1 FROM vai_versions WHERE resource_id = $1 AND rv = $2)",
                    &[&rid, &staged_at],
                )?
                .get(0);
                let mut stored_rv = staged_at;
                if any && staged_at > rv {
                    tx.execute(
                        "UPDATE vai_versions SET rv = $3 WHERE resource_id = $1 AND rv = $2",
                        &[&rid, &staged_at, &rv],
                    )?;
                    stored_rv = rv;
                }
                // The staged rows are current now.
                ctx.rows.forget();
                staging = Some(false);
                published = any.then(|| StagedList {
                    resource: ctx.resource.clone(),
                    rid,
                    stored_rv,
                    rv,
                });
                listed_at(rv, &mut last_rv, &mut compacted, &mut listed);
            }
            ParsedOp::State { state, error } => state_update = Some((*state, error.clone())),
        }
    }
    ctx.rows.flush(tx)?;
    let history_rows: i64 = tx
        .query_one(
            "UPDATE vai_resources SET last_rv = $2, compacted_rv = $3, list_rv = $4,
             last_contact_ms = CASE WHEN $5 THEN $6 ELSE last_contact_ms END,
             history_rows = history_rows + $7
         WHERE id = $1 RETURNING history_rows",
            &[
                &rid,
                &last_rv,
                &compacted,
                &listed,
                &contact,
                &now,
                &ctx.rows.history_added(),
            ],
        )?
        .get(0);
    if let Some((state, error)) = state_update {
        tx.execute(
            "UPDATE vai_resources SET state = $2, last_error = $3 WHERE id = $1",
            &[&rid, &state.as_str(), &error],
        )?;
    }
    Ok(Applied {
        events: ctx.events,
        staged: published,
        last_rv: Some((resource.to_string(), last_rv as u64)),
        resource: Some((rid, history_rows)),
        staging,
        written: ctx.rows.written(),
    })
}

/// Swaps the live set of a resource for a full list at `rv` (`objects`: the members that may
/// differ; `listed`: every member's key): what changed becomes a new version, what vanished a
/// tombstone.
fn replace(
    ctx: &mut Ctx,
    rv: i64,
    objects: &[StoredObject],
    listed: &HashSet<(String, String)>,
) -> Result<()> {
    ctx.rows.look_up(
        ctx.tx,
        objects
            .iter()
            .map(|o| (o.namespace.as_str(), o.name.as_str())),
    )?;
    // The bodies of the stored live rows a newer version may change, read at once.
    let mut candidates = Vec::new();
    for obj in objects {
        if let Some(Current {
            at: At::Stored(id),
            rv: cur_rv,
            tombstone: false,
        }) = ctx.rows.current(ctx.tx, &obj.namespace, &obj.name)?
            && cur_rv < rv
        {
            candidates.push(id);
        }
    }
    let stored = Rows::stored_bodies(ctx.tx, &candidates)?;
    for obj in objects {
        let existing = ctx.rows.current(ctx.tx, &obj.namespace, &obj.name)?;
        match existing {
            Some(cur) if !cur.tombstone && cur.rv >= rv => {}
            Some(cur) if !cur.tombstone => {
                let same = match cur.at {
                    At::Stored(id) => stored.get(&id).is_some_and(|b| *b == obj.body),
                    At::Pending(_) => *ctx.rows.body(ctx.tx, &cur)? == *obj.body,
                };
                if !same {
                    ctx.put(EventKind::Modified, rv, obj, existing)?;
                }
            }
            _ => ctx.put(EventKind::Added, rv, obj, existing)?,
        }
    }
    ctx.rows.flush(ctx.tx)?;
    // What vanished: the live rows not listed (keys only, then the vanished rows whole).
    let rid = ctx.rows.rid();
    let vanished: Vec<i64> = ctx
        .tx
        .query(
            "SELECT namespace, name, id FROM vai_versions
             WHERE resource_id = $1 AND rv_to IS NULL AND kind != 2 AND rv < $2",
            &[&rid, &rv],
        )?
        .into_iter()
        .filter(|row| !listed.contains(&(row.get(0), row.get(1))))
        .map(|row| row.get(2))
        .collect();
    if vanished.is_empty() {
        return Ok(());
    }
    let rows = ctx.tx.query(
        "SELECT namespace, name, rv, id, body, cells, created, attributes::text
         FROM vai_versions WHERE id = ANY($1) ORDER BY namespace, name",
        &[&vanished],
    )?;
    for row in rows {
        let id: i64 = row.get(3);
        let (labels, fields) = super::rows::parse_attributes(row.get(7));
        let obj = StoredObject {
            namespace: row.get(0),
            name: row.get(1),
            resource_version: rv as u64,
            labels,
            created: row.get(6),
            body: row.get(4),
            cells: row.get(5),
            fields,
        };
        let cur = Current {
            at: At::Stored(id),
            rv: row.get(2),
            tombstone: false,
        };
        ctx.put(EventKind::Deleted, rv, &obj, Some(cur))?;
    }
    Ok(())
}

/// Retention: raises the window's start so that at most `history_max_events` history rows
/// remain and none older than `history_max_age`, then deletes what fell out of it.
/// `rows`: the type's count of history rows.
fn prune(tx: &Tx, rid: i64, rows: i64, config: &StoreConfig, now: i64) -> Result<()> {
    let max = i64::try_from(config.history_max_events).unwrap_or(i64::MAX);
    let by_count: Option<i64> = match rows.checked_sub(max.saturating_add(1)) {
        Some(excess) if excess >= 0 => tx
            .query_opt(
                "SELECT prune_rv FROM vai_versions WHERE resource_id = $1 AND prune_rv IS NOT NULL
             ORDER BY prune_rv LIMIT 1 OFFSET $2",
                &[&rid, &excess],
            )?
            .map(|r| r.get(0)),
        _ => None,
    };
    // Rows that aged out are deleted as soon as they do: the index by age finds the few.
    let cutoff = now - config.history_max_age.as_millis() as i64;
    // (`OFFSET 0` keeps the planner from answering `max` by walking the index by `prune_rv`
    // backwards through every history row younger than the cutoff: 2.8 ms per commit at
    // 8,000 history rows.)
    let by_age: Option<i64> = tx
        .query_one(
            "SELECT max(prune_rv) FROM (SELECT prune_rv FROM vai_versions
             WHERE resource_id = $1 AND prune_ms <= $2 OFFSET 0) aged",
            &[&rid, &cutoff],
        )?
        .get(0);
    let Some(new_compacted) = by_count.max(by_age) else {
        return Ok(());
    };
    let deleted = tx.execute(
        "DELETE FROM vai_versions
         WHERE resource_id = $1 AND prune_rv IS NOT NULL AND prune_rv <= $2",
        &[&rid, &new_compacted],
    )?;
    tx.execute(
        "UPDATE vai_resources SET compacted_rv = greatest(compacted_rv, $2),
             history_rows = history_rows - $3
         WHERE id = $1",
        &[&rid, &new_compacted, &(deleted as i64)],
    )?;
    Ok(())
}
