//! Reads of one PostgreSQL snapshot (a `REPEATABLE READ READ ONLY` transaction): gets, list
//! parts with label and field selectors and continue tokens (the same tokens as the SQLite
//! file's), history replays, states, documents and counts.
//!
//! Every value is a bound parameter. This module must never write.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_postgres::types::ToSql;

use super::Tx;
use crate::backend::{Bound, ListPart, Reads};
use crate::object::StoredObject;
use crate::request::{
    Column, ItemSink, ListMeta, ListRequest, Pace, PacedSink, PageMeta, PageRequest, Row, Summary,
};
use crate::selector::{Field, FieldSelector, LabelRequirement, LabelSelector};
use crate::sql::list::{ContinueToken, evaluated_in, matches_evaluated, split_fields};
use crate::{
    Attributes, Document, Error, Event, EventKind, FieldSet, Footprint, Item, ResourceState,
    Result, SyncState,
};

/// The conditions that select the versions of one resource visible at a resource version
/// (`$1`: the resource's id, `$2`: the version).
const VISIBLE_AT: &str =
    "v.resource_id = $1 AND v.rv <= $2 AND (v.rv_to IS NULL OR v.rv_to > $2) AND v.kind != 2";

/// A resource type's row: its id and window.
struct ResourceRow {
    id: i64,
    last_rv: i64,
    compacted_rv: i64,
}

/// One snapshot.
pub(super) struct Snapshot<'a, 'b> {
    tx: Tx<'a, 'b>,
}

/// Parameters of a query built at run time.
pub(super) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

pub(super) fn bind(args: &mut Params, value: impl ToSql + Sync + Send + 'static) -> String {
    args.push(Box::new(value));
    format!("${}", args.len())
}

pub(super) fn refs(args: &Params) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl<'a, 'b> Snapshot<'a, 'b> {
    pub(super) fn new(tx: Tx<'a, 'b>) -> Self {
        Snapshot { tx }
    }

    fn resource_row(&self, resource: &str) -> Result<ResourceRow> {
        self.tx
            .query_opt(
                "SELECT id, last_rv, compacted_rv FROM vai_resources WHERE key = $1",
                &[&resource],
            )?
            .map(|r| ResourceRow {
                id: r.get(0),
                last_rv: r.get(1),
                compacted_rv: r.get(2),
            })
            .ok_or_else(|| Error::UnknownResource(resource.to_string()))
    }

    /// The type's fields as this snapshot records them (what its label rows reflect).
    pub(super) fn known_fields(&self, resource: &str) -> Result<FieldSet> {
        super::fields::stored(&self.tx, resource)
    }

    pub(super) fn tx(&self) -> &Tx<'a, 'b> {
        &self.tx
    }

    /// The `SELECT {columns} …` (columns of version `v`) of a list's selection — visibility
    /// at its snapshot, namespace, selectors, the continue position — without order or limit.
    /// Shared by lists and pages; `fields`: the type's, as [`Snapshot::known_fields`] read them.
    pub(super) fn selection(
        &self,
        resource: &str,
        request: &ListRequest,
        fields: &FieldSet,
        columns: &str,
    ) -> Result<Selection> {
        let row = self.resource_row(resource)?;
        let (at, after) = match &request.continue_token {
            Some(token) => {
                let (rv, after) = ContinueToken::resume(token, resource, row.compacted_rv as u64)?;
                (rv as i64, Some(after))
            }
            None => (
                request.resource_version.map_or(row.last_rv, |rv| rv as i64),
                None,
            ),
        };
        check_window(&row, at)?;
        let (columns_only, labels) = split_fields(fields, &request.fields, &request.labels)?;
        let mut args: Params = vec![Box::new(row.id), Box::new(at)];
        let mut sql = format!("SELECT {columns} FROM vai_versions v WHERE {VISIBLE_AT}");
        if let Some(ns) = &request.namespace {
            let p = bind(&mut args, ns.clone());
            sql += &format!(" AND v.namespace = {p}");
        }
        if let Some((ns, name)) = after {
            let (p1, p2) = (bind(&mut args, ns), bind(&mut args, name));
            sql += &format!(" AND (v.namespace, v.name) > ({p1}, {p2})");
        }
        push_fields(&mut sql, &mut args, &columns_only);
        push_labels(&mut sql, &mut args, &labels);
        Ok(Selection { at, sql, args })
    }
}

/// A list's selection as SQL (see [`Snapshot::selection`]).
pub(super) struct Selection {
    /// The snapshot's resource version.
    pub at: i64,
    /// `SELECT … WHERE …`, without order or limit.
    pub sql: String,
    /// Its parameters.
    pub args: Params,
}

