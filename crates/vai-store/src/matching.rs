//! Which objects a list's selection and a page's filters take, evaluated in Rust over what the
//! writer extracted ([`Event::attributes`]): for what is not read through SQL — live watch
//! events, which a server matches against every watcher's selection.
//!
//! The semantics are the SQL's (`crate::sql`): an indexed field is compared as its label rows
//! are, an evaluated one as the list evaluates it, `!=` and `notin` also match the absent.
//! `tests/query_model.rs` compares the two on random objects and selections. This module must
//! never parse an object's body unless a selector names a field the store does not index (as
//! the SQL does), and never decide anything the SQL decides otherwise.

use serde_json::Value;

use crate::fields::IndexedField;
use crate::request::{Column, Filter, ListRequest};
use crate::selector::Field;
use crate::{Attributes, Event, EventKind, FieldSet};

/// Whether an evaluated (selectable, not indexed) field's requirement holds for a parsed
/// object: the one comparison lists (`crate::sql::list`) and event matching share.
pub(crate) fn evaluated_holds(
    field: &IndexedField,
    negate: bool,
    value: &str,
    object: &Value,
) -> bool {
    (field.value_in(object).as_deref() == Some(value)) != negate
}

impl ListRequest {
    /// Whether an event's object is in this list's selection: its namespace, label selector
    /// and field selector, with the type's `fields` ([`crate::Store::fields`]), as
    /// [`crate::Store::list`] selects. `limit`, `continue_token` and `resource_version` play no
    /// part. A field selector on a field the type does not select on matches nothing (a list
    /// refuses it with [`crate::Error::UnsupportedField`]). A bookmark is in no selection.
    ///
    /// For a `Deleted` event, the object's last state is matched.
    pub fn matches(&self, fields: &FieldSet, event: &Event) -> bool {
        event.kind != EventKind::Bookmark
            && self.matches_object(
                fields,
                &event.namespace,
                &event.name,
                &event.attributes,
                &event.body,
            )
    }

    /// [`ListRequest::matches`] for an object read otherwise (a listed row): its key, its
    /// attributes ([`Attributes::read`]) and its JSON (read only for a field the type does not
    /// index).
    pub fn matches_object(
        &self,
        fields: &FieldSet,
        namespace: &str,
        name: &str,
        attributes: &Attributes,
        body: &[u8],
    ) -> bool {
        if self.namespace.as_ref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        if !self
            .labels
            .matches(|k| attributes.labels.get(k).map(String::as_str))
        {
            return false;
        }
        let mut parsed: Option<Value> = None;
        self.fields.0.iter().all(|r| match &r.field {
            Field::Name => (name == r.value) != r.negate,
            Field::Namespace => (namespace == r.value) != r.negate,
            Field::Other(f) => match fields.selectable(f) {
                None => false,
                // Its label rows: `=` needs the row with that value, `!=` its absence.
                Some(field) if field.indexed => {
                    (attributes.fields.get(f).map(String::as_str) == Some(r.value.as_str()))
                        != r.negate
                }
                Some(field) => {
                    let object = parsed
                        .get_or_insert_with(|| serde_json::from_slice(body).unwrap_or_default());
                    evaluated_holds(field, r.negate, &r.value, object)
                }
            },
        })
    }
}

impl Filter {
    /// Whether an event's object passes this filter, as [`crate::Store::page`] filters.
    pub fn matches_event(&self, event: &Event) -> bool {
        self.matches_attributes(&event.namespace, &event.name, &event.attributes)
    }

    /// [`Filter::matches_event`] for an object read otherwise: its key and attributes
    /// ([`Attributes::read`]).
    pub fn matches_attributes(&self, namespace: &str, name: &str, attributes: &Attributes) -> bool {
        self.matches(&|column: &Column| match column {
            Column::Name => Some(name.to_string()),
            Column::Namespace => Some(namespace.to_string()),
            Column::CreationTimestamp => attributes.created.clone(),
            Column::Label(key) => attributes.labels.get(key).cloned(),
            Column::Field(field) => attributes.fields.get(field).cloned(),
        })
    }
}
