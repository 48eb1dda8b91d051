//! Fields of objects that field selectors and the query API can name, per resource type, and
//! reading their values out of an object's JSON.
//!
//! A type's fields (its [`FieldSet`]) come from three places:
//!
//! - **Built in**: the fields the apiserver supports in field selectors for built-in types
//!   (pods' `spec.nodeName`, `status.phase`, …), with its value for an absent field (`""`,
//!   `false`, `0`).
//! - **Declared** by a custom resource's CRD (`spec.versions[].selectableFields`, Kubernetes
//!   1.31+; sync reads them from the cached CRDs): named by the `jsonPath` without its leading
//!   dot (`.spec.color` → `spec.color`), valued as upstream values them (the value's string form,
//!   `""` when absent or null).
//! - **Configured** by the user ([`ConfiguredField`], `vai serve --index-field
//!   pods=spec.serviceAccountName`): indexed for the query API. Field selectors accept one only
//!   where upstream does too (a built-in or declared field of that name); an absent value stays
//!   absent (the query API's `!=` and summaries see it as such).
//!
//! The selective and much-used ones are *indexed*: extracted when an object is stored and kept
//! in the label table under keys no real label can have (`#` then the field's name), so a field
//! selector on them becomes a label requirement and shares the label indexes and query plans
//! (`spec.nodeName=node-7` is answered from the index). A field with a default is stored for
//! every object, with the apiserver's value for an absent field, so `!=` means what it means
//! upstream. The others are evaluated on the objects a query reads. Indexing costs ingest time
//! (each indexed field is a row in two b-trees): measured, eight fields per pod cut ingest by
//! 2.5×, so only what selects well is indexed among the built-in fields; declared and configured
//! fields are always indexed (a CRD declares at most eight, and a user asks for what they query).
//! Each version also carries its indexed values as one small JSON object (the `fields` column,
//! see [`column`]), which an index walk checks in the index itself instead of looking each
//! candidate's label row up; the label rows stay what selects by value and what is counted.
//!
//! Which fields a type has can change while objects are stored (a CRD declares a field, the
//! configuration changes between runs): `crate::registry` keeps the label table in step.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::{Error, Result};

/// What a label key starts with when it holds an indexed field (never the case for a label:
/// label keys start with an alphanumeric character).
pub const PREFIX: &str = "#";

/// The `fields` column of a version from its indexed field values (label keys with
/// [`PREFIX`]): a JSON object by field name, `None` when the version has none.
pub(crate) fn column(fields: &[(String, String)]) -> Option<String> {
    let object: serde_json::Map<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), Value::from(v.as_str()))))
        .collect();
    (!object.is_empty()).then(|| Value::Object(object).to_string())
}

/// Rebuilds the `fields` column from the label rows, of every version of one type (or of all
/// types): after the type's indexed fields changed, or when the column is new.
pub(crate) fn fill_columns(
    conn: &rusqlite::Connection,
    resource_id: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE versions SET fields = (
             SELECT NULLIF(json_group_object(substr(l.key, 2), l.value), '{}') FROM labels l
             WHERE l.version_id = versions.id AND l.key >= '#' AND l.key < '$')
         WHERE ?1 IS NULL OR resource_id = ?1",
    )?
    .execute([resource_id])?;
    Ok(())
}

/// The JSON path of a field in the `fields` column, where SQLite's path syntax can name it
/// (a quoted label cannot hold `"` or `\`): `$."status.phase"`.
pub(crate) fn column_path(name: &str) -> Option<String> {
    (!name.contains(['"', '\\'])).then(|| format!("$.\"{name}\""))
}

/// A field of a type that field selectors or the query API can name: indexed (kept in the
/// label table) or evaluated on the objects read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedField {
    /// The name selectors and filters use (`spec.nodeName`).
    pub name: String,
    /// Where it is in the object (keys from the root).
    path: Vec<String>,
    /// Its value when the object does not have it (`None`: absent stays absent).
    default: Option<String>,
    /// Field selectors accept it (upstream does).
    pub selectable: bool,
    /// Kept in the label table (else evaluated on the objects read).
    pub indexed: bool,
    /// Declared by the type's CRD (`selectableFields`); persisted, as the CRD may be gone
    /// from the cache at the next start.
    pub(crate) declared: bool,
}

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
fn group_and_plural(resource: &str) -> (&str, &str) {
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

/// The fields of one resource type: what field selectors accept, what the query API can
/// filter, sort and summarise on, and what is indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Sorted by name, one per name.
    fields: Vec<IndexedField>,
}

