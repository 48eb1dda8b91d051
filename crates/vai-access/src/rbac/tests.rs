//! The policy's decisions over small clusters, rule form by rule form, and a property: where
//! `list_scope` says a caller may list is where `authorize` allows the list, and
//! `rules_for` holds a rule granting every request `authorize` allows in that namespace.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use proptest::prelude::*;
use serde_json::json;

use super::rule::allows;
use super::{Policy, Scope};
use crate::{Attributes, User};

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("an RBAC object")
}

fn role(ns: &str, name: &str, rules: serde_json::Value) -> Role {
    from(json!({"metadata": {"namespace": ns, "name": name}, "rules": rules}))
}

fn cluster_role(name: &str, rules: serde_json::Value) -> ClusterRole {
    from(json!({"metadata": {"name": name}, "rules": rules}))
}

fn binding(
    ns: &str,
    name: &str,
    kind: &str,
    role: &str,
    subjects: serde_json::Value,
) -> RoleBinding {
    from(json!({"metadata": {"namespace": ns, "name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": subjects}))
}

fn cluster_binding(name: &str, role: &str, subjects: serde_json::Value) -> ClusterRoleBinding {
    from(json!({"metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects}))
}

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..User::default()
    }
}

fn list(resource: &str, ns: Option<&str>) -> Attributes {
    Attributes::Resource {
        verb: "list".into(),
        api_group: String::new(),
        resource: resource.into(),
        subresource: None,
        namespace: ns.map(str::to_string),
        name: None,
    }
}

fn cluster() -> Policy {
    let read = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]);
    Policy::new(
        vec![role("a", "pod-reader", read.clone())],
        vec![
            cluster_role("reader", read),
            cluster_role(
                "health",
                json!([{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]),
            ),
        ],
        vec![
            binding(
                "a",
                "alice-reads",
                "Role",
                "pod-reader",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            binding(
                "b",
                "alice-reads-b",
                "ClusterRole",
                "reader",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            binding(
                "c",
                "robot",
                "ClusterRole",
                "reader",
                json!([{"kind": "ServiceAccount", "name": "robot"}]),
            ),
            binding(
                "d",
                "ghost",
                "Role",
                "missing",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            binding(
                "a",
                "health-via-rolebinding",
                "ClusterRole",
                "health",
                json!([{"kind": "User", "name": "alice"}]),
            ),
        ],
        vec![cluster_binding(
            "ops",
            "reader",
            json!([{"kind": "Group", "name": "ops"}]),
        )],
    )
}

#[test]
fn role_bindings_grant_in_their_namespace_only() {
    let p = cluster();
    let alice = user("alice", &["system:authenticated"]);
    let a = p.authorize(&alice, &list("pods", Some("a")));
    assert!(a.allowed);
    assert_eq!(
        a.reason,
        r#"RBAC: allowed by RoleBinding "alice-reads/a" of Role "pod-reader" to User "alice""#
    );
    // A ClusterRole through a RoleBinding: in that namespace only.
    assert!(p.authorize(&alice, &list("pods", Some("b"))).allowed);
    assert!(!p.authorize(&alice, &list("pods", Some("e"))).allowed);
    assert!(!p.authorize(&alice, &list("pods", None)).allowed);
    assert!(!p.authorize(&alice, &list("secrets", Some("a"))).allowed);
    assert_eq!(
        p.list_scope(&alice, "list", "", "pods"),
        Scope::Namespaces(BTreeSet::from(["a".to_string(), "b".to_string()]))
    );
    assert_eq!(p.list_scope(&alice, "list", "", "secrets"), Scope::Nothing);
}

#[test]
fn non_resource_urls_only_through_cluster_role_bindings() {
    let p = cluster();
    let health = Attributes::NonResource {
        verb: "get".into(),
        path: "/healthz".into(),
    };
    assert!(!p.authorize(&user("alice", &[]), &health).allowed);
}

#[test]
fn a_missing_role_grants_nothing_and_is_the_reason() {
    let p = cluster();
    let d = p.authorize(&user("alice", &[]), &list("pods", Some("d")));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        r#"RBAC: role.rbac.authorization.k8s.io "missing" not found"#
    );
    let review = p.rules_for(&user("alice", &[]), "d");
    assert!(!review.incomplete);
    assert_eq!(
        review.evaluation_error.as_deref(),
        Some(r#"role.rbac.authorization.k8s.io "missing" not found"#)
    );
}

#[test]
fn groups_service_accounts_and_the_privileged_group() {
    let p = cluster();
    let ops = user("bob", &["ops"]);
    assert!(p.authorize(&ops, &list("pods", None)).allowed);
    assert_eq!(p.list_scope(&ops, "list", "", "pods"), Scope::All);
    let robot = user("system:serviceaccount:c:robot", &["system:serviceaccounts"]);
    assert!(p.authorize(&robot, &list("pods", Some("c"))).allowed);
    let other = user("system:serviceaccount:x:robot", &["system:serviceaccounts"]);
    assert!(!p.authorize(&other, &list("pods", Some("c"))).allowed);
    let admin = user("root", &["system:masters"]);
    assert!(p.authorize(&admin, &list("anything", None)).allowed);
    // Allowed, but no rules listed: none of `cluster()`'s bindings names the group.
    assert!(p.rules_for(&admin, "a").resource_rules.is_empty());
}

#[test]
fn rules_review_lists_what_applies_there() {
    let p = cluster();
    let review = p.rules_for(&user("alice", &[]), "a");
    assert_eq!(review.resource_rules.len(), 1);
    // The non-resource rule of a ClusterRole bound by a RoleBinding is listed, as the
    // apiserver lists it (it grants nothing, see above).
    assert_eq!(review.non_resource_rules.len(), 1);
    assert!(!review.incomplete);
}

const VERBS: [&str; 4] = ["get", "list", "watch", "*"];
const RESOURCES: [&str; 4] = ["pods", "secrets", "pods/log", "*"];
const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const USERS: [&str; 3] = ["alice", "bob", "system:serviceaccount:a:robot"];

fn rules() -> impl Strategy<Value = serde_json::Value> {
    (
        prop::sample::subsequence(VERBS.to_vec(), 1..3),
        prop::sample::subsequence(RESOURCES.to_vec(), 1..3),
        prop::option::of(Just(vec!["x"])),
    )
        .prop_map(|(verbs, resources, names)| {
            let mut rule = json!({"apiGroups": [""], "resources": resources, "verbs": verbs});
            if let Some(names) = names {
                rule["resourceNames"] = json!(names);
            }
            json!([rule])
        })
}

fn subject() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(json!({"kind": "User", "name": "alice"})),
        Just(json!({"kind": "User", "name": "bob"})),
        Just(json!({"kind": "Group", "name": "devs"})),
        Just(json!({"kind": "ServiceAccount", "name": "robot", "namespace": "a"})),
        Just(json!({"kind": "ServiceAccount", "name": "robot"})),
    ]
}

fn policies() -> impl Strategy<Value = Policy> {
    let bindings = prop::collection::vec(
        (
            prop::sample::select(NAMESPACES.to_vec()),
            0..4usize,
            subject(),
            any::<bool>(),
        ),
        0..8,
    );
    let cluster_bindings = prop::collection::vec((0..4usize, subject()), 0..3);
    (
        prop::collection::vec(rules(), 4),
        bindings,
        cluster_bindings,
    )
        .prop_map(|(rules, bindings, cluster_bindings)| {
            let cluster_roles = rules
                .iter()
                .enumerate()
                .map(|(i, r)| cluster_role(&format!("c{i}"), r.clone()))
                .collect();
            let roles = NAMESPACES
                .iter()
                .flat_map(|ns| {
                    rules
                        .iter()
                        .enumerate()
                        .map(move |(i, r)| role(ns, &format!("r{i}"), r.clone()))
                })
                .collect();
            let role_bindings = bindings
                .iter()
                .enumerate()
                .map(|(i, (ns, r, s, cluster))| {
                    let (kind, name) = if *cluster {
                        ("ClusterRole", "c")
                    } else {
                        ("Role", "r")
                    };
                    binding(
                        ns,
                        &format!("b{i}"),
                        kind,
                        &format!("{name}{r}"),
                        json!([s]),
                    )
                })
                .collect();
            let cluster_role_bindings = cluster_bindings
                .iter()
                .enumerate()
                .map(|(i, (r, s))| cluster_binding(&format!("cb{i}"), &format!("c{r}"), json!([s])))
                .collect();
            Policy::new(roles, cluster_roles, role_bindings, cluster_role_bindings)
        })
}

proptest! {
    #[test]
    fn scope_and_rules_review_agree_with_authorize(policy in policies(), u in 0..3usize, devs in any::<bool>()) {
        let mut groups = vec!["system:authenticated"];
        if devs { groups.push("devs"); }
        let who = user(USERS[u], &groups);
        for resource in ["pods", "secrets"] {
            let everywhere = policy.authorize(&who, &list(resource, None)).allowed;
            let scope = policy.list_scope(&who, "list", "", resource);
            for ns in NAMESPACES {
                let here = policy.authorize(&who, &list(resource, Some(ns))).allowed;
                let in_scope = match &scope {
                    Scope::All => true,
                    Scope::Namespaces(set) => set.contains(ns),
                    Scope::Nothing => false,
                };
                prop_assert_eq!(here, in_scope, "{} {} in {}", who.name, resource, ns);
                let review = policy.rules_for(&who, ns);
                for (verb, name, sub) in [("get", Some("x"), None), ("list", None, None), ("get", Some("y"), Some("log"))] {
                    let request = Attributes::Resource {
                        verb: verb.into(), api_group: String::new(), resource: resource.into(),
                        subresource: sub.map(str::to_string), namespace: Some(ns.into()),
                        name: name.map(str::to_string),
                    };
                    let allowed = policy.authorize(&who, &request).allowed;
                    let listed = review.resource_rules.iter().any(|r| {
                        let rule = k8s_openapi::api::rbac::v1::PolicyRule {
                            verbs: r.verbs.clone(), api_groups: r.api_groups.clone(),
                            resources: r.resources.clone(), resource_names: r.resource_names.clone(),
                            non_resource_urls: None,
                        };
                        allows(&rule, &request)
                    });
                    prop_assert_eq!(allowed, listed, "{} {} {:?}", verb, resource, sub);
                }
            }
            prop_assert_eq!(everywhere, scope == Scope::All);
        }
    }
}

fn resource_rule(rule: serde_json::Value) -> k8s_openapi::api::rbac::v1::PolicyRule {
    from(rule)
}

fn get_path(path: &str) -> Attributes {
    Attributes::NonResource {
        verb: "get".into(),
        path: path.into(),
    }
}

// pkg/apis/rbac/v1/evaluation_helpers.go, ResourceNameMatches: a request without a name has
// the name "", which `resourceNames: [""]` lists; an empty name is no name.
#[test]
fn resource_names_with_the_empty_name_match_a_request_without_one() {
    let rule = resource_rule(json!({"apiGroups": [""], "resources": ["configmaps"],
        "verbs": ["list", "create"], "resourceNames": [""]}));
    assert!(allows(&rule, &list("configmaps", Some("a"))));
    let named = |name: Option<&str>| Attributes::Resource {
        verb: "create".into(),
        api_group: String::new(),
        resource: "configmaps".into(),
        subresource: None,
        namespace: Some("a".into()),
        name: name.map(str::to_string),
    };
    assert!(allows(&rule, &named(Some(""))));
    assert!(!allows(&rule, &named(Some("x"))));
    let x = resource_rule(json!({"apiGroups": [""], "resources": ["configmaps"],
        "verbs": ["create"], "resourceNames": ["x"]}));
    assert!(!allows(&x, &named(Some(""))));
}

// plugin/pkg/auth/authorizer/rbac/rbac.go, RuleAllows: the resource is combined with the
// subresource only when there is one, and `*/sub` needs one (ResourceMatches).
#[test]
fn an_empty_subresource_is_no_subresource() {
    let request = Attributes::Resource {
        verb: "get".into(),
        api_group: String::new(),
        resource: "pods".into(),
        subresource: Some(String::new()),
        namespace: Some("a".into()),
        name: Some("p".into()),
    };
    let pods = resource_rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}));
    assert!(allows(&pods, &request));
    let star_slash =
        resource_rule(json!({"apiGroups": [""], "resources": ["*/"], "verbs": ["get"]}));
    assert!(!allows(&star_slash, &request));
}

