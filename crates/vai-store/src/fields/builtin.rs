//! The built-in field tables: what the apiserver supports in field selectors for its own
//! types, with its value for an absent field, and which of them vai indexes.
//!
//! Tables only; this module must never list a field upstream does not select on.

use super::set::{FieldSet, IndexedField};

/// A built-in selectable field, as the tables below list it.
struct Builtin {
    name: &'static str,
    path: &'static [&'static str],
    default: &'static str,
    indexed: bool,
}

/// A selectable field that is evaluated, not indexed.
const fn field(
    name: &'static str,
    path: &'static [&'static str],
    default: &'static str,
) -> Builtin {
    Builtin {
        name,
        path,
        default,
        indexed: false,
    }
}

/// A selectable field kept in the label table.
const fn indexed(
    name: &'static str,
    path: &'static [&'static str],
    default: &'static str,
) -> Builtin {
    Builtin {
        name,
        path,
        default,
        indexed: true,
    }
}

const PODS: &[Builtin] = &[
    indexed("spec.nodeName", &["spec", "nodeName"], ""),
    field("spec.restartPolicy", &["spec", "restartPolicy"], ""),
    field("spec.schedulerName", &["spec", "schedulerName"], ""),
    field(
        "spec.serviceAccountName",
        &["spec", "serviceAccountName"],
        "",
    ),
    field("spec.hostNetwork", &["spec", "hostNetwork"], "false"),
    indexed("status.phase", &["status", "phase"], ""),
    field("status.podIP", &["status", "podIP"], ""),
    field(
        "status.nominatedNodeName",
        &["status", "nominatedNodeName"],
        "",
    ),
];

const EVENTS: &[Builtin] = &[
    field("involvedObject.kind", &["involvedObject", "kind"], ""),
    field(
        "involvedObject.namespace",
        &["involvedObject", "namespace"],
        "",
    ),
    indexed("involvedObject.name", &["involvedObject", "name"], ""),
    field("involvedObject.uid", &["involvedObject", "uid"], ""),
    field(
        "involvedObject.apiVersion",
        &["involvedObject", "apiVersion"],
        "",
    ),
    field(
        "involvedObject.resourceVersion",
        &["involvedObject", "resourceVersion"],
        "",
    ),
    field(
        "involvedObject.fieldPath",
        &["involvedObject", "fieldPath"],
        "",
    ),
    field("reason", &["reason"], ""),
    field("reportingComponent", &["reportingComponent"], ""),
    field("source", &["source", "component"], ""),
    field("type", &["type"], ""),
];

const SECRETS: &[Builtin] = &[indexed("type", &["type"], "")];
const NODES: &[Builtin] = &[indexed(
    "spec.unschedulable",
    &["spec", "unschedulable"],
    "false",
)];
const NAMESPACES: &[Builtin] = &[indexed("status.phase", &["status", "phase"], "")];
const REPLICAS: &[Builtin] = &[field("status.replicas", &["status", "replicas"], "0")];
const JOBS: &[Builtin] = &[field("status.successful", &["status", "successful"], "0")];
const CSRS: &[Builtin] = &[field("spec.signerName", &["spec", "signerName"], "")];

/// A store key's group and plural (`apps/v1/deployments` → `("apps", "deployments")`).
pub(crate) fn group_and_plural(resource: &str) -> (&str, &str) {
    let mut parts = resource.split('/');
    let (group, _version, plural) = (parts.next(), parts.next(), parts.next());
    (group.unwrap_or(""), plural.unwrap_or(""))
}

fn builtin_table(resource: &str) -> &'static [Builtin] {
    match group_and_plural(resource) {
        ("", "pods") => PODS,
        ("", "events") => EVENTS,
        ("", "secrets") => SECRETS,
        ("", "nodes") => NODES,
        ("", "namespaces") => NAMESPACES,
        ("", "replicationcontrollers") | ("apps", "replicasets") => REPLICAS,
        ("batch", "jobs") => JOBS,
        ("certificates.k8s.io", "certificatesigningrequests") => CSRS,
        _ => &[],
    }
}

/// The fields the apiserver supports in field selectors for a built-in type, by its store key
/// (`group/version/plural`); empty for other types.
pub fn builtin(resource: &str) -> FieldSet {
    FieldSet::new(
        builtin_table(resource)
            .iter()
            .map(|b| IndexedField {
                name: b.name.to_string(),
                path: b.path.iter().map(|p| p.to_string()).collect(),
                default: Some(b.default.to_string()),
                selectable: true,
                indexed: b.indexed,
                declared: false,
            })
            .collect(),
    )
}
