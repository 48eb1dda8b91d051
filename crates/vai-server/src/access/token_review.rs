//! Bearer tokens vai cannot verify itself (static tokens, OIDC, webhook tokens, legacy
//! ServiceAccount tokens) are reviewed upstream with a `TokenReview`, and the answer cached
//! under an HMAC of the token (a per-process random key: the token itself is never kept):
//! success for the configured TTL, capped by the token's own `exp` if it has one; failure for
//! a shorter while; errors (upstream away or failing) never. Concurrent reviews of one token
//! are merged into one request.
//!
//! Offline a token is accepted only while its cached success lasts, never past its expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use tokio::sync::OnceCell;
use vai_access::User;

use crate::app::App;
use crate::errors::ApiError;

use super::authenticate::with_authenticated;
use super::forbidden::unauthorized;

/// Most reviews remembered; past it, expired entries are dropped, then everything.
const MAX_ENTRIES: usize = 10_000;

pub(crate) type Key = [u8; 32];

/// An answer from upstream: the user, or a refusal; with how long it holds.
#[derive(Clone)]
struct Answer {
    user: Option<User>,
    until: Instant,
}

/// The cache of TokenReview answers.
pub(crate) struct TokenReviews {
    key: ring::hmac::Key,
    success_ttl: Duration,
    failure_ttl: Duration,
    entries: Mutex<HashMap<Key, Arc<OnceCell<Answer>>>>,
}

impl TokenReviews {
    pub fn new(success_ttl: Duration, failure_ttl: Duration) -> TokenReviews {
        let rng = ring::rand::SystemRandom::new();
        TokenReviews {
            key: ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
                .expect("the system's random source"),
            success_ttl,
            failure_ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cache key of a token: its HMAC under this process's key.
    pub fn key_of(&self, token: &str) -> Key {
        let tag = ring::hmac::sign(&self.key, token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(tag.as_ref());
        key
    }

    /// The entry for `key`: the cached one while it holds, a fresh one otherwise.
    fn entry(&self, key: Key) -> Arc<OnceCell<Answer>> {
        let mut entries = self.entries.lock().expect("token review lock");
        if let Some(cell) = entries.get(&key)
            && cell.get().is_none_or(|a| a.until > Instant::now())
        {
            return cell.clone();
        }
        if entries.len() >= MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, cell| cell.get().is_some_and(|a| a.until > now));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let cell = Arc::new(OnceCell::new());
        entries.insert(key, cell.clone());
        cell
    }

    /// The user `token` authenticates, reviewed upstream unless a recent answer is cached.
    pub async fn review(&self, app: &App, token: &str) -> Result<User, ApiError> {
        let cell = self.entry(self.key_of(token));
        let answer = cell
            .get_or_try_init(|| async {
                let user = ask(app, token).await?;
                let ttl = if user.is_some() {
                    expiry(token).map_or(self.success_ttl, |left| left.min(self.success_ttl))
                } else {
                    self.failure_ttl
                };
                Ok::<_, ApiError>(Answer {
                    user,
                    until: Instant::now() + ttl,
                })
            })
            .await?;
        answer.user.clone().ok_or_else(unauthorized)
    }
}

/// Asks upstream; `Ok(None)` when upstream says the token is not valid.
async fn ask(app: &App, token: &str) -> Result<Option<User>, ApiError> {
    if !app.syncer.health().borrow().reachable {
        tracing::debug!("a token not reviewed recently, and upstream is unreachable");
        return Err(unauthorized());
    }
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let body = serde_json::to_vec(&review).expect("a TokenReview serialises");
    let request = http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid request");
    let answered = tokio::time::timeout(
        app.config.proxy_timeout,
        app.syncer.client().request::<TokenReview>(request),
    )
    .await;
    let review = match answered {
        Ok(Ok(review)) => review,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a TokenReview failed");
            return Err(unauthorized());
        }
        Err(_) => {
            tracing::warn!("a TokenReview timed out");
            return Err(unauthorized());
        }
    };
    let Some(status) = review.status.filter(|s| s.authenticated == Some(true)) else {
        return Ok(None);
    };
    let Some(info) = status.user else {
        return Ok(None);
    };
    Ok(Some(with_authenticated(User {
        name: info.username.unwrap_or_default(),
        uid: info.uid.unwrap_or_default(),
        groups: info.groups.unwrap_or_default(),
        extra: info.extra.unwrap_or_default().into_iter().collect(),
    })))
}

/// How long a JWT-shaped token has left by its `exp` claim (read, not verified: it only
/// shortens how long upstream's answer is trusted).
fn expiry(token: &str) -> Option<Duration> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["exp"].as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_expiry_shortens_the_trust_and_an_opaque_token_has_none() {
        use base64::Engine;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{{\"exp\":{}}}", now + 30));
        let left = expiry(&format!("h.{payload}.s")).expect("an expiry");
        assert!(left <= Duration::from_secs(30) && left >= Duration::from_secs(25));
        assert_eq!(expiry("static-token-123"), None);
    }

    #[test]
    fn the_cache_key_is_an_hmac_not_the_token() {
        let reviews = TokenReviews::new(Duration::from_secs(1), Duration::from_secs(1));
        let key = reviews.key_of("secret-token");
        assert_eq!(key, reviews.key_of("secret-token"));
        assert_ne!(key, reviews.key_of("secret-tokeN"));
        assert!(!key.windows(6).any(|w| w == b"secret"));
        let other = TokenReviews::new(Duration::from_secs(1), Duration::from_secs(1));
        assert_ne!(key, other.key_of("secret-token"), "a per-process key");
    }
}
