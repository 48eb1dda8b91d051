//! Running `vai serve` (the real binary) against a real control plane, for integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vai_testenv::TestEnv;

/// A `vai serve` process. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Vai {
    child: Option<Child>,
    pub port: u16,
    pub db: PathBuf,
    pub log: PathBuf,
    dir: PathBuf,
}

/// A free loopback port (bound then released; the race is harmless on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Vai {
    /// Starts vai with `--authorization-mode=RBAC` and `extra` flags in `dir`, serving TLS with
    /// the test control plane's serving certificate (its CA's, valid for 127.0.0.1), without
    /// waiting; and its `https://` URL.
    pub fn spawn_rbac(env: &TestEnv, dir: &Path, extra: &[&str]) -> (Vai, String) {
        let pki = env.control_plane().dir().join("pki");
        let (cert, key) = (pki.join("apiserver.crt"), pki.join("apiserver.key"));
        let mut flags = vec![
            "--authorization-mode",
            "RBAC",
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-private-key-file",
            key.to_str().unwrap(),
        ];
        flags.extend_from_slice(extra);
        let vai = Vai::spawn(env, dir, free_port(), &flags);
        let url = format!("https://127.0.0.1:{}", vai.port);
        (vai, url)
    }

    /// Starts vai on `env` with its database in `dir`, and waits until it is ready.
    pub async fn start(env: &TestEnv, dir: &Path, extra: &[&str]) -> Vai {
        let vai = Vai::spawn(env, dir, free_port(), extra);
        vai.wait_ready().await;
        vai
    }

    /// Starts vai without waiting.
    pub fn spawn(env: &TestEnv, dir: &Path, port: u16, extra: &[&str]) -> Vai {
        Vai::spawn_with_kubeconfig(&env.kubeconfig_path(), dir, port, extra)
    }

    /// Starts vai with another kubeconfig (a proxy in front of the test cluster), without
    /// waiting; on loopback at `port` unless `extra` holds a `--listen`.
    pub fn spawn_with_kubeconfig(kubeconfig: &Path, dir: &Path, port: u16, extra: &[&str]) -> Vai {
        let db = dir.join("vai.db");
        let log = dir.join(format!("vai-{port}.log"));
        // A store in PostgreSQL (`--store`) instead of the file.
        let file = (!extra.contains(&"--store")).then(|| ["--db".as_ref(), db.as_os_str()]);
        let child = Command::new(env!("CARGO_BIN_EXE_vai"))
            .arg("serve")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(file.into_iter().flatten())
            .args(
                (!extra.contains(&"--listen"))
                    .then(|| ["--listen".to_string(), format!("127.0.0.1:{port}")])
                    .into_iter()
                    .flatten(),
            )
            .args(["--upstream-timeout", "2"])
            .args(extra)
            .env("RUST_LOG", "info,vai_sync=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting vai");
        Vai {
            child: Some(child),
            port,
            db,
            log,
            dir: dir.to_path_buf(),
        }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kube client talking to vai.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Waits for `/readyz` to answer 200, failing with the log when vai exits or takes long.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = get(&self.url(), "/readyz").await
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vai not ready within 60 s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it gracefully and waits; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL: no clean-up of any kind) and waits.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A kubectl command pointed at vai (its own kubeconfig, with no credentials).
    pub fn kubectl(&self, env: &TestEnv) -> Command {
        let kubeconfig = self.dir.join(format!("kubeconfig-vai-{}", self.port));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: vai\n  cluster:\n    server: {}\ncontexts:\n- name: vai\n  context:\n    cluster: vai\n    user: vai\nusers:\n- name: vai\n  user: {{}}\ncurrent-context: vai\n",
                self.url()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env.control_plane().binaries().kubectl());
        cmd.arg("--kubeconfig").arg(kubeconfig);
        cmd
    }
}

impl Drop for Vai {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!("vai log ({}):\n{}", self.log.display(), self.log_text());
        }
    }
}

/// `kubectl get <args> -o json` through vai equals the same through the apiserver (awaited:
/// vai converges within the timeout).
pub async fn same_through_vai(env: &TestEnv, vai: &Vai, args: &[&str]) {
    let what = format!("kubectl get {}", args.join(" "));
    eventually(&what, Duration::from_secs(15), async || {
        let direct = items(&run(kubectl_direct(env)
            .arg("get")
            .args(args)
            .args(["-o", "json"])));
        let through = items(&run(vai
            .kubectl(env)
            .arg("get")
            .args(args)
            .args(["-o", "json"])));
        (direct == through && (!direct.is_empty() || args.contains(&"--allow-empty"))).then_some(())
    })
    .await;
}

