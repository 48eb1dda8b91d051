//! `SelfSubjectAccessReview` and `SelfSubjectRulesReview` (what `kubectl auth can-i` and UIs
//! such as k9s ask before showing a view) answered by vai from the same decision it
//! authorizes with (the local RBAC's, confirmed upstream where configured), online and offline, instead of being forwarded — so they answer for the
//! caller, never for vai's own identity, and never wait on a link that is down. They are
//! read as JSON or as the protobuf kubectl sends, and answered as JSON.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authorization::v1::{
    SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReviewStatus,
};
use vai_access::Attributes;

use crate::app::App;
use crate::errors::ApiError;

use super::Caller;

const ACCESS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const RULES: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";

/// Answers the request if it is a self-review by an authenticated caller; `Err` gives it back.
pub(crate) async fn answer(app: &App, request: Request) -> Result<Response, Request> {
    let path = request.uri().path();
    if request.method() != Method::POST || (path != ACCESS && path != RULES) {
        return Err(request);
    }
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return Err(request);
    };
    let rules = path == RULES;
    let protobuf = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(super::protobuf::CONTENT_TYPE));
    let body = match axum::body::to_bytes(request.into_body(), 1 << 20).await {
        Ok(body) => body,
        Err(e) => return Ok(ApiError::bad_request(format!("request body: {e}")).into_response()),
    };
    let answered = if rules {
        rules_review(app, &caller, &body, protobuf)
    } else {
        access_review(app, &caller, &body, protobuf).await
    };
    Ok(match answered {
        Ok(json) => Response::builder()
            .status(StatusCode::CREATED)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json))
            .expect("a valid response"),
        Err(e) => e.into_response(),
    })
}

async fn access_review(
    app: &App,
    caller: &Caller,
    body: &[u8],
    protobuf: bool,
) -> Result<Vec<u8>, ApiError> {
    let mut review: SelfSubjectAccessReview = if protobuf {
        super::protobuf::access_review(body)
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
    .map_err(|e| ApiError::bad_request(format!("SelfSubjectAccessReview: {e}")))?;
    let attributes = match (
        &review.spec.resource_attributes,
        &review.spec.non_resource_attributes,
    ) {
        (Some(r), None) => Attributes::Resource {
            verb: r.verb.clone().unwrap_or_default(),
            api_group: r.group.clone().unwrap_or_default(),
            resource: r.resource.clone().unwrap_or_default(),
            subresource: r.subresource.clone().filter(|s| !s.is_empty()),
            namespace: r.namespace.clone().filter(|s| !s.is_empty()),
            name: r.name.clone().filter(|s| !s.is_empty()),
        },
        (None, Some(n)) => Attributes::NonResource {
            verb: n.verb.clone().unwrap_or_default(),
            path: n.path.clone().unwrap_or_default(),
        },
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "SelfSubjectAccessReview: exactly one of spec.resourceAttributes and spec.nonResourceAttributes is required",
            ));
        }
    };
    let decision = super::decided(app, &caller.user, &attributes).await;
    review.status = Some(SubjectAccessReviewStatus {
        allowed: decision.allowed,
        reason: Some(decision.reason).filter(|r| !r.is_empty()),
        ..SubjectAccessReviewStatus::default()
    });
    Ok(serde_json::to_vec(&review).expect("a review serialises"))
}

fn rules_review(
    app: &App,
    caller: &Caller,
    body: &[u8],
    protobuf: bool,
) -> Result<Vec<u8>, ApiError> {
    let mut review: SelfSubjectRulesReview = if protobuf {
        super::protobuf::rules_review(body)
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
    .map_err(|e| ApiError::bad_request(format!("SelfSubjectRulesReview: {e}")))?;
    let namespace = review.spec.namespace.clone().unwrap_or_default();
    if namespace.is_empty() {
        // As the apiserver's selfsubjectrulesreview storage refuses it.
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let Some(policy) = app.access.policy.get() else {
        return Err(ApiError::unavailable(
            "vai has not built the RBAC policy yet",
        ));
    };
    review.status = Some(policy.policy().rules_for(&caller.user, &namespace));
    Ok(serde_json::to_vec(&review).expect("a review serialises"))
}
