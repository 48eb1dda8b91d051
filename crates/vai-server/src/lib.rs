//! The HTTP face of vai: the Kubernetes REST read API served from the store, with writes and
//! everything uncached proxied upstream.
//!
//! - Every request is resolved once, first, into a [`RequestInfo`] ([`request_info`]: verb,
//!   group, version, resource, namespace, name, as the apiserver's authorizer sees them),
//!   which handlers take from the request's extensions.
//! - `GET` on a cached type (`read`) — list, get, watch, with the apiserver's parameters —
//!   is answered from the store, streamed, whether or not upstream answers. When the data may
//!   be stale, responses say so (`freshness`): a `Warning` header kubectl prints, and
//!   `X-Vai-*` headers for programs.
//! - Discovery and `/version` come from the documents sync stored (`discovery`).
//! - Everything else goes to upstream (`proxy`), streaming both ways; with upstream
//!   unreachable it gets `503` at once, never a hang.
//! - `/healthz`, `/readyz`, `/metrics` and `/vai/v1/status` (`ops`).
//!
//! Every error is a Kubernetes `Status` ([`errors`]). This crate never writes to the store and
//! never talks to upstream except through the proxy.

pub mod access;
mod app;
mod config;
mod discovery;
pub mod errors;
mod form;
mod freshness;
mod listen;
mod metadata;
mod metrics;
mod openapi;
mod ops;
pub mod path;
mod proxy;
pub mod query_api;
mod read;
pub mod request_info;
pub mod table;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use vai_sync::Syncer;

use app::App;
use metrics::ServedBy;
use request_info::RequestInfo;

pub use config::{ProxyClients, ServerConfig};
pub use errors::ApiError;
pub use listen::{PeerCertificate, Tls, TlsError, serve};

/// The router serving vai's HTTP API over a [`Syncer`] (a running one, or
/// [`Syncer::detached`] to serve a store alone); its metrics go to `registry` (which
/// `/metrics` exposes). Fails if `registry` holds the server's metrics already.
pub fn router(
    syncer: Syncer,
    config: ServerConfig,
    registry: prometheus::Registry,
) -> prometheus::Result<Router> {
    let app = App {
        store: syncer.store().clone(),
        syncer,
        access: access::Access::new(config.access.clone()),
        config,
        metrics: Arc::new(metrics::Metrics::new(&registry)?),
        registry,
    };
    access::start(&app);
    Ok(Router::new()
        .route("/healthz", axum::routing::get(ops::healthz))
        .route("/livez", axum::routing::get(ops::healthz))
        .route("/readyz", axum::routing::get(ops::readyz))
        .route("/metrics", axum::routing::get(ops::metrics))
        .route("/vai/v1/status", axum::routing::get(ops::status))
        .fallback(dispatch)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            access::guard,
        ))
        .layer(axum::middleware::from_fn(request_info::resolve))
        .with_state(app))
}

/// Serves from the store what it can, proxies the rest; records the latency.
async fn dispatch(State(app): State<App>, info: RequestInfo, request: Request) -> Response {
    let started = Instant::now();
    let (served_by, response) = route(&app, &info, request).await;
    app.metrics
        .observe(info.verb, response.status(), served_by, started.elapsed());
    response
}

/// Another method on one of vai's own paths (`/healthz`, `/metrics`, …).
async fn method_not_allowed(request: Request) -> Response {
    use axum::response::IntoResponse;
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "{} is not supported on {}",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}

async fn route(app: &App, info: &RequestInfo, request: Request) -> (ServedBy, Response) {
    if request.method() != Method::GET {
        let request = match access::answer_self_review(app, request).await {
            Ok(response) => return (ServedBy::Cache, response),
            Err(request) => request,
        };
        return (ServedBy::Upstream, proxy::forward(app, request).await);
    }
    if let Some(response) = discovery::serve(app, request.uri().path(), request.headers()).await {
        return (ServedBy::Cache, response);
    }
    if openapi::is_openapi(&request) {
        return openapi::serve(app, request).await;
    }
    let cached = info
        .resource
        .as_ref()
        .filter(|target| target.subresource.is_none() && info.is_read())
        .and_then(|target| {
            let resource = app
                .syncer
                .resolve(&target.group, &target.version, &target.plural)?;
            (resource.namespaced || target.namespace.is_none()).then_some((target, resource))
        });
    let Some((target, resource)) = cached else {
        return (ServedBy::Upstream, proxy::forward(app, request).await);
    };
    let (parts, body) = request.into_parts();
    match read::serve(app, info, &resource, target, &parts).await {
        read::Outcome::Served(response) => (ServedBy::Cache, response),
        read::Outcome::Proxy => {
            let request = Request::from_parts(parts, body);
            (ServedBy::Upstream, proxy::forward(app, request).await)
        }
    }
}
