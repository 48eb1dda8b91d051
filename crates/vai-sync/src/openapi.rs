//! The OpenAPI documents — `/openapi/v3` and every group version it lists — fetched from
//! upstream and stored after each discovery, so that `kubectl explain` is answered while
//! upstream is unreachable even if nobody asked for them before. (The server also keeps what
//! it relays, in whatever representation was asked.) A group version's document is named by its
//! content hash (`?hash=…`, served `immutable`), so one already stored is not fetched again: a
//! rediscovery costs the index (~10 KB), not the documents (~7 MB on a bare cluster, which
//! upstream does not compress). Never fatal: a document that could not be fetched is only
//! missing offline.

use std::collections::BTreeMap;
use std::time::Duration;

use vai_store::{Document, Store};

use crate::{Error, upstream};

/// The root of OpenAPI v3.
const V3: &str = "/openapi/v3";
/// The representation fetched (what kubectl asks for).
const JSON: &str = "application/json";

/// Fetches and stores the documents; a failure is logged.
pub(crate) async fn refresh(client: &kube::Client, store: &Store, timeout: Duration) {
    let fetched = match fetch(client, store, timeout).await {
        Ok(documents) => documents,
        Err(e) => {
            tracing::warn!(error = %crate::one_line(&e),
                "cannot fetch the OpenAPI documents; kubectl explain needs upstream until they are stored");
            return;
        }
    };
    let (documents, bytes) = (
        fetched.len(),
        fetched.iter().map(|d| d.body.len()).sum::<usize>(),
    );
    match store.put_documents(fetched).await {
        Ok(()) => tracing::debug!(documents, bytes, "stored the OpenAPI documents"),
        Err(e) => tracing::warn!(error = %e, "cannot store the OpenAPI documents"),
    }
}

/// `/openapi/v3`'s index: each group version's path, with its content hash in the query.
#[derive(serde::Deserialize)]
struct Index {
    paths: BTreeMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(rename = "serverRelativeURL")]
    server_relative_url: String,
}

/// The index and the group versions' documents the store does not hold yet.
async fn fetch(
    client: &kube::Client,
    store: &Store,
    timeout: Duration,
) -> Result<Vec<Document>, Error> {
    let (content_type, root) = upstream::get(client, V3, JSON, timeout).await?;
    let index: Index = serde_json::from_slice(&root).map_err(|e| Error::Unreadable {
        what: format!("unreadable {V3}"),
        source: Some(e),
    })?;
    let mut documents = vec![document(V3, content_type, root.to_vec())];
    for entry in index.paths.values() {
        let url = &entry.server_relative_url;
        let stored = url.contains("hash=")
            && store
                .document(&vai_store::keys::openapi_document(url, JSON))?
                .is_some();
        if stored {
            continue;
        }
        let (content_type, body) = upstream::get(client, url, JSON, timeout).await?;
        documents.push(document(url, content_type, body.to_vec()));
    }
    Ok(documents)
}

fn document(path_and_query: &str, content_type: String, body: Vec<u8>) -> Document {
    Document {
        key: vai_store::keys::openapi_document(path_and_query, JSON),
        content_type,
        body,
    }
}
