//! Who is calling, as the apiserver's authenticators decide it, first match wins: a trusted
//! front proxy's `X-Remote-*` headers (`front_proxy`); a client certificate the TLS
//! handshake verified against the client CAs; a ServiceAccount token,
//! verified locally against the issuer's keys and the objects it is bound to in the cache;
//! any other bearer token through a TokenReview upstream (cached, `token_review`).
//! Anonymous requests are refused (401). Everything here works offline except the
//! TokenReview of a token not reviewed recently.
//!
//! The reason a credential failed goes to the debug log, never to the caller, and a token
//! never appears in a log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::header;
use vai_access::User;
use vai_access::authn::service_account::{BoundKind, BoundToken, Issuer};
use vai_access::authn::{self, certificate};
use vai_store::keys;

use crate::app::App;
use crate::errors::ApiError;
use crate::listen::PeerCertificate;

use super::BearerToken;
use super::expiring::Expiring;
use super::forbidden::unauthorized;
use super::front_proxy;

/// How long a verified ServiceAccount token is accepted without verifying it again: the
/// apiserver's own token cache (`TokenSuccessCacheTTL`), so a deleted pod's token stops
/// working as soon after as it does upstream. Its expiry is checked again after at most this.
const VERIFIED_TTL: Duration = Duration::from_secs(10);

/// Most verified tokens remembered.
const MAX_VERIFIED: usize = 10_000;

/// ServiceAccount tokens verified lately, by the HMAC of the token (never the token).
pub(crate) struct VerifiedTokens(Expiring<super::token_review::Key, User>);

impl Default for VerifiedTokens {
    fn default() -> VerifiedTokens {
        VerifiedTokens(Expiring::new(MAX_VERIFIED))
    }
}

/// How long the issuer's keys are used before the store is read again.
const ISSUER_REFRESH: Duration = Duration::from_secs(10);

/// The ServiceAccount issuer as last read from the store's identity documents.
#[derive(Default)]
pub(crate) struct IssuerCache {
    current: Mutex<Option<(Instant, Option<Arc<Issuer>>)>>,
}

impl IssuerCache {
    /// The issuer, re-read from the store at most every [`ISSUER_REFRESH`]; `None` while sync
    /// has stored no usable keys.
    async fn get(&self, app: &App) -> Option<Arc<Issuer>> {
        if let Some((read, issuer)) = &*self.current.lock().expect("issuer lock")
            && read.elapsed() < ISSUER_REFRESH
        {
            return issuer.clone();
        }
        let audiences = app.access.config.api_audiences.clone();
        let issuer = app
            .blocking(move |store| -> Result<Option<Issuer>, ApiError> {
                let (Some(openid), Some(jwks)) = (
                    store
                        .document(keys::IDENTITY_OPENID_CONFIGURATION)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                    store
                        .document(keys::IDENTITY_JWKS)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                ) else {
                    return Ok(None);
                };
                let name = serde_json::from_slice::<serde_json::Value>(&openid.body)
                    .ok()
                    .and_then(|v| v["issuer"].as_str().map(str::to_string));
                let Some(name) = name else {
                    return Ok(None);
                };
                let audiences = if audiences.is_empty() {
                    vec![name.clone()]
                } else {
                    audiences
                };
                match Issuer::new(&name, audiences, &jwks.body) {
                    Ok(issuer) => Ok(Some(issuer)),
                    Err(e) => {
                        tracing::warn!(error = %e, "the cluster's ServiceAccount keys are unusable");
                        Ok(None)
                    }
                }
            })
            .await
            .ok()
            .flatten()
            .map(Arc::new);
        *self.current.lock().expect("issuer lock") = Some((Instant::now(), issuer.clone()));
        issuer
    }
}

/// The caller of `request` (with the bearer token that authenticated it, if one did), or 401.
pub(crate) fn caller(
    app: &App,
    request: &Request,
) -> impl Future<Output = Result<(User, Option<BearerToken>), ApiError>> + Send + use<> {
    let app = app.clone();
    let peer = request.extensions().get::<PeerCertificate>().cloned();
    let front = peer.as_ref().filter(|p| p.front_proxy).and_then(|p| {
        front_proxy::user(&app.access.config.request_header, &p.der, request.headers())
    });
    let token = bearer(request);
    async move {
        if let Some(user) = front {
            return user.map(|user| (user, None));
        }
        if let Some(peer) = peer.filter(|p| p.client) {
            return certificate::user(&peer.der)
                .map(|user| (user, None))
                .map_err(|e| refused(&e.to_string()));
        }
        let user = by_token(&app, token.as_deref()).await?;
        Ok((user, token.map(|t| BearerToken(t.into()))))
    }
}

async fn by_token(app: &App, token: Option<&str>) -> Result<User, ApiError> {
    let Some(token) = token else {
        return Err(refused("no credentials"));
    };
    let key = app.access.reviews.key_of(token);
    if let Some(user) = app.access.verified.0.get(&key) {
        return Ok(user);
    }
    if let Some(issuer) = app.access.issuer.get(app).await
        && issuer.issued(token)
    {
        let bound = issuer.verify(token).map_err(|e| refused(&e.to_string()))?;
        match bindings_hold(app, &bound).await? {
            Some(true) => {
                let user = bound.user();
                app.access.verified.0.put(key, user.clone(), VERIFIED_TTL);
                return Ok(user);
            }
            Some(false) => return Err(refused("an object the token is bound to is gone")),
            // A bound type vai does not cache: only upstream can tell.
            None => {}
        }
    }
    app.access.reviews.review(app, token).await
}

fn refused(why: &str) -> ApiError {
    tracing::debug!(cause = why, "credential refused");
    unauthorized()
}

/// The bearer token of `Authorization: Bearer …`, if any.
fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// Whether every object the token is bound to is in the cache with the UID the token names;
/// `None` if one of their types is not cached (synced), so the cache cannot tell.
async fn bindings_hold(app: &App, bound: &BoundToken) -> Result<Option<bool>, ApiError> {
    let mut wanted = Vec::new();
    for (kind, binding) in bound.bindings() {
        let (resource, namespace) = match kind {
            BoundKind::ServiceAccount => ("/v1/serviceaccounts", bound.namespace.clone()),
            BoundKind::Pod => ("/v1/pods", bound.namespace.clone()),
            BoundKind::Secret => ("/v1/secrets", bound.namespace.clone()),
            BoundKind::Node => ("/v1/nodes", String::new()),
        };
        if !app.syncer.synced(resource) {
            return Ok(None);
        }
        wanted.push((
            resource,
            namespace,
            binding.name.clone(),
            binding.uid.clone(),
        ));
    }
    app.blocking(move |store| {
        for (resource, namespace, name, uid) in wanted {
            let object = store
                .get(resource, &namespace, &name, None)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let held = object
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
                .is_some_and(|o| o["metadata"]["uid"].as_str() == Some(uid.as_str()));
            if !held {
                return Ok(Some(false));
            }
        }
        Ok(Some(true))
    })
    .await
}

/// The groups an authenticated user always has (added where an authenticator did not).
pub(crate) fn with_authenticated(mut user: User) -> User {
    if !user.groups.iter().any(|g| g == authn::AUTHENTICATED) {
        user.groups.push(authn::AUTHENTICATED.into());
    }
    user
}
