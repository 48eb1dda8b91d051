//! Keeps vai's store in step with an upstream kube-apiserver.
//!
//! [`Syncer::start`] runs discovery (which types to cache, and the discovery documents, stored
//! for offline answers), then one list/watch loop per type (`reflector`): an explicit state
//! machine that pages the initial list while already watching from its version, watches with
//! bookmarks, resumes from the resource version persisted in the store after a restart, and on
//! `410 Gone` relists and hands the store a replacement set to swap in atomically. A health probe ([`upstream`]) decides
//! within a bounded time whether upstream answers; while it does not, every type is marked
//! stale and the store keeps serving the last-good data. CRDs created or deleted upstream start
//! or stop their loops, and the fields they declare selectable are declared to the store
//! (`selectable.rs`), which indexes them.
//!
//! This crate talks to upstream and writes to the store; it never serves HTTP.

mod admission;
mod client;
pub mod discovery;
mod error;
mod freshness;
mod identity;
mod metrics;
mod openapi;
mod reflector;
mod replica;
mod selectable;
mod spool;
mod status;
mod tail;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vai_store::Store;

use metrics::Metrics;

pub use client::upstream_client;
pub use discovery::{ResourceInfo, Selection};
pub use error::{Error, one_line};
pub use freshness::Freshness;
pub use status::{Behind, ResourceStatus, StatusBoard};
pub use upstream::UpstreamHealth;

/// Tuning of sync.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Which types to cache.
    pub selection: Selection,
    /// Deadline for upstream to answer a request (headers) and for the health probe.
    pub timeout: Duration,
    /// Deadline for one page of a list.
    pub list_timeout: Duration,
    /// Objects per page of a list (each page one request; memory is bounded by a page).
    pub list_page_size: usize,
    /// Longest silence tolerated on a watch (upstream sends bookmarks about every minute).
    pub idle_timeout: Duration,
    /// Longest a watch is asked to last before it is renewed (each picks between half and all).
    pub watch_timeout: Duration,
    /// How often the health probe asks upstream's `/readyz`.
    pub probe_interval: Duration,
    /// How often discovery is refreshed besides CRD and APIService changes.
    pub rediscovery_interval: Duration,
    /// Also fetch and store the cluster's identity documents (client CA, ServiceAccount
    /// issuer keys) with every discovery, for authenticating callers offline.
    pub identity_documents: bool,
    /// A live type whose store is behind its watch by more than this (events received and
    /// not stored yet) is served as stale (see [`Freshness`]).
    pub max_lag: Duration,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            selection: Selection::default(),
            timeout: Duration::from_secs(5),
            list_timeout: Duration::from_secs(60),
            list_page_size: 500,
            idle_timeout: Duration::from_secs(90),
            watch_timeout: Duration::from_secs(300),
            probe_interval: Duration::from_secs(2),
            rediscovery_interval: Duration::from_secs(300),
            identity_documents: false,
            max_lag: Duration::from_secs(2),
        }
    }
}

/// What the loops share.
struct Shared {
    client: kube::Client,
    store: Store,
    config: SyncConfig,
    health: watch::Sender<UpstreamHealth>,
    status: StatusBoard,
    metrics: Metrics,
    /// The order in which types reconnect.
    admission: Arc<admission::Admission>,
}

/// The running sync of one cluster. Dropping it stops every loop.
#[derive(Clone)]
pub struct Syncer {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    resources: RwLock<HashMap<(String, String, String), ResourceInfo>>,
    loops: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Tasks of the syncer's whole life: the health probe, the role's follower.
    background: Mutex<Vec<JoinHandle<()>>>,
    /// Tasks of the current role: a writer's rediscovery, fields and OpenAPI documents; a
    /// standby's follower of what the writer stores.
    duties: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, task) in self.loops.lock().expect("loops lock").drain() {
            task.abort();
        }
        for task in self.background.lock().expect("background lock").drain(..) {
            task.abort();
        }
        for task in self.duties.lock().expect("duties lock").drain(..) {
            task.abort();
        }
    }
}

