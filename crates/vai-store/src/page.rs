//! The query API's primitives, for UIs: filters (equality, inequality, substring, sets,
//! comparisons, label existence), multi-key sort, offset pages with the total count, at the
//! latest state or as of a resource version — all evaluated in SQL, in one snapshot.
//!
//! Columns are a closed set ([`Column`]): the always-indexed metadata fields, labels, and the
//! type's indexed fields (pods' `spec.nodeName`, `status.phase`, fields CRDs declare, configured
//! ones; see [`crate::fields`]).

use rusqlite::Transaction;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use crate::query::ListRequest;
use crate::{Error, FieldSet, Result};

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

    /// The SQL expression for this column of version `v`; binds a label key if needed.
    fn sql(&self, bind: &mut dyn FnMut(Value) -> String) -> String {
        match self {
            Column::Name => "v.name".into(),
            Column::Namespace => "v.namespace".into(),
            Column::CreationTimestamp => "v.created".into(),
            Column::Label(key) => {
                let p = bind(Value::Text(key.clone()));
                format!("(SELECT l.value FROM labels l WHERE l.version_id = v.id AND l.key = {p})")
            }
            // The version's own copy of its indexed values, checked in an index that covers
            // it without a lookup; the label row where no JSON path can name the field.
            Column::Field(name) => match crate::fields::column_path(name) {
                Some(path) => format!("json_extract(v.fields, {})", bind(Value::Text(path))),
                None => Column::Label(format!("{}{name}", crate::fields::PREFIX)).sql(bind),
            },
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
fn not_indexed(fields: &FieldSet, path: &str) -> Error {
    Error::UnsupportedField(format!(
        "field {path:?} is not indexed; indexed fields: {}",
        indexed_names(fields)
    ))
}

/// Refuses columns naming fields this snapshot does not index (a request parsed against the
/// registry just before a field went): they would read as absent everywhere.
fn check_columns<'a>(
    fields: &FieldSet,
    columns: impl IntoIterator<Item = &'a Column>,
) -> Result<()> {
    for column in columns {
        if let Column::Field(name) = column
            && fields.indexed(name).is_none()
        {
            return Err(not_indexed(fields, name));
        }
    }
    Ok(())
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

fn condition_sql(c: &Condition, bind: &mut dyn FnMut(Value) -> String) -> Result<String> {
    let col = c.column.sql(bind);
    let one = |bind: &mut dyn FnMut(Value) -> String| -> Result<String> {
        match c.values.as_slice() {
            [v] => Ok(bind(Value::Text(v.clone()))),
            _ => Err(Error::InvalidSelector(format!(
                "{:?} on {:?} takes exactly one value",
                c.operator, c.column
            ))),
        }
    };
    Ok(match c.operator {
        Operator::Eq => format!("{col} = {}", one(bind)?),
        Operator::NotEq => format!("({col} IS NULL OR {col} != {})", one(bind)?),
        Operator::Contains => format!("instr({col}, {}) > 0", one(bind)?),
        Operator::NotContains => format!("({col} IS NULL OR instr({col}, {}) = 0)", one(bind)?),
        Operator::In | Operator::NotIn => {
            if c.values.is_empty() {
                return Err(Error::InvalidSelector("an empty set of values".into()));
            }
            let list: Vec<String> = c
                .values
                .iter()
                .map(|v| bind(Value::Text(v.clone())))
                .collect();
            if c.operator == Operator::In {
                format!("{col} IN ({})", list.join(", "))
            } else {
                format!("({col} IS NULL OR {col} NOT IN ({}))", list.join(", "))
            }
        }
        Operator::Lt | Operator::Gt => {
            let op = if c.operator == Operator::Lt { "<" } else { ">" };
            let value = match c.values.as_slice() {
                [v] => v,
                _ => {
                    return Err(Error::InvalidSelector(
                        "a comparison takes one value".into(),
                    ));
                }
            };
            match value.parse::<i64>() {
                Ok(n) => {
                    let p = bind(Value::Integer(n));
                    format!(
                        "(CAST(CAST({col} AS INTEGER) AS TEXT) = {col} AND CAST({col} AS INTEGER) {op} {p})"
                    )
                }
                Err(_) => format!("{col} {op} {}", bind(Value::Text(value.clone()))),
            }
        }
        Operator::Exists => format!("{col} IS NOT NULL"),
        Operator::NotExists => format!("{col} IS NULL"),
    })
}

/// The SQL selecting the ids of a page request's matches (the list's selection plus the
/// filters), before order and cut: `(resource version, selection, filter conditions, args)`.
fn filtered_sql(
    tx: &Transaction,
    resource: &str,
    request: &PageRequest,
    scan: &str,
) -> Result<(u64, String, String, Vec<Value>)> {
    let fields = crate::registry::stored(tx, resource)?;
    if let Some((field, ..)) =
        crate::query::evaluated_fields(tx, resource, &request.list.fields)?.first()
    {
        return Err(Error::UnsupportedField(format!(
            "field {:?} is not indexed, so pages cannot select on it; indexed: {}",
            field.name,
            indexed_names(&fields)
        )));
    }
    let filtered = request.filters.iter().flat_map(|f| f.0.iter());
    check_columns(
        &fields,
        filtered
            .map(|c| &c.column)
            .chain(request.sort.iter().map(|k| &k.column)),
    )?;
    // The selection (namespace, selectors, visibility) is the list's: reuse its SQL.
    let (resource_version, base_sql, mut args) =
        crate::query::selection_sql(tx, resource, &request.list, "v.id", scan)?;
    let mut extra = String::new();
    {
        let mut bind = |v: Value| {
            args.push(v);
            format!("?{}", args.len())
        };
        for filter in &request.filters {
            let ors = filter
                .0
                .iter()
                .map(|c| condition_sql(c, &mut bind))
                .collect::<Result<Vec<_>>>()?;
            if !ors.is_empty() {
                extra += &format!(" AND ({})", ors.join(" OR "));
            }
        }
    }
    Ok((resource_version, base_sql, extra, args))
}

/// Counts per value of a column (see [`crate::Store::summary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The snapshot counted.
    pub resource_version: u64,
    /// `(value, count)`, largest count first, then by value; `None` for objects without it.
    pub counts: Vec<(Option<String>, u64)>,
}

/// Counts a page request's matches (all pages) per value of `column`, in one snapshot; objects
/// without the column count under `None`. Largest counts first, then by value.
pub(crate) fn summary(
    tx: &Transaction,
    resource: &str,
    request: &PageRequest,
    column: &Column,
) -> Result<Summary> {
    check_columns(&crate::registry::stored(tx, resource)?, [column])?;
    if let (Column::Field(field), true) =
        (column, request.filters.is_empty() && counted(&request.list))
    {
        // Kept by the writer (`crate::counts`): a few rows, not a walk over every object.
        let row = crate::query::resource_row(tx, resource)?;
        let namespace = request.list.namespace.as_deref();
        let key = crate::counts::scoped(namespace, &format!("{}{field}", crate::fields::PREFIX));
        let mut counts: Vec<(Option<String>, u64)> = crate::counts::values(tx, row.id, &key)?
            .into_iter()
            .map(|(value, n)| (Some(value), n))
            .collect();
        let objects = crate::counts::objects(tx, row.id, namespace)?;
        let valued: u64 = counts.iter().map(|(_, n)| n).sum();
        if objects > valued {
            counts.push((None, objects - valued));
        }
        return Ok(Summary {
            resource_version: row.last_rv,
            counts: sorted_counts(counts),
        });
    }
    let (resource_version, base_sql, extra, mut args) =
        filtered_sql(tx, resource, request, crate::query::BY_KEY)?;
    let bind = |args: &mut Vec<Value>, v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    let label_key = match column {
        Column::Label(k) => Some(k.clone()),
        Column::Field(f) => Some(format!("{}{f}", crate::fields::PREFIX)),
        _ => None,
    };
    let counts: Vec<(Option<String>, u64)> = match label_key {
        // Labels and indexed fields: walk the (key, value) index, which yields the values in
        // order, keeping the versions the selection holds (one set of ids, built once) — not a
        // lookup per selected object.
        Some(key) => {
            let rid = crate::query::resource_row(tx, resource)?.id;
            let (rid, key) = (
                bind(&mut args, Value::Integer(rid)),
                bind(&mut args, Value::Text(key)),
            );
            let sql = format!(
                "SELECT l.value, count(*) FROM labels l INDEXED BY labels_by_value
                 WHERE l.resource_id = {rid} AND l.key = {key} AND l.version_id IN ({base_sql}{extra})
                 GROUP BY l.value"
            );
            let mut counts = tx
                .prepare(&sql)?
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((Some(r.get::<_, String>(0)?), r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // Objects without the label: the selection's size less those counted.
            args.truncate(args.len() - 2);
            let total: i64 = tx.query_row(
                &format!("SELECT count(*) FROM ({base_sql}{extra})"),
                params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            let labelled: u64 = counts.iter().map(|(_, n)| n).sum();
            if total as u64 > labelled {
                counts.push((None, total as u64 - labelled));
            }
            counts
        }
        None => {
            let value = column.sql(&mut |v: Value| bind(&mut args, v));
            let sql = format!(
                "SELECT {value} AS value, count(*) AS n FROM versions v
                 WHERE v.id IN ({base_sql}{extra}) GROUP BY value"
            );
            tx.prepare(&sql)?
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(Summary {
        resource_version,
        counts: sorted_counts(counts),
    })
}

/// Largest first, then by value (absent last among equals).
fn sorted_counts(mut counts: Vec<(Option<String>, u64)>) -> Vec<(Option<String>, u64)> {
    counts.sort_by(|a, b| {
        b.1.cmp(&a.1).then_with(|| match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
    });
    counts
}

/// Whether a page request is walked in `versions_by_created`'s order instead of sorted: sorted
/// by creation time alone, newest first, with no label selector (which drives the selection
/// from the label index), and either the whole type unfiltered or a selection whose total the
/// writer's counts hold — the walk then stops at the page's end; otherwise it would pass every
/// object of the type to count one namespace's.
fn walks_newest_first(request: &PageRequest, total_counted: bool) -> bool {
    let list = &request.list;
    let newest_first = matches!(
        request.sort.as_slice(),
        [SortKey {
            column: Column::CreationTimestamp,
            descending: true,
            case_insensitive: false,
        }]
    );
    let whole_type =
        list.namespace.is_none() && request.filters.is_empty() && list.fields.0.is_empty();
    newest_first && list.labels.0.is_empty() && (whole_type || total_counted)
}

/// Whether a list selects every current object of its type or of one namespace: no selector,
/// at the latest version (with no filter either, what the writer's counts answer).
fn counted(list: &ListRequest) -> bool {
    list.labels.0.is_empty()
        && list.fields.0.is_empty()
        && list.resource_version.is_none()
        && list.continue_token.is_none()
}

/// A request's total where the writer's counts hold it: what [`counted`] selects, unfiltered
/// or with one filter that is an indexed field's equality (`status.phase=Running`).
fn counted_total(tx: &Transaction, resource: &str, request: &PageRequest) -> Result<Option<u64>> {
    if !counted(&request.list) {
        return Ok(None);
    }
    let rid = crate::query::resource_row(tx, resource)?.id;
    let namespace = request.list.namespace.as_deref();
    Ok(match request.filters.as_slice() {
        [] => Some(crate::counts::objects(tx, rid, namespace)?),
        [Filter(conditions)] => match conditions.as_slice() {
            [
                Condition {
                    column: Column::Field(field),
                    operator: Operator::Eq,
                    values,
                },
            ] if values.len() == 1 => Some(crate::counts::with_value(
                tx,
                rid,
                namespace,
                &format!("{}{field}", crate::fields::PREFIX),
                &values[0],
            )?),
            _ => None,
        },
        _ => None,
    })
}

/// The SQL of a page request's matching ids, sorted: `(resource version, SQL, args)`.
fn page_sql(
    tx: &Transaction,
    resource: &str,
    request: &PageRequest,
    total_counted: bool,
) -> Result<(u64, String, Vec<Value>)> {
    let walk = walks_newest_first(request, total_counted);
    let scan = match (walk, &request.list.namespace) {
        (true, Some(_)) => crate::query::NEWEST_FIRST_IN_NAMESPACE,
        (true, None) => crate::query::NEWEST_FIRST,
        (false, _) => crate::query::BY_KEY,
    };
    let (resource_version, base_sql, extra, mut args) = filtered_sql(tx, resource, request, scan)?;
    let mut order = Vec::new();
    if walk {
        // The index's own order (absent times sort last in a descending order anyway), so
        // SQLite walks it and stops at the page's end instead of sorting every object.
        order.push("v.created DESC".into());
    } else {
        let mut bind = |v: Value| {
            args.push(v);
            format!("?{}", args.len())
        };
        for key in &request.sort {
            let mut col = key.column.sql(&mut bind);
            if key.case_insensitive {
                col = format!("{col} COLLATE NOCASE");
            }
            // Absent values sort last either way.
            order.push(format!("({}) IS NULL", key.column.sql(&mut bind)));
            order.push(format!(
                "{col} {}",
                if key.descending { "DESC" } else { "ASC" }
            ));
        }
    }
    order.push("v.namespace".into());
    order.push("v.name".into());
    let sql = format!("{base_sql}{extra} ORDER BY {}", order.join(", "));
    Ok((resource_version, sql, args))
}

/// Runs a page request in one snapshot: the total count and the page, from one pass.
pub(crate) fn page_each(
    tx: &Transaction,
    resource: &str,
    request: &PageRequest,
    each: &mut crate::query::ItemSink,
) -> Result<PageMeta> {
    if request.list.continue_token.is_some() {
        return Err(Error::InvalidContinue(
            "pages use offsets and a resource version, not continue tokens".into(),
        ));
    }
    let known_total = counted_total(tx, resource, request)?.map(|n| n as usize);
    let (resource_version, sql, args) = page_sql(tx, resource, request, known_total.is_some())?;
    let end = request
        .page_size
        .map_or(usize::MAX, |size| request.offset.saturating_add(size));
    // One pass over the sorted selection gives the total and the page (a separate count would
    // walk the selection a second time); where the writer's counts hold the total, the pass
    // stops at the page's end. (A `LIMIT` made SQLite keep a bounded sorter instead: slower at
    // deep offsets, 84 → 110 ms for page 500 of 100,000.) Either way order and cut on ids only
    // (the sorter would otherwise carry every body), then read the page's bodies by id, in the
    // same snapshot.
    let mut ids = Vec::new();
    let mut total = 0usize;
    {
        let mut stmt = tx.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            if (request.offset..end).contains(&total) {
                ids.push(r.get::<_, i64>(0)?);
            }
            total += 1;
            if known_total.is_some() && total >= end {
                break;
            }
        }
    }
    let total = known_total.unwrap_or(total);
    let mut by_id =
        tx.prepare_cached("SELECT namespace, name, body, cells FROM versions WHERE id = ?1")?;
    for id in &ids {
        let mut rows = by_id.query([id])?;
        let r = rows
            .next()?
            .expect("a selected version exists in the same snapshot");
        let text = |i: usize| -> Result<&str> {
            Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
        };
        let body = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        let cells = r
            .get_ref(3)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?;
        each(crate::query::Row {
            namespace: text(0)?,
            name: text(1)?,
            body,
            cells,
        })?;
    }
    let count = ids.len();
    Ok(PageMeta {
        resource_version,
        total: total as u64,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, Store, StoreConfig};

    /// SQLite's plan for a page request, one line per step.
    fn plan(store: &Store, request: &PageRequest) -> String {
        store
            .read(|tx| {
                let counted = counted_total(tx, "/v1/pods", request)?.is_some();
                let (_, sql, args) = page_sql(tx, "/v1/pods", request, counted)?;
                let mut stmt = tx.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let steps = stmt
                    .query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(3))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(steps.join("\n"))
            })
            .unwrap()
    }

    #[test]
    fn pages_newest_first_walk_a_creation_index_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("vai.db"), StoreConfig::default()).unwrap();
        store
            .write_blocking(Batch::new("/v1/pods").replace(1, Vec::<Vec<u8>>::new()))
            .unwrap();
        let sorted = |column, descending| PageRequest {
            sort: vec![SortKey {
                column,
                descending,
                case_insensitive: false,
            }],
            offset: 49_900,
            page_size: Some(100),
            ..Default::default()
        };
        let newest = plan(&store, &sorted(Column::CreationTimestamp, true));
        assert!(newest.contains("versions_by_created"), "{newest}");
        assert!(!newest.contains("TEMP B-TREE"), "{newest}");
        // One namespace's running pods, whose total is counted: a walk of that namespace's
        // entries only, to the page's end.
        let mut running = sorted(Column::CreationTimestamp, true);
        running.list.namespace = Some("team-01".into());
        running.filters = vec![Filter(vec![Condition {
            column: Column::Field("status.phase".into()),
            operator: Operator::Eq,
            values: vec!["Running".into()],
        }])];
        let namespaced = plan(&store, &running);
        assert!(
            namespaced.contains("versions_by_namespace_created"),
            "{namespaced}"
        );
        // (Pods created in the same second are put in name order among themselves.)
        assert!(
            !namespaced.contains("TEMP B-TREE FOR ORDER BY"),
            "{namespaced}"
        );
        // Any other order is sorted (and still correct: see the property tests).
        let oldest = plan(&store, &sorted(Column::CreationTimestamp, false));
        assert!(oldest.contains("TEMP B-TREE"), "{oldest}");
    }
}
