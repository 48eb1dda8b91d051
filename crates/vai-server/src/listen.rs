//! Serving the router on a socket ([`serve`]): plain HTTP, or TLS ([`Tls`]) with HTTP/2 and
//! HTTP/1.1 by ALPN and an optional client certificate, verified against the client CAs and
//! the front proxy's, and handed to authentication as a [`PeerCertificate`] (saying which it
//! chains to) in each request's extensions.
//!
//! The serving certificate and the client CAs are re-read every [`RELOAD_INTERVAL`]: a
//! rotated certificate (or a new cluster client CA) takes effect for new connections without
//! a restart; a file that no longer parses is logged and the last good configuration kept.
//! This module never decides who a caller is: it only says which certificate the TLS
//! handshake verified.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How often the certificate files and client CAs are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client certificate a TLS connection presented (DER), and which CAs it chains to.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// The leaf certificate.
    pub der: Arc<Vec<u8>>,
    /// Signed by a client CA: the certificate names its user.
    pub client: bool,
    /// Signed by the front proxy's CA: the request's `X-Remote-*` headers name the user.
    pub front_proxy: bool,
}

/// TLS serving.
pub struct Tls {
    /// The serving certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Client CAs (PEM files) trusted for client certificates.
    pub client_ca_files: Vec<PathBuf>,
    /// More client CAs (PEM), read at every reload: the cluster's, from the store.
    pub extra_client_cas: Box<dyn Fn() -> Vec<u8> + Send + Sync>,
    /// CAs (PEM files) of a trusted front proxy (`--requestheader-client-ca-file`).
    pub front_proxy_ca_files: Vec<PathBuf>,
}

/// A built configuration, with a verifier per kind of CA to tell what a peer's certificate
/// is (the handshake accepts either).
struct Built {
    config: Arc<rustls::ServerConfig>,
    client: Option<Arc<dyn ClientCertVerifier>>,
    front_proxy: Option<Arc<dyn ClientCertVerifier>>,
}

impl Built {
    fn peer(&self, chain: &[CertificateDer<'_>]) -> Option<PeerCertificate> {
        let (leaf, intermediates) = chain.split_first()?;
        let now = rustls::pki_types::UnixTime::now();
        let verified = |verifier: &Option<Arc<dyn ClientCertVerifier>>| {
            verifier
                .as_ref()
                .is_some_and(|v| v.verify_client_cert(leaf, intermediates, now).is_ok())
        };
        Some(PeerCertificate {
            der: Arc::new(leaf.to_vec()),
            client: verified(&self.client),
            front_proxy: verified(&self.front_proxy),
        })
    }
}

/// A TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct TlsError {
    what: String,
    message: String,
}

fn tls_error(what: impl Into<String>, message: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.into(),
        message: message.to_string(),
    }
}

/// What a built configuration was built from, to tell when to rebuild.
#[derive(PartialEq)]
struct Inputs {
    modified: Vec<Option<SystemTime>>,
    extra: Vec<u8>,
}

impl Tls {
    fn inputs(&self) -> Inputs {
        let modified = [&self.cert_file, &self.key_file]
            .into_iter()
            .chain(&self.client_ca_files)
            .chain(&self.front_proxy_ca_files)
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect();
        Inputs {
            modified,
            extra: (self.extra_client_cas)(),
        }
    }

    /// Builds the rustls configuration from the files as they are now.
    pub fn config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        Ok(self.build(&(self.extra_client_cas)())?.config)
    }

    fn build(&self, extra_cas: &[u8]) -> Result<Built, TlsError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| tls_error(path.display().to_string(), e))
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(&self.cert_file)?)
                .collect::<Result<_, _>>()
                .map_err(|e| tls_error(self.cert_file.display().to_string(), e))?;
        if chain.is_empty() {
            return Err(tls_error(
                self.cert_file.display().to_string(),
                "no certificate in the file",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key_file)?)
            .map_err(|e| tls_error(self.key_file.display().to_string(), e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pool =
            |files: &[PathBuf], extra: &[u8]| -> Result<Vec<CertificateDer<'static>>, TlsError> {
                let mut certs = Vec::new();
                for path in files {
                    for cert in CertificateDer::pem_slice_iter(&read(path)?) {
                        certs.push(cert.map_err(|e| tls_error(path.display().to_string(), e))?);
                    }
                }
                // The cluster's CA comes from upstream: a certificate in it that does not parse
                // is skipped, not fatal.
                certs.extend(CertificateDer::pem_slice_iter(extra).flatten());
                Ok(certs)
            };
        let verifier = |certs: &[CertificateDer<'static>]| -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                if let Err(e) = roots.add(cert.clone()) {
                    tracing::warn!(error = %e, "skipping a client CA certificate");
                }
            }
            if roots.is_empty() {
                return Ok(None);
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map(Some)
                .map_err(|e| tls_error("client CAs", e))
        };
        let client_cas = pool(&self.client_ca_files, extra_cas)?;
        let front_proxy_cas = pool(&self.front_proxy_ca_files, &[])?;
        let client = verifier(&client_cas)?;
        let front_proxy = verifier(&front_proxy_cas)?;
        let either = verifier(&[client_cas, front_proxy_cas].concat())?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS", e))?;
        let builder = match either {
            None => builder.with_no_client_auth(),
            Some(verifier) => builder.with_client_cert_verifier(verifier),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| tls_error(self.cert_file.display().to_string(), e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Built {
            config: Arc::new(config),
            client,
            front_proxy,
        })
    }
}

/// Serves `router` on `listener` until `shutdown` completes: plain HTTP without `tls`, TLS
/// with it. Fails at once if the TLS configuration cannot be built.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TlsError> {
    let Some(tls) = tls else {
        // Responses are written in several pieces (a streamed list's chunks): without
        // TCP_NODELAY the last piece can wait for the client's delayed ACK, ~40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| tls_error("serving", e));
    };
    let tls = Arc::new(tls);
    let mut inputs = tls.inputs();
    let current = Arc::new(RwLock::new(Arc::new(tls.build(&inputs.extra)?)));
    let reload = {
        let current = current.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                // Files and the store are read on a blocking thread, never on a worker.
                let tls = tls.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    let now = tls.inputs();
                    let rebuilt = (now != inputs).then(|| tls.build(&now.extra));
                    (now, rebuilt)
                })
                .await;
                let Ok((now, rebuilt)) = checked else { return };
                match rebuilt {
                    None => {}
                    Some(Ok(built)) => {
                        tracing::info!("reloaded the TLS certificates");
                        *current.write().expect("tls lock") = Arc::new(built);
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot reload the TLS certificates; keeping the last good ones")
                    }
                }
                inputs = now;
            }
        })
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let built = current.read().expect("tls lock").clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(built.config.clone());
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| built.peer(chain));
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                if let Some(peer) = &peer {
                    request.extensions_mut().insert(peer.clone());
                }
                router
                    .clone()
                    .oneshot(request.map(axum::body::Body::new) as Request)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    reload.abort();
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
