//! Reading a Kubernetes API path: which group, version, namespace, resource, name and
//! subresource it addresses, with the apiserver's own rules (`namespaces/{ns}/...` prefixes,
//! and the namespace subresources `status` and `finalize`).

/// What a resource path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub plural: String,
    /// Object name, for requests on one object.
    pub name: Option<String>,
    /// Subresource (`status`, `log`, `scale`, …).
    pub subresource: Option<String>,
}

/// Parses `/api/{v}/...` and `/apis/{g}/{v}/...`; `None` for anything else (discovery,
/// `/version`, non-API paths).
pub fn parse(path: &str) -> Option<ResourcePath> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() || rest.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut rest = rest;
    let mut namespace = None;
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        // `namespaces/{name}/status` is the namespace's own subresource.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    if rest[0] == "namespaces" {
        // A namespace itself: cluster-scoped, named by the second part.
        return Some(ResourcePath {
            group: group.into(),
            version: version.into(),
            namespace: None,
            plural: "namespaces".into(),
            name: rest.get(1).map(|s| s.to_string()),
            subresource: rest.get(2).map(|s| s.to_string()),
        })
        .filter(|_| rest.len() <= 3);
    }
    if rest.len() > 3 {
        return None;
    }
    Some(ResourcePath {
        group: group.into(),
        version: version.into(),
        namespace,
        plural: rest[0].to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(
        group: &str,
        ns: Option<&str>,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Option<ResourcePath> {
        Some(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            plural: plural.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    }

    #[test]
    fn reads_paths_as_the_apiserver_does() {
        assert_eq!(parse("/api/v1/pods"), p("", None, "pods", None, None));
        assert_eq!(
            parse("/api/v1/namespaces/ns/pods"),
            p("", Some("ns"), "pods", None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/ns/pods/web/log"),
            p("", Some("ns"), "pods", Some("web"), Some("log"))
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/ns/deployments/d"),
            p("apps", Some("ns"), "deployments", Some("d"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces"),
            p("", None, "namespaces", None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/ns"),
            p("", None, "namespaces", Some("ns"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/ns/status"),
            p("", None, "namespaces", Some("ns"), Some("status"))
        );
        assert_eq!(
            parse("/api/v1/nodes/n1"),
            p("", None, "nodes", Some("n1"), None)
        );
        for other in [
            "/api",
            "/api/v1",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/api/v1//x",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
        assert_eq!(parse("/api/v1/namespaces/ns/pods/a/b/c"), None);
    }
}
