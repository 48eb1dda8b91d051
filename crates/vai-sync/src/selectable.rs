//! The fields CRDs declare selectable (`spec.versions[].selectableFields`, Kubernetes 1.31+),
//! read from the cached CRDs and declared to the store ([`Store::declare_fields`]), which
//! indexes them: field selectors on custom resources are then answered from the cache, offline
//! too, as upstream answers them.
//!
//! The declarations are computed from every stored CRD, at start and whenever a CRD changes, so
//! that a deleted CRD or a version that dropped a field takes its fields away too. That is
//! cheap (only the few keys below are read out of each CRD) and the store reindexes only the
//! types whose declarations changed.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use vai_store::{EventKind, ListRequest, Store};

/// The store key of CustomResourceDefinitions.
pub(crate) const CRDS: &str = "apiextensions.k8s.io/v1/customresourcedefinitions";

/// What is read of a CRD.
#[derive(Deserialize)]
struct Crd {
    spec: CrdSpec,
}

#[derive(Deserialize)]
struct CrdSpec {
    group: String,
    names: CrdNames,
    #[serde(default)]
    versions: Vec<CrdVersion>,
}

#[derive(Deserialize)]
struct CrdNames {
    plural: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrdVersion {
    name: String,
    #[serde(default)]
    selectable_fields: Vec<SelectableField>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectableField {
    json_path: String,
}

/// The selectable fields of one CRD (its JSON), per store key of each of its versions.
fn of_crd(body: &[u8]) -> serde_json::Result<Vec<(String, Vec<String>)>> {
    let crd: Crd = serde_json::from_slice(body)?;
    let CrdSpec {
        group,
        names,
        versions,
    } = crd.spec;
    Ok(versions
        .into_iter()
        .filter(|v| !v.selectable_fields.is_empty())
        .map(|v| {
            (
                format!("{group}/{}/{}", v.name, names.plural),
                v.selectable_fields
                    .into_iter()
                    .map(|f| f.json_path)
                    .collect(),
            )
        })
        .collect())
}

/// What the stored CRDs declare, per store key (nothing if no CRD was ever cached).
fn declared(store: &Store) -> Result<BTreeMap<String, Vec<String>>, vai_store::Error> {
    let mut out = BTreeMap::new();
    let listed = store.list(CRDS, &ListRequest::default(), |_, name, body| {
        match of_crd(body) {
            Ok(fields) => out.extend(fields),
            Err(e) => tracing::warn!(crd = name, error = %crate::one_line(&e), "a CRD vai cannot read; its selectable fields are ignored"),
        }
        Ok(())
    });
    match listed {
        Ok(_) | Err(vai_store::Error::UnknownResource(_)) => Ok(out),
        Err(e) => Err(e),
    }
}

/// Declares what the stored CRDs declare.
async fn declare(store: &Store) {
    let reader = store.clone();
    let result = match tokio::task::spawn_blocking(move || declared(&reader)).await {
        Ok(Ok(declarations)) => store.declare_fields(declarations).await,
        Ok(Err(e)) => Err(e),
        Err(_) => return,
    };
    if let Err(e) = result {
        tracing::warn!(error = %crate::one_line(&e), "declaring the CRDs' selectable fields failed; will retry when CRDs change");
    }
}

/// Keeps the store's declarations in step with the cached CRDs, until the store closes.
pub(crate) async fn follow(store: Store) {
    // Subscribe first: a CRD change committed while the first declaration is computed is
    // seen again.
    let mut events = store.subscribe();
    declare(&store).await;
    loop {
        let changed = match events.recv().await {
            Ok(batch) => batch
                .iter()
                .any(|e| e.kind != EventKind::Bookmark && &*e.resource == CRDS),
            Err(RecvError::Lagged(_)) => true,
            Err(RecvError::Closed) => return,
        };
        if changed {
            declare(&store).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_declares_its_own_fields_under_its_store_key() {
        let crd = br#"{"kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
            "spec":{"group":"example.com","names":{"plural":"widgets","kind":"Widget"},
            "versions":[
              {"name":"v1","schema":{"openAPIV3Schema":{"type":"object"}},
               "selectableFields":[{"jsonPath":".spec.color"},{"jsonPath":".spec.size"}]},
              {"name":"v1beta1"}]}}"#;
        assert_eq!(
            of_crd(crd).unwrap(),
            vec![(
                "example.com/v1/widgets".to_string(),
                vec![".spec.color".to_string(), ".spec.size".to_string()]
            )]
        );
        assert!(of_crd(br#"{"spec":{}}"#).is_err());
    }
}
