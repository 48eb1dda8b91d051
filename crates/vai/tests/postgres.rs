//! `vai serve --store postgresql://…`: vai against a real apiserver, storing in a real
//! PostgreSQL (a private server, `scripts/pg`). kubectl and the query API through it equal the
//! apiserver; a restart resumes from the stored resource versions without a LIST; `vai status
//! --store` reads it. (Several replicas on one database: `replicas.rs`.)

mod support;

use std::process::Command;

use support::{Vai, get, kubectl_direct, run, same_through_vai};
use vai_testenv::TestEnv;
use vai_testenv::measure::metric_sum;

const SETUP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: t-pg}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c1, namespace: t-pg, labels: {app: a}}
data: {k: v1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c2, namespace: t-pg, labels: {app: b}}
data: {k: v2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c3, namespace: t-pg, labels: {app: a}}
data: {k: v3}
"#;

#[tokio::test]
async fn vai_on_postgresql_serves_what_the_apiserver_serves_and_resumes_after_a_restart() {
    let env = TestEnv::shared().await;
    support::apply(kubectl_direct(env), SETUP);
    let pg = tokio::task::spawn_blocking(vai_testenv::Postgres::start)
        .await
        .unwrap()
        .expect("a private PostgreSQL starts");
    let dir = tempfile::tempdir().unwrap();
    let only = ["--resources", "configmaps,namespaces", "--store", pg.url()];
    let mut vai = Vai::start(env, dir.path(), &only).await;
    assert!(
        vai.log_text().contains("PostgreSQL database vai"),
        "the log names the store"
    );
    assert!(!dir.path().join("vai.db").exists(), "no file was made");
    for args in [
        &["configmaps", "-n", "t-pg"][..],
        &["configmaps", "-n", "t-pg", "-l", "app=a", "--chunk-size=1"],
        &["configmaps", "-A", "--field-selector", "metadata.name=c2"],
    ] {
        same_through_vai(env, &vai, args).await;
    }
    // The query API: a sorted page with its total, from PostgreSQL.
    let page = get(
        &vai.url(),
        // (The namespace also holds kube-root-ca.crt, without the label.)
        "/api/v1/namespaces/t-pg/configmaps?labelSelector=app&sort=-metadata.name&pagesize=2",
    )
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let page = page.json();
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!((names, page["total"].as_u64()), (vec!["c3", "c2"], Some(3)));

    // Stopped, changed upstream, started again: resumed from the stored versions.
    assert!(vai.stop().success(), "vai exits cleanly on SIGTERM");
    run(kubectl_direct(env).args([
        "-n",
        "t-pg",
        "create",
        "configmap",
        "c4",
        "--from-literal=k=v4",
    ]));
    run(kubectl_direct(env).args(["-n", "t-pg", "delete", "configmap", "c1"]));
    let vai = Vai::start(env, dir.path(), &only).await;
    same_through_vai(env, &vai, &["configmaps", "-n", "t-pg"]).await;
    let metrics = String::from_utf8(get(&vai.url(), "/metrics").await.unwrap().body).unwrap();
    assert_eq!(
        // A counter never incremented has no series: no list at all.
        metric_sum(&metrics, "vai_sync_lists_total", &[]).unwrap_or(0.0),
        0.0,
        "vai listed after its restart instead of resuming"
    );

    // `vai status` reads the same database.
    let status = Command::new(env!("CARGO_BIN_EXE_vai"))
        .args(["status", "--store", pg.url()])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let table = String::from_utf8(status.stdout).unwrap();
    let configmaps = table
        .lines()
        .find(|l| l.starts_with("/v1/configmaps "))
        .unwrap_or_else(|| panic!("no configmaps row in:\n{table}"));
    assert!(configmaps.contains("live"), "{configmaps}");
}
