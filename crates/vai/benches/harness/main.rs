//! The side-by-side load harness: a real control plane filled with a realistic workload, then
//! vai and the baselines measured in the same run, alternating, reported as ratios — once on a
//! quiet cluster and once while churn (a steady rate of updates, creates and deletes) flows.
//!
//! ```text
//! cargo bench -p vai --bench harness                          # full: 100,000 pods, 500 changes/s
//! VAI_BENCH_PODS=10000 cargo bench -p vai --bench harness     # quick
//! cargo test -p vai --bench harness                           # quick, as CI runs it (2,000 pods)
//! ```
//!
//! `VAI_BENCH_CHURN` sets the churn's changes per second (0 skips the churn phase). Baselines:
//! the kube-apiserver itself (its watch cache serves lists) and kube-runtime's in-memory
//! reflector in a process of its own. Writes `target/vai-bench/report.json`, `report.md` and
//! PNG charts beside them, and prints the markdown table. Scenarios: initial sync, memory and
//! disk, full list, selective list, a UI page, watch fan-out with propagation delay, restart.
//! The quick run asserts that every scenario measured something (it is CI's test); the full
//! run reports what it found, misses included, and does not fail on them.

mod chart;
mod churn;
mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use vai_testenv::TestEnv;
use vai_testenv::measure::{apiserver_metrics, metric_sum, rss_mb};
use vai_testenv::workload::Rng;

use churn::Churn;
use load::creatable;

/// The types vai caches here, and the baselines hold.
const RESOURCES: &str = "pods,configmaps,secrets,namespaces";

/// When a row was measured: on a quiet cluster, or while churn flows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Nothing changes upstream but the scenarios' own probes.
    Quiet,
    /// Churn flows (see [`churn`]).
    Churn,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Quiet => "quiet",
            Phase::Churn => "churn",
        }
    }
}

/// One measured comparison.
pub struct Row {
    phase: Phase,
    scenario: String,
    vai: f64,
    baseline: f64,
    baseline_name: &'static str,
    unit: &'static str,
    goal: Goal,
}

/// A row's goal.
#[derive(Clone, Copy)]
pub enum Goal {
    /// None set.
    None,
    /// vai / baseline at most this; how the goal reads.
    Ratio(f64, &'static str),
    /// vai's own figure at most this (in the row's unit); how the goal reads.
    Max(f64, &'static str),
    /// A goal that is not a number to check here.
    Note(&'static str),
}

impl Goal {
    fn text(self) -> &'static str {
        match self {
            Goal::None => "",
            Goal::Ratio(_, text) | Goal::Max(_, text) | Goal::Note(text) => text,
        }
    }
}

impl Row {
    fn ratio(&self) -> f64 {
        self.vai / self.baseline
    }

    /// Whether the row meets its goal, where it has one that is a number.
    fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::Ratio(goal, _) => Some(self.ratio() <= goal),
            Goal::Max(goal, _) => Some(self.vai <= goal),
            Goal::None | Goal::Note(_) => None,
        }
    }

    /// The bound on vai / baseline, to draw.
    fn goal_ratio(&self) -> Option<f64> {
        match self.goal {
            Goal::Ratio(goal, _) => Some(goal),
            _ => None,
        }
    }
}

/// What every phase is asked to do.
struct Setup {
    /// Pods, ConfigMaps and Secrets upstream (at the phase's start).
    objects: u64,
    /// Requests per list scenario.
    runs: usize,
    /// Downstream watchers in the fan-out.
    watchers: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn percentile(sorted_or_not: &[f64], p: f64) -> f64 {
    if sorted_or_not.is_empty() {
        return f64::NAN;
    }
    let mut xs = sorted_or_not.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() - 1) as f64 * p) as usize]
}

/// A `vai serve` process.
struct Vai {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Vai {
    /// Starts vai on `db`, its log appended to `log`.
    fn start(env: &TestEnv, db: &Path, log: &Path) -> Vai {
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
                RESOURCES,
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        Vai {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        }
    }

