//! The OpenAPI documents (`/openapi/v2`, `/openapi/v3` and its group versions): relayed from
//! upstream while it answers, each `200` kept in the store by its path, query and media type;
//! served from there while upstream is unreachable (with a `Warning`), so that `kubectl
//! explain` and client-side validation work offline. Sync stores the v3 documents ahead (see
//! vai-sync's `openapi`), so they are there even if nobody asked before the outage.
//!
//! This module never answers from the store while upstream answers: the documents change with
//! the cluster's types, and upstream's answer is the current one.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vai_store::Document;
use vai_store::keys::openapi_document;

use crate::app::App;
use crate::errors::ApiError;
use crate::form;
use crate::metrics::ServedBy;

/// A document larger than this is relayed without being kept.
const MAX_KEPT: usize = 128 << 20;

/// Whether a request is for an OpenAPI document.
pub(crate) fn is_openapi(request: &Request) -> bool {
    request.method() == axum::http::Method::GET
        && (request.uri().path() == "/openapi/v2"
            || request.uri().path().starts_with("/openapi/v3"))
}

/// Relays an OpenAPI request and keeps a `200`'s document; answers from the store what
/// upstream cannot.
pub(crate) async fn serve(app: &App, request: Request) -> (ServedBy, Response) {
    let path_and_query = document_path(request.uri());
    let wanted = media_types(request.headers());
    let response = crate::proxy::forward(app, request).await;
    match response.status() {
        StatusCode::OK => (
            ServedBy::Upstream,
            keep(app, &path_and_query, response).await,
        ),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            match stored(app, &path_and_query, wanted).await {
                Some(document) => (ServedBy::Cache, offline(app, document)),
                None => (ServedBy::Upstream, response),
            }
        }
        _ => (ServedBy::Upstream, response),
    }
}

/// What names a document: its path and query, without the `timeout` a client adds
/// (kubectl's `?timeout=32s`).
fn document_path(uri: &axum::http::Uri) -> String {
    let query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("timeout="))
        .collect();
    if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), query.join("&"))
    }
}

/// The media types (without parameters) an `Accept` takes, in its order; JSON for a wildcard
/// or none.
fn media_types(headers: &HeaderMap) -> Vec<String> {
    let mut types: Vec<String> = form::media_ranges(headers)
        .into_iter()
        .map(|m| match m.split(';').next().map(str::trim) {
            Some("*/*" | "application/*") | None => "application/json".to_string(),
            Some(essence) => essence.to_string(),
        })
        .collect();
    if types.is_empty() {
        types.push("application/json".into());
    }
    types.dedup();
    types
}

/// Passes a `200` on, keeping its document (unless too large, or unreadable: then it is
/// passed on as it came, or as the error it became).
async fn keep(app: &App, path_and_query: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_KEPT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(path = path_and_query, error = %e, "an OpenAPI document could not be relayed");
            return ApiError::internal(format!("reading upstream's {path_and_query}: {e}"))
                .into_response();
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    let document = Document {
        key: openapi_document(path_and_query, media_type),
        content_type: content_type.clone(),
        body: bytes.to_vec(),
    };
    // Kept when it changed (kubectl asks for the same documents again and again), by the
    // process that writes the store (a reader replica's writer keeps its own copies).
    let key = document.key.clone();
    let before = app
        .blocking(move |store| store.document(&key).map_err(ApiError::from))
        .await;
    let unchanged = matches!(&before, Ok(Some(d)) if d.body == document.body);
    if !unchanged
        && app.store.writes()
        && let Err(e) = app.store.put_documents(vec![document]).await
    {
        tracing::warn!(path = path_and_query, error = %e, "cannot keep an OpenAPI document");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The stored document of `path_and_query` in the first of `wanted` it is stored in.
async fn stored(app: &App, path_and_query: &str, wanted: Vec<String>) -> Option<Document> {
    let keys: Vec<String> = wanted
        .iter()
        .map(|media_type| openapi_document(path_and_query, media_type))
        .collect();
    app.blocking(move |store| -> Result<_, ApiError> {
        for key in &keys {
            if let Some(document) = store.document(key)? {
                return Ok(Some(document));
            }
        }
        Ok(None)
    })
    .await
    .ok()
    .flatten()
}

/// A stored document, said to be so.
fn offline(app: &App, document: Document) -> Response {
    let content_type = HeaderValue::from_str(&document.content_type)
        .unwrap_or(HeaderValue::from_static("application/json"));
    let mut response = ([(header::CONTENT_TYPE, content_type)], document.body).into_response();
    let since = app.syncer.health().borrow().since_ms;
    let since = jiff::Timestamp::from_millisecond(since).map_or_else(
        |_| "?".into(),
        |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string(),
    );
    let text = format!(
        "299 - \"vai: upstream is unreachable since {since}; this OpenAPI document is the one stored last\""
    );
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::WARNING, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_named_by_its_path_and_query_without_the_clients_timeout() {
        let name = |uri: &str| document_path(&uri.parse().unwrap());
        assert_eq!(name("/openapi/v3?timeout=32s"), "/openapi/v3");
        assert_eq!(
            name("/openapi/v3/apis/apps/v1?hash=AB12&timeout=32s"),
            "/openapi/v3/apis/apps/v1?hash=AB12"
        );
        assert_eq!(name("/openapi/v2"), "/openapi/v2");
    }

    #[test]
    fn wildcards_and_no_accept_ask_for_json_first() {
        let mut headers = HeaderMap::new();
        assert_eq!(media_types(&headers), ["application/json"]);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf, */*;q=0.1",
            ),
        );
        assert_eq!(
            media_types(&headers),
            [
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                "application/json"
            ]
        );
    }
}
