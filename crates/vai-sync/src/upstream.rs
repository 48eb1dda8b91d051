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

use vai_store::Item;

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
        // Upstream gzips answers over 128 KiB and watch streams (a member per flush): on a slow
        // link that is most of the bytes saved. Either way what is stored is the plain JSON.
        .header(http::header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .expect("a GET request with valid headers")
}

/// Whether a response's body is gzipped (anything but gzip or none was not asked for).
fn is_gzip(response: &http::Response<Body>) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
}

/// Decompresses a whole gzipped body (one member or several).
fn gunzip(body: &[u8], what: &str) -> Result<Bytes, Error> {
    use std::io::Read as _;
    let mut plain = Vec::with_capacity(body.len() * 4);
    flate2::read::MultiGzDecoder::new(body)
        .read_to_end(&mut plain)
        .map_err(|source| Error::Gzip {
            what: what.to_string(),
            source,
        })?;
    Ok(plain.into())
}

/// A stream's body as it arrives, decompressed when upstream gzipped it: each chunk's output
/// is complete as far as the members received go (upstream ends a member at each flush).
enum Decoder {
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
}

impl Decoder {
    fn of(response: &http::Response<Body>) -> Decoder {
        if is_gzip(response) {
            Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new())))
        } else {
            Decoder::Plain
        }
    }

    /// Appends what `data` decodes to to `out`.
    fn feed(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        use std::io::Write as _;
        match self {
            Decoder::Plain => out.extend_from_slice(data),
            Decoder::Gzip(decoder) => {
                let failed = |source| Error::Gzip {
                    what: "watch stream".into(),
                    source,
                };
                decoder.write_all(data).map_err(failed)?;
                // A write leaves its output in the decoder's buffer until the next call.
                decoder.flush().map_err(failed)?;
                let plain = decoder.get_mut();
                out.extend_from_slice(plain);
                plain.clear();
            }
        }
        Ok(())
    }
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
        .map_err(|source| Error::Upstream {
            context: format!("GET {path_and_query}"),
            source,
        })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let code = response.status().as_u16();
    let gzip = is_gzip(&response);
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body = match gzip {
        true => gunzip(&body, path_and_query).unwrap_or_default(),
        false => body,
    };
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
    let gzip = is_gzip(&response);
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| Error::Timeout(format!("reading {path_and_query}"), timeout))?
        .map_err(|source| Error::Upstream {
            context: format!("reading {path_and_query}"),
            source,
        })?
        .to_bytes();
    if gzip {
        return Ok((content_type, gunzip(&body, path_and_query)?));
    }
    Ok((content_type, body))
}

/// The `Accept` sync sends: tables (cells as upstream prints them, plus the object), or plain
/// JSON where upstream cannot print a type as a table.
pub(crate) const TABLE_ACCEPT: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// One event of a watch stream, its object still as upstream's bytes.
#[derive(Debug)]
pub(crate) enum WatchEvent {
    /// ADDED, MODIFIED or DELETED.
    Object(vai_store::EventKind, Item),
    /// A bookmark: everything up to its resource version has been sent.
    Bookmark(u64),
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

/// An object (or a bookmark's) reduced to its resource version.
#[derive(Deserialize)]
struct BookmarkObject {
    metadata: BookmarkMeta,
}

#[derive(Deserialize)]
struct BookmarkMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
}

/// A `meta.k8s.io` Table: a list page, or one watch event's row.
#[derive(Deserialize)]
struct Table<'a> {
    metadata: TableMeta,
    #[serde(borrow, rename = "columnDefinitions", default)]
    columns: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rows: Option<Vec<TableRow<'a>>>,
}

#[derive(Deserialize)]
struct TableMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct TableRow<'a> {
    #[serde(borrow)]
    cells: &'a RawValue,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

