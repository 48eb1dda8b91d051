//! A trusted front proxy (the apiserver's `--requestheader-*` flags): a UI back-end that has
//! already authenticated its users presents a client certificate signed by
//! `--requestheader-client-ca-file` (with a common name in `--requestheader-allowed-names`,
//! if given) and names the user in `X-Remote-User`, the groups in `X-Remote-Group` and extras
//! in `X-Remote-Extra-KEY`. Without a user header the request is authenticated otherwise, as
//! the apiserver does.

use axum::http::HeaderMap;
use vai_access::User;
use vai_access::authn::certificate;

use crate::errors::ApiError;

use super::authenticate::with_authenticated;
use super::forbidden::unauthorized;

/// The front proxy's headers (the apiserver's defaults).
#[derive(Debug, Clone)]
pub struct RequestHeader {
    /// Common names a front proxy's certificate may have (empty: any signed by its CA).
    pub allowed_names: Vec<String>,
    /// Headers naming the user, the first present wins.
    pub username_headers: Vec<String>,
    /// Headers naming groups (every value of each).
    pub group_headers: Vec<String>,
    /// Prefixes of headers naming extras (`X-Remote-Extra-KEY: value`).
    pub extra_headers_prefixes: Vec<String>,
}

impl Default for RequestHeader {
    fn default() -> RequestHeader {
        RequestHeader {
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }
}

impl RequestHeader {
    /// Whether `name` is one of the front proxy's headers (never passed upstream).
    pub(crate) fn names(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.username_headers
            .iter()
            .chain(&self.group_headers)
            .any(|h| h.eq_ignore_ascii_case(&name))
            || self
                .extra_headers_prefixes
                .iter()
                .any(|p| name.starts_with(&p.to_ascii_lowercase()))
    }
}

/// The user a front proxy names, if the request carries a user header: `Some(Err)` when the
/// proxy's certificate is not one of the allowed names.
pub(crate) fn user(
    config: &RequestHeader,
    der: &[u8],
    headers: &HeaderMap,
) -> Option<Result<User, ApiError>> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let name = config
        .username_headers
        .iter()
        .find_map(|h| value(h).filter(|v| !v.is_empty()))?
        .to_string();
    if !config.allowed_names.is_empty() {
        let proxy = certificate::user(der).ok().map(|u| u.name);
        if !proxy.is_some_and(|cn| config.allowed_names.contains(&cn)) {
            tracing::debug!("a front proxy certificate whose name is not allowed");
            return Some(Err(unauthorized()));
        }
    }
    let groups = config
        .group_headers
        .iter()
        .flat_map(|h| headers.get_all(h.as_str()))
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (header, v) in headers {
        for prefix in &config.extra_headers_prefixes {
            let lower = prefix.to_ascii_lowercase();
            if let (Some(key), Ok(v)) = (header.as_str().strip_prefix(&lower), v.to_str()) {
                let key = super::impersonate::percent_decode(key).to_lowercase();
                extra.entry(key).or_default().push(v.to_string());
            }
        }
    }
    Some(Ok(with_authenticated(User {
        name,
        uid: String::new(),
        groups,
        extra,
    })))
}
