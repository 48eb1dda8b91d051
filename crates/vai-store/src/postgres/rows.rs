//! The writer's rows of one batch, written in bulk: new versions (their labels and fields
//! inside) and the current rows they supersede are kept here and written by a few statements
//! over arrays (`unnest`) when the batch ends, before any statement that reads them, or every
//! [`FLUSH_EVERY`] versions; each key's current row is looked up once per batch, for all the
//! batch's keys in one query. A statement is a round trip; per object the writer had made
//! five or more.
//!
//! This module only writes `vai_versions`, inside the writer's transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Tx;
use crate::object::StoredObject;
use crate::{EventKind, Result};

/// Versions kept at most before they are written.
const FLUSH_EVERY: usize = 2_000;

const TOMBSTONE: i16 = EventKind::Deleted as i16;

/// Where a key's current row is: stored (its id), or among the versions not written yet.
#[derive(Clone, Copy, Debug)]
pub(super) enum At {
    Stored(i64),
    Pending(usize),
}

/// A key's current row.
#[derive(Clone, Copy, Debug)]
pub(super) struct Current {
    pub(super) at: At,
    pub(super) rv: i64,
    pub(super) tombstone: bool,
}

/// A version to write.
pub(super) struct NewVersion {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) rv: i64,
    pub(super) kind: i16,
    pub(super) seq: i64,
    pub(super) created: Option<String>,
    pub(super) body: Arc<[u8]>,
    pub(super) cells: Option<Arc<[u8]>>,
    /// Its labels and indexed fields as a JSON object (none for a tombstone).
    pub(super) attributes: Option<String>,
    rv_to: Option<i64>,
    prune_rv: Option<i64>,
    prune_ms: Option<i64>,
}

impl NewVersion {
    /// A version of `obj` at `rv`, sequence number `seq`, written at `now`.
    pub(super) fn of(obj: &StoredObject, kind: EventKind, rv: i64, seq: i64, now: i64) -> Self {
        let deleted = kind == EventKind::Deleted;
        NewVersion {
            namespace: obj.namespace.clone(),
            name: obj.name.clone(),
            rv,
            kind: kind as i16,
            seq,
            created: obj.created.clone(),
            body: obj.body.as_slice().into(),
            cells: obj.cells.as_deref().map(Into::into),
            attributes: (!deleted).then(|| attributes_json(obj)),
            rv_to: None,
            prune_rv: deleted.then_some(rv),
            prune_ms: deleted.then_some(now),
        }
    }
}

/// An object's labels and indexed fields (keys `#`-prefixed: no label key has a `#`) as the
/// JSON object `attributes` holds.
pub(super) fn attributes_json(obj: &StoredObject) -> String {
    let map: serde_json::Map<String, serde_json::Value> = obj
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .chain(
            obj.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into())),
        )
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The labels and indexed fields of an `attributes` object (`None`: a tombstone's).
pub(super) fn parse_attributes(
    json: Option<&str>,
) -> (
    std::collections::BTreeMap<String, String>,
    Vec<(String, String)>,
) {
    let pairs: std::collections::BTreeMap<String, String> = json
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let (fields, labels): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|(k, _)| k.starts_with(crate::fields::PREFIX));
    (labels.into_iter().collect(), fields)
}

type Key = (String, String);

/// One batch's rows of one resource type. See the module docs.
pub(super) struct Rows {
    rid: i64,
    /// When the batch is written (ms since the Unix epoch): superseded rows' window.
    now: i64,
    versions: Vec<NewVersion>,
    /// Stored current rows superseded: (id, the superseding version's rv).
    superseded: Vec<(i64, i64)>,
    /// Each key's current row as far as this batch knows (`None`: it has none).
    known: HashMap<Key, Option<Current>>,
    /// History rows (`prune_rv` set) this batch added: the type's `history_rows` grows by it.
    history_added: i64,
    /// Versions written so far.
    written: usize,
}

impl Rows {
    pub(super) fn new(rid: i64, now: i64) -> Rows {
        Rows {
            rid,
            now,
            versions: Vec::new(),
            superseded: Vec::new(),
            known: HashMap::new(),
            history_added: 0,
            written: 0,
        }
    }