    /// Seconds until `/readyz` answers 200.
    /// Seconds until it is ready (every type synced), or `None` after [`READY_DEADLINE`].
    async fn ready(&self, client: &reqwest_like::Client) -> Option<f64> {
        let started = Instant::now();
        loop {
            if client
                .get(&format!("{}/readyz", self.url))
                .await
                .is_ok_and(|(s, _)| s == 200)
            {
                return Some(started.elapsed().as_secs_f64());
            }
            if started.elapsed() >= READY_DEADLINE {
                println!(
                    "vai was not ready within {} s (its log: {})",
                    READY_DEADLINE.as_secs(),
                    self.log.display()
                );
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it gracefully (SIGTERM) and waits.
    fn stop(self) {
        drop(self);
    }
}

/// How long vai may take to become ready before a phase reports it as not ready.
const READY_DEADLINE: Duration = Duration::from_secs(600);

/// A harness that fails half-way leaves no vai running.
impl Drop for Vai {
    fn drop(&mut self) {
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
        /// GET a plain-HTTP URL; (status, body).
        pub async fn get(&self, url: &str) -> Result<(u16, bytes::Bytes), String> {
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
            Ok((status, body.to_bytes()))
        }
    }
}

/// A baseline that failed this often in a row is not asked again in that scenario (under churn
/// each of the apiserver's failed full lists took minutes: ten of them were a third of the run).
const BASELINE_FAILURES: usize = 2;

/// Times `runs` requests of `path` against vai and the apiserver, alternating; medians in ms.
async fn side_by_side(vai: &Vai, upstream: &kube::Client, path: &str, runs: usize) -> (f64, f64) {
    let http = reqwest_like::Client;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut failures = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (status, _) = http.get(&format!("{}{path}", vai.url)).await.unwrap();
        assert_eq!(status, 200, "vai {path}");
        a.push(t.elapsed().as_secs_f64() * 1000.0);
        if failures == BASELINE_FAILURES {
            continue;
        }
        let t = Instant::now();
        // Under churn the apiserver may cut a large list; such a run is told, not timed.
        match upstream
            .request_text(http::Request::get(path).body(Vec::new()).unwrap())
            .await
        {
            Ok(_) => {
                b.push(t.elapsed().as_secs_f64() * 1000.0);
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                eprintln!("the apiserver failed {path} after {:?}: {e}", t.elapsed());
                if failures == BASELINE_FAILURES {
                    eprintln!(
                        "{BASELINE_FAILURES} failures in a row: the apiserver is not asked {path} again"
                    );
                }
            }
        }
    }
    let baseline = if b.is_empty() { f64::NAN } else { median(b) };
    (median(a), baseline)
}

/// The reflector baseline, in a process of its own: one kube-runtime reflector per type, the
/// way a controller holds them; prints `sync_seconds rss_mb objects_held`.
async fn reflector_child(kubeconfig: &str) {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let started = Instant::now();
    let pods = reflect::<Pod>(&client);
    let config_maps = reflect::<ConfigMap>(&client);
    let secrets = reflect::<Secret>(&client);
    let ready = async {
        pods.wait_until_ready().await.unwrap();
        config_maps.wait_until_ready().await.unwrap();
        secrets.wait_until_ready().await.unwrap();
    };
    let synced = tokio::time::timeout(REFLECTOR_DEADLINE, ready)
        .await
        .is_ok();
    let seconds = started.elapsed().as_secs_f64();
    let held = pods.len() + config_maps.len() + secrets.len();
    println!(
        "{seconds} {} {held} {}",
        rss_mb(std::process::id()),
        u8::from(synced)
    );
    // Exit now: a watcher that never synced may be relisting in a loop that never yields
    // (its errors go unanswered here), and the runtime's shutdown would wait for it forever
    // (session 7's full run hung there for 20 minutes).
    std::process::exit(0);
}

/// A kube-runtime reflector of every `K`, running; its store.
fn reflect<K>(client: &kube::Client) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = kube::runtime::reflector::store::<K>();
    let watcher = kube::runtime::watcher(Api::<K>::all(client.clone()), Default::default());
    tokio::spawn(kube::runtime::reflector(writer, watcher).for_each(|_| async {}));
    store
}

/// How long the reflector baseline may take to its first complete state (under churn at
/// 100,000 pods its paged lists outlive etcd's compaction and it starts over, again and again).
const REFLECTOR_DEADLINE: Duration = Duration::from_secs(300);

/// The reflector baseline's outcome.
struct Reflected {
    seconds: f64,
    rss_mb: f64,
    held: u64,
    /// Whether it reached a complete state within [`REFLECTOR_DEADLINE`].
    synced: bool,
}

/// Runs the reflector baseline in a process of its own.
fn reflector(env: &TestEnv) -> Reflected {
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
    Reflected {
        seconds: fields[0],
        rss_mb: fields[1],
        held: fields[2] as u64,
        synced: fields[3] == 1.0,
    }
}

/// A bare paginated LIST of every pod, ConfigMap and Secret: (seconds, bytes of JSON received).
async fn paginated_download(client: &kube::Client) -> (f64, usize) {
    let started = Instant::now();
    let mut bytes = 0;
    for resource in ["pods", "configmaps", "secrets"] {
        let mut token = String::new();
        loop {
            let mut path = format!("/api/v1/{resource}?limit=500");
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
                _ => break,
            }
        }
    }
    (started.elapsed().as_secs_f64(), bytes)
}

/// Objects upstream now, of the cached types but namespaces.
async fn upstream_objects(client: &kube::Client) -> u64 {
    let mut total = 0;
    for resource in ["pods", "configmaps", "secrets"] {
        let page: serde_json::Value = serde_json::from_str(
            &client
                .request_text(
                    http::Request::get(format!("/api/v1/{resource}?limit=1"))
                        .body(Vec::new())
                        .unwrap(),
                )
                .await
                .unwrap(),
        )
        .unwrap();
        let rest = page["metadata"]["remainingItemCount"].as_u64().unwrap_or(0);
        total += rest + page["items"].as_array().map_or(0, |i| i.len() as u64);
    }
    total
}

/// What a phase saw that the quick run asserts on.
struct Outcome {
    lists_at_restart: f64,
    upstream_watches: f64,
}

/// Scenarios 1–7 with a fresh vai: sync, memory, lists and a UI page against their baselines,
/// fan-out, restart.
async fn run_phase(
    env: &TestEnv,
    client: &kube::Client,
    out: &Path,
    setup: &Setup,
    phase: Phase,
    rows: &mut Vec<Row>,
) -> Outcome {
    let mut row = |scenario: String, vai: f64, baseline: f64, baseline_name, unit, goal| {
        rows.push(Row {
            phase,
            scenario,
            vai,
            baseline,
            baseline_name,
            unit,
            goal,
        })
    };
    let http = reqwest_like::Client;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let log = out.join(format!("vai-{}.log", phase.name()));
    let _ = std::fs::remove_file(&log);

    // 1. Initial sync: vai to ready, the reflector to its first complete state, a bare download.
    let (download, raw_bytes) = paginated_download(client).await;
    // The propagation baseline: one watch on the apiserver, as old as vai's own.
    let upstream_watch = UpstreamWatch::open(client).await;
    let vai = Vai::start(env, &db, &log);
    let vai_sync = vai.ready(&http).await;
    let vai_rss = rss_mb(vai.child.id());
    let reflected = reflector(env);
    let (reflector_sync, reflector_rss) = (reflected.seconds, reflected.rss_mb);
    let reflector_name = if reflected.synced {
        "kube-rs reflector"
    } else {
        "kube-rs reflector, not synced within 300 s"
    };
    assert!(
        !reflected.synced || reflected.held >= setup.objects * 95 / 100,
        "the reflector holds {} of ~{} objects",
        reflected.held,
        setup.objects
    );
    let n = setup.objects;
    row(
        format!("1. initial sync of {n} objects"),
        vai_sync.unwrap_or(f64::NAN),
        reflector_sync,
        reflector_name,
        "s",
        Goal::None,
    );
    let Some(vai_sync) = vai_sync else {
        // Nothing else can be measured against a vai that never synced; the row above says so.
        println!(
            "{} phase: vai not ready; its other scenarios are skipped",
            phase.name()
        );
        return Outcome {
            lists_at_restart: f64::NAN,
            upstream_watches: f64::NAN,
        };
    };
    row(
        format!("1. initial sync of {n} objects"),
        vai_sync,
        download,
        "paginated LIST download",
        "s",
        Goal::None,
    );

    // 2. Memory and disk.
    row(
        "2. RSS holding every object".into(),
        vai_rss,
        reflector_rss,
        reflector_name,
        "MB",
        Goal::Ratio(0.1, "≤ 0.1"),
    );
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let on_disk = (size(&db) + size(Path::new(&wal))) as f64 / 1e6;
    row(
        "2. disk vs raw JSON".into(),
        on_disk,
        raw_bytes as f64 / 1e6,
        "the LISTs' JSON",
        "MB",
        Goal::Ratio(1.0, "≤ 1"),
    );

    // 3–5. Lists and a UI page, alternating with the apiserver.
    let (a, b) = side_by_side(&vai, client, "/api/v1/pods", setup.runs).await;
    row(
        "3. full list of pods".into(),
        a,
        b,
        "kube-apiserver",
        "ms",
        Goal::Ratio(1.0 / 3.0, "≥ 3× faster"),
    );
    let (a, b) = side_by_side(
        &vai,
        client,
        "/api/v1/pods?labelSelector=shard%3D7",
        setup.runs,
    )
    .await;
    row(
        "4. selective list (1%)".into(),
        a,
        b,
        "kube-apiserver",
        "ms",
        Goal::Ratio(0.02, "≥ 50× faster"),
    );
    let (a, b) = ui_page(&vai, client, setup.runs).await;
    row(
        "5. UI page (filter, sort, total)".into(),
        a,
        b,
        "list + client-side sort",
        "ms",
        Goal::Ratio(0.02, "≥ 50× faster"),
    );
    // 5. The query API's dashboard page under 50 clients: at a stated rate (their latency,
    // from when each page was due), and back to back (what the machine can serve).
    let alone = concurrent_pages(&vai, 1, setup.runs * 10, None).await;
    let (at_rate, _) =
        concurrent_pages(&vai, UI_CLIENTS, UI_RATE as usize * 4, Some(UI_RATE)).await;
    for (p, goal) in [
        (0.5, Goal::Max(5.0, "p50 ≤ 5 ms")),
        (0.99, Goal::Max(20.0, "p99 ≤ 20 ms")),
    ] {
        row(
            format!(
                "5. dashboard page, {UI_CLIENTS} clients asking {UI_RATE:.0} pages/s in all: p{:.0}",
                p * 100.0
            ),
            percentile(&at_rate, p),
            percentile(&alone.0, p),
            "one client alone",
            "ms",
            goal,
        );
    }
    let (back_to_back, rate) = concurrent_pages(&vai, UI_CLIENTS, UI_CLIENTS * 20, None).await;
    row(
        format!("5. dashboard page, {UI_CLIENTS} clients back to back ({rate:.0} pages/s): p50"),
        percentile(&back_to_back, 0.5),
        percentile(&alone.0, 0.5),
        "one client alone",
        "ms",
        Goal::Note("queueing: 50 / pages per second"),
    );

    // 6. Fan-out: many watchers on vai; upstream still sees one watch per type.
    let watchers = setup.watchers;
    let (upstream_watches, delays) = fan_out(&vai, client, &upstream_watch, watchers, phase).await;
    row(
        format!("6. upstream pod watches added by {watchers} watchers on vai"),
        upstream_watches,
        watchers as f64,
        "each watcher on the apiserver",
        "watches",
        Goal::Note("0 (one per type, already open)"),
    );
    row(
        format!("6. probe events lost at the {watchers} watchers"),
        delays.lost.0 as f64,
        delays.lost.1 as f64,
        "lost at one watch on the apiserver",
        "events",
        Goal::Max(0.0, "0"),
    );
    let (direct, delays) = (&delays.direct, &delays.through_vai);
    for (p, goal) in [(0.5, Goal::None), (0.99, Goal::Max(100.0, "p99 ≤ 100 ms"))] {
        let (at, baseline) = (percentile(delays, p), percentile(direct, p));
        let name = format!("6. propagation to {watchers} watchers, p{}", p * 100.0);
        row(name, at, baseline, "one watch on the apiserver", "ms", goal);
    }

    // 7. Restart: time to the first answered list, and LISTs upstream.
    vai.stop();
    let lists_before = apiserver_lists(client).await;
    assert!(lists_before >= 1.0, "vai's first sync listed pods");
    let started = Instant::now();
    let vai = Vai::start(env, &db, &log);
    loop {
        if let Ok((200, _)) = http.get(&format!("{}/api/v1/pods?limit=1", vai.url)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart = started.elapsed().as_secs_f64();
    // A resumed watch is open once vai is ready again; count LISTs only after that (under
    // churn vai may have to relist and not be ready within the deadline: then the LISTs are
    // counted as they stand).
    vai.ready(&http).await;
    let lists_at_restart = apiserver_lists(client).await - lists_before;
    row(
        "7. restart to first answer".into(),
        restart,
        reflector_sync,
        "reflector's full resync",
        "s",
        Goal::Max(1.0, "≤ 1 s"),
    );
    row(
        "7. upstream LISTs at restart".into(),
        lists_at_restart,
        1.0,
        "a reflector relists",
        "calls",
        Goal::Max(0.0, "0"),
    );
    vai.stop();
    Outcome {
        lists_at_restart,
        upstream_watches,
    }
}

/// A UI's page — one namespace, a label filter, newest first, with the total — from vai, and
/// what a UI must do without vai: list the namespace, then filter and sort in the client.
async fn ui_page(vai: &Vai, client: &kube::Client, runs: usize) -> (f64, f64) {
    let http = reqwest_like::Client;
    let page = "/api/v1/namespaces/team-07/pods?filter=metadata.labels%5Btier%5D%3Dbackend&sort=-metadata.creationTimestamp&page=1&pagesize=100";
    let (mut ui, mut client_side) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let (status, _) = http.get(&format!("{}{page}", vai.url)).await.unwrap();
        assert_eq!(status, 200);
        ui.push(t.elapsed().as_secs_f64() * 1000.0);
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
    (median(ui), median(client_side))
}

/// Clients of the dashboard page (issue 5's benchmark), and the pages per second they ask in all.
const UI_CLIENTS: usize = 50;
const UI_RATE: f64 = 250.0;

/// The dashboard's page for namespace `k`: its running pods, newest first, 100, with the total.
fn dashboard_page(k: usize) -> String {
    format!(
        "/api/v1/namespaces/team-{:02}/pods?filter=status.phase%3DRunning&sort=-metadata.creationTimestamp&page=1&pagesize=100",
        k % 50
    )
}

/// `clients` tasks asking for `pages` dashboard pages of vai in all: back to back (`rate:
/// None`), or at `rate` pages/s on a fixed schedule, each page's latency counted from when it
/// was due (a server that falls behind shows it). Latencies in ms, and the pages/s achieved.
async fn concurrent_pages(
    vai: &Vai,
    clients: usize,
    pages: usize,
    rate: Option<f64>,
) -> (Vec<f64>, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = vai.url.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for k in (c..pages).step_by(clients) {
                    let due = match rate {
                        Some(rate) => {
                            let due = started + Duration::from_secs_f64(k as f64 / rate);
                            tokio::time::sleep_until(due.into()).await;
                            due
                        }
                        None => Instant::now(),
                    };
                    let (status, _) = reqwest_like::Client
                        .get(&format!("{url}{}", dashboard_page(k)))
                        .await
                        .unwrap();
                    assert_eq!(status, 200);
                    latencies.push(due.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let achieved = all.len() as f64 / started.elapsed().as_secs_f64();
    (all, achieved)
}

/// The markdown table: one line per comparison, the quiet and the churn phase side by side.
fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | baseline | quiet: vai | baseline | vai / baseline | churn: vai | baseline | vai / baseline | goal |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let cells = |r: Option<&Row>| match r {
        Some(r) => format!(
            "{:.1} {u} | {:.1} {u} | {}{}",
            r.vai,
            r.baseline,
            match r.ratio() {
                ratio if ratio.is_finite() => format!("{ratio:.3}"),
                _ => "–".into(),
            },
            match r.met() {
                Some(true) => " (met)",
                Some(false) => " (**miss**)",
                None => "",
            },
            u = r.unit
        ),
        None => " | | ".into(),
    };
    let quiet = rows.iter().filter(|r| r.phase == Phase::Quiet);
    for (k, q) in quiet.enumerate() {
        // The same comparison in the churn phase is the kth churn row (scenarios run in order).
        let c = rows.iter().filter(|r| r.phase == Phase::Churn).nth(k);
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            q.scenario,
            q.baseline_name,
            cells(Some(q)),
            cells(c),
            q.goal.text()
        );
    }
    out
}

fn report(rows: &[Row], pods: u64, churn: Option<&churn::Stats>, out: &Path) {
    let table = markdown(rows);
    let churn_line = churn.map_or("churn: not run".to_string(), |c| {
        format!(
            "churn: {:.0} changes/s accepted over {:.0} s ({} done, {} failed, {} skipped while {} were in flight)",
            c.rate(),
            c.seconds,
            c.done,
            c.failed,
            c.skipped,
            churn::IN_FLIGHT
        )
    });
    println!("\n{table}\n{churn_line}");
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "phase": r.phase.name(), "scenario": r.scenario, "vai": r.vai, "baseline": r.baseline,
                "baseline_name": r.baseline_name, "unit": r.unit, "ratio": r.ratio(),
                "goal": r.goal.text(), "met": r.met(),
            })
        })
        .collect();
    let churn_json = churn.map(|c| {
        json!({"rate": c.rate(), "seconds": c.seconds, "done": c.done, "failed": c.failed, "skipped": c.skipped})
    });
    std::fs::create_dir_all(out).unwrap();
    let report = json!({"pods": pods, "churn": churn_json, "rows": json_rows});
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("report.md"), format!("{table}\n{churn_line}\n")).unwrap();
    match chart::draw(rows, out) {
        Ok(files) => {
            for f in files {
                println!("chart: {}", f.display());
            }
        }
        Err(e) => println!("charts not drawn: {e}"),
    }
    println!("report: {}", out.join("report.json").display());
}

