//! What a write holds and what it yields: a [`Batch`] of operations on one resource type
//! ([`Op`], [`Item`]), the [`Event`]s subscribers receive after the commit, the sync state
//! carried with them ([`SyncState`], [`ResourceState`]) and the [`Document`]s stored beside
//! objects.
//!
//! Plain data: this module must never reach for the database or the writer.

use std::sync::Arc;

/// The kind of a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The object appeared.
    Added = 0,
    /// The object changed.
    Modified = 1,
    /// The object was deleted; the event carries its last state.
    Deleted = 2,
    /// Only a resource version: everything up to it has been seen.
    Bookmark = 3,
}

impl EventKind {
    pub(crate) fn from_i64(v: i64) -> EventKind {
        match v {
            0 => EventKind::Added,
            1 => EventKind::Modified,
            2 => EventKind::Deleted,
            _ => EventKind::Bookmark,
        }
    }
}

/// A committed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The resource type.
    pub resource: Arc<str>,
    /// Commit order (0 for bookmarks, which are not stored).
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The resource version of the change.
    pub resource_version: u64,
    /// The object's namespace (`""` if cluster-scoped or a bookmark).
    pub namespace: String,
    /// The object's name (`""` for a bookmark).
    pub name: String,
    /// The object's JSON (its last state for `Deleted`; empty for a bookmark).
    pub body: Arc<[u8]>,
    /// The table cells upstream printed for this version, if sync captured them.
    pub cells: Option<Arc<[u8]>>,
}

impl Event {
    pub(crate) fn bookmark(resource: Arc<str>, rv: u64) -> Event {
        Event {
            resource,
            seq: 0,
            kind: EventKind::Bookmark,
            resource_version: rv,
            namespace: String::new(),
            name: String::new(),
            body: Arc::from(&[][..]),
            cells: None,
        }
    }
}

/// How a resource type's sync is doing (written by sync, read by status pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Listing or catching up.
    Syncing,
    /// Watch healthy.
    Live,
    /// Upstream unreachable or erroring; data is last-good.
    Stale,
}

impl SyncState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SyncState::Syncing => "syncing",
            SyncState::Live => "live",
            SyncState::Stale => "stale",
        }
    }

    pub(crate) fn parse(s: &str) -> SyncState {
        match s {
            "live" => SyncState::Live,
            "stale" => SyncState::Stale,
            _ => SyncState::Syncing,
        }
    }
}

/// The persisted sync state of one resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceState {
    /// The resource type's key.
    pub resource: String,
    /// The resource version of the last full list, if any.
    pub list_resource_version: Option<u64>,
    /// The newest resource version seen (events and bookmarks).
    pub last_resource_version: u64,
    /// The oldest resource version still answerable from history.
    pub oldest_resource_version: u64,
    /// When upstream was last heard from (ms since the Unix epoch).
    pub last_contact_ms: Option<i64>,
    /// The last error, if the state is not live.
    pub last_error: Option<String>,
    /// Syncing, live or stale.
    pub state: SyncState,
}

/// An object as sync received it: its JSON, and the table cells upstream printed for it when
/// sync asked for tables (`as=Table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The object's JSON.
    pub object: Vec<u8>,
    /// Its table row's cells (a JSON array), if any.
    pub cells: Option<Vec<u8>>,
}

impl From<Vec<u8>> for Item {
    fn from(object: Vec<u8>) -> Item {
        Item {
            object,
            cells: None,
        }
    }
}

/// An operation in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// An upstream watch event with the object.
    Event(EventKind, Item),
    /// A bookmark: upstream has sent everything up to this resource version.
    Bookmark(u64),
    /// A full list at this resource version: replaces the resource's whole set.
    Replace(u64, Vec<Item>),
    /// The sync state, and the last error.
    State(SyncState, Option<String>),
}

/// Operations for one resource type, applied atomically and in order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The resource type's key (e.g. `/v1/pods`, `apps/v1/deployments`).
    pub resource: String,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Batch {
    /// An empty batch for a resource type.
    pub fn new(resource: impl Into<String>) -> Batch {
        Batch {
            resource: resource.into(),
            ops: Vec::new(),
        }
    }

    /// Adds a watch event.
    pub fn event(mut self, kind: EventKind, object: impl Into<Item>) -> Batch {
        self.ops.push(Op::Event(kind, object.into()));
        self
    }

    /// Adds a bookmark.
    pub fn bookmark(mut self, resource_version: u64) -> Batch {
        self.ops.push(Op::Bookmark(resource_version));
        self
    }

    /// Adds a replace (full list).
    pub fn replace<I: Into<Item>>(
        mut self,
        resource_version: u64,
        objects: impl IntoIterator<Item = I>,
    ) -> Batch {
        let objects = objects.into_iter().map(Into::into).collect();
        self.ops.push(Op::Replace(resource_version, objects));
        self
    }

    /// Sets the sync state.
    pub fn state(mut self, state: SyncState, error: Option<String>) -> Batch {
        self.ops.push(Op::State(state, error));
        self
    }
}

/// A stored document that is not an object: a discovery document, `/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its key (vai uses the request path, plus a suffix per representation).
    pub key: String,
    /// The `Content-Type` to serve it with.
    pub content_type: String,
    /// The bytes, as upstream sent them.
    pub body: Vec<u8>,
}
