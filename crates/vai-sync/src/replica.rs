//! A replica that does not write: what it serves is what the writer (another process on the
//! same shared store) stores, so its cached types and their states come from the store, not
//! from loops of its own. Every second it reads the stored discovery (the types) and each
//! type's stored state (syncing, live or stale with its error; listed or not) into the
//! syncer's board, which the server's freshness, readiness and status read as they do a
//! writer's.
//!
//! This module only reads the store; it never talks to upstream.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::{Inner, Syncer, discovery, one_line};

/// How often the board is brought up to what the writer stored.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// A failure repeated every second is logged this often at most.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Follows what the writer stores until the syncer is dropped (or this task aborted).
pub(crate) async fn follow(inner: Weak<Inner>) {
    let mut warned: Option<Instant> = None;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let syncer = Syncer { inner: strong };
        let store = syncer.inner.shared.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::Error>((discovery::stored(&store)?, store.resource_states()?))
        })
        .await;
        match read {
            Ok(Ok((types, states))) => {
                let status = &syncer.inner.shared.status;
                if let Some(types) = types {
                    let keys: HashSet<String> = types.iter().map(|i| i.key()).collect();
                    for key in status.all().into_keys() {
                        if !keys.contains(&key) {
                            status.remove(&key);
                        }
                    }
                    for key in &keys {
                        status.add(key);
                    }
                    syncer.index(&types);
                }
                for state in states {
                    status.set(&state.resource, state.state, state.last_error);
                    if state.list_resource_version.is_some() {
                        status.mark_synced(&state.resource);
                    }
                }
            }
            Ok(Err(e)) => {
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(error = %one_line(&e), "cannot read what the writer stored; serving what was read last");
                }
            }
            // The runtime is shutting down.
            Err(_) => return,
        }
        drop(syncer);
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
