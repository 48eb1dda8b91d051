//! A real Kubernetes control plane for vai's tests, benchmarks and bug reports.
//!
//! vai is tested against the real thing, never a hand-written fake: `kube-apiserver` and
//! `kube-controller-manager` built from the `k8s.io/kubernetes` Go module, and `etcd` built from
//! `go.etcd.io/etcd/server/v3`, pinned by `testenv/go.mod` at the repository root
//! ([`binaries`]). They run as ordinary processes on loopback ports, with generated credentials
//! ([`pki`]), in one directory that holds all their state ([`controlplane`]); a Toxiproxy in
//! front of the apiserver emulates a slow, stalled or cut link ([`link`]). A private
//! PostgreSQL server ([`Postgres`], `scripts/pg`) is there for the store's shared backend.
//!
//! Two ways in, one implementation:
//! - `scripts/testenv up DIR` / `down DIR` / `build` — the `vai-testenv` binary — for people
//!   and scripts;
//! - [`TestEnv`] for Rust tests: one environment per test ([`TestEnv::start`]) or one shared by
//!   every test of a test binary ([`TestEnv::shared`]), with the fault levers tests need.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vai_testenv::Error> {
//! let env = vai_testenv::TestEnv::start().await?;
//! let client = env.client().await?;
//! env.pause_apiserver()?;   // requests now hang (and time out)
//! env.resume_apiserver()?;
//! let revision = env.compact_etcd().await?;
//! env.restart_apiserver().await?; // old resource versions now answer 410 Gone
//! let link = env.link().await?;     // a proxy in front of the apiserver
//! link.stall().await?;              // connections through it hang
//! link.restore().await?;
//! # let _ = (client, revision); Ok(()) }
//! ```
//!
//! This crate never touches vai's own code: it is the ground the other crates are tested on.

pub mod binaries;
pub mod controlplane;
pub mod link;
pub mod measure;
pub mod pki;
pub mod postgres;
pub mod workload;

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub use binaries::Binaries;
pub use controlplane::{Component, ControlPlane};
pub use link::{Link, LinkBytes};
pub use nix::sys::signal::Signal;
pub use postgres::Postgres;

