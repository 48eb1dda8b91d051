//! The fields of one resource type ([`FieldSet`]) and one field ([`IndexedField`]): its
//! name, path, default, and whether selectors accept it and the label table indexes it.
//!
//! Plain data and value lookup on parsed JSON; this module must never read the database.

use serde_json::Value;

/// What a label key starts with when it holds an indexed field (never the case for a label:
/// label keys start with an alphanumeric character).
pub const PREFIX: &str = "#";

/// A field of a type that field selectors or the query API can name: indexed (kept in the
/// label table) or evaluated on the objects read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedField {
    /// The name selectors and filters use (`spec.nodeName`).
    pub name: String,
    /// Where it is in the object (keys from the root).
    pub(super) path: Vec<String>,
    /// Its value when the object does not have it (`None`: absent stays absent).
    pub(super) default: Option<String>,
    /// Field selectors accept it (upstream does).
    pub selectable: bool,
    /// Kept in the label table (else evaluated on the objects read).
    pub indexed: bool,
    /// Declared by the type's CRD (`selectableFields`); persisted, as the CRD may be gone
    /// from the cache at the next start.
    pub(crate) declared: bool,
}

/// The fields of one resource type: what field selectors accept, what the query API can
/// filter, sort and summarise on, and what is indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Sorted by name, one per name.
    pub(super) fields: Vec<IndexedField>,
}

impl FieldSet {
    pub(crate) fn new(mut fields: Vec<IndexedField>) -> FieldSet {
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        fields.dedup_by(|a, b| a.name == b.name);
        FieldSet { fields }
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
pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
