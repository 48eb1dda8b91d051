//! The link between vai and the apiserver, emulated: a Toxiproxy TCP proxy on loopback in front
//! of the test control plane, with levers for the faults an edge site's link has.
//!
//! [`Link::start`] runs `toxiproxy-server` (built with the control plane, [`crate::binaries`])
//! and one proxy from a loopback port to the apiserver, and writes a kubeconfig that reaches the
//! apiserver through it ([`Link::kubeconfig_path`]): point vai there and the test's own admin
//! client (which goes direct) at the apiserver. TLS passes through untouched.
//!
//! The levers, each taking effect on open connections and new ones:
//! - [`Link::latency`]: a delay each way, with jitter;
//! - [`Link::bandwidth`]: a rate cap on the link, shared by all its connections (applied by the
//!   relay below, since Toxiproxy's own cap is per connection);
//! - [`Link::stall`]: connections are accepted and kept, and nothing gets through either way —
//!   a link that is up but dead (a middlebox that lost its state, a radio that hangs);
//! - [`Link::cut`]: the link is down: open connections close and new ones are refused
//!   ([`Link::up`] undoes only that);
//! - [`Link::restore`]: every lever released. Connections a stall held are closed then, as a
//!   middlebox that dropped them would answer them.
//!
//! [`Link::bytes`] counts the bytes carried each way, and the connections, since the link
//! started, as they pass a relay between Toxiproxy and the apiserver (Toxiproxy's own counters move only when a connection
//! closes, and a watch's stays open): bytes a stall swallowed count as carried. Toxiproxy works on
//! TCP streams: it cannot drop packets, so "loss" shows as the latency and jitter it causes.
//!
//! This module addresses only loopback: the proxy, its API and the apiserver it fronts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::controlplane::{ControlPlane, free_port, spawn_logged};
use crate::pki::write_private;
use crate::{Error, Result};

/// The proxy's name in Toxiproxy's API.
const PROXY: &str = "apiserver";
/// How long [`Link::start`] waits for Toxiproxy's API to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What a link carried since it started: bytes each way, and connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkBytes {
    /// From vai to the apiserver (requests).
    pub up: u64,
    /// From the apiserver to vai (responses, watch events).
    pub down: u64,
    /// TCP connections made through it.
    pub connections: u64,
}

/// A running Toxiproxy in front of a control plane's apiserver. Dropping it stops the proxy.
#[derive(Debug)]
pub struct Link {
    child: Mutex<Child>,
    api: String,
    listen: u16,
    counter: Counter,
    kubeconfig: PathBuf,
    pid_file: PathBuf,
}

impl Link {
    /// Starts Toxiproxy (logging to `DIR/toxiproxy-PORT.log`, its pid in `DIR/toxiproxy-PORT.pid`
    /// so the test environment's watchdog stops it too) and a proxy on loopback port `PORT` to
    /// `plane`'s apiserver, and writes `DIR/link-PORT.kubeconfig`: the admin kubeconfig with the
    /// proxy's address. A control plane can have several links.
    pub async fn start(plane: &ControlPlane) -> Result<Link> {
        let dir = plane.dir();
        let api_port = free_port(&[])?;
        let listen = free_port(&[api_port])?;
        let log_path = dir.join(format!("toxiproxy-{listen}.log"));
        let mut command = Command::new(plane.binaries().toxiproxy());
        command.args(["-host", "127.0.0.1", "-port", &api_port.to_string()]);
        let child = spawn_logged(command, &log_path)?;
        let pid_file = dir.join(format!("toxiproxy-{listen}.pid"));
        let apiserver = plane
            .apiserver_url()
            .trim_start_matches("https://")
            .to_string();
        let counter = Counter::start(apiserver)?;
        write_private(&pid_file, child.id().to_string().as_bytes())?;
        let link = Link {
            child: Mutex::new(child),
            api: format!("http://127.0.0.1:{api_port}"),
            listen,
            counter,
            kubeconfig: dir.join(format!("link-{listen}.kubeconfig")),
            pid_file,
        };
        link.wait_ready(&log_path).await?;
        link.call(
            "POST",
            "/proxies",
            Some(json!({
                "name": PROXY,
                "listen": format!("127.0.0.1:{listen}"),
                "upstream": format!("127.0.0.1:{}", link.counter.port),
                "enabled": true,
            })),
        )
        .await?;
        link.write_kubeconfig(plane)?;
        Ok(link)
    }

    /// The kubeconfig that reaches the apiserver through the link (admin credentials).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new admin client through the link; `read_timeout` bounds each response (`None`: kube's
    /// default).
    pub async fn client(&self, read_timeout: Option<Duration>) -> Result<kube::Client> {
        crate::controlplane::client_of(&self.kubeconfig, read_timeout).await
    }

