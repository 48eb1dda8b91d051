//! Bearer tokens vai cannot verify itself (static tokens, OIDC, webhook tokens, legacy
//! ServiceAccount tokens) are reviewed upstream with a `TokenReview`, and the answer cached
//! under an HMAC of the token (a per-process random key: the token itself is never kept):
//! success for the configured TTL, capped by the token's own `exp` if it has one; failure for
//! a shorter while; errors (upstream away or failing) never. Concurrent reviews of one token
//! are merged into one request.
//!
//! Offline a token is accepted only while its cached success lasts — plus the configured
//! offline grace (none by default) — and never past its own expiry.

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
    /// When the token itself expires (its `exp`), if it says.
    expires: Option<Instant>,
}

impl Answer {
    /// Whether the answer still holds at `now`; a success held longer while upstream is
    /// away (`offline_grace`), never past the token's expiry.
    fn holds(&self, now: Instant, offline_grace: Option<Duration>) -> bool {
        if self.until > now {
            return true;
        }
        match offline_grace {
            Some(grace) if self.user.is_some() => {
                self.until + grace > now && self.expires.is_none_or(|e| e > now)
            }
            _ => false,
        }
    }
}

/// The cache of TokenReview answers.
pub(crate) struct TokenReviews {
    key: ring::hmac::Key,
    success_ttl: Duration,
    failure_ttl: Duration,
    offline_grace: Duration,
    entries: Mutex<HashMap<Key, Arc<OnceCell<Answer>>>>,
}

impl TokenReviews {
    pub fn new(
        success_ttl: Duration,
        failure_ttl: Duration,
        offline_grace: Duration,
    ) -> TokenReviews {
        let rng = ring::rand::SystemRandom::new();
        TokenReviews {
            key: ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
                .expect("the system's random source"),
            success_ttl,
            failure_ttl,
            offline_grace,
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

    /// The entry for `key`: the cached one while it holds (`offline`: with the grace), a
    /// fresh one otherwise.
    fn entry(&self, key: Key, offline: bool) -> Arc<OnceCell<Answer>> {
        let mut entries = self.entries.lock().expect("token review lock");
        let grace = offline.then_some(self.offline_grace);
        if let Some(cell) = entries.get(&key)
            && cell.get().is_none_or(|a| a.holds(Instant::now(), grace))
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
        let offline = !app.syncer.health().borrow().reachable;
        let cell = self.entry(self.key_of(token), offline);
        let answer = cell
            .get_or_try_init(|| async {
                let user = ask(app, token).await?;
                let left = expiry(token);
                let ttl = if user.is_some() {
                    left.map_or(self.success_ttl, |left| left.min(self.success_ttl))
                } else {
                    self.failure_ttl
                };
                let now = Instant::now();
                Ok::<_, ApiError>(Answer {
                    user,
                    until: now + ttl,
                    expires: left.map(|left| now + left),
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
    let answered =
        super::ask_upstream(app, app.syncer.client().request::<TokenReview>(request)).await;
    let review = match answered {
        Some(Ok(review)) => review,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "a TokenReview failed");
            return Err(unauthorized());
        }
        None => {
            tracing::warn!(
                "a TokenReview got no answer (upstream timed out or became unreachable)"
            );
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
        let second = Duration::from_secs(1);
        let reviews = TokenReviews::new(second, second, Duration::ZERO);
        let key = reviews.key_of("secret-token");
        assert_eq!(key, reviews.key_of("secret-token"));
        assert_ne!(key, reviews.key_of("secret-tokeN"));
        assert!(!key.windows(6).any(|w| w == b"secret"));
        let other = TokenReviews::new(second, second, Duration::ZERO);
        assert_ne!(key, other.key_of("secret-token"), "a per-process key");
    }

    #[test]
    fn offline_grace_extends_a_success_never_a_failure_nor_past_the_expiry() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let user = Some(User::default());
        let success = |expires| Answer {
            user: user.clone(),
            until: now,
            expires,
        };
        assert!(
            !success(None).holds(now + s(1), None),
            "online: the TTL only"
        );
        assert!(success(None).holds(now + s(1), Some(s(60))));
        assert!(!success(None).holds(now + s(61), Some(s(60))));
        assert!(
            !success(None).holds(now + s(1), Some(Duration::ZERO)),
            "default: none"
        );
        assert!(
            !success(Some(now)).holds(now + s(1), Some(s(60))),
            "never past exp"
        );
        let failure = Answer {
            user: None,
            until: now,
            expires: None,
        };
        assert!(!failure.holds(now + s(1), Some(s(60))));
        assert!(failure.holds(now - s(1), None));
    }
}