impl TableRow<'_> {
    fn item(&self) -> Result<Item, Error> {
        let object = self
            .object
            .ok_or_else(|| malformed("a table row without its object".into()))?;
        Ok(Item {
            object: object.get().as_bytes().to_vec(),
            cells: Some(self.cells.get().as_bytes().to_vec()),
        })
    }
}

/// Upstream encodes a Table with `kind` first.
fn is_table(object: &RawValue) -> bool {
    object
        .get()
        .starts_with(r#"{"kind":"Table","apiVersion":"meta.k8s.io/"#)
}

fn unreadable(e: serde_json::Error) -> Error {
    Error::Unreadable {
        what: "unreadable watch event".into(),
        source: Some(e),
    }
}

/// Upstream sent well-formed JSON that is not what the API promises.
fn malformed(what: String) -> Error {
    Error::Unreadable { what, source: None }
}

fn parse_resource_version(rv: Option<&str>) -> Result<u64, Error> {
    rv.and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed(format!("resource version {rv:?} is not an integer")))
}

/// Parses one watch line; column definitions of a table event go to `columns`.
fn parse_event(line: &[u8], columns: &mut Option<Vec<u8>>) -> Result<WatchEvent, Error> {
    let parsed: Line = serde_json::from_slice(line).map_err(unreadable)?;
    use vai_store::EventKind::*;
    let kind = match parsed.kind {
        "ADDED" => Added,
        "MODIFIED" => Modified,
        "DELETED" => Deleted,
        "BOOKMARK" => Bookmark,
        "ERROR" => {
            return Ok(WatchEvent::Error(
                serde_json::from_str(parsed.object.get()).map_err(unreadable)?,
            ));
        }
        other => {
            return Err(malformed(format!("unknown watch event type {other:?}")));
        }
    };
    let (item, table_rv) = if is_table(parsed.object) {
        let table: Table = serde_json::from_str(parsed.object.get()).map_err(unreadable)?;
        if let Some(defs) = table.columns {
            *columns = Some(defs.get().as_bytes().to_vec());
        }
        let row = table.rows.unwrap_or_default().into_iter().next();
        match (kind, row) {
            (Bookmark, row) => (
                row.and_then(|r| r.object)
                    .map(|o| Item::from(o.get().as_bytes().to_vec())),
                table.metadata.resource_version,
            ),
            (_, Some(row)) => (Some(row.item()?), None),
            (_, None) => return Err(malformed("a table event without a row".into())),
        }
    } else {
        (
            Some(Item::from(parsed.object.get().as_bytes().to_vec())),
            None,
        )
    };
    if kind != Bookmark {
        return Ok(WatchEvent::Object(
            kind,
            item.expect("an object event has an item"),
        ));
    }
    // A bookmark: its resource version.
    let meta = match &item {
        Some(item) => {
            serde_json::from_slice::<BookmarkObject>(&item.object)
                .map_err(unreadable)?
                .metadata
        }
        None => BookmarkMeta {
            resource_version: None,
        },
    };
    let rv = parse_resource_version(table_rv.or(meta.resource_version).as_deref())?;
    Ok(WatchEvent::Bookmark(rv))
}

/// The resource version of an object's JSON (`metadata.resourceVersion`), if it has one.
pub(crate) fn resource_version_of(object: &[u8]) -> Option<u64> {
    let meta = serde_json::from_slice::<BookmarkObject>(object)
        .ok()?
        .metadata;
    parse_resource_version(meta.resource_version.as_deref()).ok()
}

/// One page of a list, as a table or a plain list.
pub(crate) struct ListPage {
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub items: Vec<Item>,
    pub columns: Option<Vec<u8>>,
}

