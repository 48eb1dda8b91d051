//! What every handler shares ([`App`]), and the one way handlers reach the store: on a
//! blocking thread ([`App::blocking`]), never on an async worker. A store read waits for a
//! pooled connection and for SQLite; on a 2-core machine a worker blocked there is half the
//! server.

use std::sync::Arc;

use vai_store::Store;
use vai_sync::Syncer;

use crate::access::Access;
use crate::config::ServerConfig;
use crate::errors::ApiError;
use crate::metrics::Metrics;

/// The state of the server, cloned into every handler.
#[derive(Clone)]
pub(crate) struct App {
    pub syncer: Syncer,
    pub store: Store,
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    pub registry: prometheus::Registry,
    pub access: Arc<Access>,
}

impl App {
    /// Runs `f` over the store on a blocking thread. A task that panicked or was cancelled
    /// is vai's fault: `500 InternalError`.
    pub async fn blocking<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ApiError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| E::from(ApiError::internal(format!("a store task failed: {e}"))))?
    }
}
