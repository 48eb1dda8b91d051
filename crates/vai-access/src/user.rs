//! The authenticated caller ([`User`]), as the apiserver's `user.Info` holds it.

use std::collections::BTreeMap;

/// An authenticated caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct User {
    /// The user name (`alice`, `system:serviceaccount:NS:NAME`).
    pub name: String,
    /// A unique identifier, where the authenticator has one (a ServiceAccount's UID).
    pub uid: String,
    /// The groups, including the implicit ones the authenticator adds
    /// (`system:authenticated`, `system:serviceaccounts`, `system:serviceaccounts:NS`).
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, …).
    pub extra: BTreeMap<String, Vec<String>>,
}
