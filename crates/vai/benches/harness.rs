//! The side-by-side load harness: a real control plane filled with a realistic workload, then
//! vai and the baselines measured in the same run, alternating, reported as ratios.
//!
//! ```text
//! cargo bench -p vai --bench harness                          # full: 100,000 pods
//! VAI_BENCH_PODS=10000 cargo bench -p vai --bench harness     # quick
//! cargo test -p vai --bench harness                           # quick, as CI runs it (2,000 pods)
//! ```
//!
//! Baselines: the kube-apiserver itself (its watch cache serves lists) and kube-runtime's
//! in-memory reflector in a process of its own. Writes `target/vai-bench/report.json` and prints
//! a markdown table. Scenarios: initial sync, memory, full list, selective list, a UI page,
//! watch fan-out with propagation delay, restart; churn and charts are to come.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use vai_testenv::TestEnv;
use vai_testenv::measure::{apiserver_metrics, metric_sum, rss_mb};
use vai_testenv::workload::{Rng, pod};

/// One measured comparison.
struct Row {
    scenario: String,
    vai: f64,
    baseline: f64,
    baseline_name: &'static str,
    unit: &'static str,
    goal: &'static str,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// A pod of the generated workload, made creatable: no server-set fields, no owner (the
/// garbage collector would delete it), no node (the pod GC would).
fn creatable(i: u64, rng: &mut Rng) -> Pod {
    let mut value: serde_json::Value = serde_json::from_slice(&pod(i, 1, rng)).unwrap();
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

async fn load(client: &kube::Client, n: u64) -> f64 {
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
    let pods: Vec<Pod> = (0..n).map(|i| creatable(i, &mut rng)).collect();
    futures::stream::iter(pods)
        .map(|p| {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
            async move { api.create(&PostParams::default(), &p).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    started.elapsed().as_secs_f64()
}

/// A `vai serve` process.
struct Vai {
    child: Child,
    url: String,
}

impl Vai {
    fn start(env: &TestEnv, db: &Path) -> Vai {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_vai"))
            .args(["serve", "--kubeconfig"])
            .arg(env.kubeconfig_path())
            .arg("--db")
            .arg(db)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--resources",
                "pods,namespaces",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Vai {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Seconds until `/readyz` answers 200.
    async fn ready(&self, client: &reqwest_like::Client) -> f64 {
        let started = Instant::now();
        loop {
            if client
                .get(&format!("{}/readyz", self.url))
                .await
                .is_ok_and(|(s, _)| s == 200)
            {
                return started.elapsed().as_secs_f64();
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "vai never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1 client (no TLS) for vai, and one through kube's client for the apiserver.
mod reqwest_like {
    use http_body_util::BodyExt;

    pub struct Client;

    impl Client {
        /// GET a plain-HTTP URL; (status, body length).
        pub async fn get(&self, url: &str) -> Result<(u16, usize), String> {
            let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
            let host = uri.authority().unwrap().to_string();
            let stream = tokio::net::TcpStream::connect(&host)
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let request = http::Request::get(uri.path_and_query().unwrap().as_str())
                .header("host", host)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = send
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok((status, body.to_bytes().len()))
        }
    }
}

/// Times `runs` requests of `path` against vai and the apiserver, alternating; medians in ms.
async fn side_by_side(vai: &Vai, upstream: &kube::Client, path: &str, runs: usize) -> (f64, f64) {
    let http = reqwest_like::Client;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let (status, _) = http.get(&format!("{}{path}", vai.url)).await.unwrap();
        assert_eq!(status, 200, "vai {path}");
        a.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        upstream
            .request_text(http::Request::get(path).body(Vec::new()).unwrap())
            .await
            .unwrap();
        b.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(a), median(b))
}

/// The reflector baseline, in a process of its own: prints `sync_seconds rss_mb`.
async fn reflector_child(kubeconfig: &str) {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let started = Instant::now();
    let (reader, writer) = kube::runtime::reflector::store::<Pod>();
    let stream = kube::runtime::reflector(
        writer,
        kube::runtime::watcher(Api::<Pod>::all(client), Default::default()),
    );
    tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!("{seconds} {} {}", rss_mb(std::process::id()), reader.len());
}

/// A bare paginated LIST of every pod: (seconds, bytes of JSON received).
async fn paginated_download(client: &kube::Client) -> (f64, usize) {
    let started = Instant::now();
    let mut token = String::new();
    let mut bytes = 0;
    loop {
        let mut path = "/api/v1/pods?limit=500".to_string();
        if !token.is_empty() {
            path += &format!("&continue={token}");
        }
        let text = client
            .request_text(http::Request::get(&path).body(Vec::new()).unwrap())
            .await
            .unwrap();
        bytes += text.len();
        let page: serde_json::Value = serde_json::from_str(&text).unwrap();
        match page["metadata"]["continue"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_string(),
            _ => return (started.elapsed().as_secs_f64(), bytes),
        }
    }
}

fn report(rows: &[Row], n: u64, out: &Path) {
    println!("\n| scenario | vai | baseline | vai / baseline | goal |\n|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    for r in rows {
        let ratio = r.vai / r.baseline;
        println!(
            "| {} | {:.1} {} | {:.1} {} ({}) | {:.3} | {} |",
            r.scenario, r.vai, r.unit, r.baseline, r.unit, r.baseline_name, ratio, r.goal
        );
        json_rows.push(json!({
            "scenario": r.scenario, "vai": r.vai, "baseline": r.baseline,
            "baseline_name": r.baseline_name, "unit": r.unit, "ratio": ratio, "goal": r.goal,
        }));
    }
    std::fs::create_dir_all(out).unwrap();
    let report = json!({"pods": n, "rows": json_rows});
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    println!("\nreport: {}", out.join("report.json").display());
}

#[tokio::main]
async fn main() {
    if let Ok(kubeconfig) = std::env::var("VAI_BENCH_REFLECTOR_CHILD") {
        return reflector_child(&kubeconfig).await;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("VAI_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100_000 } else { 2_000 });
    let runs = if full { 20 } else { 5 };
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/vai-bench");
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let seconds = load(&client, n).await;
    println!(
        "loaded {n} pods in {seconds:.1} s ({:.0}/s)",
        n as f64 / seconds
    );
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");

    // 1. Initial sync: vai to ready, the reflector to its first complete state, a bare download.
    let http = reqwest_like::Client;
    let (download, raw_bytes) = paginated_download(&client).await;
    let vai = Vai::start(&env, &db);
    let vai_sync = vai.ready(&http).await;
    let child = Command::new(std::env::current_exe().unwrap())
        .env("VAI_BENCH_REFLECTOR_CHILD", env.kubeconfig_path())
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let fields: Vec<f64> = String::from_utf8(child.stdout)
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let (reflector_sync, reflector_rss, held) = (fields[0], fields[1], fields[2]);
    assert_eq!(held as u64, n, "the reflector holds every pod");
    rows.push(Row {
        scenario: "1. initial sync".into(),
        vai: vai_sync,
        baseline: reflector_sync,
        baseline_name: "kube-rs reflector",
        unit: "s",
        goal: "",
    });
    rows.push(Row {
        scenario: "1. initial sync".into(),
        vai: vai_sync,
        baseline: download,
        baseline_name: "paginated LIST download",
        unit: "s",
        goal: "",
    });

    // 2. Memory and disk.
    let vai_rss = rss_mb(vai.child.id());
    rows.push(Row {
        scenario: "2. RSS holding all pods".into(),
        vai: vai_rss,
        baseline: reflector_rss,
        baseline_name: "kube-rs reflector",
        unit: "MB",
        goal: "≤ 0.1",
    });
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let on_disk = (size(&db) + size(Path::new(&wal))) as f64 / 1e6;
    let raw = raw_bytes as f64 / 1e6;
    rows.push(Row {
        scenario: "2. disk vs raw JSON".into(),
        vai: on_disk,
        baseline: raw,
        baseline_name: "the LIST's JSON",
        unit: "MB",
        goal: "≤ 1",
    });

    // 3–5. Lists and a UI page, alternating with the apiserver.
    let (a, b) = side_by_side(&vai, &client, "/api/v1/pods", runs).await;
    rows.push(Row {
        scenario: "3. full list".into(),
        vai: a,
        baseline: b,
        baseline_name: "kube-apiserver",
        unit: "ms",
        goal: "≤ 0.33",
    });
    let (a, b) = side_by_side(&vai, &client, "/api/v1/pods?labelSelector=shard%3D7", runs).await;
    rows.push(Row {
        scenario: "4. selective list (1%)".into(),
        vai: a,
        baseline: b,
        baseline_name: "kube-apiserver",
        unit: "ms",
        goal: "≤ 0.02",
    });
    let page = "/api/v1/namespaces/team-07/pods?filter=metadata.labels%5Btier%5D%3Dbackend&sort=-metadata.creationTimestamp&page=1&pagesize=100";
    let mut ui = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let (status, _) = http.get(&format!("{}{page}", vai.url)).await.unwrap();
        assert_eq!(status, 200);
        ui.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Without vai a UI lists the namespace and filters and sorts in the client.
    let mut client_side = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let text = client
            .request_text(
                http::Request::get("/api/v1/namespaces/team-07/pods")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut items: Vec<&serde_json::Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["labels"]["tier"] == "backend")
            .collect();
        items.sort_by(|x, y| {
            y["metadata"]["creationTimestamp"]
                .as_str()
                .cmp(&x["metadata"]["creationTimestamp"].as_str())
        });
        items.truncate(100);
        client_side.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rows.push(Row {
        scenario: "5. UI page (filter, sort, total)".into(),
        vai: median(ui),
        baseline: median(client_side),
        baseline_name: "list + client-side sort",
        unit: "ms",
        goal: "≤ 0.02",
    });

    // 6. Fan-out: many watchers on vai; upstream still sees one watch per type.
    let watchers = if full { 1000 } else { 100 };
    let (upstream_watches, delays) = fan_out(&vai, &client, watchers).await;
    rows.push(Row {
        scenario: "6. upstream pod watches added by the downstream watchers".into(),
        vai: upstream_watches,
        baseline: watchers as f64,
        baseline_name: "each watcher on the apiserver",
        unit: "watches",
        goal: "0 (one per type, already open)",
    });
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    rows.push(Row {
        scenario: format!("6. propagation to {watchers} watchers, p99 (p50 {p50:.1} ms)"),
        vai: p99,
        baseline: 100.0,
        baseline_name: "the goal",
        unit: "ms",
        goal: "p99 ≤ 100 ms",
    });

    // 7. Restart: time to the first answered list, and LISTs upstream.
    vai.stop();
    let lists_before = apiserver_lists(&client).await;
    let started = Instant::now();
    let vai = Vai::start(&env, &db);
    loop {
        if let Ok((200, _)) = http.get(&format!("{}/api/v1/pods?limit=1", vai.url)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart = started.elapsed().as_secs_f64();
    let lists = apiserver_lists(&client).await - lists_before;
    rows.push(Row {
        scenario: "7. restart to first answer".into(),
        vai: restart,
        baseline: reflector_sync,
        baseline_name: "reflector's full resync",
        unit: "s",
        goal: "≤ 1 s, no LIST",
    });
    rows.push(Row {
        scenario: "7. upstream LISTs at restart".into(),
        vai: lists,
        baseline: 1.0,
        baseline_name: "a reflector relists",
        unit: "calls",
        goal: "0",
    });
    vai.stop();

    report(&rows, n, &out);
    // The quick run is a test: every scenario ran and measured something.
    assert!(rows.iter().all(|r| r.vai.is_finite() && r.baseline > 0.0));
    assert_eq!(lists, 0.0, "a restart made no LIST upstream");
    assert_eq!(
        upstream_watches, 0.0,
        "{watchers} downstream watchers opened upstream watches"
    );
}

fn percentile(sorted_or_not: &[f64], p: f64) -> f64 {
    let mut xs = sorted_or_not.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() - 1) as f64 * p) as usize]
}

/// Opens `n` watches on vai, creates probe pods upstream, and returns (how many pod watches the
/// apiserver gained while they run, every watcher's delay per probe in ms).
async fn fan_out(vai: &Vai, client: &kube::Client, n: usize) -> (f64, Vec<f64>) {
    const PROBES: usize = 5;
    // From the current resource version: no initial events, only what happens next.
    let list: serde_json::Value = serde_json::from_str(
        &client
            .request_text(
                http::Request::get("/api/v1/namespaces/team-03/pods?limit=1")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!(
        "{}/api/v1/namespaces/team-03/pods?watch=1&resourceVersion={rv}&timeoutSeconds=120",
        vai.url
    );
    let before = apiserver_pod_watches(client).await;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, ready) = (url.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            watch_probes(&url, PROBES, ready).await
        }));
    }
    for _ in 0..n {
        ready_rx.recv().await.unwrap();
    }
    let watches = apiserver_pod_watches(client).await - before;
    let api: Api<Pod> = Api::namespaced(client.clone(), "team-03");
    let mut started = Vec::new();
    let mut rng = Rng(99);
    for k in 0..PROBES {
        let mut pod = creatable(3 + 50 * (1_000_000 + k as u64), &mut rng);
        pod.metadata.name = Some(format!("fanout-{k}"));
        started.push(Instant::now());
        api.create(&PostParams::default(), &pod).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut delays = Vec::new();
    for task in tasks {
        let arrivals = task.await.unwrap();
        for (k, at) in arrivals.into_iter().enumerate() {
            delays.push((at - started[k]).as_secs_f64() * 1000.0);
        }
    }
    (watches, delays)
}

/// One downstream watcher: signals when its stream is open, returns when each probe arrived.
async fn watch_probes(
    url: &str,
    probes: usize,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Vec<Instant> {
    use http_body_util::BodyExt;
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(uri.path_and_query().unwrap().as_str())
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut body = send.send_request(request).await.unwrap().into_body();
    ready.send(()).await.unwrap();
    let mut arrivals = vec![None; probes];
    let mut buffer = Vec::new();
    while arrivals.iter().any(Option::is_none) {
        let Some(Ok(frame)) = body.frame().await else {
            panic!("the watch ended before every probe arrived");
        };
        let now = Instant::now();
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            // Only probe events are read whole.
            if !line.windows(7).any(|w| w == b"fanout-") {
                continue;
            }
            let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
            if let Some(k) = event["object"]["metadata"]["name"]
                .as_str()
                .and_then(|n| n.strip_prefix("fanout-"))
                .and_then(|k| k.parse::<usize>().ok())
                && event["type"] == "ADDED"
            {
                arrivals[k].get_or_insert(now);
            }
        }
    }
    arrivals.into_iter().map(Option::unwrap).collect()
}

/// The apiserver's current long-running WATCH requests on pods.
async fn apiserver_pod_watches(client: &kube::Client) -> f64 {
    let page = apiserver_metrics(client).await.unwrap();
    metric_sum(
        &page,
        "apiserver_longrunning_requests",
        &[r#"verb="WATCH""#, r#"resource="pods""#],
    )
}

/// LIST requests on pods the apiserver has served.
async fn apiserver_lists(client: &kube::Client) -> f64 {
    let page = apiserver_metrics(client).await.unwrap();
    metric_sum(
        &page,
        "apiserver_request_total",
        &[r#"verb="LIST""#, r#"resource="pods""#],
    )
}
