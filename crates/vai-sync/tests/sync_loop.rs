//! The list/watch loop against a scripted upstream: a loopback HTTP server that answers each
//! request from a script and reports it to the test, so the order of lists and watches (the
//! state machine's decisions, performed by the real driver and I/O) is asserted without a
//! real apiserver. This test never sleeps to synchronise: it waits for requests to arrive.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vai_store::{Store, StoreConfig};
use vai_sync::{Freshness, ResourceInfo, SyncConfig, Syncer};

/// What the scripted upstream answers.
enum Reply {
    /// A whole JSON document with this status.
    Json(u16, String),
    /// A watch: these lines, then the end of the stream.
    Events(Vec<String>),
    /// A watch that stays open and silent.
    Hang,
}

/// Serves `script` (request path and query → reply) on loopback; every request but the
/// health probe's is sent to the returned channel.
async fn upstream(
    script: impl Fn(&str) -> Reply + Send + Sync + 'static,
) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, requests) = mpsc::unbounded_channel();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            let (script, seen) = (script.clone(), seen.clone());
            tokio::spawn(async move { answer(conn, &*script, &seen).await });
        }
    });
    (url, requests)
}

async fn answer(
    mut conn: TcpStream,
    script: &(dyn Fn(&str) -> Reply + Send + Sync),
    seen: &mpsc::UnboundedSender<String>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or_default().to_string();
    if target != "/readyz" {
        let _ = seen.send(target.clone());
    }
    let response = match script(&target) {
        Reply::Json(status, body) => format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
        Reply::Events(lines) => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{}",
            lines.concat()
        ),
        Reply::Hang => {
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n")
                .await;
            std::future::pending::<()>().await;
            return;
        }
    };
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}

fn config_map(name: &str, rv: u64) -> String {
    format!(
        r#"{{"kind":"ConfigMap","apiVersion":"v1","metadata":{{"name":"{name}","namespace":"default","uid":"uid-{name}","resourceVersion":"{rv}"}}}}"#
    )
}

fn list(rv: u64, names: &[(&str, u64)]) -> Reply {
    let items: Vec<_> = names.iter().map(|(n, v)| config_map(n, *v)).collect();
    Reply::Json(
        200,
        format!(
            r#"{{"kind":"ConfigMapList","apiVersion":"v1","metadata":{{"resourceVersion":"{rv}"}},"items":[{}]}}"#,
            items.join(",")
        ),
    )
}

fn gone() -> Reply {
    Reply::Json(
        410,
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":410,"reason":"Expired","message":"too old resource version"}"#.into(),
    )
}

fn config_maps() -> ResourceInfo {
    ResourceInfo {
        group: String::new(),
        version: "v1".into(),
        plural: "configmaps".into(),
        kind: "ConfigMap".into(),
        namespaced: true,
    }
}

async fn start(url: &str, store: &Store) -> Syncer {
    start_with(url, store, SyncConfig::default()).await
}

async fn start_with(url: &str, store: &Store, config: SyncConfig) -> Syncer {
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let config = SyncConfig {
        probe_interval: Duration::from_secs(3600),
        ..config
    };
    Syncer::start_types(
        client,
        store.clone(),
        config,
        &prometheus::Registry::new(),
        vec![config_maps()],
    )
}

/// The next request the loop makes: `list`, or `watch <rv>` (`readyz`: the health probe's).
async fn next(requests: &mut mpsc::UnboundedReceiver<String>) -> String {
    let target = tokio::time::timeout(Duration::from_secs(30), requests.recv())
        .await
        .expect("a request within 30 s")
        .expect("the upstream runs");
    describe(&target)
}

