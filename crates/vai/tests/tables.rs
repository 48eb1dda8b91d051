//! `kubectl get` through vai prints what it prints against the apiserver: the same tables, for
//! built-in types and custom resources, normal and `-o wide`, with ages computed at request time.

mod support;

use std::time::Duration;

use support::{Vai, eventually, kubectl_direct};
use vai_testenv::TestEnv;

const SETUP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: t-tables}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: t-tables}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: t-tables}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: t-tables}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: t-tables}
stringData: {user: admin}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: t-tables}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: t-tables}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: t-tables}
spec: {holderIdentity: node-a}
---
apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: t-tables}
involvedObject: {kind: Deployment, name: web, namespace: t-tables}
reason: ScalingReplicaSet
message: Scaled up
type: Normal
source: {component: test}
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:05:00Z"
count: 2
"#;

const GIZMO: &str = r#"
apiVersion: example.com/v1
kind: Gizmo
metadata: {name: g1, namespace: t-tables}
spec: {size: big, built: "2026-01-01T00:00:00Z", count: 3}
"#;

/// `kubectl get <args>` prints the same through vai as against the apiserver, and shows `expect`.
async fn same_table(env: &TestEnv, vai: &Vai, args: &[&str], expect: &str) {
    let what = format!("kubectl get {}", args.join(" "));
    let print = |mut cmd: std::process::Command| {
        let out = cmd.arg("get").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let mut last = (String::new(), String::new());
    let matched = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let direct = print(kubectl_direct(env));
            let through = print(vai.kubectl(env));
            if direct == through && direct.contains(expect) {
                return;
            }
            last = (direct, through);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        matched.is_ok(),
        "{what} differs:\n--- apiserver\n{}\n--- vai\n{}",
        last.0,
        last.1
    );
}

#[tokio::test]
async fn kubectl_get_prints_the_same_tables_through_vai() {
    let env = TestEnv::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(env, dir.path(), &[]).await;
    support::apply(kubectl_direct(env), SETUP);
    let columns = [
        "{name: Size, type: string, jsonPath: .spec.size}",
        "{name: Built, type: date, jsonPath: .spec.built}",
        "{name: Count, type: integer, jsonPath: .spec.count, priority: 1}",
    ];
    support::apply(
        kubectl_direct(env),
        &support::crd("gizmos", "Gizmo", &columns),
    );
    eventually("the CRD is served", Duration::from_secs(30), async || {
        let status = support::get(&vai.url(), "/vai/v1/status")
            .await
            .ok()?
            .json();
        status["resources"]
            .as_array()?
            .iter()
            .any(|r| r["resource"] == "example.com/v1/gizmos" && r["synced"] == true)
            .then_some(())
    })
    .await;
    support::apply(kubectl_direct(env), GIZMO);
    let ns = ["-n", "t-tables"];
    for (kind, expect) in [
        ("pods", "web-"),
        ("deployments", "web"),
        ("replicasets", "web-"),
        ("services", "web"),
        ("configmaps", "settings"),
        ("secrets", "creds"),
        ("serviceaccounts", "robot"),
        ("roles", "reader"),
        ("leases", "node-a"),
        ("events", "ScalingReplicaSet"),
        ("gizmos", "big"),
    ] {
        for wide in [false, true] {
            let mut args = vec![kind];
            args.extend(ns);
            if wide {
                args.extend(["-o", "wide"]);
            }
            same_table(env, &vai, &args, expect).await;
        }
    }
    same_table(env, &vai, &["namespaces", "t-tables"], "Active").await;
    same_table(
        env,
        &vai,
        &["customresourcedefinitions", "gizmos.example.com"],
        "gizmos",
    )
    .await;
    same_table(
        env,
        &vai,
        &["pods", "-A", "-l", "app=web", "--show-labels"],
        "app=web",
    )
    .await;
    same_table(
        env,
        &vai,
        &["configmap", "settings", "-n", "t-tables"],
        "settings",
    )
    .await;
    // Field selectors the apiserver supports per type, answered from vai's indexes.
    same_table(
        env,
        &vai,
        &[
            "pods",
            "-A",
            "--field-selector",
            "status.phase=Pending,spec.nodeName=",
        ],
        "web-",
    )
    .await;
    same_table(
        env,
        &vai,
        &[
            "events",
            "-n",
            "t-tables",
            "--field-selector",
            "involvedObject.kind=Deployment,reason=ScalingReplicaSet",
        ],
        "Scaled up",
    )
    .await;
    same_table(
        env,
        &vai,
        &[
            "secrets",
            "-n",
            "t-tables",
            "--field-selector",
            "type=Opaque",
        ],
        "creds",
    )
    .await;
    let served = support::get(
        &vai.url(),
        "/api/v1/pods?fieldSelector=status.phase%3DPending",
    )
    .await
    .unwrap();
    assert_eq!(
        served.headers["x-vai-state"], "live",
        "served from the cache, not proxied"
    );
    // describe reads events by field selector too.
    for what in [["deployment", "web"], ["configmap", "settings"]] {
        let describe = |mut cmd: std::process::Command| {
            support::run(cmd.arg("describe").args(what).args(["-n", "t-tables"]))
        };
        eventually(
            "describe prints the same",
            Duration::from_secs(10),
            async || (describe(kubectl_direct(env)) == describe(vai.kubectl(env))).then_some(()),
        )
        .await;
    }
}
