//! `vai serve` against a real kube-apiserver: what kubectl and kube-rs see through vai matches
//! the apiserver; writes and uncached types go through the proxy.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use support::{Vai, eventually, kubectl_direct, run, same_through_vai};
use vai_testenv::TestEnv;

const SETUP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: t-kubectl}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c1, namespace: t-kubectl, labels: {app: a}}
data: {k: v1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c2, namespace: t-kubectl, labels: {app: b}}
data: {k: v2}
---
apiVersion: v1
kind: Secret
metadata: {name: s1, namespace: t-kubectl, labels: {app: a}}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Secret
metadata: {name: s2, namespace: t-kubectl}
stringData: {password: swordfish}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: t-kubectl, labels: {app: a}}
spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: t-kubectl, labels: {app: b}}
spec: {containers: [{name: c, image: busybox}]}
"#;

const WIDGETS: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: t-kubectl, labels: {app: a}}
spec: {size: small}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w2, namespace: t-kubectl}
spec: {size: large}
"#;

#[tokio::test]
async fn kubectl_through_vai_returns_what_the_apiserver_returns() {
    let env = TestEnv::shared().await;
    support::apply(kubectl_direct(env), SETUP);
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(env, dir.path(), &[]).await;
    for args in [
        &["configmaps", "-A"][..],
        &["configmaps", "-n", "t-kubectl"],
        &["secrets", "-n", "t-kubectl", "--chunk-size=1"],
        &["pods", "-n", "t-kubectl", "-l", "app=a"],
        &["pods", "-A", "-l", "app in (a,b)", "--chunk-size=1"],
        &["pods", "-A", "--field-selector", "metadata.name=p2"],
        &["namespaces"],
        // Not indexed by vai yet: answered through the proxy, still the same.
        &[
            "pods",
            "-n",
            "t-kubectl",
            "--field-selector",
            "status.phase=Pending",
        ],
    ] {
        same_through_vai(env, &vai, args).await;
    }

    // A CRD created upstream while vai runs starts its cache.
    support::apply(
        kubectl_direct(env),
        &support::crd(
            "widgets",
            "Widget",
            &["{name: Size, type: string, jsonPath: .spec.size}"],
        ),
    );
    let cached = async || {
        let status = support::get(&vai.url(), "/vai/v1/status")
            .await
            .ok()?
            .json();
        status["resources"]
            .as_array()?
            .iter()
            .any(|r| r["resource"] == "example.com/v1/widgets" && r["synced"] == true)
            .then_some(())
    };
    eventually(
        "the new CRD's type is cached",
        Duration::from_secs(30),
        cached,
    )
    .await;
    support::apply(kubectl_direct(env), WIDGETS);
    same_through_vai(env, &vai, &["widgets", "-n", "t-kubectl"]).await;
    same_through_vai(env, &vai, &["widgets", "-A", "-l", "app=a"]).await;

    // One object, and a missing one, as the apiserver words it.
    let one = run(vai.kubectl(env).args([
        "get",
        "secret",
        "s1",
        "-n",
        "t-kubectl",
        "-o",
        "jsonpath={.data.password}",
    ]));
    assert_eq!(one, "aHVudGVyMg==");
    let missing = vai
        .kubectl(env)
        .args(["get", "configmap", "nope", "-n", "t-kubectl"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "Error from server (NotFound): configmaps \"nope\" not found"
    );
    // Served from the cache, and saying it is live.
    let answer = support::get(&vai.url(), "/api/v1/namespaces/t-kubectl/configmaps")
        .await
        .unwrap();
    assert_eq!(answer.headers["x-vai-state"], "live");
    assert!(!answer.headers.contains_key("warning"));
}

/// Waits for the next watcher event that concerns `name`, at most `within`.
async fn next_about<S>(stream: &mut S, name: &str, within: Duration) -> watcher::Event<ConfigMap>
where
    S: futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no event about {name} within {within:?}"))
            .expect("the watcher ended")
            .expect("the watcher failed");
        let about = match &event {
            watcher::Event::Apply(cm)
            | watcher::Event::InitApply(cm)
            | watcher::Event::Delete(cm) => cm.metadata.name.as_deref() == Some(name),
            _ => false,
        };
        if about {
            return event;
        }
    }
}