/// What can go wrong while building, starting or driving a test control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or binary) concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `go build` failed or could not run.
    #[error("building the test control plane: {0}")]
    Build(String),
    /// A configuration or state file is unusable.
    #[error("{0}")]
    Config(String),
    /// Generating certificates or keys failed.
    #[error("generating credentials: {0}")]
    Pki(#[from] rcgen::Error),
    /// A component exited while we waited for the control plane to become ready.
    #[error("{component} exited; see {}. Last lines:\n{tail}", log.display())]
    Exited {
        /// The component that exited.
        component: &'static str,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The apiserver did not report ready in time.
    #[error("kube-apiserver not ready after {waited:?}; see {}. Last lines:\n{tail}", log.display())]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The apiserver's log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A fault lever was pulled on a component that is not running.
    #[error("{0} is not running")]
    NotRunning(&'static str),
    /// etcd's API answered with an error.
    #[error("etcd: {0}")]
    Etcd(String),
    /// The kubeconfig could not be loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// The kube client failed.
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    /// Toxiproxy's API refused a call (status 0: it did not answer).
    #[error("link emulator: {call}: {status} {message}")]
    Link {
        /// The call, e.g. `POST /proxies`.
        call: String,
        /// Its HTTP status.
        status: u16,
        /// What Toxiproxy said.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Set to keep a test environment's directory (logs, etcd data) after the test.
pub const KEEP_ENV_VAR: &str = "VAI_TESTENV_KEEP";

/// A running control plane owned by a test. Dropping it stops every process and removes its
/// directory (kept, and its path printed, when the test panicked or `VAI_TESTENV_KEEP` is set).
///
/// If the test process dies without dropping it (a `static`, SIGKILL, an abort), a small
/// watchdog process — which waits for our end of a pipe to close — stops the processes and
/// removes the directory, so no test leaves a control plane behind.
#[derive(Debug)]
pub struct TestEnv {
    plane: ControlPlane,
    link: tokio::sync::OnceCell<Link>,
    watchdog: Mutex<Option<Child>>,
}

/// Run by `sh -c` with the environment directory as `$0`: wait for stdin to close (the test
/// process ended, however it ended), then kill what the pid files name and remove the directory
/// unless a `keep` marker is there.
const WATCHDOG_SCRIPT: &str = r#"cat >/dev/null
for f in "$0"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
[ -e "$0/keep" ] || rm -rf "$0""#;

impl TestEnv {
    /// Starts a new control plane in a fresh temporary directory, building the binaries first
    /// if this machine has never built them (minutes; progress goes to stderr).
    pub async fn start() -> Result<TestEnv> {
        let binaries = tokio::task::spawn_blocking(|| {
            Binaries::ensure(&mut |line| eprintln!("vai-testenv: {line}"))
        })
        .await
        .expect("binary build task panicked")?;
        let dir = tempfile::Builder::new()
            .prefix("vai-testenv-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?
            .keep();
        let plane = ControlPlane::open(&dir, binaries)?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg(plane.dir())
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(Path::new("sh"), e))?;
        let env = TestEnv {
            plane,
            link: tokio::sync::OnceCell::new(),
            watchdog: Mutex::new(Some(watchdog)),
        };
        if let Err(e) = env.plane.up().await {
            // Keep the logs that explain the failure; dropping `env` stops what did start.
            let _ = std::fs::write(env.plane.dir().join("keep"), b"");
            return Err(e);
        }
        Ok(env)
    }

    /// One control plane shared by every test in this test binary, started on first use.
    /// Tests that pull fault levers should use their own [`TestEnv::start`] instead.
    ///
    /// # Panics
    /// If the control plane cannot be started (the message says why).
    pub async fn shared() -> &'static TestEnv {
        static SHARED: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();
        SHARED
            .get_or_try_init(TestEnv::start)
            .await
            .unwrap_or_else(|e| panic!("cannot start the shared test control plane: {e}"))
    }

    /// The control plane itself (ports, logs, individual components).
    pub fn control_plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.plane.kubeconfig_path()
    }

    /// A new admin client. (Create one per test: a client is bound to the tokio runtime of the
    /// test that made it.)
    pub async fn client(&self) -> Result<kube::Client> {
        self.plane.client(None).await
    }

    /// A new admin client whose requests fail after `read_timeout` without a response.
    pub async fn client_with_timeout(&self, read_timeout: Duration) -> Result<kube::Client> {
        self.plane.client(Some(read_timeout)).await
    }

    /// Freezes the apiserver (SIGSTOP): connections are accepted by the kernel but nothing answers.
    pub fn pause_apiserver(&self) -> Result<()> {
        self.plane.signal(Component::ApiServer, Signal::SIGSTOP)
    }

    /// Unfreezes a paused apiserver (SIGCONT).
    pub fn resume_apiserver(&self) -> Result<()> {
        self.plane.signal(Component::ApiServer, Signal::SIGCONT)
    }

    /// Kills the apiserver (SIGKILL) and returns once it is gone; etcd keeps running.
    pub fn kill_apiserver(&self) -> Result<()> {
        self.plane.signal(Component::ApiServer, Signal::SIGKILL)
    }

    /// Stops the apiserver if it is running, starts it again at the same address and waits
    /// until it is ready. Its watch cache starts afresh.
    pub async fn restart_apiserver(&self) -> Result<()> {
        self.plane.stop(Component::ApiServer)?;
        self.plane.up().await.map(|_| ())
    }

    /// The emulated link in front of the apiserver, started on first use: point vai at its
    /// [`Link::kubeconfig_path`] and pull its levers (see [`link`]).
    pub async fn link(&self) -> Result<&Link> {
        self.link.get_or_try_init(|| Link::start(&self.plane)).await
    }

    /// Compacts etcd up to its current revision; see [`ControlPlane::compact_etcd`].
    pub async fn compact_etcd(&self) -> Result<i64> {
        self.plane.compact_etcd().await
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var_os(KEEP_ENV_VAR).is_some();
        if keep {
            let _ = std::fs::write(self.plane.dir().join("keep"), b"");
            eprintln!(
                "vai-testenv: kept the environment's logs and data in {}",
                self.plane.dir().display()
            );
        }
        drop(self.link.take());
        if let Err(e) = self.plane.down() {
            eprintln!("vai-testenv: stopping {}: {e}", self.plane.dir().display());
        }
        // Closing the watchdog's stdin lets it finish: the processes are gone, so it only
        // removes the directory (unless kept).
        if let Some(mut watchdog) = self.watchdog.lock().expect("watchdog lock").take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}
