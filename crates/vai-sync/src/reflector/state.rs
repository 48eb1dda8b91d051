//! The decisions of one type's list/watch loop, as a pure transition function: given where the
//! loop is ([`State`]) and what its last action came to ([`Input`]), where it goes and what it
//! does next ([`Action`]).
//!
//! | phase          | input                          | next phase            | action                      |
//! |----------------|--------------------------------|-----------------------|-----------------------------|
//! | (start)        | store has a list version, at v | `Opening(v)`          | `Resume(v)`: synced, watch  |
//! | (start)        | never listed                   | `Listing`             | `List`                      |
//! | `Listing`      | listed at v, overlap open      | `CatchingUp`          | `CatchUp` (reset failures)  |
//! | `Listing`      | listed at v, no overlap        | `Opening(v)`          | `Watch(v)` (reset failures) |
//! | `CatchingUp`   | caught up at v, watch open     | `Following(since)`    | `Follow`                    |
//! | `CatchingUp`   | caught up at v, no watch       | `Opening(v)`          | `Watch(v)`                  |
//! | `Opening(v)`   | opened                         | `Following(v)`        | `Follow` (reset failures)   |
//! | `Opening(v)`   | `410 Gone`                     | `Listing`             | `List` (expired)            |
//! | `Following(s)` | closed at v                    | `Opening(v)`          | `Watch(v)`                  |
//! | `Following(s)` | cut by 410 at v > s (progress) | `Opening(v)`          | `Watch(v)`                  |
//! | `Following(s)` | cut by 410 at v = s            | `Listing`             | `List` (expired)            |
//! | `Following(s)` | failed at v                    | `BackingOff(watch v)` | `BackOff` (failures + 1)    |
//! | `Listing`, `CatchingUp` | failed                | `BackingOff(list)`    | `BackOff` (failures + 1)    |
//! | `Opening(v)`   | failed                         | `BackingOff(watch v)` | `BackOff` (failures + 1)    |
//! | `BackingOff(r)`| waited                         | what `r` retries      | `List` / `Watch(v)`         |
//!
//! A watch upstream cuts with 410 after it made progress was cut for reading slower than
//! events came (an apiserver does so to a slow watcher), not necessarily because its version
//! left upstream's window: after an ordinary watch that version is recent, and watching again
//! from it costs one request where a relist costs a full list. If the version is gone, that
//! watch is refused 410 when it opens, and that relists.
//!
//! The watch opened at a list's first page, read while the list is stored, follows the same
//! rule ([`after_overlap`]): closed, or cut by 410 after progress, it is opened again; any
//! other end gives it up until the list is stored.
//!
//! This module never performs I/O, never reads a clock and never draws a random number: every
//! outcome comes in as an [`Input`] and every effect goes out as an [`Action`] for the driver
//! (`run`, in the parent module) to perform, so each transition is a unit test. The handles
//! the I/O holds (an open watch, the watch overlapping a list) and its errors pass through as
//! type parameters, never inspected.

use std::time::Duration;

/// The backoff ceiling after the first failure is twice this; it doubles with each failure.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The backoff ceiling never exceeds this.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Where the loop of one type is, and how many of its attempts in a row failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    phase: Phase,
    /// Consecutive failures, for the backoff; reset by a stored list or an opened watch.
    failures: u32,
}

/// What the loop of one type is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Listing the whole set: the first sync, or a relist after `410 Gone`.
    Listing,
    /// The list is stored; applying what the watch opened at its first page received meanwhile.
    CatchingUp,
    /// Opening a watch of the events after `rv` (where the store is).
    Opening {
        /// The version the watch opens at.
        rv: u64,
    },
    /// Following a watch opened at `since`.
    Following {
        /// The version the watch was opened at (its progress is measured from it).
        since: u64,
    },
    /// Waiting out the backoff after a failure; the type is stale meanwhile.
    BackingOff {
        /// What is tried again when the wait is over.
        retry: Retry,
    },
}