/// Aborts the tasks and waits until each has ended.
async fn stop_all(tasks: Vec<JoinHandle<()>>) {
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        // Cancelled, as asked (or it had ended, or panicked: reported where it did).
        let _ = task.await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How long the first fetch of the OpenAPI documents waits for the initial sync at most.
const OPENAPI_WAIT: Duration = Duration::from_secs(300);

/// The CRD and APIService types: changes to them change what upstream serves.
const DISCOVERY_TRIGGERS: [&str; 2] = [selectable::CRDS, "apiregistration.k8s.io/v1/apiservices"];

impl Syncer {
    /// Discovers what to cache (or, with upstream unreachable, takes what the store cached
    /// last time) and starts the loops. Fails only when upstream is unreachable and the store
    /// has never synced. On a store another process writes now (a replica of a shared
    /// database), serves what that writer stores, and syncs once the store takes over.
    pub async fn start(
        client: kube::Client,
        store: Store,
        config: SyncConfig,
        registry: &prometheus::Registry,
    ) -> Result<Syncer, Error> {
        if !store.writes() {
            return Ok(Syncer::standby(client, store, config, registry));
        }
        let (initial, health) =
            match discovery::discover(&client, &store, &config.selection, config.timeout).await {
                Ok(found) => (
                    found,
                    UpstreamHealth {
                        reachable: true,
                        since_ms: now_ms(),
                        last_ok_ms: Some(now_ms()),
                        error: None,
                    },
                ),
                Err(e @ (Error::Store(_) | Error::Status { .. })) => return Err(e),
                Err(e) => match discovery::stored(&store)? {
                    Some(found) => {
                        tracing::warn!(error = %one_line(&e),
                        "cannot reach the cluster; serving the stored data until it answers");
                        (
                            found,
                            UpstreamHealth {
                                reachable: false,
                                since_ms: now_ms(),
                                last_ok_ms: last_contact(&store)?,
                                error: Some(one_line(&e)),
                            },
                        )
                    }
                    None => return Err(Error::NothingToServe(Box::new(e))),
                },
            };
        if config.identity_documents && health.reachable {
            identity::refresh(&client, &store, config.timeout).await?;
        }
        let syncer = Syncer::launch(client, store, config, registry, health);
        syncer.begin_writing(initial);
        syncer.follow_role(true);
        Ok(syncer)
    }

    /// Starts what a writer runs besides its loops: CRDs' fields followed, rediscovery, the
    /// OpenAPI documents once the data is in (their ~7 MB would share a slow link with the
    /// first lists); then the loops of `types`.
    fn begin_writing(&self, types: Vec<ResourceInfo>) {
        let shared = &self.inner.shared;
        let fields = tokio::spawn(selectable::follow(shared.store.clone()));
        let openapi = shared.health.borrow().reachable.then(|| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                while !shared.status.all_synced() && started.elapsed() < OPENAPI_WAIT {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                openapi::refresh(&shared.client, &shared.store, shared.config.timeout).await
            })
        });
        let rediscover = tokio::spawn(rediscover(Arc::downgrade(&self.inner)));
        self.inner
            .duties
            .lock()
            .expect("duties lock")
            .extend([rediscover, fields].into_iter().chain(openapi));
        self.apply(types);
    }

    /// A syncer over a store that another process writes now (a replica on a shared
    /// database): no loops; the types and their states as the writer stored them (see
    /// `replica`); the health probe, for freshness and the proxy. When the store takes over
    /// writing, the syncer starts syncing, from the resource versions stored.
    fn standby(
        client: kube::Client,
        store: Store,
        config: SyncConfig,
        registry: &prometheus::Registry,
    ) -> Syncer {
        let health = UpstreamHealth {
            reachable: true,
            since_ms: now_ms(),
            last_ok_ms: None,
            error: None,
        };
        tracing::info!(store = %store.describe(), "another vai process writes the store; serving what it stores, and taking over when it goes");
        let syncer = Syncer::launch(client, store, config, registry, health);
        syncer.stand_by();
        syncer.follow_role(false);
        syncer
    }

    /// Follows the store's role, if it can change: taking over when it starts writing,
    /// standing by when it stops (`writing`: the role the syncer started in).
    fn follow_role(&self, writing: bool) {
        let Some(changes) = self.inner.shared.store.writer_changes() else {
            return;
        };
        let role = tokio::spawn(follow_role(Arc::downgrade(&self.inner), changes, writing));
        self.inner
            .background
            .lock()
            .expect("background lock")
            .push(role);
    }

    /// The tasks of the current role, taken out (to stop them).
    fn take_duties(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.inner.duties.lock().expect("duties lock"))
    }

    /// The list/watch loops, taken out (to stop them).
    fn take_loops(&self) -> Vec<JoinHandle<()>> {
        self.inner
            .loops
            .lock()
            .expect("loops lock")
            .drain()
            .map(|(_, task)| task)
            .collect()
    }

    /// Stops syncing (its duties and loops) and follows what the writer stores.
    fn stand_by(&self) {
        let duties = self.take_duties();
        let loops = self.take_loops();
        for task in duties.iter().chain(&loops) {
            task.abort();
        }
        let follow = tokio::spawn(replica::follow(Arc::downgrade(&self.inner)));
        self.inner.duties.lock().expect("duties lock").push(follow);
    }

    /// Starts syncing on a store that has just taken over writing: discovery (upstream's, or
    /// the stored one while upstream does not answer), then every loop, resumed from the
    /// versions the last writer stored.
    async fn take_over(&self) {
        let duties = self.take_duties();
        stop_all(duties).await;
        let shared = &self.inner.shared;
        let found = match rediscovery(shared).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %one_line(&e), "discovery failed; syncing the stored types");
                discovery::stored(&shared.store)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }
        };
        let keys: std::collections::HashSet<String> = found.iter().map(|i| i.key()).collect();
        for key in shared.status.all().into_keys() {
            if !keys.contains(&key) {
                shared.status.remove(&key);
            }
        }
        tracing::info!(
            types = found.len(),
            "this replica writes the store now; syncing from the stored versions"
        );
        self.begin_writing(found);
    }

    /// Stops every loop (sync, rediscovery, the health probe) and waits until each has: the
    /// writes they had sent are queued in the store, which [`Store::close`] then finishes. Call
    /// it before closing the store, or a loop mid-write fails on the closed store (and says so
    /// in the log). Idempotent; the syncer serves its status afterwards but syncs nothing.
    pub async fn stop(&self) {
        // The role and rediscovery first, so that neither can start a loop after the loops
        // are taken.
        let background: Vec<_> =
            std::mem::take(&mut *self.inner.background.lock().expect("background lock"));
        stop_all(background).await;
        let duties = self.take_duties();
        stop_all(duties).await;
        let loops = self.take_loops();
        stop_all(loops).await;
    }

    /// Syncs exactly these types: no discovery, no rediscovery (what a program that knows its
    /// types wants, e.g. a controller's reflector). The same loops, resume, relist and health
    /// probe as [`Syncer::start`].
    pub fn start_types(
        client: kube::Client,
        store: Store,
        config: SyncConfig,
        registry: &prometheus::Registry,
        types: Vec<ResourceInfo>,
    ) -> Syncer {
        // Assume upstream answers until the probe says otherwise (within its first interval).
        let health = UpstreamHealth {
            reachable: true,
            since_ms: now_ms(),
            last_ok_ms: None,
            error: None,
        };
        let syncer = Syncer::launch(client, store, config, registry, health);
        syncer.apply(types);
        syncer
    }

    /// A handle over what `store` holds of `types`, with no upstream: no loops and no probe.
    /// Upstream counts as unreachable (reads are answered from the store and marked stale,
    /// writes get `503`); a type is synced if the store holds a list of it. For serving a
    /// database without its cluster, and for testing the server in-process.
    pub fn detached(store: Store, types: Vec<ResourceInfo>) -> Result<Syncer, Error> {
        let health = UpstreamHealth {
            reachable: false,
            since_ms: now_ms(),
            last_ok_ms: last_contact(&store)?,
            error: Some("vai runs without an upstream".into()),
        };
        let client = kube::Client::new(
            tower::service_fn(|_: http::Request<kube::client::Body>| async {
                Err::<http::Response<kube::client::Body>, _>(Error::Detached)
            }),
            "default",
        );
        let (health, _) = watch::channel(health);
        let syncer = Syncer {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    client,
                    store,
                    config: SyncConfig::default(),
                    health,
                    status: StatusBoard::default(),
                    metrics: Metrics::new(&prometheus::Registry::new()),
                    admission: admission::Admission::new(admission::IN_FLIGHT),
                }),
                resources: RwLock::new(HashMap::new()),
                loops: Mutex::new(HashMap::new()),
                background: Mutex::new(Vec::new()),
                duties: Mutex::new(Vec::new()),
            }),
        };
        syncer.index(&types);
        let synced = syncer.inner.shared.store.resource_states()?;
        for info in types {
            let key = info.key();
            syncer.inner.shared.status.add(&key);
            let state = synced.iter().find(|s| s.resource == key);
            if let Some(state) = state.filter(|s| s.list_resource_version.is_some()) {
                syncer.inner.shared.status.mark_synced(&key);
                syncer
                    .inner
                    .shared
                    .status
                    .set(&key, state.state, state.last_error.clone());
            }
        }
        Ok(syncer)
    }

    fn launch(
        client: kube::Client,
        store: Store,
        config: SyncConfig,
        registry: &prometheus::Registry,
        health: UpstreamHealth,
    ) -> Syncer {
        let (health, _) = watch::channel(health);
        let shared = Arc::new(Shared {
            client: client.clone(),
            store,
            config: config.clone(),
            health,
            status: StatusBoard::default(),
            metrics: Metrics::new(registry),
            admission: admission::Admission::new(admission::IN_FLIGHT),
        });
        let syncer = Syncer {
            inner: Arc::new(Inner {
                shared: shared.clone(),
                resources: RwLock::new(HashMap::new()),
                loops: Mutex::new(HashMap::new()),
                background: Mutex::new(Vec::new()),
                duties: Mutex::new(Vec::new()),
            }),
        };
        let probe = tokio::spawn(upstream::probe(
            client,
            shared.health.clone(),
            config.probe_interval,
            config.timeout,
        ));
        syncer
            .inner
            .background
            .lock()
            .expect("background lock")
            .push(probe);
        syncer
    }

    /// Starts loops for new types and stops those of types that went away.
    fn apply(&self, found: Vec<ResourceInfo>) {
        let mut loops = self.inner.loops.lock().expect("loops lock");
        let keys: std::collections::HashSet<String> = found.iter().map(|i| i.key()).collect();
        loops.retain(|key, task| {
            let keep = keys.contains(key);
            if !keep {
                tracing::info!(resource = %key, "no longer served upstream; its cache stops");
                task.abort();
                self.inner.shared.status.remove(key);
            }
            keep
        });
        self.index(&found);
        // A type the store has listed before is served from the moment it is known (its loop
        // resumes it), not only once its loop has started.
        let listed: std::collections::HashSet<String> = match self
            .inner
            .shared
            .store
            .resource_states()
        {
            Ok(states) => states
                .into_iter()
                .filter(|s| s.list_resource_version.is_some())
                .map(|s| s.resource)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %one_line(&e), "cannot read which types the store has listed");
                Default::default()
            }
        };
        for info in found {
            if let std::collections::hash_map::Entry::Vacant(slot) = loops.entry(info.key()) {
                tracing::debug!(resource = %slot.key(), "starting its list/watch loop");
                self.inner.shared.status.add(slot.key());
                if listed.contains(slot.key()) {
                    self.inner.shared.status.mark_synced(slot.key());
                }
                slot.insert(tokio::spawn(reflector::run(
                    self.inner.shared.clone(),
                    info,
                )));
            }
        }
    }

    /// Makes `types` the cached types that [`Syncer::resolve`] finds.
    fn index(&self, types: &[ResourceInfo]) {
        let mut resources = self.inner.resources.write().expect("resources lock");
        resources.clear();
        for info in types {
            let at = (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            );
            resources.insert(at, info.clone());
        }
    }

    /// The cached types.
    pub fn resources(&self) -> Vec<ResourceInfo> {
        let mut all: Vec<_> = self
            .inner
            .resources
            .read()
            .expect("resources lock")
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|i| i.key());
        all
    }

    /// The cached type at a group, version and plural name, if it is cached.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        self.inner
            .resources
            .read()
            .expect("resources lock")
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Live sync status per type.
    pub fn status(&self) -> &StatusBoard {
        &self.inner.shared.status
    }

    /// Upstream's health, as the probe sees it.
    pub fn health(&self) -> watch::Receiver<UpstreamHealth> {
        self.inner.shared.health.subscribe()
    }

    /// The client for upstream (for the server's proxy).
    pub fn client(&self) -> &kube::Client {
        &self.inner.shared.client
    }

    /// The store the loops write.
    pub fn store(&self) -> &Store {
        &self.inner.shared.store
    }

    /// Every cached type has completed a list (or resumed) once.
    pub fn ready(&self) -> bool {
        self.inner.shared.status.all_synced()
    }

    /// Whether the store holds a whole set of the type with store key `key` (listed since
    /// start, or listed before and resumed): what may be served from the cache.
    pub fn synced(&self, key: &str) -> bool {
        self.inner.shared.status.get(key).is_some_and(|s| s.synced)
    }

    /// Notes that a client read the type with store key `key` now: after an outage, the types
    /// read most recently reconnect first.
    pub fn note_read(&self, key: &str) {
        self.inner.shared.status.set_read(key, now_ms());
    }

    /// The freshness of the data of the type with store key `key`.
    pub fn freshness(&self, key: &str) -> Freshness {
        let health = self.inner.shared.health.borrow().clone();
        self.freshness_of(&health, self.inner.shared.status.get(key).as_ref())
    }

    /// The freshness of a type with this status, now, upstream's health being `health` (for
    /// a caller that reads the board once for many types).
    pub fn freshness_of(
        &self,
        health: &UpstreamHealth,
        status: Option<&ResourceStatus>,
    ) -> Freshness {
        Freshness::of(health, status, now_ms(), self.inner.shared.config.max_lag)
    }
}

