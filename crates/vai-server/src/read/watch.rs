//! Watches of a cached type: history replayed from the asked resource version, then live
//! events, in the form the client asked for; bookmarks; `sendInitialEvents`; an object that
//! enters or leaves a selection arrives as `ADDED` or `DELETED`, as upstream sends. Too old a
//! version is an `ERROR` event with `410`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use vai_store::selector::Field;
use vai_store::{Attributes, Event, EventKind, FieldSet, ListRequest, ListSink, Pace, Row};
use vai_sync::ResourceInfo;

use crate::app::App;
use axum::http::request::Parts;

use crate::errors::ApiError;
use crate::form::{Form, render};
use crate::path::ResourcePath;
use crate::read::error::ReadError;
use crate::read::outbox::Outbox;
use crate::read::params::{Params, flag, invalid, number};
use crate::read::selection::{selectable, selection};
use crate::read::version;

pub(crate) async fn watch(
    app: &App,
    info: &ResourceInfo,
    target: &ResourcePath,
    params: &Params,
    form: Result<Form, ApiError>,
    fields: Arc<FieldSet>,
    parts: &Parts,
) -> Result<Response, ReadError> {
    let filters = match crate::query_api::parse(&fields, &parts.uri)? {
        Some(q) if q.page_size.is_some() || q.revision.is_some() => {
            return Err(ApiError::bad_request(
                "a watch takes filter=, not page, pagesize or revision",
            )
            .into());
        }
        Some(q) => q.filters,
        None => Vec::new(),
    };
    let revoked = crate::access::revoked(app, parts);
    let key = info.key();
    let request = selection(target, params)?;
    // A field the type does not have: upstream answers (or, offline, refuses) it.
    selectable(info, &fields, &request)?;
    let rv = number("resourceVersion", &params.resource_version)?;
    let bookmarks = flag(&params.allow_watch_bookmarks)?.unwrap_or(false);
    let send_initial = flag(&params.send_initial_events)?;
    let matching = params.resource_version_match.as_deref().unwrap_or("");
    if send_initial.is_some() && matching != "NotOlderThan" {
        return Err(invalid(
            "sendInitialEvents is forbidden unless resourceVersionMatch is \"NotOlderThan\"",
        )
        .into());
    }
    if send_initial.is_none() && !matching.is_empty() {
        return Err(invalid("resourceVersionMatch is forbidden for watch").into());
    }
    let timeout = number("timeoutSeconds", &params.timeout_seconds)?
        .map(Duration::from_secs)
        .unwrap_or(app.config.default_watch_timeout);
    let form = form?;
    // Unset or "0": start with the current state as ADDED events ("get state and start at
    // most recent"); sendInitialEvents says so explicitly.
    let initial = send_initial.unwrap_or(matches!(rv, None | Some(0)));
    if !app.syncer.synced(&key) {
        return Err(ReadError::Proxy);
    }
    if let Some(v) = rv.filter(|v| *v > 0 && send_initial == Some(true)) {
        version::wait_for(app, &key, v).await?;
    }
    // With a label or indexed-field selector, an object can enter or leave the selection by
    // changing: the watch keeps the keys the client holds, to send ADDED and DELETED as
    // upstream does.
    let track = !request.labels.0.is_empty()
        || !filters.is_empty()
        || request
            .fields
            .0
            .iter()
            .any(|r| matches!(r.field, Field::Other(_)));
    let (tx, rx) = mpsc::channel::<Line>(256);
    // Told once the watch has subscribed to the store's events and read its history (or
    // failed to): see below.
    let (subscribed_tx, subscribed) = oneshot::channel::<()>();
    let store = app.store.clone();
    let mut lines = WatchLines {
        form,
        info: info.clone(),
        columns_sent: false,
    };
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::pin!(revoked);
        // The initial state (if asked, or if the watch tracks membership) and the watch's
        // history are read on a blocking thread.
        let started = {
            let (store, key, request, tx) =
                (store.clone(), key.clone(), request.clone(), tx.clone());
            let from = rv.filter(|v| *v > 0 && !initial);
            let initial_filters = filters.clone();
            let fields = fields.clone();
            tokio::task::spawn_blocking(move || {
                let mut members = HashSet::new();
                let listed = if !initial && !track {
                    match from {
                        Some(v) => Ok(v),
                        None => store
                            .resource_state(&key)
                            .map(|s| s.map_or(0, |s| s.last_resource_version)),
                    }
                } else {
                    let request = ListRequest {
                        resource_version: from,
                        ..request
                    };
                    let mut sink = InitialState {
                        filters: &initial_filters,
                        fields: &fields,
                        members: track.then_some(&mut members),
                        lines: initial.then_some(&mut lines),
                        outbox: Outbox::new(tx.clone()),
                    };
                    store
                        .list_paced(&key, &request, &mut sink)
                        .map(|meta| meta.resource_version)
                };
                let started = listed.and_then(|start| {
                    let watch = store.watch(&key, start)?;
                    Ok((start, track.then_some(members), watch))
                });
                (started, lines)
            })
            .await
        };
        let _ = subscribed_tx.send(());
        let (start, mut members, mut watch) = match started {
            Ok((Ok(started), returned)) => {
                lines = returned;
                started
            }
            // The client left while its initial state was read: nothing to tell.
            Ok((Err(_), _)) if tx.is_closed() => return,
            Ok((Err(e), _)) => {
                let _ = tx.send(Line::Whole(error_line(e))).await;
                return;
            }
            Err(e) => {
                let internal = ApiError::internal(format!("a watch task failed: {e}"));
                let _ = tx
                    .send(Line::Whole(event_line(
                        "ERROR",
                        internal.body().to_string().as_bytes(),
                    )))
                    .await;
                return;
            }
        };
        if send_initial == Some(true)
            && bookmarks
            && tx
                .send(Line::Whole(lines.bookmark(start, true)))
                .await
                .is_err()
        {
            return;
        }
        loop {
            let event = tokio::select! {
                event = watch.next() => event,
                _ = &mut deadline => return,
                // The caller lost the right to watch: say so, as the stream's last event.
                forbidden = &mut revoked => {
                    let _ = tx.send(Line::Whole(event_line("ERROR", forbidden.body().to_string().as_bytes()))).await;
                    return;
                }
                _ = tx.closed() => return,
            };
            let line = match event {
                Ok(e) if e.kind == EventKind::Bookmark => {
                    if !bookmarks {
                        continue;
                    }
                    Line::Whole(lines.bookmark(e.resource_version, false))
                }
                Ok(e) => match transition(&mut members, &request, &fields, &filters, &e) {
                    Some(kind) => lines.live(kind, &e),
                    None => continue,
                },
                // Lagged or closed: end the stream; the client re-watches from its last RV.
                Err(_) => return,
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    // Without initial events to stream, the headers go once the watch has subscribed, as the
    // apiserver sends them once its watcher is registered: a watch that has answered is live
    // (what is committed next reaches it at once, not after its history read, queued behind
    // other watches' on the reader pool).
    if !initial && !track {
        let _ = subscribed.await;
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    })
    .flat_map(|line| futures::stream::iter(line.pieces().map(Ok::<_, std::io::Error>)));
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// A line of a watch stream as it goes to the client: whole, or an object's event framed
/// around the store's own bytes of its body, which every watcher of the full form shares (the
/// event is serialised once for all of them: a pointer is copied per watcher, not the object).
enum Line {
    Whole(Bytes),
    /// The line's start (`{"type":"…","object":`), then the body; the end is `}` and a newline.
    Framed(&'static [u8], Bytes),
}

impl Line {
    fn pieces(self) -> impl Iterator<Item = Bytes> {
        match self {
            Line::Whole(line) => [Some(line), None, None],
            Line::Framed(head, body) => [
                Some(Bytes::from_static(head)),
                Some(body),
                Some(Bytes::from_static(b"}\n")),
            ],
        }
        .into_iter()
        .flatten()
    }
}

/// One line of a watch stream.
fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(br#"{"type":""#);
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(br#"","object":"#);
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// An `ERROR` event carrying the error's `Status`.
fn error_line(e: vai_store::Error) -> Bytes {
    event_line("ERROR", ApiError::from(e).body().to_string().as_bytes())
}

/// Writes a watch's lines in the form the client asked for. In table form every event is a
/// `Table` of one row, and only the first carries the column definitions, as upstream does.
struct WatchLines {
    form: Form,
    info: ResourceInfo,
    columns_sent: bool,
}

impl WatchLines {
    /// A live event's line: framed around its shared body in the full form, else rendered.
    fn live(&mut self, kind: &str, event: &Event) -> Line {
        let head: &'static [u8] = match kind {
            "ADDED" => br#"{"type":"ADDED","object":"#,
            "MODIFIED" => br#"{"type":"MODIFIED","object":"#,
            _ => br#"{"type":"DELETED","object":"#,
        };
        match self.form {
            Form::Full => Line::Framed(head, Bytes::from_owner(event.body.clone())),
            _ => Line::Whole(self.object(
                kind,
                &event.body,
                event.cells.as_deref(),
                Some(event.resource_version),
            )),
        }
    }

    fn object(&mut self, kind: &str, body: &[u8], cells: Option<&[u8]>, rv: Option<u64>) -> Bytes {
        let Form::Table(table) = &self.form else {
            return event_line(kind, &render(&self.form, body, cells));
        };
        let mut object = table.head(!self.columns_sent).into_bytes();
        self.columns_sent = true;
        object.extend_from_slice(&table.row(body, cells, vai_sync::now_ms()));
        let metadata = rv.map_or_else(String::new, |rv| format!(r#""resourceVersion":"{rv}""#));
        object.extend_from_slice(format!(r#"],"metadata":{{{metadata}}}}}"#).as_bytes());
        event_line(kind, &object)
    }

    /// A bookmark: only a resource version (and, ending initial events, the annotation).
    fn bookmark(&mut self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = serde_json::json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match &self.form {
            Form::Full => (self.info.kind.clone(), self.info.api_version()),
            Form::Metadata => ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into()),
            Form::Table(table) => {
                let object = serde_json::json!({
                    "kind": "Table", "apiVersion": table.api_version,
                    "metadata": {"resourceVersion": rv.to_string()},
                    "columnDefinitions": null,
                    "rows": [{"cells": [], "object": {
                        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": metadata}}],
                });
                return event_line("BOOKMARK", object.to_string().as_bytes());
            }
        };
        let object =
            serde_json::json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
        event_line("BOOKMARK", object.to_string().as_bytes())
    }
}

/// A watch's initial state, read from the store: the keys it holds (when it tracks
/// membership) and, if asked, each object as an `ADDED` line, through an [`Outbox`].
struct InitialState<'a> {
    filters: &'a [vai_store::Filter],
    fields: &'a FieldSet,
    members: Option<&'a mut HashSet<(String, String)>>,
    lines: Option<&'a mut WatchLines>,
    outbox: Outbox<Line>,
}

impl ListSink for InitialState<'_> {
    fn item(&mut self, row: Row) -> vai_store::Result<Pace> {
        if !object_passes(self.filters, self.fields, row.namespace, row.name, row.body) {
            return Ok(Pace::On);
        }
        if let Some(members) = &mut self.members {
            members.insert((row.namespace.to_string(), row.name.to_string()));
        }
        let Some(lines) = &mut self.lines else {
            return Ok(Pace::On);
        };
        self.outbox.offer(Line::Whole(
            lines.object("ADDED", row.body, row.cells, None),
        ))
    }

    fn between(&mut self) -> vai_store::Result<()> {
        self.outbox.flush()
    }
}

/// Whether a listed object passes the query API's filters (the store's semantics: see
/// [`vai_store::Filter::matches_attributes`]); its body is read only when there are filters.
fn object_passes(
    filters: &[vai_store::Filter],
    fields: &FieldSet,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> bool {
    if filters.is_empty() {
        return true;
    }
    match Attributes::read(fields, body) {
        Ok(attributes) => filters
            .iter()
            .all(|f| f.matches_attributes(namespace, name, &attributes)),
        Err(_) => false,
    }
}

/// The event type a watcher receives for `event`, or `None` when it is not for it. With
/// `members` (the keys the watcher holds, kept when a label selector is in play), a change that
/// brings an object into the selection is `ADDED` and one that takes it out is `DELETED`.
fn transition(
    members: &mut Option<HashSet<(String, String)>>,
    request: &ListRequest,
    fields: &FieldSet,
    filters: &[vai_store::Filter],
    event: &Event,
) -> Option<&'static str> {
    let selected_now =
        request.matches(fields, event) && filters.iter().all(|f| f.matches_event(event));
    let Some(members) = members else {
        return selected_now.then_some(match event.kind {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            _ => "DELETED",
        });
    };
    let key = (event.namespace.clone(), event.name.clone());
    let held = members.contains(&key);
    let now = event.kind != EventKind::Deleted && selected_now;
    match (held, now) {
        (false, false) => None,
        (false, true) => {
            members.insert(key);
            Some("ADDED")
        }
        (true, true) => Some("MODIFIED"),
        (true, false) => {
            members.remove(&key);
            Some("DELETED")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vai_store::LabelSelector;

    fn event(kind: EventKind, name: &str, app: &str) -> Event {
        let body = format!(
            r#"{{"kind":"Pod","metadata":{{"name":"{name}","namespace":"ns","resourceVersion":"1","labels":{{"app":"{app}"}}}}}}"#
        );
        let pods = vai_store::fields::builtin("/v1/pods");
        Event {
            resource: "/v1/pods".into(),
            seq: 1,
            kind,
            resource_version: 1,
            namespace: "ns".into(),
            name: name.into(),
            attributes: Attributes::read(&pods, body.as_bytes()).unwrap().into(),
            body: body.into_bytes().into(),
            cells: None,
        }
    }

    #[test]
    fn a_live_event_in_full_form_is_the_line_it_would_be_whole_and_shares_the_body() {
        let info = ResourceInfo {
            group: String::new(),
            version: "v1".into(),
            plural: "pods".into(),
            kind: "Pod".into(),
            namespaced: true,
        };
        let mut lines = WatchLines {
            form: Form::Full,
            info,
            columns_sent: false,
        };
        for (kind, event_kind) in [
            ("ADDED", EventKind::Added),
            ("MODIFIED", EventKind::Modified),
            ("DELETED", EventKind::Deleted),
        ] {
            let e = event(event_kind, "p", "web");
            let line = lines.live(kind, &e);
            let Line::Framed(_, body) = &line else {
                panic!("the full form frames the shared body");
            };
            assert_eq!(body.as_ptr(), e.body.as_ptr(), "not copied");
            let joined: Vec<u8> = line.pieces().flat_map(|b| b.to_vec()).collect();
            assert_eq!(joined, event_line(kind, &e.body).to_vec());
        }
    }

    #[test]
    fn objects_entering_or_leaving_a_label_selection_are_added_or_deleted() {
        let request = ListRequest {
            labels: LabelSelector::parse("app=web").unwrap(),
            ..ListRequest::default()
        };
        let mut members = Some(HashSet::new());
        let pods = vai_store::fields::builtin("/v1/pods");
        let mut step =
            |kind, app| transition(&mut members, &request, &pods, &[], &event(kind, "p", app));
        assert_eq!(step(EventKind::Added, "db"), None);
        assert_eq!(step(EventKind::Modified, "web"), Some("ADDED"));
        assert_eq!(step(EventKind::Modified, "web"), Some("MODIFIED"));
        assert_eq!(step(EventKind::Modified, "db"), Some("DELETED"));
        assert_eq!(step(EventKind::Deleted, "db"), None);
        assert_eq!(step(EventKind::Added, "web"), Some("ADDED"));
        assert_eq!(step(EventKind::Deleted, "web"), Some("DELETED"));
        // Without tracking (no label selector), events pass through as they are.
        let mut untracked = None;
        let all = ListRequest::default();
        let e = event(EventKind::Modified, "p", "x");
        assert_eq!(
            transition(&mut untracked, &all, &pods, &[], &e),
            Some("MODIFIED")
        );
    }
}
