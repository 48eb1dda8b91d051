//! Discovery: which resource types upstream has, which of them vai caches, and the discovery
//! documents themselves (stored, so that discovery is answered while upstream is unreachable).
//!
//! vai caches the preferred version of every group, for every resource that supports `list`
//! and `watch` (subresources never), narrowed by the user's include/exclude lists. Other
//! versions are proxied.

use std::time::Duration;

use futures::StreamExt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};
use serde::{Deserialize, Serialize};
use vai_store::{Document, Store};

use crate::{Error, upstream};

/// A cached resource type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceInfo {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version (the group's preferred one).
    pub version: String,
    /// Plural name, as in URLs (`pods`).
    pub plural: String,
    /// Kind (`Pod`).
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

impl ResourceInfo {
    /// The store's key for this type: `group/version/plural` (`/v1/pods` for the core group).
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }

    /// `apiVersion` of its objects (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL path of the type, cluster-wide (`/api/v1/pods`, `/apis/apps/v1/deployments`).
    pub fn path(&self) -> String {
        format!(
            "{}/{}",
            group_version_path(&self.group, &self.version),
            self.plural
        )
    }

    /// Whether a user's `--resources`/`--exclude` entry names this type: `plural` (any group)
    /// or `plural.group`.
    pub fn is_named_by(&self, entry: &str) -> bool {
        match entry.split_once('.') {
            None => entry == self.plural,
            Some((plural, group)) => plural == self.plural && group == self.group,
        }
    }
}

/// The URL path of a group version (`/api/v1`, `/apis/apps/v1`).
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The `Accept` that asks for aggregated discovery (one document for all groups).
pub const AGGREGATED_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

/// The store key under which the list of cached types is kept (for offline starts).
const RESOURCES_KEY: &str = "vai:cached-resources";

/// Which types to cache.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these (empty: all).
    pub include: Vec<String>,
    /// Never these.
    pub exclude: Vec<String>,
    /// Always these, whatever `include` and `exclude` say (what authorization decides from:
    /// the RBAC objects, and the objects a token is bound to).
    pub required: Vec<String>,
}

impl Selection {
    fn wants(&self, info: &ResourceInfo) -> bool {
        self.required.iter().any(|e| info.is_named_by(e))
            || (self.include.is_empty() || self.include.iter().any(|e| info.is_named_by(e)))
                && !self.exclude.iter().any(|e| info.is_named_by(e))
    }
}

/// Group versions fetched at once: discovery is ~50 small documents, and on a link with a
/// 200 ms round trip one after another took 6 s.
const FETCHED_AT_ONCE: usize = 8;

/// One discovery document: the document to store (an aggregated form only when upstream
/// served it) and its bytes.
async fn fetch(
    client: &kube::Client,
    path: &str,
    aggregated: bool,
    timeout: Duration,
) -> Result<(Option<Document>, Vec<u8>), Error> {
    let accept = if aggregated {
        AGGREGATED_ACCEPT
    } else {
        "application/json"
    };
    let (content_type, body) = upstream::get(client, path, accept, timeout).await?;
    let document =
        (!aggregated || content_type.contains("APIGroupDiscoveryList")).then(|| Document {
            key: vai_store::keys::discovery_document(path, aggregated),
            content_type,
            body: body.to_vec(),
        });
    Ok((document, body.to_vec()))
}

