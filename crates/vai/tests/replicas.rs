//! Three `vai serve` replicas on one PostgreSQL database (a private server, `scripts/pg`),
//! against a real apiserver: the first writes, the others serve what it stores — kubectl,
//! kube-rs and client-go through each equal the apiserver, a watch on a reader follows the
//! writer, a continue token from one reader finishes its list on another with the same
//! snapshot. `kill -9` of the writer under churn: another replica writes within seconds with
//! no LIST upstream, and watchers on the readers see every change in order. The database
//! stopped: readers answer 503 with a `Status` and `Retry-After`; started again: everything
//! resumes, nothing lost.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use support::{Informer, Vai, eventually, get, same_through_vai};
use tokio::sync::mpsc;
use vai_testenv::TestEnv;
use vai_testenv::measure::metric_sum;

const NS: &str = "t-replicas";

/// What a watch through vai saw of one object: its resource versions, in order, each with
/// when it came.
type Seen = mpsc::UnboundedReceiver<(u64, Instant)>;

/// Watches `name`'s changes (MODIFIED) from `from` through `vai`, on a task of its own.
fn watch(vai: &Vai, name: &'static str, from: &str) -> Seen {
    let api: Api<ConfigMap> = Api::namespaced(vai.client(), NS);
    let (tx, rx) = mpsc::unbounded_channel();
    let from = from.to_string();
    tokio::spawn(async move {
        let params = WatchParams::default().fields(&format!("metadata.name={name}"));
        let mut stream = api.watch(&params, &from).await.unwrap().boxed();
        while let Some(event) = stream.try_next().await.unwrap() {
            match event {
                WatchEvent::Modified(cm) => {
                    let rv = cm.metadata.resource_version.unwrap().parse().unwrap();
                    if tx.send((rv, Instant::now())).is_err() {
                        return;
                    }
                }
                WatchEvent::Error(e) => panic!("the watch failed: {e:?}"),
                _ => {}
            }
        }
    });
    rx
}

/// The resource version of a list of the namespace's ConfigMaps through `vai` (a watch from
/// an object's own version can be older than what vai's history holds: 410).
async fn listed_at(vai: &Vai) -> String {
    let api: Api<ConfigMap> = Api::namespaced(vai.client(), NS);
    let list = api.list(&Default::default()).await.unwrap();
    list.metadata.resource_version.unwrap()
}

/// The next version a watch saw, within 30 s.
async fn next(seen: &mut Seen) -> (u64, Instant) {
    tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("a change within 30 s")
        .expect("the watch goes on")
}

fn configmap(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": app}}, "data": {"step": "0"}
    }))
    .unwrap()
}

/// Sets `name`'s step upstream; its new resource version.
async fn step(upstream: &Api<ConfigMap>, name: &str, step: usize) -> u64 {
    let patch = serde_json::json!({"data": {"step": step.to_string()}});
    let cm = upstream
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cm.metadata.resource_version.unwrap().parse().unwrap()
}

const STANDING_BY: &str = "another vai process writes the store";
const TOOK_OVER: &str = "this replica writes the store now";

