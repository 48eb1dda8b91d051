//! A full list that arrives in chunks and replaces a resource's set atomically, with memory
//! bounded by a chunk rather than by the whole list.
//!
//! A list of 100,000 Pods is half a gigabyte of JSON; holding it until the swap (and the events
//! it yields) made the sync's memory grow with the cluster. A [`Relist`] takes the list chunk by
//! chunk instead, in one of two ways, chosen when it starts:
//!
//! - **First list** (nothing stored for the resource): each chunk is written at once, at the
//!   resource version just above the resource's last one. Every read is bounded by that last
//!   version, so no reader sees a staged row; [`Relist::finish`] moves the last version to the
//!   list's in the same commit, and the whole set appears at once. A list abandoned (an error,
//!   a crash) leaves rows above the last version, which the writer deletes when the next list
//!   starts, when anything else is written for the resource, and when the file is opened.
//! - **Relist** (data stored): each chunk is compared with the stored objects on a read
//!   connection; only objects that differ are kept, with the keys of all. `finish` applies
//!   them, and deletes what was not listed, in one commit. Memory: the keys, and the changes.
//!
//! Either way readers see the last-good set until `finish`, and subscribers get the same
//! ADDED/MODIFIED/DELETED events as from [`crate::Batch::replace`]. One sync loop owns a
//! resource's writes; a relist assumes nothing else writes that resource meanwhile.

use std::collections::HashSet;

use crate::store::{Store, off_the_runtime};
use crate::work::{ParsedOp, Work};
use crate::{Error, Item, Result, StoredObject};

/// A full list of one resource type being written chunk by chunk, started by
/// [`crate::Store::relist`]: a first list is staged invisibly, a relist compared with what is
/// stored; either way the set is swapped at [`Relist::finish`] in one commit.
#[derive(Debug)]
pub struct Relist {
    store: Store,
    resource: String,
    mode: Mode,
    pushed: u64,
    /// The field registry's generation the chunks were parsed under (`Some(0)`: under several;
    /// the writer then extracts the fields again).
    parsed_with: Option<u64>,
    /// The staged chunks the writer may still be applying, oldest first: chunks in flight
    /// overlap the writer's commits with receiving and parsing the next, and when the writer is
    /// the slower, the chunks waiting for it are committed together (see `writer`).
    in_flight: std::collections::VecDeque<Reply>,
}

/// Staged chunks in flight at most (each a page of parsed objects held in memory: 500 pods
/// are ~5 MB).
const STAGED_IN_FLIGHT: usize = 4;

type Reply = tokio::sync::oneshot::Receiver<Result<std::sync::Arc<[crate::Event]>>>;

/// Waits for a staged chunk's commit.
async fn committed(reply: Option<Reply>) -> Result<()> {
    match reply {
        Some(reply) => reply.await.map_err(|_| Error::Closed)?.map(|_| ()),
        None => Ok(()),
    }
}

#[derive(Debug)]
enum Mode {
    /// Nothing stored: chunks are written, invisible until `finish`.
    Staged,
    /// Data stored: the listed keys, and the objects that differ from the stored ones.
    Compared {
        listed: HashSet<(String, String)>,
        changed: Vec<StoredObject>,
    },
}

impl Store {
    /// Starts a full list of `resource` that arrives in chunks ([`Relist::push`]) and replaces
    /// the stored set atomically at [`Relist::finish`], as [`crate::Batch::replace`] does with
    /// the whole list in memory.
    pub fn relist(&self, resource: &str) -> Result<Relist> {
        let stored = self.read(|r| r.has_data(resource))?;
        let mode = if stored {
            Mode::Compared {
                listed: HashSet::new(),
                changed: Vec::new(),
            }
        } else {
            Mode::Staged
        };
        Ok(Relist {
            store: self.clone(),
            resource: resource.to_string(),
            mode,
            pushed: 0,
            in_flight: Default::default(),
            parsed_with: None,
        })
    }
}

impl Relist {
    /// Adds the next chunk of the list. Objects are parsed on a blocking thread (not the async
    /// runtime's); an error (here, or at a later call or `finish`: a few chunks are committed
    /// in the background) leaves the stored set as it was (start the list again).
    pub async fn push(&mut self, items: Vec<Item>) -> Result<()> {
        let (generation, fields) = self.store.field_registry()?.get(&self.resource);
        let store = self.store.clone();
        let objects = off_the_runtime(move || store.parse_with(&fields, items)).await?;
        self.parsed_with = match self.parsed_with {
            Some(earlier) if earlier != generation => Some(0),
            _ => Some(generation),
        };
        let first = self.pushed == 0;
        self.pushed += objects.len() as u64;
        match &mut self.mode {
            Mode::Staged => {
                let work = Work::Batch {
                    resource: self.resource.clone(),
                    ops: vec![ParsedOp::Stage { first, objects }],
                    parsed_with: generation,
                };
                self.in_flight.push_back(self.store.send(work)?);
                while self.in_flight.len() > STAGED_IN_FLIGHT {
                    committed(self.in_flight.pop_front()).await?;
                }
            }
            Mode::Compared { listed, changed } => {
                let (store, resource) = (self.store.clone(), self.resource.clone());
                let (objects, same) = tokio::task::spawn_blocking(move || -> Result<_> {
                    let same = store.read(|r| r.unchanged(&resource, &objects))?;
                    Ok((objects, same))
                })
                .await
                .map_err(|_| Error::Closed)??;
                for (object, same) in objects.into_iter().zip(same) {
                    listed.insert((object.namespace.clone(), object.name.clone()));
                    if !same {
                        changed.push(object);
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until every chunk pushed so far is stored (or reports why it was not).
    pub async fn flush(&mut self) -> Result<()> {
        while let Some(reply) = self.in_flight.pop_front() {
            committed(Some(reply)).await?;
        }
        Ok(())
    }

    /// How many objects were pushed so far.
    pub fn len(&self) -> u64 {
        self.pushed
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Ends the list, taken at resource version `rv`: the listed set replaces the stored one in
    /// one commit, and subscribers get the differences as events.
    pub async fn finish(mut self, rv: u64) -> Result<()> {
        if self.pushed == 0 && matches!(self.mode, Mode::Staged) {
            // An empty list still discards the rows an abandoned one staged (the first chunk
            // does that), or the commit would make them visible.
            self.push(Vec::new()).await?;
        }
        // The commit must follow every chunk, and only chunks that were all stored.
        self.flush().await?;
        let op = match self.mode {
            Mode::Staged => ParsedOp::CommitStaged(rv),
            Mode::Compared { listed, changed } => ParsedOp::ReplaceListed {
                rv,
                changed,
                listed,
            },
        };
        let work = Work::Batch {
            resource: self.resource,
            ops: vec![op],
            parsed_with: self.parsed_with.unwrap_or(0),
        };
        self.store
            .send(work)?
            .await
            .map_err(|_| Error::Closed)?
            .map(|_| ())
    }
}
