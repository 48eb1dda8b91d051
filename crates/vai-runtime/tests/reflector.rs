//! The resumable reflector against a real apiserver: it syncs Pods, is dropped, objects change
//! upstream, and a new reflector on the same file resumes without a LIST and converges; across
//! a `410 Gone` it relists and records the deletions.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use vai_runtime::{Change, reflector_with};
use vai_store::StoreConfig;
use vai_sync::SyncConfig;
use vai_testenv::TestEnv;
use vai_testenv::measure::{apiserver_metrics, metric_sum};

const NS: &str = "t-reflector";

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn names(store: &vai_runtime::Store<Pod>) -> BTreeSet<String> {
    store
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(NS))
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Waits until the store holds exactly `want` in the test namespace.
async fn converge(store: &vai_runtime::Store<Pod>, want: &BTreeSet<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while &names(store) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "store holds {:?}, want {want:?}",
            names(store)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lists(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "vai_sync_lists_total")
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

async fn apiserver_pod_lists(client: &kube::Client) -> f64 {
    let page = apiserver_metrics(client).await.unwrap();
    metric_sum(
        &page,
        "apiserver_request_total",
        &[r#"verb="LIST""#, r#"resource="pods""#],
    )
    .expect("the apiserver counts LISTs of pods")
}

#[tokio::test]
async fn a_reflector_resumes_without_relisting_and_relists_across_410() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for name in ["p1", "p2", "p3"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pods.db");
    let start = |registry: &prometheus::Registry| {
        let db = vai_store::Store::open(&file, StoreConfig::default()).unwrap();
        reflector_with::<Pod>(client.clone(), db, &(), SyncConfig::default(), registry)
    };

    let registry = prometheus::Registry::new();
    let first = start(&registry);
    let store = first.store();
    store.wait_until_ready().await.unwrap();
    converge(&store, &set(&["p1", "p2", "p3"])).await;
    assert_eq!(lists(&registry), 1, "the first start lists once");
    let mut changes = first.changes();
    pods.create(&PostParams::default(), &pod("p0"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Change::Applied(p)) = changes.next().await
                && p.metadata.name.as_deref() == Some("p0")
            {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "the change stream reports the new pod");
    drop(changes);
    drop(store);
    drop(first);

    // Changes while no reflector runs.
    pods.delete("p1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("p4"))
        .await
        .unwrap();
    let patch = serde_json::json!({"metadata": {"labels": {"app": "y"}}});
    pods.patch("p2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let upstream_lists = apiserver_pod_lists(&client).await;
    assert!(
        upstream_lists >= 1.0,
        "the first reflector's list was counted"
    );

    let registry = prometheus::Registry::new();
    let second = start(&registry);
    let store = second.store();
    store.wait_until_ready().await.unwrap();
    converge(&store, &set(&["p0", "p2", "p3", "p4"])).await;
    let p2 = store
        .get(&kube::runtime::reflector::ObjectRef::new("p2").within(NS))
        .unwrap();
    assert_eq!(p2.metadata.labels.as_ref().unwrap()["app"], "y");
    assert_eq!(
        lists(&registry),
        0,
        "resumed from the stored resource version: no list"
    );
    assert_eq!(
        apiserver_pod_lists(&client).await,
        upstream_lists,
        "the apiserver saw no LIST"
    );
    let before_gone = store.inner().resource_state(store.key()).unwrap().unwrap();
    drop(store);
    drop(second);

    // 410: deletions while down, etcd compacted, the apiserver's window restarted.
    pods.delete("p3", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    env.compact_etcd().await.unwrap();
    env.restart_apiserver().await.unwrap();
    let registry = prometheus::Registry::new();
    let third = start(&registry);
    let store = third.store();
    converge(&store, &set(&["p0", "p2", "p4"])).await;
    assert!(lists(&registry) >= 1, "relisted after the 410");
    // The relist recorded p3's deletion in the history, for whoever follows it.
    let events = store
        .inner()
        .events_since(store.key(), before_gone.last_resource_version)
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == vai_store::EventKind::Deleted && e.name == "p3"),
        "p3's deletion is in the history"
    );

    // Another type's reflector shares the same file.
    let configmaps = reflector_with::<ConfigMap>(
        client.clone(),
        store.inner().clone(),
        &(),
        SyncConfig::default(),
        &prometheus::Registry::new(),
    );
    let cms = configmaps.store();
    cms.wait_until_ready().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while cms
        .find(|cm| cm.metadata.name.as_deref() == Some("kube-root-ca.crt"))
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "configmaps sync into the shared file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        names(&store),
        set(&["p0", "p2", "p4"]),
        "pods are untouched"
    );
}