/// Parses a list page. Plain lists omit `apiVersion` and `kind` on built-in types' items (watch
/// events and table rows carry them); they are put back, since the store keeps whole objects.
pub(crate) fn parse_list_page(
    body: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<ListPage, Error> {
    #[derive(Deserialize)]
    struct Plain<'a> {
        metadata: TableMeta,
        #[serde(borrow, default)]
        items: Vec<&'a RawValue>,
    }
    let bad = |e: serde_json::Error| Error::Unreadable {
        what: "unreadable list page".into(),
        source: Some(e),
    };
    let raw: &RawValue = serde_json::from_slice(body).map_err(bad)?;
    let (meta, items, columns) = if is_table(raw) {
        let table: Table = serde_json::from_str(raw.get()).map_err(bad)?;
        let items = table
            .rows
            .unwrap_or_default()
            .iter()
            .map(TableRow::item)
            .collect::<Result<Vec<_>, Error>>()?;
        (
            table.metadata,
            items,
            table.columns.map(|c| c.get().as_bytes().to_vec()),
        )
    } else {
        let plain: Plain = serde_json::from_str(raw.get()).map_err(bad)?;
        let items = plain
            .items
            .iter()
            .map(|raw| Item::from(with_type_meta(raw.get(), api_version, kind)))
            .collect();
        (plain.metadata, items, None)
    };
    Ok(ListPage {
        resource_version: parse_resource_version(meta.resource_version.as_deref())?,
        continue_token: meta.continue_token.filter(|t| !t.is_empty()),
        items,
        columns,
    })
}

