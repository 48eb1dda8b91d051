//! Identity and access through vai against the real apiserver: TLS, ServiceAccount tokens
//! verified locally (online and with the apiserver paused), other tokens through TokenReview,
//! 401 for what vai cannot verify, RBAC decided as the apiserver decides it (403 worded the
//! same), access reviews answered for the caller, writes made upstream as the caller, and an
//! RBAC change taking effect at once, open watches included.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use std::process::Command;

use support::{Vai, ensure_namespace, eventually};
use vai_testenv::TestEnv;

const NS: &str = "access-tokens";

/// The tests here share one control plane, and some pause its apiserver: those run alone
/// (write), the others beside each other (read).
static APISERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn pki(env: &TestEnv, file: &str) -> PathBuf {
    env.control_plane().dir().join("pki").join(file)
}

/// A client for `url` (vai or the apiserver) presenting `token` (or nothing).
fn client_as(env: &TestEnv, url: &str, token: Option<&str>) -> kube::Client {
    let ca = std::fs::read(pki(env, "ca.crt")).unwrap();
    let mut config = kube::Config::new(url.parse().unwrap());
    config.root_cert = Some(
        rustls_pemfile_certs(&ca)
            .into_iter()
            .map(|c| c.to_vec())
            .collect(),
    );
    if let Some(token) = token {
        config.auth_info.token = Some(token.to_string().into());
    }
    kube::Client::try_from(config).unwrap()
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|block| block.split("-----END CERTIFICATE-----").next())
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.split_whitespace().collect::<String>())
                .unwrap()
        })
        .collect()
}

/// A client for `url` presenting a client certificate (PEM certificate and key).
fn client_with_certificate(env: &TestEnv, url: &str, cert: &str, key: &str) -> kube::Client {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut config = kube::Config::new(url.parse().unwrap());
    config.root_cert = Some(rustls_pemfile_certs(
        &std::fs::read(pki(env, "ca.crt")).unwrap(),
    ));
    config.auth_info.client_certificate_data = Some(b64(cert));
    config.auth_info.client_key_data = Some(b64(key).into());
    kube::Client::try_from(config).unwrap()
}

/// Status code and body of `method path` (with `body`).
async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(body.unwrap_or("").as_bytes().to_vec())
        .unwrap();
    match client.send(request.map(kube::client::Body::from)).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            (status, body)
        }
        Err(kube::Error::Api(status)) => (status.code, status.message),
        // Not listening yet, or the connection failed: no status.
        Err(e) => (0, format!("{method} {path}: {e}")),
    }
}

fn message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `kubectl auth can-i ARGS` against `url` as the holder of `token`: its output and whether
/// it said yes.
fn can_i(env: &TestEnv, url: &str, token: &str, args: &[&str]) -> (String, bool) {
    let out = Command::new(env.control_plane().binaries().kubectl())
        .args([
            "--kubeconfig",
            "/dev/null",
            "--server",
            url,
            "--token",
            token,
        ])
        .arg("--certificate-authority")
        .arg(pki(env, "ca.crt"))
        .args(["auth", "can-i"])
        .args(args)
        .output()
        .unwrap();
    if !out.stderr.is_empty() {
        eprintln!(
            "kubectl auth can-i {args:?} at {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

async fn token_for(admin: &kube::Client, sa: &str, pod: Option<(&str, &str)>) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    api.create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap()
}

/// A token with the claims of `token`, signed by a key the cluster never had.
fn forged(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )
    .unwrap()
}

/// `token` with its validity moved back by `seconds`, signed again with the cluster's own
/// ServiceAccount key (so nothing but its times differ).
fn resigned(env: &TestEnv, token: &str, seconds: i64) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let header: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts.next().unwrap()).unwrap()).unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts.next().unwrap()).unwrap()).unwrap();
    for time in ["exp", "iat", "nbf"] {
        claims[time] = serde_json::json!(claims[time].as_i64().unwrap() - seconds);
    }
    let pem = std::fs::read_to_string(pki(env, "service-account.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    jwt_header.kid = header["kid"].as_str().map(str::to_string);
    jsonwebtoken::encode(
        &jwt_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )
    .unwrap()
}

/// The apiserver's audit event of the create of `name`, once it is logged.
async fn audited(env: &TestEnv, name: &str) -> serde_json::Value {
    eventually(
        "the write is audited",
        Duration::from_secs(30),
        async || {
            let log = std::fs::read_to_string(env.control_plane().audit_log_path()).ok()?;
            log.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| {
                    e["verb"] == "create"
                        && e["objectRef"]["name"] == name
                        && e["stage"] == "ResponseComplete"
                })
        },
    )
    .await
}

