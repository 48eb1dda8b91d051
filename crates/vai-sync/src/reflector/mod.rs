//! The list/watch loop of one resource type: a state machine (`state`) and the driver that
//! performs its actions ([`run`]).
//!
//! ```text
//!   start ──(store has a list RV)──▶ Watch(last RV) ◀──────────────┐
//!     │                                 │  events → store           │ stream ended: re-watch
//!     └──(never listed)──▶ List ────────┘  410 Gone ──▶ List        │
//!                           ▲              error / upstream down ──▶ Stale, backoff ┘
//! ```
//!
//! `List` pages through a plain list and the store swaps the whole set atomically (deletions
//! included). The first page gives the list's resource version, and a watch from it opens at
//! once, read into a spool on disk while the rest of the list arrives (`tail`, `spool`); after
//! the list its events are applied and it goes on as the `Watch` — so a list that takes longer
//! than upstream keeps history (minutes, for a large type under churn) still ends live.
//! `Watch` resumes from the persisted resource version, so a restart costs no relist while
//! that version is still inside upstream's window; a stream upstream ends with 410 after it
//! made progress is watched again from its last version first (a 410 when that watch opens
//! relists).
//!
//! The parts: `state` decides (pure: phases, the 410 rules, the backoff); `list` lists and
//! catches up, `watch` opens and follows watches, `record` writes the sync state, columns and
//! events and waits; this module only turns each action into its I/O and its outcome into the
//! next input. Nothing here serves anything or decides what to cache (see `discovery`).

mod list;
mod record;
mod state;
mod watch;

use std::sync::Arc;

use vai_store::SyncState;

use self::list::Overlap;
use self::record::Reflector;
use self::state::{Action, Input, ListCause, State, WatchCause};
use self::watch::WatchEnd;
use crate::discovery::ResourceInfo;
use crate::upstream::EventStream;
use crate::{Error, Shared};

/// An action of this loop, with its I/O handles.
type Step = Action<EventStream, Overlap, Error>;
/// An outcome of this loop, with its I/O handles.
type Outcome = Input<EventStream, Overlap, Error>;

/// Runs the loop of one type until the task is aborted.
pub(crate) async fn run(shared: Arc<Shared>, info: ResourceInfo) {
    let mut reflector = Reflector::new(shared, info);
    let (mut state, mut action) = State::start(reflector.stored_version());
    loop {
        let outcome = perform(&mut reflector, action).await;
        (state, action) = state.step(outcome);
    }
}

/// Performs one action; returns what it came to.
async fn perform(r: &mut Reflector, action: Step) -> Outcome {
    match action {
        Action::Resume { rv } => {
            tracing::info!(resource = %r.key, resource_version = rv,
                "resuming from the stored resource version");
            // Stored data can be served at once (stale, if upstream does not answer).
            r.shared.status.mark_synced(&r.key);
            open(r, rv, true).await
        }
        Action::List { cause } => {
            match cause {
                ListCause::Expired { rv } => tracing::info!(resource = %r.key,
                    resource_version = rv, "resource version expired upstream (410); relisting"),
                ListCause::Inconsistent { phase } => tracing::error!(resource = %r.key,
                    ?phase, "the sync loop lost its way (a bug); relisting"),
                ListCause::Unlisted | ListCause::Retry => {}
            }
            let ticket = r.queue();
            r.wait_for_upstream().await;
            let _turn = r.turn(ticket).await;
            match r.list().await {
                Ok((rv, overlap)) => Input::Listed { rv, overlap },
                Err(e) => Input::Failed(e),
            }
        }
        Action::CatchUp { overlap, listed } => match r.catch_up(overlap, listed).await {
            Ok((rv, open)) => Input::CaughtUp { rv, open },
            Err(e) => Input::Failed(e),
        },
        Action::Watch { rv, cause } => {
            if cause == WatchCause::Cut {
                tracing::info!(resource = %r.key, resource_version = rv,
                    "upstream ended the watch with 410 after it made progress; re-watching from the last version");
            }
            // A reconnect queues for its turn; a routine re-watch does not.
            open(r, rv, cause == WatchCause::Retry).await
        }
        Action::Follow {
            stream,
            rv,
            since: _,
        } => match r.follow(rv, stream).await {
            (rv, WatchEnd::Closed) => Input::Closed { rv },
            (rv, WatchEnd::Gone) => Input::Cut { rv },
            (rv, WatchEnd::Failed(error)) => Input::Broke { rv, error },
        },
        Action::BackOff {
            error,
            failures,
            ceiling,
        } => {
            r.back_off(error, failures, ceiling).await;
            Input::Waited
        }
    }
}

/// Opens a watch from `rv` once upstream answers (and, for a reconnect, its turn came); the
/// type is live and synced when it opens.
async fn open(r: &mut Reflector, rv: u64, reconnect: bool) -> Outcome {
    let ticket = reconnect.then(|| r.queue());
    r.wait_for_upstream().await;
    let turn = match ticket {
        Some(ticket) => Some(r.turn(ticket).await),
        None => None,
    };
    let opened = r.open_watch(rv).await;
    drop(turn);
    match opened {
        Ok(stream) => {
            tracing::debug!(resource = %r.key, resource_version = rv, reconnect, "watch opened");
            if r.state != Some(SyncState::Live) {
                r.set_state(SyncState::Live, None).await;
            }
            r.shared.status.mark_synced(&r.key);
            Input::Opened(stream)
        }
        Err(Error::Status { code: 410, .. }) => Input::Expired,
        Err(e) => Input::Failed(e),
    }
}
