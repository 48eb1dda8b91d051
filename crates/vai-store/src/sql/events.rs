//! History replay: the stored events of a resource after a resource version, in commit
//! order, for watches that resume.
//!
//! Reads only, in the caller's snapshot; this module must never return a row a staged list
//! still hides.

use std::sync::Arc;

use rusqlite::{Transaction, params};

use super::resource_row;
use crate::sealed::{Part, Place, Sealer};
use crate::{Attributes, Error, Event, EventKind, FieldSet, Result};

/// Every event of `resource` after `rv` in this snapshot, in commit order.
pub(crate) fn events_since(
    tx: &Transaction,
    sealer: &Sealer,
    resource: &str,
    rv: u64,
) -> Result<Vec<Event>> {
    let row = resource_row(tx, resource)?;
    if rv < row.compacted_rv {
        return Err(Error::Gone {
            requested: rv,
            oldest: row.compacted_rv,
        });
    }
    let type_name: Arc<str> = resource.into();
    let mut stmt = tx.prepare_cached(
        "SELECT v.seq, v.kind, v.rv, v.namespace, v.name, v.body, v.cells, v.created,
             (SELECT json_group_object(l.key, l.value) FROM labels l WHERE l.version_id = v.id)
         FROM versions v
         WHERE v.resource_id = ?1 AND v.rv > ?2 AND v.rv <= ?3 ORDER BY v.rv, v.seq",
    )?;
    // A tombstone keeps no label rows: its attributes are read from its body (the last
    // state), with the type's fields in this snapshot — what the writer's live event held.
    let mut fields: Option<FieldSet> = None;
    // Rows above the last resource version belong to a list still being staged (see
    // `crate::Relist`): not visible yet, not even to a replay.
    let mut events = Vec::new();
    let mut rows = stmt.query(params![row.id, rv as i64, row.last_rv as i64])?;
    while let Some(r) = rows.next()? {
        let kind = EventKind::from_i64(r.get(1)?);
        let (namespace, name): (String, String) = (r.get(3)?, r.get(4)?);
        let place = Place {
            resource,
            namespace: &namespace,
            name: &name,
        };
        let body = sealer
            .open(
                place,
                Part::Body,
                r.get_ref(5)?.as_blob().map_err(rusqlite::Error::from)?,
            )?
            .into_owned();
        let cells = sealer
            .open_opt(
                place,
                Part::Cells,
                r.get_ref(6)?
                    .as_blob_or_null()
                    .map_err(rusqlite::Error::from)?,
            )?
            .map(|c| c.into_owned().into());
        let attributes = if kind == EventKind::Deleted {
            let fields = match &mut fields {
                Some(fields) => fields,
                None => fields.insert(crate::registry::stored(tx, resource)?),
            };
            Attributes::read(fields, &body).unwrap_or_default()
        } else {
            Attributes::from_label_json(r.get::<_, Option<String>>(8)?.as_deref(), r.get(7)?)
        };
        events.push(Event {
            resource: type_name.clone(),
            seq: r.get::<_, i64>(0)? as u64,
            kind,
            resource_version: r.get::<_, i64>(2)? as u64,
            namespace,
            name,
            body: body.into(),
            cells,
            attributes: Arc::new(attributes),
        });
    }
    Ok(events)
}
