//! One consistent read of the store ([`Snapshot`], from [`crate::Store::snapshot`]): the
//! reads a caller needs together, all from the same state. It wraps the engine's snapshot
//! (`crate::backend::Reads`) and never lets it out, so callers stay engine-neutral; it never
//! writes.

use crate::backend::Reads;
use crate::{Document, Item, ResourceState, Result};

/// Reads from one snapshot of the store.
pub struct Snapshot<'a> {
    reads: &'a dyn Reads,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn new(reads: &'a dyn Reads) -> Snapshot<'a> {
        Snapshot { reads }
    }

    /// A stored document, if there is one with this key.
    pub fn document(&self, key: &str) -> Result<Option<Document>> {
        self.reads.document(key)
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
        self.reads
            .get_row(resource, namespace, name, resource_version)
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
        self.reads.resource_states()
    }
}
