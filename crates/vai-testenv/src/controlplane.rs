//! One control plane in one directory: etcd, kube-apiserver and kube-controller-manager as real
//! processes on loopback, with their pid files, logs, credentials and kubeconfig kept in the
//! directory.
//!
//! The directory is the whole state. `up` starts whatever is not running and keeps etcd's data,
//! so a test (or a script) can kill one process and bring it back at the same address. Processes
//! are started in their own process group, so they outlive the command that started them; `down`
//! (or [`crate::TestEnv`]'s drop) is what stops them. This module never deletes etcd's data.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::binaries::Binaries;
use crate::pki::{Pki, write_private};
use crate::{Error, Result};

/// How long `up` waits for `/readyz` before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A process of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The etcd server holding the cluster's data.
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager: namespace deletion, garbage collection, service-account tokens.
    ControllerManager,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Component; 3] = [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
    ];

    /// The component's process name (also its pid and log file stem).
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
        }
    }
}

/// The loopback ports chosen the first time a directory was brought up; kept in `ports.json` so
/// that restarted processes come back at the same addresses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
}

impl Ports {
    fn load_or_allocate(dir: &Path) -> Result<Ports> {
        let path = dir.join("ports.json");
        if let Ok(bytes) = fs::read(&path) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())));
        }
        let ports = Ports {
            etcd_client: free_port(&[])?,
            etcd_peer: 0,
            apiserver: 0,
        };
        let ports = Ports {
            etcd_peer: free_port(&[ports.etcd_client])?,
            ..ports
        };
        let ports = Ports {
            apiserver: free_port(&[ports.etcd_client, ports.etcd_peer])?,
            ..ports
        };
        let json = serde_json::to_vec_pretty(&ports).expect("ports serialise");
        write_private(&path, &json)?;
        Ok(ports)
    }
}

/// A free loopback port below Linux's ephemeral range (32768+). Ports from the ephemeral range
/// can be taken, between our check and the server's bind, by any outgoing connection — such as
/// another test environment's apiserver connecting to its etcd.
pub(crate) fn free_port(taken: &[u16]) -> Result<u16> {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    for attempt in 0u32..1000 {
        let port = 20_000 + (random.hash_one(attempt) % 12_000) as u16;
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Config("no free loopback port in 20000-31999".into()))
}

/// A control plane rooted in a directory. See the module docs.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    binaries: Binaries,
    ports: Ports,
    pki: Pki,
    /// Processes this value started, so they can be reaped (a killed child stays a zombie, and
    /// looks alive, until its parent waits for it).
    children: Mutex<HashMap<Component, Child>>,
}

