//! Operating vai: `/healthz` (the process serves), `/readyz` (every cached type has synced
//! once), Prometheus `/metrics`, and `/vai/v1/status` (per type: state, stale since, resource
//! versions, last contact, last error, object count).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::App;
use crate::errors::ApiError;

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn readyz(State(app): State<App>) -> Response {
    if app.syncer.ready() {
        "ok".into_response()
    } else {
        let waiting: Vec<String> = app
            .syncer
            .status()
            .all()
            .into_iter()
            .filter(|(_, s)| !s.synced)
            .map(|(k, _)| k)
            .collect();
        ApiError::unavailable(format!("not synced yet: {}", waiting.join(", "))).into_response()
    }
}

fn file_size(path: &std::path::Path, suffix: &str) -> u64 {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    std::fs::metadata(p).map_or(0, |m| m.len())
}

pub(crate) async fn metrics(State(app): State<App>) -> Response {
    let now = vai_sync::now_ms();
    let health = app.syncer.health().borrow().clone();
    app.metrics.contact_age.set(
        health
            .last_ok_ms
            .map_or(f64::NAN, |ms| (now - ms) as f64 / 1000.0),
    );
    for (key, status) in app.syncer.status().all() {
        let stale_since = app
            .syncer
            .freshness_of(&health, Some(&status))
            .stale_since_ms();
        let m = &app.metrics;
        m.stale_seconds
            .with_label_values(&[&key])
            .set(stale_since.map_or(0.0, |s| (now - s) as f64 / 1000.0));
        let behind = status.behind.as_ref();
        m.lag_seconds
            .with_label_values(&[&key])
            .set(behind.map_or(0.0, |b| (now - b.since_ms).max(0) as f64 / 1000.0));
        m.lag_events
            .with_label_values(&[&key])
            .set(behind.map_or(0, |b| b.events as i64));
        m.lag_versions
            .with_label_values(&[&key])
            .set(behind.map_or(0, |b| b.versions as i64));
    }
    let path = app.store.path().to_path_buf();
    // A file's size (a store in PostgreSQL has none of its own to report here).
    if !path.as_os_str().is_empty() {
        let bytes =
            tokio::task::spawn_blocking(move || file_size(&path, "") + file_size(&path, "-wal"))
                .await
                .unwrap_or(0);
        app.metrics.db_bytes.set(bytes as i64);
    }
    let held = app.store.writes_held();
    for (cause, held) in [
        ("checkpoint", held.behind_checkpoint),
        ("journal_limit", held.for_journal_limit),
    ] {
        let m = &app.metrics;
        m.writes_held
            .with_label_values(&[cause])
            .set(held.count as f64);
        m.writes_held_seconds
            .with_label_values(&[cause])
            .set(held.total.as_secs_f64());
        m.writes_held_longest
            .with_label_values(&[cause])
            .set(held.longest.as_secs_f64());
    }
    let mut text = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&app.registry.gather(), &mut text) {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("encoding metrics: {e}"),
        )
        .into_response();
    }
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
}

fn rfc3339(ms: Option<i64>) -> serde_json::Value {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or(serde_json::Value::Null, |t| json!(t.to_string()))
}

pub(crate) async fn status(State(app): State<App>) -> Response {
    let health = app.syncer.health().borrow().clone();
    let board = app.syncer.status().all();
    let keys: Vec<String> = board.keys().cloned().collect();
    let stored = app
        .blocking(move |store| -> Result<_, ApiError> {
            let states = store.resource_states()?;
            let counts = keys
                .iter()
                .map(|k| Ok((k.clone(), store.count(k)?)))
                .collect::<Result<std::collections::HashMap<_, _>, vai_store::Error>>()?;
            Ok((states, counts))
        })
        .await;
    let (states, counts) = match stored {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let resources: Vec<serde_json::Value> = board
        .iter()
        .map(|(key, live)| {
            let persisted = states.iter().find(|s| &s.resource == key);
            let freshness = app.syncer.freshness_of(&health, Some(live));
            json!({
                "resource": key,
                "state": freshness.as_str(),
                "since": rfc3339(Some(live.since_ms)),
                "staleSince": rfc3339(freshness.stale_since_ms()),
                "synced": live.synced,
                "objects": counts.get(key),
                "loadedByLastList": live.loaded,
                "listResourceVersion": persisted.and_then(|p| p.list_resource_version).map(|v| v.to_string()),
                "lastResourceVersion": persisted.map(|p| p.last_resource_version.to_string()),
                "lastContact": rfc3339(persisted.and_then(|p| p.last_contact_ms)),
                "lastRead": rfc3339(live.last_read_ms),
                "lastError": if !health.reachable { health.error.clone() } else { live.error.clone() },
                "behind": live.behind.as_ref().map(|b| json!({
                    "seconds": (vai_sync::now_ms() - b.since_ms).max(0) as f64 / 1000.0,
                    "events": b.events,
                    "resourceVersions": b.versions,
                })),
            })
        })
        .collect();
    axum::Json(json!({
        "upstream": {
            "reachable": health.reachable,
            "since": rfc3339(Some(health.since_ms)),
            "lastContact": rfc3339(health.last_ok_ms),
            "error": health.error,
        },
        "resources": resources,
    }))
    .into_response()
}