/// The last time any type's sync heard from upstream, as the store recorded it.
fn last_contact(store: &Store) -> Result<Option<i64>, Error> {
    Ok(store
        .resource_states()?
        .iter()
        .filter_map(|s| s.last_contact_ms)
        .max())
}

/// Discovery of a running syncer: the types upstream serves now (their documents stored), and
/// the identity documents refreshed when they are kept (a failure there is logged: discovery
/// stands).
async fn rediscovery(shared: &Shared) -> Result<Vec<ResourceInfo>, Error> {
    let found = discovery::discover(
        &shared.client,
        &shared.store,
        &shared.config.selection,
        shared.config.timeout,
    )
    .await?;
    if shared.config.identity_documents
        && let Err(e) =
            identity::refresh(&shared.client, &shared.store, shared.config.timeout).await
    {
        tracing::warn!(error = %one_line(&e), "cannot store the identity documents");
    }
    Ok(found)
}

/// Takes over or stands by as the store's role changes (from `writing`, the role the syncer
/// is in); stops when the syncer is dropped.
async fn follow_role(
    inner: std::sync::Weak<Inner>,
    mut changes: watch::Receiver<bool>,
    mut writing: bool,
) {
    loop {
        let writes = *changes.borrow_and_update();
        if writes == writing {
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        }
        writing = writes;
        let Some(inner) = inner.upgrade() else { return };
        let syncer = Syncer { inner };
        if writes {
            syncer.take_over().await;
        } else {
            tracing::warn!(
                "this replica no longer writes the store; serving what the writer stores"
            );
            syncer.stand_by();
        }
    }
}

