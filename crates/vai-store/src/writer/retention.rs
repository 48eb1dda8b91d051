//! Retention: how much history each resource type keeps (by count and by age), and the
//! pruning that raises its window's start (`compacted_rv`) and deletes what fell out of it.
//!
//! Runs inside the writer's transaction, after the group's batches; this module must never
//! touch a live (current) version.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use crate::{Result, StoreConfig};

/// Applies the retention limits to one resource's history: raises `compacted_rv` so that at
/// most `history_max_events` history rows remain and none older than `history_max_age`, then
/// deletes what fell out of the window. `now_ms`: the commit's time (ms since the epoch).
pub(super) fn prune(
    tx: &Transaction,
    ids: &HashMap<String, i64>,
    history: &mut HashMap<i64, u64>,
    resource: &str,
    config: &StoreConfig,
    now_ms: i64,
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
    let cutoff_ms = now_ms - config.history_max_age.as_millis() as i64;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A resource with history rows at resource versions 1..=n (row k became history at
    /// `k * 1000` ms) and one current row at n + 1.
    fn fixture(conn: &mut rusqlite::Connection, n: i64) -> Transaction<'_> {
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO resources (id, key) VALUES (1, '/v1/pods')", [])
            .unwrap();
        for k in 1..=n + 1 {
            let (prune_rv, prune_ms) = if k <= n {
                (Some(k), Some(k * 1000))
            } else {
                (None, None)
            };
            tx.execute(
                "INSERT INTO versions (resource_id, namespace, name, rv, kind, seq, prune_rv, prune_ms, body)
                 VALUES (1, 'ns', 'p', ?1, 1, ?1, ?2, ?3, x'7b7d')",
                params![k, prune_rv, prune_ms],
            )
            .unwrap();
        }
        tx
    }

    fn compacted(tx: &Transaction) -> (i64, u64) {
        let rv = tx
            .query_row("SELECT compacted_rv FROM resources WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        (rv, history_rows(tx, 1).unwrap())
    }

    fn config(events: u64, age: Duration) -> StoreConfig {
        StoreConfig {
            history_max_events: events,
            history_max_age: age,
            ..StoreConfig::default()
        }
    }

    #[test]
    fn by_count_the_newest_rows_stay_and_by_age_the_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::schema::open_writer(&dir.path().join("r.db")).unwrap();
        let tx = fixture(&mut conn, 10);
        let ids = HashMap::from([("/v1/pods".to_string(), 1)]);
        let mut history = HashMap::new();
        let long = Duration::from_secs(3600);
        // Within both limits: nothing moves.
        prune(
            &tx,
            &ids,
            &mut history,
            "/v1/pods",
            &config(20, long),
            10_000,
        )
        .unwrap();
        assert_eq!(compacted(&tx), (0, 10));
        // By count: 4 history rows stay (versions 7..=10); the window starts after 6.
        prune(
            &tx,
            &ids,
            &mut history,
            "/v1/pods",
            &config(4, long),
            10_000,
        )
        .unwrap();
        assert_eq!(compacted(&tx), (6, 4));
        assert_eq!(history[&1], 4, "the writer's count follows the rows");
        // By age: rows that became history more than 2.5 s before 10 s (versions 7) go.
        let age = Duration::from_millis(2500);
        prune(
            &tx,
            &ids,
            &mut history,
            "/v1/pods",
            &config(20, age),
            10_000,
        )
        .unwrap();
        assert_eq!(compacted(&tx), (7, 3));
        // The current version is never pruned, whatever the limits.
        prune(
            &tx,
            &ids,
            &mut history,
            "/v1/pods",
            &config(0, Duration::ZERO),
            99_000,
        )
        .unwrap();
        assert_eq!(compacted(&tx), (10, 0));
        let current: i64 = tx
            .query_row(
                "SELECT count(*) FROM versions WHERE prune_rv IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(current, 1);
    }
}
