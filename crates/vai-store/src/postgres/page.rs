//! The query API on PostgreSQL: filters, multi-key sort, offset pages with the total, and
//! summaries, in one snapshot, with the SQLite file's semantics (absent values sort last,
//! comparisons on integers only where both sides are, columns a closed set the type indexes).
//!
//! Every value is a bound parameter. This module must never write.

use super::reads::{Params, Selection, Snapshot, attribute, bind, refs};
use crate::request::{
    Column, Condition, ItemSink, Operator, PageMeta, PageRequest, Row, Summary, indexed_names,
};
use crate::sql::list::evaluated_in;
use crate::sql::page::{check_columns, sorted_counts};
use crate::{Error, FieldSet, Result};

/// The SQL expression for a column of version `v`.
fn column_sql(column: &Column, args: &mut Params) -> String {
    match column {
        Column::Name => "v.name".into(),
        Column::Namespace => "v.namespace".into(),
        Column::CreationTimestamp => "v.created".into(),
        Column::Label(key) => attribute(&bind(args, key.clone())),
        Column::Field(name) => column_sql(
            &Column::Label(format!("{}{name}", crate::fields::PREFIX)),
            args,
        ),
    }
}

fn condition_sql(c: &Condition, args: &mut Params) -> Result<String> {
    let col = column_sql(&c.column, args);
    let one = |args: &mut Params| -> Result<String> {
        match c.values.as_slice() {
            [v] => Ok(bind(args, v.clone())),
            _ => Err(Error::InvalidSelector(format!(
                "{:?} on {:?} takes exactly one value",
                c.operator, c.column
            ))),
        }
    };
    Ok(match c.operator {
        Operator::Eq => format!("{col} = {}", one(args)?),
        Operator::NotEq => format!("({col} IS NULL OR {col} <> {})", one(args)?),
        Operator::Contains => format!("strpos({col}, {}) > 0", one(args)?),
        Operator::NotContains => format!("({col} IS NULL OR strpos({col}, {}) = 0)", one(args)?),
        Operator::In | Operator::NotIn => {
            if c.values.is_empty() {
                return Err(Error::InvalidSelector("an empty set of values".into()));
            }
            let p = bind(args, c.values.clone());
            if c.operator == Operator::In {
                format!("{col} = ANY({p})")
            } else {
                format!("({col} IS NULL OR NOT ({col} = ANY({p})))")
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
                // Integers compare as integers, on values in canonical integer form only.
                Ok(n) => {
                    let p = bind(args, n);
                    format!(
                        "(CASE WHEN {col} ~ '^(0|-?[1-9][0-9]{{0,17}})$' \
                         THEN {col}::bigint {op} {p} ELSE false END)"
                    )
                }
                Err(_) => format!("{col} {op} {}", bind(args, value.clone())),
            }
        }
        Operator::Exists => format!("{col} IS NOT NULL"),
        Operator::NotExists => format!("{col} IS NULL"),
    })
}

/// A page request's matching ids (the list's selection and the filters), before order and
/// cut.
fn filtered(
    snapshot: &Snapshot,
    resource: &str,
    request: &PageRequest,
    fields: &FieldSet,
) -> Result<Selection> {
    if let Some((field, ..)) = evaluated_in(fields, &request.list.fields).first() {
        return Err(Error::UnsupportedField(format!(
            "field {:?} is not indexed, so pages cannot select on it; indexed: {}",
            field.name,
            indexed_names(fields)
        )));
    }
    check_columns(
        fields,
        request
            .filters
            .iter()
            .flat_map(|f| f.0.iter())
            .map(|c| &c.column)
            .chain(request.sort.iter().map(|k| &k.column)),
    )?;
    let mut selection = snapshot.selection(resource, &request.list, fields, "v.id")?;
    for filter in &request.filters {
        let ors = filter
            .0
            .iter()
            .map(|c| condition_sql(c, &mut selection.args))
            .collect::<Result<Vec<_>>>()?;
        if !ors.is_empty() {
            selection.sql += &format!(" AND ({})", ors.join(" OR "));
        }
    }
    Ok(selection)
}

