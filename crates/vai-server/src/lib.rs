//! The HTTP face of vai: the Kubernetes REST read API served from the store, with writes and
//! everything uncached proxied upstream.
//!
//! - `GET` on a cached type ([`read`]) — list, get, watch, with the apiserver's parameters —
//!   is answered from the store, streamed, whether or not upstream answers. When the data may
//!   be stale, responses say so ([`freshness`]): a `Warning` header kubectl prints, and
//!   `X-Vai-*` headers for programs.
//! - Discovery and `/version` come from the documents sync stored ([`discovery`]).
//! - Everything else goes to upstream ([`proxy`]), streaming both ways; with upstream
//!   unreachable it gets `503` at once, never a hang.
//! - `/healthz`, `/readyz`, `/metrics` and `/vai/v1/status` ([`ops`]).
//!
//! Every error is a Kubernetes `Status` ([`errors`]). This crate never writes to the store and
//! never talks to upstream except through the proxy.

mod discovery;
pub mod errors;
mod freshness;
mod ops;
pub mod path;
mod proxy;
pub mod query;
mod read;
pub mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use vai_store::Store;
use vai_sync::Syncer;

pub use errors::ApiError;

/// Tuning of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Deadline for upstream's response headers on a proxied request.
    pub proxy_timeout: Duration,
    /// Largest request body proxied upstream.
    pub max_request_bytes: usize,
    /// How long a watch lasts when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// How long a list with a resource version newer than the store's waits for it.
    pub wait_for_resource_version: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            proxy_timeout: Duration::from_secs(30),
            max_request_bytes: 16 << 20,
            default_watch_timeout: Duration::from_secs(1800),
            wait_for_resource_version: Duration::from_secs(3),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
struct App {
    syncer: Syncer,
    store: Store,
    config: ServerConfig,
    metrics: Arc<ops::Metrics>,
    registry: prometheus::Registry,
}

/// The router serving vai's HTTP API over a running [`Syncer`]; its metrics go to `registry`
/// (which `/metrics` exposes).
pub fn router(syncer: Syncer, config: ServerConfig, registry: prometheus::Registry) -> Router {
    let app = App {
        store: syncer.store().clone(),
        syncer,
        config,
        metrics: Arc::new(ops::Metrics::new(&registry)),
        registry,
    };
    Router::new()
        .route("/healthz", axum::routing::get(ops::healthz))
        .route("/livez", axum::routing::get(ops::healthz))
        .route("/readyz", axum::routing::get(ops::readyz))
        .route("/metrics", axum::routing::get(ops::metrics))
        .route("/vai/v1/status", axum::routing::get(ops::status))
        .fallback(dispatch)
        .with_state(app)
}

/// Serves from the store what it can, proxies the rest; records the latency.
async fn dispatch(State(app): State<App>, request: Request) -> Response {
    let started = Instant::now();
    let (verb, response) = route(&app, request).await;
    app.metrics
        .observe(verb, response.status(), started.elapsed());
    response
}

async fn route(app: &App, request: Request) -> (&'static str, Response) {
    if request.method() == Method::GET {
        let uri = request.uri().clone();
        if let Some(response) = discovery::serve(app, uri.path(), request.headers()) {
            return ("discovery", response);
        }
        if let Some(target) = path::parse(uri.path())
            && target.subresource.is_none()
            && let Some(info) = app
                .syncer
                .resolve(&target.group, &target.version, &target.plural)
            && (info.namespaced || target.namespace.is_none())
        {
            match read::serve(app, &info, &target, &uri, request.headers()).await {
                read::Outcome::Served(verb, response) => return (verb, response),
                read::Outcome::Proxy => {}
            }
        }
    }
    ("proxy", proxy::forward(app, request).await)
}