/// kubectl pointed at the apiserver directly.
pub fn kubectl_direct(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env.control_plane().binaries().kubectl());
    cmd.arg("--kubeconfig").arg(env.kubeconfig_path());
    cmd
}

/// Runs a command; returns stdout, panicking with stderr on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A plain HTTP request to vai (no kube client: nothing retried or rewritten).
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Answer, String> {
    send(
        base,
        method,
        path,
        body,
        "application/json",
        "application/json",
    )
    .await
}

/// A JSON merge patch.
pub async fn merge_patch(base: &str, path: &str, body: &str) -> Result<Answer, String> {
    let merge = "application/merge-patch+json";
    send(base, "PATCH", path, Some(body), "application/json", merge).await
}

/// A GET with an `Accept` header.
pub async fn request_with_accept(base: &str, path: &str, accept: &str) -> Result<Answer, String> {
    send(base, "GET", path, None, accept, "application/json").await
}

async fn send(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    accept: &str,
    content_type: &str,
) -> Result<Answer, String> {
    let url: http::Uri = format!("{base}{path}").parse().unwrap();
    let host = url.authority().unwrap().as_str().to_string();
    let stream = tokio::net::TcpStream::connect(&host)
        .await
        .map_err(|e| e.to_string())?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.unwrap_or("").to_string(),
        )))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// GET through plain HTTP.
pub async fn get(base: &str, path: &str) -> Result<Answer, String> {
    request(base, "GET", path, None).await
}

/// Polls `check` until it returns `Some`, up to `timeout`; panics with `what` after.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kubectl get ... -o json` items without `managedFields` (vai drops them by default), sorted
/// by namespace and name.
pub fn items(json: &str) -> Vec<serde_json::Value> {
    let list: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut items: Vec<serde_json::Value> = list["items"].as_array().cloned().unwrap_or_default();
    for item in &mut items {
        if let Some(m) = item["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    }
    items.sort_by_key(|i| {
        (
            i["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            i["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    items
}

/// Creates a namespace if it does not exist yet.
pub async fn ensure_namespace(client: &kube::Client, ns: &str) {
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    match namespaces
        .create(&kube::api::PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {ns}: {e}"),
    }
}

/// Runs `kubectl apply -f -` (the command given: direct or through vai) on a manifest.
pub fn apply(mut kubectl: Command, manifest: &str) {
    use std::io::Write;
    let mut child = kubectl
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply failed");
}

/// A namespaced CRD `<plural>.example.com` (kind `kind`) whose schema accepts anything, with
/// these `additionalPrinterColumns` (YAML flow mappings, one per line).
pub fn crd(plural: &str, kind: &str, columns: &[&str]) -> String {
    let singular = plural.trim_end_matches('s');
    let columns: String = columns.iter().map(|c| format!("    - {c}\n")).collect();
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.example.com}}
spec:
  group: example.com
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
    additionalPrinterColumns:
{columns}"
    )
}

/// A namespaced CRD `<plural>.example.com` (kind `kind`, version `v1`) whose `spec` has these
/// typed properties (`(name, type)`), of which `selectable` (`jsonPath`s) are
/// `selectableFields`.
pub fn crd_with_selectable_fields(
    plural: &str,
    kind: &str,
    properties: &[(&str, &str)],
    selectable: &[&str],
) -> String {
    let singular = plural.trim_end_matches('s');
    let properties: Vec<String> = properties
        .iter()
        .map(|(name, kind)| format!("{name}: {{type: {kind}}}"))
        .collect();
    let selectable: String = selectable
        .iter()
        .map(|path| format!("    - jsonPath: {path}\n"))
        .collect();
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.example.com}}
spec:
  group: example.com
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{{}}}}}
    selectableFields:
{selectable}",
        properties.join(", ")
    )
}

/// What [`faulty_proxy`] does to the requests for ConfigMaps.
#[derive(Clone, Debug)]
pub enum ProxyFault {
    /// Ends the first watch with a `410 Expired` event just after its first MODIFIED event, as
    /// an apiserver does to a watcher that read slower than events came.
    CutFirstWatchWith410,
    /// Holds every continued list page until the receiver turns `true`; from then on answers
    /// every new watch with a `410 Expired` event, as an apiserver does when a list took
    /// longer than it keeps history. Also ends the first watch just after its first MODIFIED
    /// event, as upstream does at a watch's `timeoutSeconds`.
    HoldPagesThenExpire(tokio::sync::watch::Receiver<bool>),
}

