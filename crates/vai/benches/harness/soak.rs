//! The soak (scenario 9, churn phase): 200 clients — namespace lists, selective lists, gets and
//! 100 watches — for a stated time while churn flows, pointed at vai and then, the same
//! clients, at the apiserver directly. What it counts: failed requests, the watches' lost
//! events (against reference watches on the apiserver), vai's resident memory over the run,
//! and the CPU seconds the apiserver's process spent with vai in front and without.
//!
//! The clients are kube-rs clients, so the two runs differ only in where they point. Each
//! request client asks once every [`PERIOD`] (50 requests a second in all, so that the
//! machine's two cores are not what is measured); a watch reopens from the last version it
//! saw when its stream ends, and lists again after a `410`, as a reflector does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

/// Namespace lists (a page of 100, as kubectl's chunked list asks), selective lists (a label
/// in one namespace), gets (ConfigMaps, which the churn leaves alone), and watches (pods of
/// one of [`WATCHED_NAMESPACES`] namespaces each).
const LISTS: usize = 40;
const SELECTIVE: usize = 30;
const GETS: usize = 30;
pub const WATCHES: usize = 100;
/// Clients in all.
pub const CLIENTS: usize = LISTS + SELECTIVE + GETS + WATCHES;
/// Namespaces the watches spread over; each has a reference watch on the apiserver.
const WATCHED_NAMESPACES: usize = 4;
/// How often each request client asks.
const PERIOD: Duration = Duration::from_secs(2);
/// How long a watch may take, once the clients stop, to reach the last event its reference
/// watch had seen (else what it has not received counts as lost).
const CATCH_UP: Duration = Duration::from_secs(60);

/// What one run of the clients saw.
pub struct Soaked {
    /// Requests answered, and those that failed (an error status or a broken connection).
    pub requests: usize,
    pub errors: usize,
    /// The first failure, for the log.
    pub first_error: Option<String>,
    /// Request latencies, ms.
    pub latencies: Vec<f64>,
    /// Events the watches did not receive that their namespace's reference watch did.
    pub lost: usize,
    /// Events the watches received in all (a baseline for `lost`).
    pub delivered: usize,
    /// Times a watch had to list again (a `410`).
    pub relists: usize,
    /// CPU seconds of the apiserver's process during the run.
    pub apiserver_cpu: f64,
    /// Resident memory of the process the clients pointed at, if vai (MB, mean of the run's
    /// second tenth and of its last tenth): all of it, and its anonymous part (`RssAnon`,
    /// without the file pages its reader connections map).
    pub rss: Option<(f64, f64)>,
    pub rss_anon: Option<(f64, f64)>,
}