/// Adds `kind` and `apiVersion` to an object that lacks them. Objects that have them (custom
/// resources, which upstream encodes with sorted keys) are kept byte for byte.
fn with_type_meta(raw: &str, api_version: &str, kind: &str) -> Vec<u8> {
    if raw.starts_with("{\"apiVersion\"") || raw.starts_with("{\"kind\"") {
        return raw.as_bytes().to_vec();
    }
    let rest = raw.strip_prefix('{').unwrap_or(raw).trim_start();
    let mut out = Vec::with_capacity(raw.len() + kind.len() + api_version.len() + 32);
    out.extend_from_slice(b"{\"kind\":");
    out.extend_from_slice(serde_json::to_string(kind).unwrap_or_default().as_bytes());
    out.extend_from_slice(b",\"apiVersion\":");
    out.extend_from_slice(
        serde_json::to_string(api_version)
            .unwrap_or_default()
            .as_bytes(),
    );
    if !rest.starts_with('}') {
        out.push(b',');
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// A watch response read line by line; each line one event.
pub(crate) struct EventStream {
    body: Body,
    decoder: Decoder,
    buffer: BytesMut,
    idle_timeout: Duration,
    /// Table column definitions upstream sent and the reader has not taken yet.
    columns: Option<Vec<u8>>,
}

impl EventStream {
    /// Opens a watch (`path_and_query` carries `watch=1` and its parameters).
    pub async fn open(
        client: &kube::Client,
        path_and_query: &str,
        timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<EventStream, Error> {
        let response = send(client, path_and_query, TABLE_ACCEPT, timeout).await?;
        Ok(EventStream {
            decoder: Decoder::of(&response),
            body: response.into_body(),
            buffer: BytesMut::new(),
            idle_timeout,
            columns: None,
        })
    }

    /// Table column definitions received since the last call, if any.
    pub fn take_columns(&mut self) -> Option<Vec<u8>> {
        self.columns.take()
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
                return parse_event(line, &mut self.columns).map(Some);
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
                        parse_event(rest.chunk(), &mut self.columns).map(Some)
                    };
                }
                Some(Err(source)) => {
                    return Err(Error::Upstream {
                        context: "watch stream".into(),
                        source,
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.feed(&data, &mut self.buffer)?;
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

/// Probes upstream's `/readyz` every `interval` (a quarter of it while upstream does not
/// answer), each probe bounded by `timeout`, and publishes the outcome. Runs until its task is aborted (the syncer owns it); it must not stop
/// when no one happens to hold a receiver at the moment.
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
                        tracing::warn!(error = %crate::one_line(e), "upstream does not answer; serving last-good data");
                        h.reachable = false;
                        h.since_ms = now;
                    }
                    h.error = Some(crate::one_line(e));
                }
            }
            // Wake waiters only on a change of reachability.
            was != h.reachable
        });
        // Unreachable, it asks four times as often: the link's return is noticed sooner (a
        // probe is a few hundred bytes).
        let reachable = health.borrow().reachable;
        tokio::time::sleep(if reachable { interval } else { interval / 4 }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_gzipped_stream_decodes_each_member_as_it_completes_however_it_is_split() {
        let events: Vec<String> = (0..5)
            .map(|i| {
                format!(
                    "{{\"type\":\"ADDED\",\"n\":{i},\"pad\":\"{}\"}}\n",
                    "x".repeat(i * 300)
                )
            })
            .collect();
        let members: Vec<Vec<u8>> = events.iter().map(|e| gzip(e.as_bytes())).collect();
        for chunk in [1, 7, 64, 100_000] {
            let mut decoder =
                Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new())));
            let mut out = BytesMut::new();
            for (member, event) in members.iter().zip(&events) {
                let before = out.len();
                for piece in member.chunks(chunk) {
                    decoder.feed(piece, &mut out).unwrap();
                }
                // Everything the member holds is out once the member is in: no event waits
                // for the next one.
                assert_eq!(&out[before..], event.as_bytes(), "chunks of {chunk}");
            }
        }
        let mut plain = Decoder::Plain;
        let mut out = BytesMut::new();
        plain.feed(b"as is", &mut out).unwrap();
        assert_eq!(&out[..], b"as is");
        let mut broken = Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new())));
        let mut bad = gzip(b"abc");
        bad[0] ^= 0xff; // not a gzip header
        assert!(matches!(
            broken.feed(&bad, &mut out),
            Err(Error::Gzip { .. })
        ));
        assert_eq!(
            gunzip(&members.concat(), "x").unwrap(),
            events.concat().as_bytes()
        );
    }

    fn event(line: &str) -> (WatchEvent, Option<Vec<u8>>) {
        let mut columns = None;
        let parsed = parse_event(line.as_bytes(), &mut columns).unwrap();
        (parsed, columns)
    }

    #[test]
    fn watch_lines_keep_the_object_bytes_and_read_bookmarks_and_errors() {
        let (parsed, _) = event(
            r#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}}"#,
        );
        match parsed {
            WatchEvent::Object(vai_store::EventKind::Added, item) => {
                assert_eq!(
                    item.object,
                    br#"{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}"#
                );
                assert_eq!(item.cells, None);
            }
            other => panic!("{other:?}"),
        }
        let (parsed, _) = event(
            r#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#,
        );
        assert!(matches!(parsed, WatchEvent::Bookmark(9)));
        let (parsed, _) =
            event(r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#);
        assert!(matches!(parsed, WatchEvent::Error(s) if s.code == 410));
        let mut columns = None;
        assert!(parse_event(br#"{"type":"WHAT","object":{}}"#, &mut columns).is_err());
        assert!(parse_event(b"not json", &mut columns).is_err());
    }

    #[test]
    fn table_events_give_the_object_its_cells_and_the_columns() {
        let (parsed, columns) = event(
            r#"{"type":"MODIFIED","object":{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"7"},"columnDefinitions":[{"name":"Name"}],"rows":[{"cells":["a",1,"5m"],"object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","resourceVersion":"7"}}}]}}"#,
        );
        match parsed {
            WatchEvent::Object(vai_store::EventKind::Modified, item) => {
                assert_eq!(item.object, br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","resourceVersion":"7"}}"#);
                assert_eq!(item.cells.as_deref(), Some(&br#"["a",1,"5m"]"#[..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(columns.as_deref(), Some(&br#"[{"name":"Name"}]"#[..]));
        // Later events carry no column definitions.
        let (_, columns) = event(
            r#"{"type":"ADDED","object":{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"8"},"columnDefinitions":null,"rows":[{"cells":["b"],"object":{"kind":"ConfigMap","metadata":{"name":"b","resourceVersion":"8"}}}]}}"#,
        );
        assert_eq!(columns, None);
        // A bookmark in table form (this one ended a streaming list's initial events).
        let (parsed, _) = event(
            r#"{"type":"BOOKMARK","object":{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"10501"},"columnDefinitions":null,"rows":[{"cells":["",0,"<unknown>"],"object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"10501","annotations":{"k8s.io/initial-events-end":"true"}}}}]}}"#,
        );
        assert!(matches!(parsed, WatchEvent::Bookmark(10501)));
        let (parsed, _) = event(
            r#"{"type":"BOOKMARK","object":{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"12"},"columnDefinitions":[],"rows":[]}}"#,
        );
        assert!(matches!(parsed, WatchEvent::Bookmark(12)));
    }

    #[test]
    fn errors_keep_their_causes_and_one_line_says_each_once() {
        use std::error::Error as _;
        let mut columns = None;
        let e = parse_event(b"not json", &mut columns).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unreadable watch event",
            "the cause is not repeated"
        );
        let cause = e.source().expect("the parser's error is kept").to_string();
        assert_eq!(
            crate::one_line(&e),
            format!("unreadable watch event: {cause}")
        );
        // Malformed but parseable: no cause to keep.
        let e = parse_event(br#"{"type":"WHAT","object":{}}"#, &mut columns).unwrap_err();
        assert!(e.source().is_none());
        assert_eq!(crate::one_line(&e), r#"unknown watch event type "WHAT""#);

        let nothing = Error::NothingToServe(Box::new(Error::Timeout(
            "GET /api".into(),
            Duration::from_secs(1),
        )));
        assert!(!nothing.to_string().contains("GET /api"), "{nothing}");
        assert_eq!(
            crate::one_line(&nothing),
            format!("{nothing}: GET /api: no answer within 1s")
        );

        // A cause whose text the outer error already prints (as kube's errors do) once.
        #[derive(Debug)]
        struct Echo(std::io::Error);
        impl std::fmt::Display for Echo {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "HyperError: {}", self.0)
            }
        }
        impl std::error::Error for Echo {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let echo = Echo(std::io::Error::other("connection refused"));
        assert_eq!(crate::one_line(&echo), "HyperError: connection refused");
    }

    #[test]
    fn list_pages_as_tables_or_plain_lists() {
        let table = br#"{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"20","continue":"abc"},"columnDefinitions":[{"name":"Name"}],"rows":[{"cells":["a"],"object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a"}}}]}"#;
        let page = parse_list_page(table, "v1", "Pod").unwrap();
        assert_eq!(
            (page.resource_version, page.continue_token.as_deref()),
            (20, Some("abc"))
        );
        assert_eq!(page.items[0].cells.as_deref(), Some(&br#"["a"]"#[..]));
        assert!(page.columns.is_some());
        let plain = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"21"},"items":[{"metadata":{"name":"a"},"spec":{}}]}"#;
        let page = parse_list_page(plain, "v1", "Pod").unwrap();
        assert_eq!((page.resource_version, page.continue_token), (21, None));
        let value: serde_json::Value = serde_json::from_slice(&page.items[0].object).unwrap();
        assert_eq!(
            (value["kind"].as_str(), value["apiVersion"].as_str()),
            (Some("Pod"), Some("v1"))
        );
        assert_eq!(value["metadata"]["name"], "a");
        let cr = r#"{"apiVersion":"x.io/v1","kind":"Thing","metadata":{"name":"a"}}"#;
        assert_eq!(with_type_meta(cr, "x.io/v1", "Thing"), cr.as_bytes());
        assert!(
            serde_json::from_slice::<serde_json::Value>(&with_type_meta("{}", "v1", "Pod")).is_ok()
        );
    }
}
