//! Scenario 11, the edge link: vai and a kube-rs reflector, each through an emulated link of
//! its own (`vai_testenv::link`: 200 ms round trip, a bandwidth cap its connections share) to the same
//! cluster under churn. Measured: the initial sync's time and bytes (and, apart, the OpenAPI
//! documents vai fetches after it), the bytes per hour once synced, reads answered while the link is cut, and after the cut the time, bytes and LISTs
//! until each is current again (a ConfigMap changed during the cut is seen).
//!
//! The reflector runs in a process of its own (this binary as [`reflector_child`]) and tells
//! the harness, a line each, when it is ready, when a list of a type completes (`initdone`: a
//! relist after the first) and what value the marker ConfigMap holds.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::Event;
use tokio::io::AsyncBufReadExt;
use vai_testenv::{Link, TestEnv};

use crate::http1;
use crate::vai::Vai;

/// Set to the kubeconfig's path, it makes this binary the edge scenario's reflector.
pub const REFLECTOR_CHILD: &str = "VAI_BENCH_EDGE_REFLECTOR_CHILD";

/// The ConfigMap changed during the cut, in this namespace.
const MARKER: &str = "edge-marker";
const MARKER_NAMESPACE: &str = "team-00";

/// How the link is set up, and how long each part runs.
pub struct EdgeSetup {
    /// The link's cap, each way, shared by its connections (KB/s): 125 is 1 Mbit/s.
    pub kilobytes_per_second: u64,
    /// How long the link is cut.
    pub cut: Duration,
    /// How long the bytes of the synced state are counted.
    pub steady: Duration,
}

/// What scenario 11 measured, vai's figure first and the reflector's second (or the apiserver
/// through the link's, for reads).
pub struct Edge {
    pub sync_seconds: (f64, f64),
    pub sync_megabytes: (f64, f64),
    /// What vai received from the moment it was ready until the OpenAPI documents were stored
    /// (the watches' events meanwhile included).
    pub openapi_megabytes: f64,
    pub steady_megabytes_per_hour: (f64, f64),
    pub reads_during_cut: (f64, f64),
    pub reads_tried: usize,
    pub current_seconds: (f64, f64),
    pub current_megabytes: (f64, f64),
    pub lists_after_cut: (f64, f64),
}

