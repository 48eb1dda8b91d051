//! Each type's fields on PostgreSQL: the set its versions' `attributes` reflect, recorded in
//! `vai_fields` (as the SQLite file records it), and the reindexing when a type's set changes —
//! fields that went are removed from every version's attributes, those that came are
//! backfilled into every stored version. What a set *is* is the registry's (`crate::registry`); this module only
//! keeps the database in step with it, inside the writer's transaction.

use std::collections::BTreeMap;

use super::Tx;
use crate::fields::{self, IndexedField};
use crate::{FieldSet, Result};

/// A type's fields as the database records them; empty for a type with none.
pub(super) fn stored(tx: &Tx, key: &str) -> Result<FieldSet> {
    Ok(FieldSet::new(
        tx.query(
            "SELECT name, path, default_value, selectable, indexed, declared
             FROM vai_fields WHERE resource = $1",
            &[&key],
        )?
        .iter()
        .map(|r| {
            IndexedField::stored(
                r.get(0),
                serde_json::from_str(r.get(1)).unwrap_or_default(),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
            )
        })
        .collect(),
    ))
}

/// What CRDs declared in earlier runs (store key → `jsonPath`s).
pub(super) fn declared(tx: &Tx) -> Result<BTreeMap<String, Vec<String>>> {
    let mut declared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in tx.query(
        "SELECT resource, name FROM vai_fields WHERE declared ORDER BY resource, name",
        &[],
    )? {
        declared
            .entry(r.get(0))
            .or_default()
            .push(format!(".{}", r.get::<_, &str>(1)));
    }
    Ok(declared)
}

/// Every type the database knows of: stored, or with a recorded set.
pub(super) fn keys(tx: &Tx) -> Result<Vec<String>> {
    Ok(tx
        .query(
            "SELECT key FROM vai_resources UNION SELECT resource FROM vai_fields",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Makes the recorded set of `key`, and its label rows, those of `set`.
pub(super) fn reconcile(tx: &Tx, key: &str, set: &FieldSet) -> Result<()> {
    let old = stored(tx, key)?;
    if old == *set {
        return Ok(());
    }
    let (removed, added) = crate::registry::changes(&old, set);
    let rid: Option<i64> = tx
        .query_opt("SELECT id FROM vai_resources WHERE key = $1", &[&key])?
        .map(|r| r.get(0));
    if let Some(rid) = rid {
        for f in &removed {
            tx.execute(
                "UPDATE vai_versions SET attributes = attributes - $2
                 WHERE resource_id = $1 AND attributes ? $2",
                &[&rid, &f.key()],
            )?;
        }
        if !added.is_empty() {
            let added = FieldSet::new(added.clone());
            for row in tx.query(
                "SELECT id, body FROM vai_versions WHERE resource_id = $1 AND kind != 2",
                &[&rid],
            )? {
                let id: i64 = row.get(0);
                // A body that cannot be read keeps no fields.
                let values: serde_json::Map<String, serde_json::Value> =
                    fields::extract(&added, row.get(1))
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into()))
                        .collect();
                if !values.is_empty() {
                    tx.execute(
                        "UPDATE vai_versions
                         SET attributes = coalesce(attributes, '{}') || $2::text::jsonb WHERE id = $1",
                        &[&id, &serde_json::Value::Object(values).to_string()],
                    )?;
                }
            }
        }
    }
    tx.execute("DELETE FROM vai_fields WHERE resource = $1", &[&key])?;
    for f in set.iter() {
        tx.execute(
            "INSERT INTO vai_fields (resource, name, path, default_value, selectable, indexed,
                 declared)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &key,
                &f.name,
                &serde_json::to_string(f.path()).expect("keys serialise"),
                &f.default_value(),
                &f.selectable,
                &f.indexed,
                &f.declared,
            ],
        )?;
    }
    crate::registry::log_reindexed(key, &added, &removed);
    Ok(())
}