async fn setup(admin: &kube::Client) -> String {
    ensure_namespace(admin, NS).await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    for name in ["reader", "writer"] {
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        let _ = sas.create(&PostParams::default(), &sa).await;
    }
    let roles: Api<Role> = Api::namespaced(admin.clone(), NS);
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NS);
    for (name, resource, verbs) in [
        ("pod-reader", "pods", vec!["get", "list", "watch"]),
        ("configmap-writer", "configmaps", vec!["create"]),
    ] {
        let role: Role = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": [resource], "verbs": verbs}],
        }))
        .unwrap();
        let _ = roles.create(&PostParams::default(), &role).await;
    }
    for (name, role) in [
        ("cert-team-reads", "pod-reader"),
        ("cert-team-writes", "configmap-writer"),
    ] {
        let by_certificate: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "Group", "name": "cert-team"}],
        }))
        .unwrap();
        let _ = bindings
            .create(&PostParams::default(), &by_certificate)
            .await;
    }
    for (name, role, sa) in [
        ("reader-reads", "pod-reader", "reader"),
        ("writer-writes", "configmap-writer", "writer"),
    ] {
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}],
        }))
        .unwrap();
        let _ = bindings.create(&PostParams::default(), &binding).await;
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "holder"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}],
                 "serviceAccountName": "reader"},
    }))
    .unwrap();
    let _ = pods.create(&PostParams::default(), &pod).await;
    pods.get("holder").await.unwrap().metadata.uid.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_authenticated_and_authorized_as_the_apiserver_would_online_and_offline() {
    let _alone = APISERVER.write().await;
    let env = TestEnv::shared().await;
    let admin = env.client().await.unwrap();
    let pod_uid = setup(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let (_vai, vai_url) = Vai::spawn_rbac(
        env,
        dir.path(),
        &["--authentication-token-webhook-cache-ttl", "3s"],
    );
    let upstream = env.control_plane().apiserver_url();
    let admin_token = env.control_plane().admin_token().to_string();
    let reader = token_for(&admin, "reader", Some(("holder", &pod_uid))).await;
    let writer = token_for(&admin, "writer", None).await;
    let through = |token: &str| client_as(env, &vai_url, Some(token));
    let direct = |token: &str| client_as(env, &upstream, Some(token));
    let as_admin = through(&admin_token);
    eventually(
        "vai serves the pods as the admin",
        Duration::from_secs(60),
        async || {
            let (code, body) = call(
                &as_admin,
                "GET",
                &format!("/api/v1/namespaces/{NS}/pods"),
                None,
            )
            .await;
            (code == 200 && body.contains("holder")).then_some(())
        },
    )
    .await;

    let in_ns = format!("/api/v1/namespaces/{NS}/pods");
    // The reader's Role and RoleBinding are synced as types of their own: once vai holds both,
    // the reader may list.
    let body = eventually(
        "the reader's rights reach vai",
        Duration::from_secs(60),
        async || {
            let (code, body) = call(&through(&reader), "GET", &in_ns, None).await;
            (code == 200).then_some(body)
        },
    )
    .await;
    assert!(body.contains("\"holder\""), "{body}");
    // A client certificate signed by the cluster's client CA: its group grants the reads.
    let (cert, key) = env
        .control_plane()
        .pki()
        .client_certificate("cert-alice", Some("cert-team"))
        .unwrap();
    let by_cert = client_with_certificate(env, &vai_url, &cert, &key);
    let direct_cert = client_with_certificate(env, &upstream, &cert, &key);
    assert_eq!(call(&direct_cert, "GET", &in_ns, None).await.0, 200);
    assert_eq!(call(&by_cert, "GET", &in_ns, None).await.0, 200);
    let (code, body) = call(&by_cert, "GET", "/api/v1/pods", None).await;
    assert_eq!(code, 403, "{body}");
    assert!(message(&body).contains(r#"User "cert-alice""#), "{body}");

    // Denied as upstream denies it, in the same words.
    for path in [
        "/api/v1/pods",
        &format!("/api/v1/namespaces/{NS}/configmaps"),
    ] {
        let (vai_code, vai_body) = call(&through(&reader), "GET", path, None).await;
        let (up_code, up_body) = call(&direct(&reader), "GET", path, None).await;
        assert_eq!(
            (vai_code, up_code),
            (403, 403),
            "{path}: {vai_body} / {up_body}"
        );
        assert_eq!(message(&vai_body), message(&up_body), "{path}");
    }
    let anonymous = client_as(env, &vai_url, None);
    // Re-signed as it was, the token still works; moved two hours back, it has expired.
    let same = resigned(env, &reader, 0);
    assert_eq!(call(&through(&same), "GET", &in_ns, None).await.0, 200);
    let stale = resigned(env, &reader, 7200);
    for (who, client) in [
        ("no credentials", anonymous),
        ("garbage", through("garbage")),
        ("a forged token", through(&forged(&reader))),
        ("an expired token", through(&stale)),
    ] {
        let (code, body) = call(&client, "GET", &in_ns, None).await;
        assert_eq!(code, 401, "{who}: {body}");
    }
    assert_eq!(call(&direct(&stale), "GET", &in_ns, None).await.0, 401);
    // The static admin token goes through a TokenReview.
    assert_eq!(call(&as_admin, "GET", "/api/v1/pods", None).await.0, 200);

    // Access reviews answer for the caller, not for vai.
    let review = |verb: &str, resource: &str| {
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": NS}}})
        .to_string()
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    for (verb, resource, allowed) in [("list", "pods", true), ("list", "secrets", false)] {
        let (code, body) = call(
            &through(&reader),
            "POST",
            path,
            Some(&review(verb, resource)),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer["status"]["allowed"], allowed,
            "{verb} {resource}: {body}"
        );
    }

    // A rules review without a namespace is refused as the apiserver refuses it.
    let rules = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
    let no_namespace = serde_json::json!({"apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview", "spec": {}})
    .to_string();
    let (code, body) = call(&through(&reader), "POST", rules, Some(&no_namespace)).await;
    let (up_code, up_body) = call(&direct(&reader), "POST", rules, Some(&no_namespace)).await;
    assert_eq!((code, message(&body)), (up_code, message(&up_body)));
    assert_eq!(code, 400);

    // kubectl auth can-i prints through vai what it prints against the apiserver.
    let questions: [&[&str]; 4] = [
        &["--list", "-n", NS],
        &["list", "pods", "-n", NS],
        &["list", "pods", "-A"],
        &["get", "secrets", "-n", NS],
    ];
    let mut online = Vec::new();
    for args in questions {
        let through_vai = can_i(env, &vai_url, &reader, args);
        assert_eq!(
            through_vai,
            can_i(env, &upstream, &reader, args),
            "{args:?}"
        );
        online.push(through_vai);
    }
    assert!(online[1].1 && !online[2].1 && !online[3].1, "{online:?}");
    assert!(online[0].0.contains("pods"), "{}", online[0].0);

    // Writes are made upstream as the caller.
    let configmap = |name: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
            .to_string()
    };
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let (code, body) = call(
        &through(&reader),
        "POST",
        &cms,
        Some(&configmap("by-reader")),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        message(&body).contains("system:serviceaccount:access-tokens:reader"),
        "{body}"
    );
    let by_token = format!("by-writer-{}", std::process::id());
    let (code, body) = call(&through(&writer), "POST", &cms, Some(&configmap(&by_token))).await;
    assert_eq!(code, 201, "{body}");
    let by_certificate = format!("by-cert-alice-{}", std::process::id());
    let (code, body) = call(&by_cert, "POST", &cms, Some(&configmap(&by_certificate))).await;
    assert_eq!(code, 201, "{body}");
    // Upstream's audit log says who wrote each: the token's own user (the token was forwarded
    // as it is), and the certificate's user impersonated by vai — never vai alone.
    let event = audited(env, &by_token).await;
    assert_eq!(
        event["user"]["username"], "system:serviceaccount:access-tokens:writer",
        "{event}"
    );
    assert!(event["impersonatedUser"].is_null(), "{event}");
    let event = audited(env, &by_certificate).await;
    assert_eq!(
        event["impersonatedUser"]["username"], "cert-alice",
        "{event}"
    );
    assert_ne!(event["user"]["username"], "cert-alice", "{event}");

    // Offline: bound tokens are still verified, decisions still made; a reviewed token lasts
    // only as long as its cached review.
    env.pause_apiserver().unwrap();
    let offline = async {
        let (code, body) = call(&through(&reader), "GET", &in_ns, None).await;
        assert_eq!(code, 200, "offline: {body}");
        assert_eq!(
            call(&through(&reader), "GET", "/api/v1/pods", None).await.0,
            403
        );
        assert_eq!(call(&through("garbage"), "GET", &in_ns, None).await.0, 401);
        assert_eq!(call(&through(&stale), "GET", &in_ns, None).await.0, 401);
        assert_eq!(
            call(&by_cert, "GET", &in_ns, None).await.0,
            200,
            "a certificate, offline"
        );
        assert_eq!(
            call(&through(&forged(&reader)), "GET", &in_ns, None)
                .await
                .0,
            401
        );
        for (args, answer) in questions.iter().zip(&online) {
            assert_eq!(
                &can_i(env, &vai_url, &reader, args),
                answer,
                "offline: {args:?}"
            );
        }
        eventually(
            "the static token's review expires offline",
            Duration::from_secs(30),
            async || (call(&as_admin, "GET", &in_ns, None).await.0 == 401).then_some(()),
        )
        .await;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(90), offline).await;
    env.resume_apiserver().unwrap();
    outcome.expect("offline answers within 90 s");

    // An RBAC change takes effect at once: the binding goes, and so do the reads and the watch.
    let watch = tokio::spawn({
        let client = through(&reader);
        let path = format!("{in_ns}?watch=true&timeoutSeconds=120");
        async move { call(&client, "GET", &path, None).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NS);
    let removed = Instant::now();
    bindings
        .delete("reader-reads", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the reader loses its reads",
        Duration::from_secs(30),
        async || (call(&through(&reader), "GET", &in_ns, None).await.0 == 403).then_some(()),
    )
    .await;
    println!(
        "RBAC change effective through vai after {:?}",
        removed.elapsed()
    );
    let (code, stream) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the watch ends")
        .unwrap();
    assert_eq!(code, 200);
    let last: serde_json::Value =
        serde_json::from_str(stream.lines().last().expect("an event")).unwrap();
    assert_eq!(last["type"], "ERROR", "{stream}");
    assert_eq!(last["object"]["code"], 403, "{stream}");

    // A token of a deleted pod stops working.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    pods.delete(
        "holder",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    eventually(
        "the deleted pod's token is refused",
        Duration::from_secs(30),
        async || (call(&through(&reader), "GET", "/version", None).await.0 == 401).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_count_only_what_the_caller_may_list_and_rbac_changes_apply_at_once() {
    let _beside = APISERVER.read().await;
    let env = TestEnv::shared().await;
    let admin = env.client().await.unwrap();
    const SPACES: [&str; 3] = ["scope-a", "scope-b", "scope-c"];
    for (i, ns) in SPACES.iter().enumerate() {
        ensure_namespace(&admin, ns).await;
        let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
        for k in 0..=i {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("p{k}")},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]},
            }))
            .unwrap();
            let _ = pods.create(&PostParams::default(), &pod).await;
        }
    }
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "scope-a");
    for name in ["two-spaces", "nothing", "flipper"] {
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        let _ = sas.create(&PostParams::default(), &sa).await;
    }
    // `two-spaces` may list pods in scope-a and scope-c, through a ClusterRole bound per namespace.
    for ns in ["scope-a", "scope-c"] {
        let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), ns);
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "two-spaces-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "two-spaces", "namespace": "scope-a"}],
        }))
        .unwrap();
        let _ = bindings.create(&PostParams::default(), &binding).await;
    }
    let token = |sa: &'static str| {
        let admin = admin.clone();
        async move {
            let api: Api<ServiceAccount> = Api::namespaced(admin, "scope-a");
            api.create_token_request(sa, &PostParams::default(), &TokenRequest::default())
                .await
                .unwrap()
                .status
                .unwrap()
                .token
                .unwrap()
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (_vai, url) = Vai::spawn_rbac(env, dir.path(), &[]);
    let as_admin = client_as(env, &url, Some(env.control_plane().admin_token()));
    let query = "/api/v1/pods?filter=metadata.namespace~scope-&sort=metadata.name&pagesize=50&summary=metadata.namespace";
    let page = |client: kube::Client| async move {
        let (code, body) = call(&client, "GET", query, None).await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let everything = eventually(
        "vai holds every scope pod",
        Duration::from_secs(60),
        async || {
            let (code, body) = call(&as_admin, "GET", query, None).await;
            let page: serde_json::Value = serde_json::from_str(&body).ok()?;
            (code == 200 && page["total"] == 6).then_some(page)
        },
    )
    .await;
    assert_eq!(
        everything["summary"]["metadata.namespace"]
            .as_object()
            .unwrap()
            .len(),
        3
    );

    // Once vai holds the new bindings, the page holds what they grant.
    let two_client = client_as(env, &url, Some(&token("two-spaces").await));
    let two = eventually(
        "vai holds the bindings",
        Duration::from_secs(30),
        async || {
            let page = page(two_client.clone()).await;
            (page["total"] == 4).then_some(page)
        },
    )
    .await;
    let namespaces: BTreeSet<&str> = two["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["scope-a", "scope-c"]));
    assert_eq!(two["total"], 1 + 3, "{two}");
    assert_eq!(
        two["summary"]["metadata.namespace"],
        serde_json::json!({"scope-a": 1, "scope-c": 3})
    );
    // The Kubernetes list keeps Kubernetes' answer.
    assert_eq!(call(&two_client, "GET", "/api/v1/pods", None).await.0, 403);
    let none = page(client_as(env, &url, Some(&token("nothing").await))).await;
    assert_eq!(
        (none["total"].clone(), none["items"].clone()),
        (serde_json::json!(0), serde_json::json!([]))
    );

    // RBAC changes, one after another: each is in effect through vai soon after upstream took it.
    let flipper = client_as(env, &url, Some(&token("flipper").await));
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "scope-b");
    let path = "/api/v1/namespaces/scope-b/pods";
    let mut delays = Vec::new();
    for round in 0..10 {
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "flipper-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "flipper", "namespace": "scope-a"}],
        }))
        .unwrap();
        assert_eq!(
            call(&flipper, "GET", path, None).await.0,
            403,
            "round {round}"
        );
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        let added = Instant::now();
        eventually(
            "the grant takes effect",
            Duration::from_secs(30),
            async || (call(&flipper, "GET", path, None).await.0 == 200).then_some(()),
        )
        .await;
        delays.push(added.elapsed());
        bindings
            .delete("flipper-view", &DeleteParams::default())
            .await
            .unwrap();
        let removed = Instant::now();
        eventually(
            "the withdrawal takes effect",
            Duration::from_secs(30),
            async || (call(&flipper, "GET", path, None).await.0 == 403).then_some(()),
        )
        .await;
        delays.push(removed.elapsed());
    }
    delays.sort();
    println!(
        "{} RBAC changes through vai: p50 {:?}, p99 {:?} (polled every 50 ms, debug build)",
        delays.len(),
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100]
    );
}

