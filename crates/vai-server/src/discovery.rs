//! Discovery and `/version`, answered from the documents sync stored, so that kubectl and
//! client libraries find their way while upstream is unreachable. Aggregated discovery is
//! served to clients that ask for it (and that upstream offered); the classic documents to
//! the others.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use vai_sync::discovery::document_key;

use crate::App;

/// The stored document for a discovery path, if it is one and it is stored.
pub(crate) fn serve(app: &App, path: &str, headers: &HeaderMap) -> Option<Response> {
    let path = path.trim_end_matches('/');
    let is_discovery = matches!(path, "/version" | "/api" | "/apis")
        || path.starts_with("/api/") && path.matches('/').count() == 2
        || path.starts_with("/apis/") && path.matches('/').count() == 3;
    if !is_discovery {
        return None;
    }
    let wants_aggregated = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=APIGroupDiscoveryList"));
    let lookup = |aggregated| {
        app.store
            .document(&document_key(path, aggregated))
            .ok()
            .flatten()
    };
    let document = wants_aggregated
        .then(|| lookup(true))
        .flatten()
        .or_else(|| lookup(false))?;
    let content_type = HeaderValue::from_str(&document.content_type)
        .unwrap_or(HeaderValue::from_static("application/json"));
    Some(([(header::CONTENT_TYPE, content_type)], document.body).into_response())
}
