//! The test control plane is real and its fault levers work: these tests pin what later
//! suites (sync, serve, benchmarks) rely on.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use vai_testenv::{Component, TestEnv};

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "data": {"key": value},
    }))
    .unwrap()
}

#[tokio::test]
async fn config_map_round_trip_through_the_real_apiserver() {
    let env = TestEnv::shared().await;
    let api: Api<ConfigMap> = Api::namespaced(env.client().await.unwrap(), "default");

    api.create(&PostParams::default(), &config_map("round-trip", "v1"))
        .await
        .unwrap();
    let read = api.get("round-trip").await.unwrap();
    assert_eq!(read.data.unwrap()["key"], "v1");

    api.delete("round-trip", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.get_opt("round-trip").await.unwrap().is_none());
}

#[tokio::test]
async fn builtin_namespaces_exist_and_pods_are_creatable_in_a_new_namespace() {
    let env = TestEnv::shared().await;
    let client = env.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    for expected in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "pods-creatable"}}))
            .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "pods-creatable");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("web"));
}

#[tokio::test]
async fn a_paused_apiserver_times_out_and_answers_again_when_resumed() {
    let env = TestEnv::start().await.unwrap();
    let client = env
        .client_with_timeout(Duration::from_secs(2))
        .await
        .unwrap();
    let api: Api<Namespace> = Api::all(client);
    api.list(&ListParams::default()).await.unwrap();

    env.pause_apiserver().unwrap();
    let started = Instant::now();
    let paused = api.list(&ListParams::default()).await;
    let waited = started.elapsed();
    assert!(paused.is_err(), "a paused apiserver answered: {paused:?}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(30),
        "the request should fail by its 2 s timeout (timers may fire a hair early), took {waited:?}"
    );

    env.resume_apiserver().unwrap();
    api.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn compacting_etcd_makes_an_old_watch_answer_410_gone() {
    let env = TestEnv::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(env.client().await.unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("churn", "0"))
        .await
        .unwrap();
    let old_rv = created.metadata.resource_version.unwrap();
    for i in 1..=5 {
        api.replace("churn", &PostParams::default(), &{
            let mut cm = api.get("churn").await.unwrap();
            cm.data = config_map("churn", &i.to_string()).data;
            cm
        })
        .await
        .unwrap();
    }

    let compacted_to = env.compact_etcd().await.unwrap();
    assert!(compacted_to > old_rv.parse::<i64>().unwrap());
    // The watch cache keeps its own window; a restarted apiserver starts it afresh.
    env.restart_apiserver().await.unwrap();

    let api: Api<ConfigMap> = Api::namespaced(env.client().await.unwrap(), "default");
    let outcome = match api.watch(&WatchParams::default(), &old_rv).await {
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(stream) => {
            let mut stream = stream.boxed();
            match tokio::time::timeout(Duration::from_secs(30), stream.try_next()).await {
                Ok(Ok(Some(WatchEvent::Error(status)))) => status.code,
                Ok(Err(kube::Error::Api(status))) => status.code,
                other => panic!("expected 410 Gone, got {other:?}"),
            }
        }
    };
    assert_eq!(outcome, 410);
}

/// Runs `vai-testenv down` on drop, so a failing CLI test leaves no processes behind; keeps
/// the directory (and says where) when the test failed.
struct CliDir(tempfile::TempDir);

impl Drop for CliDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_vai-testenv"))
            .arg("down")
            .arg(self.0.path())
            .output();
        if std::thread::panicking() {
            let path = std::mem::replace(&mut self.0, tempfile::tempdir().unwrap()).keep();
            eprintln!("kept {}", path.display());
        }
    }
}

#[test]
fn the_cli_starts_restarts_and_stops_with_no_process_left() {
    let guard = CliDir(tempfile::tempdir().unwrap());
    let dir = &guard.0;
    let bin = env!("CARGO_BIN_EXE_vai-testenv");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vai-testenv {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let started = Instant::now();
    let kubeconfig = run(&["up"]);
    let startup = started.elapsed();
    assert_eq!(
        kubeconfig.trim(),
        dir.path()
            .canonicalize()
            .unwrap()
            .join("kubeconfig")
            .to_str()
            .unwrap()
    );
    // How long start-up takes depends on the machine's load: said, not asserted.
    eprintln!("start-up took {startup:?}");

    // Reopen the directory as a library user would, to look at its processes.
    let binaries = vai_testenv::Binaries::ensure(&mut |_| {}).unwrap();
    let plane = vai_testenv::ControlPlane::open(dir.path(), binaries).unwrap();
    let etcd = plane.pid(Component::Etcd).expect("etcd running");
    let apiserver = plane.pid(Component::ApiServer).expect("apiserver running");
    plane
        .signal(Component::ApiServer, vai_testenv::Signal::SIGKILL)
        .unwrap();
    assert!(plane.pid(Component::ApiServer).is_none());

    run(&["up"]);
    assert_eq!(plane.pid(Component::Etcd), Some(etcd), "etcd must be kept");
    let restarted = plane
        .pid(Component::ApiServer)
        .expect("apiserver restarted");
    assert_ne!(restarted, apiserver);

    run(&["down"]);
    for component in Component::ALL {
        assert!(
            plane.pid(component).is_none(),
            "{} left running",
            component.name()
        );
    }
    assert!(
        dir.path().join("etcd-data").is_dir(),
        "etcd's data must stay"
    );
}