/// Checks that `rv` can be answered exactly: inside the window, not in the future.
fn check_window(row: &ResourceRow, rv: i64) -> Result<()> {
    if rv < row.compacted_rv {
        return Err(Error::Gone {
            requested: rv as u64,
            oldest: row.compacted_rv as u64,
        });
    }
    if rv > row.last_rv {
        return Err(Error::TooLargeResourceVersion {
            requested: rv as u64,
            current: row.last_rv as u64,
        });
    }
    Ok(())
}

fn push_fields(sql: &mut String, args: &mut Params, fields: &FieldSelector) {
    for req in &fields.0 {
        let column = match req.field {
            Field::Name => "v.name",
            Field::Namespace => "v.namespace",
            Field::Other(_) => unreachable!("indexed fields are label requirements"),
        };
        let op = if req.negate { "<>" } else { "=" };
        let p = bind(args, req.value.clone());
        *sql += &format!(" AND {column} {op} {p}");
    }
}

/// A version's label or indexed field `key` (bound as `key`), compared bytewise.
pub(super) fn attribute(key: &str) -> String {
    format!("((v.attributes ->> {key}) COLLATE \"C\")")
}

/// Label requirements (and field requirements on indexed fields, `#`-prefixed keys) on the
/// version's `attributes`. Equality is containment, which the inverted index serves.
fn push_labels(sql: &mut String, args: &mut Params, labels: &LabelSelector) {
    for req in &labels.0 {
        let condition = match req {
            LabelRequirement::Exists(k) | LabelRequirement::NotExists(k) => {
                let not = if matches!(req, LabelRequirement::NotExists(_)) {
                    "NOT "
                } else {
                    ""
                };
                format!("{not}(v.attributes ? {})", bind(args, k.clone()))
            }
            LabelRequirement::In(k, values) => {
                let contains: Vec<String> = values
                    .iter()
                    .map(|value| {
                        let one = serde_json::json!({ k.as_str(): value }).to_string();
                        format!("v.attributes @> {}::text::jsonb", bind(args, one))
                    })
                    .collect();
                if contains.is_empty() {
                    "false".to_string()
                } else {
                    format!("({})", contains.join(" OR "))
                }
            }
            LabelRequirement::NotIn(k, values) => {
                let value = attribute(&bind(args, k.clone()));
                let p = bind(args, values.clone());
                format!("NOT coalesce({value} = ANY({p}), false)")
            }
            LabelRequirement::GreaterThan(k, n) | LabelRequirement::LessThan(k, n) => {
                let op = if matches!(req, LabelRequirement::GreaterThan(..)) {
                    ">"
                } else {
                    "<"
                };
                let value = attribute(&bind(args, k.clone()));
                let p = bind(args, *n);
                // Only integer values take part, as upstream (canonical form: no plus sign,
                // no leading zeros).
                format!(
                    "(CASE WHEN {value} ~ '^(0|-?[1-9][0-9]{{0,17}})$' \
                     THEN {value}::bigint {op} {p} ELSE false END)"
                )
            }
        };
        *sql += &format!(" AND {condition}");
    }
}

impl Reads for Snapshot<'_, '_> {
    fn document(&self, key: &str) -> Result<Option<Document>> {
        Ok(self
            .tx
            .query_opt(
                "SELECT key, content_type, body FROM vai_documents WHERE key = $1",
                &[&key],
            )?
            .map(|r| Document {
                key: r.get(0),
                content_type: r.get(1),
                body: r.get(2),
            }))
    }

