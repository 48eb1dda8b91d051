//! The baselines vai is measured against: the apiserver asked the same request, alternating
//! with vai ([`side_by_side`]); a bare paginated download of everything ([`paginated_download`]);
//! and kube-runtime's in-memory reflector in a process of its own ([`reflector`], which runs
//! this same binary as [`reflector_child`]).

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use vai_testenv::TestEnv;
use vai_testenv::measure::rss_mb;

use crate::http1;
use crate::stats::median;
use crate::vai::Vai;

/// Set to the kubeconfig's path, it makes this binary the reflector baseline's child.
pub const REFLECTOR_CHILD: &str = "VAI_BENCH_REFLECTOR_CHILD";

/// A baseline that failed this often in a row is not asked again in that scenario (under churn
/// each of the apiserver's failed full lists took minutes: ten of them were a third of the run).
const BASELINE_FAILURES: usize = 2;

/// Times `runs` requests of `path` against vai and the apiserver, alternating; medians in ms.
pub async fn side_by_side(
    vai: &Vai,
    upstream: &kube::Client,
    path: &str,
    runs: usize,
) -> (f64, f64) {
    let http = http1::Client;
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
pub async fn reflector_child(kubeconfig: &str) -> ! {
    let client = client_from(kubeconfig).await;
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

/// What a kube-runtime reflector can hold: a built-in type.
pub trait Reflectable:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Reflectable for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A kube-runtime reflector of every `K`, running; its store.
fn reflect<K: Reflectable>(client: &kube::Client) -> kube::runtime::reflector::Store<K> {
    reflect_seeing(client, |_| {})
}

/// A kube-runtime reflector of every `K`, running, that shows `seen` each event it applies;
/// its store.
pub fn reflect_seeing<K: Reflectable>(
    client: &kube::Client,
    mut seen: impl FnMut(&kube::runtime::watcher::Event<K>) + Send + 'static,
) -> kube::runtime::reflector::Store<K> {
    let (store, writer) = kube::runtime::reflector::store::<K>();
    let watcher = kube::runtime::watcher(Api::<K>::all(client.clone()), Default::default());
    tokio::spawn(
        kube::runtime::reflector(writer, watcher).for_each(move |event| {
            if let Ok(event) = &event {
                seen(event);
            }
            async {}
        }),
    );
    store
}

/// A client for the cluster `kubeconfig` names (a reflector child's).
pub async fn client_from(kubeconfig: &str) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// How long the reflector baseline may take to its first complete state (under churn at
/// 100,000 pods its paged lists outlive etcd's compaction and it starts over, again and again).
const REFLECTOR_DEADLINE: Duration = Duration::from_secs(300);

/// The reflector baseline's outcome.
pub struct Reflected {
    /// Seconds to its first complete state (or to the deadline).
    pub seconds: f64,
    /// Its resident memory then.
    pub rss_mb: f64,
    /// Objects it held then.
    pub held: u64,
    /// Whether it reached a complete state within [`REFLECTOR_DEADLINE`].
    pub synced: bool,
}

/// Runs the reflector baseline in a process of its own.
pub fn reflector(env: &TestEnv) -> Reflected {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(REFLECTOR_CHILD, env.kubeconfig_path())
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
pub async fn paginated_download(client: &kube::Client) -> (f64, usize) {
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