/// What a backoff tries again: the phase that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The list (a catch-up that failed lists again too).
    List,
    /// The watch, from the version the store reached.
    Watch {
        /// Where the store is.
        rv: u64,
    },
}

/// What the last action came to. `W`: an open watch; `O`: the watch overlapping a list, with
/// what it received; `E`: why something failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input<W, O, E> {
    /// The list is stored, at version `rv`; `overlap`: the watch opened at its first page, if
    /// one opened.
    Listed {
        /// The list's resource version.
        rv: u64,
        /// The watch overlapping the list.
        overlap: Option<O>,
    },
    /// What the overlapping watch received is applied; the store is at `rv`.
    CaughtUp {
        /// Where the store is.
        rv: u64,
        /// The overlapping watch, when it is still open, and the version it was opened at.
        open: Option<(W, u64)>,
    },
    /// A watch opened.
    Opened(W),
    /// Opening a watch was refused `410 Gone`: its version left upstream's window.
    Expired,
    /// Upstream ended the watch normally (its `timeoutSeconds`); the store is at `rv`.
    Closed {
        /// Where the store is.
        rv: u64,
    },
    /// Upstream ended the watch with a `410` ERROR event; the store is at `rv`.
    Cut {
        /// Where the store is.
        rv: u64,
    },
    /// The watch followed failed (an error, a silence, upstream stopped answering); the store
    /// is at `rv`.
    Broke {
        /// Where the store is.
        rv: u64,
        /// Why.
        error: E,
    },
    /// Listing, catching up or opening a watch failed.
    Failed(E),
    /// The backoff is over.
    Waited,
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action<W, O, E> {
    /// The store holds a whole set from an earlier run: mark the type synced (it is served at
    /// once, stale while upstream does not answer), then open a watch from `rv` as [`Action::Watch`].
    Resume {
        /// The last version the store holds.
        rv: u64,
    },
    /// List the whole set, once upstream answers.
    List {
        /// Why.
        cause: ListCause,
    },
    /// Apply what the overlapping watch received during the list stored at `listed`.
    CatchUp {
        /// The watch overlapping the list.
        overlap: O,
        /// The list's resource version.
        listed: u64,
    },
    /// Open a watch of the events after `rv`, once upstream answers; mark the type live when
    /// it opens.
    Watch {
        /// Where the store is.
        rv: u64,
        /// Why.
        cause: WatchCause,
    },
    /// Apply a watch's events to the store until the watch ends.
    Follow {
        /// The open watch.
        stream: W,
        /// Where the store is.
        rv: u64,
        /// The version the watch was opened at.
        since: u64,
    },
    /// Record the failure (the type goes stale; its last-good data is served), then wait a
    /// random time below `ceiling`, or until upstream's reachability changes.
    BackOff {
        /// Why.
        error: E,
        /// Failures in a row, this one included.
        failures: u32,
        /// The longest wait.
        ceiling: Duration,
    },
}

/// Why the loop lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListCause {
    /// The store never held a whole set of the type.
    Unlisted,
    /// A watch from `rv` was refused `410 Gone`.
    Expired {
        /// The version upstream no longer has.
        rv: u64,
    },
    /// The last list failed, or the catch-up after it.
    Retry,
    /// The driver reported an outcome the phase cannot have (a bug); a relist is the one move
    /// that is right from anywhere, since the store swaps the whole set.
    Inconsistent {
        /// The phase the outcome came in.
        phase: Phase,
    },
}

/// Why the loop opens a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchCause {
    /// A list is stored (and its overlapping watch, if any, ended).
    Listed,
    /// Upstream ended the last watch normally.
    Closed,
    /// Upstream cut the last watch with 410 after it made progress.
    Cut,
    /// The last watch failed or could not open.
    Retry,
}

/// The longest backoff after `failures` failures in a row: 0.2 s doubling from 0.4 s after
/// the first, at most 30 s. The driver waits a random fraction of it (full jitter).
pub(crate) fn backoff_ceiling(failures: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1 << failures.min(8))
        .min(BACKOFF_CAP)
}