#[tokio::test]
async fn kube_rs_watchers_through_vai_see_changes_in_order() {
    let env = TestEnv::shared().await;
    let direct = env.client().await.unwrap();
    let ns = "t-watch";
    support::ensure_namespace(&direct, ns).await;
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(env, dir.path(), &["--resources", "configmaps,namespaces"]).await;
    let upstream: Api<ConfigMap> = Api::namespaced(direct, ns);
    for (variant, config) in [
        ("list then watch", watcher::Config::default()),
        (
            "streaming list",
            watcher::Config::default().streaming_lists(),
        ),
    ] {
        let through: Api<ConfigMap> = Api::namespaced(vai.client(), ns);
        let mut stream = watcher(through, config).boxed();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .unwrap_or_else(|_| panic!("{variant}: no initial sync"))
                .unwrap()
                .unwrap();
            if matches!(event, watcher::Event::InitDone) {
                break;
            }
        }
        let name = format!("w-{}", variant.replace(' ', "-"));
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "data": {"step": "1"}
        }))
        .unwrap();
        upstream.create(&PostParams::default(), &cm).await.unwrap();
        // How fast events arrive is measured by the benchmark harness; here, that they do, in order.
        let soon = Duration::from_secs(15);
        match next_about(&mut stream, &name, soon).await {
            watcher::Event::Apply(cm) => assert_eq!(cm.data.unwrap()["step"], "1", "{variant}"),
            other => panic!("{variant}: expected the create, got {other:?}"),
        }
        let patch = serde_json::json!({"data": {"step": "2"}});
        upstream
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        match next_about(&mut stream, &name, soon).await {
            watcher::Event::Apply(cm) => assert_eq!(cm.data.unwrap()["step"], "2", "{variant}"),
            other => panic!("{variant}: expected the update, got {other:?}"),
        }
        upstream
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        match next_about(&mut stream, &name, soon).await {
            watcher::Event::Delete(_) => {}
            other => panic!("{variant}: expected the delete, got {other:?}"),
        }
    }

    // With a label selector, relabelling an object out of the selection is a delete for the
    // watcher, and back in an add, as upstream reports it.
    let through: Api<ConfigMap> = Api::namespaced(vai.client(), ns);
    let mut stream = watcher(through, watcher::Config::default().labels("tier=watched")).boxed();
    upstream
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "relabel", "labels": {"tier": "watched"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // How fast events arrive is measured by the benchmark harness; here, that they do, in order.
    let soon = Duration::from_secs(15);
    assert!(matches!(
        next_about(&mut stream, "relabel", Duration::from_secs(10)).await,
        watcher::Event::InitApply(_) | watcher::Event::Apply(_)
    ));
    for (tier, removed) in [("other", true), ("watched", false)] {
        let patch = serde_json::json!({"metadata": {"labels": {"tier": tier}}});
        upstream
            .patch("relabel", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        match (next_about(&mut stream, "relabel", soon).await, removed) {
            (watcher::Event::Delete(_), true) | (watcher::Event::Apply(_), false) => {}
            (other, _) => panic!("relabelled to {tier}: got {other:?}"),
        }
    }

    // Metadata-only clients (as=PartialObjectMetadata) get metadata and nothing else.
    let through: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::namespaced(vai.client(), ns);
    let mut stream = watcher(through, watcher::Config::default()).boxed();
    upstream
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "meta", "labels": {"k": "v"}}, "data": {"big": "x"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let watcher::Event::Apply(m) | watcher::Event::InitApply(m) =
                stream.next().await.unwrap().unwrap()
                && m.metadata.name.as_deref() == Some("meta")
            {
                return m;
            }
        }
    })
    .await
    .expect("the metadata watcher saw the object");
    assert_eq!(found.metadata.labels.unwrap()["k"], "v");
    let list = support::get(&vai.url(), &format!("/api/v1/namespaces/{ns}/configmaps"))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&list.body).contains("\"big\""));
    let metadata_list = support::request_with_accept(
        &vai.url(),
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    .await
    .unwrap()
    .json();
    assert_eq!(metadata_list["kind"], "PartialObjectMetadataList");
    assert!(
        !metadata_list.to_string().contains("\"big\""),
        "{metadata_list}"
    );
}

