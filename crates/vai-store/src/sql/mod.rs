//! The one place that turns typed requests into SQL, every value a bound parameter: lists and
//! gets ([`list`]), history replays ([`events`]) and the query API's pages and summaries
//! ([`page`]), each run inside the one read transaction its caller opened.
//!
//! This module must never open a connection or a transaction of its own, and never write.

pub(crate) mod events;
pub(crate) mod list;
pub(crate) mod page;

use rusqlite::{OptionalExtension, Transaction};

use crate::{Error, Result};

/// A resource type's row: its id and window.
pub(crate) struct ResourceRow {
    pub id: i64,
    pub last_rv: u64,
    pub compacted_rv: u64,
}

pub(crate) fn resource_row(tx: &Transaction, resource: &str) -> Result<ResourceRow> {
    tx.prepare_cached("SELECT id, last_rv, compacted_rv FROM resources WHERE key = ?1")?
        .query_row([resource], |r| {
            Ok(ResourceRow {
                id: r.get(0)?,
                last_rv: r.get::<_, i64>(1)? as u64,
                compacted_rv: r.get::<_, i64>(2)? as u64,
            })
        })
        .optional()?
        .ok_or_else(|| Error::UnknownResource(resource.to_string()))
}

/// Checks that `rv` can be answered exactly: inside the window, not in the future.
fn check_window(row: &ResourceRow, rv: u64) -> Result<()> {
    if rv < row.compacted_rv {
        return Err(Error::Gone {
            requested: rv,
            oldest: row.compacted_rv,
        });
    }
    if rv > row.last_rv {
        return Err(Error::TooLargeResourceVersion {
            requested: rv,
            current: row.last_rv,
        });
    }
    Ok(())
}

/// The conditions that select the versions of one resource visible at a resource version.
const VISIBLE_AT: &str = "v.resource_id = ?1 AND v.rv <= ?2
     AND (v.rv_to IS NULL OR v.rv_to > ?2) AND v.kind != 2";

/// The rows a list scans, in key order. The index is named: the planner would otherwise
/// sometimes prefer `versions_by_rv` and sort every row (bodies included) to restore key order.
pub(crate) const BY_KEY: &str = "versions v INDEXED BY versions_by_key";

/// The rows in creation order, newest first (ties in key order): for pages of a whole type
/// sorted that way, which then need no sort.
pub(crate) const NEWEST_FIRST: &str = "versions v INDEXED BY versions_by_created";

/// One namespace's rows in creation order, newest first (ties in name order).
pub(crate) const NEWEST_FIRST_IN_NAMESPACE: &str =
    "versions v INDEXED BY versions_by_namespace_created";
