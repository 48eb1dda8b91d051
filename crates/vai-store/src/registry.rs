//! Which fields each resource type has ([`crate::fields`]), and the label table kept in step
//! with them when they change while objects are stored.
//!
//! A type's fields are its built-in ones, those its CRD declares selectable (sync passes them
//! to [`crate::Store::declare_fields`]) and those configured
//! ([`crate::StoreConfig::indexed_fields`]). The registry is one per [`crate::Store`], not one
//! per process: several stores may live in one process, each with its own configuration.
//!
//! - The threads that parse objects read it (which fields to extract), and so does the server
//!   (which field selectors the store answers). Only the writer changes it, after committing
//!   what the change needs.
//! - The `fields` table (schema v5) holds each type's set as the label table reflects it:
//!   which fields are indexed, at which path, with which default, and which its CRD declared.
//!   Queries take a type's set from their own snapshot ([`stored`]), so a query never relies on
//!   an index its snapshot does not hold, nor misses one it does.
//! - When a type's indexed set changes — a CRD declares a field or drops one, the configuration
//!   differs from the last run's, a newer vai has more built-in fields — the writer, in one
//!   transaction, deletes the label rows of the fields that went (or changed), backfills the
//!   fields that came into every stored version of the type (history included: lists "as of" a
//!   resource version use the same index), and records the new set. So an answer is never
//!   silently incomplete. A backfill reads every stored object of the type once (the writer
//!   waits meanwhile); it happens when a set changes, which is rare.
//! - Objects are parsed outside the writer, with the set current then. The registry's
//!   generation changes with every set change; a batch parsed under an older generation has its
//!   fields extracted again by the writer before it is applied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::Result;
use crate::fields::{self, ConfiguredField, FieldSet, IndexedField};
use crate::sealed::{Part, Place, Sealer};
use crate::work::ParsedOp;

/// The fields of every type of one store (see the [module](self)).
#[derive(Debug)]
pub(crate) struct FieldRegistry {
    state: RwLock<State>,
    /// Types whose stored set matches the registry's in this run (the writer's bookkeeping).
    reconciled: Mutex<HashSet<String>>,
    /// Opens encrypted bodies for a backfill.
    sealer: Arc<Sealer>,
}

#[derive(Debug)]
struct State {
    /// Changes whenever a type's set does.
    generation: u64,
    configured: Vec<ConfiguredField>,
    /// The `jsonPath`s CRDs declare selectable, per store key.
    declared: BTreeMap<String, Vec<String>>,
    /// Sets computed so far.
    sets: HashMap<String, Arc<FieldSet>>,
}

impl FieldRegistry {
    /// A registry with these configured fields and nothing declared yet, over the rows
    /// `sealer` opens.
    pub fn new(configured: Vec<ConfiguredField>, sealer: Arc<Sealer>) -> FieldRegistry {
        FieldRegistry {
            state: RwLock::new(State {
                generation: 1,
                configured,
                declared: BTreeMap::new(),
                sets: HashMap::new(),
            }),
            reconciled: Mutex::new(HashSet::new()),
            sealer,
        }
    }

    /// A type's fields, and the generation they belong to.
    pub fn get(&self, key: &str) -> (u64, Arc<FieldSet>) {
        {
            let state = self.state.read().expect("fields lock");
            if let Some(set) = state.sets.get(key) {
                return (state.generation, set.clone());
            }
        }
        let mut state = self.state.write().expect("fields lock");
        let State {
            generation,
            configured,
            declared,
            sets,
        } = &mut *state;
        let set = sets.entry(key.to_string()).or_insert_with(|| {
            let declared = declared.get(key).map(Vec::as_slice).unwrap_or(&[]);
            Arc::new(FieldSet::compose(key, declared, configured))
        });
        (*generation, set.clone())
    }