/// Runs a page request in one snapshot, in one statement: the matches counted, sorted and
/// cut, and the page's bodies (a page beyond the last counts the matches on its own).
pub(super) fn page(
    snapshot: &Snapshot,
    resource: &str,
    request: &PageRequest,
    each: &mut ItemSink,
) -> Result<PageMeta> {
    if request.list.continue_token.is_some() {
        return Err(Error::InvalidContinue(
            "pages use offsets and a resource version, not continue tokens".into(),
        ));
    }
    let fields = snapshot.known_fields(resource)?;
    let Selection { at, sql, mut args } = filtered(snapshot, resource, request, &fields)?;
    let tx = snapshot.tx();
    let mut order = Vec::new();
    for key in &request.sort {
        let mut col = column_sql(&key.column, &mut args);
        if key.case_insensitive {
            col = format!("lower({col})");
        }
        // Absent values sort last either way.
        order.push(format!("({}) IS NULL", column_sql(&key.column, &mut args)));
        order.push(format!(
            "{col} {}",
            if key.descending { "DESC" } else { "ASC" }
        ));
    }
    order.push("v.namespace".into());
    order.push("v.name".into());
    let offset = bind(&mut args, request.offset.min(i64::MAX as usize) as i64);
    let limit = match request.page_size {
        Some(size) => format!(
            " LIMIT {}",
            bind(&mut args, size.min(i64::MAX as usize) as i64)
        ),
        None => String::new(),
    };
    // `sql` is `SELECT v.id FROM …`: the matches are numbered in order and counted by one
    // scan, the page cut from them, and only its rows joined to their bodies.
    let matches = sql
        .strip_prefix("SELECT v.id ")
        .expect("a page's selection selects the ids of versions v");
    let rows = tx.query(
        &format!(
            "WITH page AS (
                 SELECT v.id, count(*) OVER () AS total,
                     row_number() OVER (ORDER BY {}) AS at
                 {matches} ORDER BY at OFFSET {offset}{limit})
             SELECT b.namespace, b.name, b.body, b.cells, page.total
             FROM page JOIN vai_versions b ON b.id = page.id ORDER BY page.at",
            order.join(", ")
        ),
        &refs(&args),
    )?;
    let total: i64 = match rows.first() {
        Some(r) => r.get(4),
        None => {
            let Selection { sql, args, .. } = filtered(snapshot, resource, request, &fields)?;
            tx.query_one(&format!("SELECT count(*) FROM ({sql}) s"), &refs(&args))?
                .get(0)
        }
    };
    for r in &rows {
        each(Row {
            namespace: r.get(0),
            name: r.get(1),
            body: r.get(2),
            cells: r.get(3),
        })?;
    }
    Ok(PageMeta {
        resource_version: at as u64,
        total: total as u64,
        count: rows.len(),
    })
}

/// Counts a page request's matches (all pages) per value of `column`; objects without it count
/// under `None`. Largest counts first, then by value.
pub(super) fn summary(
    snapshot: &Snapshot,
    resource: &str,
    request: &PageRequest,
    column: &Column,
) -> Result<Summary> {
    let fields = snapshot.known_fields(resource)?;
    check_columns(&fields, [column])?;
    let Selection { at, sql, mut args } = filtered(snapshot, resource, request, &fields)?;
    let value = column_sql(column, &mut args);
    let counts = snapshot
        .tx()
        .query(
            &format!(
                "SELECT {value}, count(*) FROM vai_versions v WHERE v.id IN ({sql}) GROUP BY 1"
            ),
            &refs(&args),
        )?
        .iter()
        .map(|r| (r.get::<_, Option<String>>(0), r.get::<_, i64>(1) as u64))
        .collect();
    Ok(Summary {
        resource_version: at as u64,
        counts: sorted_counts(counts),
    })
}
