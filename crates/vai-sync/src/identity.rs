//! The cluster's identity documents, fetched for authentication and kept in the store so vai
//! authenticates with upstream away: the client CA (`kube-system/extension-apiserver-authentication`,
//! which also names the front-proxy CA and headers) and the ServiceAccount issuer's
//! discovery document and keys (`/.well-known/openid-configuration`, `/openid/v1/jwks`).
//!
//! Fetched at start and with every rediscovery; a document upstream refuses is logged and the
//! stored one kept. This module only fetches and stores; it never decides who a caller is.

use std::time::Duration;

use vai_store::{Document, Store, keys};

use crate::{Error, one_line, upstream};

/// Each document: its key, its path, and what to accept (the key set has a type of its own).
const SOURCES: [(&str, &str, &str); 3] = [
    (
        keys::IDENTITY_CLIENT_CA,
        "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
        "application/json",
    ),
    (
        keys::IDENTITY_OPENID_CONFIGURATION,
        "/.well-known/openid-configuration",
        "application/json",
    ),
    (
        keys::IDENTITY_JWKS,
        "/openid/v1/jwks",
        "application/jwk-set+json, application/json",
    ),
];

/// Fetches every identity document upstream gives and stores them in one write. Fails only
/// when the store does.
pub(crate) async fn refresh(
    client: &kube::Client,
    store: &Store,
    timeout: Duration,
) -> Result<(), Error> {
    let mut documents = Vec::new();
    for (key, path, accept) in SOURCES {
        match upstream::get(client, path, accept, timeout).await {
            Ok((content_type, body)) => documents.push(Document {
                key: key.to_string(),
                content_type,
                body: body.to_vec(),
            }),
            Err(e) => tracing::warn!(%path, error = %one_line(&e),
                "cannot fetch an identity document; keeping the stored one"),
        }
    }
    if !documents.is_empty() {
        store.put_documents(documents).await?;
    }
    Ok(())
}
