//! One consistent read of the store ([`Snapshot`], from [`crate::Store::snapshot`]): the
//! reads a caller needs together, all from the same state. It wraps the engine's read
//! transaction and never lets it out, so callers stay engine-neutral; it never writes.

use rusqlite::OptionalExtension;

use crate::sealed::Sealer;
use crate::{Document, Item, ResourceState, Result, SyncState, sql};

/// Reads from one snapshot of the store.
pub struct Snapshot<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    sealer: &'a Sealer,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn new(tx: &'a rusqlite::Transaction<'a>, sealer: &'a Sealer) -> Snapshot<'a> {
        Snapshot { tx, sealer }
    }

    /// A stored document, if there is one with this key.
    pub fn document(&self, key: &str) -> Result<Option<Document>> {
        Ok(self
            .tx
            .prepare_cached("SELECT key, content_type, body FROM documents WHERE key = ?1")?
            .query_row([key], |r| {
                Ok(Document {
                    key: r.get(0)?,
                    content_type: r.get(1)?,
                    body: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// One object with its table cells, latest (`resource_version: None`) or as of a
    /// resource version.
    pub fn get_row(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<Option<Item>> {
        sql::list::get(
            self.tx,
            self.sealer,
            resource,
            namespace,
            name,
            resource_version,
        )
    }

    /// The sync state of one resource type.
    pub fn resource_state(&self, resource: &str) -> Result<Option<ResourceState>> {
        Ok(self
            .resource_states()?
            .into_iter()
            .find(|s| s.resource == resource))
    }

    /// The sync state of every resource type.
    pub fn resource_states(&self) -> Result<Vec<ResourceState>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT key, list_rv, last_rv, compacted_rv, last_contact_ms, last_error, state
             FROM resources ORDER BY key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ResourceState {
                resource: r.get(0)?,
                list_resource_version: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                last_resource_version: r.get::<_, i64>(2)? as u64,
                oldest_resource_version: r.get::<_, i64>(3)? as u64,
                last_contact_ms: r.get(4)?,
                last_error: r.get(5)?,
                state: SyncState::parse(&r.get::<_, String>(6)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
