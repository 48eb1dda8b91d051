//! The workload put into the real control plane: `vai_testenv::workload`'s pods (created, then
//! given their status through the status subresource, as a kubelet would), and one ConfigMap and
//! one Secret for every 20 pods, over the generator's 50 namespaces.
//!
//! What the generated pods lose on the way in: server-set fields, the owner reference (the
//! garbage collector would delete a pod whose ReplicaSet does not exist) and the node name (the
//! pod garbage collector would delete a pod bound to a node that does not exist).

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vai_testenv::workload::{Rng, pod};

/// Requests in flight while loading.
const CONCURRENCY: usize = 16;

/// What was loaded.
pub struct Loaded {
    /// Every pod, as (namespace, name).
    pub pods: Vec<(String, String)>,
    /// ConfigMaps and Secrets created.
    pub others: usize,
    /// Seconds the load took.
    pub seconds: f64,
}

/// A pod of the generated workload, made creatable, and the status to give it afterwards.
pub fn creatable(i: u64, rng: &mut Rng) -> (Pod, Value) {
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
    let status = value.as_object_mut().unwrap().remove("status").unwrap();
    (serde_json::from_value(value).unwrap(), status)
}

/// The `k`th ConfigMap and Secret: an application's settings (~1.5 KB) and credentials.
fn config(k: u64, rng: &mut Rng) -> (ConfigMap, Secret) {
    let namespace = format!("team-{:02}", k % 50);
    let settings: String = (0..40)
        .map(|s| format!("setting.{s}=value-{}\n", rng.next_u64() % 100_000))
        .collect();
    let metadata = |name: String| {
        json!({"name": name, "namespace": namespace,
               "labels": {"app": format!("app-{}", k % 10), "shard": (k % 100).to_string()}})
    };
    let config_map = json!({"metadata": metadata(format!("settings-{k:06}")),
                            "data": {"application.properties": settings}});
    let token: String = (0..8).map(|_| format!("{:016x}", rng.next_u64())).collect();
    let secret = json!({"metadata": metadata(format!("credentials-{k:06}")), "type": "Opaque",
                        "stringData": {"username": format!("svc-{k}"), "token": token}});
    (
        serde_json::from_value(config_map).unwrap(),
        serde_json::from_value(secret).unwrap(),
    )
}

/// Creates the 50 namespaces, `n` pods with their status, and `n / 20` ConfigMaps and Secrets.
pub async fn load(client: &kube::Client, n: u64) -> Loaded {
    let started = Instant::now();
    for ns in 0..50 {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("team-{ns:02}")}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pods: Vec<(Pod, Value)> = (0..n).map(|i| creatable(i, &mut rng)).collect();
    let pods = futures::stream::iter(pods)
        .map(|(p, status)| {
            let namespace = p.metadata.namespace.clone().unwrap();
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            async move {
                let name = api
                    .create(&PostParams::default(), &p)
                    .await
                    .unwrap()
                    .metadata
                    .name
                    .unwrap();
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
                .unwrap();
                (namespace, name)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .enumerate()
        .map(|(done, pod)| {
            // A line at every tenth: the full load takes minutes.
            if (done as u64 + 1).is_multiple_of((n / 10).max(1)) {
                eprintln!(
                    "load: {} of {n} pods in {:.0} s",
                    done + 1,
                    started.elapsed().as_secs_f64()
                );
            }
            pod
        })
        .collect::<Vec<_>>()
        .await;
    let configs: Vec<_> = (0..n / 20).map(|k| config(k, &mut rng)).collect();
    let others = configs.len() * 2;
    futures::stream::iter(configs)
        .map(|(config_map, secret)| {
            let namespace = config_map.metadata.namespace.clone().unwrap();
            let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            async move {
                config_maps
                    .create(&PostParams::default(), &config_map)
                    .await
                    .unwrap();
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    Loaded {
        pods,
        others,
        seconds: started.elapsed().as_secs_f64(),
    }
}
