//! vai on an emulated link to the apiserver (Toxiproxy, `vai_testenv::link`): what the link
//! carries for a first list and a restart, and what a stalled link does to vai's answers.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use support::{Vai, ensure_namespace, eventually, get};
use vai_testenv::TestEnv;

/// A ConfigMap holding a small properties file, as applications keep them: the same keys in
/// every one, values that differ.
fn config_map(i: usize) -> ConfigMap {
    let properties: String = (0..40)
        .map(|k| {
            format!(
                "service.setting-{k}.value={}\n",
                (i * 7919 + k * 104_729) % 100_003
            )
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("app-config-{i:05}"),
            "labels": {"app": format!("app-{}", i % 20), "tier": "backend"},
        },
        "data": {"application.properties": properties},
    }))
    .unwrap()
}

/// The bytes of a plain, uncompressed JSON list of every ConfigMap, in pages of 500 as vai
/// lists: what a client that does not ask for gzip downloads.
async fn plain_list_bytes(client: &kube::Client) -> usize {
    let (mut bytes, mut token) = (0, String::new());
    loop {
        let request = http::Request::get(format!("/api/v1/configmaps?limit=500&continue={token}"))
            .body(Vec::new())
            .unwrap();
        let page = client.request_text(request).await.unwrap();
        bytes += page.len();
        let page: serde_json::Value = serde_json::from_str(&page).unwrap();
        match page["metadata"]["continue"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_string(),
            _ => return bytes,
        }
    }
}

#[tokio::test]
async fn over_the_link_a_first_list_costs_a_fraction_of_its_json_and_a_restart_fetches_no_openapi_document_again()
 {
    let env = TestEnv::start().await.unwrap();
    let link = env.link().await.unwrap();
    let client = env.client().await.unwrap();
    ensure_namespace(&client, "edge").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "edge");
    futures::stream::iter(0..1_500)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &config_map(i)).await }
        })
        .buffer_unordered(16)
        .for_each(|created| async move {
            created.unwrap();
        })
        .await;
    let plain = plain_list_bytes(&client).await;
    assert!(plain > 1_500 * 1_000, "the list is large: {plain} bytes");

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = link.kubeconfig_path();
    let stored_openapi = "stored the OpenAPI documents";

    // First run: a small type only, until the OpenAPI documents are stored.
    let mut first = Vai::spawn_with_kubeconfig(
        kubeconfig,
        dir.path(),
        support::free_port(),
        &["--resources", "namespaces"],
    );
    first.wait_ready().await;
    eventually(
        "the first run stores the OpenAPI documents",
        Duration::from_secs(120),
        async || first.log_text().contains(stored_openapi).then_some(()),
    )
    .await;
    let first_run = link.bytes().down;
    first.stop();

    // Second run, same database: the ConfigMaps are listed for the first time.
    let before = link.bytes().down;
    let second = Vai::spawn_with_kubeconfig(
        kubeconfig,
        dir.path(),
        support::free_port(),
        &["--resources", "namespaces,configmaps"],
    );
    second.wait_ready().await;
    eventually(
        "the second run refreshes the OpenAPI documents",
        Duration::from_secs(120),
        async || second.log_text().contains(stored_openapi).then_some(()),
    )
    .await;
    let second_run = link.bytes().down - before;
    let listed = get(
        &second.url(),
        "/api/v1/namespaces/edge/configmaps?labelSelector=tier%3Dbackend",
    )
    .await
    .unwrap()
    .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1_500);

    let ratio = second_run as f64 / plain as f64;
    eprintln!(
        "link bytes down: first run (discovery, OpenAPI) {first_run}; second run (discovery, \
         the OpenAPI index, the ConfigMaps listed and watched) {second_run} = {ratio:.3} x the \
         plain JSON list ({plain})"
    );
    assert!(
        first_run > 1_000_000,
        "the first run fetched the OpenAPI documents: {first_run} bytes"
    );
    assert!(
        second_run < first_run / 2,
        "the restart fetched the stored OpenAPI documents again: {second_run} vs {first_run} bytes"
    );
    assert!(
        ratio <= 0.35,
        "a first list over the link costs at most 0.35 x its plain JSON, TLS and discovery \
         included: {ratio:.3}"
    );
}

/// A sum over vai's `/metrics` page.
async fn vai_metric(vai: &Vai, name: &str) -> f64 {
    let page = String::from_utf8(get(&vai.url(), "/metrics").await.unwrap().body).unwrap();
    vai_testenv::measure::metric_sum(&page, name, &[]).unwrap_or(0.0)
}

/// The value of ConfigMap `setting` in namespace `field` as vai serves it, and its `Warning`.
async fn setting_through(vai: &Vai) -> (Option<String>, Option<String>) {
    let answer = get(&vai.url(), "/api/v1/namespaces/field/configmaps/setting")
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let warning = answer
        .headers
        .get("warning")
        .map(|v| v.to_str().unwrap().to_string());
    let value = answer.json()["data"]["value"].as_str().map(String::from);
    (value, warning)
}

