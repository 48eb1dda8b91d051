//! The keys of the documents vai keeps beside objects ([`crate::Store::put_documents`]): the
//! discovery and OpenAPI documents, a type's table column definitions and the cluster's identity documents. Sync writes them, the server
//! reads them; both name them through here, so neither owns the other's storage layout. This
//! module only names keys; it never reads or writes.

/// The key of a discovery document: its request path (`/apis/apps/v1`), with a suffix for the
/// aggregated form.
pub fn discovery_document(path: &str, aggregated: bool) -> String {
    if aggregated {
        format!("{path}#aggregated")
    } else {
        path.to_string()
    }
}

/// The key of an OpenAPI document (`/openapi/v3/apis/apps/v1?hash=…`) in one representation
/// (a media type without parameters: `application/json`).
pub fn openapi_document(path_and_query: &str, media_type: &str) -> String {
    format!("openapi:{path_and_query}#{media_type}")
}

/// The key of a cached type's table column definitions (as upstream prints the type), by the
/// type's store key (`/v1/pods`).
pub fn table_columns(resource: &str) -> String {
    format!("table-columns:{resource}")
}

/// The cluster's `kube-system/extension-apiserver-authentication` ConfigMap, as upstream
/// sent it: the client CA (`client-ca-file`) and the front proxy's CA and headers.
pub const IDENTITY_CLIENT_CA: &str = "identity:extension-apiserver-authentication";

/// The ServiceAccount issuer's discovery document (`/.well-known/openid-configuration`).
pub const IDENTITY_OPENID_CONFIGURATION: &str = "identity:openid-configuration";

/// The ServiceAccount issuer's signing keys (`/openid/v1/jwks`).
pub const IDENTITY_JWKS: &str = "identity:jwks";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_stored_by_earlier_versions() {
        // Files written before these keys moved here keep their documents under these names.
        assert_eq!(discovery_document("/api/v1", false), "/api/v1");
        assert_eq!(discovery_document("/apis", true), "/apis#aggregated");
        assert_eq!(table_columns("/v1/pods"), "table-columns:/v1/pods");
    }
}
