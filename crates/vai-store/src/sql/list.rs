//! Lists and gets: selectors, `limit`/`continue`, "as of" a resource version, and the
//! selection SQL pages reuse.
//!
//! This module must never decide what a request means (that is `crate::request`'s and
//! [`crate::selector`]'s); it only compiles it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};
use serde::{Deserialize, Serialize};

use super::{BY_KEY, VISIBLE_AT, check_window, resource_row};
use std::time::Instant;

use crate::backend::{Bound, ListPart};
use crate::request::{ListMeta, ListRequest, Pace, PacedSink, Row};
use crate::sealed::{Part, Place, Sealer};
use crate::selector::{Field, FieldSelector, LabelRequirement, LabelSelector};
use crate::{Error, Result};

/// The state of a list chain, carried by its continue token: which resource, at which
/// snapshot, after which key.
#[derive(Serialize, Deserialize)]
pub(crate) struct ContinueToken {
    pub r: String,
    pub rv: u64,
    pub ns: String,
    pub n: String,
}

impl ContinueToken {
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("token serialises"))
    }

    /// Where a list continues (its snapshot's version and the last key served), from a token
    /// given for `resource`, whose window starts at `compacted_rv` (any engine's): a token of
    /// another type is refused, one whose snapshot left the window has [`Error::Expired`].
    pub(crate) fn resume(
        token: &str,
        resource: &str,
        compacted_rv: u64,
    ) -> Result<(u64, (String, String))> {
        let token = ContinueToken::decode(token)?;
        if token.r != resource {
            return Err(Error::InvalidContinue(format!(
                "the token belongs to {}, not {resource}",
                token.r
            )));
        }
        if token.rv < compacted_rv {
            return Err(Error::Expired);
        }
        Ok((token.rv, (token.ns, token.n)))
    }

    fn decode(token: &str) -> Result<ContinueToken> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Error::InvalidContinue("not a continue token".into()))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| Error::InvalidContinue("not a continue token".into()))
    }
}

/// When a label requirement that must hold (`k=v`, `k in (…)`) matches few versions, the list
/// is driven from the label index instead of scanning keys: read those versions, then sort
/// them. Few: at most this many times the page size (or any number for an unlimited list,
/// which reads every row otherwise), up to `DRIVE_BY_LABEL_MAX` rows.
const DRIVE_BY_LABEL_PER_PAGE_ITEM: u64 = 10;
const DRIVE_BY_LABEL_MAX: u64 = 200_000;

/// The most selective positive label requirement, and how many label rows (versions, all
/// history included) it matches.
/// Counting stops at `cap`: past it the exact number does not matter, and counting a label
/// that a third of all objects carry would cost more than the page.
fn most_selective_label<'a>(
    tx: &Transaction,
    resource_id: i64,
    labels: &'a LabelSelector,
    cap: u64,
) -> Result<Option<(&'a String, &'a Vec<String>, u64)>> {
    let mut best: Option<(&String, &Vec<String>, u64)> = None;
    let mut count = tx.prepare_cached(
        "SELECT count(*) FROM (SELECT 1 FROM labels
         WHERE resource_id = ?1 AND key = ?2 AND value = ?3 LIMIT ?4)",
    )?;
    for req in &labels.0 {
        if let LabelRequirement::In(key, values) = req {
            let mut matched = 0u64;
            for value in values {
                matched += count
                    .query_row(params![resource_id, key, value, cap as i64 + 1], |r| {
                        r.get::<_, i64>(0)
                    })? as u64;
            }
            if best.is_none_or(|(_, _, m)| matched < m) {
                best = Some((key, values, matched));
            }
        }
    }
    Ok(best)
}

