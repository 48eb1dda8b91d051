//! History replay: the stored events of a resource after a resource version, in commit
//! order, for watches that resume.
//!
//! Reads only, in the caller's snapshot; this module must never return a row a staged list
//! still hides.

use rusqlite::{Transaction, params};

use super::resource_row;
use crate::{Error, Event, EventKind, Result};

/// Every event of `resource` after `rv`, in commit order, and the highest sequence number of
/// the resource in this snapshot.
pub(crate) fn events_since(tx: &Transaction, resource: &str, rv: u64) -> Result<(Vec<Event>, u64)> {
    let row = resource_row(tx, resource)?;
    if rv < row.compacted_rv {
        return Err(Error::Gone {
            requested: rv,
            oldest: row.compacted_rv,
        });
    }
    let name: std::sync::Arc<str> = resource.into();
    let mut stmt = tx.prepare_cached(
        "SELECT seq, kind, rv, namespace, name, body, cells FROM versions
         WHERE resource_id = ?1 AND rv > ?2 AND rv <= ?3 ORDER BY rv, seq",
    )?;
    // Rows above the last resource version belong to a list still being staged (see
    // `crate::Relist`): not visible yet, not even to a replay.
    let events = stmt
        .query_map(params![row.id, rv as i64, row.last_rv as i64], |r| {
            Ok(Event {
                resource: name.clone(),
                seq: r.get::<_, i64>(0)? as u64,
                kind: EventKind::from_i64(r.get(1)?),
                resource_version: r.get::<_, i64>(2)? as u64,
                namespace: r.get(3)?,
                name: r.get(4)?,
                body: r.get::<_, Vec<u8>>(5)?.into(),
                cells: r.get::<_, Option<Vec<u8>>>(6)?.map(Into::into),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let max_seq: Option<i64> = tx
        .prepare_cached("SELECT max(seq) FROM versions WHERE resource_id = ?1 AND rv <= ?2")?
        .query_row(params![row.id, row.last_rv as i64], |r| r.get(0))?;
    Ok((events, max_seq.unwrap_or(0) as u64))
}
