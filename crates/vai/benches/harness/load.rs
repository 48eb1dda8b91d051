//! The workload put into the real control plane: `vai_testenv::workload`'s pods with their
//! status and the managed fields the apiserver would have recorded, and one ConfigMap and one
//! Secret for every 20 pods, over the generator's 50 namespaces.
//!
//! The objects are written into etcd beside the apiserver, as the apiserver stores them (it
//! reads JSON there as well as its own protobuf, and its watch cache sees them as it sees its
//! own writes): through the apiserver, creating 100,000 pods and then setting their status
//! takes 16 minutes on 2 cores, longer than the rest of the run. Everything after the load —
//! the churn, the probes, every measured request — goes through the apiserver.
//!
//! What the generated pods lose on the way in: their resourceVersion (etcd's revision is
//! theirs), the owner reference (the garbage collector would delete a pod whose ReplicaSet
//! does not exist) and the node name (the pod garbage collector would delete a pod bound to a
//! node that does not exist).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams, VersionMatch};
use serde_json::{Value, json};
use vai_testenv::TestEnv;
use vai_testenv::workload::{Rng, pod, with_managed_fields};

/// Transactions in flight while loading.
const CONCURRENCY: usize = 4;
/// Objects per etcd transaction (etcd allows 128 operations and 1.5 MiB per request).
const PER_TXN: usize = 100;

/// What was loaded.
pub struct Loaded {
    /// Every pod, as (namespace, name).
    pub pods: Vec<(String, String)>,
    /// ConfigMaps and Secrets created.
    pub others: usize,
    /// Seconds the load took.
    pub seconds: f64,
}

/// A pod of the generated workload, made creatable through the apiserver (which resets a new
/// pod's status).
pub fn creatable(i: u64, rng: &mut Rng) -> Pod {
    let mut value: Value = serde_json::from_slice(&pod(i, 1, rng)).unwrap();
    let meta = value["metadata"].as_object_mut().unwrap();
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "ownerReferences",
        "generateName",
    ] {
        meta.remove(field);
    }
    value["spec"].as_object_mut().unwrap().remove("nodeName");
    value.as_object_mut().unwrap().remove("status");
    serde_json::from_value(value).unwrap()
}

/// The `i`th pod as the apiserver would store it: (namespace, name, JSON).
fn stored_pod(i: u64, rng: &mut Rng) -> (String, String, Vec<u8>) {
    let mut value: Value = serde_json::from_slice(&with_managed_fields(&pod(i, 1, rng))).unwrap();
    let meta = value["metadata"].as_object_mut().unwrap();
    for field in ["resourceVersion", "ownerReferences", "generateName"] {
        meta.remove(field);
    }
    value["spec"].as_object_mut().unwrap().remove("nodeName");
    let (namespace, name) = (
        value["metadata"]["namespace"].as_str().unwrap().to_string(),
        value["metadata"]["name"].as_str().unwrap().to_string(),
    );
    (namespace, name, serde_json::to_vec(&value).unwrap())
}

/// The `k`th ConfigMap and Secret as the apiserver would store them, (key, JSON) each: an
/// application's settings (~1.5 KB) and credentials.
fn config(k: u64, rng: &mut Rng, created: &str) -> [(String, Vec<u8>); 2] {
    let namespace = format!("team-{:02}", k % 50);
    let settings: String = (0..40)
        .map(|s| format!("setting.{s}=value-{}\n", rng.next_u64() % 100_000))
        .collect();
    let metadata = |name: &str, kind: u64| {
        json!({"name": name, "namespace": namespace, "uid": format!("00000000-0000-4000-8{kind:03x}-{k:012x}"),
               "creationTimestamp": created,
               "labels": {"app": format!("app-{}", k % 10), "shard": (k % 100).to_string()}})
    };
    let (config_map, secret) = (format!("settings-{k:06}"), format!("credentials-{k:06}"));
    let token: String = (0..8).map(|_| format!("{:016x}", rng.next_u64())).collect();
    let data: BTreeMap<&str, ByteString> = [
        ("username", ByteString(format!("svc-{k}").into_bytes())),
        ("token", ByteString(token.into_bytes())),
    ]
    .into();
    [
        (
            format!("/registry/configmaps/{namespace}/{config_map}"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(&config_map, 1),
                   "data": {"application.properties": settings}}),
        ),
        (
            format!("/registry/secrets/{namespace}/{secret}"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(&secret, 2),
                   "type": "Opaque", "data": data}),
        ),
    ]
    .map(|(key, value)| (key, serde_json::to_vec(&value).unwrap()))
}

/// Creates the 50 namespaces (through the apiserver), writes `n` pods with their status and
/// `n / 20` ConfigMaps and Secrets, and returns once the apiserver serves all of them.
pub async fn load(env: &TestEnv, client: &kube::Client, n: u64) -> Loaded {
    let started = Instant::now();
    for ns in 0..50 {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("team-{ns:02}")}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let mut rng = Rng(vai_testenv::workload::SEED);
    let (mut pods, mut entries) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (namespace, name, json) = stored_pod(i, &mut rng);
        entries.push((format!("/registry/pods/{namespace}/{name}"), json));
        pods.push((namespace, name));
    }
    let created = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let configs = n / 20;
    for k in 0..configs {
        entries.extend(config(k, &mut rng, &created));
    }
    let total = entries.len();
    let plane = env.control_plane();
    let mut batches: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    while !entries.is_empty() {
        let rest = entries.split_off(entries.len().min(PER_TXN));
        batches.push(std::mem::replace(&mut entries, rest));
    }
    let tenth = (batches.len() / 10).max(1);
    let revision = futures::stream::iter(batches)
        .map(|batch| async move { plane.etcd_put(&batch).await.unwrap() })
        .buffer_unordered(CONCURRENCY)
        .enumerate()
        .map(|(done, revision)| {
            // A line at every tenth.
            if (done + 1).is_multiple_of(tenth) {
                eprintln!(
                    "load: {} of {total} objects in {:.0} s",
                    ((done + 1) * PER_TXN).min(total),
                    started.elapsed().as_secs_f64()
                );
            }
            revision
        })
        .fold(0, |a, b| async move { a.max(b) })
        .await;
    // The apiserver's watch cache has seen every write once it serves a list at that revision.
    let api: Api<Pod> = Api::all(client.clone());
    let at = ListParams::default()
        .limit(1)
        .at(&revision.to_string())
        .matching(VersionMatch::NotOlderThan);
    let deadline = Instant::now() + Duration::from_secs(300);
    while let Err(e) = api.list_metadata(&at).await {
        assert!(
            Instant::now() < deadline,
            "the apiserver did not catch up with etcd's revision {revision} in 300 s: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Loaded {
        pods,
        others: configs as usize * 2,
        seconds: started.elapsed().as_secs_f64(),
    }
}
