//! What the writer is handed: write requests, their kinds of work, and operations whose
//! objects were already parsed on the caller's thread.
//!
//! Shared by the front ([`crate::Store`], [`crate::Relist`]) that builds them, the field
//! registry that re-extracts their fields, and the writer that applies them. Plain data: this
//! module must never touch the database.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::object::StoredObject;
use crate::{Event, EventKind, Result, SyncState};

/// What the writer applies: a batch for one resource type (already parsed), documents, or the
/// fields CRDs declare.
pub(crate) struct WriteRequest {
    pub work: Work,
    pub reply: oneshot::Sender<Result<Arc<[Event]>>>,
}

/// The kinds of write.
pub(crate) enum Work {
    /// Operations on one resource type, whose objects were parsed under the field registry's
    /// generation `parsed_with` (see [`crate::registry`]).
    Batch {
        resource: String,
        ops: Vec<ParsedOp>,
        parsed_with: u64,
    },
    /// Documents stored by key, replacing the previous version of each.
    Documents(Vec<crate::Document>),
    /// The `jsonPath`s CRDs declare selectable, per store key (all of them: replaces the
    /// previous declarations). Applied in a transaction of its own.
    Fields(std::collections::BTreeMap<String, Vec<String>>),
}

/// An operation whose objects are already parsed (parsing happens on the caller's thread).
pub(crate) enum ParsedOp {
    Apply(EventKind, StoredObject),
    Bookmark(u64),
    Replace(u64, Vec<StoredObject>),
    /// Objects of a resource's first list, written above its last resource version, where no
    /// read sees them until [`ParsedOp::CommitStaged`] (see [`crate::Relist`]). `first` starts
    /// a new list: whatever an abandoned one staged is discarded.
    Stage {
        first: bool,
        objects: Vec<StoredObject>,
    },
    /// The end of a staged first list, at this resource version: the staged objects become the
    /// resource's state in one commit.
    CommitStaged(u64),
    /// The end of a relist of a resource that has data: the objects that differ from the stored
    /// ones, and the key of every listed object (what is not listed is deleted).
    ReplaceListed {
        rv: u64,
        changed: Vec<StoredObject>,
        listed: HashSet<(String, String)>,
    },
    State {
        state: SyncState,
        error: Option<String>,
    },
}
