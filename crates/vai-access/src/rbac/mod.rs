//! The apiserver's authorizer, evaluated locally over the cluster's RBAC objects ([`Policy`]):
//! the `system:masters` group first (the apiserver's privileged-group authorizer, which
//! allows everything but lists no rules in a `SelfSubjectRulesReview`), then RBAC with the
//! rules of `k8s.io/kubernetes`' `plugin/pkg/auth/authorizer/rbac` and
//! `pkg/registry/rbac/validation`:
//!
//! - ClusterRoleBindings apply everywhere; RoleBindings only in their namespace, so a
//!   cluster-scoped request (no namespace) and a non-resource path are granted only by
//!   ClusterRoleBindings;
//! - a RoleBinding may name a Role of its namespace or a ClusterRole (then applied in the
//!   binding's namespace only); a ClusterRoleBinding's `roleRef` must name a ClusterRole
//!   (a Role is looked up in no namespace and not found); `roleRef.apiGroup` is not looked
//!   at; a missing role grants nothing and is said in the reason (and in a rules review's
//!   `evaluationError`), each distinct problem once;
//! - rules match as [`rule`] says; subjects as [`subject`] says.
//!
//! Aggregated ClusterRoles are evaluated as their stored `.rules`, which the cluster's
//! controller fills. This module decides; it never reads the store or the network.

mod memo;
mod policy;
pub mod rule;
pub mod subject;

pub use memo::Memoized;
pub use policy::{Decision, Policy, Scope};

/// The group the apiserver allows everything, whatever RBAC says.
pub const PRIVILEGED_GROUP: &str = "system:masters";

#[cfg(test)]
mod tests;