/// CPU seconds (user and system) a process has used so far; 0 if unreadable.
pub fn cpu_seconds(pid: i32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is the first, utime the 12th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs the clients against `target` for `duration`, with `upstream` (the apiserver) for the
/// reference watches; `config_maps` ConfigMaps `settings-NNNNNN` exist (see `load`);
/// `apiserver_pid` is measured, and `rss_pid` (vai) sampled when given.
pub async fn soak(
    target: kube::Client,
    upstream: &kube::Client,
    duration: Duration,
    config_maps: u64,
    apiserver_pid: i32,
    rss_pid: Option<u32>,
) -> Soaked {
    let namespaces: Vec<String> = (0..WATCHED_NAMESPACES)
        .map(|k| format!("team-{:02}", 10 + k))
        .collect();
    // Reference watches first, so that they have everything the soak's watches can see.
    let mut references = Vec::new();
    for ns in &namespaces {
        references.push(Recorder::start(Api::namespaced(upstream.clone(), ns)).await);
    }
    let cpu_before = cpu_seconds(apiserver_pid);
    let started = Instant::now();
    let end = started + duration;
    let outcome = Arc::new(Mutex::new(Requests::default()));
    let mut tasks = Vec::new();
    for k in 0..LISTS + SELECTIVE + GETS {
        let path = if k < LISTS {
            format!("/api/v1/namespaces/team-{:02}/pods?limit=100", k % 50)
        } else if k < LISTS + SELECTIVE {
            format!(
                "/api/v1/namespaces/team-{:02}/pods?labelSelector=tier%3Dbackend&limit=100",
                k % 50
            )
        } else {
            let i = (k as u64 * 7919) % config_maps.max(1);
            format!(
                "/api/v1/namespaces/team-{:02}/configmaps/settings-{i:06}",
                i % 50
            )
        };
        let (client, outcome) = (target.clone(), outcome.clone());
        // Spread over the period, so that the requests do not come in waves.
        let first = started + PERIOD.mul_f64(k as f64 / (LISTS + SELECTIVE + GETS) as f64);
        tasks.push(tokio::spawn(async move {
            let mut due = first;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                due += PERIOD;
                let t = Instant::now();
                let asked = client
                    .request_text(http::Request::get(&path).body(Vec::new()).unwrap())
                    .await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let mut outcome = outcome.lock().unwrap();
                match asked {
                    Ok(_) => outcome.latencies.push(ms),
                    Err(e) => {
                        outcome.errors += 1;
                        outcome
                            .first_error
                            .get_or_insert_with(|| format!("GET {path}: {e}"));
                    }
                }
            }
        }));
    }
    let mut watches = Vec::new();
    for k in 0..WATCHES {
        let ns = &namespaces[k % WATCHED_NAMESPACES];
        watches.push((
            k % WATCHED_NAMESPACES,
            Recorder::start(Api::namespaced(target.clone(), ns)).await,
        ));
    }
    // vai's memory, once a second.
    let rss_samples = rss_pid.map(|pid| {
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < end {
                samples.push((
                    started.elapsed().as_secs_f64(),
                    vai_testenv::measure::rss_mb(pid),
                    vai_testenv::measure::rss_anon_mb(pid),
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples
        })
    });
    for task in tasks {
        task.await.unwrap();
    }
    let apiserver_cpu = cpu_seconds(apiserver_pid) - cpu_before;
    let (rss, rss_anon) = match rss_samples {
        Some(task) => {
            let samples = task.await.unwrap();
            let (total, tenth) = (duration.as_secs_f64(), duration.as_secs_f64() / 10.0);
            // The mean of one measure over the run's second tenth and over its last.
            let windows = |measure: fn(&(f64, f64, f64)) -> f64| {
                let mean = |from: f64, to: f64| {
                    let within: Vec<f64> = samples
                        .iter()
                        .filter(|s| s.0 >= from && s.0 < to)
                        .map(measure)
                        .collect();
                    within.iter().sum::<f64>() / within.len().max(1) as f64
                };
                (mean(tenth, 2.0 * tenth), mean(total - tenth, total))
            };
            (Some(windows(|s| s.1)), Some(windows(|s| s.2)))
        }
        None => (None, None),
    };
    // What each namespace's reference had seen when the clients stopped: every watch of that
    // namespace must receive all of it after the version it started from.
    let wanted: Vec<BTreeSet<u64>> = references.iter().map(Recorder::seen).collect();
    let caught_up_by = Instant::now() + CATCH_UP;
    let mut lost = 0;
    let mut delivered = 0;
    let mut relists = 0;
    for (ns, watch) in &watches {
        let want: Vec<u64> = wanted[*ns].range(watch.from + 1..).copied().collect();
        if let Some(last) = want.last() {
            watch.wait_past(*last, caught_up_by).await;
        }
        let seen = watch.seen();
        delivered += seen.len();
        lost += want.iter().filter(|rv| !seen.contains(rv)).count();
        relists += watch.relists();
    }
    let requests = outcome.lock().unwrap();
    Soaked {
        requests: requests.latencies.len() + requests.errors,
        errors: requests.errors,
        first_error: requests.first_error.clone(),
        latencies: requests.latencies.clone(),
        lost,
        delivered,
        relists,
        apiserver_cpu,
        rss,
        rss_anon,
    }
}

/// The request clients' shared tally.
#[derive(Default)]
struct Requests {
    latencies: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

/// A watch of one namespace's pods that records the resource version of every event it
/// receives, reopening from the last one when its stream ends and listing again after a
/// `410` (the events missed then are counted as lost, as they are).
struct Recorder {
    /// The version it started after.
    from: u64,
    state: tokio::sync::watch::Receiver<Recorded>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default, Clone)]
struct Recorded {
    seen: BTreeSet<u64>,
    /// The newest version reached (events and bookmarks).
    reached: u64,
    relists: usize,
}

impl Recorder {
    async fn start(api: Api<Pod>) -> Recorder {
        let from = listed_version(&api).await;
        let (tx, state) = tokio::sync::watch::channel(Recorded {
            reached: from,
            ..Recorded::default()
        });
        let task = tokio::spawn(async move {
            let params = WatchParams::default().timeout(290);
            let mut rv = from;
            loop {
                let mut stream = match api.watch(&params, &rv.to_string()).await {
                    Ok(stream) => stream.boxed(),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                while let Some(event) = stream.next().await {
                    let (object_rv, bookmark) = match event {
                        Ok(
                            WatchEvent::Added(pod)
                            | WatchEvent::Modified(pod)
                            | WatchEvent::Deleted(pod),
                        ) => (pod.metadata.resource_version, false),
                        Ok(WatchEvent::Bookmark(b)) => (Some(b.metadata.resource_version), true),
                        Ok(WatchEvent::Error(e)) if e.code == 410 => {
                            rv = listed_version(&api).await;
                            tx.send_modify(|r| {
                                r.relists += 1;
                                r.reached = r.reached.max(rv);
                            });
                            break;
                        }
                        Ok(WatchEvent::Error(_)) | Err(_) => break,
                    };
                    let Some(at) = object_rv.and_then(|v| v.parse::<u64>().ok()) else {
                        continue;
                    };
                    rv = rv.max(at);
                    tx.send_modify(|r| {
                        if !bookmark {
                            r.seen.insert(at);
                        }
                        r.reached = r.reached.max(at);
                    });
                }
            }
        });
        Recorder { from, state, task }
    }

    fn seen(&self) -> BTreeSet<u64> {
        self.state.borrow().seen.clone()
    }

    fn relists(&self) -> usize {
        self.state.borrow().relists
    }

    /// Waits until it has reached `rv`, or `deadline`.
    async fn wait_past(&self, rv: u64, deadline: Instant) {
        let mut state = self.state.clone();
        let _ = tokio::time::timeout_at(deadline.into(), state.wait_for(|r| r.reached >= rv)).await;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The resource version of a list of `api`'s pods (one item asked for), retried until answered.
async fn listed_version(api: &Api<Pod>) -> u64 {
    loop {
        if let Ok(list) = api.list_metadata(&ListParams::default().limit(1)).await
            && let Some(rv) = list.metadata.resource_version.and_then(|v| v.parse().ok())
        {
            return rv;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A kube-rs client for vai at `url` (plain HTTP on loopback, no credentials).
pub fn client_for(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

/// The p50 and p99 of request latencies (NaN without samples).
pub fn p50_p99(latencies: &[f64]) -> (f64, f64) {
    if latencies.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (
        crate::stats::percentile(latencies, 0.5),
        crate::stats::percentile(latencies, 0.99),
    )
}