impl FieldSet {
    pub(crate) fn new(mut fields: Vec<IndexedField>) -> FieldSet {
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        fields.dedup_by(|a, b| a.name == b.name);
        FieldSet { fields }
    }

    /// The set of a type with these sources: its built-in fields, the `jsonPath`s its CRD
    /// declares selectable, and the configured fields that apply to it. A name upstream
    /// already defines keeps upstream's meaning; configuring it makes it indexed.
    pub(crate) fn compose(
        resource: &str,
        declared: &[String],
        configured: &[ConfiguredField],
    ) -> FieldSet {
        let mut fields = builtin(resource).fields;
        for json_path in declared {
            let name = json_path.strip_prefix('.').unwrap_or(json_path);
            let Ok(path) = parse_path(json_path) else {
                tracing::warn!(
                    resource,
                    json_path,
                    "a selectableField vai cannot follow; ignored"
                );
                continue;
            };
            match fields.iter_mut().find(|f| f.name == name) {
                Some(f) => f.selectable = true,
                None => fields.push(IndexedField {
                    name: name.to_string(),
                    path,
                    default: Some(String::new()),
                    selectable: true,
                    indexed: true,
                    declared: true,
                }),
            }
        }
        for c in configured.iter().filter(|c| c.applies_to(resource)) {
            match fields.iter_mut().find(|f| f.name == c.name) {
                Some(f) => f.indexed = true,
                None => fields.push(IndexedField {
                    name: c.name.clone(),
                    path: c.path.clone(),
                    default: None,
                    selectable: false,
                    indexed: true,
                    declared: false,
                }),
            }
        }
        FieldSet::new(fields)
    }

    /// The field with this name.
    pub fn get(&self, name: &str) -> Option<&IndexedField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field with this name if field selectors accept it (as upstream does).
    pub fn selectable(&self, name: &str) -> Option<&IndexedField> {
        self.get(name).filter(|f| f.selectable)
    }

    /// The indexed field with this name.
    pub fn indexed(&self, name: &str) -> Option<&IndexedField> {
        self.get(name).filter(|f| f.indexed)
    }

    /// Every field, by name.
    pub fn iter(&self) -> impl Iterator<Item = &IndexedField> {
        self.fields.iter()
    }

    /// Whether the type has no fields beyond `metadata`'s.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl IndexedField {
    /// Its label-table key.
    pub fn key(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }

    /// Its value in a parsed object, as field selectors compare it (`None`: absent, for a
    /// field with no default).
    pub fn value_in(&self, object: &Value) -> Option<String> {
        let mut v = object;
        for p in &self.path {
            match v.get(p) {
                Some(next) => v = next,
                None => return self.default.clone(),
            }
        }
        scalar_text(v).or_else(|| self.default.clone())
    }

    /// Where it is in the object.
    pub(crate) fn path(&self) -> &[String] {
        &self.path
    }

    /// Its value when absent.
    pub(crate) fn default_value(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// A field read back from the store (see `crate::registry`).
    pub(crate) fn stored(
        name: String,
        path: Vec<String>,
        default: Option<String>,
        selectable: bool,
        indexed: bool,
        declared: bool,
    ) -> IndexedField {
        IndexedField {
            name,
            path,
            default,
            selectable,
            indexed,
            declared,
        }
    }

    /// Whether the label table holds the same values for both (same path and default).
    pub(crate) fn same_index(&self, other: &IndexedField) -> bool {
        self.indexed
            && other.indexed
            && self.name == other.name
            && self.path == other.path
            && self.default == other.default
    }
}

/// A scalar as field selectors see it: strings as they are, booleans and numbers in their JSON
/// form (what upstream's `fmt.Sprint` prints for them); objects, arrays and null are not values.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A field the user asks vai to index for a type: `pods=spec.serviceAccountName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredField {
    /// The type, as `--resources` names it: `plural` (any group) or `plural.group`.
    pub resource: String,
    /// The field's name in filters: its path as written, without a leading dot.
    pub name: String,
    path: Vec<String>,
}

