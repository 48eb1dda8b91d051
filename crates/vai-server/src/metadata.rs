//! The `PartialObjectMetadata` form of a stored object (what metadata informers and tables'
//! rows ask for): its kind, apiVersion and metadata, cut from the stored bytes without
//! parsing the rest.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct MetadataOnly<'a> {
    #[serde(borrow)]
    metadata: &'a RawValue,
}

/// An object's `PartialObjectMetadata` form.
pub(crate) fn metadata_only(body: &[u8]) -> Vec<u8> {
    let metadata = serde_json::from_slice::<MetadataOnly>(body)
        .map(|m| m.metadata.get())
        .unwrap_or("{}");
    format!(
        r#"{{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{metadata}}}"#
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_form_keeps_only_metadata() {
        let body = br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","labels":{"x":"y"}},"spec":{"big":true}}"#;
        let value: serde_json::Value = serde_json::from_slice(&metadata_only(body)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
                "metadata":{"name":"a","labels":{"x":"y"}}})
        );
    }
}
