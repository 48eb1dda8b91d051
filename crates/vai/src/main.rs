//! `vai`: a persistent, queryable cache of the Kubernetes API.
//!
//! This binary only wires the crates together and turns their errors into a one-line cause and
//! hint; the behaviour lives in `vai-store`, `vai-sync` and `vai-server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vai",
    version,
    about = "A persistent, queryable cache of the Kubernetes API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sync a cluster into the local store and serve it as a read-only Kubernetes API.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    context: Option<String>,
    /// The database file (default: one per cluster under the user's data directory).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Address to listen on. Loopback by default; kubectl proxy's port.
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let kubeconfig = match &args.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?,
        None => kube::config::Kubeconfig::read()
            .context("no kubeconfig found (hint: pass --kubeconfig, or set KUBECONFIG)")?,
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("the kubeconfig has no usable context (hint: pass --context)")?;
    let _ = (args.db, args.listen);
    anyhow::bail!(
        "vai serve is not implemented yet (cluster {} read from the kubeconfig)",
        config.cluster_url
    )
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
    };
    if let Err(error) = result {
        // One line: the cause chain, outermost first.
        eprintln!("vai: {error:#}");
        std::process::exit(1);
    }
}
