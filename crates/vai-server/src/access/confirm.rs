//! Local denials confirmed upstream (`--confirm-denials`): a cluster may authorize with more
//! than RBAC (the Node authorizer, webhooks), which vai cannot evaluate. With confirmation on,
//! what the local RBAC denies is asked of upstream with a `SubjectAccessReview` while upstream
//! answers, so such callers are not narrowed; the answers are cached as the apiserver's
//! webhook authorizer caches them (allowed 5 minutes, denied 30 seconds), errors never.
//! Offline, the local decision stands.
//!
//! This module never widens an offline decision, and never asks about what RBAC allowed.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use vai_access::rbac::Decision;
use vai_access::{Attributes, User};

use crate::app::App;

use super::expiring::Expiring;

/// How long upstream's "allowed" is trusted (the apiserver's
/// `--authorization-webhook-cache-authorized-ttl`).
const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long upstream's "denied" is trusted (`--authorization-webhook-cache-unauthorized-ttl`).
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Most answers remembered.
const MAX_ANSWERS: usize = 10_000;

/// Upstream's answers, by user and request.
pub(crate) struct Confirmations(Expiring<(User, Attributes), Decision>);

impl Default for Confirmations {
    fn default() -> Confirmations {
        Confirmations(Expiring::new(MAX_ANSWERS))
    }
}

impl Confirmations {
    fn get(&self, key: &(User, Attributes)) -> Option<Decision> {
        self.0.get(key)
    }

    fn put(&self, key: (User, Attributes), decision: &Decision) {
        let ttl = if decision.allowed {
            ALLOWED_TTL
        } else {
            DENIED_TTL
        };
        self.0.put(key, decision.clone(), ttl);
    }
}

/// `local`, or — when it denies, confirmation is on and upstream answers — upstream's decision.
pub(crate) async fn confirmed(
    app: &App,
    user: &User,
    attributes: &Attributes,
    local: Decision,
) -> Decision {
    if local.allowed || !app.access.config.confirm_denials {
        return local;
    }
    if !app.syncer.health().borrow().reachable {
        return local;
    }
    let key = (user.clone(), attributes.clone());
    let upstream = match app.access.confirmations.get(&key) {
        Some(decision) => Some(decision),
        None => ask(app, user, attributes)
            .await
            .inspect(|decision| app.access.confirmations.put(key, decision)),
    };
    match upstream {
        Some(decision) if decision.allowed => decision,
        // Denied upstream too: the local reason, in the apiserver's wording.
        _ => local,
    }
}

/// Upstream's decision, or `None` when it cannot be had (an error: not cached).
async fn ask(app: &App, user: &User, attributes: &Attributes) -> Option<Decision> {
    let review = SubjectAccessReview {
        spec: spec(user, attributes),
        ..SubjectAccessReview::default()
    };
    let body = serde_json::to_vec(&review).expect("a SubjectAccessReview serialises");
    let request = http::Request::post("/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid request");
    let answered = super::ask_upstream(
        app,
        app.syncer.client().request::<SubjectAccessReview>(request),
    )
    .await;
    match answered {
        Some(Ok(review)) => {
            let status = review.status.unwrap_or_default();
            Some(Decision {
                allowed: status.allowed && status.denied != Some(true),
                reason: status.reason.unwrap_or_default(),
            })
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "a SubjectAccessReview failed; the local decision stands");
            None
        }
        None => {
            tracing::warn!("a SubjectAccessReview got no answer; the local decision stands");
            None
        }
    }
}

/// The review's spec: who, and what.
fn spec(user: &User, attributes: &Attributes) -> SubjectAccessReviewSpec {
    let mut spec = SubjectAccessReviewSpec {
        user: Some(user.name.clone()),
        uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
        groups: Some(user.groups.clone()),
        extra: (!user.extra.is_empty()).then(|| user.extra.clone().into_iter().collect()),
        ..SubjectAccessReviewSpec::default()
    };
    match attributes {
        Attributes::Resource {
            verb,
            api_group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            spec.resource_attributes = Some(ResourceAttributes {
                verb: Some(verb.clone()),
                group: Some(api_group.clone()),
                resource: Some(resource.clone()),
                subresource: subresource.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                ..ResourceAttributes::default()
            })
        }
        Attributes::NonResource { verb, path } => {
            spec.non_resource_attributes = Some(NonResourceAttributes {
                verb: Some(verb.clone()),
                path: Some(path.clone()),
            })
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_as_the_webhook_authorizer_keeps_them() {
        let confirmations = Confirmations::default();
        let user = User {
            name: "system:node:n1".into(),
            ..User::default()
        };
        let get = |path: &str| Attributes::NonResource {
            verb: "get".into(),
            path: path.into(),
        };
        let allowed = Decision {
            allowed: true,
            reason: String::new(),
        };
        let denied = Decision {
            allowed: false,
            reason: String::new(),
        };
        confirmations.put((user.clone(), get("/a")), &allowed);
        confirmations.put((user.clone(), get("/b")), &denied);
        assert_eq!(confirmations.get(&(user.clone(), get("/a"))), Some(allowed));
        assert_eq!(confirmations.get(&(user.clone(), get("/b"))), Some(denied));
        assert_eq!(confirmations.get(&(user.clone(), get("/c"))), None);
        let left = |path: &str| confirmations.0.left(&(user.clone(), get(path))).unwrap();
        assert!(left("/a") > Duration::from_secs(290) && left("/b") <= DENIED_TTL);
    }

    #[test]
    fn the_review_names_the_user_and_the_request() {
        let user = User {
            name: "system:node:n1".into(),
            groups: vec!["system:nodes".into()],
            ..User::default()
        };
        let spec = spec(
            &user,
            &Attributes::Resource {
                verb: "get".into(),
                api_group: String::new(),
                resource: "pods".into(),
                subresource: Some("status".into()),
                namespace: Some("ns".into()),
                name: Some("p".into()),
            },
        );
        assert_eq!(spec.user.as_deref(), Some("system:node:n1"));
        assert_eq!(spec.uid, None);
        assert_eq!(spec.extra, None);
        let r = spec.resource_attributes.unwrap();
        assert_eq!(
            (r.verb, r.resource, r.subresource, r.namespace, r.name),
            (
                Some("get".into()),
                Some("pods".into()),
                Some("status".into()),
                Some("ns".into()),
                Some("p".into())
            )
        );
    }
}
