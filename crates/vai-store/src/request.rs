//! The typed requests and what they answer: what a list selects ([`ListRequest`]), what a
//! page of the query API asks ([`PageRequest`]: [`Filter`]s of [`Condition`]s on [`Column`]s,
//! [`SortKey`]s, an offset page) and the metadata that comes back ([`ListMeta`], [`PageMeta`],
//! [`Summary`], [`Row`]).
//!
//! The request model only: this module must never build SQL (that is `crate::sql`'s, the one
//! place that turns these into statements) nor read the database.

use crate::selector::{FieldSelector, LabelSelector};
use crate::{Error, FieldSet, Result};

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// At most this many items; the page then carries a continue token if more remain.
    pub limit: Option<usize>,
    /// A token from a previous page: continues that list, at that list's snapshot.
    pub continue_token: Option<String>,
    /// List the state exactly as of this resource version (must lie inside the history
    /// window). `None`: the latest state.
    pub resource_version: Option<u64>,
}

/// What a list returns besides its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMeta {
    /// The resource version the list is a snapshot of.
    pub resource_version: u64,
    /// Set when more items remain: pass it back to get the next page.
    pub continue_token: Option<String>,
    /// How many items were returned.
    pub count: usize,
}

/// One listed item, borrowed from the database row.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// `metadata.namespace` (`""` if cluster-scoped).
    pub namespace: &'a str,
    /// `metadata.name`.
    pub name: &'a str,
    /// The object's JSON.
    pub body: &'a [u8],
    /// Its table cells, if captured.
    pub cells: Option<&'a [u8]>,
}

/// Receives each listed item.
pub(crate) type ItemSink<'a> = dyn FnMut(Row) -> Result<()> + 'a;

/// Receives each item of a paced list, and says whether the list may go on in the same read.
pub(crate) type PacedSink<'a> = dyn FnMut(Row) -> Result<Pace> + 'a;

/// What a [`ListSink`] says after an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Go on in the same read.
    On,
    /// End the read (and let its snapshot go) before the next item: the sink is about to
    /// wait, and does so in [`ListSink::between`].
    Yield,
}

/// Where a list's items go when it is read in parts (see [`crate::Store::list_paced`]).
pub trait ListSink {
    /// Takes one item.
    fn item(&mut self, row: Row) -> Result<Pace>;
    /// Called after each read of the list, outside it (no snapshot held, no connection
    /// taken): where a sink that yielded waits.
    fn between(&mut self) -> Result<()>;
}

/// What a filter or a sort key can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// `metadata.name`
    Name,
    /// `metadata.namespace`
    Namespace,
    /// `metadata.creationTimestamp`
    CreationTimestamp,
    /// `metadata.labels[key]`
    Label(String),
    /// An indexed field of the type (`status.phase`).
    Field(String),
}

impl Column {
    /// Parses a field path for a resource type with these fields ([`crate::Store::fields`]):
    /// its indexed fields, and what [`Column::parse`] accepts. An unknown field is refused with
    /// the list of what is indexed.
    pub fn parse_for(fields: &FieldSet, path: &str) -> Result<Column> {
        match fields.indexed(path) {
            Some(field) => Ok(Column::Field(field.name.clone())),
            None => Column::parse(path).map_err(|_| not_indexed(fields, path)),
        }
    }

    /// Its name in field paths (`metadata.labels[app]`, `status.phase`).
    pub fn path(&self) -> String {
        match self {
            Column::Name => "metadata.name".into(),
            Column::Namespace => "metadata.namespace".into(),
            Column::CreationTimestamp => "metadata.creationTimestamp".into(),
            Column::Label(k) => format!("metadata.labels[{k}]"),
            Column::Field(f) => f.clone(),
        }
    }

    /// Parses a field path: `metadata.name`, `metadata.namespace`,
    /// `metadata.creationTimestamp`, `metadata.labels[key]` (or `metadata.labels.key`).
    pub fn parse(path: &str) -> Result<Column> {
        match path {
            "metadata.name" => Ok(Column::Name),
            "metadata.namespace" => Ok(Column::Namespace),
            "metadata.creationTimestamp" => Ok(Column::CreationTimestamp),
            _ => path
                .strip_prefix("metadata.labels[")
                .and_then(|k| k.strip_suffix(']'))
                .or_else(|| path.strip_prefix("metadata.labels."))
                .filter(|k| !k.is_empty())
                .map(|k| Column::Label(k.to_string()))
                .ok_or_else(|| {
                    Error::UnsupportedField(format!(
                        "field {path:?} is not indexed; indexed fields: metadata.name, metadata.namespace, metadata.creationTimestamp, metadata.labels[<key>]"
                    ))
                }),
        }
    }
}

