//! vai when things go wrong: restarts (resume without relisting), `410 Gone` (relist with
//! deletions delivered downstream), and an apiserver that freezes or dies (last-good answers
//! with a warning, writes refused at once, convergence when it returns).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::{ProxyFault, Vai, eventually, get, request};
use vai_testenv::TestEnv;
use vai_testenv::measure::{apiserver_metrics, metric_sum};

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}, "data": {"v": value}
    }))
    .unwrap()
}

/// `name → data.v` of the ConfigMaps of `ns`, as vai serves them.
async fn through_vai(vai: &Vai, ns: &str) -> Option<Vec<(String, String)>> {
    let answer = get(&vai.url(), &format!("/api/v1/namespaces/{ns}/configmaps"))
        .await
        .ok()?;
    (answer.status == 200).then(|| names_and_values(&answer.json()))
}

fn names_and_values(list: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["metadata"]["name"] != "kube-root-ca.crt")
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_string(),
                i["data"]["v"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn vai_metrics(vai: &Vai) -> String {
    String::from_utf8(get(&vai.url(), "/metrics").await.unwrap().body).unwrap()
}

/// The resource version vai holds for a type, from `/vai/v1/status`.
async fn vai_resource_version(vai: &Vai, resource: &str) -> u64 {
    let status = get(&vai.url(), "/vai/v1/status").await.unwrap().json();
    status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == resource)
        .and_then(|r| r["lastResourceVersion"].as_str()?.parse().ok())
        .expect("the type is in the status")
}

