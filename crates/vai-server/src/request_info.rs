//! What a request asks for, resolved once at the router with the apiserver's own rules
//! (`k8s.io/apiserver/pkg/endpoints/request`'s `RequestInfo`): the verb (`get`, `list`,
//! `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for non-resource paths
//! the method in lower case), and for resource requests the group, version, resource,
//! subresource, namespace and name.
//!
//! `resolve` puts a [`RequestInfo`] in every request's extensions before any handler runs;
//! handlers take it as an extractor. Authentication and authorization plug in here: they need
//! exactly this, decided once. This module only reads the request; it never answers one.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Request};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::path::{self, ResourcePath};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The verb, as the apiserver's authorizer sees it.
    pub verb: &'static str,
    /// What the path addresses, for a request on resources (`/api/...`, `/apis/...`).
    pub resource: Option<ResourcePath>,
    /// The object's name as the authorizer sees it: the path's, or for a list or watch the
    /// name a `fieldSelector=metadata.name=X` pins.
    pub name: Option<String>,
    /// Addressed with the deprecated `/watch/` path prefix.
    pub watch_path: bool,
}

impl RequestInfo {
    /// Resolves a request from its method, path and query string.
    pub fn new(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
        let (watch_path, resource) = match strip_watch_prefix(path) {
            Some(rest) => (true, path::parse(&rest)),
            None => (false, path::parse(path)),
        };
        let Some(resource) = resource else {
            return RequestInfo {
                verb: non_resource_verb(method),
                resource: None,
                name: None,
                watch_path: false,
            };
        };
        let mut verb = match *method {
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => non_resource_verb(method),
        };
        if watch_path {
            verb = "watch";
        }
        let mut name = resource.name.clone();
        // A parameter's first value counts, as the apiserver's decoding of url.Values takes it.
        let param = |key: &str| {
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        if name.is_none() && verb == "get" {
            let watch = param("watch").is_some_and(|w| crate::read::params::is_true(&w));
            verb = if watch { "watch" } else { "list" };
        }
        if name.is_none() && matches!(verb, "list" | "watch") {
            name = param("fieldSelector")
                .as_deref()
                .and_then(exact_name)
                .map(String::from);
        }
        if name.is_none() && verb == "delete" {
            verb = "deletecollection";
        }
        RequestInfo {
            verb,
            resource: Some(resource),
            name,
            watch_path,
        }
    }

    /// Whether the request reads (get, list or watch).
    pub fn is_read(&self) -> bool {
        matches!(self.verb, "get" | "list" | "watch")
    }
}

/// `/api/v1/watch/...` → `/api/v1/...` (likewise under `/apis/{group}/{version}`).
fn strip_watch_prefix(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let at = match parts.as_slice() {
        ["api", _, "watch", ..] => 2,
        ["apis", _, _, "watch", ..] => 3,
        _ => return None,
    };
    let mut rest = parts;
    rest.remove(at);
    Some(format!("/{}", rest.join("/")))
}

fn non_resource_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        _ => "other",
    }
}

/// The name a field selector requires exactly (`metadata.name=X` or `==`), if it is a valid
/// path segment, as the apiserver's `RequiresExactMatch` and `IsValidPathSegmentName` decide.
fn exact_name(selector: &str) -> Option<&str> {
    let mut found = None;
    for term in selector.split(',') {
        let term = term.trim();
        let value = term
            .strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="));
        if let Some(v) = value {
            if found.is_some_and(|f| f != v) {
                return None;
            }
            found = Some(v);
        }
    }
    found.filter(|n| !n.is_empty() && !matches!(*n, "." | "..") && !n.contains(['/', '%']))
}

/// The router's first layer: resolves the request once and puts its [`RequestInfo`] in the
/// request's extensions.
pub(crate) async fn resolve(mut request: Request, next: Next) -> Response {
    let info = RequestInfo::new(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    request.extensions_mut().insert(info);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<RequestInfo, Infallible> {
        Ok(match parts.extensions.get::<RequestInfo>() {
            Some(info) => info.clone(),
            None => RequestInfo::new(&parts.method, parts.uri.path(), parts.uri.query()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, uri: &str) -> (&'static str, Option<String>, Option<String>) {
        let uri: axum::http::Uri = uri.parse().unwrap();
        let i = RequestInfo::new(&method, uri.path(), uri.query());
        (
            i.verb,
            i.resource.map(|r| r.plural).filter(|p| !p.is_empty()),
            i.name,
        )
    }

    fn some(s: &str) -> Option<String> {
        Some(s.into())
    }

    #[test]
    fn verbs_and_names_as_the_apiserver_resolves_them() {
        use Method as M;
        let pods = some("pods");
        assert_eq!(info(M::GET, "/api/v1/pods"), ("list", pods.clone(), None));
        assert_eq!(
            info(M::GET, "/api/v1/namespaces/ns/pods/p"),
            ("get", pods.clone(), some("p"))
        );
        assert_eq!(
            info(M::GET, "/api/v1/pods?watch=true"),
            ("watch", pods.clone(), None)
        );
        // Any value but `0` and `false` (any case) is a watch, the empty one too.
        for (query, verb) in [
            ("yes", "watch"),
            ("", "watch"),
            ("FALSE", "list"),
            ("0", "list"),
        ] {
            assert_eq!(
                info(M::GET, &format!("/api/v1/pods?watch={query}")).0,
                verb,
                "{query}"
            );
        }
        assert_eq!(
            info(
                M::GET,
                "/api/v1/pods?watch=1&fieldSelector=metadata.name%3Dp"
            ),
            ("watch", pods.clone(), some("p"))
        );
        assert_eq!(
            info(
                M::GET,
                "/api/v1/pods?fieldSelector=metadata.name==p,spec.nodeName=n"
            ),
            ("list", pods.clone(), some("p"))
        );
        // Two different names, or a name that is not a path segment: no name.
        assert_eq!(
            info(
                M::GET,
                "/api/v1/pods?fieldSelector=metadata.name=a,metadata.name=b"
            ),
            ("list", pods.clone(), None)
        );
        assert_eq!(
            info(M::GET, "/api/v1/pods?fieldSelector=metadata.name%3D..").2,
            None
        );
        assert_eq!(
            info(M::GET, "/api/v1/watch/namespaces/ns/pods"),
            ("watch", pods.clone(), None)
        );
        assert_eq!(
            info(M::POST, "/api/v1/namespaces/ns/pods"),
            ("create", pods.clone(), None)
        );
        assert_eq!(
            info(M::PUT, "/api/v1/namespaces/ns/pods/p"),
            ("update", pods.clone(), some("p"))
        );
        assert_eq!(
            info(M::PATCH, "/api/v1/namespaces/ns/pods/p"),
            ("patch", pods.clone(), some("p"))
        );
        assert_eq!(
            info(M::DELETE, "/api/v1/namespaces/ns/pods/p"),
            ("delete", pods.clone(), some("p"))
        );
        assert_eq!(
            info(M::DELETE, "/api/v1/namespaces/ns/pods"),
            ("deletecollection", pods, None)
        );
        assert_eq!(info(M::GET, "/healthz"), ("get", None, None));
        assert_eq!(info(M::POST, "/version"), ("post", None, None));
        let sub = RequestInfo::new(&M::GET, "/api/v1/namespaces/ns/pods/p/log", None);
        assert_eq!(sub.resource.unwrap().subresource.as_deref(), Some("log"));
        assert!(RequestInfo::new(&M::GET, "/api/v1/watch/pods", None).watch_path);
    }
}