#[tokio::main]
async fn main() {
    if let Ok(kubeconfig) = std::env::var("VAI_BENCH_REFLECTOR_CHILD") {
        return reflector_child(&kubeconfig).await;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let n = var("VAI_BENCH_PODS").unwrap_or(if full { 100_000 } else { 2_000 });
    let rate = var("VAI_BENCH_CHURN").unwrap_or(if full { 500 } else { 100 });
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/vai-bench");
    std::fs::create_dir_all(&out).unwrap();
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let loaded = load::load(&env, &client, n).await;
    println!(
        "loaded {n} pods (with status) and {} ConfigMaps and Secrets in {:.1} s",
        loaded.others, loaded.seconds
    );
    let mut setup = Setup {
        // The pod garbage collector keeps 12,500 terminated pods, so upstream holds fewer than
        // were loaded (the generator makes a fifth of them Succeeded); each phase counts.
        objects: 0,
        runs: if full { 10 } else { 5 },
        watchers: if full { 1000 } else { 100 },
    };
    let mut rows = Vec::new();
    setup.objects = upstream_objects(&client).await;
    let quiet = run_phase(&env, &client, &out, &setup, Phase::Quiet, &mut rows).await;
    // A run that fails in its churn phase still leaves the quiet phase's report.
    report(&rows, n, None, &out);
    let mut stats = None;
    if rate > 0 {
        let churn = Churn::start(client.clone(), Arc::new(loaded.pods), rate as f64);
        setup.objects = upstream_objects(&client).await;
        let outcome = run_phase(&env, &client, &out, &setup, Phase::Churn, &mut rows).await;
        let done = churn.stop().await;
        println!(
            "under churn: {} upstream LISTs at restart",
            outcome.lists_at_restart
        );
        assert!(done.done > 0, "the churn changed nothing");
        stats = Some(done);
    }
    report(&rows, n, stats.as_ref(), &out);
    if full {
        // The full run reports what it found, misses included, in its table.
        return;
    }
    // The quick run is a test: every scenario ran and measured something (under churn a
    // baseline may have failed every request; vai may not).
    assert!(rows.iter().all(|r| r.vai.is_finite()));
    let quiet_rows = rows.iter().filter(|r| r.phase == Phase::Quiet);
    assert!(
        quiet_rows.clone().count() > 0
            && quiet_rows
                .clone()
                .all(|r| r.baseline > 0.0 || r.unit == "events"),
        "every baseline measured something on a quiet cluster"
    );
    assert!(
        rows.iter()
            .filter(|r| r.unit == "events")
            .all(|r| r.vai == 0.0),
        "every watcher on vai received every probe"
    );
    assert_eq!(
        quiet.lists_at_restart, 0.0,
        "a restart made no LIST upstream"
    );
    assert_eq!(
        quiet.upstream_watches, 0.0,
        "{} downstream watchers opened upstream watches",
        setup.watchers
    );
}

/// Each delivered probe's delay from just before its create upstream to its arrival, in ms.
struct Delays {
    /// At every watcher on vai.
    through_vai: Vec<f64>,
    /// At one watch on the apiserver itself.
    direct: Vec<f64>,
    /// Probe events that never arrived: (at vai's watchers, at the apiserver's watch).
    lost: (usize, usize),
}

/// How long the probes may take to arrive before they count as lost.
const PROBE_DEADLINE: Duration = Duration::from_secs(120);

/// Opens `n` watches on vai, creates probe pods upstream, and returns how many pod watches the
/// apiserver gained while they run, and the probes' delays at vai's watchers and at `upstream`
/// (a watch on the apiserver open since the phase began). Under churn the apiserver may refuse
/// a create; what never arrives is counted as lost, not fatal.
async fn fan_out(
    vai: &Vai,
    client: &kube::Client,
    upstream: &UpstreamWatch,
    n: usize,
    phase: Phase,
) -> (f64, Delays) {
    const PROBES: usize = 5;
    let prefix = format!("{PROBE_PREFIX}{}-", phase.name());
    // From vai's current resource version (vai may trail upstream while churn flows): no
    // initial events, only what happens next.
    let (_, body) = reqwest_like::Client
        .get(&format!(
            "{}/api/v1/namespaces/team-03/pods?limit=1",
            vai.url
        ))
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!(
        "{}/api/v1/namespaces/team-03/pods?watch=1&resourceVersion={rv}&timeoutSeconds={}",
        vai.url,
        PROBE_DEADLINE.as_secs()
    );
    let deadline = tokio::time::Instant::now() + PROBE_DEADLINE;
    let before = apiserver_pod_watches(client).await;
    assert!(before >= 1.0, "vai's own watch on pods is counted upstream");
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, prefix, ready) = (url.clone(), prefix.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut arrivals = vec![None; PROBES];
            let _ = tokio::time::timeout_at(
                deadline,
                watch_probes(&url, &prefix, &mut arrivals, ready),
            )
            .await;
            arrivals
        }));
    }
    for _ in 0..n {
        ready_rx.recv().await.unwrap();
    }
    let watches = apiserver_pod_watches(client).await - before;
    let api: Api<Pod> = Api::namespaced(client.clone(), "team-03");
    let mut started = Vec::new();
    let mut rng = Rng(99);
    let names: Vec<String> = (0..PROBES).map(|k| format!("{prefix}{k}")).collect();
    for (k, name) in names.iter().enumerate() {
        let mut pod = creatable(3 + 50 * (1_000_000 + k as u64), &mut rng);
        pod.metadata.name = Some(name.clone());
        let mut created = None;
        for _attempt in 0..3 {
            let at = Instant::now();
            match api.create(&PostParams::default(), &pod).await {
                Ok(_) => {
                    created = Some(at);
                    break;
                }
                // Already there: an earlier attempt was applied though its answer was lost.
                Err(kube::Error::Api(e)) if e.code == 409 => break,
                Err(e) => println!("probe {k} not created: {e}"),
            }
        }
        started.push(created);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Delays of the probes both created (with a known start) and delivered; the rest are lost.
    let since_create = |arrivals: Vec<Option<Instant>>, lost: &mut usize, into: &mut Vec<f64>| {
        for (at, start) in arrivals.into_iter().zip(&started) {
            match (at, start) {
                (Some(at), Some(start)) => into.push((at - *start).as_secs_f64() * 1000.0),
                (None, Some(_)) => *lost += 1,
                _ => {}
            }
        }
    };
    let (mut through_vai, mut direct, mut lost) = (Vec::new(), Vec::new(), (0, 0));
    for task in tasks {
        since_create(task.await.unwrap(), &mut lost.0, &mut through_vai);
    }
    since_create(
        upstream.arrivals(&names, deadline).await,
        &mut lost.1,
        &mut direct,
    );
    if lost.0 > 0 {
        // Which side lost them: vai's sync (the probe is not stored) or its fan-out.
        let (status, _) = reqwest_like::Client
            .get(&format!(
                "{}/api/v1/namespaces/team-03/pods/{}",
                vai.url, names[0]
            ))
            .await
            .unwrap();
        println!(
            "{} probe events lost at vai's watchers; vai {} the first probe",
            lost.0,
            if status == 200 {
                "holds"
            } else {
                "does not hold"
            }
        );
    }
    (
        watches,
        Delays {
            through_vai,
            direct,
            lost,
        },
    )
}

