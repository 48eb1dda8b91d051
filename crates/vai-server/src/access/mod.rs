//! Who may ask vai what: with `--authorization-mode=RBAC`, every request is authenticated
//! (`authenticate`) and authorized (`decide`) before any handler runs, as the apiserver
//! would; with `AlwaysAllow` (loopback only) every caller is vai's one local user.
//!
//! The rule: a caller reads through vai exactly what the apiserver would let that caller read,
//! online and offline, and what vai cannot verify it refuses. Requests vai forwards carry the
//! caller's identity (its own bearer token, or impersonation: `impersonate`), so upstream
//! decides those itself while it answers; offline, the local decision stands (403 where
//! denied, 503 where allowed).
//!
//! This module decides and refuses; it never answers a request it allowed.

mod authenticate;
mod confirm;
mod decide;
mod expiring;
mod forbidden;
mod front_proxy;
mod impersonate;
mod policy;
mod protobuf;
mod reviews;
mod scope;
mod token_review;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vai_access::User;

use crate::app::App;
use crate::request_info::RequestInfo;

pub use decide::RBAC_RESOURCES;
pub use front_proxy::RequestHeader;
pub(crate) use impersonate::is_impersonation;
pub(crate) use reviews::answer as answer_self_review;
pub(crate) use scope::ListScope;

/// For a watch: resolves, with the `403` to send as its last event, once the caller may no
/// longer do what the watch asks (an RBAC change took the right away); never resolves with
/// authorization off.
pub(crate) fn revoked(
    app: &App,
    parts: &axum::http::request::Parts,
) -> impl Future<Output = crate::errors::ApiError> + Send + use<> {
    let app = app.clone();
    let watched = parts.extensions.get::<Caller>().cloned().zip(
        parts
            .extensions
            .get::<RequestInfo>()
            .map(|info| forbidden::attributes(info, parts.uri.path())),
    );
    async move {
        let Some((caller, attributes)) = watched else {
            return std::future::pending().await;
        };
        let mut changes = app.access.policy.changes();
        loop {
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
            let decision = decided(&app, &caller.user, &attributes).await;
            if !decision.allowed {
                return forbidden::forbidden(&caller.user, &attributes, &decision.reason);
            }
        }
    }
}

/// The decision for `user`: the local RBAC's, confirmed upstream where it denies and
/// confirmation is on.
pub(crate) async fn decided(
    app: &App,
    user: &User,
    attributes: &vai_access::Attributes,
) -> vai_access::rbac::Decision {
    let local = decide::decide(app, user, attributes);
    confirm::confirmed(app, user, attributes, local).await
}

/// `call` to upstream (a review), given up on when it takes longer than the proxy timeout or
/// upstream is found unreachable meanwhile; `None` then.
pub(crate) async fn ask_upstream<T>(app: &App, call: impl Future<Output = T>) -> Option<T> {
    let mut health = app.syncer.health();
    tokio::select! {
        answered = tokio::time::timeout(app.config.proxy_timeout, call) => answered.ok(),
        _ = health.wait_for(|h| !h.reachable) => None,
    }
}

/// The headers that make upstream act as `user` (with vai's own credentials).
pub(crate) fn impersonation_headers(user: &User) -> Vec<(String, String)> {
    let mut headers = vec![("Impersonate-User".to_string(), user.name.clone())];
    if !user.uid.is_empty() {
        headers.push(("Impersonate-Uid".into(), user.uid.clone()));
    }
    for group in &user.groups {
        headers.push(("Impersonate-Group".into(), group.clone()));
    }
    for (key, values) in &user.extra {
        let name = format!("Impersonate-Extra-{}", impersonate::percent_encode(key));
        for value in values {
            headers.push((name.clone(), value.clone()));
        }
    }
    headers
}

/// How requests are authorized (the apiserver's flag values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Everyone who can connect is vai's one local user (like `kubectl proxy`): loopback only.
    #[default]
    AlwaysAllow,
    /// Callers are authenticated and authorized with the cluster's RBAC, evaluated locally.
    Rbac,
}

/// Authentication and authorization settings.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// The authorization mode.
    pub mode: Mode,
    /// Audiences a ServiceAccount token may be for (the apiserver's `--api-audiences`;
    /// empty: the issuer's name, the apiserver's default).
    pub api_audiences: Vec<String>,
    /// Deny everything once the RBAC objects have been stale for longer than this (`None`:
    /// local decisions stand however long upstream is away).
    pub max_authz_staleness: Option<Duration>,
    /// How long a successful TokenReview is trusted (capped by the token's own expiry).
    pub token_success_ttl: Duration,
    /// How long a failed TokenReview is remembered.
    pub token_failure_ttl: Duration,
    /// How much longer than `token_success_ttl` a reviewed token stays accepted while
    /// upstream is unreachable (never past the token's own expiry; default none).
    pub token_offline_grace: Duration,
    /// A trusted front proxy's headers.
    pub request_header: RequestHeader,
    /// Online, ask upstream (a `SubjectAccessReview`) before refusing what the local RBAC
    /// denies, for clusters that also authorize otherwise (Node, webhooks).
    pub confirm_denials: bool,
}

