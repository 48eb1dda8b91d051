//! Watch fan-out: many watchers on vai, probe pods created upstream, and when each probe
//! arrives at every watcher on vai and at one long-lived watch on the apiserver
//! ([`UpstreamWatch`]); meanwhile, how many pod watches the apiserver gained.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use vai_testenv::workload::Rng;

use crate::apiserver;
use crate::http1;
use crate::load::creatable;
use crate::row::Phase;
use crate::vai::Vai;

/// Probe pods created per fan-out.
const PROBES: usize = 5;

/// How long the probes may take to arrive before they count as lost.
const PROBE_DEADLINE: Duration = Duration::from_secs(120);

/// Names of the fan-out's probe pods start so.
const PROBE_PREFIX: &str = "fanout-";

/// What a fan-out saw.
pub struct FanOut {
    /// The apiserver's pod watches just before vai's watchers opened (vai's own among them).
    pub watches_before: f64,
    /// The pod watches the apiserver gained while vai's watchers were open.
    pub watches_added: f64,
    /// The probes' delays.
    pub delays: Delays,
}

/// Each delivered probe's delay from just before its create upstream to its arrival, in ms.
pub struct Delays {
    /// At every watcher on vai.
    pub through_vai: Vec<f64>,
    /// At one watch on the apiserver itself.
    pub direct: Vec<f64>,
    /// Probe events that never arrived: (at vai's watchers, at the apiserver's watch).
    pub lost: (usize, usize),
}

/// Opens `n` watches on vai, creates probe pods upstream, and returns how many pod watches the
/// apiserver had before and gained while they run, and the probes' delays at vai's watchers and
/// at `upstream` (a watch on the apiserver open since the phase began). Under churn the
/// apiserver may refuse a create; what never arrives is counted as lost, not fatal.
pub async fn fan_out(
    vai: &Vai,
    client: &kube::Client,
    upstream: &UpstreamWatch,
    n: usize,
    phase: Phase,
) -> FanOut {
    let prefix = format!("{PROBE_PREFIX}{}-", phase.name());
    // From vai's current resource version (vai may trail upstream while churn flows): no
    // initial events, only what happens next.
    let url = format!(
        "{}/api/v1/namespaces/team-03/pods?watch=1&resourceVersion={}&timeoutSeconds={}",
        vai.url,
        resource_version(vai).await,
        PROBE_DEADLINE.as_secs()
    );
    let deadline = tokio::time::Instant::now() + PROBE_DEADLINE;
    let watches_before = apiserver::pod_watches(client).await;
    assert!(
        watches_before >= 1.0,
        "vai's own watch on pods is counted upstream"
    );
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
    let watches_added = apiserver::pod_watches(client).await - watches_before;
    let names: Vec<String> = (0..PROBES).map(|k| format!("{prefix}{k}")).collect();
    let started = create_probes(client, &names).await;
    let (mut through_vai, mut direct, mut lost) = (Vec::new(), Vec::new(), (0, 0));
    for task in tasks {
        since_create(task.await.unwrap(), &started, &mut lost.0, &mut through_vai);
    }
    let upstream_arrivals = upstream.arrivals(&names, deadline).await;
    since_create(upstream_arrivals, &started, &mut lost.1, &mut direct);
    if lost.0 > 0 {
        tell_where_lost(vai, &names[0], lost.0).await;
    }
    FanOut {
        watches_before,
        watches_added,
        delays: Delays {
            through_vai,
            direct,
            lost,
        },
    }
}

/// vai's current resource version of the probes' namespace's pods.
async fn resource_version(vai: &Vai) -> String {
    let (_, body) = http1::Client
        .get(&format!(
            "{}/api/v1/namespaces/team-03/pods?limit=1",
            vai.url
        ))
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Creates the probe pods upstream, 200 ms apart; when each create was sent (of its last
/// attempt), `None` where none succeeded or it is unknown.
async fn create_probes(client: &kube::Client, names: &[String]) -> Vec<Option<Instant>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "team-03");
    let mut started = Vec::new();
    let mut rng = Rng(99);
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
    started
}

/// Delays of the probes both created (with a known start) and delivered, into `into`; the
/// created ones that never arrived are counted in `lost`.
fn since_create(
    arrivals: Vec<Option<Instant>>,
    started: &[Option<Instant>],
    lost: &mut usize,
    into: &mut Vec<f64>,
) {
    for (at, start) in arrivals.into_iter().zip(started) {
        match (at, start) {
            (Some(at), Some(start)) => into.push((at - *start).as_secs_f64() * 1000.0),
            (None, Some(_)) => *lost += 1,
            _ => {}
        }
    }
}

/// Says which side lost probe events: vai's sync (the probe is not stored) or its fan-out.
async fn tell_where_lost(vai: &Vai, first_probe: &str, lost: usize) {
    let (status, _) = http1::Client
        .get(&format!(
            "{}/api/v1/namespaces/team-03/pods/{first_probe}",
            vai.url
        ))
        .await
        .unwrap();
    println!(
        "{lost} probe events lost at vai's watchers; vai {} the first probe",
        if status == 200 {
            "holds"
        } else {
            "does not hold"
        }
    );
}

/// One watch on the apiserver's pods in the probes' namespace, open from a phase's start — as
/// long-lived as vai's own watch, so the two go through the same path of the apiserver (a watch
/// opened just before the probes is served its backlog from the watch cache instead, and then
/// sees events sooner than any watch that has been open a while). Records when each probe was
/// first seen; reopened from its last resource version when the apiserver ends it.
pub struct UpstreamWatch {
    seen: tokio::sync::watch::Receiver<HashMap<String, Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl UpstreamWatch {
    /// Opens it at the apiserver's current resource version.
    pub async fn open(client: &kube::Client) -> UpstreamWatch {
        let api: Api<Pod> = Api::namespaced(client.clone(), "team-03");
        let list = api
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
            .unwrap();
        let mut rv = list.metadata.resource_version.unwrap();
        let (tx, seen) = tokio::sync::watch::channel(HashMap::new());
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
