//! Resource versions of reads, with the apiserver's semantics: unset or `0` is the newest the
//! cache holds; a value "not older than" (a list's default, and every get's) waits briefly
//! for the cache to reach it, then answers `504` with `Retry-After`; `Exact` (lists only)
//! reads that snapshot from history or answers `410`. [`wait_for`] also gives the write
//! proxy its read-your-writes.

use crate::ApiError;
use crate::App;
use crate::read::ReadError;
use crate::read::params::{Params, invalid};

/// Resolves `resourceVersion` + `resourceVersionMatch` for a list: `Some(rv)` to read exactly
/// that snapshot, `None` for the newest (after waiting, for "not older than", until the cache
/// has reached the asked version).
pub(crate) async fn list_version(
    app: &App,
    key: &str,
    params: &Params,
) -> Result<Option<u64>, ReadError> {
    let matching = params.resource_version_match.as_deref().unwrap_or("");
    if !matches!(matching, "" | "Exact" | "NotOlderThan") {
        return Err(invalid(format!(
            "resourceVersionMatch: Unsupported value: {matching:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))
        .into());
    }
    let rv = resource_version(params)?;
    if params
        .continue_token
        .as_deref()
        .is_some_and(|c| !c.is_empty())
        && rv.is_some_and(|v| v > 0)
    {
        return Err(
            invalid("specifying resource version is not allowed when using continue").into(),
        );
    }
    match (rv, matching) {
        (None, m) if !m.is_empty() => Err(invalid(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )
        .into()),
        (Some(0), "Exact") => Err(invalid(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )
        .into()),
        (Some(v), "Exact") => Ok(Some(v)),
        (Some(v), _) if v > 0 => {
            wait_for(app, key, v).await?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Resolves `resourceVersion` for a get: "not older than" it (the apiserver's `GetOptions`
/// have no match), so a version the cache has not reached yet is waited for.
pub(crate) async fn get_version(app: &App, key: &str, params: &Params) -> Result<(), ReadError> {
    match resource_version(params)? {
        Some(v) if v > 0 => wait_for(app, key, v).await,
        _ => Ok(()),
    }
}

fn resource_version(params: &Params) -> Result<Option<u64>, ApiError> {
    params.resource_version().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid resourceVersion {:?}",
            params.resource_version.as_deref().unwrap_or("")
        ))
    })
}

/// Waits (a bounded time) until the store holds `rv` of `key`; `504` after.
pub(crate) async fn wait_for(app: &App, key: &str, rv: u64) -> Result<(), ReadError> {
    let mut events = app.store.subscribe();
    let deadline = tokio::time::Instant::now() + app.config.wait_for_resource_version;
    loop {
        let current = last_resource_version(app, key).await?;
        if current >= rv {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, events.recv())
            .await
            .is_err()
        {
            return Err(ApiError::from(vai_store::Error::TooLargeResourceVersion {
                requested: rv,
                current,
            })
            .into());
        }
    }
}

/// Waits (a bounded time) until the store no longer holds the object `namespace/name` of `key`
/// (a delete's read-your-writes); gives up silently after the wait, as [`wait_for`] would.
pub(crate) async fn wait_for_absence(
    app: &App,
    key: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ReadError> {
    let mut events = app.store.subscribe();
    let deadline = tokio::time::Instant::now() + app.config.wait_for_resource_version;
    loop {
        let (k, ns, n) = (key.to_string(), namespace.to_string(), name.to_string());
        let present = app
            .blocking(move |store| Ok::<_, ReadError>(store.get_row(&k, &ns, &n, None)?.is_some()))
            .await?;
        if !present
            || tokio::time::timeout_at(deadline, events.recv())
                .await
                .is_err()
        {
            return Ok(());
        }
    }
}

/// The newest resource version the store holds of `key` (`0` before its first list).
pub(crate) async fn last_resource_version(app: &App, key: &str) -> Result<u64, ReadError> {
    let key = key.to_string();
    app.blocking(move |store| {
        Ok(store
            .resource_state(&key)?
            .map_or(0, |s| s.last_resource_version))
    })
    .await
}
