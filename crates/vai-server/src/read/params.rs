//! The query parameters of list, get and watch, and how their values are read (booleans and
//! numbers as the apiserver reads them, with its error for a value it cannot read).

use axum::http::StatusCode;
use serde::Deserialize;

use crate::errors::ApiError;

/// The query parameters of list, get and watch.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub timeout_seconds: Option<String>,
    pub send_initial_events: Option<String>,
    pub include_object: Option<String>,
}

impl Params {
    /// The parameters of a request's query string.
    pub fn parse(uri: &axum::http::Uri) -> Result<Params, ApiError> {
        axum::extract::Query::<Params>::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
    }

    /// `resourceVersion` as a number (`None` when unset or empty).
    pub fn resource_version(&self) -> Result<Option<u64>, ApiError> {
        number("resourceVersion", &self.resource_version)
    }

    /// `watch=true`.
    pub fn watch(&self) -> Result<bool, ApiError> {
        Ok(flag(&self.watch)? == Some(true))
    }
}

/// A boolean parameter as the apiserver converts it (`Convert_Slice_string_To_bool`): unset,
/// `false` in any case, or `0` is false — `None` for unset —, any other value, the empty one
/// included, true.
pub(crate) fn flag(value: &Option<String>) -> Result<Option<bool>, ApiError> {
    Ok(value.as_deref().map(is_true))
}

/// Whether a boolean parameter's value is true (see [`flag`]).
pub(crate) fn is_true(value: &str) -> bool {
    value != "0" && !value.eq_ignore_ascii_case("false")
}

/// A non-negative integer parameter, or unset.
pub(crate) fn number(name: &str, value: &Option<String>) -> Result<Option<u64>, ApiError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid {name} {v:?}"))),
    }
}

/// `422 Invalid`: a request whose parameters contradict each other.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_numbers_are_read_or_refused() {
        assert_eq!(flag(&None).unwrap(), None);
        assert_eq!(flag(&Some("1".into())).unwrap(), Some(true));
        assert_eq!(flag(&Some("false".into())).unwrap(), Some(false));
        assert_eq!(flag(&Some("FALSE".into())).unwrap(), Some(false));
        assert_eq!(flag(&Some("yes".into())).unwrap(), Some(true));
        assert_eq!(flag(&Some("".into())).unwrap(), Some(true), "as upstream");
        assert_eq!(number("limit", &Some("10".into())).unwrap(), Some(10));
        assert_eq!(number("limit", &Some("".into())).unwrap(), None);
        let e = number("limit", &Some("-1".into())).unwrap_err();
        assert_eq!(
            (e.code.as_u16(), e.message.as_str()),
            (400, "invalid limit \"-1\"")
        );
    }
}
