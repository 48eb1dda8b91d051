//! `vai`: a persistent, queryable cache of the Kubernetes API.
//!
//! This binary only wires the crates together and turns their errors into a one-line cause and
//! hint; the behaviour lives in `vai-store`, `vai-sync` and `vai-server`.

mod progress;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vai_store::{Store, StoreConfig};

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
    Serve(Box<ServeArgs>),
    /// Show what the database holds and how fresh it is (reads the file; needs no server or cluster).
    Status(StatusArgs),
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster). An
    /// empty $KUBECONFIG counts as unset, as kubectl takes it.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    context: Option<String>,
    /// The database file (default: one per cluster under the user's data directory).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Encrypt Secrets (and the other types the file names) in the database: the
    /// apiserver's EncryptionConfiguration (aesgcm keys; the first encrypts), mode 0600.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: Option<PathBuf>,
}

impl ClusterArgs {
    /// The key file's encryption, if one was given.
    fn encryption(&self) -> anyhow::Result<Option<vai_store::Encryption>> {
        Ok(self
            .encryption_provider_config
            .as_deref()
            .map(vai_store::Encryption::from_file)
            .transpose()?)
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Address to listen on. Loopback by default (kubectl proxy's port); any other address
    /// needs TLS and `--authorization-mode=RBAC`.
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// `AlwaysAllow`: every caller is vai's one local user (loopback only, like `kubectl
    /// proxy`). `RBAC`: callers are authenticated (client certificate, ServiceAccount token,
    /// other tokens by TokenReview) and authorized by the cluster's RBAC, evaluated locally,
    /// online and offline; forwarded requests are made as the caller.
    #[arg(long, value_enum, default_value = "AlwaysAllow")]
    authorization_mode: AuthorizationMode,
    /// Serve TLS with this certificate (PEM; re-read when it changes).
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of `--tls-cert-file` (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Also trust client certificates signed by this CA (PEM), besides the cluster's client CA.
    #[arg(long, requires = "tls_cert_file")]
    client_ca_file: Option<PathBuf>,
    /// Audiences a ServiceAccount token may be for (default: the cluster's issuer, as the
    /// apiserver's `--api-audiences`).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// Deny every request once vai's copy of the cluster's RBAC has been stale this long
    /// (`30m`, `24h`; default: decisions stand however long the cluster is away).
    #[arg(long, value_parser = parse_duration)]
    max_authz_staleness: Option<Duration>,
    /// How long a token reviewed upstream (TokenReview) stays accepted, capped by the token's
    /// own expiry; offline, not a moment longer (the apiserver's flag name).
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    authentication_token_webhook_cache_ttl: Duration,
    /// Cache only these types (comma-separated `plural` or `plural.group`; default: all that
    /// can be listed and watched).
    #[arg(long, value_delimiter = ',')]
    resources: Vec<String>,
    /// Never cache these types (`plural` or `plural.group`).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Seconds upstream has to answer before it counts as unreachable.
    #[arg(long, default_value_t = 5)]
    upstream_timeout: u64,
    /// Objects per page when listing a type from upstream (smaller pages: less memory on both
    /// sides, more requests).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    list_page_size: u32,
    /// Also index these fields, for the query API's `filter=`, `sort=` and `summary=` (and field
    /// selectors where upstream has the field): `<resource>=<path>`, comma-separated, a bare
    /// path continuing the previous type (`pods=spec.serviceAccountName,spec.priority`,
    /// `deployments.apps=spec.replicas`). Repeatable.
    #[arg(long = "index-field", value_name = "RESOURCE=PATH[,...]")]
    index_fields: Vec<String>,
}

/// `--authorization-mode`, with the apiserver's names.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthorizationMode {
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
    #[value(name = "RBAC")]
    Rbac,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::SignedDuration = text.parse().map_err(|e| format!("{e} (e.g. 30m, 24h)"))?;
    Duration::try_from(span).map_err(|_| "a duration cannot be negative".to_string())
}

#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The kubeconfig's client configuration, read without contacting the cluster.
async fn client_config(args: &ClusterArgs) -> anyhow::Result<kube::Config> {
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| {
                    format!(
                        "kubeconfig {} has no usable context (hint: pass --context)",
                        path.display()
                    )
                })
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .context("the kubeconfig has no such context (hint: `kubectl config get-contexts`)"),
        (None, None) => kube::Config::infer().await.context(
            "no kubeconfig found and not running in a cluster (hint: pass --kubeconfig, or set KUBECONFIG)",
        ),
    }
}

/// The default database of a cluster: `$XDG_DATA_HOME/vai/<host>_<port>.db` (or under
/// `~/.local/share`), in a private directory.
fn default_db(config: &kube::Config) -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("cannot find a data directory (hint: pass --db, or set HOME)")?;
    let dir = base.join("vai");
    let url = &config.cluster_url;
    let name: String = format!(
        "{}_{}",
        url.host().unwrap_or("cluster"),
        url.port_u16().unwrap_or(443)
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            c
        } else {
            '_'
        }
    })
    .collect();
    Ok(dir.join(format!("{name}.db")))
}

fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let rbac = args.authorization_mode == AuthorizationMode::Rbac;
    let secured = rbac && args.tls_cert_file.is_some();
    if !(args.listen.ip().is_loopback() || secured) {
        anyhow::bail!(
            "refusing to listen on {} without TLS and authorization (hint: pass --tls-cert-file, --tls-private-key-file and --authorization-mode=RBAC, or --listen 127.0.0.1:{})",
            args.listen,
            args.listen.port()
        );
    }
    let mut indexed_fields = Vec::new();
    for list in &args.index_fields {
        indexed_fields.extend(vai_store::ConfiguredField::parse_list(list)?);
    }
    let encryption = args.cluster.encryption()?;
    let timeout = Duration::from_secs(args.upstream_timeout.max(1));
    let mut config = client_config(&args.cluster).await?;
    config.connect_timeout = Some(timeout);
    let cluster = config.cluster_url.to_string();
    let db = match &args.cluster.db {
        Some(db) => db.clone(),
        None => default_db(&config)?,
    };
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_private_dir(dir)?;
    }
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let store = Store::open(
        &db,
        StoreConfig {
            indexed_fields,
            encryption,
            ..StoreConfig::default()
        },
    )?;
    tracing::info!(db = %db.display(), %cluster, "opened the store");
    let registry = prometheus::Registry::new();
    let sync_config = vai_sync::SyncConfig {
        selection: vai_sync::Selection {
            include: args.resources,
            exclude: args.exclude,
            // Authorization decides from these, whatever else is cached.
            required: if rbac {
                vai_server::access::RBAC_RESOURCES
                    .iter()
                    .filter_map(|key| key.rsplit('/').next().zip(key.split('/').next()))
                    .map(|(plural, group)| format!("{plural}.{group}"))
                    .chain(["serviceaccounts".to_string()])
                    .collect()
            } else {
                Vec::new()
            },
        },
        identity_documents: rbac,
        timeout,
        list_page_size: args.list_page_size as usize,
        ..Default::default()
    };
    let syncer = vai_sync::Syncer::start(client, store.clone(), sync_config, &registry)
        .await
        .with_context(|| format!("starting sync with {cluster}"))?;
    tracing::info!(types = syncer.resources().len(), "caching");
    let progress = tokio::spawn(progress::show(syncer.clone()));
    let server_config = vai_server::ServerConfig {
        access: vai_server::access::AccessConfig {
            mode: if rbac {
                vai_server::access::Mode::Rbac
            } else {
                vai_server::access::Mode::AlwaysAllow
            },
            api_audiences: args.api_audiences,
            max_authz_staleness: args.max_authz_staleness,
            token_success_ttl: args.authentication_token_webhook_cache_ttl,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = vai_server::router(syncer.clone(), server_config, registry)
        .context("registering the server's metrics")?;
    let tls = args.tls_cert_file.map(|cert_file| vai_server::Tls {
        cert_file,
        key_file: args.tls_private_key_file.clone().unwrap_or_default(),
        client_ca_files: args.client_ca_file.into_iter().collect(),
        extra_client_cas: Box::new({
            let store = store.clone();
            move || vai_server::access::cluster_client_ca(&store)
        }),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (hint: another process uses it? pass --listen)",
                args.listen
            )
        })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %args.listen, "serving; point kubectl at it with --server {scheme}://{}", args.listen);
    vai_server::serve(listener, app, tls, shutdown_signal())
        .await
        .context("serving")?;
    progress.abort();
    drop(syncer);
    store.close();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or("-".into(), |t| {
            t.round(jiff::Unit::Second).unwrap_or(t).to_string()
        })
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let db = match &args.cluster.db {
        Some(db) => db.clone(),
        None => default_db(&client_config(&args.cluster).await?)?,
    };
    if !db.exists() {
        anyhow::bail!(
            "no database at {} (hint: `vai serve` creates it on its first start; pass --db for another file)",
            db.display()
        );
    }
    let store = Store::open_read_only_with(
        &db,
        StoreConfig {
            encryption: args.cluster.encryption()?,
            ..StoreConfig::default()
        },
    )?;
    let states = store.resource_states()?;
    if states.is_empty() {
        println!("{}: no resource types synced yet", db.display());
        return Ok(());
    }
    println!(
        "{:<58} {:<8} {:>9} {:>12} {:<21} ERROR",
        "RESOURCE", "STATE", "OBJECTS", "LAST-RV", "LAST-CONTACT"
    );
    for s in states {
        println!(
            "{:<58} {:<8} {:>9} {:>12} {:<21} {}",
            s.resource,
            s.state.as_str(),
            store.count(&s.resource)?,
            s.last_resource_version,
            when(s.last_contact_ms),
            s.last_error.unwrap_or_default()
        );
    }
    Ok(())
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
        Command::Serve(args) => serve(*args).await,
        Command::Status(args) => status(args).await,
    };
    if let Err(error) = result {
        eprintln!("vai: {}", vai_sync::one_line(error.as_ref()));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_is_one_line_with_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::new(io)
            .context("failed to read kubeconfig from /x: No such file or directory")
            .context("no kubeconfig found (hint: pass --kubeconfig)");
        assert_eq!(
            vai_sync::one_line(error.as_ref()),
            "no kubeconfig found (hint: pass --kubeconfig): failed to read kubeconfig from /x: No such file or directory"
        );
        let multi =
            anyhow::anyhow!("bad YAML at line 3\n  | excerpt").context("reading kubeconfig");
        assert_eq!(
            vai_sync::one_line(multi.as_ref()),
            "reading kubeconfig: bad YAML at line 3"
        );
    }
}
