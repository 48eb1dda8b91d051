//! Reading fields out of an object's JSON: one pass over the bytes, walking only the paths of
//! the indexed fields (and reading `metadata` when an object is being stored), building nothing
//! else of the object.
//!
//! This module must never allocate the whole object: what it does not need it skips.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::set::{FieldSet, IndexedField, scalar_text};
use crate::{Error, Result};

/// What the store reads of `metadata`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Metadata {
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    pub(crate) resource_version: Option<String>,
    #[serde(default)]
    pub(crate) creation_timestamp: Option<String>,
    #[serde(default)]
    pub(crate) labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) managed_fields: Option<IgnoredAny>,
}

/// The indexed fields' `(label key, value)` pairs of an object's JSON. The JSON is walked once
/// for just those paths; nothing else of it is built.
pub fn extract(fields: &FieldSet, body: &[u8]) -> Result<Vec<(String, String)>> {
    read(body, fields, None)
}

/// [`extract`], also reading `metadata` into `metadata` when given, in the same single pass
/// over the JSON (storing an object parses it once).
pub(crate) fn read(
    body: &[u8],
    fields: &FieldSet,
    metadata: Option<&mut Option<Metadata>>,
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
        .filter_map(|(f, v)| Some((f.key(), v.or_else(|| f.default.clone())?)))
        .collect())
}

/// The scalar at `path` under `value`, as field selectors see it.
fn lookup(value: &Value, path: &[String]) -> Option<String> {
    let mut v = value;
    for p in path {
        v = v.get(p)?;
    }
    scalar_text(v)
}

/// Walks a JSON value along the candidate fields' paths, at `depth` (and, at the top, reads
/// `metadata` when asked to).
struct Walk<'a> {
    fields: &'a [&'a IndexedField],
    candidates: Vec<usize>,
    depth: usize,
    found: &'a mut [Option<String>],
    metadata: Option<&'a mut Option<Metadata>>,
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
            let matched: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| fields[i].path[depth] == key.as_str())
                .collect();
            if let Some(slot) = metadata.as_deref_mut()
                && key.as_str() == "metadata"
            {
                if matched.is_empty() {
                    *slot = Some(map.next_value()?);
                } else {
                    // Fields inside `metadata` (configured annotations): read it whole once.
                    let value: Value = map.next_value()?;
                    for i in matched {
                        found[i] = lookup(&value, &fields[i].path[1..]);
                    }
                    *slot = Some(Metadata::deserialize(&value).map_err(serde::de::Error::custom)?);
                }
                continue;
            }
            if matched.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else if matched.iter().any(|&i| fields[i].path.len() == depth + 1) {
                // A field ends here: read the value once, for it and any field under it.
                let value: Value = map.next_value()?;
                for i in matched {
                    found[i] = lookup(&value, &fields[i].path[depth + 1..]);
                }
            } else {
                map.next_value_seed(Walk {
                    fields,
                    candidates: matched,
                    depth: depth + 1,
                    found,
                    metadata: None,
                })?;
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
