//! What a write holds and what it yields: a [`Batch`] of operations on one resource type
//! ([`Op`], [`Item`]), the [`Event`]s subscribers receive after the commit, the sync state
//! carried with them ([`SyncState`], [`ResourceState`]) and the [`Document`]s stored beside
//! objects.
//!
//! Plain data: this module must never reach for the database or the writer.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{FieldSet, Result};

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
    /// What selectors and filters read of the object, as the writer extracted it (shared, so
    /// a broadcast to many watchers copies a pointer); empty for a bookmark. See
    /// [`ListRequest::matches`](crate::ListRequest::matches).
    pub attributes: Arc<Attributes>,
}

/// What label selectors, field selectors and the query API's filters read of an object, as
/// the store indexed it: its labels, its indexed fields' values and its creation time. (The
/// apiserver's name for the same is an object's attributes.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The type's indexed fields, by field name (`status.phase`), as stored: with upstream's
    /// default where the object lacks one that has a default, absent otherwise.
    pub fields: BTreeMap<String, String>,
    /// `metadata.creationTimestamp`.
    pub created: Option<String>,
}

impl Attributes {
    /// Reads an object's attributes from its JSON, extracting the indexed fields of `fields`
    /// (the type's [`crate::Store::fields`]) as the writer does.
    pub fn read(fields: &FieldSet, body: &[u8]) -> Result<Attributes> {
        let mut metadata = None;
        let pairs = crate::fields::read(body, fields, Some(&mut metadata))?;
        let (labels, created) = metadata
            .map(|m| (m.labels.unwrap_or_default(), m.creation_timestamp))
            .unwrap_or_default();
        Ok(Attributes::from_pairs(labels, pairs, created))
    }

    /// From label-table pairs: labels as they are, and indexed fields under their key with
    /// [`crate::fields::PREFIX`].
    pub(crate) fn from_pairs(
        mut labels: BTreeMap<String, String>,
        pairs: impl IntoIterator<Item = (String, String)>,
        created: Option<String>,
    ) -> Attributes {
        let mut fields = BTreeMap::new();
        for (key, value) in pairs {
            match key.strip_prefix(crate::fields::PREFIX) {
                Some(name) => fields.insert(name.to_string(), value),
                None => labels.insert(key, value),
            };
        }
        Attributes {
            labels,
            fields,
            created,
        }
    }

    /// From a version's label rows as `json_group_object(key, value)` returns them (`None`: no
    /// rows).
    pub(crate) fn from_label_json(json: Option<&str>, created: Option<String>) -> Attributes {
        let pairs: BTreeMap<String, String> = json
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        Attributes::from_pairs(BTreeMap::new(), pairs, created)
    }
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
            attributes: Arc::default(),
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
    /// `syncing`, `live` or `stale`, as stored and printed.
    pub fn as_str(self) -> &'static str {
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
