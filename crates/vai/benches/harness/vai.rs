//! The system under test: a `vai serve` child process on a database of its own, started, waited
//! for and stopped by the scenarios.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vai_testenv::TestEnv;

use crate::http1;

/// The types vai caches here, and the baselines hold.
const RESOURCES: &str = "pods,configmaps,secrets,namespaces";

/// How long vai may take to become ready before a phase reports it as not ready.
const READY_DEADLINE: Duration = Duration::from_secs(600);

/// A `vai serve` process.
pub struct Vai {
    child: Child,
    /// Where it serves, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The bearer token its callers send (with `--authorization-mode=RBAC`).
    pub bearer: Option<String>,
    log: PathBuf,
}

impl Vai {
    /// Starts vai on `db`, its log appended to `log`.
    pub fn start(env: &TestEnv, db: &Path, log: &Path) -> Vai {
        Vai::start_with(env, db, log, &[])
    }

    /// Starts vai on `db` with `extra` flags, its log appended to `log`.
    pub fn start_with(env: &TestEnv, db: &Path, log: &Path, extra: &[&str]) -> Vai {
        Vai::start_through(&env.kubeconfig_path(), db, log, extra)
    }

    /// Starts vai on `db` with `extra` flags against the cluster `kubeconfig` names (the test
    /// cluster through an emulated link), its log appended to `log`.
    pub fn start_through(kubeconfig: &Path, db: &Path, log: &Path, extra: &[&str]) -> Vai {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_vai"))
            .args(["serve", "--kubeconfig"])
            .arg(kubeconfig)
            .arg("--db")
            .arg(db)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--resources",
                RESOURCES,
            ])
            .args(extra)
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
            bearer: None,
            log: log.to_path_buf(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Seconds until `/readyz` answers 200 (every type synced), or `None` after
    /// [`READY_DEADLINE`].
    pub async fn ready(&self, client: &http1::Client) -> Option<f64> {
        let started = Instant::now();
        loop {
            if client
                .get_as(&format!("{}/readyz", self.url), self.bearer.as_deref())
                .await
                .is_ok_and(|(s, _)| s == 200)
            {
                return Some(started.elapsed().as_secs_f64());
            }
            if self.exited() {
                println!(
                    "vai exited before it was ready (its log: {})",
                    self.log.display()
                );
                return None;
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

    /// Whether the process has exited (a zombie, not waited for yet).
    fn exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|stat| {
                let (_, after_name) = stat.rsplit_once(')')?;
                after_name
                    .split_whitespace()
                    .next()
                    .map(|state| state == "Z")
            })
            .unwrap_or(true)
    }

    /// Stops it gracefully (SIGTERM) and waits.
    pub fn stop(self) {
        drop(self);
    }
}

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
