//! List, get and watch on cached types, answered from the store with the apiserver's semantics.
//!
//! Lists stream: items go out as the store reads them, so memory stays flat whatever the list
//! size (the list's `metadata` comes after its items; JSON clients do not mind the order).
//! Resource versions are upstream's: `resourceVersion` unset or `0` is the newest the cache
//! has; a value with `NotOlderThan` (or no match) waits briefly for the cache to reach it, then
//! answers `504`; `Exact` serves that snapshot from history or `410`. Watches replay history
//! from their resource version and then follow live events; too old is an `ERROR` event with
//! `410`, as upstream sends.
//!
//! A field selector on a field the type does not have (see [`vai_store::fields`]: built in,
//! declared by its CRD, configured) is proxied to upstream while it answers, and refused as
//! upstream refuses it while it does not.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use vai_store::selector::Field;
use vai_store::{
    Event, EventKind, FieldSelector, FieldSet, LabelSelector, ListRequest, StoredObject,
};
use vai_sync::ResourceInfo;

use crate::path::ResourcePath;
use crate::query::Query;
use crate::table::{Include, TableForm};
use crate::{ApiError, App, freshness};
use vai_sync::discovery::table_columns_key;

/// What `serve` did.
pub(crate) enum Outcome {
    /// Answered (the verb, for metrics).
    Served(&'static str, Response),
    /// Better answered by upstream (an unindexed field selector, a type not synced yet).
    Proxy,
}

/// The query parameters of list, get and watch.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    resource_version: Option<String>,
    resource_version_match: Option<String>,
    watch: Option<String>,
    allow_watch_bookmarks: Option<String>,
    timeout_seconds: Option<String>,
    send_initial_events: Option<String>,
    include_object: Option<String>,
}

fn flag(value: &Option<String>) -> Result<Option<bool>, ApiError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid boolean value {other:?}"
        ))),
    }
}

fn number(name: &str, value: &Option<String>) -> Result<Option<u64>, ApiError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid {name} {v:?}"))),
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

/// The representation a client asked for.
#[derive(Debug, Clone)]
enum Form {
    /// Whole objects.
    Full,
    /// `PartialObjectMetadata`: kind, apiVersion and metadata only.
    Metadata,
    /// A `Table` (what kubectl asks for).
    Table(Arc<TableForm>),
}

/// Picks the first acceptable media type in `Accept`. Tables need the type's column definitions,
/// which sync stores from upstream (`columns`); without them a client's JSON fallback is used.
fn negotiate(
    headers: &HeaderMap,
    include: Include,
    columns: impl FnOnce() -> Option<Vec<u8>>,
) -> Result<Form, ApiError> {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if accept.is_empty() {
        return Ok(Form::Full);
    }
    let mut columns = Some(columns);
    let mut stored = None;
    for media in &accept {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or("");
        let params: Vec<&str> = parts.collect();
        if !matches!(base, "application/json" | "application/*" | "*/*") {
            continue;
        }
        let param = |name: &str| {
            params
                .iter()
                .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        };
        match param("as") {
            None => return Ok(Form::Full),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                return Ok(Form::Metadata);
            }
            Some("Table") if param("g") == Some("meta.k8s.io") => {
                let api_version = match param("v") {
                    Some("v1") => "meta.k8s.io/v1",
                    Some("v1beta1") => "meta.k8s.io/v1beta1",
                    _ => continue,
                };
                if let Some(load) = columns.take() {
                    stored = load();
                }
                if let Some(form) = stored
                    .as_deref()
                    .and_then(|c| TableForm::new(api_version, c, include))
                {
                    return Ok(Form::Table(Arc::new(form)));
                }
            }
            Some(_) => continue,
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "NotAcceptable",
        format!(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1 (asked for {})",
            accept.join(",")
        ),
    ))
}

#[derive(Deserialize)]
struct MetadataOnly<'a> {
    #[serde(borrow)]
    metadata: &'a RawValue,
}