/// Refreshes discovery when CRDs or APIServices change, when upstream comes back, and
/// periodically; stops when the syncer is dropped.
async fn rediscover(inner: std::sync::Weak<Inner>) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let mut events = strong.shared.store.subscribe();
    let mut health = strong.shared.health.subscribe();
    let interval = strong.shared.config.rediscovery_interval;
    drop(strong);
    loop {
        let trigger = tokio::select! {
            received = events.recv() => match received {
                Ok(batch) => batch.iter().any(|e| {
                    e.kind != vai_store::EventKind::Bookmark
                        && DISCOVERY_TRIGGERS.contains(&&*e.resource)
                }),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            changed = health.changed() => {
                if changed.is_err() { return; }
                health.borrow_and_update().reachable
            }
            _ = tokio::time::sleep(interval) => true,
        };
        if !trigger {
            continue;
        }
        // Upstream publishes a new CRD's group a moment after the CRD appears: look twice.
        for delay in [Duration::from_secs(1), Duration::from_secs(4)] {
            tokio::time::sleep(delay).await;
            let Some(inner) = inner.upgrade() else { return };
            let shared = &inner.shared;
            match rediscovery(shared).await {
                Ok(found) => {
                    openapi::refresh(&shared.client, &shared.store, shared.config.timeout).await;
                    Syncer { inner }.apply(found)
                }
                Err(e) => {
                    tracing::warn!(error = %one_line(&e), "rediscovery failed; keeping the cached types")
                }
            }
        }
        // Events that arrived meanwhile were covered by the second look.
        events = events.resubscribe();
    }
}