/// Off loopback without certificate files, vai makes its own CA and serving certificate;
/// `vai kubeconfig` writes a private kubeconfig that trusts it, for the calling user's own
/// credentials; kubectl with it works for a user with a client certificate — as far as that
/// user's rights go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_off_loopback_with_vais_own_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let _beside = APISERVER.read().await;
    let env = TestEnv::shared().await;
    let admin = env.client().await.unwrap();
    setup(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let listen = format!("0.0.0.0:{port}");
    let vai = Vai::spawn(
        env,
        dir.path(),
        port,
        &["--listen", &listen, "--authorization-mode", "RBAC"],
    );
    // The user's own kubeconfig: the cluster, and a client certificate signed by its CA.
    let (cert, key) = env
        .control_plane()
        .pki()
        .client_certificate("cert-bob", Some("cert-team"))
        .unwrap();
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let ca = std::fs::read_to_string(pki(env, "ca.crt")).unwrap();
    let own = dir.path().join("bob.kubeconfig");
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": env.control_plane().apiserver_url(),
            "certificate-authority-data": b64(&ca)}}],
        "users": [{"name": "bob", "user": {
            "client-certificate-data": b64(&cert), "client-key-data": b64(&key)}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "bob"}}],
        "current-context": "test",
    });
    std::fs::write(&own, kubeconfig.to_string()).unwrap();
    let through_vai = dir.path().join("vai.kubeconfig");
    // vai writes its certificate as it starts.
    eventually(
        "vai kubeconfig finds vai's certificate",
        Duration::from_secs(60),
        async || {
            let out = Command::new(env!("CARGO_BIN_EXE_vai"))
                .arg("kubeconfig")
                .arg("--kubeconfig")
                .arg(&own)
                .arg("--db")
                .arg(&vai.db)
                .args(["--server", &format!("https://127.0.0.1:{port}"), "-o"])
                .arg(&through_vai)
                .output()
                .unwrap();
            out.status.success().then_some(())
        },
    )
    .await;
    let mode = std::fs::metadata(&through_vai)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the kubeconfig holds a key: private");
    let kubectl = |args: &[&str]| {
        let out = Command::new(env.control_plane().binaries().kubectl())
            .arg("--kubeconfig")
            .arg(&through_vai)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let listed = eventually(
        "kubectl lists the pods through vai",
        Duration::from_secs(60),
        async || {
            let (ok, out, _) = kubectl(&["get", "pods", "-n", NS, "-o", "name"]);
            (ok && out.contains("pod/holder")).then_some(out)
        },
    )
    .await;
    assert!(listed.contains("pod/holder"), "{listed}");
    let (ok, _, err) = kubectl(&["get", "pods", "-A"]);
    assert!(!ok, "bob may not list pods cluster-wide");
    assert!(
        err.contains("User \"cert-bob\" cannot list resource \"pods\""),
        "{err}"
    );
}

