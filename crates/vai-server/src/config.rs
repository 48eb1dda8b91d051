//! The server's tuning ([`ServerConfig`]): deadlines and limits, with the defaults vai serves
//! with. Only values; nothing here acts.

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
    /// Authentication and authorization.
    pub access: AccessConfig,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            proxy_timeout: Duration::from_secs(30),
            max_request_bytes: 16 << 20,
            default_watch_timeout: Duration::from_secs(1800),
            wait_for_resource_version: Duration::from_secs(3),
            access: AccessConfig::default(),
        }
    }
}
