//! Selectable fields: the fields the apiserver lets field selectors use, per built-in type
//! (pods' `spec.nodeName`, `status.phase`, …).
//!
//! The selective and much-used ones are *indexed*: extracted when an object is stored and kept
//! in the label table under keys no real label can have (`#` then the field's name), so a field
//! selector on them becomes a label requirement and shares the label indexes and query plans
//! (`spec.nodeName=node-7` is answered from the index). Each is stored for every object, with the
//! apiserver's value for an absent field (`""`, `false`, `0`), so `!=` means what it means
//! upstream. The others are evaluated on the objects a query reads. Indexing costs ingest time
//! (each indexed field is a row in two b-trees): measured, eight fields per pod cut ingest by
//! 2.5×, so only what selects well is indexed.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    /// Kept in the label table (else evaluated on the objects read).
    pub indexed: bool,
}

/// A selectable field that is evaluated, not indexed.
const fn field(
    name: &'static str,
    path: &'static [&'static str],
    default: &'static str,
) -> IndexedField {
    IndexedField {
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
) -> IndexedField {
    IndexedField {
        name,
        path,
        default,
        indexed: true,
    }
}

const PODS: &[IndexedField] = &[
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

const EVENTS: &[IndexedField] = &[
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

const SECRETS: &[IndexedField] = &[indexed("type", &["type"], "")];
const NODES: &[IndexedField] = &[indexed(
    "spec.unschedulable",
    &["spec", "unschedulable"],
    "false",
)];
const NAMESPACES: &[IndexedField] = &[indexed("status.phase", &["status", "phase"], "")];
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
        scalar_text(v).unwrap_or_else(|| self.default.to_string())
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The indexed fields' `(label key, value)` pairs of an object's JSON. The JSON is walked once
/// for just those paths; nothing else of it is built.
pub fn extract(fields: &[IndexedField], body: &[u8]) -> Result<Vec<(String, String)>> {
    read(body, fields, None)
}

/// [`extract`], also reading `metadata` into `metadata` when given, in the same single pass
/// over the JSON (storing an object parses it once).
pub(crate) fn read(
    body: &[u8],
    fields: &[IndexedField],
    metadata: Option<&mut Option<crate::object::Metadata>>,
) -> Result<Vec<(String, String)>> {
    let wanted: Vec<&IndexedField> = fields.iter().filter(|f| f.indexed).collect();
    if wanted.is_empty() && metadata.is_none() {
        return Ok(Vec::new());
    }
    let mut found: Vec<Option<String>> = vec![None; wanted.len()];
    let walk = Walk {
        fields: &wanted,
        candidates: (0..wanted.len()).collect(),
        depth: 0,
        found: &mut found,
        metadata,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    walk.deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| Error::InvalidObject(format!("not a Kubernetes object: {e}")))?;
    Ok(wanted
        .iter()
        .zip(found)
        .map(|(f, v)| (f.key(), v.unwrap_or_else(|| f.default.to_string())))
        .collect())
}

/// Walks a JSON value along the candidate fields' paths, at `depth` (and, at the top, reads
/// `metadata` when asked to).
struct Walk<'a> {
    fields: &'a [&'a IndexedField],
    candidates: Vec<usize>,
    depth: usize,
    found: &'a mut [Option<String>],
    metadata: Option<&'a mut Option<crate::object::Metadata>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk {
            fields,
            candidates,
            depth,
            found,
            mut metadata,
        } = self;
        while let Some(key) = map.next_key_seed(Key)? {
            if let Some(slot) = metadata.as_deref_mut()
                && key.as_str() == "metadata"
            {
                *slot = Some(map.next_value()?);
                continue;
            }
            let matched: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| fields[i].path[depth] == key.as_str())
                .collect();
            match matched.first() {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(&i) if fields[i].path.len() == depth + 1 => {
                    found[i] = map.next_value_seed(Scalar)?;
                }
                Some(_) => map.next_value_seed(Walk {
                    fields,
                    candidates: matched,
                    depth: depth + 1,
                    found,
                    metadata: None,
                })?,
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A map key, borrowed when the JSON allows.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = KeyText<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<KeyText<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = KeyText<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Owned(v.to_string()))
    }
}

enum KeyText<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl KeyText<'_> {
    fn as_str(&self) -> &str {
        match self {
            KeyText::Borrowed(s) => s,
            KeyText::Owned(s) => s,
        }
    }
}

/// A scalar leaf as text (`None` for objects, arrays and null).
struct Scalar;

impl<'de> DeserializeSeed<'de> for Scalar {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(scalar_text(&value))
    }
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
        assert_eq!(get("#status.phase"), "Running");
        assert_eq!(fields.len(), 2, "only the selective pod fields are indexed");
        let object: Value = serde_json::from_slice(pod).unwrap();
        let host_network = find("/v1/pods", "spec.hostNetwork").unwrap();
        assert!(!host_network.indexed);
        assert_eq!(host_network.value_in(&object), "true");
        assert_eq!(
            find("/v1/pods", "status.podIP").unwrap().value_in(&object),
            ""
        );
        let rs: Value =
            serde_json::from_str(r#"{"metadata":{"name":"r"},"status":{"replicas":3}}"#).unwrap();
        let replicas = find("apps/v1/replicasets", "status.replicas").unwrap();
        assert_eq!(replicas.value_in(&rs), "3");
        let node = br#"{"metadata":{"name":"n"}}"#;
        let fields = extract(indexed_fields("/v1/nodes"), node).unwrap();
        assert_eq!(fields[0].1, "false");
        assert!(indexed_fields("/v1/configmaps").is_empty());
        assert!(indexed_fields("apps/v1/deployments").is_empty());
        assert_eq!(find("/v1/events", "source").unwrap().key(), "#source");
    }

    #[test]
    fn extraction_walks_only_the_paths_and_tolerates_any_shape() {
        let fields = indexed_fields("/v1/pods");
        let odd = br#"{"spec":{"containers":[{"nodeName":"no"}],"nodeName":"n\u0031"},"status":["x"],"k\"ey":1}"#;
        let got = extract(fields, odd).unwrap();
        assert_eq!(got[0], ("#spec.nodeName".to_string(), "n1".to_string()));
        assert_eq!(got[1], ("#status.phase".to_string(), String::new()));
        assert!(extract(fields, b"{not json").is_err());
        let event = br#"{"involvedObject":{"name":"web","kind":"Pod"},"reason":"x"}"#;
        let got = extract(indexed_fields("/v1/events"), event).unwrap();
        assert_eq!(
            got,
            vec![("#involvedObject.name".to_string(), "web".to_string())]
        );
    }
}