// pkg/apis/rbac/v1/evaluation_helpers.go, NonResourceURLMatches: a URL ending in `*` is a
// prefix with every trailing `*` trimmed (strings.TrimRight).
#[test]
fn non_resource_prefixes_trim_every_trailing_star() {
    let rule = resource_rule(json!({"nonResourceURLs": ["/logs**"], "verbs": ["get"]}));
    assert!(allows(&rule, &get_path("/logs")));
    assert!(allows(&rule, &get_path("/logs/kube.log")));
    assert!(!allows(&rule, &get_path("/log")));
    let stars = resource_rule(json!({"nonResourceURLs": ["**"], "verbs": ["get"]}));
    assert!(allows(&stars, &get_path("/anything")));
}

// staging/src/k8s.io/apiserver/pkg/authentication/serviceaccount/util.go, MatchesUsername
// (called by appliesToUser in pkg/registry/rbac/validation/rule.go): a ServiceAccount
// subject names the user `system:serviceaccount:` + namespace + `:` + name, compared as a
// string, whatever colons the namespace or name hold (a subject's namespace is not
// validated, and a user name from a certificate can be anything).
#[test]
fn service_account_subjects_match_the_user_name_as_a_string() {
    let p = Policy::new(
        vec![],
        vec![cluster_role(
            "reader",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
        )],
        vec![binding(
            "a",
            "colon-name",
            "ClusterRole",
            "reader",
            json!([{"kind": "ServiceAccount", "name": "b:c"}]),
        )],
        vec![cluster_binding(
            "colon-namespace",
            "reader",
            json!([{"kind": "ServiceAccount", "namespace": "x:y", "name": "z"}]),
        )],
    );
    let colons = user("system:serviceaccount:a:b:c", &[]);
    let allowed = p.authorize(&colons, &list("pods", Some("a")));
    assert!(allowed.allowed);
    assert_eq!(
        allowed.reason,
        r#"RBAC: allowed by RoleBinding "colon-name/a" of ClusterRole "reader" to ServiceAccount "b:c/a""#
    );
    assert!(!p.authorize(&colons, &list("pods", Some("b"))).allowed);
    assert!(
        p.authorize(
            &user("system:serviceaccount:x:y:z", &[]),
            &list("pods", None)
        )
        .allowed
    );
    assert!(
        !p.authorize(&user("system:serviceaccount:x:y", &[]), &list("pods", None))
            .allowed
    );
}

