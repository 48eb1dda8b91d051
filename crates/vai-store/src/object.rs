//! What the store needs to know of an object: its key, resource version and labels, read from the
//! JSON bytes upstream sent. The bytes themselves are stored as received (compact JSON), less
//! `metadata.managedFields` unless configured to keep them; they are never re-serialised on read.

use std::collections::BTreeMap;

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

impl StoredObject {
    /// Reads an object's metadata from its JSON bytes; drops `metadata.managedFields` unless
    /// `keep_managed_fields`.
    pub fn from_json(body: Vec<u8>, keep_managed_fields: bool) -> Result<StoredObject> {
        StoredObject::with_fields(body, keep_managed_fields, &crate::FieldSet::default())
    }

    /// [`StoredObject::from_json`], also reading the type's indexed fields, in one pass over
    /// the JSON.
    pub fn with_fields(
        body: Vec<u8>,
        keep_managed_fields: bool,
        indexed: &crate::FieldSet,
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

/// Drops `metadata.managedFields` by cutting its bytes out, leaving every other byte as upstream
/// sent it (a parse into a `serde_json::Value` and back cost 2.6× the whole ingest). JSON this
/// scanner does not follow falls back to that parse.
fn strip_managed_fields(body: &[u8]) -> Result<Vec<u8>> {
    if let Some((from, to)) = managed_fields_span(body) {
        let mut out = Vec::with_capacity(body.len() - (to - from));
        out.extend_from_slice(&body[..from]);
        out.extend_from_slice(&body[to..]);
        return Ok(out);
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Error::InvalidObject(e.to_string()))?;
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    Ok(serde_json::to_vec(&value).expect("a JSON value serialises"))
}

/// The byte range to remove for `metadata.managedFields`: the member and one comma beside it.
fn managed_fields_span(json: &[u8]) -> Option<(usize, usize)> {
    let key = |m: &Member, name: &[u8]| &json[m.key.0..m.key.1] == name;
    let metadata = members(json, skip_ws(json, 0))?
        .into_iter()
        .find(|m| key(m, b"\"metadata\""))?;
    let inner = members(json, metadata.value.0)?;
    let at = inner.iter().position(|m| key(m, b"\"managedFields\""))?;
    let (member_start, value_end) = (inner[at].key.0, inner[at].value.1);
    if at > 0 {
        // Remove from the comma after the previous member's value.
        let comma = skip_ws(json, inner[at - 1].value.1);
        (json.get(comma) == Some(&b',')).then_some((comma, value_end))
    } else {
        // The first member: remove it and the comma that follows, if any.
        let after = skip_ws(json, value_end);
        match json.get(after) {
            Some(b',') => Some((member_start, skip_ws(json, after + 1))),
            Some(b'}') => Some((member_start, after)),
            _ => None,
        }
    }
}

/// An object member's byte ranges: its key (quotes included) and its value.
struct Member {
    key: (usize, usize),
    value: (usize, usize),
}

fn skip_ws(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// The members of the object starting at `at`.
fn members(json: &[u8], at: usize) -> Option<Vec<Member>> {
    if json.get(at) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut at = skip_ws(json, at + 1);
    if json.get(at) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_end = skip_value(json, at)?;
        if json.get(at) != Some(&b'"') {
            return None;
        }
        let colon = skip_ws(json, key_end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(json, colon + 1);
        let value_end = skip_value(json, value_start)?;
        out.push(Member {
            key: (at, key_end),
            value: (value_start, value_end),
        });
        let next = skip_ws(json, value_end);
        match json.get(next)? {
            b',' => at = skip_ws(json, next + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// The end of the JSON value starting at `at` (strings with escapes, nested containers,
/// literals and numbers).
fn skip_value(json: &[u8], at: usize) -> Option<usize> {
    match json.get(at)? {
        b'"' => {
            let mut i = at + 1;
            loop {
                match json.get(i)? {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match json.get(i)? {
                    b'"' => {
                        i = skip_value(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while json
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
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

    #[test]
    fn managed_fields_are_cut_out_byte_for_byte_wherever_they_are() {
        let cases = [
            r#"{"metadata":{"name":"a","managedFields":[{"m":"x","f":{"k:{\"a\":1}":{}}}],"resourceVersion":"1"},"spec":{}}"#,
            r#"{"metadata":{"managedFields":[],"name":"a","resourceVersion":"1"}}"#,
            r#"{"metadata":{"name":"a","resourceVersion":"1","managedFields":[{"s":"}]\\"}]}}"#,
            r#"{ "kind" : "Pod", "metadata" : { "name" : "a" , "managedFields" : [ 1, 2 ] , "resourceVersion" : "1" } }"#,
            r#"{"spec":{"metadata":{"managedFields":1}},"metadata":{"managedFields":null,"name":"a","resourceVersion":"1"}}"#,
        ];
        for json in cases {
            let stripped = strip_managed_fields(json.as_bytes()).unwrap();
            let mut want: serde_json::Value = serde_json::from_str(json).unwrap();
            want["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            let got: serde_json::Value = serde_json::from_slice(&stripped).unwrap_or_else(|e| {
                panic!("{json} -> {}: {e}", String::from_utf8_lossy(&stripped))
            });
            assert_eq!(got, want, "{json}");
            // Every other byte is kept: the cut is one contiguous range.
            assert!(managed_fields_span(json.as_bytes()).is_some(), "{json}");
        }
        // Key order and formatting of the rest survive (no re-serialisation).
        let json =
            br#"{"z":1,"metadata":{"name":"a","managedFields":[],"resourceVersion":"1"},"a":2}"#;
        assert_eq!(
            strip_managed_fields(json).unwrap(),
            br#"{"z":1,"metadata":{"name":"a","resourceVersion":"1"},"a":2}"#
        );
    }
}