#[tokio::test]
async fn a_restart_resumes_without_relisting_and_410_relists_with_deletions_delivered() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let ns = "t-restart";
    support::ensure_namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in ["r1", "r2", "r3"] {
        cms.create(&PostParams::default(), &configmap(name, "1"))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let only = ["--resources", "configmaps,namespaces"];
    let mut vai = Vai::start(&env, dir.path(), &only).await;
    let want = pairs(&[("r1", "1"), ("r2", "1"), ("r3", "1")]);
    eventually("vai has r1..r3", Duration::from_secs(10), async || {
        (through_vai(&vai, ns).await? == want).then_some(())
    })
    .await;
    assert!(vai.stop().success(), "vai exits cleanly on SIGTERM");

    // Changes while vai is down.
    cms.create(&PostParams::default(), &configmap("r4", "1"))
        .await
        .unwrap();
    let patch = serde_json::json!({"data": {"v": "2"}});
    cms.patch("r1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cms.delete("r2", &DeleteParams::default()).await.unwrap();
    let lists_before = metric_sum(
        &apiserver_metrics(&client).await.unwrap(),
        "apiserver_request_total",
        &[r#"verb="LIST""#, r#"resource="configmaps""#],
    )
    .expect("the apiserver counts LISTs of configmaps");
    assert!(lists_before >= 1.0, "vai's first start listed configmaps");

    let vai = Vai::start(&env, dir.path(), &only).await;
    let want = pairs(&[("r1", "2"), ("r3", "1"), ("r4", "1")]);
    eventually(
        "vai converges after its restart",
        Duration::from_secs(10),
        async || (through_vai(&vai, ns).await? == want).then_some(()),
    )
    .await;
    let lists_after = metric_sum(
        &apiserver_metrics(&client).await.unwrap(),
        "apiserver_request_total",
        &[r#"verb="LIST""#, r#"resource="configmaps""#],
    )
    .expect("the apiserver counts LISTs of configmaps");
    assert_eq!(
        lists_after, lists_before,
        "the apiserver served no LIST of configmaps"
    );
    assert_eq!(
        // A counter never incremented has no series: no list at all.
        metric_sum(&vai_metrics(&vai).await, "vai_sync_lists_total", &[]).unwrap_or(0.0),
        0.0,
        "vai listed nothing after its restart (it resumed every type)"
    );
    assert!(
        vai.log_text()
            .contains("resuming from the stored resource version")
    );

    // 410: vai is down while objects are deleted and etcd is compacted; the apiserver's
    // watch cache restarts, so vai's resource version is too old to watch from.
    let seen = vai_resource_version(&vai, "/v1/configmaps").await;
    drop(vai);
    cms.delete("r3", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &configmap("r5", "1"))
        .await
        .unwrap();
    env.compact_etcd().await.unwrap();
    env.restart_apiserver().await.unwrap();
    let vai = Vai::start(&env, dir.path(), &only).await;
    let want = pairs(&[("r1", "2"), ("r4", "1"), ("r5", "1")]);
    eventually(
        "vai converges after a 410",
        Duration::from_secs(15),
        async || (through_vai(&vai, ns).await? == want).then_some(()),
    )
    .await;
    assert!(
        metric_sum(
            &vai_metrics(&vai).await,
            "vai_sync_lists_total",
            &[r#"resource="/v1/configmaps""#]
        )
        .is_some_and(|lists| lists >= 1.0),
        "vai relisted configmaps after the 410"
    );
    // A client that was watching vai resumes from its last resource version and receives
    // the deletion the relist found.
    let path = format!(
        "/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={seen}&timeoutSeconds=2"
    );
    let answer = request(&vai.url(), "GET", &path, None).await.unwrap();
    let events: Vec<(String, String)> = String::from_utf8(answer.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert!(
        events.contains(&("DELETED".into(), "r3".into())),
        "the watch replays r3's deletion: {events:?}"
    );
    assert!(
        events.contains(&("ADDED".into(), "r5".into())),
        "{events:?}"
    );
}

/// Shorter than anything that waits on a frozen upstream (the proxy's 30 s deadline), and
/// long enough for a busy machine: answered by the store, not by upstream. How fast offline
/// reads are is the benchmark harness's to measure.
const NEVER_WAITS: Duration = Duration::from_secs(15);

/// Reads a list through vai and returns (status, elapsed, warning header, state header).
async fn timed_list(vai: &Vai, ns: &str) -> (u16, Duration, Option<String>, String) {
    let started = Instant::now();
    let answer = get(&vai.url(), &format!("/api/v1/namespaces/{ns}/configmaps"))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    (
        answer.status,
        elapsed,
        header("warning"),
        header("x-vai-state").unwrap_or_default(),
    )
}

async fn upstream_reachable(vai: &Vai) -> bool {
    let status = get(&vai.url(), "/vai/v1/status").await.unwrap().json();
    status["upstream"]["reachable"] == true
}

/// Waits until vai reports upstream unreachable.
async fn notices_upstream_is_gone(vai: &Vai) {
    eventually(
        "vai notices upstream is gone",
        Duration::from_secs(10),
        async || (!upstream_reachable(vai).await).then_some(()),
    )
    .await;
}

/// With upstream unreachable: reads answered fast from the store with the warning; writes
/// refused at once with 503 + Retry-After; the status page says since when.
async fn check_offline(vai: &Vai, ns: &str) {
    notices_upstream_is_gone(vai).await;
    for _ in 0..20 {
        let (status, elapsed, warning, state) = timed_list(vai, ns).await;
        assert_eq!(status, 200);
        assert!(elapsed < NEVER_WAITS, "a read took {elapsed:?}");
        let warning = warning.expect("a Warning header while upstream is down");
        assert!(
            warning.starts_with("299 - \"vai: data may be stale since "),
            "{warning}"
        );
        assert_eq!(state, "stale");
    }
    let one = get(
        &vai.url(),
        &format!("/api/v1/namespaces/{ns}/configmaps/o1"),
    )
    .await
    .unwrap();
    assert_eq!(one.status, 200);
    assert!(one.headers.contains_key("x-vai-stale-since"));

    let started = Instant::now();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"nope"}}"#;
    let write = request(
        &vai.url(),
        "POST",
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        Some(body),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < NEVER_WAITS,
        "a write waited {:?}",
        started.elapsed()
    );
    assert_eq!(write.status, 503);
    assert_eq!(write.headers["retry-after"], "5");
    let status = write.json();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("ServiceUnavailable"))
    );

    let page = get(&vai.url(), "/vai/v1/status").await.unwrap().json();
    let cms = page["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "/v1/configmaps")
        .unwrap();
    assert_eq!(cms["state"], "stale");
    assert!(cms["staleSince"].is_string(), "{cms}");
    // Stale because upstream is away, not because vai is behind: nothing waits to be stored.
    assert!(cms["behind"].is_null(), "{cms}");
}

/// After upstream returns: a change made upstream shows through vai within 10 s, unwarned.
async fn check_converges(vai: &Vai, cms: &Api<ConfigMap>, ns: &str, name: &str) {
    cms.create(&PostParams::default(), &configmap(name, "1"))
        .await
        .unwrap();
    let started = Instant::now();
    eventually(
        "vai converges and stops warning",
        Duration::from_secs(10),
        async || {
            let listed = through_vai(vai, ns).await?;
            let (_, _, warning, state) = timed_list(vai, ns).await;
            (listed.iter().any(|(n, _)| n == name) && warning.is_none() && state == "live")
                .then_some(())
        },
    )
    .await;
    eprintln!("converged {:?} after the change", started.elapsed());
    // Caught up: the lag gauges are exported, and say nothing waits.
    let metrics = vai_metrics(vai).await;
    let of_configmaps = ["resource=\"/v1/configmaps\""];
    for gauge in ["vai_sync_lag_seconds", "vai_sync_lag_events"] {
        assert_eq!(
            metric_sum(&metrics, gauge, &of_configmaps),
            Some(0.0),
            "{gauge}"
        );
    }
    // How long the writer was held for the journal is exported.
    let longest = metric_sum(&metrics, "vai_store_writes_held_longest_seconds", &[]);
    assert!(longest.is_some_and(|s| s >= 0.0), "{longest:?}");
}

/// `kubectl explain` through vai while the cluster is paused: answered from the OpenAPI
/// documents sync stored (nobody asked vai for them before), with vai's warning.
#[tokio::test]
async fn kubectl_explain_is_answered_offline_from_the_stored_openapi_documents() {
    let env = TestEnv::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--resources", "configmaps,namespaces"];
    let vai = Vai::start(&env, dir.path(), &args).await;
    let explain = |mut kubectl: std::process::Command| {
        let out = kubectl
            .args(["explain", "configmap.data"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // What the apiserver itself explains (vai is not asked: it has only what sync stored).
    let (ok, direct, stderr) = explain(support::kubectl_direct(&env));
    assert!(
        ok && direct.contains("KIND:") && direct.contains("ConfigMap"),
        "{direct}{stderr}"
    );
    // Sync stores the documents a moment after it starts.
    let root = vai_store::keys::openapi_document("/openapi/v3", "application/json");
    eventually(
        "vai has stored the OpenAPI documents",
        Duration::from_secs(30),
        async || {
            let store = vai_store::Store::open_read_only(&vai.db).ok()?;
            store.document(&root).ok()?.map(|_| ())
        },
    )
    .await;
    env.pause_apiserver().unwrap();
    notices_upstream_is_gone(&vai).await;
    let (ok, offline, stderr) = explain(vai.kubectl(&env));
    assert!(ok, "kubectl explain offline: {stderr}");
    assert_eq!(offline, direct, "the apiserver's own explanation");
    assert!(
        stderr.contains("this OpenAPI document is the one stored last"),
        "vai's warning: {stderr}"
    );
    env.resume_apiserver().unwrap();
}

/// Creates vai refused with 503, as its metrics count them.
async fn refused_creates(vai: &Vai) -> f64 {
    let page = vai_metrics(vai).await;
    let labels = ["verb=\"create\"", "code=\"503\""];
    metric_sum(&page, "vai_request_duration_seconds_count", &labels).unwrap_or(0.0)
}

/// With the cluster gone for longer than `--offline-retry-grace`, a write is refused without
/// `Retry-After`, so kubectl does not retry it (client-go retries a 503 with one, ten times):
/// `kubectl create` fails after one request, with vai's message.
#[tokio::test]
async fn past_the_retry_grace_kubectl_writes_fail_at_once_with_vais_message() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let ns = "t-offline-writes";
    support::ensure_namespace(&client, ns).await;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--resources",
        "configmaps,namespaces",
        "--offline-retry-grace",
        "1s",
    ];
    let vai = Vai::start(&env, dir.path(), &args).await;
    env.pause_apiserver().unwrap();
    notices_upstream_is_gone(&vai).await;
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"nope"}}"#;
    eventually(
        "a write is refused without Retry-After",
        Duration::from_secs(10),
        async || {
            let write = request(&vai.url(), "POST", &path, Some(body)).await.ok()?;
            assert_eq!(write.status, 503);
            (!write.headers.contains_key("retry-after")).then_some(())
        },
    )
    .await;
    let before = refused_creates(&vai).await;
    assert!(before >= 1.0, "the refusals above are counted");
    let out = vai
        .kubectl(&env)
        .args(["create", "configmap", "from-kubectl", "-n", ns])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("upstream has been unreachable for"),
        "kubectl reports vai's message: {stderr}"
    );
    assert_eq!(
        refused_creates(&vai).await - before,
        1.0,
        "kubectl asked once, without retrying"
    );
    env.resume_apiserver().unwrap();
}