fn describe(target: &str) -> String {
    let param = |name: &str| {
        target
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix(name))
            .map(str::to_string)
    };
    if target.starts_with("/readyz") {
        return "readyz".into();
    }
    match param("resourceVersion=") {
        Some(rv) if param("watch=").is_some() => format!("watch {rv}"),
        _ => "list".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_refused_410_relists_and_a_restart_resumes_from_the_store_without_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vai.db"), StoreConfig::default()).unwrap();
    let lists = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = lists.clone();
    let (url, mut requests) = upstream(move |target| match describe(target).as_str() {
        "list" if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
            list(10, &[("a", 9)])
        }
        "list" => list(20, &[("b", 19)]),
        "readyz" => Reply::Json(200, "ok".into()),
        // An event, then upstream ends the stream normally.
        "watch 10" => Reply::Events(vec![format!(
            "{{\"type\":\"ADDED\",\"object\":{}}}\n",
            config_map("c", 11)
        )]),
        "watch 11" => gone(),
        _ => Reply::Hang,
    })
    .await;
    let syncer = start(&url, &store).await;
    assert_eq!(next(&mut requests).await, "list", "never listed: a list");
    assert_eq!(
        next(&mut requests).await,
        "watch 10",
        "from the list's version"
    );
    assert_eq!(
        next(&mut requests).await,
        "watch 11",
        "closed: from the last event"
    );
    assert_eq!(
        next(&mut requests).await,
        "list",
        "410 when it opens: a relist"
    );
    assert_eq!(next(&mut requests).await, "watch 20");
    let state = store.resource_state("/v1/configmaps").unwrap().unwrap();
    assert_eq!(
        (state.list_resource_version, state.last_resource_version),
        (Some(20), 20)
    );
    assert!(syncer.ready());
    drop(syncer);

    // A restart: the store holds a whole set, so the loop watches from its last version.
    let (url, mut requests) = upstream(|target| match describe(target).as_str() {
        "readyz" => Reply::Json(200, "ok".into()),
        _ => Reply::Hang,
    })
    .await;
    let syncer = start(&url, &store).await;
    assert_eq!(
        next(&mut requests).await,
        "watch 20",
        "no list at a restart"
    );
    assert!(
        syncer.ready(),
        "synced from the store before the watch opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cut_by_410_after_progress_is_watched_again_before_any_relist() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vai.db"), StoreConfig::default()).unwrap();
    let (url, mut requests) = upstream(|target| match describe(target).as_str() {
        "list" => list(10, &[("a", 9)]),
        "readyz" => Reply::Json(200, "ok".into()),
        // Progress, then the ERROR event a slow watcher gets.
        "watch 10" => Reply::Events(vec![
            format!(
                "{{\"type\":\"ADDED\",\"object\":{}}}\n",
                config_map("c", 12)
            ),
            r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"cut"}}"#.to_string()
                + "\n",
        ]),
        // No progress, then the same: this one relists.
        "watch 12" => Reply::Events(vec![
            r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#
                .to_string()
                + "\n",
        ]),
        _ => Reply::Hang,
    })
    .await;
    let _syncer = start(&url, &store).await;
    assert_eq!(next(&mut requests).await, "list");
    assert_eq!(next(&mut requests).await, "watch 10");
    assert_eq!(
        next(&mut requests).await,
        "watch 12",
        "after progress: re-watch"
    );
    assert_eq!(next(&mut requests).await, "list", "no progress: relist");
}

/// Polls `f` until it gives `Some` (a condition of the loop under test; 60 s at most).
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_its_watch_past_the_bound_is_stale_until_it_has_stored_what_came() {
    const KEY: &str = "/v1/configmaps";
    const EVENTS: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vai.db"), StoreConfig::default()).unwrap();
    // A burst far larger than the store applies within the bound: the watch sends it at once.
    let burst: Vec<String> = (0..EVENTS)
        .map(|i| {
            let object = config_map(&format!("c{i}"), 11 + i);
            format!("{{\"type\":\"ADDED\",\"object\":{object}}}\n")
        })
        .collect();
    let last = 10 + EVENTS;
    let (url, mut requests) = upstream(move |target| match describe(target).as_str() {
        "list" => list(10, &[("a", 9)]),
        "readyz" => Reply::Json(200, "ok".into()),
        "watch 10" => Reply::Events(burst.clone()),
        _ => Reply::Hang,
    })
    .await;
    let config = SyncConfig {
        max_lag: Duration::from_millis(5),
        ..SyncConfig::default()
    };
    let syncer = start_with(&url, &store, config).await;
    assert_eq!(next(&mut requests).await, "list");
    assert_eq!(next(&mut requests).await, "watch 10");

    let cause = until("stale while behind", || match syncer.freshness(KEY) {
        Freshness::Stale { cause, since_ms } if cause.contains("behind upstream") => {
            Some((cause, since_ms))
        }
        _ => None,
    })
    .await;
    let behind = until("the board says how far", || {
        syncer.status().get(KEY)?.behind
    })
    .await;
    assert!(behind.events >= 1, "{behind:?} {cause:?}");

    // Everything received gets stored; then it is live again, with nothing behind.
    until("caught up and live", || {
        let stored = store.count(KEY).unwrap() == EVENTS + 1;
        (stored && syncer.freshness(KEY) == Freshness::Live).then_some(())
    })
    .await;
    assert_eq!(next(&mut requests).await, format!("watch {last}"));
    assert_eq!(syncer.status().get(KEY).unwrap().behind, None);
    let state = store.resource_state(KEY).unwrap().unwrap();
    assert_eq!(state.last_resource_version, last);
}
