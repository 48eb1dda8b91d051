//! Everything vai does not answer from its cache — writes, subresources, uncached types — goes
//! to upstream through the sync's client (its credentials, its TLS), streaming the response
//! back (watches, `logs -f`). With upstream unreachable the answer is `503` with a `Status`
//! and `Retry-After` at once; a request in flight when upstream stops answering gets the same
//! as soon as the health probe notices, never a hang.
//!
//! Connection upgrades (`exec`, `attach`, `port-forward`) are not proxied yet: they get a
//! `Status` saying so.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::{ApiError, App};

/// Request headers not passed upstream: hop-by-hop ones, and credentials (upstream sees vai's).
const DROPPED_REQUEST_HEADERS: [HeaderName; 8] = [
    header::HOST,
    header::AUTHORIZATION,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::PROXY_AUTHORIZATION,
];

/// Response headers not passed back (hop-by-hop).
const DROPPED_RESPONSE_HEADERS: [HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::UPGRADE,
];

pub(crate) async fn forward(app: &App, request: Request) -> Response {
    match try_forward(app, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn try_forward(app: &App, request: Request) -> Result<Response, ApiError> {
    let mut health = app.syncer.health();
    if !health.borrow().reachable {
        return Err(unreachable(&health.borrow()));
    }
    if request.headers().contains_key(header::UPGRADE) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "vai does not proxy upgraded connections (exec, attach, port-forward) yet; use the cluster directly",
        ));
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, app.config.max_request_bytes)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("request body: {e}"),
            )
        })?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(&path_and_query);
    for (name, value) in &parts.headers {
        if !DROPPED_REQUEST_HEADERS.contains(name) {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream
        .body(kube::client::Body::from(body))
        .map_err(|e| ApiError::bad_request(format!("cannot forward the request: {e}")))?;
    let client = app.syncer.client().clone();
    let sent = tokio::select! {
        sent = tokio::time::timeout(app.config.proxy_timeout, client.send(upstream)) => sent,
        down = health.wait_for(|h| !h.reachable) => {
            let down = down.map(|h| h.clone()).unwrap_or_else(|_| app.syncer.health().borrow().clone());
            return Err(unreachable(&down));
        }
    };
    let response = match sent {
        Err(_) => {
            return Err(ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!(
                        "upstream did not answer {} {} within {:?}",
                        parts.method,
                        parts.uri.path(),
                        app.config.proxy_timeout
                    ),
                )
            });
        }
        Ok(Err(e)) => {
            return Err(ApiError::unavailable(format!("upstream failed: {e}")));
        }
        Ok(Ok(response)) => response,
    };
    let (parts, body) = response.into_parts();
    let mut out = Response::builder().status(parts.status);
    for (name, value) in &parts.headers {
        if !DROPPED_RESPONSE_HEADERS.contains(name) {
            out = out.header(name, value);
        }
    }
    out.body(Body::new(body.map_err(axum::Error::new)))
        .map_err(|e| ApiError::bad_request(format!("cannot relay the response: {e}")))
}

fn unreachable(health: &vai_sync::UpstreamHealth) -> ApiError {
    ApiError::unavailable(format!(
        "upstream is unreachable ({}); vai serves reads from its cache, but cannot forward this request",
        health.error.as_deref().unwrap_or("no answer")
    ))
}
