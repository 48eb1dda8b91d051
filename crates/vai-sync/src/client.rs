//! The client sync talks to upstream with: kube's credentials and TLS (taken from its
//! `Config`), over HTTP/2 when upstream offers it, so that every watch, list and probe of a
//! cluster shares one connection.
//!
//! kube's own client speaks HTTP/1.1 only, and a watch holds its connection for as long as it
//! lasts: a cluster of 60 types was 60 TLS connections, and after an outage 60 handshakes
//! before vai was current. Over HTTP/2 it is one, and HTTP/2 PINGs (every
//! `--upstream-timeout`, answered within it) find a connection that died silently — a NAT
//! that dropped it, a link that stalls — without waiting for a watch's 90 s of silence.
//! The health probe (`/readyz`) has a connection of its own, so that on a slow link its answer
//! does not queue behind a list on the shared one. With an HTTP proxy or a TLS server name
//! override in the kubeconfig, kube's own client is
//! used (those are kube's to get right). This module only builds the client.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;

/// The connection's flow-control window: what upstream may send ahead of vai's reading, over
/// all streams. Large, so that a watch whose reader pauses (its store is behind) cannot starve
/// the others of window.
const CONNECTION_WINDOW: u32 = 64 << 20;
/// Each stream's window.
const STREAM_WINDOW: u32 = 4 << 20;

/// A client for `config`'s cluster: HTTP/2 (the data on shared connections, the probe on its
/// own, PINGs every `timeout`) when upstream negotiates it, HTTP/1.1 otherwise.
pub fn upstream_client(
    config: kube::Config,
    timeout: Duration,
) -> Result<kube::Client, kube::Error> {
    if config.proxy_url.is_some() || config.tls_server_name.is_some() {
        return kube::Client::try_from(config);
    }
    // The connector offers h2 and http/1.1 by ALPN itself.
    let tls = config.rustls_client_config()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client = || {
        hyper_util::client::legacy::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(timeout)
            .http2_keep_alive_timeout(timeout)
            .http2_keep_alive_while_idle(true)
            .http2_initial_connection_window_size(CONNECTION_WINDOW)
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .build::<_, kube::client::Body>(https.clone())
    };
    // The health probe on a connection of its own: on a slow link its answer would otherwise
    // wait behind whatever the shared connection carries (a list, the OpenAPI documents) and
    // time out although the link works.
    let (data, probe) = (client(), client());
    let hyper = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let client = match request.uri().path() {
            "/readyz" => probe.clone(),
            _ => data.clone(),
        };
        client.request(request)
    });
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}
