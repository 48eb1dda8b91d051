//! Everything vai does not answer from its cache — writes, subresources, uncached types — goes
//! to upstream with vai's credentials and TLS (`ServerConfig::proxy`, else the sync's client), streaming the response
//! back (watches, `logs -f`). With upstream unreachable the answer is `503` with a `Status` at
//! once, with `Retry-After` during the first seconds of the outage
//! (`ServerConfig::offline_retry_grace`) and without it afterwards, so that kubectl fails at
//! once instead of retrying for ~50 s; a request in flight when upstream stops answering gets
//! the same as soon as the health probe notices, never a hang.
//!
//! Connection upgrades (`exec`, `attach`, `port-forward`: WebSocket or SPDY) are passed through:
//! once upstream answers `101`, bytes are copied both ways until either side closes.
//!
//! With authorization on, a request goes upstream as its caller, so upstream authorizes (and
//! audits) it as that user: a caller's bearer token is forwarded as it is (over a client
//! without vai's credentials); a caller vai authenticated otherwise (client certificate, front
//! proxy) is impersonated — vai's credentials with `Impersonate-User`, `-Uid`, `-Group` and
//! `-Extra-*` naming the caller.
//!
//! A successful write to a cached type returns once the cache holds the written version (or a
//! short wait has passed), so a client that writes through vai and then reads through vai sees
//! its own write.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::time::Duration;

use crate::app::App;
use crate::errors::ApiError;

/// Request headers not passed upstream: hop-by-hop ones, and credentials (upstream sees
/// vai's, or the caller's token as `try_forward` sets it).
/// `Connection` and `Upgrade` pass on upgrade requests only.
const DROPPED_REQUEST_HEADERS: [HeaderName; 6] = [
    header::HOST,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::PROXY_AUTHORIZATION,
];

/// Response headers not passed back (hop-by-hop; `Connection`/`Upgrade` kept on a `101`).
const DROPPED_RESPONSE_HEADERS: [HeaderName; 2] =
    [header::TRANSFER_ENCODING, header::CONTENT_LENGTH];

fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION || name == header::UPGRADE
}

/// Largest write response held back while waiting for the cache to catch up.
const MAX_WRITE_RESPONSE: usize = 16 << 20;