    fn get_row(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<Option<Item>> {
        // The type's window and the object in one statement (a read is a round trip each).
        let at = resource_version.map(|rv| rv as i64);
        let found = self
            .tx
            .query_opt(
                "SELECT r.id, r.last_rv, r.compacted_rv, o.body, o.cells
                 FROM vai_resources r LEFT JOIN LATERAL (
                     SELECT v.body, v.cells FROM vai_versions v
                     WHERE v.resource_id = r.id AND v.namespace = $3 AND v.name = $4
                         AND v.rv <= coalesce($2, r.last_rv)
                         AND (v.rv_to IS NULL OR v.rv_to > coalesce($2, r.last_rv))
                         AND v.kind != 2) o ON true
                 WHERE r.key = $1",
                &[&resource, &at, &namespace, &name],
            )?
            .ok_or_else(|| Error::UnknownResource(resource.to_string()))?;
        let row = ResourceRow {
            id: found.get(0),
            last_rv: found.get(1),
            compacted_rv: found.get(2),
        };
        check_window(&row, at.unwrap_or(row.last_rv))?;
        Ok(found.get::<_, Option<Vec<u8>>>(3).map(|object| Item {
            object,
            cells: found.get(4),
        }))
    }

    fn resource_states(&self) -> Result<Vec<ResourceState>> {
        Ok(self
            .tx
            .query(
                "SELECT key, list_rv, last_rv, compacted_rv, last_contact_ms, last_error, state
             FROM vai_resources ORDER BY key",
                &[],
            )?
            .into_iter()
            .map(|r| ResourceState {
                resource: r.get(0),
                list_resource_version: r.get::<_, Option<i64>>(1).map(|v| v as u64),
                last_resource_version: r.get::<_, i64>(2) as u64,
                oldest_resource_version: r.get::<_, i64>(3) as u64,
                last_contact_ms: r.get(4),
                last_error: r.get(5),
                state: SyncState::parse(r.get::<_, &str>(6)),
            })
            .collect())
    }

    fn count(&self, resource: &str) -> Result<u64> {
        let row = match self.resource_row(resource) {
            Ok(row) => row,
            Err(Error::UnknownResource(_)) => return Ok(0),
            Err(e) => return Err(e),
        };
        Ok(self
            .tx
            .query_one(
                "SELECT count(*) FROM vai_versions
             WHERE resource_id = $1 AND rv_to IS NULL AND kind != 2 AND rv <= $2",
                &[&row.id, &row.last_rv],
            )?
            .get::<_, i64>(0) as u64)
    }

    fn fields(&self, resource: &str) -> Result<FieldSet> {
        self.known_fields(resource)
    }

    fn has_data(&self, resource: &str) -> Result<bool> {
        Ok(self
            .tx
            .query_opt(
                "SELECT EXISTS (SELECT 1 FROM vai_versions
                            WHERE resource_id = r.id AND rv <= r.last_rv)
                    OR r.list_rv IS NOT NULL
             FROM vai_resources r WHERE r.key = $1",
                &[&resource],
            )?
            .is_some_and(|r| r.get(0)))
    }

    fn unchanged(&self, resource: &str, objects: &[StoredObject]) -> Result<Vec<bool>> {
        let row = self.resource_row(resource)?;
        let namespaces: Vec<&str> = objects.iter().map(|o| o.namespace.as_str()).collect();
        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        // One round trip for the chunk: the stored bodies of its keys.
        let stored: std::collections::HashMap<(String, String), Vec<u8>> = self
            .tx
            .query(
                "SELECT v.namespace, v.name, v.body
             FROM unnest($2::text[], $3::text[]) AS k(namespace, name)
             JOIN vai_versions v ON v.resource_id = $1 AND v.namespace = k.namespace
                 AND v.name = k.name AND v.rv_to IS NULL AND v.kind != 2",
                &[&row.id, &namespaces, &names],
            )?
            .into_iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect();
        Ok(objects
            .iter()
            .map(|o| {
                stored
                    .get(&(o.namespace.clone(), o.name.clone()))
                    .is_some_and(|body| *body == o.body)
            })
            .collect())
    }

    fn list_part(
        &self,
        resource: &str,
        request: &ListRequest,
        bound: &Bound,
        each: &mut PacedSink,
    ) -> Result<ListPart> {
        let fields = self.known_fields(resource)?;
        let evaluated = evaluated_in(&fields, &request.fields);
        let Selection {
            at,
            mut sql,
            mut args,
        } = self.selection(
            resource,
            request,
            &fields,
            "v.namespace, v.name, v.body, v.cells",
        )?;
        sql += " ORDER BY v.namespace, v.name";
        // A part reads at most what its bound lets it serve, plus the row that says whether a
        // continue token is owed; rows that fail an evaluated field are skipped, so then the
        // part reads until its bound in time instead.
        let wanted = request.limit.map_or(bound.items, |l| l.min(bound.items)) as i64 + 1;
        if evaluated.is_empty() {
            let p = bind(&mut args, wanted);
            sql += &format!(" LIMIT {p}");
        }
        let rows = self.tx.query(&sql, &refs(&args))?;
        let mut count = 0;
        let mut last_key: Option<(String, String)> = None;
        let mut continue_token = None;
        let mut resume = None;
        let token = |ns: &str, n: &str| {
            ContinueToken {
                r: resource.to_string(),
                rv: at as u64,
                ns: ns.to_string(),
                n: n.to_string(),
            }
            .encode()
        };
        for r in &rows {
            let (ns, name): (&str, &str) = (r.get(0), r.get(1));
            let body: &[u8] = r.get(2);
            if !evaluated.is_empty() && !matches_evaluated(&evaluated, body) {
                continue;
            }
            if request.limit == Some(count) {
                let (ns, n) = last_key.take().expect("a full page has a last key");
                continue_token = Some(token(&ns, &n));
                break;
            }
            let pace = each(Row {
                namespace: ns,
                name,
                body,
                cells: r.get::<_, Option<&[u8]>>(3),
            })?;
            count += 1;
            if request.limit.is_some() {
                last_key = Some((ns.to_string(), name.to_string()));
            }
            // The part's rows are already read (one query), and a PostgreSQL snapshot holds no
            // writer back: only the sink and the item bound end a part here. (The file's time
            // bound cut a part after its first row whenever the query itself took longer:
            // a 2,000-pod list read in 2,000 parts of a 130 ms query each.)
            let stop = pace == Pace::Yield || count >= bound.items;
            if stop && request.limit != Some(count) {
                resume = Some(token(ns, name));
                break;
            }
        }
        // Evaluated fields read without a limit; a limited read that came back short of its
        // limit without a stop has listed everything.
        Ok(ListPart {
            meta: ListMeta {
                resource_version: at as u64,
                continue_token,
                count,
            },
            resume,
        })
    }

