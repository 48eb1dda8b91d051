//! A realistic, generated workload for benchmarks: Pods as a Deployment makes them (~5 KB of
//! JSON each: owner reference, five labels, two containers with env, probes, resources and
//! mounts, status with conditions and container statuses), deterministic for a seed, spread over
//! 50 namespaces and 1,000 nodes; label `shard` selects 1%. Written once here, used by every
//! benchmark, never stored as a fixture file.

/// The seed every benchmark starts its [`Rng`] from, so that they all measure the same pods.
pub const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The benchmarks' data set: pods `0..n` from [`SEED`], at resource versions `1..=n`.
pub fn pods(n: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(SEED);
    (0..n).map(|i| pod(i, i + 1, &mut rng)).collect()
}

/// A deterministic pseudo-random sequence (no dependency, same data every run).
pub struct Rng(pub u64);
impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// One of `xs`.
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next_u64() % xs.len() as u64) as usize]
    }
}

/// One Pod as a Deployment would create it: owner reference, template labels, two containers
/// with env, probes, resources and mounts, and a Running/Pending status.
pub fn pod(i: u64, rv: u64, rng: &mut Rng) -> Vec<u8> {
    let apps = [
        "web", "api", "worker", "cache", "db", "auth", "search", "billing", "mail", "queue",
    ];
    let app = apps[(i % apps.len() as u64) as usize];
    let ns = format!("team-{:02}", i % 50);
    let hash = format!("{:x}", rng.next_u64() % 0xfffff);
    let name = format!("{app}-{hash}-{:05}", i % 100_000);
    let node = format!("node-{:04}", rng.next_u64() % 1000);
    let phase = rng.pick(&["Running", "Running", "Running", "Pending", "Succeeded"]);
    let created = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + i % 11,
        1 + i % 28,
        i % 24,
        i % 60,
        (i * 7) % 60
    );
    let shard = i % 100; // label "shard" selects ~1%
    let env: Vec<_> = (0..8)
        .map(|k| serde_json::json!({"name": format!("SETTING_{k}"), "value": format!("value-{}-{}", k, rng.next_u64() % 1000)}))
        .collect();
    let container = |cname: &str, image: &str| {
        serde_json::json!({
            "name": cname, "image": image, "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "env": env,
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 1},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 1},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/config", "readOnly": true},
                             {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        })
    };
    let conditions: Vec<_> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| serde_json::json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": created}))
        .collect();
    let statuses: Vec<_> = [app, "sidecar"]
        .iter()
        .map(|c| serde_json::json!({"name": c, "ready": true, "restartCount": rng.next_u64() % 3, "started": true,
            "image": format!("registry.example.com/{c}:v1"), "imageID": format!("registry.example.com/{c}@sha256:{:064x}", rng.next_u64()),
            "containerID": format!("containerd://{:064x}", rng.next_u64()), "state": {"running": {"startedAt": created}}}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", rng.next_u64() as u32, i % 0xffff, i % 0xfff, rng.next_u64() % 0xfff, rng.next_u64() % 0xffffffffffff),
            "resourceVersion": rv.to_string(), "creationTimestamp": created, "generateName": format!("{app}-{hash}-"),
            "labels": {"app": app, "pod-template-hash": hash, "tier": rng.pick(&["frontend", "backend", "data"]),
                       "env": rng.pick(&["prod", "staging", "dev"]), "shard": shard.to_string()},
            "annotations": {"kubectl.kubernetes.io/restartedAt": created, "prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{hash}"), "uid": format!("{:032x}", rng.next_u64()), "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "containers": [container(app, &format!("registry.example.com/{app}:v1.{}.{}", i % 20, i % 7)), container("sidecar", "registry.example.com/proxy:v2.3.1")],
            "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config"), "defaultMode": 420}},
                        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
            "nodeName": node, "restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccountName": "default",
            "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30, "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": phase, "hostIP": format!("10.0.{}.{}", rng.next_u64() % 255, rng.next_u64() % 255), "podIP": format!("10.244.{}.{}", rng.next_u64() % 255, rng.next_u64() % 255),
            "qosClass": "Burstable", "startTime": created,
            "conditions": conditions,
            "containerStatuses": statuses,
        },
    }))
    .unwrap()
}

/// A later version of a generated object (same key): at resource version `rv`, its first
/// container restarted `restarts` times.
pub fn modified(body: &[u8], rv: u64, restarts: u64) -> Vec<u8> {
    let mut object: serde_json::Value = serde_json::from_slice(body).expect("a generated object");
    object["metadata"]["resourceVersion"] = rv.to_string().into();
    object["status"]["containerStatuses"][0]["restartCount"] = restarts.into();
    serde_json::to_vec(&object).expect("a JSON value serialises")
}

/// The same object with `metadata.managedFields` as the apiserver sends them (the
/// controller-manager's and the kubelet's field sets, ~1.6 KB): what every list and watch
/// carries, and what the store drops.
pub fn with_managed_fields(body: &[u8]) -> Vec<u8> {
    let mut object: serde_json::Value = serde_json::from_slice(body).expect("a generated object");
    let time = object["metadata"]["creationTimestamp"].clone();
    let spec_fields = serde_json::json!({
        "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}, "f:tier": {}, "f:env": {}, "f:shard": {}},
                       "f:ownerReferences": {".": {}, "k:{\"uid\":\"0\"}": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {".": {}}, "f:image": {}, "f:imagePullPolicy": {}, "f:livenessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}}},
                   "f:name": {}, "f:ports": {".": {}}, "f:readinessProbe": {".": {}}, "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
                   "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}, "f:volumeMounts": {".": {}}}},
                   "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": {".": {}}},
    });
    let status_fields = serde_json::json!({
        "f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                                       "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                                       "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
                     "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}}, "f:startTime": {}},
    });
    object["metadata"]["managedFields"] = serde_json::json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": time, "fieldsType": "FieldsV1", "fieldsV1": spec_fields},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": time, "fieldsType": "FieldsV1", "fieldsV1": status_fields, "subresource": "status"},
    ]);
    serde_json::to_vec(&object).expect("a JSON value serialises")
}