/// The watch event an apiserver sends for a version outside its window.
fn expired_event() -> String {
    let gone = serde_json::json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version", "reason": "Expired", "code": 410}});
    format!("{gone}\n")
}

/// A plain-HTTP proxy in front of the test cluster that does `fault` to ConfigMap requests and
/// forwards everything with the admin's credentials. Returns a kubeconfig for it and the path
/// and query (`path?query`) of every request it received, in order.
pub async fn faulty_proxy(
    upstream: kube::Client,
    dir: &Path,
    fault: ProxyFault,
) -> (PathBuf, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use futures::StreamExt;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (upstream, log, fault) = (upstream.clone(), log.clone(), fault.clone());
        async move {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let configmaps = request.uri().path().ends_with("/configmaps");
            let watch = configmaps && target.contains("watch=1");
            let first_watch = {
                let mut log = log.lock().unwrap();
                let first = !log
                    .iter()
                    .any(|q| q.contains("/configmaps?") && q.contains("watch=1"));
                log.push(target.clone());
                watch && first
            };
            if let ProxyFault::HoldPagesThenExpire(release) = &fault {
                let mut release = release.clone();
                if configmaps && target.contains("continue=") {
                    let _ = release.wait_for(|released| *released).await;
                } else if watch && *release.borrow() {
                    return axum::response::Response::builder()
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(expired_event()))
                        .unwrap();
                }
            }
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut forward = http::Request::builder()
                .method(parts.method)
                .uri(target.as_str());
            for (name, value) in &parts.headers {
                if name != http::header::HOST {
                    forward = forward.header(name, value);
                }
            }
            let forward = forward
                .body(kube::client::Body::from(body.to_vec()))
                .unwrap();
            let response = match upstream.send(forward).await {
                Ok(response) => response,
                Err(e) => {
                    return axum::response::Response::builder()
                        .status(502)
                        .body(axum::body::Body::from(e.to_string()))
                        .unwrap();
                }
            };
            if !first_watch {
                return response.map(axum::body::Body::new);
            }
            let last = match fault {
                ProxyFault::CutFirstWatchWith410 => expired_event(),
                ProxyFault::HoldPagesThenExpire(_) => String::new(),
            };
            // Pass whole lines up to and including the first MODIFIED event, then `last`, then
            // end the stream.
            let (parts, body) = response.into_parts();
            let cut = futures::stream::unfold(
                (body.into_data_stream(), Vec::<u8>::new(), false),
                move |(mut data, mut buffer, done)| {
                    let last = last.clone();
                    async move {
                        if done {
                            return None;
                        }
                        loop {
                            if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                                let mut line: Vec<u8> = buffer.drain(..=end).collect();
                                let modified = br#""type":"MODIFIED""#;
                                let cut = line.windows(modified.len()).any(|w| w == modified);
                                if cut {
                                    line.extend_from_slice(last.as_bytes());
                                }
                                return Some((
                                    Ok::<_, std::io::Error>(bytes::Bytes::from(line)),
                                    (data, buffer, cut),
                                ));
                            }
                            match data.next().await {
                                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                                _ => return None,
                            }
                        }
                    }
                },
            );
            axum::response::Response::from_parts(parts, axum::body::Body::from_stream(cut))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let kubeconfig = dir.join("proxy-kubeconfig");
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
        "clusters": [{"name": "proxy", "cluster": {"server": url}}],
        "users": [{"name": "proxy", "user": {}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
    });
    std::fs::write(&kubeconfig, config.to_string()).unwrap();
    (kubeconfig, seen)
}

/// A client-go SharedInformer (the test environment's `client-go-informer`): the lines of its
/// output, read on a thread.
pub struct Informer {
    child: std::process::Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Informer {
    pub fn start(env: &TestEnv, server: &str, ns: &str, streaming: bool) -> Informer {
        let mut child = Command::new(env.control_plane().binaries().client_go_informer())
            .args([
                "--server",
                server,
                "--namespace",
                ns,
                "--resource",
                "configmaps",
            ])
            .env("KUBE_FEATURE_WatchListClient", streaming.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        Informer { child, lines }
    }

    /// The next event (skipping `kube-root-ca.crt`), within `within`.
    pub fn next(&self, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no informer event within {within:?}"));
            if event["name"] != "kube-root-ca.crt" {
                return event;
            }
        }
    }
}

impl Drop for Informer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
