//! Counts of each resource type's current state, kept by the writer in the same transactions as
//! the data: how many objects there are, and how many have each value of each indexed field.
//!
//! A dashboard's "pods per phase" or a UI's "page 1 of 1,000" over the latest state then costs
//! a few rows instead of a walk over every object (100,000 pods: a summary walked the field's
//! index against the whole selection, 80 ms). Only whole-type questions at the latest state can
//! use them; anything filtered, namespaced or as of an older version is counted from the data.
//! The counts never include a first list still being staged (see `crate::relist`): it is
//! counted whole when it commits.

use rusqlite::{Connection, Result, params};

/// The `key` of the row counting the objects themselves (indexed fields' keys start with `#`).
const OBJECTS: &str = "";

/// Counts a new current object and its indexed fields (`#field` keys).
pub(crate) fn add_object(conn: &Connection, rid: i64, fields: &[(String, String)]) -> Result<()> {
    let mut add = conn.prepare_cached(
        "INSERT INTO current_counts (resource_id, key, value, n) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (resource_id, key, value) DO UPDATE SET n = n + 1",
    )?;
    add.execute(params![rid, OBJECTS, ""])?;
    for (key, value) in fields {
        add.execute(params![rid, key, value])?;
    }
    Ok(())
}

/// Uncounts a version that stops being current (superseded or deleted).
pub(crate) fn remove_version(conn: &Connection, rid: i64, version_id: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE current_counts SET n = n - 1 WHERE resource_id = ?1 AND key = ?2 AND value = ''",
    )?
    .execute(params![rid, OBJECTS])?;
    // The version's indexed fields; values no longer held by anything are dropped, so the
    // table stays as small as the set of current values.
    for sql in [
        "UPDATE current_counts SET n = n - 1 WHERE resource_id = ?1 AND (key, value) IN
           (SELECT key, value FROM labels WHERE version_id = ?2 AND key >= '#' AND key < '$')",
        "DELETE FROM current_counts WHERE resource_id = ?1 AND n <= 0 AND (key, value) IN
           (SELECT key, value FROM labels WHERE version_id = ?2 AND key >= '#' AND key < '$')",
    ] {
        conn.prepare_cached(sql)?
            .execute(params![rid, version_id])?;
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

/// How many objects a resource type holds now.
pub(crate) fn objects(conn: &Connection, rid: i64) -> Result<u64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(n), 0) FROM current_counts
         WHERE resource_id = ?1 AND key = ?2 AND value = ''",
    )?
    .query_row(params![rid, OBJECTS], |r| r.get::<_, i64>(0))
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
