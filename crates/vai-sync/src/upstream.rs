//! Raw HTTP to the upstream apiserver: documents, list pages and watch streams as the bytes
//! upstream sent (objects are stored as received, never re-serialised), plus the health probe
//! that tells the rest of vai whether upstream answers at all.
//!
//! Every request here has a deadline; nothing waits on a hung upstream forever.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use kube::client::Body;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::{Error, now_ms};

/// A `Status` returned by upstream, reduced to what sync acts on.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StatusBody {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
}

fn request(path_and_query: &str, accept: &str) -> http::Request<Body> {
    http::Request::get(path_and_query)
        .header(http::header::ACCEPT, accept)
        // Kubernetes 1.37 gzips watch streams per event; ask for plain bytes everywhere.
        .header(http::header::ACCEPT_ENCODING, "identity")
        .body(Body::empty())
        .expect("a GET request with valid headers")
}

/// Sends a GET and returns the response once its headers arrived (within `timeout`); a
/// non-2xx answer becomes [`Error::Status`] with upstream's code and message.
async fn send(
    client: &kube::Client,
    path_and_query: &str,
    accept: &str,
    timeout: Duration,
) -> Result<http::Response<Body>, Error> {
    let response = tokio::time::timeout(timeout, client.send(request(path_and_query, accept)))
        .await
        .map_err(|_| Error::Timeout(format!("GET {path_and_query}"), timeout))?
        .map_err(|e| Error::Upstream(format!("GET {path_and_query}: {e}")))?;
    if response.status().is_success() {
        return Ok(response);
    }
    let code = response.status().as_u16();
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<StatusBody>(&body)
        .map(|s| s.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    Err(Error::Status {
        code,
        message: format!("GET {path_and_query}: {message}"),
    })
}

/// GETs a whole document: its content type and bytes.
pub(crate) async fn get(
    client: &kube::Client,
    path_and_query: &str,
    accept: &str,
    timeout: Duration,
) -> Result<(String, Bytes), Error> {
    let response = send(client, path_and_query, accept, timeout).await?;
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| Error::Timeout(format!("reading {path_and_query}"), timeout))?
        .map_err(|e| Error::Upstream(format!("reading {path_and_query}: {e}")))?
        .to_bytes();
    Ok((content_type, body))
}

