//! Content negotiation and rendering: which representation a client asked for in `Accept`
//! (whole objects, `PartialObjectMetadata`, or a `Table`), and the bytes of each item and of a
//! list's head in it. Stored bytes are served as they are wherever the form allows.
//!
//! JSON only: YAML and protobuf are refused with `406` and the media types vai serves, which
//! every Kubernetes client then falls back to (objects are stored as upstream's JSON, and
//! converting them would cost a parse per object on the list path).

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use vai_sync::ResourceInfo;

use crate::errors::ApiError;
use crate::metadata::metadata_only;
use crate::table::{Include, TableForm};

/// The representation a client asked for.
#[derive(Debug, Clone)]
pub(crate) enum Form {
    /// Whole objects.
    Full,
    /// `PartialObjectMetadata`: kind, apiVersion and metadata only.
    Metadata,
    /// A `Table` (what kubectl asks for).
    Table(Arc<TableForm>),
}

/// What the answer holds: one object (a get), a list, or a watch's stream of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Object,
    List,
    Watch,
}

/// The media ranges of `Accept`, in order (an absent or empty header is none).
pub(crate) fn media_ranges(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect()
}

/// A media range's base type and its parameter `name`.
pub(crate) fn param<'a>(media: &'a str, name: &str) -> Option<&'a str> {
    media
        .split(';')
        .skip(1)
        .map(str::trim)
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
}

/// Whether a media range takes JSON.
pub(crate) fn is_json(media: &str) -> bool {
    matches!(
        media.split(';').next().map(str::trim),
        Some("application/json" | "application/*" | "*/*")
    )
}

/// Refuses an `Accept` that takes no JSON at all, first, as the apiserver does (which media
/// type is served is decided before anything is read; which form of it, when the answer is
/// written, see [`negotiate`]).
pub(crate) fn acceptable(headers: &HeaderMap, answer: Answer) -> Result<(), ApiError> {
    let accept = media_ranges(headers);
    if accept.is_empty() || accept.iter().any(|m| is_json(m)) {
        return Ok(());
    }
    Err(not_acceptable(&accept, answer))
}

fn not_acceptable(accept: &[&str], answer: Answer) -> ApiError {
    let metadata = match answer {
        Answer::Object => "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        Answer::List | Answer::Watch => {
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        }
    };
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "NotAcceptable",
        format!(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, {metadata} (asked for {})",
            accept.join(",")
        ),
    )
}

/// Whether `Accept` asks for a table anywhere (then the type's column definitions are read).
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    media_ranges(headers)
        .iter()
        .any(|m| is_json(m) && param(m, "as") == Some("Table"))
}

/// Picks the first acceptable media type in `Accept`. Tables need the type's column
/// definitions (`columns`, stored by sync from upstream); without them a client's JSON
/// fallback is used. `include` is the `includeObject` parameter, which only a table reads
/// (elsewhere the apiserver ignores it, bad values included).
pub(crate) fn negotiate(
    headers: &HeaderMap,
    answer: Answer,
    include: Option<&str>,
    columns: Option<&[u8]>,
) -> Result<Form, ApiError> {
    let accept = media_ranges(headers);
    if accept.is_empty() {
        return Ok(Form::Full);
    }
    for media in &accept {
        if !is_json(media) {
            continue;
        }
        match param(media, "as") {
            None => return Ok(Form::Full),
            // The apiserver takes the singular form for one object, the list form for a list,
            // and either for a watch's events.
            Some("PartialObjectMetadata") if answer != Answer::List => return Ok(Form::Metadata),
            Some("PartialObjectMetadataList") if answer != Answer::Object => {
                return Ok(Form::Metadata);
            }
            Some("Table") if param(media, "g") == Some("meta.k8s.io") => {
                let api_version = match param(media, "v") {
                    Some("v1") => "meta.k8s.io/v1",
                    Some("v1beta1") => "meta.k8s.io/v1beta1",
                    _ => continue,
                };
                let Some(columns) = columns else { continue };
                let include = Include::parse(include).map_err(ApiError::bad_request)?;
                if let Some(form) = TableForm::new(api_version, columns, include) {
                    return Ok(Form::Table(Arc::new(form)));
                }
            }
            Some(_) => continue,
        }
    }
    Err(not_acceptable(&accept, answer))
}

/// An item as the client asked for it (for tables: a row).
pub(crate) fn render<'a>(form: &Form, body: &'a [u8], cells: Option<&[u8]>) -> Cow<'a, [u8]> {
    match form {
        Form::Full => body.into(),
        Form::Metadata => metadata_only(body).into(),
        Form::Table(table) => table.row(body, cells, vai_sync::now_ms()).into(),
    }
}

/// A list item as the client asked for it. Items of built-in types go out without `kind` and
/// `apiVersion`, as the apiserver lists them: the store keeps them at the front of such
/// objects (`type_meta`, see [`type_meta_prefix`]); custom resources, whose keys upstream
/// sorts, keep theirs, as upstream lists them.
pub(crate) fn list_item<'a>(
    form: &Form,
    type_meta: &[u8],
    body: &'a [u8],
    cells: Option<&[u8]>,
) -> (&'static [u8], Cow<'a, [u8]>) {
    // The item is `{` and the rest of the stored bytes: no copy of the object.
    match (form, body.strip_prefix(type_meta)) {
        (Form::Full, Some(rest)) => (b"{", rest.into()),
        _ => (b"", render(form, body, cells)),
    }
}

/// The bytes a stored built-in object starts with: `{"kind":"Pod","apiVersion":"v1",`.
pub(crate) fn type_meta_prefix(info: &ResourceInfo) -> Vec<u8> {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"{{"kind":{},"apiVersion":{},"#,
        quote(&info.kind),
        quote(&info.api_version())
    )
    .into_bytes()
}

