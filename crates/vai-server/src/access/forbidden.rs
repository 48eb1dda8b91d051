//! A request in the authorizer's terms ([`attributes`]) and the apiserver's `403` for it
//! ([`forbidden`]), worded as `responsewriters.Forbidden` words it, so clients print the same.

use axum::http::StatusCode;
use serde_json::json;
use vai_access::{Attributes, User};

use crate::errors::ApiError;
use crate::request_info::RequestInfo;

/// What a resolved request asks, for the authorizer.
pub(crate) fn attributes(info: &RequestInfo, path: &str) -> Attributes {
    match &info.resource {
        Some(target) => Attributes::Resource {
            verb: info.verb.to_string(),
            api_group: target.group.clone(),
            resource: target.plural.clone(),
            subresource: target.subresource.clone(),
            // A namespace is its own namespace (`/api/v1/namespaces/NS`), as the apiserver
            // resolves it, so a RoleBinding in NS may grant reading NS itself.
            namespace: match (
                &target.namespace,
                target.group.as_str(),
                target.plural.as_str(),
            ) {
                (None, "", "namespaces") => target.name.clone(),
                (namespace, _, _) => namespace.clone(),
            },
            name: info.name.clone(),
        },
        None => Attributes::NonResource {
            verb: info.verb.to_string(),
            path: path.to_string(),
        },
    }
}

/// `403 Forbidden` for `user` asking `attributes`, with the authorizer's `reason` if any.
pub(crate) fn forbidden(user: &User, attributes: &Attributes, reason: &str) -> ApiError {
    let mut message = match attributes {
        Attributes::NonResource { verb, path } => {
            format!("User {:?} cannot {verb} path {path:?}", user.name)
        }
        Attributes::Resource {
            verb,
            api_group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let resource = match subresource {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.clone(),
            };
            match namespace.as_deref().filter(|ns| !ns.is_empty()) {
                Some(ns) => format!(
                    "User {:?} cannot {verb} resource {resource:?} in API group {api_group:?} in the namespace {ns:?}",
                    user.name
                ),
                None => format!(
                    "User {:?} cannot {verb} resource {resource:?} in API group {api_group:?} at the cluster scope",
                    user.name
                ),
            }
        }
    };
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    match attributes {
        Attributes::NonResource { .. } => ApiError {
            details: Some(json!({})),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("forbidden: {message}"),
            )
        },
        Attributes::Resource {
            api_group,
            resource,
            name,
            ..
        } => {
            let qualified = if api_group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{api_group}")
            };
            let name = name.clone().unwrap_or_default();
            let whom = if name.is_empty() {
                format!("{qualified} is forbidden")
            } else {
                format!("{qualified} {name:?} is forbidden")
            };
            // As the apiserver's: no empty group, no empty name.
            let mut details = json!({"kind": resource});
            if !api_group.is_empty() {
                details["group"] = json!(api_group);
            }
            if !name.is_empty() {
                details["name"] = json!(name);
            }
            ApiError {
                details: Some(details),
                ..ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!("{whom}: {message}"),
                )
            }
        }
    }
}

/// `401 Unauthorized`, as the apiserver answers any credential it does not accept (the
/// cause goes to the log, never to the caller).
pub(crate) fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> User {
        User {
            name: "alice".into(),
            ..User::default()
        }
    }

    #[test]
    fn messages_as_the_apiserver_words_them() {
        let get = Attributes::Resource {
            verb: "get".into(),
            api_group: String::new(),
            resource: "pods".into(),
            subresource: Some("log".into()),
            namespace: Some("team".into()),
            name: Some("web".into()),
        };
        assert_eq!(
            forbidden(&alice(), &get, "").message,
            r#"pods "web" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "team""#
        );
        let list = Attributes::Resource {
            verb: "list".into(),
            api_group: "apps".into(),
            resource: "deployments".into(),
            subresource: None,
            namespace: None,
            name: None,
        };
        assert_eq!(
            forbidden(&alice(), &list, "").message,
            r#"deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" at the cluster scope"#
        );
        let path = Attributes::NonResource {
            verb: "get".into(),
            path: "/metrics".into(),
        };
        assert_eq!(
            forbidden(&alice(), &path, "RBAC: role missing").message,
            r#"forbidden: User "alice" cannot get path "/metrics": RBAC: role missing"#
        );
    }
}