#[tokio::test]
async fn writes_subresources_and_uncached_watches_go_through_the_proxy() {
    let env = TestEnv::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(env, dir.path(), &["--exclude", "leases"]).await;
    let ns = "t-proxy";
    run(vai.kubectl(env).args(["create", "namespace", ns]));
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: t-proxy}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
"#;
    support::apply(vai.kubectl(env), deployment);
    run(vai
        .kubectl(env)
        .args(["scale", "deployment", "web", "-n", ns, "--replicas=3"]));
    eventually(
        "the scaled deployment is served from the cache",
        Duration::from_secs(10),
        async || {
            let replicas = run(vai.kubectl(env).args([
                "get",
                "deployment",
                "web",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.replicas}",
            ]));
            (replicas == "3").then_some(())
        },
    )
    .await;
    // A subresource POST: a service account token (the controller manager makes `default`).
    eventually(
        "the default service account exists",
        Duration::from_secs(30),
        async || {
            vai.kubectl(env)
                .args(["get", "serviceaccount", "default", "-n", ns])
                .output()
                .unwrap()
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let token = run(vai
        .kubectl(env)
        .args(["create", "token", "default", "-n", ns]));
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    run(vai
        .kubectl(env)
        .args(["delete", "deployment", "web", "-n", ns]));
    eventually(
        "the deletion reaches the cache",
        Duration::from_secs(10),
        async || {
            let out = vai
                .kubectl(env)
                .args(["get", "deployment", "web", "-n", ns])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stderr)
                .contains("NotFound")
                .then_some(())
        },
    )
    .await;

    // Read-your-writes: what a client wrote through vai (create, patch, delete), it reads back
    // through vai at once, at the version the write answered with.
    let rv_of = |a: &support::Answer| a.json()["metadata"]["resourceVersion"].clone();
    for i in 0..10 {
        let path = format!("/api/v1/namespaces/{ns}/configmaps");
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"ryw-{i}"}}}}"#);
        let created = support::request(&vai.url(), "POST", &path, Some(&body))
            .await
            .unwrap();
        assert_eq!(
            created.status,
            201,
            "{}",
            String::from_utf8_lossy(&created.body)
        );
        let one = format!("{path}/ryw-{i}");
        let read = support::get(&vai.url(), &one).await.unwrap();
        assert_eq!(
            read.status, 200,
            "ryw-{i} is readable through vai right after its create"
        );
        assert_eq!(read.headers["x-vai-state"], "live", "served from the cache");
        assert!(rv_of(&created).is_string());
        assert_eq!(rv_of(&read), rv_of(&created), "the created version");

        let patched =
            support::merge_patch(&vai.url(), &one, &format!(r#"{{"data":{{"i":"{i}"}}}}"#))
                .await
                .unwrap();
        assert_eq!(
            patched.status,
            200,
            "{}",
            String::from_utf8_lossy(&patched.body)
        );
        let read = support::get(&vai.url(), &one).await.unwrap();
        assert_eq!(
            read.json()["data"]["i"],
            i.to_string(),
            "the patch is read back"
        );
        assert_eq!(rv_of(&read), rv_of(&patched), "the patched version");
        assert_ne!(rv_of(&patched), rv_of(&created));

        let deleted = support::request(&vai.url(), "DELETE", &one, None)
            .await
            .unwrap();
        assert_eq!(
            deleted.status,
            200,
            "{}",
            String::from_utf8_lossy(&deleted.body)
        );
        let read = support::get(&vai.url(), &one).await.unwrap();
        assert_eq!(
            read.status, 404,
            "ryw-{i} is gone through vai right after its delete"
        );
    }

    // An upgrade request (exec) reaches upstream and its answer comes back: this control plane
    // has no kubelet, so upstream refuses, and vai relays exactly that.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"shell","namespace":"t-proxy"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    support::apply(vai.kubectl(env), pod);
    let exec = |mut cmd: std::process::Command| {
        let out = cmd
            .args(["exec", "shell", "-n", ns, "--", "true"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let direct = exec(support::kubectl_direct(env));
    assert!(direct.contains("does not have a host assigned"), "{direct}");
    assert_eq!(exec(vai.kubectl(env)), direct);

    // Leases are not cached here: a watch on them streams through the proxy.
    let leases: Api<Lease> = Api::namespaced(vai.client(), ns);
    let mut stream = leases
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let upstream: Api<Lease> = Api::namespaced(env.client().await.unwrap(), ns);
    let lease: Lease =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "l1"}})).unwrap();
    upstream
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await.unwrap().unwrap() {
                WatchEvent::Added(l) if l.metadata.name.as_deref() == Some("l1") => return l,
                _ => continue,
            }
        }
    })
    .await
    .expect("the proxied watch delivered the lease");
    assert_eq!(event.metadata.namespace.as_deref(), Some(ns));
}