pub(crate) async fn forward(app: &App, request: Request) -> Response {
    match try_forward(app, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn try_forward(app: &App, request: Request) -> Result<Response, ApiError> {
    let mut health = app.syncer.health();
    if !health.borrow().reachable {
        return Err(unreachable(app, &health.borrow()));
    }
    let mut request = request;
    let upgrade = request
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut request));
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
    let caller = parts.extensions.get::<crate::access::Caller>();
    // A caller's own bearer token goes upstream as it is, with its own impersonation headers:
    // upstream authenticates and authorizes the caller itself. Anyone else is impersonated
    // with vai's credentials, as vai decided (`access`): their `Impersonate-*` and a front
    // proxy's headers were checked there, and upstream gets the outcome.
    let clients = app.config.proxy.as_ref();
    let by_token = caller
        .and_then(|c| c.token.as_ref())
        .zip(clients.map(|c| &c.bare));
    for (name, value) in &parts.headers {
        let checked = caller.is_some()
            && ((by_token.is_none() && crate::access::is_impersonation(name.as_str()))
                || app.config.access.request_header.names(name.as_str()));
        if !DROPPED_REQUEST_HEADERS.contains(name)
            && !checked
            && (upgrade.is_some() || !hop_by_hop(name))
        {
            upstream = upstream.header(name, value);
        }
    }
    let own = clients.map_or_else(|| app.syncer.client().clone(), |c| c.own.clone());
    let client = match (by_token, caller) {
        (Some((token, bare)), _) => {
            upstream = upstream.header(header::AUTHORIZATION, format!("Bearer {}", token.0));
            bare.clone()
        }
        (None, Some(caller)) => {
            for (name, value) in crate::access::impersonation_headers(&caller.user) {
                upstream = upstream.header(name, value);
            }
            own
        }
        (None, None) => own,
    };
    let upstream = upstream
        .body(kube::client::Body::from(body))
        .map_err(|e| ApiError::bad_request(format!("cannot forward the request: {e}")))?;
    let sent = tokio::select! {
        sent = tokio::time::timeout(app.config.proxy_timeout, client.send(upstream)) => sent,
        down = health.wait_for(|h| !h.reachable) => {
            // What the local RBAC denied, and only upstream could have allowed, is denied
            // now that upstream is gone: the local decision stands offline.
            if let Some(denied) = parts.extensions.get::<crate::access::LocallyDenied>() {
                return Err(denied.0.clone());
            }
            let down = down.map(|h| h.clone()).unwrap_or_else(|_| app.syncer.health().borrow().clone());
            return Err(unreachable(app, &down));
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
    let method = parts.method.clone();
    let target = parts.uri.path().to_string();
    let mut response = response;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(downstream) = upgrade
    {
        let upstream = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(downstream, upstream) {
                Ok((down, up)) => {
                    let mut down = hyper_util::rt::TokioIo::new(down);
                    let mut up = hyper_util::rt::TokioIo::new(up);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
                        tracing::debug!(error = %e, "an upgraded connection ended");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot complete a connection upgrade"),
            }
        });
    }
    let (parts, body) = response.into_parts();
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let mut out = Response::builder().status(parts.status);
    for (name, value) in &parts.headers {
        if !DROPPED_RESPONSE_HEADERS.contains(name) && (switching || !hop_by_hop(name)) {
            out = out.header(name, value);
        }
    }
    let write = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let body = match cached_key(app, &target).filter(|_| write && parts.status.is_success()) {
        Some(key) => {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ApiError::unavailable(format!("reading upstream's answer: {e}")))?
                .to_bytes();
            // Read-your-writes through vai; a timeout only means the read may lag.
            let deleted = crate::path::parse(&target)
                .filter(|t| method == Method::DELETE && t.subresource.is_none())
                .and_then(|t| Some((t.namespace.unwrap_or_default(), t.name?)))
                .filter(|_| !held_by_finalizers(&bytes));
            if let Some((namespace, name)) = deleted {
                // Gone at once: its answer carries the object's last version, which the
                // cache already holds; what shows the delete is the object's absence.
                let _ = crate::read::version::wait_for_absence(app, &key, &namespace, &name).await;
            } else if bytes.len() <= MAX_WRITE_RESPONSE
                && let Some(rv) = resource_version_of(&bytes)
            {
                let _ = crate::read::version::wait_for(app, &key, rv).await;
            }
            Body::from(bytes)
        }
        None => Body::new(body.map_err(axum::Error::new)),
    };
    out.body(body)
        .map_err(|e| ApiError::internal(format!("cannot relay the response: {e}")))
}

/// The store key of the cached type a path addresses, if it addresses one.
fn cached_key(app: &App, path: &str) -> Option<String> {
    let target = crate::path::parse(path)?;
    let info = app
        .syncer
        .resolve(&target.group, &target.version, &target.plural)?;
    Some(info.key())
}

/// Whether a deleted object stays, marked for deletion, until its finalizers are done (then the
/// delete was an update, and its answer's version is the one to wait for).
fn held_by_finalizers(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Object {
        metadata: Meta,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        finalizers: Vec<String>,
    }
    serde_json::from_slice::<Object>(body).is_ok_and(|o| !o.metadata.finalizers.is_empty())
}

/// `metadata.resourceVersion` of an object in a response body.
fn resource_version_of(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Object {
        metadata: Meta,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "resourceVersion")]
        resource_version: String,
    }
    serde_json::from_slice::<Object>(body)
        .ok()?
        .metadata
        .resource_version
        .parse()
        .ok()
}

fn unreachable(app: &App, health: &vai_sync::UpstreamHealth) -> ApiError {
    let away =
        Duration::from_millis(vai_sync::now_ms().saturating_sub(health.since_ms).max(0) as u64);
    let mut refused = ApiError::unavailable(format!(
        "upstream has been unreachable for {} s ({}); vai serves reads from its cache, but cannot forward this request",
        away.as_secs(),
        health.error.as_deref().unwrap_or("no answer")
    ));
    // A client retries a 503 with Retry-After: worth it early in an outage, not later.
    if away >= app.config.offline_retry_grace {
        refused.retry_after = None;
    }
    refused
}