fn broken() -> Policy {
    Policy::new(
        vec![],
        vec![],
        vec![
            binding(
                "d",
                "one",
                "Role",
                "missing",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            binding(
                "d",
                "two",
                "Role",
                "missing",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            binding(
                "e",
                "one",
                "Role",
                "missing",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            binding(
                "e",
                "two",
                "ClusterRole",
                "gone",
                json!([{"kind": "User", "name": "alice"}]),
            ),
        ],
        vec![from(json!({"metadata": {"name": "role-ref"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "local"},
            "subjects": [{"kind": "User", "name": "bob"}]}))],
    )
}

// staging/src/k8s.io/apimachinery/pkg/util/errors/errors.go, aggregate.Error: the errors are
// said once each, in order, and bracketed only when more than one remains (the reason of
// plugin/pkg/auth/authorizer/rbac/rbac.go, Authorize).
#[test]
fn denial_reasons_say_each_problem_once() {
    let p = broken();
    let alice = user("alice", &[]);
    assert_eq!(
        p.authorize(&alice, &list("pods", Some("d"))).reason,
        r#"RBAC: role.rbac.authorization.k8s.io "missing" not found"#
    );
    assert_eq!(
        p.authorize(&alice, &list("pods", Some("e"))).reason,
        r#"RBAC: [role.rbac.authorization.k8s.io "missing" not found, clusterrole.rbac.authorization.k8s.io "gone" not found]"#
    );
}

// pkg/registry/rbac/validation/rule.go, GetRoleReferenceRules: a Role named by a
// ClusterRoleBinding is looked up in namespace "" and is not found there.
#[test]
fn a_cluster_role_binding_of_a_role_finds_no_role() {
    let p = broken();
    let bob = user("bob", &[]);
    assert_eq!(
        p.authorize(&bob, &list("pods", None)).reason,
        r#"RBAC: role.rbac.authorization.k8s.io "local" not found"#
    );
}

// plugin/pkg/auth/authorizer/rbac/rbac.go, RulesFor, never says incomplete (only the Node
// authorizer does); pkg/registry/authorization/selfsubjectrulesreview/rest.go puts the
// aggregated error (union.go, errors.go: deduplicated) in evaluationError.
#[test]
fn rules_review_errors_are_not_incompleteness() {
    let p = broken();
    let alice = user("alice", &[]);
    let d = p.rules_for(&alice, "d");
    assert!(!d.incomplete);
    assert_eq!(
        d.evaluation_error.as_deref(),
        Some(r#"role.rbac.authorization.k8s.io "missing" not found"#)
    );
    let e = p.rules_for(&alice, "e");
    assert!(!e.incomplete);
    assert_eq!(
        e.evaluation_error.as_deref(),
        Some(
            r#"[role.rbac.authorization.k8s.io "missing" not found, clusterrole.rbac.authorization.k8s.io "gone" not found]"#
        )
    );
    let fine = p.rules_for(&alice, "f");
    assert_eq!(fine.evaluation_error, None);
    assert!(fine.resource_rules.is_empty() && fine.non_resource_rules.is_empty());
}

// pkg/kubeapiserver/authorizer/reload.go, newForConfig: the system:masters authorizer is
// not a rule resolver, so SelfSubjectRulesReview lists only what RBAC binds to the group
// (a cluster's cluster-admin ClusterRoleBinding), allowed or not.
#[test]
fn rules_review_of_the_privileged_group_is_its_rbac() {
    let admin = user("root", &["system:masters"]);
    let bare = Policy::new(vec![], vec![], vec![], vec![]);
    assert!(bare.authorize(&admin, &list("pods", None)).allowed);
    let review = bare.rules_for(&admin, "default");
    assert!(review.resource_rules.is_empty() && review.non_resource_rules.is_empty());
    let bound = Policy::new(
        vec![],
        vec![cluster_role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        )],
        vec![],
        vec![cluster_binding(
            "cluster-admin",
            "cluster-admin",
            json!([{"kind": "Group", "name": "system:masters"}]),
        )],
    );
    let review = bound.rules_for(&admin, "default");
    assert_eq!(review.resource_rules.len(), 1);
    assert_eq!(review.non_resource_rules.len(), 1);
}

// The reasons quote names with Go's %q (strconv.Quote): printable characters as they are,
// \a \b \f \n \r \t \v, other ASCII controls as \xHH, other unprintable characters (spaces
// but ' ', format characters, private use) as \uHHHH or \UHHHHHHHH.
#[test]
fn reasons_quote_names_as_go_does() {
    let name = "a\u{1}b\u{a0}c\u{7f}\u{7}\"é\u{200b}\\\u{f0000}\u{301}\n";
    let p = Policy::new(
        vec![],
        vec![cluster_role(
            "reader",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
        )],
        vec![],
        vec![cluster_binding(
            "b",
            "reader",
            json!([{"kind": "User", "name": name}]),
        )],
    );
    assert_eq!(
        p.authorize(&user(name, &[]), &list("pods", None)).reason,
        r#"RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "reader" to User "a\x01b\u00a0c\x7f\a\"é\u200b\\\U000f0000́\n""#
    );
}
