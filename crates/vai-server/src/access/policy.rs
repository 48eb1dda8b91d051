//! The RBAC policy vai decides with ([`PolicyCache`]): built from the Roles, ClusterRoles,
//! RoleBindings and ClusterRoleBindings in the store, and rebuilt whenever sync writes one of
//! them, so an RBAC change upstream takes effect as soon as vai has it. Each policy
//! remembers its own decisions (`Memoized`): a new one starts with none.
//!
//! This module only keeps the policy current; it never decides a request.

use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use vai_access::rbac::{Memoized, Policy};
use vai_store::{EventKind, ListRequest, Store};

use crate::app::App;

use super::decide::RBAC_RESOURCES;

/// The current policy; `None` until it was first built from synced RBAC objects.
pub(crate) struct PolicyCache {
    current: RwLock<Option<Arc<Memoized>>>,
    /// Counts the policies built, for whoever must re-decide when it changes (open watches).
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for PolicyCache {
    fn default() -> PolicyCache {
        PolicyCache {
            current: RwLock::new(None),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl PolicyCache {
    /// Changes whenever a new policy is in place.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The current policy, if built.
    pub fn get(&self) -> Option<Arc<Memoized>> {
        self.current.read().expect("policy lock").clone()
    }

    fn set(&self, policy: Policy) {
        *self.current.write().expect("policy lock") = Some(Arc::new(Memoized::new(policy)));
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Builds the policy from the store's RBAC objects; one that does not parse is logged and
/// skipped (it grants nothing).
pub(crate) fn build(store: &Store) -> vai_store::Result<Policy> {
    fn all<T: serde::de::DeserializeOwned>(
        store: &Store,
        resource: &str,
    ) -> vai_store::Result<Vec<T>> {
        let mut out = Vec::new();
        store.list(
            resource,
            &ListRequest::default(),
            |namespace, name, body| {
                match serde_json::from_slice::<T>(body) {
                    Ok(object) => out.push(object),
                    Err(e) => tracing::warn!(resource, namespace, name, error = %e,
                    "skipping an RBAC object that does not parse"),
                }
                Ok(())
            },
        )?;
        Ok(out)
    }
    let [roles, cluster_roles, role_bindings, cluster_role_bindings] = RBAC_RESOURCES;
    Ok(Policy::new(
        all::<Role>(store, roles)?,
        all::<ClusterRole>(store, cluster_roles)?,
        all::<RoleBinding>(store, role_bindings)?,
        all::<ClusterRoleBinding>(store, cluster_role_bindings)?,
    ))
}

/// Builds the policy now, and again after every write to an RBAC type, for as long as the
/// store's event stream lasts.
pub(crate) fn follow(app: App) {
    let mut events = app.store.subscribe();
    tokio::spawn(async move {
        loop {
            let rebuild = app
                .blocking(|store| Ok::<_, crate::errors::ApiError>(build(store)))
                .await;
            match rebuild {
                Ok(Ok(policy)) => app.access.policy.set(policy),
                // A first sync: the RBAC types are on their way (until they are synced,
                // requests are denied: see `decide`).
                Ok(Err(vai_store::Error::UnknownResource(resource))) => {
                    tracing::debug!(%resource, "the RBAC policy waits for its types to sync")
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot build the RBAC policy; keeping the last one")
                }
                Err(e) => {
                    tracing::error!(error = %e.message, "cannot build the RBAC policy; keeping the last one")
                }
            }
            // Wait for a batch that touches RBAC; a lagged receiver rebuilds to be safe.
            loop {
                use tokio::sync::broadcast::error::RecvError;
                match events.recv().await {
                    Ok(batch) => {
                        if batch.iter().any(|e| {
                            e.kind != EventKind::Bookmark && RBAC_RESOURCES.contains(&&*e.resource)
                        }) {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    });
}
