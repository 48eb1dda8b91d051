//! `vai-testenv` (run as `scripts/testenv`): build, start and stop a real control plane.
//!
//! ```text
//! scripts/testenv build        build (or find) the pinned binaries; print their directory
//! scripts/testenv up DIR       start etcd, kube-apiserver and kube-controller-manager in DIR
//!                              (or restart what stopped), wait for /readyz, write DIR/kubeconfig
//! scripts/testenv down DIR     stop them; logs, pid files and etcd's data stay in DIR
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vai_testenv::{Binaries, Component, ControlPlane};

#[derive(Parser)]
#[command(
    name = "testenv",
    about = "A real kube-apiserver + etcd on loopback, for tests, benchmarks and bug reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the pinned control-plane binaries (once per machine and version); print their directory.
    Build,
    /// Start the control plane in DIR (restarting whatever has stopped) and write DIR/kubeconfig.
    Up {
        /// Directory for credentials, logs, pid files, etcd data and the kubeconfig.
        dir: PathBuf,
    },
    /// Stop the control plane running in DIR. Its data and logs stay.
    Down {
        /// The directory given to `up`.
        dir: PathBuf,
    },
}

fn binaries() -> anyhow::Result<Binaries> {
    Binaries::ensure(&mut |line| eprintln!("testenv: {line}"))
        .context("hint: the build needs Go and the Go module proxy; see testenv/go.mod")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Build => {
            let bins = binaries()?;
            println!("{}", bins.dir().display());
        }
        Cmd::Up { dir } => {
            let plane = ControlPlane::open(&dir, binaries()?)?;
            let started_at = Instant::now();
            let started = plane.up().await.with_context(|| {
                format!("starting the control plane in {}", plane.dir().display())
            })?;
            let names: Vec<&str> = started.iter().map(|c| c.name()).collect();
            let bins = plane.binaries();
            eprintln!(
                "testenv: kubernetes {} (etcd {}) ready at {} in {:.1?}{}",
                bins.kubernetes_version,
                bins.etcd_version,
                plane.apiserver_url(),
                started_at.elapsed(),
                if names.is_empty() {
                    " (everything was already running)".to_string()
                } else {
                    format!(" (started {})", names.join(", "))
                }
            );
            eprintln!(
                "testenv: export KUBECONFIG={}  # kubectl is {}",
                plane.kubeconfig_path().display(),
                bins.kubectl().display()
            );
            println!("{}", plane.kubeconfig_path().display());
        }
        Cmd::Down { dir } => {
            anyhow::ensure!(
                dir.join("ports.json").exists(),
                "{} is not a testenv directory (no ports.json)",
                dir.display()
            );
            let plane = ControlPlane::open(&dir, binaries()?)?;
            plane.down()?;
            let left: Vec<&str> = Component::ALL
                .into_iter()
                .filter(|c| plane.pid(*c).is_some())
                .map(Component::name)
                .collect();
            anyhow::ensure!(left.is_empty(), "still running: {}", left.join(", "));
            eprintln!(
                "testenv: stopped; logs and data stay in {}",
                plane.dir().display()
            );
        }
    }
    Ok(())
}
