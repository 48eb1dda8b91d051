//! Lists of a cached type — the Kubernetes list (selectors, `limit`/`continue`, resource
//! versions) and the query API's page (filters, sort, offset page, total, summaries) —
//! streamed from one store snapshot on a blocking thread, so memory stays flat whatever the
//! list's size (a list's `metadata` comes after its items; JSON clients do not mind). A
//! Kubernetes list waits for a slow client between the store's reads, never in one (see
//! [`vai_store::Store::list_paced`]).

use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use vai_store::{FieldSet, ListSink, Pace, Row};
use vai_sync::ResourceInfo;

use crate::app::App;
use crate::errors::ApiError;
use crate::form::{Form, list_head, list_item, type_meta_prefix};
use crate::path::ResourcePath;
use crate::query_api::Query;
use crate::read::error::ReadError;
use crate::read::outbox::Outbox;
use crate::read::params::{Params, number};
use crate::read::selection::{selectable, selection};
use crate::read::version;

/// Bytes per chunk of a streamed response.
const CHUNK: usize = 64 << 10;

/// Answers a Kubernetes list.
pub(crate) async fn list(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    params: &Params,
    form: Result<Form, ApiError>,
    fields: &FieldSet,
) -> Result<Response, ReadError> {
    let key = info.key();
    let mut request = selection(target, params)?;
    selectable(info, fields, &request)?;
    // The apiserver reads a negative limit as none.
    request.limit = match params.limit.as_deref().map(str::parse::<i64>) {
        Some(Ok(l)) if l > 0 => Some(l as usize),
        Some(Ok(_)) => None,
        _ => number("limit", &params.limit)?.map(|l| l as usize),
    };
    request.continue_token = params.continue_token.clone().filter(|c| !c.is_empty());
    request.resource_version = version::list_version(app, &key, params).await?;
    let form = form?;
    if !app.syncer.synced(&key) {
        return Err(ReadError::Proxy);
    }
    let head = list_head(info, &form);
    let type_meta = type_meta_prefix(info);
    let store = app.store.clone();
    streamed(move |out| {
        let mut sink = ListOut {
            out,
            form: &form,
            type_meta: &type_meta,
            head: &head,
        };
        let meta = store.list_paced(&key, &request, &mut sink)?;
        let mut metadata =
            serde_json::json!({"resourceVersion": meta.resource_version.to_string()});
        if let Some(token) = meta.continue_token {
            metadata["continue"] = token.into();
        }
        Ok((head, format!(r#"],"metadata":{metadata}}}"#)))
    })
    .await
}

/// A query API list: filters, sort, an offset page with the total count, summaries — one
/// snapshot. The answer is a Kubernetes list with `total`, `page`, `pageSize`, `pages` and
/// `summary` beside `items`, and the snapshot's resource version to pass as `revision`.
pub(crate) async fn page(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    params: &Params,
    form: Result<Form, ApiError>,
    query: Query,
) -> Result<Response, ReadError> {
    let key = info.key();
    let mut list = selection(target, params)?;
    let form = form?;
    list.resource_version = query.revision;
    if !app.syncer.synced(&key) {
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
    let type_meta = type_meta_prefix(info);
    let store = app.store.clone();
    let query = Arc::new(query);
    streamed(move |out| {
        // A page is one read (its sort and total are of one snapshot): a chunk the client is
        // not ready for is waited for in it.
        let meta = store.page_rows(&key, &request, |row| {
            let (start, rest) = list_item(&form, &type_meta, row.body, row.cells);
            out.item(&head, start, &rest)?;
            out.flush()
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

/// A streamed list's output on its blocking thread: items joined into 64 KiB chunks for the
/// response's channel, through an [`Outbox`] (a chunk without room waits outside the store's
/// reads).
struct Out {
    outbox: Outbox<Result<Bytes, ApiError>>,
    buffer: Vec<u8>,
    items: usize,
    sent: bool,
}

impl Out {
    /// Appends an item, given in two pieces written one after the other, after `head` if it is
    /// the first and a comma otherwise.
    fn item(&mut self, head: &str, start: &[u8], rest: &[u8]) -> vai_store::Result<Pace> {
        let first = self.items == 0;
        self.buffer
            .extend_from_slice(if first { head.as_bytes() } else { b"," });
        self.buffer.extend_from_slice(start);
        self.buffer.extend_from_slice(rest);
        self.items += 1;
        if self.buffer.len() < CHUNK {
            return Ok(Pace::On);
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK + 8192));
        self.sent = true;
        self.outbox.offer(Ok(Bytes::from(chunk)))
    }

    /// Sends the held chunk, waiting for room.
    fn flush(&mut self) -> vai_store::Result<()> {
        self.outbox.flush()
    }
}

/// A Kubernetes list's items into [`Out`], in the client's form.
struct ListOut<'a> {
    out: &'a mut Out,
    form: &'a Form,
    type_meta: &'a [u8],
    head: &'a str,
}

impl ListSink for ListOut<'_> {
    fn item(&mut self, row: Row) -> vai_store::Result<Pace> {
        let (start, rest) = list_item(self.form, self.type_meta, row.body, row.cells);
        self.out.item(self.head, start, &rest)
    }

    fn between(&mut self) -> vai_store::Result<()> {
        self.out.flush()
    }
}

/// Streams a list produced by `produce` on a blocking thread, in 64 KiB chunks. `produce` emits
/// items and returns `(head, tail)`: the head is written first if no item was, the tail last.
/// An error before the first byte becomes a `Status`; after it, the stream is cut.
async fn streamed(
    produce: impl FnOnce(&mut Out) -> vai_store::Result<(String, String)> + Send + 'static,
) -> Result<Response, ReadError> {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, ApiError>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            outbox: Outbox::new(tx.clone()),
            buffer: Vec::with_capacity(CHUNK + 8192),
            items: 0,
            sent: false,
        };
        match produce(&mut out).and_then(|ends| out.flush().map(|()| ends)) {
            Ok((head, tail)) => {
                if out.items == 0 {
                    out.buffer.extend_from_slice(head.as_bytes());
                }
                out.buffer.extend_from_slice(tail.as_bytes());
                let _ = tx.blocking_send(Ok(Bytes::from(out.buffer)));
            }
            // The client left midway: nothing to tell.
            Err(_) if tx.is_closed() => {}
            Err(e) => {
                if out.sent {
                    tracing::warn!(error = %e, "a streamed list failed midway");
                }
                let _ = tx.blocking_send(Err(ApiError::from(e)));
            }
        }
    });
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(e.into()),
        // The producer's thread ended without a word: it panicked.
        None => return Err(ApiError::internal("the list ended without an answer").into()),
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
