//! Counts of each resource type's current state, kept by the writer in the same transactions as
//! the data: how many objects there are, and how many have each value of each indexed field.
//!
//! A dashboard's "pods per phase" or a UI's "page 1 of 1,000" over the latest state then costs
//! a few rows instead of a walk over every object (100,000 pods: a summary walked the field's
//! index against the whole selection, 80 ms). Only whole-type questions at the latest state can
//! use them; anything filtered, namespaced or as of an older version is counted from the data.
//! The counts never include a first list still being staged (see `crate::relist`): it is
//! counted whole when it commits.
//!
//! Each count is kept for the whole type and for the object's namespace (keys prefixed
//! `@namespace/`; namespaces are DNS labels, so `/` cannot occur in one): a UI's "page 1 of 12"
//! of one namespace's running pods is then a row too, and the page's walk stops at its end.

use std::collections::HashMap;

use rusqlite::{Connection, Result, params};

/// The `key` of the row counting the objects themselves (indexed fields' keys start with `#`).
const OBJECTS: &str = "";

/// The key of a count within one namespace: `@namespace/` and the whole type's key.
pub(crate) fn in_namespace(namespace: &str, key: &str) -> String {
    format!("@{namespace}/{key}")
}

/// The indexed fields (`#field` keys) of a stored version, as its label rows hold them.
pub(crate) fn fields_of(conn: &Connection, version_id: i64) -> Result<Vec<(String, String)>> {
    conn.prepare_cached(
        "SELECT key, value FROM labels WHERE version_id = ?1 AND key >= '#' AND key < '$'",
    )?
    .query_map([version_id], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Changes to the counts gathered over one batch and written once at its end (see
/// [`Deltas::write`]): a batch of 1,000 new pods then writes a few dozen count rows instead of
/// ~10,000 upserts, each of which rewrote (and journaled) the same 16 KB page.
#[derive(Default)]
pub(crate) struct Deltas(HashMap<(String, String), i64>);

impl Deltas {
    /// Moves the counts from an object's old current version to its new one: `None` where there
    /// is none (an object that appears, or is deleted). Only what differs is counted, so a
    /// change that keeps its field values (most changes) adds nothing here.
    pub(crate) fn replace_object(
        &mut self,
        namespace: &str,
        old: Option<&[(String, String)]>,
        new: Option<&[(String, String)]>,
    ) {
        let objects = i64::from(new.is_some()) - i64::from(old.is_some());
        if objects != 0 {
            self.add_both(namespace, OBJECTS, "", objects);
        }
        let (old, new) = (old.unwrap_or_default(), new.unwrap_or_default());
        for (key, value) in old.iter().filter(|f| !new.contains(f)) {
            self.add_both(namespace, key, value, -1);
        }
        for (key, value) in new.iter().filter(|f| !old.contains(f)) {
            self.add_both(namespace, key, value, 1);
        }
    }

    /// Counts a change for the whole type and for the object's namespace.
    fn add_both(&mut self, namespace: &str, key: &str, value: &str, delta: i64) {
        for key in [key.to_string(), in_namespace(namespace, key)] {
            *self.0.entry((key, value.to_string())).or_default() += delta;
        }
    }

    /// Writes the gathered changes (in key order, so that the file does not depend on hashing)
    /// and forgets them.
    pub(crate) fn write(&mut self, conn: &Connection, rid: i64) -> Result<()> {
        let mut changes: Vec<_> = self.0.drain().filter(|(_, delta)| *delta != 0).collect();
        changes.sort_unstable();
        for ((key, value), delta) in changes {
            add(conn, rid, &key, &value, delta)?;
        }
        Ok(())
    }
}

/// Adds `delta` to one count; a count that reaches zero is dropped, so the table stays as small
/// as the set of current values.
fn add(conn: &Connection, rid: i64, key: &str, value: &str, delta: i64) -> Result<()> {
    let n: i64 = conn
        .prepare_cached(
            "INSERT INTO current_counts (resource_id, key, value, n) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (resource_id, key, value) DO UPDATE SET n = n + excluded.n
             RETURNING n",
        )?
        .query_row(params![rid, key, value, delta], |r| r.get(0))?;
    if n <= 0 {
        conn.prepare_cached(
            "DELETE FROM current_counts WHERE resource_id = ?1 AND key = ?2 AND value = ?3",
        )?
        .execute(params![rid, key, value])?;
    }
    Ok(())
}

/// Recounts one resource type from its current versions.
pub(crate) fn recount(conn: &Connection, rid: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM current_counts WHERE resource_id = ?1")?
        .execute([rid])?;
    conn.prepare_cached(
        "INSERT INTO current_counts (resource_id, key, value, n)
         SELECT ?1, '', '', count(*) FROM versions
         WHERE resource_id = ?1 AND rv_to IS NULL AND kind != 2
           AND rv <= (SELECT last_rv FROM resources WHERE id = ?1)",
    )?
    .execute([rid])?;
    conn.prepare_cached(
        "INSERT INTO current_counts (resource_id, key, value, n)
         SELECT ?1, l.key, l.value, count(*) FROM labels l
         WHERE l.resource_id = ?1 AND l.key >= '#' AND l.key < '$' AND l.version_id IN
           (SELECT id FROM versions WHERE resource_id = ?1 AND rv_to IS NULL AND kind != 2
              AND rv <= (SELECT last_rv FROM resources WHERE id = ?1))
         GROUP BY l.key, l.value",
    )?
    .execute([rid])?;
    conn.prepare_cached(
        "INSERT INTO current_counts (resource_id, key, value, n)
         SELECT ?1, '@' || namespace || '/', '', count(*) FROM versions
         WHERE resource_id = ?1 AND rv_to IS NULL AND kind != 2
           AND rv <= (SELECT last_rv FROM resources WHERE id = ?1)
         GROUP BY namespace",
    )?
    .execute([rid])?;
    conn.prepare_cached(
        "INSERT INTO current_counts (resource_id, key, value, n)
         SELECT ?1, '@' || v.namespace || '/' || l.key, l.value, count(*)
         FROM labels l JOIN versions v ON v.id = l.version_id
         WHERE l.resource_id = ?1 AND l.key >= '#' AND l.key < '$'
           AND v.resource_id = ?1 AND v.rv_to IS NULL AND v.kind != 2
           AND v.rv <= (SELECT last_rv FROM resources WHERE id = ?1)
         GROUP BY v.namespace, l.key, l.value",
    )?
    .execute([rid])?;
    Ok(())
}

/// Recounts every resource type (a file migrated to a schema with counts).
pub(crate) fn recount_all(conn: &Connection) -> Result<()> {
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM resources")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_>>()?;
    for rid in ids {
        recount(conn, rid)?;
    }
    Ok(())
}

/// How many objects a resource type holds now, in one namespace or in all.
pub(crate) fn objects(conn: &Connection, rid: i64, namespace: Option<&str>) -> Result<u64> {
    count(conn, rid, &scoped(namespace, OBJECTS), "")
}

/// How many current objects have one value of an indexed field (`#field` key), in one
/// namespace or in all.
pub(crate) fn with_value(
    conn: &Connection,
    rid: i64,
    namespace: Option<&str>,
    key: &str,
    value: &str,
) -> Result<u64> {
    count(conn, rid, &scoped(namespace, key), value)
}

/// A key, within a namespace if one is given.
pub(crate) fn scoped(namespace: Option<&str>, key: &str) -> String {
    namespace.map_or_else(|| key.to_string(), |ns| in_namespace(ns, key))
}

fn count(conn: &Connection, rid: i64, key: &str, value: &str) -> Result<u64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(n), 0) FROM current_counts
         WHERE resource_id = ?1 AND key = ?2 AND value = ?3",
    )?
    .query_row(params![rid, key, value], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
}

/// How many current objects have each value of an indexed field (`#field` key).
pub(crate) fn values(conn: &Connection, rid: i64, key: &str) -> Result<Vec<(String, u64)>> {
    conn.prepare_cached(
        "SELECT value, n FROM current_counts WHERE resource_id = ?1 AND key = ?2 AND n > 0",
    )?
    .query_map(params![rid, key], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })?
    .collect()
}
