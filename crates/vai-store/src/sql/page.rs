//! The query API's SQL, for UIs: filters (equality, inequality, substring, sets,
//! comparisons, label existence), multi-key sort, offset pages with the total count, and
//! summaries, at the latest state or as of a resource version — all evaluated in SQL, in one
//! snapshot.
//!
//! Columns are a closed set ([`Column`]): the always-indexed metadata fields, labels, and the
//! type's indexed fields (pods' `spec.nodeName`, `status.phase`, fields CRDs declare, configured
//! ones; see [`crate::fields`]). This module must never accept a column its snapshot does not
//! index.

use rusqlite::Transaction;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use crate::request::{
    Column, Condition, Filter, ItemSink, ListRequest, Operator, PageMeta, PageRequest, Row,
    SortKey, Summary, indexed_names, not_indexed,
};
use crate::sealed::{Part, Place, Sealer};
use crate::{Error, FieldSet, Result};

/// The SQL expression for a column of version `v`; binds a label key if needed.
pub(crate) fn column_sql(column: &Column, bind: &mut dyn FnMut(Value) -> String) -> String {
    match column {
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
            None => column_sql(
                &Column::Label(format!("{}{name}", crate::fields::PREFIX)),
                bind,
            ),
        },
    }
}

/// Refuses columns naming fields this snapshot does not index (a request parsed against the
/// registry just before a field went): they would read as absent everywhere.
pub(crate) fn check_columns<'a>(
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

fn condition_sql(c: &Condition, bind: &mut dyn FnMut(Value) -> String) -> Result<String> {
    let col = column_sql(&c.column, bind);
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
        super::list::evaluated_fields(tx, resource, &request.list.fields)?.first()
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
    let super::list::Selection {
        at: resource_version,
        sql: base_sql,
        mut args,
        ..
    } = super::list::selection_sql(tx, resource, &request.list, "v.id", scan)?;
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
        let row = super::resource_row(tx, resource)?;
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
        filtered_sql(tx, resource, request, super::BY_KEY)?;
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
            let rid = super::resource_row(tx, resource)?.id;
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
            let value = column_sql(column, &mut |v: Value| bind(&mut args, v));
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
pub(crate) fn sorted_counts(mut counts: Vec<(Option<String>, u64)>) -> Vec<(Option<String>, u64)> {
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
    let rid = super::resource_row(tx, resource)?.id;
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
        (true, Some(_)) => super::NEWEST_FIRST_IN_NAMESPACE,
        (true, None) => super::NEWEST_FIRST,
        (false, _) => super::BY_KEY,
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
            let mut col = column_sql(&key.column, &mut bind);
            if key.case_insensitive {
                col = format!("{col} COLLATE NOCASE");
            }
            // Absent values sort last either way.
            order.push(format!("({}) IS NULL", column_sql(&key.column, &mut bind)));
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
    sealer: &Sealer,
    resource: &str,
    request: &PageRequest,
    each: &mut ItemSink,
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
        let place = Place {
            resource,
            namespace: text(0)?,
            name: text(1)?,
        };
        let body = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        let body = sealer.open(place, Part::Body, body)?;
        let cells = r
            .get_ref(3)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?;
        let cells = sealer.open_opt(place, Part::Cells, cells)?;
        each(Row {
            namespace: place.namespace,
            name: place.name,
            body: &body,
            cells: cells.as_deref(),
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

    /// SQLite's plan for a page request, one line per step (read on a connection of its own
    /// to the store's file).
    fn plan(store: &Store, request: &PageRequest) -> String {
        let mut conn = crate::schema::open_reader(store.path()).unwrap();
        let tx = conn.transaction().unwrap();
        let counted = counted_total(&tx, "/v1/pods", request).unwrap().is_some();
        let (_, sql, args) = page_sql(&tx, "/v1/pods", request, counted).unwrap();
        let mut stmt = tx.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps = stmt
            .query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        steps.join("\n")
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