#[tokio::test]
async fn a_frozen_or_dead_apiserver_gets_last_good_answers_with_a_warning() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let ns = "t-offline";
    support::ensure_namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, ns);
    cms.create(&PostParams::default(), &configmap("o1", "1"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(&env, dir.path(), &["--resources", "configmaps,namespaces"]).await;
    eventually("vai has o1", Duration::from_secs(10), async || {
        (through_vai(&vai, ns).await? == pairs(&[("o1", "1")])).then_some(())
    })
    .await;

    // Frozen: the connection is accepted, nothing answers.
    env.pause_apiserver().unwrap();
    let (status, elapsed, _, _) = timed_list(&vai, ns).await;
    assert_eq!(status, 200);
    assert!(
        elapsed < NEVER_WAITS,
        "a read right after the freeze took {elapsed:?}"
    );
    check_offline(&vai, ns).await;
    // kubectl prints upstream's table from the cache, and vai's warning.
    let out = vai
        .kubectl(&env)
        .args(["get", "configmaps", "-n", ns])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("NAME") && stdout.contains("DATA") && stdout.contains("o1"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Warning: vai: data may be stale since"),
        "{stderr}"
    );
    env.resume_apiserver().unwrap();
    check_converges(&vai, &cms, ns, "o2").await;

    // Dead: connections refused.
    env.kill_apiserver().unwrap();
    check_offline(&vai, ns).await;

    // Started while the cluster is unreachable: serves what the database has.
    drop(vai);
    let vai = Vai::start(&env, dir.path(), &["--resources", "configmaps,namespaces"]).await;
    assert_eq!(
        through_vai(&vai, ns).await.unwrap(),
        pairs(&[("o1", "1"), ("o2", "1")])
    );
    check_offline(&vai, ns).await;
    assert!(
        vai.log_text()
            .contains("cannot reach the cluster; serving the stored data")
    );

    env.restart_apiserver().await.unwrap();
    check_converges(&vai, &cms, ns, "o3").await;
}

/// An apiserver cuts a watcher that reads slower than events come with `410`. The version vai
/// holds then is seconds old: vai watches again from it instead of listing again (a list that,
/// under the churn that caused the cut, would take long enough to expire in turn).
#[tokio::test]
async fn a_watch_cut_with_410_after_progress_is_resumed_not_relisted() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let ns = "t-cut-410";
    support::ensure_namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.create(&PostParams::default(), &configmap("c1", "1"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, seen) =
        support::faulty_proxy(client.clone(), dir.path(), ProxyFault::CutFirstWatchWith410).await;
    let vai = Vai::spawn_with_kubeconfig(
        &kubeconfig,
        dir.path(),
        support::free_port(),
        &["--resources", "configmaps,namespaces"],
    );
    vai.wait_ready().await;
    // The first change ends the first watch with a 410; the second arrives through the watch
    // that resumed.
    for value in ["2", "3"] {
        patch_value(&cms, "c1", value).await;
        eventually(
            "the change through vai",
            Duration::from_secs(10),
            async || (through_vai(&vai, ns).await? == pairs(&[("c1", value)])).then_some(()),
        )
        .await;
    }
    let log = vai.log_text();
    assert!(log.contains("re-watching from the last version"), "{log}");
    let requests = configmap_requests(&seen);
    let lists = requests.iter().filter(|q| !q.contains("watch=1")).count();
    assert_eq!(lists, 1, "listed once: {requests:#?}");
    assert!(
        requests.iter().filter(|q| q.contains("watch=1")).count() >= 2,
        "watched again: {requests:#?}"
    );
}

/// A list that takes longer than upstream keeps history (100,000 pods under 500 changes/s on
/// two cores took minutes) must still end live. Found by the benchmark harness: vai listed,
/// watched from the list's version, was refused 410 and listed again, for as long as the churn
/// lasted. Now the watch opens at the list's first page and its events are kept on disk and
/// applied after the list; here the proxy holds the list's later pages while objects change,
/// ends the first watch after one event (as at its `timeoutSeconds`: vai renews it), and
/// refuses every watch opened after the list.
#[tokio::test]
async fn a_list_that_outlasts_upstreams_history_ends_live_with_what_changed_meanwhile() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let ns = "t-long-list";
    support::ensure_namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in ["l1", "l2", "l3", "l4"] {
        cms.create(&PostParams::default(), &configmap(name, "1"))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (release, held) = tokio::sync::watch::channel(false);
    let (kubeconfig, seen) = support::faulty_proxy(
        client.clone(),
        dir.path(),
        ProxyFault::HoldPagesThenExpire(held),
    )
    .await;
    let vai = Vai::spawn_with_kubeconfig(
        &kubeconfig,
        dir.path(),
        support::free_port(),
        &[
            "--resources",
            "configmaps,namespaces",
            "--list-page-size",
            "2",
        ],
    );
    eventually(
        "vai watching while its list's second page is held",
        Duration::from_secs(30),
        async || {
            let requests = configmap_requests(&seen);
            (requests.iter().any(|q| q.contains("watch=1"))
                && requests.iter().any(|q| q.contains("continue=")))
            .then_some(())
        },
    )
    .await;
    // Changes on pages not served yet: the list (one snapshot) will not show them. The first
    // ends the first watch; the others arrive through the renewed one.
    patch_value(&cms, "l1", "2").await;
    eventually(
        "vai renewing its watch during the list",
        Duration::from_secs(10),
        async || {
            let requests = configmap_requests(&seen);
            (requests.iter().filter(|q| q.contains("watch=1")).count() == 2).then_some(())
        },
    )
    .await;
    cms.delete("l4", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &configmap("l5", "1"))
        .await
        .unwrap();
    release.send(true).unwrap();
    vai.wait_ready().await;
    let expected = pairs(&[("l1", "2"), ("l2", "1"), ("l3", "1"), ("l5", "1")]);
    eventually(
        "the changes made during the list, through vai",
        Duration::from_secs(10),
        async || (through_vai(&vai, ns).await? == expected).then_some(()),
    )
    .await;
    // Live: a later change arrives through the renewed watch (a new one would be refused).
    patch_value(&cms, "l2", "2").await;
    let expected = pairs(&[("l1", "2"), ("l2", "2"), ("l3", "1"), ("l5", "1")]);
    eventually(
        "a change after the list, through vai",
        Duration::from_secs(10),
        async || (through_vai(&vai, ns).await? == expected).then_some(()),
    )
    .await;
    let requests = configmap_requests(&seen);
    let first_pages = requests
        .iter()
        .filter(|q| !q.contains("watch=1") && !q.contains("continue="))
        .count();
    assert_eq!(first_pages, 1, "listed once: {requests:#?}");
    let watches: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].contains("watch=1"))
        .collect();
    let first_continue = requests.iter().position(|q| q.contains("continue="));
    assert_eq!(watches.len(), 2, "a watch and its renewal: {requests:#?}");
    assert!(
        Some(watches[0]) < first_continue,
        "the watch opened before the second page: {requests:#?}"
    );
    let log = vai.log_text();
    assert!(
        log.contains("applied the events watched during the list"),
        "{log}"
    );
}

async fn patch_value(cms: &Api<ConfigMap>, name: &str, value: &str) {
    cms.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"v": value}})),
    )
    .await
    .unwrap();
}

/// The ConfigMap requests a [`support::faulty_proxy`] received, in order.
fn configmap_requests(seen: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|q| q.contains("/configmaps?"))
        .cloned()
        .collect()
}
