//! Honesty about the age of answers: when a cached type's data may be stale (upstream does not
//! answer, or the type's watch is unhealthy), responses carry a `Warning` header (kubectl
//! prints it) and machine-readable `X-Vai-*` headers. What is stale is decided by
//! [`vai_sync::Freshness`]; this module only writes the headers.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use vai_sync::Freshness;

use crate::app::App;

/// `X-Vai-State`: `live`, `stale` or `syncing`.
pub const STATE: HeaderName = HeaderName::from_static("x-vai-state");
/// `X-Vai-Stale-Since`: RFC 3339 time since which the data may be stale.
pub const STALE_SINCE: HeaderName = HeaderName::from_static("x-vai-stale-since");
/// `X-Vai-Last-Contact`: RFC 3339 time upstream last answered.
pub const LAST_CONTACT: HeaderName = HeaderName::from_static("x-vai-last-contact");

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}

/// Adds the freshness headers of the type with store key `key`.
pub(crate) fn annotate(app: &App, key: &str, headers: &mut HeaderMap) {
    let freshness = app.syncer.freshness(key);
    headers.insert(STATE, HeaderValue::from_static(freshness.as_str()));
    if let Some(ms) = app.syncer.health().borrow().last_ok_ms
        && let Ok(v) = HeaderValue::from_str(&rfc3339(ms))
    {
        headers.insert(LAST_CONTACT, v);
    }
    if let Freshness::Stale { since_ms, cause } = freshness {
        let since = rfc3339(since_ms);
        if let Ok(v) = HeaderValue::from_str(&since) {
            headers.insert(STALE_SINCE, v);
        }
        // RFC 7234 warn-code 299 ("miscellaneous persistent warning"), as the apiserver uses.
        let text = format!("vai: data may be stale since {since}: {cause}")
            .replace(['"', '\\'], "'")
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect::<String>();
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            headers.append(axum::http::header::WARNING, v);
        }
    }
}
