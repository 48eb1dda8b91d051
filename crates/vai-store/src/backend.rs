//! The seam between the store's front ([`crate::Store`]: parsing, the field registry, the
//! broadcast of committed events, joining a watch's history to live events) and the engine
//! that keeps the data: [`Backend`] opens snapshots and takes writes, [`Reads`] is everything
//! one snapshot answers.
//!
//! The embedded SQLite file (`crate::sqlite`) is one implementation. What crosses this seam
//! is the store's own vocabulary — requests, rows, events, states — never an engine's types
//! (connections, transactions, engine errors): a second engine implements these two traits
//! and nothing above them changes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::object::StoredObject;
use crate::request::{
    Column, ItemSink, ListMeta, ListRequest, PacedSink, PageMeta, PageRequest, Summary,
};
use crate::work::WriteRequest;
use crate::{
    Compression, Document, Event, FieldSet, Footprint, Item, ResourceState, Result, WritesHeld,
};

/// How much of a list one read serves before it lets its snapshot go (see
/// [`crate::Store::list_paced`]).
pub(crate) struct Bound {
    /// Items at most.
    pub items: usize,
    /// Until then at most (checked after each item).
    pub until: std::time::Instant,
}

/// One read's part of a list: the list's metadata so far, and where to resume when the read
/// stopped before the list's end (a continue token of the same snapshot).
pub(crate) struct ListPart {
    pub meta: ListMeta,
    pub resume: Option<String>,
}

/// Everything one snapshot of the store answers. Every call on the same `Reads` sees the same
/// state; none writes.
pub(crate) trait Reads {
    /// A stored document, if there is one with this key.
    fn document(&self, key: &str) -> Result<Option<Document>>;

    /// One object with its table cells, latest (`None`) or as of a resource version.
    fn get_row(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<Option<Item>>;

    /// The sync state of every resource type, in key order.
    fn resource_states(&self) -> Result<Vec<ResourceState>>;

    /// How many objects of `resource` exist now (0 for a type never stored).
    fn count(&self, resource: &str) -> Result<u64>;

    /// The fields the store recorded for `resource` (built-in ones if it recorded none).
    fn fields(&self, resource: &str) -> Result<FieldSet>;

    /// Whether anything was ever listed or stored for `resource` (a relist compares with it;
    /// a first list is staged).
    fn has_data(&self, resource: &str) -> Result<bool>;

    /// For each object, whether the stored current version has the same bytes.
    fn unchanged(&self, resource: &str, objects: &[StoredObject]) -> Result<Vec<bool>>;

    /// One part of a list, in Kubernetes key order, within `bound` (or until the sink yields).
    fn list_part(
        &self,
        resource: &str,
        request: &ListRequest,
        bound: &Bound,
        each: &mut PacedSink,
    ) -> Result<ListPart>;

    /// A UI page: filters, sort, offset, and the total.
    fn page(&self, resource: &str, request: &PageRequest, each: &mut ItemSink) -> Result<PageMeta>;

    /// A page request's matches counted per value of `column`.
    fn summary(&self, resource: &str, request: &PageRequest, column: &Column) -> Result<Summary>;

    /// Every stored event of `resource` after `resource_version`, in commit order.
    fn events_since(&self, resource: &str, resource_version: u64) -> Result<Vec<Event>>;

    /// What each type's bodies take at rest (a scan: for status and benchmarks).
    fn footprint(&self) -> Result<BTreeMap<String, Footprint>>;

    /// The engine's own full check of its data; `Ok` means sound.
    fn check_integrity(&self) -> Result<()>;
}

/// An engine that keeps the store's data. See the module docs.
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// Runs `f` over one snapshot.
    fn read(&self, f: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()>;

    /// Runs `f`, which reads with one statement (a statement is a snapshot of its own), so an
    /// engine may skip the transaction around it.
    fn read_one(&self, f: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()> {
        self.read(f)
    }

    /// Hands a write to the engine's writer, which replies once it is committed (and its
    /// events published). [`crate::Error::ReadOnly`] when this process may not write,
    /// [`crate::Error::Closed`] after [`Backend::close`].
    fn submit(&self, request: WriteRequest) -> Result<()>;

    /// Whether this process writes the data now.
    fn writes(&self) -> bool;

    /// Changes of [`Backend::writes`], for an engine where they happen (a replica of a shared
    /// database takes over writing, and gives it up); `None` where it is fixed at open.
    fn writer_changes(&self) -> Option<tokio::sync::watch::Receiver<bool>>;

    /// Where the data lives, when it is a file (empty otherwise).
    fn path(&self) -> &Path;

    /// Where the data lives, for people: a file's path, a database's name and host (never a
    /// password).
    fn describe(&self) -> String;

    /// How each type's bodies are compressed at rest.
    fn compression(&self) -> BTreeMap<String, Compression>;

    /// How long writes were held by the engine's own upkeep since it opened.
    fn writes_held(&self) -> WritesHeld;

    /// Stops the writer after the writes already submitted. Idempotent; reads go on.
    fn close(&self);
}
