//! Every error vai answers is a Kubernetes `Status` object with the apiserver's code and
//! reason, so kubectl, client-go and kube-rs report it as they would upstream's.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: HTTP code, `reason`, message, and optional details and `Retry-After`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// The `Status.reason` (`NotFound`, `Expired`, `BadRequest`, …).
    pub reason: &'static str,
    /// A message for people.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<serde_json::Value>,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 `NotFound` for one object, worded as the apiserver words it.
    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        let resource = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        ApiError {
            details: Some(json!({"name": name, "group": group, "kind": plural})),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{resource} \"{name}\" not found"),
            )
        }
    }

    /// 500 `InternalError`: vai's own fault (a failed task, a broken invariant).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// 503 `ServiceUnavailable` with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                message,
            )
        }
    }

    /// The `Status` object's JSON.
    pub fn body(&self) -> serde_json::Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        let mut details = self.details.clone();
        if let Some(seconds) = self.retry_after {
            let d = details.get_or_insert_with(|| json!({}));
            d["retryAfterSeconds"] = json!(seconds);
        }
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.code,
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<vai_store::Error> for ApiError {
    fn from(e: vai_store::Error) -> ApiError {
        use vai_store::Error as E;
        let message = e.to_string();
        match e {
            E::InvalidSelector(_) | E::UnsupportedField(_) | E::InvalidContinue(_) => {
                ApiError::bad_request(message)
            }
            E::InvalidResourceVersion(_) => ApiError::bad_request(message),
            E::Gone { .. } | E::Expired => ApiError::new(StatusCode::GONE, "Expired", message),
            E::TooLargeResourceVersion { .. } => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", message)
            },
            E::Unavailable(_) => ApiError::unavailable(format!(
                "{message} (vai's shared store is down; it answers again once the database does)"
            )),
            E::UnknownResource(_) => ApiError::unavailable(format!(
                "{message}: the cache has not synced this type yet and upstream is unreachable"
            )),
            other => {
                tracing::error!(error = %other, "store failure while serving");
                ApiError::internal(format!("vai's store failed: {other}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_objects_carry_code_reason_and_retry_after() {
        let e = ApiError::not_found("apps", "deployments", "web");
        let body = e.body();
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["code"], 404);
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["message"], "deployments.apps \"web\" not found");
        let e = ApiError::from(vai_store::Error::Expired);
        assert_eq!((e.code.as_u16(), e.reason), (410, "Expired"));
        let e = ApiError::unavailable("down");
        assert_eq!(e.body()["details"]["retryAfterSeconds"], 5);
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }
}