#[tokio::test]
async fn replicas_on_one_database_serve_alike_and_one_takes_over_when_the_writer_dies() {
    let env = TestEnv::shared().await;
    let direct = env.client().await.unwrap();
    support::ensure_namespace(&direct, NS).await;
    let upstream: Api<ConfigMap> = Api::namespaced(direct, NS);
    for (name, app) in [
        ("c1", "a"),
        ("c2", "b"),
        ("c3", "a"),
        ("prop", "p"),
        ("churn", "p"),
    ] {
        upstream
            .create(&PostParams::default(), &configmap(name, app))
            .await
            .unwrap();
    }
    let pg = tokio::task::spawn_blocking(vai_testenv::Postgres::start)
        .await
        .unwrap()
        .expect("a private PostgreSQL starts");
    let pg = std::sync::Arc::new(pg);
    let only = ["--resources", "configmaps,namespaces", "--store", pg.url()];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut writer = Vai::start(env, dirs[0].path(), &only).await;
    let b = Vai::start(env, dirs[1].path(), &only).await;
    let c = Vai::start(env, dirs[2].path(), &only).await;
    assert!(
        !writer.log_text().contains(STANDING_BY),
        "the first replica writes"
    );
    for reader in [&b, &c] {
        assert!(
            reader.log_text().contains(STANDING_BY),
            "a later one stands by"
        );
    }

    // kubectl, kube-rs and client-go through each reader equal the apiserver.
    for reader in [&b, &c] {
        for args in [
            &["configmaps", "-n", NS][..],
            &["configmaps", "-n", NS, "-l", "app=a", "--chunk-size=1"],
            &["configmaps", "-A", "--field-selector", "metadata.name=c2"],
        ] {
            same_through_vai(env, reader, args).await;
        }
        let through: Api<ConfigMap> = Api::namespaced(reader.client(), NS);
        let versions = |list: kube::core::ObjectList<ConfigMap>| -> Vec<(String, String)> {
            list.items
                .into_iter()
                .map(|cm| {
                    (
                        cm.metadata.name.unwrap(),
                        cm.metadata.resource_version.unwrap(),
                    )
                })
                .collect()
        };
        let params = Default::default();
        assert_eq!(
            versions(through.list(&params).await.unwrap()),
            versions(upstream.list(&params).await.unwrap()),
            "kube-rs through a reader"
        );
    }
    let informer = Informer::start(env, &b.url(), NS, false);
    let mut initial = Vec::new();
    loop {
        let event = informer.next(Duration::from_secs(20));
        if event["event"] == "SYNCED" {
            break;
        }
        initial.push(event["name"].as_str().unwrap().to_string());
    }
    initial.sort();
    assert_eq!(
        initial,
        ["c1", "c2", "c3", "churn", "prop"],
        "client-go's first list"
    );
    upstream
        .create(&PostParams::default(), &configmap("c4", "b"))
        .await
        .unwrap();
    let added = informer.next(Duration::from_secs(15));
    assert_eq!(
        (&added["event"], &added["name"]),
        (&"ADDED".into(), &"c4".into())
    );
    drop(informer);

    // A watch on a reader follows a watch on the writer.
    let now = listed_at(&writer).await;
    let (mut on_writer, mut on_reader) = (watch(&writer, "prop", &now), watch(&b, "prop", &now));
    let mut behind = Vec::new();
    for i in 1..=30 {
        let rv = step(&upstream, "prop", i).await;
        let (written, at_writer) = next(&mut on_writer).await;
        let (read, at_reader) = next(&mut on_reader).await;
        assert_eq!((written, read), (rv, rv), "both watches saw the change");
        behind.push(at_reader.saturating_duration_since(at_writer));
    }
    behind.sort();
    eprintln!(
        "a watch on a reader came after one on the writer by p50 {:?}, p99 {:?} (30 changes)",
        behind[behind.len() / 2],
        behind[behind.len() * 99 / 100]
    );

    // A continue token from one reader finishes its list on another, on the same snapshot.
    let path = format!("/api/v1/namespaces/{NS}/configmaps");
    let first = get(&b.url(), &format!("{path}?limit=2"))
        .await
        .unwrap()
        .json();
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&first), ["c1", "c2"]);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    upstream
        .delete("c3", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the deletion reaches the other reader",
        Duration::from_secs(15),
        async || {
            let now = get(&c.url(), &path).await.ok()?.json();
            (!names(&now).contains(&"c3".to_string())).then_some(())
        },
    )
    .await;
    let rest = get(&c.url(), &format!("{path}?limit=100&continue={token}"))
        .await
        .unwrap();
    assert_eq!(rest.status, 200, "{}", String::from_utf8_lossy(&rest.body));
    let rest = rest.json();
    assert_eq!(
        names(&rest),
        ["c3", "c4", "churn", "kube-root-ca.crt", "prop"],
        "the rest of the first snapshot, c3 still in it"
    );
    assert_eq!(
        rest["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
        "one snapshot"
    );

    // kill -9 of the writer under churn.
    let from = listed_at(&b).await;
    let mut watchers = [watch(&b, "churn", &from), watch(&c, "churn", &from)];
    let churn = {
        let upstream = upstream.clone();
        let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 1.. {
                written.push(step(&upstream, "churn", i).await);
                if stop.try_recv().is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            written
        });
        (stop_tx, task)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    writer.kill();
    let next_writer = eventually(
        "a replica takes over",
        Duration::from_secs(10),
        async || {
            [&b, &c]
                .into_iter()
                .find(|r| r.log_text().contains(TOOK_OVER))
        },
    )
    .await;
    eprintln!(
        "a replica took over writing {:?} after kill -9",
        killed.elapsed()
    );
    // Churn goes on under the new writer a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = churn.0.send(());
    let written = churn.1.await.unwrap();
    assert!(written.len() > 20, "churn made {} changes", written.len());
    for seen in &mut watchers {
        let mut rvs = Vec::new();
        while rvs.last() != written.last() {
            rvs.push(next(seen).await.0);
        }
        assert_eq!(rvs, written, "a reader's watch saw every change, in order");
    }
    let metrics =
        String::from_utf8(get(&next_writer.url(), "/metrics").await.unwrap().body).unwrap();
    assert_eq!(
        metric_sum(&metrics, "vai_sync_lists_total", &[]).unwrap_or(0.0),
        0.0,
        "the new writer listed instead of resuming"
    );
    assert!(
        metric_sum(&metrics, "vai_sync_events_total", &[]).unwrap_or(0.0) > 0.0,
        "the new writer stored events"
    );
    let (versions, gaps) = tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || {
            (
                pg.psql("SELECT count(*) FROM vai_versions").unwrap(),
                pg.psql(
                    "SELECT count(*) FROM (SELECT seq - lag(seq) OVER (ORDER BY seq) AS step
                     FROM vai_versions) s WHERE step <> 1",
                )
                .unwrap(),
            )
        }
    })
    .await
    .unwrap();
    assert!(
        versions.parse::<u64>().unwrap() > 50,
        "{versions} versions stored"
    );
    assert_eq!(gaps, "0", "the sequence of commits has no gap");

    // The database stopped: the readers say so, with a Status and Retry-After.
    tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.stop()
    })
    .await
    .unwrap()
    .unwrap();
    for reader in [&b, &c] {
        let down = get(&reader.url(), &path).await.unwrap();
        assert_eq!(down.status, 503, "{}", String::from_utf8_lossy(&down.body));
        assert!(down.headers.contains_key("retry-after"));
        let status = down.json();
        assert_eq!(
            (&status["kind"], &status["code"]),
            (&"Status".into(), &503.into())
        );
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("database is unreachable"),
            "{status}"
        );
    }
    upstream
        .create(&PostParams::default(), &configmap("while-down", "b"))
        .await
        .unwrap();
    tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.restart()
    })
    .await
    .unwrap()
    .unwrap();
    for reader in [&b, &c] {
        same_through_vai(env, reader, &["configmaps", "-n", NS]).await;
    }
}