impl State {
    /// Where a loop starts: `stored`, the last version the store holds when it holds a whole
    /// set of the type (it was listed before), resumes watching from it; else it lists.
    pub(crate) fn start<W, O, E>(stored: Option<u64>) -> (State, Action<W, O, E>) {
        match stored {
            Some(rv) => (State::at(Phase::Opening { rv }, 0), Action::Resume { rv }),
            None => list(0, ListCause::Unlisted),
        }
    }

    fn at(phase: Phase, failures: u32) -> State {
        State { phase, failures }
    }

    /// The transition on what the last action came to. See the [module](self).
    pub(crate) fn step<W, O, E>(self, input: Input<W, O, E>) -> (State, Action<W, O, E>) {
        let failures = self.failures;
        match (self.phase, input) {
            (Phase::Listing, Input::Listed { rv, overlap }) => match overlap {
                Some(overlap) => (
                    State::at(Phase::CatchingUp, 0),
                    Action::CatchUp {
                        overlap,
                        listed: rv,
                    },
                ),
                None => watch(rv, 0, WatchCause::Listed),
            },
            (Phase::CatchingUp, Input::CaughtUp { rv, open }) => match open {
                Some((stream, since)) => (
                    State::at(Phase::Following { since }, failures),
                    Action::Follow { stream, rv, since },
                ),
                None => watch(rv, failures, WatchCause::Listed),
            },
            (Phase::Opening { rv }, Input::Opened(stream)) => (
                State::at(Phase::Following { since: rv }, 0),
                Action::Follow {
                    stream,
                    rv,
                    since: rv,
                },
            ),
            (Phase::Opening { rv }, Input::Expired) => list(failures, ListCause::Expired { rv }),
            (Phase::Following { .. }, Input::Closed { rv }) => {
                watch(rv, failures, WatchCause::Closed)
            }
            (Phase::Following { since }, Input::Cut { rv }) if progressed(since, rv) => {
                watch(rv, failures, WatchCause::Cut)
            }
            (Phase::Following { .. }, Input::Cut { rv }) => {
                list(failures, ListCause::Expired { rv })
            }
            (Phase::Following { .. }, Input::Broke { rv, error }) => {
                self.fail(Retry::Watch { rv }, error)
            }
            (Phase::Listing | Phase::CatchingUp, Input::Failed(error)) => {
                self.fail(Retry::List, error)
            }
            (Phase::Opening { rv }, Input::Failed(error)) => self.fail(Retry::Watch { rv }, error),
            (Phase::BackingOff { retry }, Input::Waited) => match retry {
                Retry::List => list(failures, ListCause::Retry),
                Retry::Watch { rv } => watch(rv, failures, WatchCause::Retry),
            },
            (phase, _) => list(failures, ListCause::Inconsistent { phase }),
        }
    }

    fn fail<W, O, E>(self, retry: Retry, error: E) -> (State, Action<W, O, E>) {
        let failures = self.failures.saturating_add(1);
        (
            State::at(Phase::BackingOff { retry }, failures),
            Action::BackOff {
                error,
                failures,
                ceiling: backoff_ceiling(failures),
            },
        )
    }
}

/// How the watch overlapping a list ended (it is read while the list is stored; see `list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverlapEnd {
    /// Upstream closed it normally (its `timeoutSeconds` can be shorter than a list).
    Closed,
    /// Upstream ended it with a `410` ERROR event.
    Cut,
    /// It failed otherwise.
    Failed,
}

/// What follows the end of the watch overlapping a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverlapNext {
    /// Open it again from the newest version it delivered; the list goes on meanwhile.
    Renew,
    /// Give it up: what it spooled is applied after the list, and a watch opens after that.
    GiveUp,
}

/// The rule for the watch overlapping a list, opened at `since`, that delivered up to `last`:
/// the same as for any watch (closed, or cut by 410 after progress: watched again), except
/// that a failure is not retried during the list: the list goes on, and the loop watches
/// after it.
pub(crate) fn after_overlap(end: OverlapEnd, since: u64, last: u64) -> OverlapNext {
    match end {
        OverlapEnd::Closed => OverlapNext::Renew,
        OverlapEnd::Cut if progressed(since, last) => OverlapNext::Renew,
        OverlapEnd::Cut | OverlapEnd::Failed => OverlapNext::GiveUp,
    }
}

