//! The authorization decision for one request (`decide`): the local RBAC policy, failing
//! closed while RBAC has never synced or has been stale for longer than allowed; and whether
//! vai would forward the request ([`forwarded`]), in which case upstream decides while it
//! answers.

use std::time::Duration;

use axum::http::Method;
use vai_access::rbac::Decision;
use vai_access::{Attributes, User};
use vai_sync::Freshness;

use crate::app::App;
use crate::request_info::RequestInfo;

/// The store keys of the RBAC types, which sync always caches when authorization is on.
pub const RBAC_RESOURCES: [&str; 4] = [
    "rbac.authorization.k8s.io/v1/roles",
    "rbac.authorization.k8s.io/v1/clusterroles",
    "rbac.authorization.k8s.io/v1/rolebindings",
    "rbac.authorization.k8s.io/v1/clusterrolebindings",
];

fn deny(reason: impl Into<String>) -> Decision {
    Decision {
        allowed: false,
        reason: reason.into(),
    }
}

/// May `user` do what `attributes` ask, by the cluster's RBAC as vai holds it?
pub(crate) fn decide(app: &App, user: &User, attributes: &Attributes) -> Decision {
    if let Some(missing) = RBAC_RESOURCES.iter().find(|r| !app.syncer.synced(r)) {
        return deny(format!(
            "vai has not synced RBAC ({missing}) from the cluster yet"
        ));
    }
    if let Some(limit) = app.access.config.max_authz_staleness {
        for resource in RBAC_RESOURCES {
            if let Freshness::Stale { since_ms, .. } = app.syncer.freshness(resource) {
                let stale = Duration::from_millis((vai_sync::now_ms() - since_ms).max(0) as u64);
                if stale > limit {
                    return deny(format!(
                        "vai's copy of the cluster's RBAC has been stale for {}s, longer than --max-authz-staleness",
                        stale.as_secs()
                    ));
                }
            }
        }
    }
    match app.access.policy.get() {
        Some(policy) => policy.authorize(user, attributes),
        None => deny("vai has not built the RBAC policy yet"),
    }
}

/// Whether vai forwards this request upstream rather than answering it from the cache
/// (mirrors the router: writes, subresources, uncached types and non-resource paths vai does
/// not serve itself).
pub(crate) fn forwarded(app: &App, info: &RequestInfo, method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return true;
    }
    match &info.resource {
        Some(target) => {
            target.subresource.is_some()
                || app
                    .syncer
                    .resolve(&target.group, &target.version, &target.plural)
                    .is_none()
        }
        None => !served_locally(path),
    }
}

/// The non-resource paths vai answers itself (discovery, version, health, its own).
fn served_locally(path: &str) -> bool {
    matches!(
        path,
        "/api" | "/apis" | "/version" | "/healthz" | "/livez" | "/readyz" | "/metrics"
    ) || path.starts_with("/api/")
        || path.starts_with("/apis/")
        || path.starts_with("/vai/")
}
