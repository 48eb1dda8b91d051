//! Whether a binding's subject names a user, as the apiserver's `appliesToUser` decides:
//! `User` by name, `Group` by one of the user's groups, `ServiceAccount` by the user name
//! `system:serviceaccount:NS:NAME`, where a subject without a namespace takes the
//! binding's (a RoleBinding's; a ClusterRoleBinding has none, so such a subject matches
//! nothing). The user's groups are taken as the authenticator gave them, with
//! `system:authenticated`, `system:serviceaccounts` and `system:serviceaccounts:NS` included.

use k8s_openapi::api::rbac::v1::Subject;

use crate::User;

/// The prefix of a ServiceAccount's user name.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Whether `subject`, in a binding of `namespace` (`""` for a ClusterRoleBinding), names `user`.
pub fn applies_to(subject: &Subject, user: &User, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(namespace);
            !ns.is_empty() && service_account(&user.name) == Some((ns, subject.name.as_str()))
        }
        _ => false,
    }
}

/// The namespace and name of a ServiceAccount's user name.
pub fn service_account(user: &str) -> Option<(&str, &str)> {
    let (ns, name) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(str::to_string),
            api_group: None,
        }
    }

    #[test]
    fn users_groups_and_service_accounts() {
        let sa = User {
            name: "system:serviceaccount:team:robot".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:team".into(),
            ],
            ..User::default()
        };
        assert!(applies_to(
            &subject("ServiceAccount", "robot", Some("team")),
            &sa,
            ""
        ));
        assert!(!applies_to(
            &subject("ServiceAccount", "robot", Some("other")),
            &sa,
            "team"
        ));
        // Without a namespace: the binding's, and a ClusterRoleBinding has none.
        assert!(applies_to(
            &subject("ServiceAccount", "robot", None),
            &sa,
            "team"
        ));
        assert!(!applies_to(
            &subject("ServiceAccount", "robot", None),
            &sa,
            ""
        ));
        assert!(applies_to(
            &subject("Group", "system:serviceaccounts:team", None),
            &sa,
            ""
        ));
        assert!(!applies_to(&subject("User", "robot", None), &sa, "team"));
        let alice = User {
            name: "alice".into(),
            ..User::default()
        };
        assert!(applies_to(&subject("User", "alice", None), &alice, ""));
        assert!(!applies_to(&subject("Group", "alice", None), &alice, ""));
        assert_eq!(service_account("system:serviceaccount:a:b:c"), None);
        assert_eq!(
            service_account("system:serviceaccount:a:b"),
            Some(("a", "b"))
        );
    }
}