/// A watch opened at `since` made progress when the store (or the spool) reached past it:
/// a 410 then more likely means it was cut for reading slowly than that `since` expired.
fn progressed(since: u64, reached: u64) -> bool {
    reached > since
}

/// To the `Listing` phase, listing.
fn list<W, O, E>(failures: u32, cause: ListCause) -> (State, Action<W, O, E>) {
    (State::at(Phase::Listing, failures), Action::List { cause })
}

/// To the `Opening` phase, opening a watch from `rv`.
fn watch<W, O, E>(rv: u64, failures: u32, cause: WatchCause) -> (State, Action<W, O, E>) {
    (
        State::at(Phase::Opening { rv }, failures),
        Action::Watch { rv, cause },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handles and errors stand for themselves: what goes in must come out unchanged.
    type In = Input<&'static str, &'static str, &'static str>;
    type Out = Action<&'static str, &'static str, &'static str>;

    /// Starts a loop (from `stored`) and feeds it `inputs`; returns the state reached and
    /// every action, the start's first.
    fn drive(stored: Option<u64>, inputs: Vec<In>) -> (State, Vec<Out>) {
        let (mut state, first) = State::start(stored);
        let mut actions = vec![first];
        for input in inputs {
            let (next, action) = state.step(input);
            state = next;
            actions.push(action);
        }
        (state, actions)
    }

    fn follow(stream: &'static str, rv: u64, since: u64) -> Out {
        Action::Follow { stream, rv, since }
    }

    fn watch(rv: u64, cause: WatchCause) -> Out {
        Action::Watch { rv, cause }
    }

    fn list(cause: ListCause) -> Out {
        Action::List { cause }
    }

    fn back_off(error: &'static str, failures: u32) -> Out {
        Action::BackOff {
            error,
            failures,
            ceiling: backoff_ceiling(failures),
        }
    }

    #[test]
    fn a_store_that_was_listed_resumes_watching_from_its_last_version() {
        let (state, actions) = drive(Some(42), vec![Input::Opened("w")]);
        assert_eq!(actions, [Action::Resume { rv: 42 }, follow("w", 42, 42)]);
        assert_eq!(state, State::at(Phase::Following { since: 42 }, 0));
    }

    #[test]
    fn a_store_never_listed_lists() {
        let (state, actions) = drive(None, vec![]);
        assert_eq!(actions, [list(ListCause::Unlisted)]);
        assert_eq!(state, State::at(Phase::Listing, 0));
    }

    #[test]
    fn a_list_with_its_watch_open_catches_up_then_follows_that_watch_from_where_it_opened() {
        let (state, actions) = drive(
            None,
            vec![
                Input::Listed {
                    rv: 10,
                    overlap: Some("overlap"),
                },
                Input::CaughtUp {
                    rv: 15,
                    open: Some(("w", 10)),
                },
            ],
        );
        assert_eq!(
            actions[1..],
            [
                Action::CatchUp {
                    overlap: "overlap",
                    listed: 10
                },
                follow("w", 15, 10),
            ]
        );
        assert_eq!(state, State::at(Phase::Following { since: 10 }, 0));
    }

    #[test]
    fn a_list_without_an_open_watch_after_it_watches_from_the_version_reached() {
        // No overlap (a single page, or the watch could not open).
        let (_, actions) = drive(
            None,
            vec![
                Input::Listed {
                    rv: 10,
                    overlap: None,
                },
                Input::Opened("w"),
            ],
        );
        assert_eq!(
            actions[1..],
            [watch(10, WatchCause::Listed), follow("w", 10, 10)]
        );
        // The overlapping watch ended or failed during the catch-up.
        let (state, actions) = drive(
            None,
            vec![
                Input::Listed {
                    rv: 10,
                    overlap: Some("overlap"),
                },
                Input::CaughtUp { rv: 12, open: None },
            ],
        );
        assert_eq!(actions[2], watch(12, WatchCause::Listed));
        assert_eq!(state, State::at(Phase::Opening { rv: 12 }, 0));
    }

    #[test]
    fn a_watch_upstream_closes_is_watched_again_from_its_last_version() {
        let (_, actions) = drive(
            Some(5),
            vec![
                Input::Opened("w"),
                Input::Closed { rv: 9 },
                Input::Opened("w2"),
                // Closed without any event: again from the same version.
                Input::Closed { rv: 9 },
            ],
        );
        assert_eq!(
            actions[2..],
            [
                watch(9, WatchCause::Closed),
                follow("w2", 9, 9),
                watch(9, WatchCause::Closed),
            ]
        );
    }

    #[test]
    fn a_watch_refused_410_when_it_opens_relists() {
        let (state, actions) = drive(Some(7), vec![Input::Expired]);
        assert_eq!(actions[1], list(ListCause::Expired { rv: 7 }));
        assert_eq!(state, State::at(Phase::Listing, 0));
    }

    #[test]
    fn a_watch_cut_by_410_after_progress_is_watched_again_first_and_relists_only_if_that_is_refused()
     {
        let (state, actions) = drive(
            Some(5),
            vec![Input::Opened("w"), Input::Cut { rv: 9 }, Input::Expired],
        );
        assert_eq!(
            actions[2..],
            [
                watch(9, WatchCause::Cut),
                list(ListCause::Expired { rv: 9 })
            ]
        );
        assert_eq!(state, State::at(Phase::Listing, 0));
        // After a list the progress counts from where its watch opened, not from the list.
        let (_, actions) = drive(
            None,
            vec![
                Input::Listed {
                    rv: 10,
                    overlap: Some("overlap"),
                },
                Input::CaughtUp {
                    rv: 15,
                    open: Some(("w", 10)),
                },
                Input::Cut { rv: 15 },
            ],
        );
        assert_eq!(actions[3], watch(15, WatchCause::Cut));
    }

    #[test]
    fn a_watch_cut_by_410_without_progress_relists() {
        let (state, actions) = drive(Some(5), vec![Input::Opened("w"), Input::Cut { rv: 5 }]);
        assert_eq!(actions[2], list(ListCause::Expired { rv: 5 }));
        assert_eq!(state, State::at(Phase::Listing, 0));
    }

    #[test]
    fn a_failed_list_or_catch_up_backs_off_then_lists_again() {
        let (state, actions) = drive(None, vec![Input::Failed("refused")]);
        assert_eq!(actions[1], back_off("refused", 1));
        assert_eq!(
            state,
            State::at(Phase::BackingOff { retry: Retry::List }, 1)
        );
        let (_, actions) = drive(None, vec![Input::Failed("refused"), Input::Waited]);
        assert_eq!(actions[2], list(ListCause::Retry));
        let (state, actions) = drive(
            None,
            vec![
                Input::Listed {
                    rv: 10,
                    overlap: Some("overlap"),
                },
                Input::Failed("disk full"),
                Input::Waited,
            ],
        );
        assert_eq!(
            actions[2..],
            [back_off("disk full", 1), list(ListCause::Retry)]
        );
        assert_eq!(state, State::at(Phase::Listing, 1));
    }

    #[test]
    fn a_watch_that_cannot_open_backs_off_then_opens_again_from_the_same_version() {
        let (state, actions) = drive(Some(7), vec![Input::Failed("timeout"), Input::Waited]);
        assert_eq!(
            actions[1..],
            [back_off("timeout", 1), watch(7, WatchCause::Retry)]
        );
        assert_eq!(state, State::at(Phase::Opening { rv: 7 }, 1));
    }

    #[test]
    fn a_watch_that_breaks_backs_off_then_watches_from_the_version_the_store_reached() {
        let (state, actions) = drive(
            Some(5),
            vec![
                Input::Opened("w"),
                Input::Broke {
                    rv: 12,
                    error: "upstream stopped answering",
                },
            ],
        );
        assert_eq!(actions[2], back_off("upstream stopped answering", 1));
        assert_eq!(
            state,
            State::at(
                Phase::BackingOff {
                    retry: Retry::Watch { rv: 12 }
                },
                1
            )
        );
        assert_eq!(state.step(Input::Waited).1, watch(12, WatchCause::Retry));
    }

    #[test]
    fn the_backoff_doubles_with_each_failure_up_to_its_cap() {
        let mut inputs = Vec::new();
        for _ in 0..12 {
            inputs.extend([Input::Failed("down"), Input::Waited]);
        }
        let (_, actions) = drive(Some(3), inputs);
        let ceilings: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::BackOff {
                    failures, ceiling, ..
                } => Some((*failures, ceiling.as_millis())),
                _ => None,
            })
            .collect();
        assert_eq!(
            ceilings,
            [
                (1, 400),
                (2, 800),
                (3, 1_600),
                (4, 3_200),
                (5, 6_400),
                (6, 12_800),
                (7, 25_600),
                (8, 30_000),
                (9, 30_000),
                (10, 30_000),
                (11, 30_000),
                (12, 30_000),
            ]
        );
        assert_eq!(backoff_ceiling(u32::MAX), BACKOFF_CAP);
        let worn = State::at(Phase::Opening { rv: 3 }, u32::MAX);
        assert_eq!(
            worn.step::<(), (), ()>(Input::Failed(())).0,
            State::at(
                Phase::BackingOff {
                    retry: Retry::Watch { rv: 3 }
                },
                u32::MAX
            ),
            "the count saturates"
        );
    }

    #[test]
    fn an_opened_watch_or_a_stored_list_resets_the_backoff_and_a_410_does_not() {
        let failing = || {
            vec![
                Input::Failed("a"),
                Input::Waited,
                Input::Failed("b"),
                Input::Waited,
            ]
        };
        // Opened: the next failure is the first again.
        let mut inputs = failing();
        inputs.extend([Input::Opened("w"), Input::Broke { rv: 4, error: "c" }]);
        let (_, actions) = drive(Some(3), inputs);
        assert_eq!(actions.last(), Some(&back_off("c", 1)));
        // A stored list likewise.
        let mut inputs = failing();
        inputs.extend([
            Input::Listed {
                rv: 9,
                overlap: None,
            },
            Input::Failed("c"),
        ]);
        let (_, actions) = drive(None, inputs);
        assert_eq!(actions.last(), Some(&back_off("c", 1)));
        // With its overlapping watch open too (the catch-up then fails).
        let mut inputs = failing();
        inputs.extend([
            Input::Listed {
                rv: 9,
                overlap: Some("overlap"),
            },
            Input::Failed("c"),
        ]);
        let (_, actions) = drive(None, inputs);
        assert_eq!(actions.last(), Some(&back_off("c", 1)));
        // A 410 is no success: the count goes on.
        let mut inputs = failing();
        inputs.extend([Input::Expired, Input::Failed("c")]);
        let (_, actions) = drive(Some(3), inputs);
        assert_eq!(actions.last(), Some(&back_off("c", 3)));
    }

    #[test]
    fn the_watch_during_a_list_is_renewed_when_closed_or_cut_after_progress_else_given_up() {
        use OverlapEnd::*;
        use OverlapNext::*;
        assert_eq!(after_overlap(Closed, 10, 10), Renew);
        assert_eq!(after_overlap(Closed, 10, 12), Renew);
        assert_eq!(after_overlap(Cut, 10, 12), Renew);
        assert_eq!(after_overlap(Cut, 10, 10), GiveUp);
        assert_eq!(after_overlap(Failed, 10, 12), GiveUp);
    }

    #[test]
    fn an_outcome_the_phase_cannot_have_relists() {
        let (state, actions) = drive(None, vec![Input::Closed { rv: 3 }]);
        assert_eq!(
            actions[1],
            list(ListCause::Inconsistent {
                phase: Phase::Listing
            })
        );
        assert_eq!(state, State::at(Phase::Listing, 0));
    }
}