/// One event of a watch stream, its object still as upstream's bytes.
#[derive(Debug)]
pub(crate) enum WatchEvent {
    /// ADDED, MODIFIED or DELETED.
    Object(vai_store::EventKind, Vec<u8>),
    /// A bookmark; `true` when it ends the initial events of a streaming list.
    Bookmark(u64, bool),
    /// An ERROR event.
    Error(StatusBody),
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
struct BookmarkObject {
    metadata: BookmarkMeta,
}

#[derive(Deserialize)]
struct BookmarkMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The annotation on the bookmark that ends a streaming list's initial events.
pub(crate) const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

fn parse_event(line: &[u8]) -> Result<WatchEvent, Error> {
    let bad = |e: serde_json::Error| Error::Upstream(format!("unreadable watch event: {e}"));
    let parsed: Line = serde_json::from_slice(line).map_err(bad)?;
    let object = parsed.object.get().as_bytes();
    use vai_store::EventKind::*;
    Ok(match parsed.kind {
        "ADDED" => WatchEvent::Object(Added, object.to_vec()),
        "MODIFIED" => WatchEvent::Object(Modified, object.to_vec()),
        "DELETED" => WatchEvent::Object(Deleted, object.to_vec()),
        "BOOKMARK" => {
            let b: BookmarkObject = serde_json::from_slice(object).map_err(bad)?;
            let rv = b.metadata.resource_version.parse().map_err(|_| {
                Error::Upstream(format!(
                    "bookmark with resource version {:?}",
                    b.metadata.resource_version
                ))
            })?;
            let end = b
                .metadata
                .annotations
                .get(INITIAL_EVENTS_END)
                .is_some_and(|v| v == "true");
            WatchEvent::Bookmark(rv, end)
        }
        "ERROR" => WatchEvent::Error(serde_json::from_slice(object).map_err(bad)?),
        other => {
            return Err(Error::Upstream(format!(
                "unknown watch event type {other:?}"
            )));
        }
    })
}

/// A watch response read line by line; each line one event.
pub(crate) struct EventStream {
    body: Body,
    buffer: BytesMut,
    idle_timeout: Duration,
}

impl EventStream {
    /// Opens a watch (`path_and_query` carries `watch=1` and its parameters).
    pub async fn open(
        client: &kube::Client,
        path_and_query: &str,
        timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<EventStream, Error> {
        let response = send(client, path_and_query, "application/json", timeout).await?;
        Ok(EventStream {
            body: response.into_body(),
            buffer: BytesMut::new(),
            idle_timeout,
        })
    }

    /// Whether a whole event is already buffered (so reading it will not wait).
    pub fn has_buffered_event(&self) -> bool {
        self.buffer.contains(&b'\n')
    }

    /// The next event; `None` when upstream ended the stream (e.g. its `timeoutSeconds`).
    /// Silence longer than the idle timeout is an error: a hung upstream is not waited on.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, Error> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let line = &line[..end];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_event(line).map(Some);
            }
            let frame = tokio::time::timeout(self.idle_timeout, self.body.frame())
                .await
                .map_err(|_| {
                    Error::Timeout("waiting for watch events".into(), self.idle_timeout)
                })?;
            match frame {
                None => {
                    return if self.buffer.iter().all(u8::is_ascii_whitespace) {
                        Ok(None)
                    } else {
                        let rest = std::mem::take(&mut self.buffer);
                        parse_event(rest.chunk()).map(Some)
                    };
                }
                Some(Err(e)) => return Err(Error::Upstream(format!("watch stream: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Whether upstream answers, as the health probe last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// Upstream answered the last probe.
    pub reachable: bool,
    /// When this state began (ms since the Unix epoch).
    pub since_ms: i64,
    /// When upstream last answered (ms since the Unix epoch), if ever.
    pub last_ok_ms: Option<i64>,
    /// Why the last probe failed.
    pub error: Option<String>,
}

/// Probes upstream's `/readyz` every `interval`, each probe bounded by `timeout`, and
/// publishes the outcome. Runs until the receivers are gone.
pub(crate) async fn probe(
    client: kube::Client,
    health: watch::Sender<UpstreamHealth>,
    interval: Duration,
    timeout: Duration,
) {
    loop {
        let outcome = get(&client, "/readyz", "text/plain", timeout).await;
        let now = now_ms();
        health.send_if_modified(|h| {
            let was = h.reachable;
            match &outcome {
                Ok(_) => {
                    h.last_ok_ms = Some(now);
                    h.error = None;
                    if !was {
                        tracing::info!("upstream answers again");
                        h.reachable = true;
                        h.since_ms = now;
                    }
                }
                Err(e) => {
                    if was {
                        tracing::warn!(error = %e, "upstream does not answer; serving last-good data");
                        h.reachable = false;
                        h.since_ms = now;
                    }
                    h.error = Some(e.to_string());
                }
            }
            // Wake waiters only on a change of reachability.
            was != h.reachable
        });
        if health.is_closed() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_keep_the_object_bytes_and_read_bookmarks_and_errors() {
        let line = br#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}}"#;
        match parse_event(line).unwrap() {
            WatchEvent::Object(vai_store::EventKind::Added, bytes) => assert_eq!(
                bytes,
                br#"{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}"#
            ),
            other => panic!("{other:?}"),
        }
        let line = br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        assert!(matches!(
            parse_event(line).unwrap(),
            WatchEvent::Bookmark(9, true)
        ));
        let line = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#;
        assert!(matches!(parse_event(line).unwrap(), WatchEvent::Error(s) if s.code == 410));
        assert!(parse_event(br#"{"type":"WHAT","object":{}}"#).is_err());
        assert!(parse_event(b"not json").is_err());
    }
}
