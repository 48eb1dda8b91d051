//! Discovery and `/version`, answered from the documents sync stored, so that kubectl and
//! client libraries find their way while upstream is unreachable. Aggregated discovery is
//! served to clients that ask for it (and that upstream offered); the classic documents to
//! the others.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vai_store::keys::discovery_document;

use crate::app::App;
use crate::errors::ApiError;
use crate::form;

/// The stored document for a discovery path, if it is one and it is stored; `406` to an
/// `Accept` that takes neither JSON nor aggregated discovery.
pub(crate) async fn serve(app: &App, path: &str, headers: &HeaderMap) -> Option<Response> {
    let path = path.trim_end_matches('/').to_string();
    let path = path.as_str();
    // `/apis/{group}`: one entry of the `/apis` document.
    let group = path
        .strip_prefix("/apis/")
        .filter(|g| !g.is_empty() && !g.contains('/'));
    let is_discovery = matches!(path, "/version" | "/api" | "/apis")
        || path.starts_with("/api/") && path.matches('/').count() == 2
        || path.starts_with("/apis/") && path.matches('/').count() == 3
        || group.is_some();
    if !is_discovery {
        return None;
    }
    let accept = form::media_ranges(headers);
    let wants_aggregated = accept
        .iter()
        .any(|m| form::param(m, "as") == Some("APIGroupDiscoveryList"));
    let plain = accept.is_empty()
        || accept
            .iter()
            .any(|m| form::is_json(m) && form::param(m, "as").is_none());
    if !plain && !wants_aggregated {
        return Some(
            ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "NotAcceptable",
                format!(
                    "only the following media types are accepted: application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList (asked for {})",
                    accept.join(",")
                ),
            )
            .into_response(),
        );
    }
    if let Some(group) = group {
        // Served plain only, as upstream serves it.
        if !plain {
            return None;
        }
        let name = group.to_string();
        let found = app
            .blocking(move |store| -> Result<_, ApiError> {
                Ok(store
                    .document(&discovery_document("/apis", false))?
                    .and_then(|list| group_of(&list.body, &name)))
            })
            .await;
        return match found {
            Ok(Some(body)) => {
                Some(([(header::CONTENT_TYPE, "application/json")], body).into_response())
            }
            // Not a group vai knows: upstream answers (or, offline, says it cannot).
            Ok(None) => None,
            Err(e) => Some(e.into_response()),
        };
    }
    let keys = [
        wants_aggregated.then(|| discovery_document(path, true)),
        plain.then(|| discovery_document(path, false)),
    ];
    let document = app
        .blocking(move |store| -> Result<_, ApiError> {
            for key in keys.into_iter().flatten() {
                if let Some(document) = store.document(&key)? {
                    return Ok(Some(document));
                }
            }
            Ok(None)
        })
        .await;
    let document = match document {
        Ok(found) => found?,
        Err(e) => return Some(e.into_response()),
    };
    let content_type = HeaderValue::from_str(&document.content_type)
        .unwrap_or(HeaderValue::from_static("application/json"));
    Some(([(header::CONTENT_TYPE, content_type)], document.body).into_response())
}

/// The `APIGroup` document of `name`, from a stored `APIGroupList`.
fn group_of(list: &[u8], name: &str) -> Option<Vec<u8>> {
    let list: serde_json::Value = serde_json::from_slice(list).ok()?;
    let mut group = list["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == name)?
        .clone();
    let object = group.as_object_mut()?;
    object.insert("kind".into(), "APIGroup".into());
    object.insert("apiVersion".into(), "v1".into());
    serde_json::to_vec(&group).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_document_is_its_entry_in_the_group_list() {
        let list = br#"{"kind":"APIGroupList","apiVersion":"v1","groups":[
            {"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}],
             "preferredVersion":{"groupVersion":"apps/v1","version":"v1"}}]}"#;
        let group: serde_json::Value =
            serde_json::from_slice(&group_of(list, "apps").unwrap()).unwrap();
        assert_eq!(group["kind"], "APIGroup");
        assert_eq!(group["apiVersion"], "v1");
        assert_eq!(group["preferredVersion"]["groupVersion"], "apps/v1");
        assert_eq!(group_of(list, "batch"), None);
    }
}