/// A custom resource's `date` printer columns (name, jsonPath), from its cached CRD.
fn crd_date_columns(app: &App, info: &ResourceInfo) -> Vec<(String, String)> {
    let name = format!("{}.{}", info.plural, info.group);
    let Ok(Some(crd)) = app.store.get(CRDS, "", &name, None) else {
        return Vec::new();
    };
    let crd: serde_json::Value = serde_json::from_slice(&crd).unwrap_or_default();
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"] == info.version.as_str())
        .flat_map(|v| {
            v["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|c| c["type"] == "date")
        .filter_map(|c| {
            Some((
                c["name"].as_str()?.to_string(),
                c["jsonPath"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The store key of CustomResourceDefinitions.
const CRDS: &str = "apiextensions.k8s.io/v1/customresourcedefinitions";

/// An object's `PartialObjectMetadata` form.
pub(crate) fn metadata_only(body: &[u8]) -> Vec<u8> {
    let metadata = serde_json::from_slice::<MetadataOnly>(body)
        .map(|m| m.metadata.get())
        .unwrap_or("{}");
    format!(
        r#"{{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{metadata}}}"#
    )
    .into_bytes()
}

/// An item as the client asked for it (for tables: a row).
fn render<'a>(form: &Form, body: &'a [u8], cells: Option<&[u8]>) -> std::borrow::Cow<'a, [u8]> {
    match form {
        Form::Full => body.into(),
        Form::Metadata => metadata_only(body).into(),
        Form::Table(table) => table.row(body, cells, vai_sync::now_ms()).into(),
    }
}

/// Serves a read on a cached type.
pub(crate) async fn serve(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    uri: &Uri,
    headers: &HeaderMap,
) -> Outcome {
    let reachable = app.syncer.health().borrow().reachable;
    let verb = match (
        &target.name,
        uri.query().is_some_and(|q| q.contains("watch")),
    ) {
        (Some(_), _) => "get",
        (None, true) => "watch",
        (None, false) => "list",
    };
    let result = async {
        let params = axum::extract::Query::<Params>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?
            .0;
        let include = Include::parse(params.include_object.as_deref()).map_err(invalid)?;
        let fields = app.store.fields(&info.key());
        let form = negotiate(headers, include, || {
            app.store
                .document(&table_columns_key(&info.key()))
                .ok()
                .flatten()
                .map(|d| d.body)
        })?;
        let form = match form {
            Form::Table(table) if !info.group.is_empty() => {
                let dates = crd_date_columns(app, info);
                Form::Table(Arc::new((*table).clone().with_date_columns(&dates)))
            }
            other => other,
        };
        match &target.name {
            // Watching one object by path: the deprecated form; upstream serves it.
            Some(_) if flag(&params.watch)? == Some(true) => Err(ReadError::Proxy),
            Some(name) => get(app, info, target, name, form).await,
            None if flag(&params.watch)? == Some(true) => {
                let filters = match crate::query::parse(&fields, uri)? {
                    Some(q) if q.page_size.is_some() || q.revision.is_some() => {
                        return Err(ApiError::bad_request(
                            "a watch takes filter=, not page, pagesize or revision",
                        )
                        .into());
                    }
                    Some(q) => q.filters,
                    None => Vec::new(),
                };
                watch(app, info, target, &params, form, filters, fields).await
            }
            None => match crate::query::parse(&fields, uri)? {
                Some(query) => page(app, info, target, &params, form, query).await,
                None => list(app, info, target, &params, form).await,
            },
        }
    }
    .await;
    match result {
        Ok(mut response) => {
            freshness::annotate(app, &info.key(), response.headers_mut());
            Outcome::Served(verb, response)
        }
        Err(ReadError::Proxy | ReadError::Unsupported(_)) if reachable => Outcome::Proxy,
        Err(ReadError::Proxy) => Outcome::Served(
            verb,
            ApiError::unavailable(
                "vai cannot answer this from its cache (a type not synced yet) and upstream is unreachable",
            )
            .into_response(),
        ),
        Err(ReadError::Unsupported(message)) => {
            Outcome::Served(verb, ApiError::bad_request(message).into_response())
        }
        Err(ReadError::Api(e)) => Outcome::Served(verb, e.into_response()),
    }
}

/// Why a read was not answered from the store.
pub(crate) enum ReadError {
    Api(ApiError),
    /// Upstream should answer it.
    Proxy,
    /// A field selector on a field the store does not index: upstream answers it (it may know
    /// the field); with upstream unreachable, upstream's own error for unknown fields.
    Unsupported(String),
}

impl From<ApiError> for ReadError {
    fn from(e: ApiError) -> ReadError {
        ReadError::Api(e)
    }
}

impl From<vai_store::Error> for ReadError {
    fn from(e: vai_store::Error) -> ReadError {
        match e {
            vai_store::Error::UnsupportedField(message) => ReadError::Unsupported(message),
            vai_store::Error::UnknownResource(_) => ReadError::Proxy,
            other => ReadError::Api(other.into()),
        }
    }
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn get(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    name: &str,
    form: Form,
) -> Result<Response, ReadError> {
    let store = app.store.clone();
    let (key, namespace, name_owned) = (
        info.key(),
        target.namespace.clone().unwrap_or_default(),
        name.to_string(),
    );
    let found =
        tokio::task::spawn_blocking(move || store.get_row(&key, &namespace, &name_owned, None))
            .await
            .map_err(|e| ApiError::bad_request(format!("read task failed: {e}")))??;
    match found {
        Some(item) => Ok(json_response(match &form {
            Form::Table(table) => {
                table.single(&item.object, item.cells.as_deref(), vai_sync::now_ms())
            }
            other => render(other, &item.object, None).into_owned(),
        })),
        None if never_synced(app, info) => Err(ReadError::Proxy),
        None => Err(ApiError::not_found(&info.group, &info.plural, name).into()),
    }
}

/// The type has no data yet (its first list has not finished): upstream should answer.
fn never_synced(app: &App, info: &ResourceInfo) -> bool {
    !app.syncer
        .status()
        .get(&info.key())
        .is_some_and(|s| s.synced)
        && app
            .store
            .resource_state(&info.key())
            .ok()
            .flatten()
            .is_none_or(|s| s.list_resource_version.is_none())
}

/// Refuses a field selector on a field the type does not select on (upstream answers it while
/// it can: it is the authority on its types' fields).
fn selectable(fields: &FieldSet, request: &ListRequest) -> Result<(), ReadError> {
    match request.fields.0.iter().find_map(|r| match &r.field {
        Field::Other(name) if fields.selectable(name).is_none() => Some(name),
        _ => None,
    }) {
        Some(name) => Err(ReadError::Unsupported(format!(
            "field label not supported: {name}"
        ))),
        None => Ok(()),
    }
}

/// Builds the store request from the selectors and the namespace.
fn selection(target: &ResourcePath, params: &Params) -> Result<ListRequest, ReadError> {
    Ok(ListRequest {
        namespace: target.namespace.clone(),
        labels: LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))?,
        fields: FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""))?,
        ..ListRequest::default()
    })
}

/// Resolves `resourceVersion` + `resourceVersionMatch` for a list: `Some(rv)` to read exactly
/// that snapshot, `None` for the newest (after waiting, for "not older than", until the cache
/// has reached the asked version).
async fn list_version(app: &App, key: &str, params: &Params) -> Result<Option<u64>, ReadError> {
    let rv = number("resourceVersion", &params.resource_version).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid resourceVersion {:?}",
            params.resource_version.as_deref().unwrap_or("")
        ))
    })?;
    let matching = params.resource_version_match.as_deref().unwrap_or("");
    if params
        .continue_token
        .as_deref()
        .is_some_and(|c| !c.is_empty())
        && rv.is_some_and(|v| v > 0)
    {
        return Err(
            invalid("specifying resource version is not allowed when using continue").into(),
        );
    }
    match (rv, matching) {
        (_, m) if !matches!(m, "" | "Exact" | "NotOlderThan") => Err(invalid(format!(
            "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))
        .into()),
        (None, m) if !m.is_empty() => Err(invalid(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )
        .into()),
        (Some(0), "Exact") => Err(invalid(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )
        .into()),
        (Some(v), "Exact") => Ok(Some(v)),
        (Some(v), _) if v > 0 => {
            wait_for(app, key, v).await?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Waits (a bounded time) until the store holds `rv` of `key`; `504` after.
pub(crate) async fn wait_for(app: &App, key: &str, rv: u64) -> Result<(), ReadError> {
    let mut events = app.store.subscribe();
    let deadline = tokio::time::Instant::now() + app.config.wait_for_resource_version;
    loop {
        let current = app
            .store
            .resource_state(key)?
            .map_or(0, |s| s.last_resource_version);
        if current >= rv {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, events.recv())
            .await
            .is_err()
        {
            return Err(ApiError::from(vai_store::Error::TooLargeResourceVersion {
                requested: rv,
                current,
            })
            .into());
        }
    }
}

/// Bytes per chunk of a streamed response.
const CHUNK: usize = 64 << 10;

async fn list(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    params: &Params,
    form: Form,
) -> Result<Response, ReadError> {
    let key = info.key();
    let mut request = selection(target, params)?;
    selectable(&app.store.fields(&key), &request)?;
    request.limit = number("limit", &params.limit)?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    request.continue_token = params.continue_token.clone().filter(|c| !c.is_empty());
    request.resource_version = list_version(app, &key, params).await?;
    if never_synced(app, info) {
        return Err(ReadError::Proxy);
    }
    let head = list_head(info, &form);
    let store = app.store.clone();
    streamed(move |emit| {
        let meta = store.list_rows(&key, &request, |row| {
            emit(&head, &render(&form, row.body, row.cells))
        })?;
        let mut metadata =
            serde_json::json!({"resourceVersion": meta.resource_version.to_string()});
        if let Some(token) = meta.continue_token {
            metadata["continue"] = token.into();
        }
        Ok((head, format!(r#"],"metadata":{metadata}}}"#)))
    })
    .await
}

/// The start of a list response, up to its first item.
fn list_head(info: &ResourceInfo, form: &Form) -> String {
    match form {
        Form::Full => format!(
            r#"{{"kind":"{}List","apiVersion":"{}","items":["#,
            info.kind,
            info.api_version()
        ),
        Form::Metadata => {
            r#"{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","items":["#.into()
        }
        Form::Table(table) => table.head(true),
    }
}

/// Emits one item of a streamed list: `emit(head, item)` writes the head before the first item
/// and commas between items.
type Emit<'a> = dyn FnMut(&str, &[u8]) -> vai_store::Result<()> + 'a;

/// Streams a list produced by `produce` on a blocking thread, in 64 KiB chunks. `produce` emits
/// items and returns `(head, tail)`: the head is written first if no item was, the tail last.
/// An error before the first byte becomes a `Status`; after it, the stream is cut.
async fn streamed(
    produce: impl FnOnce(&mut Emit) -> vai_store::Result<(String, String)> + Send + 'static,
) -> Result<Response, ReadError> {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, ApiError>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buffer = Vec::with_capacity(CHUNK + 8192);
        let mut items = 0usize;
        let mut sent = false;
        let result = produce(&mut |head: &str, item: &[u8]| {
            buffer.extend_from_slice(if items == 0 { head.as_bytes() } else { b"," });
            buffer.extend_from_slice(item);
            items += 1;
            if buffer.len() >= CHUNK {
                let chunk = std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK + 8192));
                tx.blocking_send(Ok(Bytes::from(chunk)))
                    .map_err(|_| vai_store::Error::Closed)?;
                sent = true;
            }
            Ok(())
        });
        match result {
            Ok((head, tail)) => {
                if items == 0 {
                    buffer.extend_from_slice(head.as_bytes());
                }
                buffer.extend_from_slice(tail.as_bytes());
                let _ = tx.blocking_send(Ok(Bytes::from(buffer)));
            }
            Err(e) => {
                if sent {
                    tracing::warn!(error = %e, "a streamed list failed midway");
                }
                let _ = tx.blocking_send(Err(ApiError::from(e)));
            }
        }
    });
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::bad_request("the list ended without an answer").into()),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|r| (r.map_err(|e| std::io::Error::other(e.message)), rx))
    });
    let stream = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<_, std::io::Error>(first) }),
        rest,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A query API list: filters, sort, an offset page with the total count, summaries — one
