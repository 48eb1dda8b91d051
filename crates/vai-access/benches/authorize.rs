//! What a decision costs: [`Policy::authorize`] against the same decision remembered
//! ([`Memoized`]), over a large cluster's RBAC — 500 namespaces with 10 RoleBindings each,
//! 200 ClusterRoleBindings, every role of 5 rules — for a user in 4 groups that many bindings
//! name. Medians and p99 of 20,000 decisions each, side by side in one run:
//!
//! ```text
//! cargo bench -p vai-access --bench authorize
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::json;
use vai_access::rbac::{Memoized, Policy};
use vai_access::{Attributes, User};

const NAMESPACES: usize = 500;

fn rules(i: usize) -> serde_json::Value {
    json!(
        (0..5)
            .map(|r| json!({
                "apiGroups": ["", "apps"], "verbs": ["get", "list", "watch"],
                "resources": [format!("res-{i}-{r}"), "configmaps"],
            }))
            .collect::<Vec<_>>()
    )
}

fn policy() -> Policy {
    let mut roles = Vec::new();
    let mut bindings = Vec::new();
    for n in 0..NAMESPACES {
        let ns = format!("ns-{n}");
        for b in 0..10 {
            roles.push(
                serde_json::from_value::<Role>(json!({
                    "metadata": {"name": format!("r-{b}"), "namespace": ns}, "rules": rules(b),
                }))
                .unwrap(),
            );
            bindings.push(serde_json::from_value::<RoleBinding>(json!({
                "metadata": {"name": format!("b-{b}"), "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("r-{b}")},
                "subjects": [{"kind": "Group", "name": format!("team-{}", (n + b) % 8)},
                             {"kind": "User", "name": format!("user-{}", n * 10 + b)}],
            })).unwrap());
        }
    }
    let cluster_roles = (0..200)
        .map(|i| {
            serde_json::from_value::<ClusterRole>(json!({
                "metadata": {"name": format!("c-{i}")}, "rules": rules(i),
            }))
            .unwrap()
        })
        .collect();
    let cluster_bindings = (0..200)
        .map(|i| serde_json::from_value::<ClusterRoleBinding>(json!({
            "metadata": {"name": format!("cb-{i}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("c-{i}")},
            "subjects": [{"kind": "Group", "name": format!("team-{}", i % 8)}],
        })).unwrap())
        .collect();
    Policy::new(roles, cluster_roles, bindings, cluster_bindings)
}

fn request(i: usize) -> Attributes {
    Attributes::Resource {
        verb: "get".into(),
        api_group: "".into(),
        resource: "pods".into(),
        subresource: None,
        namespace: Some(format!("ns-{}", i % NAMESPACES)),
        name: Some("web-0".into()),
    }
}

fn row(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!("| {what} | p50 {:.2?} | p99 {:.2?} |", at(0.5), at(0.99));
}

fn main() {
    let user = User {
        name: "alice".into(),
        groups: ["team-1", "team-2", "team-3", "system:authenticated"]
            .map(String::from)
            .to_vec(),
        ..User::default()
    };
    let requests: Vec<Attributes> = (0..64).map(request).collect();
    let plain = policy();
    let memoized = Memoized::new(policy());
    let decide = |f: &dyn Fn(&Attributes) -> bool| -> Vec<Duration> {
        (0..20_000)
            .map(|i| {
                let attributes = &requests[i % requests.len()];
                let t = Instant::now();
                black_box(f(attributes));
                t.elapsed()
            })
            .collect()
    };
    // Denied (pods are granted nowhere): every binding of the user is visited.
    let (mut evaluated, mut remembered) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        evaluated.extend(decide(&|a| plain.authorize(&user, a).allowed));
        remembered.extend(decide(&|a| memoized.authorize(&user, a).allowed));
    }
    assert!(memoized.remembered() == requests.len());
    row("evaluated (Policy::authorize)", &mut evaluated);
    row("remembered (Memoized::authorize)", &mut remembered);
}