#[tokio::test]
async fn a_stalled_link_is_noticed_answered_from_the_cache_and_resumed_without_a_relist_read_types_first()
 {
    let env = TestEnv::start().await.unwrap();
    let link = env.link().await.unwrap();
    let client = env.client().await.unwrap();
    ensure_namespace(&client, "field").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "field");
    let setting = |value: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "setting"}, "data": {"value": value},
        }))
        .unwrap()
    };
    api.create(&PostParams::default(), &setting("before"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Every type upstream serves: dozens reconnect after the stall.
    let vai = Vai::spawn_with_kubeconfig(
        link.kubeconfig_path(),
        dir.path(),
        support::free_port(),
        &[],
    );
    vai.wait_ready().await;
    assert_eq!(setting_through(&vai).await.0.as_deref(), Some("before"));
    let lists = vai_metric(&vai, "vai_sync_lists_total").await;
    assert!(lists > 10.0, "the initial sync listed every type: {lists}");
    // Lists and watches share HTTP/2 connections (kube's HTTP/1.1 client makes one a watch:
    // 63 types took 64).
    let connections = link.bytes().connections;
    assert!(
        (1..=10).contains(&connections),
        "{lists} types synced over {connections} connections"
    );

    // The link stalls: nothing gets through, nothing is refused.
    link.stall().await.unwrap();
    eventually(
        "vai notices the stalled link",
        Duration::from_secs(60),
        async || {
            let status = get(&vai.url(), "/vai/v1/status").await.unwrap().json();
            (status["upstream"]["reachable"] == false).then_some(())
        },
    )
    .await;
    let (value, warning) = setting_through(&vai).await;
    assert_eq!(value.as_deref(), Some("before"), "last-good data");
    assert!(
        warning.as_deref().is_some_and(|w| w.contains("stale")),
        "the answer says it may be stale: {warning:?}"
    );
    api.replace("setting", &PostParams::default(), &{
        let mut changed = setting("during");
        changed.metadata.resource_version =
            api.get("setting").await.unwrap().metadata.resource_version;
        changed
    })
    .await
    .unwrap();

    // Read last, a type whose name sorts late (unread, it would reconnect near the end).
    let classes = get(&vai.url(), "/apis/scheduling.k8s.io/v1/priorityclasses")
        .await
        .unwrap();
    assert_eq!(classes.status, 200);
    let restored_at = vai.log_text().len();
    let connections_at_restore = link.bytes().connections;
    link.restore().await.unwrap();
    eventually(
        "vai serves the change made during the stall",
        Duration::from_secs(60),
        async || (setting_through(&vai).await.0.as_deref() == Some("during")).then_some(()),
    )
    .await;
    assert_eq!(
        vai_metric(&vai, "vai_sync_lists_total").await,
        lists,
        "the stall cost no relist"
    );

    eventually(
        "every type is live again",
        Duration::from_secs(120),
        async || {
            let status = get(&vai.url(), "/vai/v1/status").await.unwrap().json();
            let resources = status["resources"].as_array().unwrap().clone();
            resources.iter().all(|r| r["state"] == "live").then_some(())
        },
    )
    .await;
    let reconnections = link.bytes().connections - connections_at_restore;
    eprintln!("{lists} types synced over {connections} connections, resumed over {reconnections}");
    // The probe's own connection, and at most one for each of the eight types admitted at once
    // (until a connection is up, the client cannot know it will speak HTTP/2).
    assert!(
        (1..=10).contains(&reconnections),
        "after the stall, 63 types resumed over {reconnections} connections"
    );
    // The types read had the first turns to reconnect.
    let log = vai.log_text()[restored_at..].to_string();
    let turns: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            l.split_once("its turn to reconnect resource=")?
                .1
                .split_whitespace()
                .next()
        })
        .collect();
    eprintln!(
        "{} types reconnected after the stall, in turn: {turns:?}",
        turns.len()
    );
    assert!(turns.len() > 10, "{turns:?}");
    // Which of the two is first depends on reads during the wait for the change above (the
    // test reads the ConfigMap until it has it).
    let mut first_two = turns[..2].to_vec();
    first_two.sort();
    assert_eq!(
        first_two,
        ["/v1/configmaps", "scheduling.k8s.io/v1/priorityclasses"],
        "the types read reconnect first: {turns:?}"
    );
}

#[tokio::test]
async fn a_slow_link_that_works_is_not_called_stale() {
    let env = TestEnv::start().await.unwrap();
    let link = env.link().await.unwrap();
    // 300 ms round trip, 200 KB/s shared: slow, but every probe is answered well within the
    // 2 s the tests give upstream.
    link.latency(Duration::from_millis(150), Duration::from_millis(20))
        .await
        .unwrap();
    link.bandwidth(200);
    let client = env.client().await.unwrap();
    ensure_namespace(&client, "slow").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "slow");
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::spawn_with_kubeconfig(
        link.kubeconfig_path(),
        dir.path(),
        support::free_port(),
        &["--resources", "namespaces,configmaps"],
    );
    vai.wait_ready().await;
    api.create(&PostParams::default(), &config_map(7))
        .await
        .unwrap();
    let path = "/api/v1/namespaces/slow/configmaps/app-config-00007";
    eventually(
        "the ConfigMap reaches vai over the slow link",
        Duration::from_secs(60),
        async || (get(&vai.url(), path).await.unwrap().status == 200).then_some(()),
    )
    .await;
    // Over several probe periods, every answer is live.
    let mut samples = 0;
    for _ in 0..30 {
        let answer = get(&vai.url(), path).await.unwrap();
        let state = answer
            .headers
            .get("x-vai-state")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            state.as_deref(),
            Some("live"),
            "a slow link is not stale: {:?}",
            answer.headers.get("warning")
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(samples, 30);
}