    fn page(&self, resource: &str, request: &PageRequest, each: &mut ItemSink) -> Result<PageMeta> {
        super::page::page(self, resource, request, each)
    }

    fn summary(&self, resource: &str, request: &PageRequest, column: &Column) -> Result<Summary> {
        super::page::summary(self, resource, request, column)
    }

    fn events_since(&self, resource: &str, resource_version: u64) -> Result<Vec<Event>> {
        let row = self.resource_row(resource)?;
        let rv = resource_version as i64;
        if rv < row.compacted_rv {
            return Err(Error::Gone {
                requested: resource_version,
                oldest: row.compacted_rv as u64,
            });
        }
        let type_name: Arc<str> = resource.into();
        let fields = self.known_fields(resource)?;
        // Rows above the last resource version belong to a list still being staged.
        self.tx
            .query(
                "SELECT v.seq, v.kind, v.rv, v.namespace, v.name, v.body, v.cells, v.created,
                 v.attributes::text
             FROM vai_versions v
             WHERE v.resource_id = $1 AND v.rv > $2 AND v.rv <= $3 ORDER BY v.rv, v.seq",
                &[&row.id, &rv, &row.last_rv],
            )?
            .into_iter()
            .map(|r| {
                let kind = EventKind::from_i64(r.get::<_, i16>(1).into());
                let body: Vec<u8> = r.get(5);
                // A tombstone keeps no attributes: they are read from its body.
                let attributes = if kind == EventKind::Deleted {
                    Attributes::read(&fields, &body).unwrap_or_default()
                } else {
                    Attributes::from_label_json(r.get::<_, Option<&str>>(8), r.get(7))
                };
                Ok(Event {
                    resource: type_name.clone(),
                    seq: r.get::<_, i64>(0) as u64,
                    kind,
                    resource_version: r.get::<_, i64>(2) as u64,
                    namespace: r.get(3),
                    name: r.get(4),
                    body: body.into(),
                    cells: r.get::<_, Option<Vec<u8>>>(6).map(Into::into),
                    attributes: Arc::new(attributes),
                })
            })
            .collect()
    }

    /// Stored bytes as PostgreSQL keeps them (`pg_column_size`: after TOAST's own
    /// compression of large values), plain bytes as the JSON's length.
    fn footprint(&self) -> Result<BTreeMap<String, Footprint>> {
        Ok(self
            .tx
            .query(
                "SELECT r.key, count(*), sum(pg_column_size(v.body))::bigint,
                 sum(octet_length(v.body))::bigint
             FROM vai_versions v JOIN vai_resources r ON r.id = v.resource_id
             GROUP BY r.key",
                &[],
            )?
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    Footprint {
                        versions: r.get::<_, i64>(1) as u64,
                        stored_bytes: r.get::<_, i64>(2) as u64,
                        plain_bytes: Some(r.get::<_, i64>(3) as u64),
                    },
                )
            })
            .collect())
    }

    /// The store's own invariants: at most one current row per key, and no sequence number
    /// twice.
    fn check_integrity(&self) -> Result<()> {
        let bad: i64 = self
            .tx
            .query_one(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM vai_versions WHERE rv_to IS NULL
                      GROUP BY resource_id, namespace, name HAVING count(*) > 1) c)
                  + (SELECT count(*) FROM (SELECT 1 FROM vai_versions
                      GROUP BY seq HAVING count(*) > 1) s)
                  + (SELECT count(*) FROM vai_resources r WHERE r.history_rows <>
                      (SELECT count(*) FROM vai_versions v
                       WHERE v.resource_id = r.id AND v.prune_rv IS NOT NULL))",
                &[],
            )?
            .get(0);
        if bad == 0 {
            Ok(())
        } else {
            Err(Error::Corrupt(format!(
                "the PostgreSQL store: {bad} keys or sequence numbers held twice, or types whose count of history rows is wrong"
            )))
        }
    }
}
