//! Differential RBAC: vai's authorizer against the apiserver's own, which is the oracle. A
//! generated cluster — 40 identities (ServiceAccounts by token, users by client certificate,
//! users whose rights come only through groups), Roles, ClusterRoles (one aggregated) and
//! bindings covering every rule form — and 5,000 generated requests (get, list, watch start,
//! with and without namespace, name and `fieldSelector=metadata.name`, subresources,
//! non-resource paths, discovery) sent as the same identity to vai and to the apiserver: every
//! status code must be equal, and every `200` list hold the same items. Then the same
//! requests to vai alone with the apiserver paused: the same decisions.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::{Vai, ensure_namespace, eventually};
use vai_testenv::TestEnv;

const NAMESPACES: [&str; 4] = ["rb-0", "rb-1", "rb-2", "rb-3"];
const REQUESTS: usize = 5_000;

fn pki(env: &TestEnv, file: &str) -> PathBuf {
    env.control_plane().dir().join("pki").join(file)
}

fn certs(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    String::from_utf8_lossy(pem)
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|b| b.split("-----END CERTIFICATE-----").next())
        .map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.split_whitespace().collect::<String>())
                .unwrap()
        })
        .collect()
}

/// How an identity authenticates.
#[derive(Clone)]
enum Credential {
    Token(String),
    Certificate(String, String),
}

struct Identity {
    name: String,
    credential: Credential,
}

fn client(env: &TestEnv, url: &str, credential: &Credential) -> kube::Client {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut config = kube::Config::new(url.parse().unwrap());
    config.root_cert = Some(certs(&std::fs::read(pki(env, "ca.crt")).unwrap()));
    // Each answer as given: kube's default policy retries a 503 up to 15 times, honouring
    // `Retry-After` — what vai answers offline for what it would forward.
    config.default_retry = false;
    match credential {
        Credential::Token(t) => config.auth_info.token = Some(t.clone().into()),
        Credential::Certificate(cert, key) => {
            config.auth_info.client_certificate_data = Some(b64(cert));
            config.auth_info.client_key_data = Some(b64(key).into());
        }
    }
    kube::Client::try_from(config).unwrap()
}

/// Status code of a request, and for a `200` list its items' `namespace/name`s. A watch's
/// body is not read: only whether it may start.
async fn ask(client: &kube::Client, path: &str) -> (u16, Option<BTreeSet<String>>) {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    let sent = tokio::time::timeout(
        Duration::from_secs(20),
        client.send(request.map(kube::client::Body::from)),
    );
    let response = match sent.await {
        // No answer at all: a code no server gives.
        Err(_) => return (1, None),
        Ok(Ok(r)) => r,
        Ok(Err(kube::Error::Api(s))) => return (s.code, None),
        // Not listening yet, or the connection failed: no status.
        Ok(Err(_)) => return (0, None),
    };
    let code = response.status().as_u16();
    if code != 200 || path.contains("watch=true") {
        return (code, None);
    }
    let collected = tokio::time::timeout(
        Duration::from_secs(20),
        http_body_util::BodyExt::collect(response.into_body()),
    );
    let Ok(Ok(body)) = collected.await else {
        return (2, None);
    };
    let body = body.to_bytes();
    let items = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(|v| v["kind"].as_str().is_some_and(|k| k.ends_with("List")))
        .map(|v| {
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    format!(
                        "{}/{}",
                        i["metadata"]["namespace"].as_str().unwrap_or(""),
                        i["metadata"]["name"].as_str().unwrap_or("")
                    )
                })
                .collect()
        });
    (code, items)
}

fn pick<T: Clone>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())].clone()
}

/// One generated rule, of every form the authorizer knows.
fn rule(rng: &mut fastrand::Rng, cluster: bool) -> Value {
    if cluster && rng.u8(..6) == 0 {
        let urls = pick(
            rng,
            &[
                &["/metrics"][..],
                &["/vai/*"],
                &["*"],
                &["/version", "/apis/*"],
            ],
        );
        return json!({"nonResourceURLs": urls, "verbs": [pick(rng, &["get", "*"])]});
    }
    let verbs = pick(
        rng,
        &[
            &["get"][..],
            &["list"],
            &["get", "list"],
            &["watch", "list"],
            &["*"],
        ],
    );
    let groups = pick(rng, &[&[""][..], &["*"], &["apps"]]);
    let resources = pick(
        rng,
        &[
            &["pods"][..],
            &["configmaps"],
            &["secrets"],
            &["pods/log"],
            &["*/status"],
            &["*"],
            &["pods", "configmaps"],
        ],
    );
    let mut rule = json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    if rng.u8(..4) == 0 {
        rule["resourceNames"] = json!([pick(rng, &["obj-0", "obj-1"])]);
    }
    rule
}