/// snapshot. The answer is a Kubernetes list with `total`, `page`, `pageSize`, `pages` and
/// `summary` beside `items`, and the snapshot's resource version to pass as `revision`.
async fn page(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    params: &Params,
    form: Form,
    query: Query,
) -> Result<Response, ReadError> {
    let key = info.key();
    let mut list = selection(target, params)?;
    list.resource_version = query.revision;
    if never_synced(app, info) {
        return Err(ReadError::Proxy);
    }
    let request = vai_store::PageRequest {
        list,
        filters: query.filters.clone(),
        sort: query.sort.clone(),
        offset: query.offset(),
        page_size: query.page_size,
    };
    let head = list_head(info, &form);
    let store = app.store.clone();
    streamed(move |emit| {
        let meta = store.page_rows(&key, &request, |row| {
            emit(&head, &render(&form, row.body, row.cells))
        })?;
        // Summaries of the same snapshot as the page.
        let mut pinned = request.clone();
        pinned.list.resource_version = Some(meta.resource_version);
        let mut summary = serde_json::Map::new();
        for column in &query.summary {
            let counts = store.summary(&key, &pinned, column)?.counts;
            let by_value: serde_json::Map<String, serde_json::Value> = counts
                .into_iter()
                .map(|(value, n)| (value.unwrap_or_default(), n.into()))
                .collect();
            summary.insert(column.path(), by_value.into());
        }
        let pages = query
            .page_size
            .map_or(1, |size| meta.total.div_ceil(size as u64).max(1));
        let tail = serde_json::json!({
            "resourceVersion": meta.resource_version.to_string(),
        });
        let mut extra = format!(
            r#"],"metadata":{tail},"total":{},"page":{},"pages":{pages}"#,
            meta.total, query.page
        );
        if let Some(size) = query.page_size {
            extra += &format!(r#","pageSize":{size}"#);
        }
        if !summary.is_empty() {
            extra += &format!(r#","summary":{}"#, serde_json::Value::Object(summary));
        }
        extra.push('}');
        Ok((head, extra))
    })
    .await
}

/// One line of a watch stream.
fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(br#"{"type":""#);
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(br#"","object":"#);
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// An `ERROR` event carrying the error's `Status`.
fn error_line(e: vai_store::Error) -> Bytes {
    event_line("ERROR", ApiError::from(e).body().to_string().as_bytes())
}

/// Writes a watch's lines in the form the client asked for. In table form every event is a
/// `Table` of one row, and only the first carries the column definitions, as upstream does.
struct WatchLines {
    form: Form,
    info: ResourceInfo,
    columns_sent: bool,
}

impl WatchLines {
    fn object(&mut self, kind: &str, body: &[u8], cells: Option<&[u8]>, rv: Option<u64>) -> Bytes {
        let Form::Table(table) = &self.form else {
            return event_line(kind, &render(&self.form, body, cells));
        };
        let mut object = table.head(!self.columns_sent).into_bytes();
        self.columns_sent = true;
        object.extend_from_slice(&table.row(body, cells, vai_sync::now_ms()));
        let metadata = rv.map_or_else(String::new, |rv| format!(r#""resourceVersion":"{rv}""#));
        object.extend_from_slice(format!(r#"],"metadata":{{{metadata}}}}}"#).as_bytes());
        event_line(kind, &object)
    }

    /// A bookmark: only a resource version (and, ending initial events, the annotation).
    fn bookmark(&mut self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = serde_json::json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match &self.form {
            Form::Full => (self.info.kind.clone(), self.info.api_version()),
            Form::Metadata => ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into()),
            Form::Table(table) => {
                let object = serde_json::json!({
                    "kind": "Table", "apiVersion": table.api_version,
                    "metadata": {"resourceVersion": rv.to_string()},
                    "columnDefinitions": null,
                    "rows": [{"cells": [], "object": {
                        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": metadata}}],
                });
                return event_line("BOOKMARK", object.to_string().as_bytes());
            }
        };
        let object =
            serde_json::json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
        event_line("BOOKMARK", object.to_string().as_bytes())
    }
}

/// Whether a watch event passes the watch's namespace and selectors (`fields`: the type's).
fn selected(request: &ListRequest, fields: &FieldSet, event: &Event) -> bool {
    if request
        .namespace
        .as_ref()
        .is_some_and(|ns| *ns != event.namespace)
    {
        return false;
    }
    // Indexed fields are read from the object (parsed once, only when needed).
    let mut parsed: Option<serde_json::Value> = None;
    let fields_ok = request.fields.0.iter().all(|r| {
        let actual = match &r.field {
            Field::Name => event.name.clone(),
            Field::Namespace => event.namespace.clone(),
            Field::Other(name) => match fields.selectable(name) {
                Some(field) => field
                    .value_in(parsed.get_or_insert_with(|| {
                        serde_json::from_slice(&event.body).unwrap_or_default()
                    }))
                    .unwrap_or_default(),
                None => return false,
            },
        };
        (actual == r.value) != r.negate
    });
    if !fields_ok {
        return false;
    }
    if request.labels.0.is_empty() {
        return true;
    }
    match StoredObject::from_json(event.body.to_vec(), true) {
        Ok(object) => request
            .labels
            .matches(|k| object.labels.get(k).map(String::as_str)),
        Err(_) => false,
    }
}

/// Whether an event's object passes the query API's filters.
fn passes(filters: &[vai_store::Filter], fields: &FieldSet, event: &Event) -> bool {
    object_passes(filters, fields, &event.namespace, &event.name, &event.body)
}

/// Whether an object passes the query API's filters (the SQL's semantics, in Rust).
fn object_passes(
    filters: &[vai_store::Filter],
    fields: &FieldSet,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> bool {
    if filters.is_empty() {
        return true;
    }
    let object: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let value_of = |column: &vai_store::Column| -> Option<String> {
        use vai_store::Column::*;
        match column {
            Name => Some(name.to_string()),
            Namespace => Some(namespace.to_string()),
            CreationTimestamp => object["metadata"]["creationTimestamp"]
                .as_str()
                .map(String::from),
            Label(key) => object["metadata"]["labels"][key].as_str().map(String::from),
            Field(field) => fields.get(field).and_then(|f| f.value_in(&object)),
        }
    };
    filters.iter().all(|f| f.matches(&value_of))
}

/// The event type a watcher receives for `event`, or `None` when it is not for it. With
/// `members` (the keys the watcher holds, kept when a label selector is in play), a change that
/// brings an object into the selection is `ADDED` and one that takes it out is `DELETED`.
fn transition(
    members: &mut Option<HashSet<(String, String)>>,
    request: &ListRequest,
    fields: &FieldSet,
    filters: &[vai_store::Filter],
    event: &Event,
) -> Option<&'static str> {
    let selected_now = selected(request, fields, event) && passes(filters, fields, event);
    let Some(members) = members else {
        return selected_now.then_some(match event.kind {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            _ => "DELETED",
        });
    };
    let key = (event.namespace.clone(), event.name.clone());
    let held = members.contains(&key);
    let now = event.kind != EventKind::Deleted && selected_now;
    match (held, now) {
        (false, false) => None,
        (false, true) => {
            members.insert(key);
            Some("ADDED")
        }
        (true, true) => Some("MODIFIED"),
        (true, false) => {
            members.remove(&key);
            Some("DELETED")
        }
    }
}

async fn watch(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    params: &Params,
    form: Form,
    filters: Vec<vai_store::Filter>,
    fields: Arc<FieldSet>,
) -> Result<Response, ReadError> {
    let key = info.key();
    let request = selection(target, params)?;
    // A field the type does not have: upstream answers (or, offline, refuses) it.
    selectable(&fields, &request)?;
    let rv = number("resourceVersion", &params.resource_version)?;
    let bookmarks = flag(&params.allow_watch_bookmarks)?.unwrap_or(false);
    let send_initial = flag(&params.send_initial_events)?;
    let matching = params.resource_version_match.as_deref().unwrap_or("");
    if send_initial.is_some() && matching != "NotOlderThan" {
        return Err(invalid(
            "sendInitialEvents is forbidden unless resourceVersionMatch is \"NotOlderThan\"",
        )
        .into());
    }
    if send_initial.is_none() && !matching.is_empty() {
        return Err(invalid("resourceVersionMatch is forbidden for watch").into());
    }
    let timeout = number("timeoutSeconds", &params.timeout_seconds)?
        .map(Duration::from_secs)
        .unwrap_or(app.config.default_watch_timeout);
    // Unset or "0": start with the current state as ADDED events ("get state and start at
    // most recent"); sendInitialEvents says so explicitly.
    let initial = send_initial.unwrap_or(matches!(rv, None | Some(0)));
    if never_synced(app, info) {
        return Err(ReadError::Proxy);
    }
    if let Some(v) = rv.filter(|v| *v > 0 && send_initial == Some(true)) {
        wait_for(app, &key, v).await?;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let store = app.store.clone();
    let current = store
        .resource_state(&key)?
        .map_or(0, |s| s.last_resource_version);
    let mut lines = WatchLines {
        form,
        info: info.clone(),
        columns_sent: false,
    };
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        // With a label or indexed-field selector, an object can enter or leave the selection by
        // changing: the watch keeps the keys the client holds, to send ADDED and DELETED as
        // upstream does.
        let track = !request.labels.0.is_empty()
            || !filters.is_empty()
            || request
                .fields
                .0
                .iter()
                .any(|r| matches!(r.field, Field::Other(_)));
        let listed = {
            let (store, key, request, tx) =
                (store.clone(), key.clone(), request.clone(), tx.clone());
            let from = rv.filter(|v| *v > 0 && !initial);
            let initial_filters = filters.clone();
            let fields = fields.clone();
            tokio::task::spawn_blocking(move || {
                let mut members = HashSet::new();
                if !initial && !track {
                    return (Ok((from.unwrap_or(current), None)), lines);
                }
                let request = ListRequest {
                    resource_version: from,
                    ..request
                };
                let listed = store.list_rows(&key, &request, |row| {
                    if !object_passes(&initial_filters, &fields, row.namespace, row.name, row.body)
                    {
                        return Ok(());
                    }
                    if track {
                        members.insert((row.namespace.to_string(), row.name.to_string()));
                    }
                    if initial {
                        tx.blocking_send(lines.object("ADDED", row.body, row.cells, None))
                            .map_err(|_| vai_store::Error::Closed)?;
                    }
                    Ok(())
                });
                let started = listed.map(|meta| (meta.resource_version, track.then_some(members)));
                (started, lines)
            })
            .await
        };
        let (start, mut members) = match listed {
            Ok((Ok(started), returned)) => {
                lines = returned;
                started
            }
            Ok((Err(e), _)) => {
                let _ = tx.send(error_line(e)).await;
                return;
            }
            Err(_) => return,
        };
        if send_initial == Some(true)
            && bookmarks
            && tx.send(lines.bookmark(start, true)).await.is_err()
        {
            return;
        }
        let mut watch = match store.watch(&key, start) {
            Ok(w) => w,
            Err(e) => {
                let _ = tx.send(error_line(e)).await;
                return;
            }
        };
        loop {
            let event = tokio::select! {
                event = watch.next() => event,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            };
            let line = match event {
                Ok(e) if e.kind == EventKind::Bookmark => {
                    if !bookmarks {
                        continue;
                    }
                    lines.bookmark(e.resource_version, false)
                }
                Ok(e) => match transition(&mut members, &request, &fields, &filters, &e) {
                    Some(kind) => {
                        lines.object(kind, &e.body, e.cells.as_deref(), Some(e.resource_version))
                    }
                    None => continue,
                },
                // Lagged or closed: end the stream; the client re-watches from its last RV.
                Err(_) => return,
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    fn form(
        accept_header: Option<&str>,
        columns: Option<&str>,
    ) -> Result<&'static str, StatusCode> {
        let headers = accept_header.map_or_else(HeaderMap::new, accept);
        let columns = columns.map(|c| c.as_bytes().to_vec());
        match negotiate(&headers, Include::Metadata, || columns) {
            Ok(Form::Full) => Ok("full"),
            Ok(Form::Metadata) => Ok("metadata"),
            Ok(Form::Table(t)) => Ok(t.api_version),
            Err(e) => Err(e.code),
        }
    }

    #[test]
    fn negotiates_json_metadata_tables_and_refuses_what_it_cannot_serve() {
        let columns = Some(r#"[{"name":"Name"}]"#);
        assert_eq!(form(None, None), Ok("full"));
        let proto_or_json = "application/vnd.kubernetes.protobuf, application/json";
        assert_eq!(form(Some(proto_or_json), None), Ok("full"));
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(form(Some(kubectl), columns), Ok("meta.k8s.io/v1"));
        // No stored columns for the type: kubectl's plain JSON fallback.
        assert_eq!(form(Some(kubectl), None), Ok("full"));
        let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
        assert_eq!(form(Some(beta), columns), Ok("meta.k8s.io/v1beta1"));
        assert_eq!(form(Some(beta), None), Err(StatusCode::NOT_ACCEPTABLE));
        let metadata =
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(form(Some(metadata), columns), Ok("metadata"));
        let proto = "application/vnd.kubernetes.protobuf";
        assert_eq!(form(Some(proto), columns), Err(StatusCode::NOT_ACCEPTABLE));
    }

    #[test]
    fn metadata_form_keeps_only_metadata() {
        let body = br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","labels":{"x":"y"}},"spec":{"big":true}}"#;
        let value: serde_json::Value = serde_json::from_slice(&metadata_only(body)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
                "metadata":{"name":"a","labels":{"x":"y"}}})
        );
    }

    fn event(kind: EventKind, name: &str, app: &str) -> Event {
        let body = format!(
            r#"{{"kind":"Pod","metadata":{{"name":"{name}","namespace":"ns","resourceVersion":"1","labels":{{"app":"{app}"}}}}}}"#
        );
        Event {
            resource: "/v1/pods".into(),
            seq: 1,
            kind,
            resource_version: 1,
            namespace: "ns".into(),
            name: name.into(),
            body: body.into_bytes().into(),
            cells: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn objects_entering_or_leaving_a_label_selection_are_added_or_deleted() {
        let request = ListRequest {
            labels: LabelSelector::parse("app=web").unwrap(),
            ..ListRequest::default()
        };
        let mut members = Some(HashSet::new());
        let pods = vai_store::fields::builtin("/v1/pods");
        let mut step =
            |kind, app| transition(&mut members, &request, &pods, &[], &event(kind, "p", app));
        assert_eq!(step(EventKind::Added, "db"), None);
        assert_eq!(step(EventKind::Modified, "web"), Some("ADDED"));
        assert_eq!(step(EventKind::Modified, "web"), Some("MODIFIED"));
        assert_eq!(step(EventKind::Modified, "db"), Some("DELETED"));
        assert_eq!(step(EventKind::Deleted, "db"), None);
        assert_eq!(step(EventKind::Added, "web"), Some("ADDED"));
        assert_eq!(step(EventKind::Deleted, "web"), Some("DELETED"));
        // Without tracking (no label selector), events pass through as they are.
        let mut untracked = None;
        let all = ListRequest::default();
        let e = event(EventKind::Modified, "p", "x");
        assert_eq!(
            transition(&mut untracked, &all, &pods, &[], &e),
            Some("MODIFIED")
        );
    }
}