/// Runs scenario 11 with a fresh vai on `db`.
pub async fn measure(
    env: &TestEnv,
    client: &kube::Client,
    setup: &EdgeSetup,
    db: &Path,
    log: &Path,
) -> Edge {
    let plane = env.control_plane();
    let (vai_link, reflector_link) = (
        Link::start(plane).await.unwrap(),
        Link::start(plane).await.unwrap(),
    );
    for link in [&vai_link, &reflector_link] {
        link.latency(Duration::from_millis(100), Duration::from_millis(10))
            .await
            .unwrap();
        link.bandwidth(setup.kilobytes_per_second);
    }
    let markers: Api<ConfigMap> = Api::namespaced(client.clone(), MARKER_NAMESPACE);
    let marker = serde_json::from_value(serde_json::json!({
        "metadata": {"name": MARKER}, "data": {"value": "before"},
    }))
    .unwrap();
    if let Err(e) = markers.create(&PostParams::default(), &marker).await {
        println!("11. edge link: the marker exists already ({e})");
    }
    let mb = |bytes: u64| bytes as f64 / 1e6;

    // The initial sync, both at once.
    let vai = Vai::start_through(vai_link.kubeconfig_path(), db, log, &[]);
    let mut reflector = ReflectorChild::start(reflector_link.kubeconfig_path());
    // Each side's bytes are read the moment it is ready.
    let ((vai_ready, at_ready), (reflector_ready, reflector_bytes)) = tokio::join!(
        async { (vai.ready(&http1::Client).await, vai_link.bytes().down) },
        async {
            let line = reflector
                .wait_for(|l| l.starts_with("ready "), Duration::from_secs(900))
                .await;
            (line, reflector_link.bytes().down)
        },
    );
    let sync_seconds = (
        vai_ready.unwrap_or(f64::NAN),
        reflector_ready
            .and_then(|l| l["ready ".len()..].parse().ok())
            .unwrap_or(f64::NAN),
    );
    let sync_megabytes = (mb(at_ready), mb(reflector_bytes));
    // vai fetches the OpenAPI documents once its data is synced (the reflector, none).
    let root = vai_store::keys::openapi_document("/openapi/v3", "application/json");
    let fetched = Instant::now();
    while fetched.elapsed() < Duration::from_secs(300) {
        let stored = vai_store::Store::open_read_only(db)
            .ok()
            .and_then(|store| store.document(&root).ok().flatten());
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let openapi_megabytes = mb(vai_link.bytes().down - at_ready);

    // Synced, under churn.
    let before = (vai_link.bytes().down, reflector_link.bytes().down);
    tokio::time::sleep(setup.steady).await;
    let per_hour = 3600.0 / setup.steady.as_secs_f64();
    let steady_megabytes_per_hour = (
        mb(vai_link.bytes().down - before.0) * per_hour,
        mb(reflector_link.bytes().down - before.1) * per_hour,
    );

    // The cut: reads through vai and through the link; the marker changes meanwhile.
    let lists_before = vai_lists(&vai).await;
    let relists_before = reflector.initdone;
    let through_link = reflector_link
        .client(Some(Duration::from_secs(2)))
        .await
        .unwrap();
    vai_link.cut().await.unwrap();
    reflector_link.cut().await.unwrap();
    let cut_at = Instant::now();
    let path = format!("/api/v1/namespaces/{MARKER_NAMESPACE}/configmaps");
    let (mut answered, mut answered_upstream, mut tried) = (0, 0, 0);
    markers
        .patch(
            MARKER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"value": "after-cut"}})),
        )
        .await
        .unwrap();
    while cut_at.elapsed() < setup.cut {
        tried += 1;
        if let Ok((200, _)) = http1::Client.get(&format!("{}{path}", vai.url)).await {
            answered += 1;
        }
        let request = http::Request::get(&path).body(Vec::new()).unwrap();
        if through_link.request_text(request).await.is_ok() {
            answered_upstream += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Up again: until each serves the marker's new value.
    let before = (vai_link.bytes().down, reflector_link.bytes().down);
    vai_link.up().await.unwrap();
    reflector_link.up().await.unwrap();
    let up_at = Instant::now();
    let deadline = Duration::from_secs(900);
    let vai_current = async {
        loop {
            if vai_is_current(&vai).await {
                return Some((up_at.elapsed().as_secs_f64(), vai_link.bytes().down));
            }
            if up_at.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let reflector_current = async {
        reflector
            .wait_for(|l| l == "marker after-cut", deadline)
            .await
            .map(|_| (up_at.elapsed().as_secs_f64(), reflector_link.bytes().down))
    };
    let (vai_current, reflector_current) = tokio::join!(vai_current, reflector_current);
    let seconds_and_bytes = |current: Option<(f64, u64)>, before: u64| {
        current.map_or((f64::NAN, f64::NAN), |(s, b)| (s, mb(b - before)))
    };
    let (vai_s, vai_mb) = seconds_and_bytes(vai_current, before.0);
    let (reflector_s, reflector_mb) = seconds_and_bytes(reflector_current, before.1);
    let lists_after_cut = (
        vai_lists(&vai).await - lists_before,
        (reflector.initdone - relists_before) as f64,
    );
    vai.stop();
    Edge {
        sync_seconds,
        sync_megabytes,
        openapi_megabytes,
        steady_megabytes_per_hour,
        reads_during_cut: (answered as f64, answered_upstream as f64),
        reads_tried: tried,
        current_seconds: (vai_s, reflector_s),
        current_megabytes: (vai_mb, reflector_mb),
        lists_after_cut,
    }
}

/// Full lists vai made upstream (its `/metrics`).
async fn vai_lists(vai: &Vai) -> f64 {
    match http1::Client.get(&format!("{}/metrics", vai.url)).await {
        Ok((200, body)) => vai_testenv::measure::metric_sum(
            &String::from_utf8_lossy(&body),
            "vai_sync_lists_total",
            &[],
        )
        .unwrap_or(0.0),
        _ => f64::NAN,
    }
}

/// vai serves the marker's new value, and every type is live.
async fn vai_is_current(vai: &Vai) -> bool {
    let marker = format!(
        "{}/api/v1/namespaces/{MARKER_NAMESPACE}/configmaps/{MARKER}",
        vai.url
    );
    let Ok((200, body)) = http1::Client.get(&marker).await else {
        return false;
    };
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if value["data"]["value"] != "after-cut" {
        return false;
    }
    let Ok((200, body)) = http1::Client
        .get(&format!("{}/vai/v1/status", vai.url))
        .await
    else {
        return false;
    };
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    status["resources"]
        .as_array()
        .is_some_and(|all| all.iter().all(|r| r["state"] == "live"))
}

/// The reflector child, and what it said so far.
struct ReflectorChild {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Lists it completed, of every type.
    initdone: usize,
}

impl ReflectorChild {
    fn start(kubeconfig: &Path) -> ReflectorChild {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(REFLECTOR_CHILD, kubeconfig)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        ReflectorChild {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            initdone: 0,
        }
    }

    /// Reads its lines until one matches `what` (returned), counting lists, for at most
    /// `deadline`.
    async fn wait_for(
        &mut self,
        what: impl Fn(&str) -> bool,
        deadline: Duration,
    ) -> Option<String> {
        let started = Instant::now();
        loop {
            let left = deadline.checked_sub(started.elapsed())?;
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .ok()?
                .ok()??;
            if line.starts_with("initdone ") {
                self.initdone += 1;
            }
            if what(&line) {
                return Some(line);
            }
        }
    }
}

impl Drop for ReflectorChild {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The edge scenario's reflector: one kube-runtime reflector per type through the link; prints
/// `ready SECONDS` once all three have their first complete state, `initdone TYPE` at each
/// complete list, and `marker VALUE` each time the marker ConfigMap is applied to its store.
pub async fn reflector_child(kubeconfig: &str) -> ! {
    let client = crate::baseline::client_from(kubeconfig).await;
    let started = Instant::now();
    let (said, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let pods = follow::<Pod>(&client, "pods", said.clone(), |_| None);
    let config_maps = follow::<ConfigMap>(&client, "configmaps", said.clone(), |cm| {
        (cm.metadata.name.as_deref() == Some(MARKER)).then(|| {
            cm.data
                .as_ref()
                .and_then(|d| d.get("value").cloned())
                .unwrap_or_default()
        })
    });
    let secrets = follow::<Secret>(&client, "secrets", said.clone(), |_| None);
    tokio::spawn(async move {
        pods.wait_until_ready().await.unwrap();
        config_maps.wait_until_ready().await.unwrap();
        secrets.wait_until_ready().await.unwrap();
        let _ = said.send(format!("ready {}", started.elapsed().as_secs_f64()));
    });
    while let Some(line) = lines.recv().await {
        println!("{line}");
    }
    std::process::exit(0);
}

/// A reflector of every `K`, saying its lists and what `marker` finds in what it applies.
fn follow<K: crate::baseline::Reflectable>(
    client: &kube::Client,
    name: &'static str,
    said: tokio::sync::mpsc::UnboundedSender<String>,
    marker: fn(&K) -> Option<String>,
) -> kube::runtime::reflector::Store<K> {
    crate::baseline::reflect_seeing(client, move |event| match event {
        Event::InitDone => {
            let _ = said.send(format!("initdone {name}"));
        }
        Event::Apply(object) | Event::InitApply(object) => {
            if let Some(value) = marker(object) {
                let _ = said.send(format!("marker {value}"));
            }
        }
        _ => {}
    })
}
