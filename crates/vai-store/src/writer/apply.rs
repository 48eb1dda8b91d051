//! Applying one batch inside the writer's transaction: new versions of objects, replays
//! skipped, full lists swapped in (what vanished becomes a tombstone), staged first lists
//! discarded or committed, the resource's versions and counts kept in step, and the events
//! recorded for subscribers.
//!
//! Runs on the writer's transaction only; this module must never commit, publish events or
//! prune history (the writer loop and `retention` do).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::counts;
use crate::object::StoredObject;
use crate::sealed::{Part, Place, Sealer};
use crate::work::ParsedOp;
use crate::{Error, Event, EventKind, Result};

/// What a batch produced: its events, and a staged list to publish once committed.
pub(super) struct Applied {
    pub(super) events: Vec<Event>,
    pub(super) staged: Option<StagedList>,
    /// How many rows the batch made history.
    pub(super) history_added: u64,
}

/// A committed staged list, whose events are read back and published in chunks after the
/// commit rather than held in memory (a first list can be the whole cluster).
pub(super) struct StagedList {
    pub(super) resource: Arc<str>,
    pub(super) rid: i64,
    pub(super) stored_rv: u64,
    pub(super) rv: u64,
}

/// Drops the rows of staged lists that never committed (the process stopped mid-list): every
/// row above its resource's last resource version.
pub(super) fn discard_all_staged(conn: &Connection) -> Result<()> {
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

fn resource_id(
    tx: &Transaction,
    sealer: &Sealer,
    ids: &mut HashMap<String, i64>,
    resource: &str,
) -> Result<i64> {
    if let Some(id) = ids.get(resource) {
        return Ok(*id);
    }
    tx.execute(
        "INSERT INTO resources (key) VALUES (?1) ON CONFLICT (key) DO NOTHING",
        [resource],
    )?;
    // A type stored for the first time since the open: record which key its rows are sealed
    // with (a type stored before was recorded at open).
    if let Some(key) = sealer.writes_with(resource) {
        crate::sealed::record_resource(tx, resource, key)?;
    }
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
    sealer: &'a Sealer,
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
        let place = Place {
            resource: &self.resource,
            namespace: &obj.namespace,
            name: &obj.name,
        };
        let body = self.sealer.seal(place, Part::Body, &obj.body);
        let cells = self
            .sealer
            .seal_opt(place, Part::Cells, obj.cells.as_deref());
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
            body,
            cells,
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
            attributes: Arc::new(crate::Attributes::from_pairs(
                obj.labels.clone(),
                obj.fields.iter().cloned(),
                obj.created.clone(),
            )),
        });
        Ok(())
    }
}

pub(super) fn put_documents(
    tx: &Transaction,
    documents: &[crate::Document],
    now: i64,
) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO documents (key, content_type, body, fetched_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET content_type = excluded.content_type,
             body = excluded.body, fetched_ms = excluded.fetched_ms",
    )?;
    for doc in documents {
        insert.execute(params![doc.key, doc.content_type, doc.body, now])?;
    }
    Ok(())
}

/// Applies one batch's operations on `resource` in order, at time `now` (ms since the epoch),
/// with sequence numbers from `next_seq`; `ids` caches resource ids.
pub(super) fn apply_batch(
    tx: &Transaction,
    sealer: &Sealer,
    ids: &mut HashMap<String, i64>,
    next_seq: &mut u64,
    resource: &str,
    ops: &[ParsedOp],
    now: i64,
) -> Result<Applied> {
    let rid = resource_id(tx, sealer, ids, resource)?;
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
        sealer,
        rid,
        resource: Arc::from(resource),
        next_seq,
        now,
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
                if body_of(ctx, cur.id, &obj.namespace, &obj.name)?.0 != obj.body {
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
        let (body, cells) = body_of(ctx, cur.id, &namespace, &name)?;
        // Its last state's labels and fields, as indexed: what its DELETED event is selected
        // by (the tombstone itself keeps no label rows).
        let (labels, fields) = label_rows(ctx.tx, cur.id)?;
        let created: Option<String> = ctx
            .tx
            .prepare_cached("SELECT created FROM versions WHERE id = ?1")?
            .query_row([cur.id], |r| r.get(0))?;
        let obj = StoredObject {
            namespace,
            name,
            resource_version: rv,
            labels,
            created,
            body,
            cells,
            fields,
        };
        ctx.put(EventKind::Deleted, rv, &obj, Some(cur))?;
    }
    Ok(())
}

/// A version's labels and its indexed fields' label rows (keys with [`crate::fields::PREFIX`]).
fn label_rows(conn: &Connection, id: i64) -> Result<LabelsAndFields> {
    let mut labels = std::collections::BTreeMap::new();
    let mut fields = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT key, value FROM labels WHERE version_id = ?1")?;
    let mut rows = stmt.query([id])?;
    while let Some(r) = rows.next()? {
        let (key, value): (String, String) = (r.get(0)?, r.get(1)?);
        if key.starts_with(crate::fields::PREFIX) {
            fields.push((key, value));
        } else {
            labels.insert(key, value);
        }
    }
    Ok((labels, fields))
}

/// Labels by key, and indexed fields' label rows.
type LabelsAndFields = (
    std::collections::BTreeMap<String, String>,
    Vec<(String, String)>,
);

/// A version's body and table cells.
type BodyAndCells = (Vec<u8>, Option<Vec<u8>>);

/// The body and cells of a version (of the key `namespace`/`name`), opened.
fn body_of(ctx: &Ctx, id: i64, namespace: &str, name: &str) -> Result<BodyAndCells> {
    let (body, cells): BodyAndCells = ctx
        .tx
        .prepare_cached("SELECT body, cells FROM versions WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let place = Place {
        resource: &ctx.resource,
        namespace,
        name,
    };
    Ok((
        ctx.sealer.open(place, Part::Body, &body)?.into_owned(),
        ctx.sealer
            .open_opt(place, Part::Cells, cells.as_deref())?
            .map(std::borrow::Cow::into_owned),
    ))
}
