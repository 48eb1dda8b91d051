//! What a list or watch selects: the store request built from the path's namespace and the
//! selectors, and the check that each field selected on is one the type has.

use vai_store::selector::Field;
use vai_store::{FieldSelector, FieldSet, LabelSelector, ListRequest};
use vai_sync::ResourceInfo;

use crate::path::ResourcePath;
use crate::read::error::ReadError;
use crate::read::params::Params;

/// Refuses a field selector on a field the type does not select on (upstream answers it while
/// it can: it is the authority on its types' fields). A cluster-scoped type has no
/// `metadata.namespace` to select on.
pub(crate) fn selectable(
    info: &ResourceInfo,
    fields: &FieldSet,
    request: &ListRequest,
) -> Result<(), ReadError> {
    match request.fields.0.iter().find_map(|r| match &r.field {
        Field::Other(name) if fields.selectable(name).is_none() => Some(name.as_str()),
        Field::Namespace if !info.namespaced => Some("metadata.namespace"),
        _ => None,
    }) {
        Some(name) => Err(ReadError::Unsupported(format!(
            "field label not supported: {name}"
        ))),
        None => Ok(()),
    }
}

/// Builds the store request from the selectors and the namespace.
pub(crate) fn selection(target: &ResourcePath, params: &Params) -> Result<ListRequest, ReadError> {
    Ok(ListRequest {
        namespace: target.namespace.clone(),
        labels: LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))?,
        fields: FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""))?,
        ..ListRequest::default()
    })
}