/// How `--index-field` is written, for error hints.
const INDEX_FIELD_HINT: &str = "hint: --index-field pods=spec.serviceAccountName,deployments.apps=spec.replicas; a key with dots goes in brackets: metadata.annotations[example.com/team]";

impl ConfiguredField {
    /// A field at `path` (`spec.replicas`, `metadata.annotations[example.com/team]`) of the type
    /// `resource` (`deployments.apps`).
    pub fn new(resource: &str, path: &str) -> Result<ConfiguredField> {
        let bad = |why: String| {
            Error::InvalidIndexField(format!("{resource}={path}: {why} ({INDEX_FIELD_HINT})"))
        };
        let valid_resource = !resource.is_empty()
            && resource
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
            && !resource.starts_with('.')
            && !resource.ends_with('.');
        if !valid_resource {
            return Err(bad(format!(
                "{resource:?} is not a type name (plural or plural.group, lowercase)"
            )));
        }
        let segments = parse_path(path).map_err(bad)?;
        if segments[0] == "metadata"
            && matches!(
                segments.get(1).map(String::as_str),
                Some("name" | "namespace" | "creationTimestamp" | "labels")
            )
            && (segments.len() == 2 || segments[1] == "labels")
        {
            return Err(bad(
                "metadata.name, .namespace, .creationTimestamp and .labels are always queryable"
                    .into(),
            ));
        }
        Ok(ConfiguredField {
            resource: resource.to_string(),
            name: path.strip_prefix('.').unwrap_or(path).to_string(),
            path: segments,
        })
    }

    /// Parses `--index-field`'s value: `resource=path`, comma-separated; a bare `path` is
    /// another field of the previous item's type (`pods=spec.a,spec.b,deployments.apps=spec.c`).
    pub fn parse_list(text: &str) -> Result<Vec<ConfiguredField>> {
        let mut out = Vec::new();
        let mut resource: Option<String> = None;
        for item in split_top_level(text) {
            let item = item.trim();
            let (res, path) = match item.split_once('=') {
                Some((res, path)) => (res.trim().to_string(), path.trim()),
                None => match &resource {
                    Some(res) => (res.clone(), item),
                    None => {
                        return Err(Error::InvalidIndexField(format!(
                            "{item:?}: expected <resource>=<path> ({INDEX_FIELD_HINT})"
                        )));
                    }
                },
            };
            out.push(ConfiguredField::new(&res, path)?);
            resource = Some(res);
        }
        Ok(out)
    }

    /// Whether it applies to the type with this store key (`group/version/plural`).
    pub fn applies_to(&self, key: &str) -> bool {
        let (group, plural) = group_and_plural(key);
        match self.resource.split_once('.') {
            None => self.resource == plural,
            Some((p, g)) => p == plural && g == group,
        }
    }
}