/// What a type's pages can filter and sort on, for error messages.
pub(crate) fn indexed_names(fields: &FieldSet) -> String {
    let mut names = vec![
        "metadata.name",
        "metadata.namespace",
        "metadata.creationTimestamp",
        "metadata.labels[<key>]",
    ];
    names.extend(fields.iter().filter(|f| f.indexed).map(|f| f.name.as_str()));
    names.join(", ")
}

/// The error for a column that is not indexed.
pub(crate) fn not_indexed(fields: &FieldSet, path: &str) -> Error {
    Error::UnsupportedField(format!(
        "field {path:?} is not indexed; indexed fields: {}",
        indexed_names(fields)
    ))
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Equal to the value.
    Eq,
    /// Not equal (also true when the column is absent).
    NotEq,
    /// Contains the value as a substring.
    Contains,
    /// Does not contain the value (also true when absent).
    NotContains,
    /// One of the values.
    In,
    /// None of the values (also true when absent).
    NotIn,
    /// Less than the value: numerically if both are integers, else as text (RFC 3339 times
    /// compare correctly as text).
    Lt,
    /// Greater than the value, as for `Lt`.
    Gt,
    /// The column is present (labels).
    Exists,
    /// The column is absent (labels).
    NotExists,
}

/// One condition: `column operator values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is compared.
    pub column: Column,
    /// How.
    pub operator: Operator,
    /// With what (one value, several for `In`/`NotIn`, none for `Exists`/`NotExists`).
    pub values: Vec<String>,
}

/// Conditions of which at least one must hold (a filter's commas are ORs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(pub Vec<Condition>);

impl Filter {
    /// Whether an object passes, given its columns' values (`None`: absent) — the SQL's
    /// semantics, for what is not read through SQL (watch events).
    pub fn matches(&self, value_of: &dyn Fn(&Column) -> Option<String>) -> bool {
        self.0.iter().any(|c| c.matches(&value_of(&c.column)))
    }
}

impl Condition {
    /// Whether a column value (`None`: absent) satisfies this condition.
    pub fn matches(&self, value: &Option<String>) -> bool {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match (self.operator, value.as_deref()) {
            (Operator::Exists, v) => v.is_some(),
            (Operator::NotExists, v) => v.is_none(),
            (Operator::Eq, v) => v == Some(first),
            (Operator::NotEq, v) => v != Some(first),
            (Operator::Contains, v) => v.is_some_and(|v| v.contains(first)),
            (Operator::NotContains, v) => !v.is_some_and(|v| v.contains(first)),
            (Operator::In, v) => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            (Operator::NotIn, v) => !v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            (Operator::Lt | Operator::Gt, None) => false,
            (op, Some(v)) => {
                let ordering = match first.parse::<i64>() {
                    // Numerically, and only canonical integers (as the SQL).
                    Ok(n) => match v.parse::<i64>() {
                        Ok(m) if m.to_string() == v => m.cmp(&n),
                        _ => return false,
                    },
                    Err(_) => v.cmp(first),
                };
                ordering
                    == if op == Operator::Lt {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    }
            }
        }
    }
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The column.
    pub column: Column,
    /// Largest first.
    pub descending: bool,
    /// Compare ignoring ASCII case.
    pub case_insensitive: bool,
}

/// A page request: the list's selection plus filters, sort and an offset page.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Namespace, selectors and resource version (its `limit` and `continue_token` are unused).
    pub list: ListRequest,
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Sort keys, most significant first; ties are broken by namespace and name (stable).
    pub sort: Vec<SortKey>,
    /// Items to skip.
    pub offset: usize,
    /// Items per page (`None`: all).
    pub page_size: Option<usize>,
}

/// What a page returns besides its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMeta {
    /// The snapshot the page comes from (pass it back as the list's `resource_version` to get
    /// more pages of the same snapshot).
    pub resource_version: u64,
    /// How many items match in all (every page).
    pub total: u64,
    /// How many items this page holds.
    pub count: usize,
}

/// Counts per value of a column (see [`crate::Store::summary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The snapshot counted.
    pub resource_version: u64,
    /// `(value, count)`, largest count first, then by value; `None` for objects without it.
    pub counts: Vec<(Option<String>, u64)>,
}