/// A caller's bearer token, kept to forward it upstream; never printed.
#[derive(Clone)]
pub(crate) struct BearerToken(pub Arc<str>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            mode: Mode::AlwaysAllow,
            api_audiences: Vec::new(),
            max_authz_staleness: None,
            token_success_ttl: Duration::from_secs(120),
            token_failure_ttl: Duration::from_secs(15),
            token_offline_grace: Duration::ZERO,
            request_header: RequestHeader::default(),
            confirm_denials: false,
        }
    }
}

/// On a request forwarded although the local RBAC denies it (upstream decides while it
/// answers): the `403` to give if upstream stops answering before it does.
#[derive(Clone)]
pub(crate) struct LocallyDenied(pub crate::errors::ApiError);

/// The authenticated caller of a request, in its extensions once authentication passed it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who the request acts as (after impersonation).
    pub user: User,
    /// The bearer token the caller authenticated with, if it did so (forwarded as it is).
    pub(crate) token: Option<BearerToken>,
}

/// The state of authentication and authorization, shared by every request.
pub(crate) struct Access {
    pub config: AccessConfig,
    pub policy: policy::PolicyCache,
    pub issuer: authenticate::IssuerCache,
    pub verified: authenticate::VerifiedTokens,
    pub reviews: token_review::TokenReviews,
    pub confirmations: confirm::Confirmations,
}

impl Access {
    pub fn new(config: AccessConfig) -> Arc<Access> {
        Arc::new(Access {
            reviews: token_review::TokenReviews::new(
                config.token_success_ttl,
                config.token_failure_ttl,
                config.token_offline_grace,
            ),
            config,
            policy: policy::PolicyCache::default(),
            issuer: authenticate::IssuerCache::default(),
            verified: authenticate::VerifiedTokens::default(),
            confirmations: confirm::Confirmations::default(),
        })
    }
}

/// The cluster's client CA (PEM) as sync stored it (`kube-system/extension-apiserver-authentication`'s
/// `client-ca-file`), for the TLS layer to trust; empty if none is stored.
pub fn cluster_client_ca(store: &vai_store::Store) -> Vec<u8> {
    let document = match store.document(vai_store::keys::IDENTITY_CLIENT_CA) {
        Ok(Some(document)) => document,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cluster's client CA");
            return Vec::new();
        }
    };
    serde_json::from_slice::<serde_json::Value>(&document.body)
        .ok()
        .and_then(|cm| {
            cm["data"]["client-ca-file"]
                .as_str()
                .map(|pem| pem.as_bytes().to_vec())
        })
        .unwrap_or_default()
}

/// Starts what keeps access current (the RBAC policy, followed from the store).
pub(crate) fn start(app: &App) {
    if app.access.config.mode == Mode::Rbac {
        policy::follow(app.clone());
    }
}

/// Authenticates and authorizes a request before anything answers it.
pub(crate) async fn guard(State(app): State<App>, mut request: Request, next: Next) -> Response {
    if app.access.config.mode == Mode::AlwaysAllow {
        return next.run(request).await;
    }
    let started = Instant::now();
    let info = request
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .expect("the request was resolved first");
    let (authenticated, token) = match authenticate::caller(&app, &request).await {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(verb = info.verb, path = request.uri().path(), error = %e.message, "unauthenticated");
            return e.into_response();
        }
    };
    let user = match impersonate::apply(&app, authenticated, request.headers()) {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    let attributes = forbidden::attributes(&info, request.uri().path());
    let decision = decided(&app, &user, &attributes).await;
    let forwarded = decide::forwarded(&app, &info, request.method(), request.uri().path());
    let reachable = app.syncer.health().borrow().reachable;
    // What vai forwards while upstream answers, upstream authorizes itself, as the caller.
    let mut allowed = decision.allowed || (forwarded && reachable);
    // The query API filters what the caller may not list instead of refusing it.
    if !allowed && let Some(scope) = scope::of_query(&app, &user, &info, request.uri()) {
        request.extensions_mut().insert(scope);
        allowed = true;
    }
    tracing::debug!(
        user = %user.name,
        verb = info.verb,
        resource = info.resource.as_ref().map(|r| r.plural.as_str()).unwrap_or(""),
        namespace = info.resource.as_ref().and_then(|r| r.namespace.as_deref()).unwrap_or(""),
        path = request.uri().path(),
        allowed = decision.allowed,
        forwarded,
        reason = %decision.reason,
        micros = started.elapsed().as_micros() as u64,
        "access"
    );
    if !allowed {
        return forbidden::forbidden(&user, &attributes, &decision.reason).into_response();
    }
    if !decision.allowed {
        // Forwarded for upstream to decide; should upstream go away first, the local
        // decision stands.
        request
            .extensions_mut()
            .insert(LocallyDenied(forbidden::forbidden(
                &user,
                &attributes,
                &decision.reason,
            )));
    }
    request.extensions_mut().insert(Caller { user, token });
    next.run(request).await
}