/// Names of the fan-out's probe pods start so.
const PROBE_PREFIX: &str = "fanout-";

/// One watch on the apiserver's pods in the probes' namespace, open from a phase's start — as
/// long-lived as vai's own watch, so the two go through the same path of the apiserver (a watch
/// opened just before the probes is served its backlog from the watch cache instead, and then
/// sees events sooner than any watch that has been open a while). Records when each probe was
/// first seen; reopened from its last resource version when the apiserver ends it.
struct UpstreamWatch {
    seen: tokio::sync::watch::Receiver<std::collections::HashMap<String, Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl UpstreamWatch {
    async fn open(client: &kube::Client) -> UpstreamWatch {
        let api: Api<Pod> = Api::namespaced(client.clone(), "team-03");
        let list = api
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
            .unwrap();
        let mut rv = list.metadata.resource_version.unwrap();
        let (tx, seen) = tokio::sync::watch::channel(std::collections::HashMap::new());
        let task = tokio::spawn(async move {
            let params = WatchParams::default().timeout(290);
            loop {
                let stream = match api.watch(&params, &rv).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        println!("the apiserver's baseline watch not reopened: {e}");
                        return;
                    }
                };
                let mut stream = stream.boxed();
                while let Some(event) = stream.next().await {
                    let pod = match event {
                        Ok(WatchEvent::Added(pod)) => {
                            let now = Instant::now();
                            if let Some(name) = pod
                                .metadata
                                .name
                                .as_deref()
                                .filter(|n| n.starts_with(PROBE_PREFIX))
                            {
                                tx.send_modify(|seen| {
                                    seen.entry(name.to_string()).or_insert(now);
                                });
                            }
                            pod
                        }
                        Ok(WatchEvent::Modified(pod) | WatchEvent::Deleted(pod)) => pod,
                        Ok(WatchEvent::Bookmark(b)) => {
                            rv = b.metadata.resource_version;
                            continue;
                        }
                        Ok(WatchEvent::Error(e)) => {
                            println!("the apiserver's baseline watch failed: {e}");
                            return;
                        }
                        Err(e) => {
                            println!("the apiserver's baseline watch broke: {e}");
                            break;
                        }
                    };
                    rv = pod.metadata.resource_version.unwrap_or(rv);
                }
            }
        });
        UpstreamWatch { seen, task }
    }

    /// When each named probe arrived, waiting for them until `deadline`.
    async fn arrivals(
        &self,
        names: &[String],
        deadline: tokio::time::Instant,
    ) -> Vec<Option<Instant>> {
        let mut seen = self.seen.clone();
        let _ = tokio::time::timeout_at(
            deadline,
            seen.wait_for(|m| names.iter().all(|n| m.contains_key(n))),
        )
        .await;
        let seen = seen.borrow();
        names.iter().map(|n| seen.get(n).copied()).collect()
    }
}

