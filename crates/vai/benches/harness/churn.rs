//! Churn: a steady, open-loop rate of changes upstream while the scenarios run — mostly updates
//! of loaded pods (an annotation, and every fourth one a label, so selections change too), plus
//! creates and deletes that keep the population steady. Open loop: a change falls due every
//! 1/rate seconds whether or not earlier ones have finished; when `IN_FLIGHT` are already
//! outstanding the due change is counted as skipped, so the report shows the rate the apiserver
//! actually took, never a rate it was assumed to take.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::load::creatable;
use vai_testenv::workload::Rng;

/// Changes outstanding at once, at most.
pub const IN_FLIGHT: usize = 64;

/// What a churn run did.
pub struct Stats {
    /// Changes the apiserver accepted.
    pub done: u64,
    /// Changes it refused or that failed on the way.
    pub failed: u64,
    /// Changes that fell due while `IN_FLIGHT` were outstanding.
    pub skipped: u64,
    /// How long the churn ran.
    pub seconds: f64,
}

impl Stats {
    /// Accepted changes per second.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }
}

/// A running churn; `stop` ends it and returns its counts.
pub struct Churn {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Stats>,
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
}

impl Churn {
    /// Starts changing the `pods` (namespace, name) at `rate` changes per second.
    pub fn start(client: kube::Client, pods: Arc<Vec<(String, String)>>, rate: f64) -> Churn {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let counts = Arc::new(Counts::default());
            let permits = Arc::new(Semaphore::new(IN_FLIGHT));
            let created = Arc::new(Mutex::new(VecDeque::new()));
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let (mut issued, mut skipped) = (0u64, 0u64);
            let mut rng = Rng(0x5eed_c4a2);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                while issued < due {
                    issued += 1;
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        skipped += 1;
                        continue;
                    };
                    let change = Change::pick(issued, &mut rng, &pods, &created);
                    let (client, counts, created) =
                        (client.clone(), counts.clone(), created.clone());
                    tokio::spawn(async move {
                        let counter = match change.apply(client, &created).await {
                            Ok(()) => &counts.done,
                            Err(_) => &counts.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
            }
            // Let what is in flight finish, so the counts are whole.
            let _ = permits.acquire_many(IN_FLIGHT as u32).await;
            Stats {
                done: counts.done.load(Ordering::Relaxed),
                failed: counts.failed.load(Ordering::Relaxed),
                skipped,
                seconds: started.elapsed().as_secs_f64(),
            }
        });
        Churn { stop, task }
    }

    /// Stops issuing changes, waits for those in flight, and returns the counts.
    pub async fn stop(self) -> Stats {
        let _ = self.stop.send(());
        self.task.await.expect("the churn task does not panic")
    }
}

/// One change upstream.
enum Change {
    /// A merge patch of one loaded pod's metadata.
    Update {
        namespace: String,
        name: String,
        patch: serde_json::Value,
    },
    Create(Box<Pod>),
    /// Deletes the oldest pod churn created.
    Delete,
}

impl Change {
    /// Eight in ten changes are updates, one a create, one a delete.
    fn pick(
        k: u64,
        rng: &mut Rng,
        pods: &[(String, String)],
        created: &Mutex<VecDeque<(String, String)>>,
    ) -> Change {
        match k % 10 {
            8 => {
                let mut pod = creatable(rng.next_u64() % 1_000_000, rng);
                pod.metadata.name = Some(format!("churn-{k}"));
                Change::Create(Box::new(pod))
            }
            9 if !created.lock().unwrap().is_empty() => Change::Delete,
            _ => {
                let (namespace, name) = pods[(rng.next_u64() % pods.len() as u64) as usize].clone();
                let mut metadata = json!({"annotations": {"bench.vai.dev/churn": k.to_string()}});
                if k.is_multiple_of(4) {
                    metadata["labels"] =
                        json!({"tier": rng.pick(&["frontend", "backend", "data"])});
                }
                Change::Update {
                    namespace,
                    name,
                    patch: json!({ "metadata": metadata }),
                }
            }
        }
    }

    async fn apply(
        self,
        client: kube::Client,
        created: &Mutex<VecDeque<(String, String)>>,
    ) -> Result<(), kube::Error> {
        match self {
            Change::Update {
                namespace,
                name,
                patch,
            } => {
                Api::<Pod>::namespaced(client, &namespace)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Change::Create(pod) => {
                let namespace = pod.metadata.namespace.clone().expect("a namespaced pod");
                let name = pod.metadata.name.clone().expect("a named pod");
                Api::<Pod>::namespaced(client, &namespace)
                    .create(&PostParams::default(), &pod)
                    .await?;
                created.lock().unwrap().push_back((namespace, name));
            }
            Change::Delete => {
                let Some((namespace, name)) = created.lock().unwrap().pop_front() else {
                    return Ok(());
                };
                Api::<Pod>::namespaced(client, &namespace)
                    .delete(&name, &DeleteParams::default())
                    .await?;
            }
        }
        Ok(())
    }
}