impl ControlPlane {
    /// Prepares `dir` (credentials, ports, kubeconfig) without starting anything.
    pub fn open(dir: &Path, binaries: Binaries) -> Result<ControlPlane> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let pki = Pki::ensure(&dir)?;
        let ports = Ports::load_or_allocate(&dir)?;
        let plane = ControlPlane {
            dir,
            binaries,
            ports,
            pki,
            children: Mutex::new(HashMap::new()),
        };
        plane.write_kubeconfig()?;
        Ok(plane)
    }

    /// The directory holding this control plane's state, logs and kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The binaries this control plane runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// Path of the admin kubeconfig (`DIR/kubeconfig`).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The apiserver's URL, e.g. `https://127.0.0.1:40123`.
    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    /// etcd's client URL (plain HTTP on loopback).
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.etcd_client)
    }

    /// The apiserver's audit log (every request at `Metadata`, one JSON event per line).
    pub fn audit_log_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The credentials of this control plane.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.pki.admin_token
    }

    /// Path of a component's log file.
    pub fn log_path(&self, component: Component) -> PathBuf {
        self.dir.join(format!("{}.log", component.name()))
    }

    fn pid_path(&self, component: Component) -> PathBuf {
        self.dir.join(format!("{}.pid", component.name()))
    }

    fn binary(&self, component: Component) -> PathBuf {
        match component {
            Component::Etcd => self.binaries.etcd(),
            Component::ApiServer => self.binaries.kube_apiserver(),
            Component::ControllerManager => self.binaries.kube_controller_manager(),
        }
    }

    /// The pid of a component if it is running (a stopped — SIGSTOPped — process counts as
    /// running, and so does one still exiting; a zombie or a reused pid does not).
    pub fn pid(&self, component: Component) -> Option<Pid> {
        if let Some(pid) = self.own_child(component) {
            return pid;
        }
        let text = fs::read_to_string(self.pid_path(component)).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state letter follows the parenthesised command name, which may contain spaces.
        let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
        // A zombie main thread with other threads still in /proc/<pid>/task is a process that
        // is still exiting: it may still hold its listening socket, so it counts as running.
        let threads = fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        if matches!(state, 'Z' | 'X') && threads <= 1 {
            return None;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmdline.split(|b| *b == 0).next()?;
        (argv0 == self.binary(component).as_os_str().as_encoded_bytes()).then(|| Pid::from_raw(pid))
    }

    /// For a process this value started: `Some(Some(pid))` while it runs, `Some(None)` once
    /// it has exited (and is reaped). `None` if it is not our child. A child is only gone
    /// when `wait` says so: `/proc` shows a multi-threaded process whose main thread exited as
    /// a zombie while its other threads are still writing their last log lines.
    fn own_child(&self, component: Component) -> Option<Option<Pid>> {
        let mut children = self.children.lock().expect("children lock");
        let child = children.get_mut(&component)?;
        match child.try_wait() {
            Ok(None) => Some(Some(Pid::from_raw(child.id() as i32))),
            _ => {
                children.remove(&component);
                Some(None)
            }
        }
    }

    /// Starts every component that is not running and waits until the apiserver is ready.
    /// Returns the components it started.
    pub async fn up(&self) -> Result<Vec<Component>> {
        let mut started = Vec::new();
        for component in [Component::Etcd, Component::ApiServer] {
            if self.pid(component).is_none() {
                self.start(component)?;
                started.push(component);
            }
        }
        self.wait_ready(READY_TIMEOUT).await?;
        // The controller manager needs a ready apiserver; starting it earlier only adds noise.
        if self.pid(Component::ControllerManager).is_none() {
            self.start(Component::ControllerManager)?;
            started.push(Component::ControllerManager);
        }
        Ok(started)
    }

    /// Stops every component (controller manager first, etcd last). etcd's data stays.
    pub fn down(&self) -> Result<()> {
        for component in Component::ALL.into_iter().rev() {
            self.stop(component)?;
        }
        Ok(())
    }

    /// The loopback ports a component listens on.
    fn ports_of(&self, component: Component) -> Vec<u16> {
        match component {
            Component::Etcd => vec![self.ports.etcd_client, self.ports.etcd_peer],
            Component::ApiServer => vec![self.ports.apiserver],
            Component::ControllerManager => vec![],
        }
    }

    /// Starts one component in its own process group, logging to `DIR/<name>.log`.
    ///
    /// Waits first (up to 10 s) for its ports to be free: a killed predecessor's socket can
    /// outlive the moment its pid stops looking alive, and a bind failure would only show up as
    /// an exited process.
    pub fn start(&self, component: Component) -> Result<()> {
        for port in self.ports_of(component) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpListener::bind(("127.0.0.1", port)).is_err() {
                if Instant::now() >= deadline {
                    return Err(Error::Config(format!(
                        "port {port} of {} is still taken after 10 s (see `ss -ltnp sport = :{port}`)",
                        component.name()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let mut command = Command::new(self.binary(component));
        command.args(self.args(component)).current_dir(&self.dir);
        let child = spawn_logged(command, &self.log_path(component))?;
        write_private(&self.pid_path(component), child.id().to_string().as_bytes())?;
        self.children
            .lock()
            .expect("children lock")
            .insert(component, child);
        Ok(())
    }

    /// Stops one component: SIGTERM (and SIGCONT, in case it is paused), then SIGKILL after a
    /// grace period. Does nothing if it is not running.
    pub fn stop(&self, component: Component) -> Result<()> {
        if let Some(pid) = self.pid(component) {
            let _ = kill(pid, Signal::SIGTERM);
            let _ = kill(pid, Signal::SIGCONT);
            let deadline = Instant::now() + STOP_GRACE;
            while self.pid(component).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.pid(component).is_some() {
                let _ = kill(pid, Signal::SIGKILL);
                while self.pid(component).is_some() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let pid_path = self.pid_path(component);
        match fs::remove_file(&pid_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&pid_path, e)),
            _ => Ok(()),
        }
    }

    /// Sends a signal to a running component (SIGSTOP to pause, SIGCONT to resume, SIGKILL to
    /// crash it) and returns once it has taken effect: every thread stopped, none stopped, or
    /// the process gone.
    pub fn signal(&self, component: Component, signal: Signal) -> Result<()> {
        let pid = self
            .pid(component)
            .ok_or_else(|| Error::NotRunning(component.name()))?;
        kill(pid, signal).map_err(|e| Error::io(&self.pid_path(component), e.into()))?;
        // Signals are delivered asynchronously: wait for their effect, so that a test that
        // pauses the apiserver and sends a request right after cannot be answered by a thread
        // that had not stopped yet.
        let deadline = Instant::now() + Duration::from_secs(10);
        let settled = |pid: Pid| match signal {
            Signal::SIGKILL => self.pid(component).is_none(),
            Signal::SIGSTOP => thread_states(pid).iter().all(|s| matches!(s, 'T' | 't')),
            Signal::SIGCONT => !thread_states(pid).iter().any(|s| matches!(s, 'T' | 't')),
            _ => true,
        };
        while !settled(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Waits until the apiserver answers `/readyz` with `ok`; fails at once if etcd or the
    /// apiserver exits meanwhile, quoting the end of its log.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let client = self.client(Some(Duration::from_secs(2))).await?;
        let deadline = Instant::now() + timeout;
        loop {
            for component in [Component::Etcd, Component::ApiServer] {
                if self.pid(component).is_none() {
                    return Err(Error::Exited {
                        component: component.name(),
                        log: self.log_path(component),
                        tail: tail(&self.log_path(component), 20),
                    });
                }
            }
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("static request");
            if let Ok(body) = client.request_text(request).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    waited: timeout,
                    log: self.log_path(Component::ApiServer),
                    tail: tail(&self.log_path(Component::ApiServer), 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client for the admin user. `read_timeout` bounds connecting and each response (useful
    /// with a paused apiserver); `None` keeps kube's defaults.
    pub async fn client(&self, read_timeout: Option<Duration>) -> Result<kube::Client> {
        client_of(&self.kubeconfig_path(), read_timeout).await
    }

    fn args(&self, component: Component) -> Vec<String> {
        let dir = self.dir.display();
        let pki = &self.pki;
        let p = self.ports;
        match component {
            Component::Etcd => vec![
                "--name=default".into(),
                format!("--data-dir={dir}/etcd-data"),
                format!("--listen-client-urls=http://127.0.0.1:{}", p.etcd_client),
                format!("--advertise-client-urls=http://127.0.0.1:{}", p.etcd_client),
                format!("--listen-peer-urls=http://127.0.0.1:{}", p.etcd_peer),
                format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                    p.etcd_peer
                ),
                format!("--initial-cluster=default=http://127.0.0.1:{}", p.etcd_peer),
                // A test cluster trades crash-durability for speed; vai's own durability is
                // tested on vai's files, not etcd's.
                "--unsafe-no-fsync=true".into(),
                // etcd's default 2 GiB quota is reached by the benchmark's 100,000 pods under
                // churn (every revision of ~5 KB is kept until the apiserver compacts, every 5
                // minutes); 8 GiB is what large clusters run with.
                "--quota-backend-bytes=8589934592".into(),
                "--log-level=warn".into(),
            ],
            Component::ApiServer => vec![
                format!("--etcd-servers={}", self.etcd_url()),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // The endpoint reconciler refuses loopback addresses; nothing here needs the
                // `kubernetes` Service to have endpoints.
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={}", p.apiserver),
                format!("--cert-dir={dir}/pki"),
                format!("--tls-cert-file={}", pki.serving_cert.display()),
                format!("--tls-private-key-file={}", pki.serving_key.display()),
                format!("--token-auth-file={}", pki.token_file.display()),
                // Client certificates signed by the CA authenticate (CN user, O group); the CA
                // is published in kube-system/extension-apiserver-authentication.
                format!("--client-ca-file={}", pki.ca_cert.display()),
                format!("--audit-policy-file={}", pki.audit_policy.display()),
                format!("--audit-log-path={dir}/audit.log"),
                // Node first, as clusters run it: an authorizer vai does not evaluate
                // (vai's --confirm-denials asks upstream about what RBAC alone denies).
                "--authorization-mode=Node,RBAC".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                format!(
                    "--service-account-key-file={}",
                    pki.service_account_pub.display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    pki.service_account_key.display()
                ),
                // Pods are creatable in a namespace as soon as it exists, without waiting for
                // the controller manager to create its `default` ServiceAccount.
                "--disable-admission-plugins=ServiceAccount".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ],
            Component::ControllerManager => vec![
                format!("--kubeconfig={}", self.kubeconfig_path().display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                format!(
                    "--service-account-private-key-file={}",
                    pki.service_account_key.display()
                ),
                format!("--root-ca-file={}", pki.ca_cert.display()),
            ],
        }
    }

    fn write_kubeconfig(&self) -> Result<()> {
        // JSON is YAML: kubectl, client-go and kube-rs all read it.
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "vai-testenv",
                "cluster": {
                    "server": self.apiserver_url(),
                    "certificate-authority": self.pki.ca_cert,
                },
            }],
            "users": [{"name": "vai-admin", "user": {"token": self.pki.admin_token}}],
            "contexts": [{
                "name": "vai-testenv",
                "context": {"cluster": "vai-testenv", "user": "vai-admin"},
            }],
            "current-context": "vai-testenv",
        });
        let json = serde_json::to_vec_pretty(&kubeconfig).expect("kubeconfig serialises");
        write_private(&self.kubeconfig_path(), &json)
    }

    /// Compacts etcd's history up to its current revision (physically), so that older resource
    /// versions are gone from etcd. The apiserver's watch cache keeps its own window: restart
    /// the apiserver afterwards to make old resource versions answer `410 Gone`.
    /// Returns the revision compacted to.
    pub async fn compact_etcd(&self) -> Result<i64> {
        // etcd's JSON gateway encodes int64 fields as strings.
        let range = self
            .etcd_post("/v3/kv/range", serde_json::json!({"key": "Lw=="}))
            .await?;
        let revision: i64 = range["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| Error::Etcd(format!("no revision in {range}")))?;
        self.etcd_post(
            "/v3/kv/compaction",
            serde_json::json!({"revision": revision.to_string(), "physical": true}),
        )
        .await?;
        Ok(revision)
    }

    /// Writes `entries` (key, value) into etcd in one transaction, beside the apiserver, and
    /// returns etcd's revision after it. For loading a large workload fast: the values must be
    /// what the apiserver stores (a JSON object with `apiVersion`, `kind` and the metadata it
    /// sets — uid, creationTimestamp; it reads JSON as well as protobuf and takes the
    /// resourceVersion from etcd), under its keys (`/registry/pods/NAMESPACE/NAME`). The
    /// apiserver's watch cache sees them as it sees its own writes. At most 128 entries (etcd's
    /// `--max-txn-ops`) and 1.5 MiB per call.
    pub async fn etcd_put(&self, entries: &[(String, Vec<u8>)]) -> Result<i64> {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let success: Vec<_> = entries
            .iter()
            .map(|(key, value)| {
                serde_json::json!({"requestPut": {"key": b64(key.as_bytes()), "value": b64(value)}})
            })
            .collect();
        let reply = self
            .etcd_post("/v3/kv/txn", serde_json::json!({ "success": success }))
            .await?;
        reply["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| Error::Etcd(format!("no revision in {reply}")))
    }

    async fn etcd_post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        use http_body_util::{BodyExt, Full};
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<hyper::body::Bytes>>();
        let request = http::Request::post(format!("{}{path}", self.etcd_url()))
            .header("content-type", "application/json")
            .body(Full::from(body.to_string()))
            .expect("valid request");
        let response = client
            .request(request)
            .await
            .map_err(|e| Error::Etcd(format!("POST {path}: {e}")))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Etcd(format!("POST {path}: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(Error::Etcd(format!(
                "POST {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Etcd(format!("POST {path}: {e}")))
    }
}

/// Spawns `command` in its own process group, its output appended to `log_path`.
pub(crate) fn spawn_logged(mut command: Command, log_path: &Path) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| Error::io(log_path, e))?;
    let log_err = log.try_clone().map_err(|e| Error::io(log_path, e))?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(Path::new(command.get_program()), e))
}

/// A client from a kubeconfig file; `read_timeout` as in [`ControlPlane::client`].
pub(crate) async fn client_of(
    kubeconfig: &Path,
    read_timeout: Option<Duration>,
) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    if read_timeout.is_some() {
        // A TLS handshake that hangs is bounded too.
        config.read_timeout = read_timeout;
        config.connect_timeout = read_timeout;
    }
    Ok(kube::Client::try_from(config)?)
}

/// The scheduler state letter of every thread of a process (`T` = stopped).
fn thread_states(pid: Pid) -> Vec<char> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let stat = fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            stat.rsplit_once(')')?.1.trim_start().chars().next()
        })
        .collect()
}

/// The last `lines` lines of a file (for error messages that point at a log).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
