//! Who writes: the thread of a store on PostgreSQL, in one of two roles, and the hand-over
//! between them.
//!
//! - **Writing**: the writer (`writer`) applies what the front submits, on the connection that
//!   holds the database's advisory lock. The lock is the fence: it belongs to that session, so
//!   when the session is lost (the server restarted, the connection cut) the lock is gone and
//!   so is the right to write; the writer notices (a failed commit, or a closed connection
//!   within a second), gives up writing and stands by.
//! - **Standing by**: the tailer (`tail`) publishes what another process commits; a store
//!   that may write ([`super::Mode::Replica`], [`super::Mode::Write`]) also tries the lock
//!   every time it looks (at least once a second). Holding it, it publishes what the last
//!   writer committed (nobody can commit past that any more), then writes: what watches see
//!   goes on without a gap or a repeat.
//!
//! The front learns of each change through [`super::Role::writing`]. This module must never
//! write outside the writer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::tail::{self, Known, Ring};
use super::writer::{Ended, Writer};
use super::{Role, Shared, connect, describe, schema, try_lock};
use crate::registry::FieldRegistry;
use crate::work::WriteRequest;
use crate::{Error, Event, Result, StoreConfig};

/// How long a standby waits for a doorbell before it looks (and tries the lock) anyway.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// A failure repeated every second is logged this often at most.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The role the thread starts in.
pub(super) enum Start {
    /// Writing, with the writer made at open and the requests it takes.
    Writing(Box<Writer>, mpsc::Receiver<WriteRequest>),
    /// Standing by, each type's last version as published (see `tail::look`).
    Standby(Known),
}

/// The thread of a store on PostgreSQL. See the module docs.
pub(super) struct Engine {
    pub(super) shared: Arc<Shared>,
    pub(super) role: Arc<Role>,
    pub(super) config: StoreConfig,
    pub(super) events: broadcast::Sender<Arc<[Event]>>,
    pub(super) fields: Arc<FieldRegistry>,
    /// Whether a standby tries the lock.
    pub(super) may_write: bool,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) rings: mpsc::Receiver<Ring>,
    /// Handed to each listening connection.
    pub(super) ring: mpsc::Sender<Ring>,
}

impl Engine {
    /// Runs until the store closes.
    pub(super) fn run(self, start: Start) {
        let mut role = start;
        loop {
            role = match role {
                Start::Writing(writer, requests) => match self.write(writer, requests) {
                    Some(known) => Start::Standby(known),
                    None => return,
                },
                Start::Standby(known) => match self.stand_by(known) {
                    Some(writer) => {
                        let (tx, rx) = mpsc::channel();
                        *self.role.requests.lock().expect("requests lock") = Some(tx);
                        self.role.writing.send_replace(true);
                        Start::Writing(Box::new(writer), rx)
                    }
                    None => return,
                },
            }
        }
    }

    /// Writes until the store closes (`None`) or the writer's session is lost: then what was
    /// queued is refused, and the last versions it published are returned.
    fn write(&self, writer: Box<Writer>, requests: mpsc::Receiver<WriteRequest>) -> Option<Known> {
        let committed = match writer.run(&requests) {
            Ended::Closed => return None,
            Ended::Lost(committed) => committed,
        };
        self.role.requests.lock().expect("requests lock").take();
        self.role.writing.send_replace(false);
        tracing::warn!(store = %describe(&self.shared.url), "PostgreSQL: the writer's session was lost, and with it the right to write; standing by");
        while let Ok(request) = requests.try_recv() {
            let _ = request.reply.send(Err(Error::Unavailable(
                "this process lost its session with the database, and no longer writes".into(),
            )));
        }
        (!self.stop.load(Ordering::Relaxed)).then_some(Some(committed))
    }

    /// Follows the writer's commits until this store takes the lock (`Some`: the writer to
    /// run) or closes.
    fn stand_by(&self, mut known: Known) -> Option<Writer> {
        let mut listener = None;
        let mut candidate = None;
        let mut warned = HashMap::<&'static str, Instant>::new();
        let mut warn = |what: &'static str, e: &Error| {
            if warned.get(what).is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                warned.insert(what, Instant::now());
                tracing::warn!(error = %e, "PostgreSQL: {what}");
            }
        };
        while !self.stop.load(Ordering::Relaxed) {
            if listener.is_none() {
                match tail::listen(&self.shared, self.ring.clone()) {
                    Ok(client) => listener = Some(client),
                    Err(e) => warn("cannot listen for commits; looking every second", &e),
                }
            }
            if self.may_write {
                match self.try_take(&mut candidate, &mut known) {
                    Ok(Some(writer)) => return Some(writer),
                    Ok(None) => {}
                    Err(e) => warn("trying to take over writing", &e),
                }
            }
            if let Err(e) = tail::look(&self.shared, &self.events, &mut known) {
                warn("reading the writer's commits", &e);
            }
            let mut ring = self.rings.recv_timeout(LOOK_AT_LEAST_EVERY);
            // Rings that came meanwhile are answered by the one look.
            loop {
                match ring {
                    Ok(Ring::Commit) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(Ring::Lost) => listener = None,
                    Ok(Ring::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                }
                match self.rings.try_recv() {
                    Ok(next) => ring = Ok(next),
                    Err(_) => break,
                }
            }
        }
        None
    }

    /// Takes the writer's lock on the candidate connection if it is free; holding it,
    /// publishes what the last writer committed and makes the writer. On an error the
    /// connection is dropped, and the lock with it.
    fn try_take(
        &self,
        candidate: &mut Option<tokio_postgres::Client>,
        known: &mut Known,
    ) -> Result<Option<Writer>> {
        let mut client = match candidate.take() {
            Some(client) if !client.is_closed() => client,
            _ => connect(self.shared.runtime(), &self.shared.url)?,
        };
        if !try_lock(&client)? {
            *candidate = Some(client);
            return Ok(None);
        }
        tail::look(&self.shared, &self.events, known)?;
        schema::prepare(&mut client, &self.shared.url, true)?;
        let writer = Writer::new(
            client,
            self.config.clone(),
            self.events.clone(),
            self.fields.clone(),
        )?;
        tracing::info!(store = %describe(&self.shared.url), "PostgreSQL: no other process writes; this one does now");
        Ok(Some(writer))
    }
}
