//! The server's tuning ([`ServerConfig`]): deadlines and limits, with the defaults vai serves
//! with, and the clients it forwards with. Only values and handles; nothing here acts.

use std::time::Duration;

use crate::access::AccessConfig;

/// Tuning of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Deadline for upstream's response headers on a proxied request.
    pub proxy_timeout: Duration,
    /// Largest request body proxied upstream.
    pub max_request_bytes: usize,
    /// How long a watch lasts when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// How long a list with a resource version newer than the store's waits for it.
    pub wait_for_resource_version: Duration,
    /// For this long after upstream became unreachable, a request vai cannot answer (a write,
    /// an uncached type) is refused with `Retry-After`, which client-go retries (ten times, ~50
    /// s): a blip passes unnoticed. Past it, with a plain `503`, which kubectl reports at once.
    pub offline_retry_grace: Duration,
    /// Authentication and authorization.
    pub access: AccessConfig,
    /// The clients requests are forwarded with (`None`: the sync's client, and every caller
    /// impersonated with vai's credentials).
    pub proxy: Option<ProxyClients>,
}

/// The clients `proxy` forwards with. A proxy hands upstream's `429` and `503` back to its
/// caller, whose client decides whether to retry: neither should retry itself (kube's
/// default policy retries them up to 15 times).
#[derive(Clone)]
pub struct ProxyClients {
    /// With vai's credentials: for callers it impersonates.
    pub own: kube::Client,
    /// With no credentials of its own: for callers who sent a bearer token, forwarded as it
    /// is, so upstream authenticates the caller itself (with vai's client certificate on the
    /// connection, upstream would see vai instead).
    pub bare: kube::Client,
}

impl std::fmt::Debug for ProxyClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyClients")
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            proxy_timeout: Duration::from_secs(30),
            max_request_bytes: 16 << 20,
            default_watch_timeout: Duration::from_secs(1800),
            wait_for_resource_version: Duration::from_secs(3),
            offline_retry_grace: Duration::from_secs(10),
            access: AccessConfig::default(),
            proxy: None,
        }
    }
}
