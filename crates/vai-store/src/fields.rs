//! Indexed fields: the fields the apiserver lets field selectors use, per built-in type (pods'
//! `spec.nodeName`, `status.phase`, …), extracted when an object is stored.
//!
//! Their values are kept in the label table under keys that no real label can have (`#` then the
//! field's name), so a field selector becomes a label requirement and shares its indexes and its
//! query plans: `spec.nodeName=node-7` is answered from the index, not by scanning every pod.
//! Every indexed field is stored for every object, with the apiserver's value for an absent
//! field (`""`, `false`, `0`), so `!=` means what it means upstream.

use serde_json::Value;

use crate::{Error, Result};

/// What a label key starts with when it holds an indexed field (never the case for a label:
/// label keys start with an alphanumeric character).
pub const PREFIX: &str = "#";

/// A field the apiserver supports in field selectors for a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedField {
    /// The name field selectors use (`spec.nodeName`).
    pub name: &'static str,
    /// Where it is in the object.
    path: &'static [&'static str],
    /// Its value when the object does not have it.
    default: &'static str,
}

const fn field(
    name: &'static str,
    path: &'static [&'static str],
    default: &'static str,
) -> IndexedField {
    IndexedField {
        name,
        path,
        default,
    }
}

const PODS: &[IndexedField] = &[
    field("spec.nodeName", &["spec", "nodeName"], ""),
    field("spec.restartPolicy", &["spec", "restartPolicy"], ""),
    field("spec.schedulerName", &["spec", "schedulerName"], ""),
    field(
        "spec.serviceAccountName",
        &["spec", "serviceAccountName"],
        "",
    ),
    field("spec.hostNetwork", &["spec", "hostNetwork"], "false"),
    field("status.phase", &["status", "phase"], ""),
    field("status.podIP", &["status", "podIP"], ""),
    field(
        "status.nominatedNodeName",
        &["status", "nominatedNodeName"],
        "",
    ),
];

const EVENTS: &[IndexedField] = &[
    field("involvedObject.kind", &["involvedObject", "kind"], ""),
    field(
        "involvedObject.namespace",
        &["involvedObject", "namespace"],
        "",
    ),
    field("involvedObject.name", &["involvedObject", "name"], ""),
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

const SECRETS: &[IndexedField] = &[field("type", &["type"], "")];
const NODES: &[IndexedField] = &[field(
    "spec.unschedulable",
    &["spec", "unschedulable"],
    "false",
)];
const NAMESPACES: &[IndexedField] = &[field("status.phase", &["status", "phase"], "")];
const REPLICAS: &[IndexedField] = &[field("status.replicas", &["status", "replicas"], "0")];
const JOBS: &[IndexedField] = &[field("status.successful", &["status", "successful"], "0")];
const CSRS: &[IndexedField] = &[field("spec.signerName", &["spec", "signerName"], "")];

/// The indexed fields of a resource type, by its store key (`group/version/plural`).
pub fn indexed_fields(resource: &str) -> &'static [IndexedField] {
    let mut parts = resource.split('/');
    let (group, _version, plural) = (parts.next(), parts.next(), parts.next());
    match (group.unwrap_or(""), plural.unwrap_or("")) {
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

/// The indexed field `name` of a type, if it has one.
pub fn find(resource: &str, name: &str) -> Option<IndexedField> {
    indexed_fields(resource)
        .iter()
        .find(|f| f.name == name)
        .copied()
}

impl IndexedField {
    /// Its label-table key.
    pub fn key(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }

    /// Its value in a parsed object, as field selectors compare it.
    pub fn value_in(&self, object: &Value) -> String {
        let mut v = object;
        for p in self.path {
            match v.get(p) {
                Some(next) => v = next,
                None => return self.default.to_string(),
            }
        }
        match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => self.default.to_string(),
            other => other.to_string(),
        }
    }
}

/// The indexed fields' `(label key, value)` pairs of an object's JSON.
pub fn extract(fields: &[IndexedField], body: &[u8]) -> Result<Vec<(String, String)>> {
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let object: Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidObject(format!("not a Kubernetes object: {e}")))?;
    Ok(fields
        .iter()
        .map(|f| (f.key(), f.value_in(&object)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_index_the_apiservers_field_selectors_with_its_defaults() {
        let pod = br#"{"metadata":{"name":"p"},"spec":{"nodeName":"n1","hostNetwork":true},"status":{"phase":"Running"}}"#;
        let fields = extract(indexed_fields("/v1/pods"), pod).unwrap();
        let get = |k: &str| fields.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("#spec.nodeName"), "n1");
        assert_eq!(get("#spec.hostNetwork"), "true");
        assert_eq!(get("#status.phase"), "Running");
        assert_eq!(get("#status.podIP"), "");
        let rs = br#"{"metadata":{"name":"r"},"status":{"replicas":3}}"#;
        let fields = extract(indexed_fields("apps/v1/replicasets"), rs).unwrap();
        assert_eq!(
            fields,
            vec![("#status.replicas".to_string(), "3".to_string())]
        );
        let node = br#"{"metadata":{"name":"n"}}"#;
        let fields = extract(indexed_fields("/v1/nodes"), node).unwrap();
        assert_eq!(fields[0].1, "false");
        assert!(indexed_fields("/v1/configmaps").is_empty());
        assert!(indexed_fields("apps/v1/deployments").is_empty());
        assert_eq!(find("/v1/events", "source").unwrap().key(), "#source");
    }
}