/// With `--confirm-denials`, what vai's RBAC denies is asked of upstream while it answers: a
/// node (the Node authorizer, which vai does not evaluate, allows it to list services) gets
/// through vai what it gets from the apiserver, and what upstream denies too stays denied in
/// the apiserver's words; offline, RBAC alone decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_confirmed_upstream_for_authorizers_vai_does_not_evaluate() {
    let _alone = APISERVER.write().await;
    let env = TestEnv::shared().await;
    let admin = env.client().await.unwrap();
    setup(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let (_vai, vai_url) = Vai::spawn_rbac(env, dir.path(), &["--confirm-denials"]);
    let upstream = env.control_plane().apiserver_url();
    let (node_cert, node_key) = env
        .control_plane()
        .pki()
        .client_certificate("system:node:vai-n1", Some("system:nodes"))
        .unwrap();
    let node = client_with_certificate(env, &vai_url, &node_cert, &node_key);
    let node_direct = client_with_certificate(env, &upstream, &node_cert, &node_key);
    let services = "/api/v1/services";
    let (code, body) = call(&node_direct, "GET", services, None).await;
    assert_eq!(
        code, 200,
        "the Node authorizer allows a node to list services: {body}"
    );
    // RBAC alone (the cluster binds system:node to nobody) denies it.
    let deployments = format!("/apis/apps/v1/namespaces/{NS}/deployments");
    let (code, _) = call(&node_direct, "GET", &deployments, None).await;
    assert_eq!(code, 403, "a node may not list deployments");
    // The apiserver words a denial with the default roles it has not created yet ("RBAC:
    // [clusterrole … not found]") until its bootstrap ends: compare words after it.
    eventually(
        "the apiserver's default roles exist",
        Duration::from_secs(60),
        async || {
            let (_, body) = call(&node_direct, "GET", &deployments, None).await;
            (!message(&body).contains("not found")).then_some(())
        },
    )
    .await;
    // Upstream confirms even before vai has synced RBAC; wait for vai's own decisions.
    let (code, body) = eventually("vai has synced RBAC", Duration::from_secs(60), async || {
        let (code, body) = call(&node, "GET", &deployments, None).await;
        (code != 0 && !body.contains("has not synced")).then_some((code, body))
    })
    .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = call(&node, "GET", services, None).await;
    assert_eq!(code, 200, "confirmed upstream: {body}");
    let (_, denied) = call(&node, "GET", &deployments, None).await;
    assert_eq!(
        message(&denied),
        message(&call(&node_direct, "GET", &deployments, None).await.1),
        "denied in the apiserver's words"
    );
    // Offline, vai's RBAC decides alone.
    env.pause_apiserver().unwrap();
    let offline = eventually(
        "vai knows upstream is away",
        Duration::from_secs(30),
        async || {
            let (code, _) = call(&node, "GET", services, None).await;
            (code == 403).then_some(code)
        },
    )
    .await;
    env.resume_apiserver().unwrap();
    assert_eq!(offline, 403);
}
