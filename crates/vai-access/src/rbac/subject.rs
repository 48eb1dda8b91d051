//! Whether a binding's subject names a user, as the apiserver's `appliesToUser` decides:
//! `User` by name, `Group` by one of the user's groups, `ServiceAccount` by the user name
//! `system:serviceaccount:NS:NAME` compared as a string (as `MatchesUsername` does, so
//! colons in the namespace or name are not separators), where a subject without a
//! namespace takes the binding's (a RoleBinding's; a ClusterRoleBinding has none, so such a
//! subject matches nothing). Kinds are compared case-sensitively; a subject's `apiGroup` is
//! not looked at, nor any other kind matched. The user's groups are taken as the authenticator gave them, with
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
            !ns.is_empty() && is_service_account(&user.name, ns, &subject.name)
        }
        _ => false,
    }
}

/// Whether `user` is the user name of ServiceAccount `name` in `namespace`:
/// `system:serviceaccount:NAMESPACE:NAME`, exactly.
pub fn is_service_account(user: &str, namespace: &str, name: &str) -> bool {
    user.strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        == Some(name)
}

/// The user name of ServiceAccount `name` in `namespace`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
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
        assert!(is_service_account(
            "system:serviceaccount:a:b:c",
            "a",
            "b:c"
        ));
        assert!(is_service_account(
            "system:serviceaccount:a:b:c",
            "a:b",
            "c"
        ));
        assert!(!is_service_account("system:serviceaccount:a:b", "a", "b:c"));
        assert!(!is_service_account("system:serviceaccount:ab", "a", "b"));
        assert_eq!(service_account_user("a", "b"), "system:serviceaccount:a:b");
    }
}
