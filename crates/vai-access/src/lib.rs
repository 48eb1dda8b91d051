//! Identity and access for vai: who is calling ([`User`]) and what they may do, decided as the
//! kube-apiserver decides it.
//!
//! - [`rbac`]: the apiserver's RBAC authorizer, evaluated locally over the Roles,
//!   ClusterRoles, RoleBindings and ClusterRoleBindings vai caches — online and offline alike.
//! - [`authn`]: client certificates and ServiceAccount tokens verified locally.
//! - [`Attributes`]: what a request asks, in the authorizer's terms (verb, API group,
//!   resource, subresource, namespace, name; or a non-resource path).
//!
//! This crate decides; it never does I/O of its own, never reads HTTP and never talks to
//! upstream. What it is given (RBAC objects, keys, reviews) comes from its callers.

mod attributes;
pub mod authn;
pub mod rbac;
mod user;

pub use attributes::Attributes;
pub use user::User;