    /// The resource type's id.
    pub(super) fn rid(&self) -> i64 {
        self.rid
    }

    /// Looks up, in one query, the current rows of the keys this batch does not know yet.
    pub(super) fn look_up<'k>(
        &mut self,
        tx: &Tx,
        keys: impl IntoIterator<Item = (&'k str, &'k str)>,
    ) -> Result<()> {
        let mut asked = HashSet::new();
        let (mut namespaces, mut names) = (Vec::new(), Vec::new());
        for (ns, name) in keys {
            let key = (ns.to_string(), name.to_string());
            if !self.known.contains_key(&key) && asked.insert(key) {
                namespaces.push(ns);
                names.push(name);
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        // One probe of the index of current rows per key, whatever the statistics say (a
        // join let the planner, with statistics from before a first list, walk the type's
        // every row for each key: the `LIMIT` keeps the subquery a probe).
        let rows = tx.query(
            "SELECT k.namespace, k.name, v.id, v.rv, v.kind
             FROM unnest($2::text[], $3::text[]) AS k(namespace, name)
             CROSS JOIN LATERAL (SELECT c.id, c.rv, c.kind FROM vai_versions c
                 WHERE c.resource_id = $1 AND c.namespace = k.namespace COLLATE \"C\"
                     AND c.name = k.name COLLATE \"C\" AND c.rv_to IS NULL
                 LIMIT 1) v",
            &[&self.rid, &namespaces, &names],
        )?;
        for key in asked {
            self.known.insert(key, None);
        }
        for row in rows {
            let current = Current {
                at: At::Stored(row.get(2)),
                rv: row.get(3),
                tombstone: row.get::<_, i16>(4) == TOMBSTONE,
            };
            self.known.insert((row.get(0), row.get(1)), Some(current));
        }
        Ok(())
    }

    /// The current row of a key (looked up if this batch does not know it yet).
    pub(super) fn current(&mut self, tx: &Tx, ns: &str, name: &str) -> Result<Option<Current>> {
        let key = (ns.to_string(), name.to_string());
        if !self.known.contains_key(&key) {
            self.look_up(tx, [(ns, name)])?;
        }
        Ok(self.known[&key])
    }

    /// The body of a current row.
    pub(super) fn body(&self, tx: &Tx, current: &Current) -> Result<Arc<[u8]>> {
        Ok(match current.at {
            At::Pending(i) => self.versions[i].body.clone(),
            At::Stored(id) => tx
                .query_one("SELECT body FROM vai_versions WHERE id = $1", &[&id])?
                .get::<_, Vec<u8>>(0)
                .into(),
        })
    }

    /// The bodies of stored rows, by id, in one query.
    pub(super) fn stored_bodies(tx: &Tx, ids: &[i64]) -> Result<HashMap<i64, Vec<u8>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(tx
            .query(
                "SELECT id, body FROM vai_versions WHERE id = ANY($1)",
                &[&ids],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Adds a version, superseding `superseded` (the key's current row) if there is one. A
    /// staged version (`visible` false) is not the key's current row for later lookups.
    pub(super) fn put(
        &mut self,
        tx: &Tx,
        version: NewVersion,
        superseded: Option<Current>,
        visible: bool,
    ) -> Result<()> {
        match superseded.map(|c| (c.at, c.tombstone)) {
            Some((At::Stored(id), tombstone)) => {
                self.superseded.push((id, version.rv));
                // A tombstone is history from the start.
                self.history_added += i64::from(!tombstone);
            }
            Some((At::Pending(i), _)) => {
                let old = &mut self.versions[i];
                old.rv_to = Some(version.rv);
                // A tombstone's own window (its rv, when it was written) stays.
                if old.kind != TOMBSTONE {
                    old.prune_rv = Some(version.rv);
                    old.prune_ms = Some(self.now);
                }
            }
            None => {}
        }
        if visible {
            let current = Current {
                at: At::Pending(self.versions.len()),
                rv: version.rv,
                tombstone: version.kind == TOMBSTONE,
            };
            self.known.insert(
                (version.namespace.clone(), version.name.clone()),
                Some(current),
            );
        }
        self.versions.push(version);
        if self.versions.len() >= FLUSH_EVERY {
            self.flush(tx)?;
        }
        Ok(())
    }

    /// Versions written by what was flushed.
    pub(super) fn written(&self) -> usize {
        self.written
    }

    /// History rows added by what was flushed (see [`Rows::flush`]).
    pub(super) fn history_added(&self) -> i64 {
        self.history_added
    }

    /// Forgets what this batch knows of current rows (after statements that change which
    /// rows are current: a staged list committed).
    pub(super) fn forget(&mut self) {
        self.known.clear();
    }

    /// Writes what is kept: the superseded rows closed first (a key has one current row),
    /// then the new versions.
    pub(super) fn flush(&mut self, tx: &Tx) -> Result<()> {
        if !self.superseded.is_empty() {
            let (ids, rvs): (Vec<i64>, Vec<i64>) = self.superseded.drain(..).unzip();
            tx.execute(
                "UPDATE vai_versions v SET rv_to = u.rv,
                     prune_rv = CASE WHEN v.kind = 2 THEN v.rv ELSE u.rv END,
                     prune_ms = CASE WHEN v.kind = 2 THEN v.prune_ms ELSE $3 END
                 FROM unnest($1::int8[], $2::int8[]) AS u(id, rv)
                 WHERE v.id = u.id",
                &[&ids, &rvs, &self.now],
            )?;
        }
        if self.versions.is_empty() {
            return Ok(());
        }
        let v = &self.versions;
        self.history_added += v.iter().filter(|v| v.prune_rv.is_some()).count() as i64;
        let namespaces: Vec<&str> = v.iter().map(|v| v.namespace.as_str()).collect();
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        let rvs: Vec<i64> = v.iter().map(|v| v.rv).collect();
        let rv_tos: Vec<Option<i64>> = v.iter().map(|v| v.rv_to).collect();
        let kinds: Vec<i16> = v.iter().map(|v| v.kind).collect();
        let seqs: Vec<i64> = v.iter().map(|v| v.seq).collect();
        let prune_rvs: Vec<Option<i64>> = v.iter().map(|v| v.prune_rv).collect();
        let prune_mss: Vec<Option<i64>> = v.iter().map(|v| v.prune_ms).collect();
        let created: Vec<Option<&str>> = v.iter().map(|v| v.created.as_deref()).collect();
        let bodies: Vec<&[u8]> = v.iter().map(|v| &*v.body).collect();
        let cells: Vec<Option<&[u8]>> = v.iter().map(|v| v.cells.as_deref()).collect();
        let attributes: Vec<Option<&str>> = v.iter().map(|v| v.attributes.as_deref()).collect();
        let ids: HashMap<i64, i64> = tx
            .query(
                "INSERT INTO vai_versions
                     (resource_id, namespace, name, rv, rv_to, kind, seq, prune_rv, prune_ms,
                      created, body, cells, attributes)
                 SELECT $1, u.namespace, u.name, u.rv, u.rv_to, u.kind, u.seq, u.prune_rv,
                     u.prune_ms, u.created, u.body, u.cells, u.attributes::jsonb
                 FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int2[],
                     $7::int8[], $8::int8[], $9::int8[], $10::text[], $11::bytea[],
                     $12::bytea[], $13::text[])
                     AS u(namespace, name, rv, rv_to, kind, seq, prune_rv, prune_ms, created,
                          body, cells, attributes)
                 RETURNING seq, id",
                &[
                    &self.rid,
                    &namespaces,
                    &names,
                    &rvs,
                    &rv_tos,
                    &kinds,
                    &seqs,
                    &prune_rvs,
                    &prune_mss,
                    &created,
                    &bodies,
                    &cells,
                    &attributes,
                ],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let id_of = |v: &NewVersion| ids[&v.seq];
        for current in self.known.values_mut().flatten() {
            if let At::Pending(i) = current.at {
                current.at = At::Stored(id_of(&self.versions[i]));
            }
        }
        self.written += self.versions.len();
        self.versions.clear();
        Ok(())
    }
}