/// Creates `object` with kubectl-like semantics (already there is fine).
async fn create(admin: &kube::Client, path: &str, object: Value) {
    let request = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&object).unwrap())
        .unwrap();
    match admin.request_text(request).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("POST {path}: {e}"),
    }
}

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

/// Builds the world; returns the identities.
async fn world(env: &TestEnv, admin: &kube::Client, rng: &mut fastrand::Rng) -> Vec<Identity> {
    for ns in NAMESPACES {
        ensure_namespace(admin, ns).await;
        for k in 0..2 {
            let name = format!("obj-{k}");
            let meta = json!({"name": name, "labels": {"k": k.to_string()}});
            create(
                admin,
                &format!("/api/v1/namespaces/{ns}/pods"),
                json!({"metadata": meta,
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]}}),
            )
            .await;
            create(
                admin,
                &format!("/api/v1/namespaces/{ns}/configmaps"),
                json!({"metadata": meta, "data": {"k": "v"}}),
            )
            .await;
            create(
                admin,
                &format!("/api/v1/namespaces/{ns}/secrets"),
                json!({"metadata": meta, "stringData": {"k": "v"}}),
            )
            .await;
        }
    }
    // Roles and ClusterRoles: r-0..r-5 in each namespace, c-0..c-7, one aggregated from a label.
    for ns in NAMESPACES {
        for r in 0..6 {
            let rules: Vec<Value> = (0..rng.usize(1..4)).map(|_| rule(rng, false)).collect();
            create(
                admin,
                &format!("{RBAC}/namespaces/{ns}/roles"),
                json!({"metadata": {"name": format!("r-{r}")}, "rules": rules}),
            )
            .await;
        }
    }
    for c in 0..8 {
        let rules: Vec<Value> = (0..rng.usize(1..3)).map(|_| rule(rng, true)).collect();
        create(
            admin,
            &format!("{RBAC}/clusterroles"),
            json!({"metadata": {"name": format!("rbt-c-{c}")}, "rules": rules}),
        )
        .await;
    }
    create(
        admin,
        &format!("{RBAC}/clusterroles"),
        json!({"metadata": {"name": "rbt-part", "labels": {"rbt/aggregate": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
    )
    .await;
    create(admin, &format!("{RBAC}/clusterroles"), json!({"metadata": {"name": "rbt-aggregated"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbt/aggregate": "true"}}]}, "rules": []})).await;
    eventually(
        "the aggregated ClusterRole is filled",
        Duration::from_secs(60),
        async || {
            let text = admin
                .request_text(
                    http::Request::get(format!("{RBAC}/clusterroles/rbt-aggregated"))
                        .body(Vec::new())
                        .unwrap(),
                )
                .await
                .ok()?;
            let role: Value = serde_json::from_str(&text).ok()?;
            role["rules"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
                .then_some(())
        },
    )
    .await;
    let mut cluster_roles: Vec<String> = (0..8).map(|c| format!("rbt-c-{c}")).collect();
    cluster_roles.extend([
        "rbt-aggregated".to_string(),
        "view".to_string(),
        "rbt-missing".to_string(),
    ]);

    // Identities: 16 ServiceAccounts, 16 users by certificate (half with a group), 8 users
    // whose rights come only through their group.
    let mut identities = Vec::new();
    let mut subjects = Vec::new();
    for i in 0..16 {
        let ns = NAMESPACES[i % 4];
        let name = format!("sa-{i}");
        create(
            admin,
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            json!({"metadata": {"name": name}}),
        )
        .await;
        let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
        let token = api
            .create_token_request(&name, &PostParams::default(), &TokenRequest::default())
            .await
            .unwrap()
            .status
            .unwrap()
            .token
            .unwrap();
        identities.push(Identity {
            name: format!("system:serviceaccount:{ns}:{name}"),
            credential: Credential::Token(token),
        });
        // With its namespace, or without (a RoleBinding's own namespace then applies).
        let subject = if rng.bool() {
            json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
        } else {
            json!({"kind": "ServiceAccount", "name": name})
        };
        subjects.push((subject, Some(ns)));
    }
    for i in 0..24 {
        let (name, group) = if i < 16 {
            (
                format!("user-{i}"),
                (i % 2 == 0).then(|| format!("team-{}", i % 4)),
            )
        } else {
            (format!("member-{i}"), Some(format!("crew-{}", i % 3)))
        };
        let (cert, key) = env
            .control_plane()
            .pki()
            .client_certificate(&name, group.as_deref())
            .unwrap();
        identities.push(Identity {
            name: name.clone(),
            credential: Credential::Certificate(cert, key),
        });
        if i < 16 {
            subjects.push((json!({"kind": "User", "name": name}), None));
        }
    }
    for g in [
        "team-0",
        "team-2",
        "crew-0",
        "crew-1",
        "crew-2",
        "system:serviceaccounts:rb-1",
        "system:serviceaccounts",
    ] {
        subjects.push((json!({"kind": "Group", "name": g}), None));
    }
    // Bindings: each subject 2-5, as RoleBinding to a Role or ClusterRole, or ClusterRoleBinding.
    let mut n = 0;
    for (subject, home) in &subjects {
        for _ in 0..rng.usize(2..6) {
            n += 1;
            let ns = match home {
                Some(home) if rng.bool() => *home,
                _ => NAMESPACES[rng.usize(..4)],
            };
            match rng.u8(..3) {
                0 => {
                    let role = format!("r-{}", rng.usize(..7)); // r-6 does not exist
                    create(admin, &format!("{RBAC}/namespaces/{ns}/rolebindings"), json!({"metadata": {"name": format!("rbt-b-{n}")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": [subject]})).await;
                }
                1 => {
                    let role = pick(rng, &cluster_roles);
                    create(admin, &format!("{RBAC}/namespaces/{ns}/rolebindings"), json!({"metadata": {"name": format!("rbt-b-{n}")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": [subject]})).await;
                }
                _ if rng.bool() => {
                    let role = pick(rng, &cluster_roles);
                    // A ClusterRoleBinding's ServiceAccount subject must name its namespace.
                    let mut subject = subject.clone();
                    if let Some(home) = home {
                        subject["namespace"] = json!(home);
                    }
                    create(admin, &format!("{RBAC}/clusterrolebindings"), json!({"metadata": {"name": format!("rbt-cb-{n}")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": [subject]})).await;
                }
                _ => {}
            }
        }
    }
    identities
}

/// One generated request path.
fn request(rng: &mut fastrand::Rng) -> String {
    let ns = pick(rng, &NAMESPACES);
    let resource = pick(rng, &["pods", "configmaps", "secrets"]);
    let name = pick(rng, &["obj-0", "obj-1", "missing"]);
    match rng.u8(..10) {
        0 | 1 => format!("/api/v1/namespaces/{ns}/{resource}/{name}"),
        2 | 3 => format!("/api/v1/namespaces/{ns}/{resource}"),
        4 => format!("/api/v1/{resource}"),
        5 => format!("/api/v1/namespaces/{ns}/{resource}?fieldSelector=metadata.name%3D{name}"),
        6 => match rng.u8(..3) {
            0 => format!("/api/v1/namespaces/{ns}/{resource}?watch=true&timeoutSeconds=1"),
            1 => format!("/api/v1/{resource}?watch=true&timeoutSeconds=1"),
            _ => format!(
                "/api/v1/namespaces/{ns}/{resource}?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3D{name}"
            ),
        },
        7 => format!(
            "/api/v1/namespaces/{ns}/pods/{name}/{}",
            pick(rng, &["status", "log"])
        ),
        8 => pick(
            rng,
            &[
                "/version",
                "/healthz",
                "/api",
                "/apis",
                "/apis/apps",
                "/api/v1",
                "/apis/apps/v1",
                "/metrics",
                "/openapi/v2",
            ],
        )
        .to_string(),
        _ => format!("/api/v1/namespaces/{ns}"),
    }
}

/// Whether vai forwards the request (so offline it cannot answer, only refuse). OpenAPI
/// documents are forwarded too, but kept: offline, vai answers what upstream answered online
/// (the online phase asked for them through vai).
fn forwarded(path: &str) -> bool {
    path.ends_with("/status") || path.ends_with("/log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vai_decides_as_the_apiserver_online_and_offline() {
    let seed = std::env::var("VAI_RBAC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("seed {seed} (VAI_RBAC_SEED)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let env = TestEnv::shared().await;
    let admin = env.client().await.unwrap();
    let started = Instant::now();
    let identities = world(env, &admin, &mut rng).await;
    println!(
        "world: {} identities in {:?}",
        identities.len(),
        started.elapsed()
    );
    let dir = tempfile::tempdir().unwrap();
    let (_vai, vai_url) = Vai::spawn_rbac(env, dir.path(), &[]);
    let upstream = env.control_plane().apiserver_url();
    let admin_credential = Credential::Token(env.control_plane().admin_token().to_string());
    // vai holds the world once the last binding made is visible through it.
    let as_admin = client(env, &vai_url, &admin_credential);
    let direct_admin = client(env, &upstream, &admin_credential);
    for path in [
        format!("{RBAC}/rolebindings"),
        format!("{RBAC}/clusterrolebindings"),
        format!("{RBAC}/roles"),
        "/api/v1/serviceaccounts".to_string(),
    ] {
        let want = ask(&direct_admin, &path).await.1;
        eventually(
            "vai holds the RBAC objects",
            Duration::from_secs(60),
            async || {
                let (code, items) = ask(&as_admin, &path).await;
                (code == 200 && items == want).then_some(())
            },
        )
        .await;
    }

    let clients: Vec<(kube::Client, kube::Client)> = identities
        .iter()
        .map(|i| {
            (
                client(env, &vai_url, &i.credential),
                client(env, &upstream, &i.credential),
            )
        })
        .collect();
    let requests: Vec<(usize, String)> = (0..REQUESTS)
        .map(|_| (rng.usize(..identities.len()), request(&mut rng)))
        .collect();
    let started = Instant::now();
    let online: Vec<_> = futures::stream::iter(requests.iter().cloned())
        .map(|(who, path)| {
            let (through, direct) = clients[who].clone();
            async move {
                let (vai, apiserver) = tokio::join!(ask(&through, &path), ask(&direct, &path));
                (who, path, vai, apiserver)
            }
        })
        .buffered(16)
        .collect()
        .await;
    let disagreements: Vec<_> = online.iter().filter(|(_, _, vai, up)| vai != up).collect();
    let allowed = online.iter().filter(|(_, _, _, up)| up.0 != 403).count();
    println!(
        "online: {} requests compared in {:?}, {} allowed / {} forbidden by the apiserver, {} disagreements",
        online.len(),
        started.elapsed(),
        allowed,
        online.len() - allowed,
        disagreements.len()
    );
    for (who, path, vai, up) in disagreements.iter().take(20) {
        println!(
            "  {} GET {path}: vai {vai:?}, apiserver {up:?}",
            identities[*who].name
        );
    }
    assert!(
        allowed > REQUESTS / 5 && online.len() - allowed > REQUESTS / 5,
        "a mix of decisions"
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements",
        disagreements.len()
    );

    env.pause_apiserver().unwrap();
    // New clients: nothing carried over from the online connections.
    let offline_clients: Vec<kube::Client> = identities
        .iter()
        .map(|i| client(env, &vai_url, &i.credential))
        .collect();
    let started = Instant::now();
    let offline: Vec<_> = futures::stream::iter(online.iter())
        .map(|(who, path, _, up)| {
            let through = offline_clients[*who].clone();
            async move { (who, path, up.clone(), ask(&through, path).await) }
        })
        .buffered(16)
        .collect()
        .await;
    env.resume_apiserver().unwrap();
    let wrong: Vec<_> = offline
        .iter()
        .filter(|(_, path, up, vai)| {
            if forwarded(path) {
                // Forwarded: refused as online, or unavailable where allowed.
                vai.0 != if up.0 == 403 { 403 } else { 503 }
            } else {
                up != vai
            }
        })
        .collect();
    println!(
        "offline: {} requests to vai alone in {:?}, {} disagreements",
        offline.len(),
        started.elapsed(),
        wrong.len()
    );
    for (who, path, up, vai) in wrong.iter().take(20) {
        println!(
            "  {} GET {path}: vai {vai:?}, apiserver (online) {up:?}",
            identities[**who].name
        );
    }
    assert!(wrong.is_empty(), "{} offline disagreements", wrong.len());
}