/// Gets one object at `rv` (`None`: latest).
pub(crate) fn get(
    tx: &Transaction,
    sealer: &Sealer,
    resource: &str,
    namespace: &str,
    name: &str,
    rv: Option<u64>,
) -> Result<Option<crate::Item>> {
    let row = resource_row(tx, resource)?;
    let at = rv.unwrap_or(row.last_rv);
    check_window(&row, at)?;
    let stored: Option<(Vec<u8>, Option<Vec<u8>>)> = tx
        .prepare_cached(&format!(
            "SELECT v.body, v.cells FROM {BY_KEY} WHERE {VISIBLE_AT} AND v.namespace = ?3 AND v.name = ?4"
        ))?
        .query_row(params![row.id, at as i64, namespace, name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((body, cells)) = stored else {
        return Ok(None);
    };
    let place = Place {
        resource,
        namespace,
        name,
    };
    Ok(Some(crate::Item {
        object: sealer.open(place, Part::Body, &body)?.into_owned(),
        cells: sealer
            .open_opt(place, Part::Cells, cells.as_deref())?
            .map(std::borrow::Cow::into_owned),
    }))
}

/// Lists objects in Kubernetes key order, calling `each` per item, until the request's limit
/// or `bound` (or the sink's [`Pace::Yield`]) stops it.
pub(crate) fn list_part(
    tx: &Transaction,
    sealer: &Sealer,
    resource: &str,
    request: &ListRequest,
    bound: &Bound,
    each: &mut PacedSink,
) -> Result<ListPart> {
    let Selection {
        at,
        mut sql,
        mut args,
        driven,
    } = selection_sql(
        tx,
        resource,
        request,
        "v.namespace, v.name, v.body, v.cells",
        BY_KEY,
    )?;
    sql += " ORDER BY v.namespace, v.name";
    // Fields that are selectable but not indexed are checked on each object read, so the SQL
    // cannot know how many rows a page needs.
    let evaluated = evaluated_fields(tx, resource, &request.fields)?;
    if let Some(limit) = request.limit.filter(|_| evaluated.is_empty()) {
        args.push(Value::Integer(limit as i64 + 1));
        sql += &format!(" LIMIT ?{}", args.len());
    }

    let mut stmt = tx.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut count = 0;
    let mut last_key: Option<(String, String)> = None;
    let mut continue_token = None;
    let mut resume = None;
    while let Some(r) = rows.next()? {
        let text = |i: usize| -> Result<&str> {
            Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
        };
        let (ns, name) = (text(0)?, text(1)?);
        let place = Place {
            resource,
            namespace: ns,
            name,
        };
        let body = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        let body = sealer.open(place, Part::Body, body)?;
        if !evaluated.is_empty() && !matches_evaluated(&evaluated, &body) {
            continue;
        }
        if request.limit == Some(count) {
            let (ns, n) = last_key.take().expect("a full page has a last key");
            continue_token = Some(
                ContinueToken {
                    r: resource.to_string(),
                    rv: at,
                    ns,
                    n,
                }
                .encode(),
            );
            break;
        }
        let cells = r
            .get_ref(3)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?;
        let cells = sealer.open_opt(place, Part::Cells, cells)?;
        let pace = each(Row {
            namespace: ns,
            name,
            body: &body,
            cells: cells.as_deref(),
        })?;
        count += 1;
        if request.limit.is_some() {
            last_key = Some((ns.to_string(), name.to_string()));
        }
        // At the limit, the next row says whether a continue token is owed: not a place to stop.
        // A list driven by a label sorts what the label selects: a part after this one
        // would select and sort it all again, so such a list is one read (a slow client of it
        // holds its snapshot, as every list did before parts).
        let stop = !driven
            && (pace == Pace::Yield || count >= bound.items || Instant::now() >= bound.until);
        if stop && request.limit != Some(count) {
            // Whether more follow is for the next read to find.
            let token = ContinueToken {
                r: resource.to_string(),
                rv: at,
                ns: ns.to_string(),
                n: name.to_string(),
            };
            resume = Some(token.encode());
            break;
        }
    }
    Ok(ListPart {
        meta: ListMeta {
            resource_version: at,
            continue_token,
            count,
        },
        resume,
    })
}

/// A list's selection as SQL (see [`selection_sql`]).
pub(crate) struct Selection {
    /// The snapshot's resource version.
    pub at: u64,
    /// `SELECT … WHERE …`, without order or limit.
    pub sql: String,
    /// Its parameters.
    pub args: Vec<Value>,
    /// Whether a label drives it (the rows come from the label index, to be sorted).
    pub driven: bool,
}

/// The `SELECT {columns} …` (columns of version `v`) of a list's selection — visibility at its
/// snapshot, namespace, selectors, the continue position — without order or limit, with its
/// parameters and the snapshot's resource version. Shared by lists and pages. `scan` is the
/// index walked ([`BY_KEY`], [`NEWEST_FIRST`]) unless a label drives the selection.
pub(crate) fn selection_sql(
    tx: &Transaction,
    resource: &str,
    request: &ListRequest,
    columns: &str,
    scan: &str,
) -> Result<Selection> {
    let row = resource_row(tx, resource)?;
    let (at, after) = match &request.continue_token {
        Some(token) => {
            let (rv, after) = ContinueToken::resume(token, resource, row.compacted_rv)?;
            (rv, Some(after))
        }
        None => (request.resource_version.unwrap_or(row.last_rv), None),
    };
    check_window(&row, at)?;
    let mut args: Vec<Value> = vec![Value::Integer(row.id), Value::Integer(at as i64)];
    let mut bind = |args: &mut Vec<Value>, v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    // Indexed fields live in the label table: their requirements join the label selector's
    // (and may drive the plan); metadata.name/namespace are columns.
    let (columns_only, labels) = with_field_labels(tx, resource, &request.fields, &request.labels)?;
    let cap = request.limit.map_or(DRIVE_BY_LABEL_MAX, |limit| {
        (limit as u64 * DRIVE_BY_LABEL_PER_PAGE_ITEM).min(DRIVE_BY_LABEL_MAX)
    });
    let drive =
        most_selective_label(tx, row.id, &labels, cap)?.filter(|(_, _, matched)| *matched <= cap);
    let driven = drive.is_some();
    let mut sql = match drive {
        // CROSS JOIN keeps the label index as the outer loop.
        Some((key, values, _)) => {
            let key = bind(&mut args, Value::Text(key.clone()));
            let values: Vec<String> = values
                .iter()
                .map(|v| bind(&mut args, Value::Text(v.clone())))
                .collect();
            format!(
                "SELECT {columns} FROM labels d CROSS JOIN versions v ON v.id = d.version_id
                 WHERE d.resource_id = ?1 AND d.key = {key} AND d.value IN ({}) AND {VISIBLE_AT}",
                values.join(", ")
            )
        }
        None => format!("SELECT {columns} FROM {scan} WHERE {VISIBLE_AT}"),
    };
    if let Some(ns) = &request.namespace {
        let p = bind(&mut args, Value::Text(ns.clone()));
        sql += &format!(" AND v.namespace = {p}");
    }
    if let Some((ns, name)) = after {
        let (p1, p2) = (
            bind(&mut args, Value::Text(ns)),
            bind(&mut args, Value::Text(name)),
        );
        sql += &format!(" AND (v.namespace, v.name) > ({p1}, {p2})");
    }
    push_fields(&mut sql, &mut args, &columns_only, &mut bind);
    push_labels(&mut sql, &mut args, &labels, &mut bind);
    Ok(Selection {
        at,
        sql,
        args,
        driven,
    })
}

type Bind<'a> = dyn FnMut(&mut Vec<Value>, Value) -> String + 'a;

/// The fields of `resource` in this snapshot, read when a selector names one (see
/// `crate::registry`).
fn snapshot_fields(
    tx: &Transaction,
    resource: &str,
    fields: &FieldSelector,
) -> Result<crate::FieldSet> {
    if fields.0.iter().any(|r| matches!(r.field, Field::Other(_))) {
        crate::registry::stored(tx, resource)
    } else {
        Ok(crate::FieldSet::default())
    }
}

/// Splits a field selector into its requirements on columns (name, namespace) and label
/// requirements for indexed fields, added to `labels`. A field the type does not select on is
/// refused as upstream refuses it.
fn with_field_labels(
    tx: &Transaction,
    resource: &str,
    fields: &FieldSelector,
    labels: &LabelSelector,
) -> Result<(FieldSelector, LabelSelector)> {
    split_fields(&snapshot_fields(tx, resource, fields)?, fields, labels)
}

/// [`with_field_labels`] with the type's fields given (any engine's).
pub(crate) fn split_fields(
    known: &crate::FieldSet,
    fields: &FieldSelector,
    labels: &LabelSelector,
) -> Result<(FieldSelector, LabelSelector)> {
    let mut columns = FieldSelector::default();
    let mut labels = labels.clone();
    for req in &fields.0 {
        match &req.field {
            Field::Name | Field::Namespace => columns.0.push(req.clone()),
            Field::Other(name) => {
                let field = known.selectable(name).ok_or_else(|| {
                    Error::UnsupportedField(format!("field label not supported: {name}"))
                })?;
                if !field.indexed {
                    // Checked on each object read (see `evaluated_fields`).
                    continue;
                }
                let values = vec![req.value.clone()];
                labels.0.push(if req.negate {
                    LabelRequirement::NotIn(field.key(), values)
                } else {
                    LabelRequirement::In(field.key(), values)
                });
            }
        }
    }
    Ok((columns, labels))
}

/// The requirements of a field selector on selectable fields the store does not index.
pub(crate) fn evaluated_fields(
    tx: &Transaction,
    resource: &str,
    fields: &FieldSelector,
) -> Result<Vec<EvaluatedField>> {
    Ok(evaluated_in(
        &snapshot_fields(tx, resource, fields)?,
        fields,
    ))
}

/// A requirement on a field checked on each object read: the field, negated, the value.
pub(crate) type EvaluatedField = (crate::fields::IndexedField, bool, String);

/// [`evaluated_fields`] with the type's fields given (any engine's).
pub(crate) fn evaluated_in(known: &crate::FieldSet, fields: &FieldSelector) -> Vec<EvaluatedField> {
    fields
        .0
        .iter()
        .filter_map(|req| match &req.field {
            Field::Other(name) => known
                .selectable(name)
                .filter(|f| !f.indexed)
                .map(|f| (f.clone(), req.negate, req.value.clone())),
            _ => None,
        })
        .collect()
}

pub(crate) fn matches_evaluated(evaluated: &[EvaluatedField], body: &[u8]) -> bool {
    let object: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    evaluated.iter().all(|(field, negate, value)| {
        crate::matching::evaluated_holds(field, *negate, value, &object)
    })
}

fn push_fields(sql: &mut String, args: &mut Vec<Value>, fields: &FieldSelector, bind: &mut Bind) {
    for req in &fields.0 {
        let column = match req.field {
            Field::Name => "v.name",
            Field::Namespace => "v.namespace",
            Field::Other(_) => unreachable!("indexed fields are label requirements"),
        };
        let op = if req.negate { "!=" } else { "=" };
        let p = bind(args, Value::Text(req.value.clone()));
        *sql += &format!(" AND {column} {op} {p}");
    }
}

fn push_labels(sql: &mut String, args: &mut Vec<Value>, labels: &LabelSelector, bind: &mut Bind) {
    const LABEL: &str = "SELECT 1 FROM labels l WHERE l.version_id = v.id";
    for req in &labels.0 {
        let (negate, key, condition) = match req {
            LabelRequirement::Exists(k) => (false, k, String::new()),
            LabelRequirement::NotExists(k) => (true, k, String::new()),
            LabelRequirement::In(k, values) | LabelRequirement::NotIn(k, values) => {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| bind(args, Value::Text(v.clone())))
                    .collect();
                let negate = matches!(req, LabelRequirement::NotIn(..));
                (negate, k, format!(" AND l.value IN ({})", list.join(", ")))
            }
            LabelRequirement::GreaterThan(k, n) | LabelRequirement::LessThan(k, n) => {
                let op = if matches!(req, LabelRequirement::GreaterThan(..)) {
                    ">"
                } else {
                    "<"
                };
                let p = bind(args, Value::Integer(*n));
                // Only integer values take part, as upstream (canonical form: no sign, no
                // leading zeros).
                let condition = format!(
                    " AND CAST(CAST(l.value AS INTEGER) AS TEXT) = l.value \
                     AND CAST(l.value AS INTEGER) {op} {p}"
                );
                (false, k, condition)
            }
        };
        let key = bind(args, Value::Text(key.clone()));
        let not = if negate { "NOT " } else { "" };
        *sql += &format!(" AND {not}EXISTS ({LABEL} AND l.key = {key}{condition})");
    }
}