    /// The apiserver's URL through the link.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.listen)
    }

    /// Delays every byte by `each_way` (plus up to `jitter`) in each direction: a round trip
    /// gains twice that. Replaces an earlier latency.
    pub async fn latency(&self, each_way: Duration, jitter: Duration) -> Result<()> {
        let attributes = json!({
            "latency": each_way.as_millis() as u64,
            "jitter": jitter.as_millis() as u64,
        });
        self.set_toxic("latency", "latency", attributes).await
    }

    /// Caps the link at `kilobytes_per_second` in each direction, shared by all its
    /// connections as a real link is (0: no cap). Replaces an earlier cap.
    pub fn bandwidth(&self, kilobytes_per_second: u64) {
        for direction in [&self.counter.up, &self.counter.down] {
            direction
                .rate
                .store(kilobytes_per_second * 1000, Ordering::Relaxed);
        }
    }

    /// Lets nothing through, either way, on open connections and new ones (which are accepted).
    pub async fn stall(&self) -> Result<()> {
        self.set_toxic("stall", "timeout", json!({ "timeout": 0 }))
            .await
    }

    /// Takes the link down: open connections close, new ones are refused.
    pub async fn cut(&self) -> Result<()> {
        self.enable(false).await
    }

    /// Brings a cut link back up, its other levers (latency, bandwidth) as they were.
    pub async fn up(&self) -> Result<()> {
        self.enable(true).await
    }

    async fn enable(&self, enabled: bool) -> Result<()> {
        let body = json!({ "enabled": enabled });
        self.call("POST", &format!("/proxies/{PROXY}"), Some(body))
            .await
            .map(drop)
    }

    /// Releases every lever: the link is up, at loopback speed.
    pub async fn restore(&self) -> Result<()> {
        self.bandwidth(0);
        self.call("POST", "/reset", None).await.map(drop)
    }

    /// The bytes and connections the link carried since it started.
    pub fn bytes(&self) -> LinkBytes {
        LinkBytes {
            up: self.counter.up.bytes.load(Ordering::Relaxed),
            down: self.counter.down.bytes.load(Ordering::Relaxed),
            connections: self.counter.connections.load(Ordering::Relaxed),
        }
    }

    /// Adds a toxic to both directions, replacing one of the same name.
    async fn set_toxic(&self, name: &str, kind: &str, attributes: serde_json::Value) -> Result<()> {
        for stream in ["upstream", "downstream"] {
            let toxic = format!("{name}-{stream}");
            let path = format!("/proxies/{PROXY}/toxics");
            match self.call("DELETE", &format!("{path}/{toxic}"), None).await {
                Ok(_) | Err(Error::Link { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            let body = json!({
                "name": toxic,
                "type": kind,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            });
            self.call("POST", &path, Some(body)).await?;
        }
        Ok(())
    }

    async fn wait_ready(&self, log_path: &Path) -> Result<()> {
        let started = Instant::now();
        loop {
            if self.call("GET", "/version", None).await.is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .lock()
                .expect("link child")
                .try_wait()
                .ok()
                .flatten();
            if exited.is_some() || started.elapsed() > START_TIMEOUT {
                return Err(Error::Exited {
                    component: "toxiproxy-server",
                    log: log_path.to_path_buf(),
                    tail: crate::controlplane::tail(log_path, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One call of Toxiproxy's API; its body as text.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<String> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<hyper::body::Bytes>>();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.api))
            .header("content-type", "application/json")
            .body(Full::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .expect("valid request");
        let failed = |status: u16, message: String| Error::Link {
            call: format!("{method} {path}"),
            status,
            message,
        };
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(0, e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(status.as_u16(), e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !status.is_success() {
            return Err(failed(status.as_u16(), text));
        }
        Ok(text)
    }

    fn write_kubeconfig(&self, plane: &ControlPlane) -> Result<()> {
        let path = plane.kubeconfig_path();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut kubeconfig: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        kubeconfig["clusters"][0]["cluster"]["server"] = json!(self.url());
        let json = serde_json::to_vec_pretty(&kubeconfig).expect("kubeconfig serialises");
        write_private(&self.kubeconfig, &json)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let child = self.child.get_mut().expect("link child");
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// A plain TCP relay from a loopback port to the apiserver that counts the bytes each way. It
/// runs on a thread of its own, so it outlives the runtime of the test that started it (a
/// shared test environment serves many).
#[derive(Debug)]
struct Counter {
    port: u16,
    up: Arc<Direction>,
    down: Arc<Direction>,
    connections: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// One direction of the relay: the bytes it carried, and its cap.
#[derive(Debug, Default)]
struct Direction {
    bytes: AtomicU64,
    /// Bytes per second, 0 for no cap.
    rate: AtomicU64,
    /// When the capped link is free again: each chunk books its time after the last one's,
    /// whichever connection sent it.
    free_at: Mutex<Option<tokio::time::Instant>>,
}

impl Direction {
    /// Waits until the link has carried `n` bytes at its rate after what was booked before.
    async fn pass(&self, n: usize) {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let done = {
            let mut free_at = self.free_at.lock().expect("link shaper");
            let now = tokio::time::Instant::now();
            let start = free_at.filter(|t| *t > now).unwrap_or(now);
            let done = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *free_at = Some(done);
            done
        };
        tokio::time::sleep_until(done).await;
    }
}

impl Counter {
    fn start(target: String) -> Result<Counter> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?
            .port();
        let (up, down) = (
            Arc::new(Direction::default()),
            Arc::new(Direction::default()),
        );
        let connections = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let counts = (up.clone(), down.clone(), connections.clone());
        std::thread::Builder::new()
            .name("link-counter".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the link counter's runtime");
                // Returning drops the runtime, and with it every relayed connection.
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept(listener, target, counts) => {}
                    }
                });
            })
            .map_err(|e| Error::io(Path::new("link-counter thread"), e))?;
        Ok(Counter {
            port,
            up,
            down,
            connections,
            stop: Some(stop),
        })
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    target: String,
    (up, down, connections): (Arc<Direction>, Arc<Direction>, Arc<AtomicU64>),
) {
    while let Ok((client, _)) = listener.accept().await {
        connections.fetch_add(1, Ordering::Relaxed);
        let (target, up, down) = (target.clone(), up.clone(), down.clone());
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                relay(client_read, server_write, &up),
                relay(server_read, client_write, &down),
            );
        });
    }
}

/// Copies one direction until either side closes, at the direction's rate, counting what was
/// written.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    direction: &Direction,
) {
    // Small chunks, so that a capped link interleaves its connections finely.
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        direction.pass(n).await;
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        direction.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}