/// Splits at commas outside brackets.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Parses a field path into its keys: `spec.color` or `.spec.color` (a CRD's `jsonPath`), with
/// keys that hold dots in brackets, quoted or not (`metadata.annotations['a.b/c']`,
/// `metadata.annotations[a.b/c]`). Array indices are not followed.
pub(crate) fn parse_path(text: &str) -> std::result::Result<Vec<String>, String> {
    let chars: Vec<char> = text.strip_prefix('.').unwrap_or(text).chars().collect();
    let mut segments = Vec::new();
    let mut at = 0;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '$');
    while at < chars.len() {
        if chars[at] == '[' {
            let close = chars[at..]
                .iter()
                .position(|&c| c == ']')
                .ok_or_else(|| format!("unbalanced [ in {text:?}"))?;
            let mut key: String = chars[at + 1..at + close].iter().collect();
            for quote in ['\'', '"'] {
                if key.len() >= 2 && key.starts_with(quote) && key.ends_with(quote) {
                    key = key[1..key.len() - 1].to_string();
                }
            }
            if key.is_empty() || key.chars().all(|c| c.is_ascii_digit() || c == '*') {
                return Err(format!("{text:?} indexes an array or names an empty key"));
            }
            segments.push(key);
            at += close + 1;
        } else {
            let start = at;
            while at < chars.len() && plain(chars[at]) {
                at += 1;
            }
            if at == start {
                return Err(format!(
                    "{text:?} has an empty key or an unexpected {:?} at {at}",
                    chars.get(at).copied().unwrap_or(' ')
                ));
            }
            segments.push(chars[start..at].iter().collect());
        }
        match chars.get(at) {
            None => {}
            Some('.') if at + 1 < chars.len() => at += 1,
            Some('[') => {}
            Some(c) => return Err(format!("unexpected {c:?} in {text:?}")),
        }
    }
    if segments.is_empty() {
        return Err("an empty path".into());
    }
    Ok(segments)
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
                    *slot = Some(
                        crate::object::Metadata::deserialize(&value)
                            .map_err(serde::de::Error::custom)?,
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn pods_index_the_apiservers_field_selectors_with_its_defaults() {
        let pod = br#"{"metadata":{"name":"p"},"spec":{"nodeName":"n1","hostNetwork":true},"status":{"phase":"Running"}}"#;
        let pods = builtin("/v1/pods");
        let fields = extract(&pods, pod).unwrap();
        assert_eq!(get(&fields, "#spec.nodeName"), Some("n1"));
        assert_eq!(get(&fields, "#status.phase"), Some("Running"));
        assert_eq!(fields.len(), 2, "only the selective pod fields are indexed");
        let object: Value = serde_json::from_slice(pod).unwrap();
        let host_network = pods.get("spec.hostNetwork").unwrap();
        assert!(!host_network.indexed && host_network.selectable);
        assert_eq!(host_network.value_in(&object).as_deref(), Some("true"));
        assert_eq!(
            pods.get("status.podIP")
                .unwrap()
                .value_in(&object)
                .as_deref(),
            Some("")
        );
        let rs: Value =
            serde_json::from_str(r#"{"metadata":{"name":"r"},"status":{"replicas":3}}"#).unwrap();
        let replicasets = builtin("apps/v1/replicasets");
        let replicas = replicasets.get("status.replicas").unwrap();
        assert_eq!(replicas.value_in(&rs).as_deref(), Some("3"));
        let node = br#"{"metadata":{"name":"n"}}"#;
        let fields = extract(&builtin("/v1/nodes"), node).unwrap();
        assert_eq!(fields[0].1, "false");
        assert!(builtin("/v1/configmaps").is_empty());
        assert!(builtin("apps/v1/deployments").is_empty());
        assert_eq!(
            builtin("/v1/events").get("source").unwrap().key(),
            "#source"
        );
    }

    #[test]
    fn extraction_walks_only_the_paths_and_tolerates_any_shape() {
        let fields = builtin("/v1/pods");
        let odd = br#"{"spec":{"containers":[{"nodeName":"no"}],"nodeName":"n\u0031"},"status":["x"],"k\"ey":1}"#;
        let got = extract(&fields, odd).unwrap();
        assert_eq!(got[0], ("#spec.nodeName".to_string(), "n1".to_string()));
        assert_eq!(got[1], ("#status.phase".to_string(), String::new()));
        assert!(extract(&fields, b"{not json").is_err());
        let event = br#"{"involvedObject":{"name":"web","kind":"Pod"},"reason":"x"}"#;
        let got = extract(&builtin("/v1/events"), event).unwrap();
        assert_eq!(
            got,
            vec![("#involvedObject.name".to_string(), "web".to_string())]
        );
    }

    #[test]
    fn declared_fields_take_upstreams_values_and_configured_ones_stay_absent() {
        let configured = ConfiguredField::parse_list(
            "widgets.example.com=spec.size,spec.color,metadata.annotations[example.com/team]",
        )
        .unwrap();
        let declared = [".spec.color".to_string(), ".spec.replicas".to_string()];
        let widgets = FieldSet::compose("example.com/v1/widgets", &declared, &configured);
        let color = widgets.get("spec.color").unwrap();
        assert!(color.selectable && color.indexed, "declared and configured");
        let size = widgets.get("spec.size").unwrap();
        assert!(!size.selectable && size.indexed, "configured only");
        assert!(widgets.selectable("spec.size").is_none());
        assert!(widgets.selectable("spec.replicas").is_some());
        // Upstream: the value's string form, "" when absent or null.
        let object = br#"{"metadata":{"name":"w","resourceVersion":"1","annotations":{"example.com/team":"blue"}},"spec":{"replicas":3,"color":null}}"#;
        let got = extract(&widgets, object).unwrap();
        assert_eq!(get(&got, "#spec.color"), Some(""));
        assert_eq!(get(&got, "#spec.replicas"), Some("3"));
        assert_eq!(get(&got, "#spec.size"), None, "absent, no default");
        assert_eq!(
            get(&got, "#metadata.annotations[example.com/team]"),
            Some("blue")
        );
        let mut metadata = None;
        let got = read(object, &widgets, Some(&mut metadata)).unwrap();
        assert!(metadata.is_some());
        assert_eq!(
            get(&got, "#metadata.annotations[example.com/team]"),
            Some("blue"),
            "fields inside metadata are read in the pass that reads metadata"
        );
        let value: Value = serde_json::from_slice(object).unwrap();
        assert_eq!(size.value_in(&value), None);
        assert_eq!(color.value_in(&value).as_deref(), Some(""));
        // A configured built-in field becomes indexed, keeping upstream's meaning.
        let configured = ConfiguredField::parse_list("pods=spec.serviceAccountName").unwrap();
        let pods = FieldSet::compose("/v1/pods", &[], &configured);
        let account = pods.get("spec.serviceAccountName").unwrap();
        assert!(account.selectable && account.indexed);
        assert_eq!(account.default_value(), Some(""));
        assert!(
            !FieldSet::compose("/v1/secrets", &[], &configured)
                .iter()
                .any(|f| f.name == "spec.serviceAccountName")
        );
        // Two fields on one path (built-in `source` and a configured `source.component`).
        let events = FieldSet::compose(
            "/v1/events",
            &[],
            &ConfiguredField::parse_list("events=source,source.component").unwrap(),
        );
        let got = extract(&events, br#"{"source":{"component":"kubelet"}}"#).unwrap();
        assert_eq!(get(&got, "#source"), Some("kubelet"));
        assert_eq!(get(&got, "#source.component"), Some("kubelet"));
    }

    #[test]
    fn index_field_syntax_is_checked_with_a_hint() {
        let parsed = ConfiguredField::parse_list(
            "pods=spec.serviceAccountName, .spec.priority,deployments.apps=spec.replicas",
        )
        .unwrap();
        let names: Vec<(&str, &str)> = parsed
            .iter()
            .map(|f| (f.resource.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("pods", "spec.serviceAccountName"),
                ("pods", "spec.priority"),
                ("deployments.apps", "spec.replicas")
            ]
        );
        assert!(parsed[0].applies_to("/v1/pods"));
        assert!(!parsed[0].applies_to("/v1/podtemplates"));
        assert!(parsed[2].applies_to("apps/v1/deployments"));
        assert!(!parsed[2].applies_to("extensions/v1beta1/deployments"));
        for (bad, says) in [
            ("spec.x", "expected <resource>=<path>"),
            ("pods=", "an empty path"),
            ("pods=spec..x", "empty key"),
            ("pods=spec.containers[0].image", "indexes an array"),
            ("Pods=spec.x", "is not a type name"),
            ("pods=metadata.name", "always queryable"),
            ("pods=metadata.labels[app]", "always queryable"),
            ("pods=spec x", "unexpected"),
        ] {
            let error = ConfiguredField::parse_list(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(error.starts_with("--index-field "), "{error}");
            assert!(error.contains("hint: "), "{error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        assert_eq!(
            parse_path(".metadata.annotations['a.b/c'].x").unwrap(),
            vec!["metadata", "annotations", "a.b/c", "x"]
        );
        assert_eq!(parse_path("spec[\"a.b\"]").unwrap(), vec!["spec", "a.b"]);
    }
}