    /// At open, on the writer's connection: loads what CRDs declared in earlier runs and
    /// brings the stored set (and index) of every stored type up to date, in one transaction.
    pub fn open(&self, conn: &mut Connection) -> Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut declared: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let mut stmt = tx.prepare("SELECT resource, name FROM fields WHERE declared")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                declared
                    .entry(r.get(0)?)
                    .or_default()
                    .push(format!(".{}", r.get::<_, String>(1)?));
            }
        }
        let keys: Vec<String> = tx
            .prepare("SELECT key FROM resources UNION SELECT resource FROM fields")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        self.load(declared);
        for key in &keys {
            reconcile(&tx, &self.sealer, key, &self.get(key).1)?;
        }
        tx.commit()?;
        for key in keys {
            self.reconciled_now(key);
        }
        Ok(())
    }

    /// Takes what CRDs declared in earlier runs (as an engine read it at open).
    pub fn load(&self, declared: BTreeMap<String, Vec<String>>) {
        let mut state = self.state.write().expect("fields lock");
        state.declared = declared;
        state.sets.clear();
    }

    /// Whether this run has recorded `key`'s set in the engine (see [`FieldRegistry::ensure`]).
    pub fn is_reconciled(&self, key: &str) -> bool {
        self.reconciled
            .lock()
            .expect("reconciled lock")
            .contains(key)
    }

    /// `key`'s set is now recorded in the engine (once the transaction that did commits).
    pub fn reconciled_now(&self, key: String) {
        self.reconciled.lock().expect("reconciled lock").insert(key);
    }

    /// Before the writer applies a batch of `key` (in the group's transaction): records the
    /// type's set if this run has not yet (a type written for the first time).
    pub fn ensure(&self, tx: &Connection, key: &str) -> Result<()> {
        if self.is_reconciled(key) {
            return Ok(());
        }
        reconcile(tx, &self.sealer, key, &self.get(key).1)?;
        self.reconciled_now(key.to_string());
        Ok(())
    }

    /// The writer's transaction rolled back: what [`FieldRegistry::ensure`] recorded in it is
    /// gone.
    pub fn rolled_back(&self) {
        self.reconciled.lock().expect("reconciled lock").clear();
    }

    /// Extracts again the fields of a batch's objects if they were parsed under another
    /// generation than the current one.
    pub fn refresh(&self, key: &str, parsed_with: u64, ops: &mut [ParsedOp]) -> Result<()> {
        let (generation, set) = self.get(key);
        if parsed_with == generation {
            return Ok(());
        }
        for op in ops {
            let objects = match op {
                ParsedOp::Apply(_, object) => std::slice::from_mut(object),
                ParsedOp::Replace(_, objects)
                | ParsedOp::Stage { objects, .. }
                | ParsedOp::ReplaceListed {
                    changed: objects, ..
                } => objects.as_mut_slice(),
                ParsedOp::Bookmark(_) | ParsedOp::CommitStaged(_) | ParsedOp::State { .. } => {
                    &mut []
                }
            };
            for object in objects {
                object.fields = fields::extract(&set, &object.body)?;
            }
        }
        Ok(())
    }

    /// Replaces what CRDs declare (store key → `jsonPath`s): the types whose declarations
    /// changed are reindexed in one transaction on the writer's connection, and the registry
    /// changes once it has committed.
    pub fn declare(
        &self,
        conn: &mut Connection,
        declared: BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        let Some(plan) = self.plan(declared) else {
            return Ok(());
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (key, set) in &plan.sets {
            reconcile(&tx, &self.sealer, key, set)?;
        }
        tx.commit()?;
        self.adopt(plan);
        Ok(())
    }

    /// What replacing the declarations with `declared` changes: `None` if nothing, else the
    /// new set of every type whose declarations changed, for the engine to reindex (in one
    /// transaction) before [`FieldRegistry::adopt`].
    pub fn plan(&self, declared: BTreeMap<String, Vec<String>>) -> Option<Declaration> {
        let declared: BTreeMap<String, Vec<String>> = declared
            .into_iter()
            .filter_map(|(key, mut paths)| {
                paths.sort();
                paths.dedup();
                (!paths.is_empty()).then_some((key, paths))
            })
            .collect();
        let (old, configured) = {
            let state = self.state.read().expect("fields lock");
            (state.declared.clone(), state.configured.clone())
        };
        let sets: Vec<(String, Arc<FieldSet>)> = old
            .keys()
            .chain(declared.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|key| old.get(*key) != declared.get(*key))
            .map(|key| {
                let paths = declared.get(key).map(Vec::as_slice).unwrap_or(&[]);
                (
                    key.clone(),
                    Arc::new(FieldSet::compose(key, paths, &configured)),
                )
            })
            .collect();
        (!sets.is_empty()).then_some(Declaration { declared, sets })
    }

    /// A declaration's reindexing committed: the registry changes.
    pub fn adopt(&self, plan: Declaration) {
        let mut state = self.state.write().expect("fields lock");
        state.declared = plan.declared;
        state.generation += 1;
        for (key, set) in plan.sets {
            self.reconciled_now(key.clone());
            state.sets.insert(key, set);
        }
    }
}