impl Drop for UpstreamWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which probe a pod's name makes it, if any.
fn probe_index(name: Option<&str>, prefix: &str) -> Option<usize> {
    name?.strip_prefix(prefix)?.parse().ok()
}

/// One downstream watcher: signals when its stream is open, records when each probe arrives,
/// returns when all have or the stream ends.
async fn watch_probes(
    url: &str,
    prefix: &str,
    arrivals: &mut [Option<Instant>],
    ready: tokio::sync::mpsc::Sender<()>,
) {
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
    let mut buffer = Vec::new();
    while arrivals.iter().any(Option::is_none) {
        let Some(Ok(frame)) = body.frame().await else {
            println!("a watch on vai ended before every probe arrived");
            return;
        };
        let now = Instant::now();
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            // Only probe events are read whole.
            if !line.windows(prefix.len()).any(|w| w == prefix.as_bytes()) {
                continue;
            }
            let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
            if let Some(k) = probe_index(event["object"]["metadata"]["name"].as_str(), prefix)
                && event["type"] == "ADDED"
            {
                arrivals[k].get_or_insert(now);
            }
        }
    }
}

/// The apiserver's current long-running WATCH requests on pods.
async fn apiserver_pod_watches(client: &kube::Client) -> f64 {
    let page = apiserver_metrics(client).await.unwrap();
    metric_sum(
        &page,
        "apiserver_longrunning_requests",
        &[r#"verb="WATCH""#, r#"resource="pods""#],
    )
    .expect("the apiserver counts its watches on pods (vai's own is one)")
}

/// LIST requests on pods the apiserver has served.
async fn apiserver_lists(client: &kube::Client) -> f64 {
    let page = apiserver_metrics(client).await.unwrap();
    metric_sum(
        &page,
        "apiserver_request_total",
        &[r#"verb="LIST""#, r#"resource="pods""#],
    )
    .expect("the apiserver counts LISTs of pods (vai's first sync made some)")
}
