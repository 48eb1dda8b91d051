//! What the store needs to know of an object: its key, resource version and labels, read from the
//! JSON bytes upstream sent. The bytes themselves are stored as received (compact JSON), less
//! `metadata.managedFields` unless configured to keep them; they are never re-serialised on read.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::{Error, Result};

/// An object ready to store: its metadata and the bytes to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `metadata.namespace`, or `""` for cluster-scoped objects.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.resourceVersion`, as an integer (upstream's etcd revision).
    pub resource_version: u64,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.creationTimestamp` (RFC 3339, UTC, as upstream writes it; sorts as text).
    pub created: Option<String>,
    /// The JSON to store and serve.
    pub body: Vec<u8>,
    /// The table cells upstream printed for it (a JSON array), if sync asked for them.
    pub cells: Option<Vec<u8>>,
    /// Its indexed fields' values, keyed as in the label table (see [`crate::fields`]).
    pub fields: Vec<(String, String)>,
}

/// What the store reads of `metadata`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Metadata {
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    resource_version: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    managed_fields: Option<IgnoredAny>,
}

impl StoredObject {
    /// Reads an object's metadata from its JSON bytes; drops `metadata.managedFields` unless
    /// `keep_managed_fields`.
    pub fn from_json(body: Vec<u8>, keep_managed_fields: bool) -> Result<StoredObject> {
        StoredObject::with_fields(body, keep_managed_fields, &[])
    }

    /// [`StoredObject::from_json`], also reading the type's indexed fields, in one pass over
    /// the JSON.
    pub fn with_fields(
        body: Vec<u8>,
        keep_managed_fields: bool,
        indexed: &[crate::fields::IndexedField],
    ) -> Result<StoredObject> {
        let mut metadata = None;
        let fields = crate::fields::read(&body, indexed, Some(&mut metadata))?;
        let meta = metadata.ok_or_else(|| {
            Error::InvalidObject("not a Kubernetes object: metadata is missing".into())
        })?;
        let name = meta
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::InvalidObject("metadata.name is missing".into()))?;
        let rv = meta.resource_version.ok_or_else(|| {
            Error::InvalidObject(format!("{name}: metadata.resourceVersion is missing"))
        })?;
        let resource_version = parse_resource_version(&rv)?;
        let body = if meta.managed_fields.is_some() && !keep_managed_fields {
            strip_managed_fields(&body)?
        } else {
            body
        };
        Ok(StoredObject {
            namespace: meta.namespace.unwrap_or_default(),
            name,
            resource_version,
            labels: meta.labels.unwrap_or_default(),
            created: meta.creation_timestamp,
            body,
            cells: None,
            fields,
        })
    }
}

/// Parses a resource version. vai mirrors upstream's (etcd revisions), which are integers; an
/// upstream whose versions are not is refused rather than mis-ordered.
pub fn parse_resource_version(rv: &str) -> Result<u64> {
    rv.parse()
        .map_err(|_| Error::InvalidResourceVersion(rv.to_string()))
}

fn strip_managed_fields(body: &[u8]) -> Result<Vec<u8>> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Error::InvalidObject(e.to_string()))?;
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    Ok(serde_json::to_vec(&value).expect("a JSON value serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metadata_and_drops_managed_fields() {
        let json = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"ns","resourceVersion":"42","labels":{"app":"web"},"managedFields":[{"manager":"kubectl"}]},"spec":{}}"#;
        let obj = StoredObject::from_json(json.to_vec(), false).unwrap();
        assert_eq!((obj.namespace.as_str(), obj.name.as_str()), ("ns", "a"));
        assert_eq!(obj.resource_version, 42);
        assert_eq!(obj.labels["app"], "web");
        assert!(
            !String::from_utf8(obj.body.clone())
                .unwrap()
                .contains("managedFields")
        );
        let kept = StoredObject::from_json(json.to_vec(), true).unwrap();
        assert_eq!(kept.body, json.to_vec());
    }

    #[test]
    fn keeps_bytes_as_received_without_managed_fields() {
        let json = br#"{"metadata":{"name":"n","resourceVersion":"7"}}"#.to_vec();
        let obj = StoredObject::from_json(json.clone(), false).unwrap();
        assert_eq!(obj.body, json);
        assert_eq!(obj.namespace, "");
    }

    #[test]
    fn refuses_objects_it_cannot_key_or_order() {
        for bad in [
            &b"not json"[..],
            br#"{"metadata":{"resourceVersion":"1"}}"#,
            br#"{"metadata":{"name":"a"}}"#,
            br#"{"metadata":{"name":"a","resourceVersion":"abc"}}"#,
        ] {
            assert!(StoredObject::from_json(bad.to_vec(), false).is_err());
        }
    }
}