/// The start of a list response, up to its first item.
pub(crate) fn list_head(info: &ResourceInfo, form: &Form) -> String {
    match form {
        Form::Full => format!(
            r#"{{"kind":"{}List","apiVersion":"{}","items":["#,
            info.kind,
            info.api_version()
        ),
        Form::Metadata => {
            r#"{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","items":["#.into()
        }
        Form::Table(table) => table.head(true),
    }
}

/// The parts of a CRD that its tables need (the rest, its schema above all, is skipped).
#[derive(Deserialize)]
struct Crd {
    spec: CrdSpec,
}

#[derive(Deserialize)]
struct CrdSpec {
    #[serde(default)]
    versions: Vec<CrdVersion>,
}

#[derive(Deserialize)]
struct CrdVersion {
    name: String,
    #[serde(default, rename = "additionalPrinterColumns")]
    columns: Vec<PrinterColumn>,
}

#[derive(Deserialize)]
struct PrinterColumn {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "jsonPath")]
    json_path: String,
}

/// A custom resource's `date` printer columns (name, jsonPath) at `version`, from its CRD.
pub(crate) fn crd_date_columns(crd: &[u8], version: &str) -> Vec<(String, String)> {
    let Ok(crd) = serde_json::from_slice::<Crd>(crd) else {
        return Vec::new();
    };
    crd.spec
        .versions
        .into_iter()
        .filter(|v| v.name == version)
        .flat_map(|v| v.columns)
        .filter(|c| c.kind == "date")
        .map(|c| (c.name, c.json_path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn form(
        accept: Option<&str>,
        answer: Answer,
        columns: Option<&str>,
    ) -> Result<&'static str, StatusCode> {
        let mut headers = HeaderMap::new();
        if let Some(v) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        match negotiate(&headers, answer, None, columns.map(str::as_bytes)) {
            Ok(Form::Full) => Ok("full"),
            Ok(Form::Metadata) => Ok("metadata"),
            Ok(Form::Table(t)) => Ok(t.api_version),
            Err(e) => Err(e.code),
        }
    }

    #[test]
    fn negotiates_json_metadata_tables_and_refuses_what_it_cannot_serve() {
        use Answer::*;
        let columns = Some(r#"[{"name":"Name"}]"#);
        assert_eq!(form(None, List, None), Ok("full"));
        assert_eq!(form(Some(""), List, None), Ok("full"));
        let proto_or_json = "application/vnd.kubernetes.protobuf, application/json";
        assert_eq!(form(Some(proto_or_json), List, None), Ok("full"));
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert!(wants_table(&{
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(kubectl));
            h
        }));
        assert_eq!(form(Some(kubectl), List, columns), Ok("meta.k8s.io/v1"));
        // No stored columns for the type: kubectl's plain JSON fallback.
        assert_eq!(form(Some(kubectl), List, None), Ok("full"));
        let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
        assert_eq!(form(Some(beta), Object, columns), Ok("meta.k8s.io/v1beta1"));
        assert_eq!(
            form(Some(beta), List, None),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(form(Some(list), List, columns), Ok("metadata"));
        // The apiserver refuses the list form for one object.
        assert_eq!(
            form(Some(list), Object, None),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
        let one = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(form(Some(one), Object, None), Ok("metadata"));
        // …and the singular form for a list; a watch's events take either.
        assert_eq!(form(Some(one), List, None), Err(StatusCode::NOT_ACCEPTABLE));
        assert_eq!(form(Some(one), Watch, None), Ok("metadata"));
        assert_eq!(form(Some(list), Watch, None), Ok("metadata"));
        let proto = "application/vnd.kubernetes.protobuf";
        assert_eq!(
            form(Some(proto), List, columns),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
    }

    #[test]
    fn built_in_list_items_lose_their_type_fields_and_custom_ones_keep_them() {
        let pods = ResourceInfo {
            group: String::new(),
            version: "v1".into(),
            plural: "pods".into(),
            kind: "Pod".into(),
            namespaced: true,
        };
        let prefix = type_meta_prefix(&pods);
        let pod = br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a"}}"#;
        let whole = |(start, rest): (&[u8], Cow<[u8]>)| [start, &rest].concat();
        assert_eq!(
            whole(list_item(&Form::Full, &prefix, pod, None)),
            br#"{"metadata":{"name":"a"}}"#
        );
        let custom = br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}"#;
        assert_eq!(whole(list_item(&Form::Full, &prefix, custom, None)), custom);
        // Metadata-only items are built whole.
        let metadata = whole(list_item(&Form::Metadata, &prefix, pod, None));
        assert!(metadata.starts_with(br#"{"kind":"PartialObjectMetadata""#));
    }

    #[test]
    fn a_crds_date_columns_of_the_asked_version() {
        let crd = br#"{"spec":{"versions":[
            {"name":"v1","schema":{"openAPIV3Schema":{"type":"object"}},"additionalPrinterColumns":[
                {"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"},
                {"name":"Size","type":"integer","jsonPath":".spec.size"}]},
            {"name":"v2","additionalPrinterColumns":[{"name":"Seen","type":"date","jsonPath":".status.seen"}]}]}}"#;
        assert_eq!(
            crd_date_columns(crd, "v1"),
            vec![("Age".to_string(), ".metadata.creationTimestamp".to_string())]
        );
        assert_eq!(crd_date_columns(crd, "v3"), Vec::new());
        assert_eq!(crd_date_columns(b"not json", "v1"), Vec::new());
    }
}
