//! What a request asks, in the authorizer's terms ([`Attributes`]), as the apiserver's
//! `authorizer.Attributes` holds it.

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// A request on resources (`/api/...`, `/apis/...` with a resource).
    Resource {
        /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
        /// or any other verb a rule may name (`impersonate`, `bind`, `escalate`, …).
        verb: String,
        /// The API group (`""` for the core group).
        api_group: String,
        /// The resource (plural, lower case).
        resource: String,
        /// The subresource (`status`, `log`, …), if any.
        subresource: Option<String>,
        /// The namespace, if the request is namespaced (`None`: cluster-wide or
        /// cluster-scoped).
        namespace: Option<String>,
        /// The object's name: the path's, or for a list or watch the one
        /// `fieldSelector=metadata.name=X` pins; never for create or deletecollection.
        name: Option<String>,
    },
    /// A request on a non-resource path (`/version`, `/healthz`, `/apis`, `/metrics`, …).
    NonResource {
        /// The method in lower case (`get`, `post`, …).
        verb: String,
        /// The path, without query.
        path: String,
    },
}
