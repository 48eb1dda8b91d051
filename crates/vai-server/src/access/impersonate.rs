//! Caller-supplied `Impersonate-*` headers, honoured as the apiserver honours them: only when
//! the caller may `impersonate` each thing named (the user — or the ServiceAccount —, each
//! group, the UID, each extra value), decided by the same local RBAC; otherwise `403`.
//!
//! A caller who authenticated with a bearer token has its token and its `Impersonate-*`
//! headers forwarded as they are (upstream checks them again); anyone else's are not
//! forwarded: upstream sees the identity decided here, impersonated with vai's credentials
//! (`proxy`).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use vai_access::{Attributes, User};

use crate::app::App;
use crate::errors::ApiError;

use super::authenticate::with_authenticated;
use super::decide::decide;
use super::forbidden::forbidden;

const USER: &str = "impersonate-user";
const UID: &str = "impersonate-uid";
const GROUP: &str = "impersonate-group";
const EXTRA: &str = "impersonate-extra-";

/// Whether a header is one of the impersonation headers.
pub(crate) fn is_impersonation(name: &str) -> bool {
    name.starts_with("impersonate-")
}

/// The user the request acts as: `caller`, or whom it may impersonate.
pub(crate) fn apply(app: &App, caller: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let text = |name: &str| -> Result<Vec<String>, ApiError> {
        headers
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str().map(str::to_string).map_err(|_| {
                    ApiError::bad_request(format!("the {name} header is not valid text"))
                })
            })
            .collect()
    };
    let user = text(USER)?;
    let uid = text(UID)?;
    let groups = text(GROUP)?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA) {
            let key = percent_decode(key).to_lowercase();
            let value = value.to_str().map_err(|_| {
                ApiError::bad_request(format!("the {name} header is not valid text"))
            })?;
            extra.entry(key).or_default().push(value.to_string());
        }
    }
    let Some(name) = user.first().cloned() else {
        if uid.is_empty() && groups.is_empty() && extra.is_empty() {
            return Ok(caller);
        }
        return Err(ApiError::bad_request(
            "requested impersonation of groups, a UID or extras without impersonating a user",
        ));
    };
    let check = |attributes: Attributes| -> Result<(), ApiError> {
        let decision = decide(app, &caller, &attributes);
        if decision.allowed {
            Ok(())
        } else {
            Err(forbidden(&caller, &attributes, &decision.reason))
        }
    };
    let resource =
        |group: &str, resource: &str, sub: Option<&str>, ns: Option<&str>, name: &str| {
            Attributes::Resource {
                verb: "impersonate".into(),
                api_group: group.into(),
                resource: resource.into(),
                subresource: sub.map(str::to_string),
                namespace: ns.map(str::to_string),
                name: Some(name.to_string()),
            }
        };
    let service_account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'));
    let mut implied_groups = Vec::new();
    match service_account {
        Some((ns, sa)) => {
            check(resource("", "serviceaccounts", None, Some(ns), sa))?;
            if groups.is_empty() {
                implied_groups = vec![
                    "system:serviceaccounts".to_string(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => check(resource("", "users", None, None, &name))?,
    }
    for group in &groups {
        check(resource("", "groups", None, None, group))?;
    }
    for value in &uid {
        check(resource("authentication.k8s.io", "uids", None, None, value))?;
    }
    for (key, values) in &extra {
        for value in values {
            check(resource(
                "authentication.k8s.io",
                "userextras",
                Some(key),
                None,
                value,
            ))?;
        }
    }
    let mut groups = groups;
    groups.extend(implied_groups);
    let user = User {
        name,
        uid: uid.into_iter().next().unwrap_or_default(),
        groups,
        extra,
    };
    if user.name == "system:anonymous" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "vai serves no anonymous requests, impersonated or not",
        ));
    }
    Ok(with_authenticated(user))
}

/// Decodes `%XX` escapes (extra keys are escaped in header names, which cannot hold `/`).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes an extra key for an `Impersonate-Extra-` header name.
pub(crate) fn percent_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~!#$&'*+^`|".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_survive_a_header_name() {
        let key = "authentication.kubernetes.io/pod-name";
        let encoded = percent_encode(key);
        assert_eq!(encoded, "authentication.kubernetes.io%2Fpod-name");
        assert!(axum::http::HeaderName::try_from(format!("impersonate-extra-{encoded}")).is_ok());
        assert_eq!(percent_decode(&encoded), key);
        assert_eq!(percent_decode("a%2fb%zz"), "a/b%zz");
    }
}