/// A change of declarations (see [`FieldRegistry::plan`]).
pub(crate) struct Declaration {
    declared: BTreeMap<String, Vec<String>>,
    /// The new set of each type whose declarations changed.
    pub sets: Vec<(String, Arc<FieldSet>)>,
}

/// How a type's set changes: the indexed fields whose label rows go, and those whose rows
/// must be backfilled.
pub(crate) fn changes<'a>(
    old: &'a FieldSet,
    new: &FieldSet,
) -> (Vec<&'a IndexedField>, Vec<IndexedField>) {
    let kept =
        |f: &IndexedField, other: &FieldSet| other.get(&f.name).is_some_and(|o| o.same_index(f));
    let removed = old.iter().filter(|f| f.indexed && !kept(f, new)).collect();
    let added = new
        .iter()
        .filter(|f| f.indexed && !kept(f, old))
        .cloned()
        .collect();
    (removed, added)
}

/// A type's fields as a snapshot records them (what its label rows hold); empty for a type
/// with none.
pub(crate) fn stored(conn: &Connection, key: &str) -> Result<FieldSet> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, path, default_value, selectable, indexed, declared
         FROM fields WHERE resource = ?1",
    )?;
    let rows = stmt.query_map([key], |r| {
        let path: String = r.get(1)?;
        Ok(IndexedField::stored(
            r.get(0)?,
            serde_json::from_str(&path).unwrap_or_default(),
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    Ok(FieldSet::new(rows.collect::<rusqlite::Result<_>>()?))
}

/// Records `set` as `key`'s set (schema v5 records the built-in sets of existing types).
pub(crate) fn record(conn: &Connection, key: &str, set: &FieldSet) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM fields WHERE resource = ?1")?
        .execute([key])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO fields (resource, name, path, default_value, selectable, indexed, declared)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for f in set.iter() {
        insert.execute(params![
            key,
            f.name,
            serde_json::to_string(f.path()).expect("keys serialise"),
            f.default_value(),
            f.selectable,
            f.indexed,
            f.declared
        ])?;
    }
    Ok(())
}

/// Makes the stored set of `key`, and its label rows, those of `set`: the label rows of indexed
/// fields that went or changed are deleted, those of fields that came are backfilled into every
/// stored version.
fn reconcile(tx: &Connection, sealer: &Sealer, key: &str, set: &FieldSet) -> Result<()> {
    let old = stored(tx, key)?;
    if old == *set {
        return Ok(());
    }
    let rid: Option<i64> = tx
        .prepare_cached("SELECT id FROM resources WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    let (removed, added) = changes(&old, set);
    if let Some(rid) = rid {
        let mut delete =
            tx.prepare_cached("DELETE FROM labels WHERE resource_id = ?1 AND key = ?2")?;
        for f in &removed {
            delete.execute(params![rid, f.key()])?;
        }
        if !added.is_empty() {
            backfill(tx, sealer, key, rid, &FieldSet::new(added.clone()))?;
        }
        if !removed.is_empty() || !added.is_empty() {
            // The writer's counts per field value, and each version's copy of its values,
            // follow the label rows.
            crate::counts::recount(tx, rid)?;
            fields::fill_columns(tx, Some(rid))?;
        }
    }
    record(tx, key, set)?;
    log_reindexed(key, &added, &removed);
    Ok(())
}

/// Says which fields of a type were reindexed, if any were.
pub(crate) fn log_reindexed(key: &str, added: &[IndexedField], removed: &[&IndexedField]) {
    if removed.is_empty() && added.is_empty() {
        return;
    }
    tracing::info!(
        resource = key,
        added = ?added.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        removed = ?removed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        "reindexed the type's fields"
    );
}

/// Adds the label rows of `fields` (indexed, of one type) to every stored version of the type.
/// Bodies are the objects as upstream sent them; one that cannot be read keeps no fields.
fn backfill(
    tx: &Connection,
    sealer: &Sealer,
    key: &str,
    rid: i64,
    fields: &FieldSet,
) -> Result<()> {
    let mut versions = tx.prepare(
        "SELECT id, namespace, name, body FROM versions WHERE resource_id = ?1 AND kind != 2",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO labels (version_id, key, value, resource_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut rows = versions.query([rid])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let (namespace, name): (String, String) = (row.get(1)?, row.get(2)?);
        let place = Place {
            resource: key,
            namespace: &namespace,
            name: &name,
        };
        let body = row.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
        let body = sealer.open(place, Part::Body, body)?;
        for (k, v) in fields::extract(fields, &body).unwrap_or_default() {
            insert.execute(params![id, k, v, rid])?;
        }
    }
    Ok(())
}
