//! The server in-process: a store in a temporary directory, a detached syncer over it (no
//! upstream: reads are answered from the store and marked stale), and the router called
//! directly, as axum's own tests call theirs. No process and no network.

#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vai_store::{Batch, EventKind, Store, StoreConfig, SyncState};
use vai_sync::{ResourceInfo, Syncer};

/// The store key of pods.
pub const PODS: &str = "/v1/pods";

/// The resource version of the first list the test server holds.
pub const LISTED_AT: u64 = 100;

/// A router over a store of its own.
pub struct Server {
    pub router: Router,
    pub store: Store,
    _dir: tempfile::TempDir,
}

/// An answer, whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(400)])
            )
        })
    }

    /// The names of a list's items.
    pub fn names(&self) -> Vec<String> {
        self.json()["items"]
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {}", self.json()))
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Asserts a `Status` error with this code and reason; returns its message.
    pub fn status_error(&self, code: u16, reason: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            code,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let status = self.json();
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["apiVersion"], "v1", "{status}");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["code"], code, "{status}");
        assert_eq!(status["reason"], reason, "{status}");
        status["message"].as_str().unwrap_or_default().to_string()
    }
}

/// A pod's JSON at a resource version.
pub fn pod(namespace: &str, name: &str, rv: u64, app: &str, phase: &str) -> Vec<u8> {
    serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": namespace, "resourceVersion": rv.to_string(),
            "uid": format!("uid-{namespace}-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": app},
        },
        "spec": {"nodeName": format!("node-{}", rv % 3)},
        "status": {"phase": phase},
    })
    .to_string()
    .into_bytes()
}

pub fn pods_type() -> ResourceInfo {
    ResourceInfo {
        group: String::new(),
        version: "v1".into(),
        plural: "pods".into(),
        kind: "Pod".into(),
        namespaced: true,
    }
}

/// A type the server knows but the store never listed.
pub fn configmaps_type() -> ResourceInfo {
    ResourceInfo {
        plural: "configmaps".into(),
        kind: "ConfigMap".into(),
        ..pods_type()
    }
}

impl Server {
    /// A server over pods `a`–`e` in `ns1` and `f`–`g` in `ns2`, listed at [`LISTED_AT`], and
    /// configmaps not synced.
    pub async fn start() -> Server {
        Server::start_with(vai_server::ServerConfig {
            wait_for_resource_version: Duration::from_millis(300),
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(config: vai_server::ServerConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("vai.db"), StoreConfig::default()).unwrap();
        let pods = [
            ("ns1", "a", "web", "Running"),
            ("ns1", "b", "web", "Pending"),
            ("ns1", "c", "db", "Running"),
            ("ns1", "d", "web", "Running"),
            ("ns1", "e", "db", "Failed"),
            ("ns2", "f", "web", "Running"),
            ("ns2", "g", "db", "Running"),
        ];
        let items: Vec<Vec<u8>> = pods
            .iter()
            .enumerate()
            .map(|(i, (ns, name, app, phase))| pod(ns, name, 90 + i as u64, app, phase))
            .collect();
        store
            .write(
                Batch::new(PODS)
                    .replace(LISTED_AT, items)
                    .state(SyncState::Live, None),
            )
            .await
            .unwrap();
        let syncer = Syncer::detached(store.clone(), vec![pods_type(), configmaps_type()]).unwrap();
        let router = vai_server::router(syncer, config, prometheus::Registry::new()).unwrap();
        Server {
            router,
            store,
            _dir: dir,
        }
    }

    /// Writes one pod event.
    pub async fn event(&self, kind: EventKind, object: Vec<u8>) {
        self.store
            .write(Batch::new(PODS).event(kind, object))
            .await
            .unwrap();
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(60), body.collect())
            .await
            .expect("the answer ended")
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// `GET uri` with `Accept`.
    pub async fn get_as(&self, uri: &str, accept: &str) -> Answer {
        self.send(
            Request::get(uri)
                .header("accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Starts a watch (or any streamed answer) and returns its status and line reader.
    pub async fn stream(&self, uri: &str) -> (StatusCode, Lines) {
        let response = self
            .router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            Lines {
                body: response.into_body(),
                buffer: Vec::new(),
            },
        )
    }
}

/// The lines of a streamed answer, one JSON value each.
pub struct Lines {
    body: Body,
    buffer: Vec<u8>,
}

impl Lines {
    /// The next line, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON line"));
            }
            let frame = tokio::time::timeout(Duration::from_secs(60), self.body.frame())
                .await
                .expect("a line within a minute")?
                .expect("a readable stream");
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// The next line's `(type, object name or bookmark RV)`.
    pub async fn next_event(&mut self) -> Option<(String, String)> {
        let line = self.next().await?;
        let kind = line["type"].as_str().unwrap().to_string();
        let object = &line["object"];
        let what = match kind.as_str() {
            "BOOKMARK" => object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
            "ERROR" => object["code"].to_string(),
            _ => object["metadata"]["name"].as_str().unwrap().to_string(),
        };
        Some((kind, what))
    }
}