/// Fetches discovery from upstream, stores every document, and returns the types to cache.
pub(crate) async fn discover(
    client: &kube::Client,
    store: &Store,
    selection: &Selection,
    timeout: Duration,
) -> Result<Vec<ResourceInfo>, Error> {
    let roots = futures::future::try_join_all(
        [
            ("/version", false),
            ("/api", false),
            ("/api", true),
            ("/apis", false),
            ("/apis", true),
        ]
        .map(|(path, aggregated)| fetch(client, path, aggregated, timeout)),
    )
    .await?;
    let groups: APIGroupList = parse(&roots[3].1, "/apis")?;
    let mut documents: Vec<Document> = roots.into_iter().filter_map(|(d, _)| d).collect();

    let mut cached = Vec::new();
    let mut group_versions = vec![(String::new(), "v1".to_string(), true)];
    for group in &groups.groups {
        let preferred = group
            .preferred_version
            .as_ref()
            .map(|v| v.version.clone())
            .or_else(|| group.versions.first().map(|v| v.version.clone()));
        for v in &group.versions {
            group_versions.push((
                group.name.clone(),
                v.version.clone(),
                Some(&v.version) == preferred.as_ref(),
            ));
        }
    }
    let fetched: Vec<_> = futures::stream::iter(group_versions.clone())
        .map(|(group, version, _)| {
            let client = client.clone();
            async move {
                let path = group_version_path(&group, &version);
                let fetched = fetch(&client, &path, false, timeout).await;
                (path, fetched)
            }
        })
        .buffered(FETCHED_AT_ONCE)
        .collect()
        .await;
    for ((group, version, preferred), (path, fetched)) in group_versions.into_iter().zip(fetched) {
        let list: APIResourceList = match fetched {
            Ok((document, body)) => {
                documents.extend(document);
                parse(&body, &path)?
            }
            Err(e) => {
                // An aggregated API whose backend is down answers 503; the rest still syncs.
                tracing::warn!(%path, error = %crate::one_line(&e), "skipping an unavailable group version");
                continue;
            }
        };
        if !preferred {
            continue;
        }
        for r in list.resources {
            let info = ResourceInfo {
                group: group.clone(),
                version: version.clone(),
                plural: r.name.clone(),
                kind: r.kind.clone(),
                namespaced: r.namespaced,
            };
            let listable = ["list", "watch"]
                .iter()
                .all(|verb| r.verbs.iter().any(|v| v == verb));
            if !r.name.contains('/') && listable && selection.wants(&info) {
                cached.push(info);
            }
        }
    }
    documents.push(Document {
        key: RESOURCES_KEY.into(),
        content_type: "application/json".into(),
        body: serde_json::to_vec(&cached).expect("resource infos serialise"),
    });
    store.put_documents(documents).await?;
    Ok(cached)
}

/// The types cached at the last successful discovery, for a start while upstream is away.
pub(crate) fn stored(store: &Store) -> Result<Option<Vec<ResourceInfo>>, Error> {
    match store.document(RESOURCES_KEY)? {
        None => Ok(None),
        Some(doc) => Ok(Some(parse(&doc.body, RESOURCES_KEY)?)),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Unreadable {
        what: format!("unreadable {what}"),
        source: Some(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, plural: &str) -> ResourceInfo {
        ResourceInfo {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            kind: "K".into(),
            namespaced: true,
        }
    }

    #[test]
    fn keys_paths_and_selection() {
        let pods = info("", "pods");
        let deployments = info("apps", "deployments");
        assert_eq!(pods.key(), "/v1/pods");
        assert_eq!(deployments.key(), "apps/v1/deployments");
        assert_eq!(pods.path(), "/api/v1/pods");
        assert_eq!(deployments.path(), "/apis/apps/v1/deployments");
        assert_eq!(deployments.api_version(), "apps/v1");
        let selection = Selection {
            include: vec!["pods".into(), "deployments.apps".into()],
            exclude: vec![],
            required: vec![],
        };
        assert!(selection.wants(&pods) && selection.wants(&deployments));
        assert!(!selection.wants(&info("batch", "jobs")));
        let selection = Selection {
            include: vec![],
            exclude: vec!["events".into(), "deployments.extensions".into()],
            required: vec![],
        };
        assert!(!selection.wants(&info("", "events")));
        assert!(!selection.wants(&info("events.k8s.io", "events")));
        assert!(selection.wants(&deployments));
        let selection = Selection {
            include: vec!["pods".into()],
            exclude: vec!["roles.rbac.authorization.k8s.io".into()],
            required: vec!["roles.rbac.authorization.k8s.io".into()],
        };
        assert!(selection.wants(&info("rbac.authorization.k8s.io", "roles")));
        assert!(!selection.wants(&info("batch", "jobs")));
    }
}
