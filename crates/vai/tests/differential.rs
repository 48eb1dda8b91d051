//! The same generated read requests — valid, hostile and random — to vai and to the real
//! apiserver it caches, every answer compared: the status code, an error's `reason`, and a
//! list's or object's content. The differences allowed are listed in `allowed` with their
//! reasons; anything else fails the test with every mismatch reported at once.

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use support::{Vai, eventually};
use vai_testenv::TestEnv;

const NS: &str = "t-diff";

/// A small deterministic generator (xorshift), so a failure can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// What an answer is compared by.
#[derive(Debug, PartialEq)]
struct Seen {
    code: u16,
    /// An error's `reason`, or the kind of what was answered.
    what: String,
    /// The names of a list's items, or an object's name.
    names: Vec<String>,
    /// The items of a list, or the object, whole (but `metadata.managedFields`, which vai
    /// drops by default); tables are compared by their rows' names only (ages are computed
    /// when asked).
    objects: Vec<serde_json::Value>,
}

async fn ask(client: &kube::Client, path: &str, accept: Option<&str>) -> Seen {
    let mut request = http::Request::get(path);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let request = request.body(Vec::new()).unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.send(request.map(Into::into)),
    )
    .await
    .expect("an answer within 30 s")
    .expect("an HTTP answer");
    let code = response.status().as_u16();
    let body = tokio::time::timeout(
        Duration::from_secs(30),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("a whole body within 30 s")
    .map(|b| b.to_bytes())
    .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let what = if json["kind"] == "Status" {
        json["reason"].as_str().unwrap_or_default().to_string()
    } else if json.is_null() {
        format!(
            "non-JSON: {}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        )
    } else {
        json["kind"].as_str().unwrap_or_default().to_string()
    };
    let mut names: Vec<String> = match json["items"].as_array() {
        Some(items) => items
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str().map(String::from))
            .collect(),
        None => json["metadata"]["name"]
            .as_str()
            .map(String::from)
            .into_iter()
            .collect(),
    };
    // The apiserver's own objects in the namespace (its root CA) are not generated here.
    names.retain(|n| n != "kube-root-ca.crt");
    let mut objects: Vec<serde_json::Value> =
        match (json["kind"].as_str(), json["items"].as_array()) {
            (Some("Table" | "Status"), _) | (None, _) => Vec::new(),
            (_, Some(items)) => items.clone(),
            // The apiserver writes an empty metadata list's items as `null` (Go's nil slice),
            // vai as `[]`: the same to every client.
            (_, None) if json.get("items").is_some() => Vec::new(),
            (_, None) => vec![json.clone()],
        };
    objects.retain(|o| o["metadata"]["name"] != "kube-root-ca.crt");
    for object in &mut objects {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
    }
    Seen {
        code,
        what,
        names,
        objects,
    }
}

/// The requests: lists, gets and their parameters, with hostile values mixed in.
fn requests(seed: u64, n: usize) -> Vec<(String, Option<&'static str>)> {
    let mut rng = Rng(seed);
    let paths = [
        "/api/v1/namespaces/t-diff/configmaps",
        "/api/v1/namespaces/t-diff/nothings",
        "/api/v1/namespaces/t-diff/configmaps/c1/status",
        "/api/v1/namespaces/t-diff/configmaps/c1",
        "/api/v1/namespaces/t-diff/configmaps/c7",
        "/api/v1/namespaces/t-diff/configmaps/nope",
        "/api/v1/namespaces/t-diff",
        "/api/v1/namespaces",
        // Discovery: compared by status and kind (its content is upstream's at vai's last
        // look, and other tests on this control plane add types meanwhile).
        "/api",
        "/api/v1",
        "/apis",
    ];
    let params = [
        "labelSelector=app%3Dweb",
        "labelSelector=app%20in%20(web,db)",
        "labelSelector=app%20in%20(",
        "labelSelector=%21app",
        "labelSelector=a%3D%3Db%3Dc",
        "fieldSelector=metadata.name%3Dc1",
        "fieldSelector=metadata.name%21%3Dc1",
        "fieldSelector=metadata.namespace%3Dt-diff",
        "fieldSelector=metadata.name",
        "fieldSelector=spec.nothing%3Dx",
        "limit=2",
        "limit=0",
        "limit=ten",
        "limit=-3",
        "continue=garbage",
        "resourceVersion=0",
        "resourceVersion=abc",
        "resourceVersion=1",
        "resourceVersionMatch=NotOlderThan",
        "resourceVersionMatch=Exact",
        "resourceVersionMatch=Sometimes",
        "includeObject=Object",
        "includeObject=All",
    ];
    let accepts = [
        None,
        Some("application/json"),
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
        Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
        Some("application/vnd.kubernetes.protobuf,application/json"),
        Some("text/plain"),
        Some("application/yaml"),
        Some(""),
    ];
    (0..n)
        .map(|_| {
            let path = rng.pick(&paths);
            let mut query: Vec<&str> = (0..rng.next() % 3).map(|_| rng.pick(&params)).collect();
            query.sort();
            query.dedup_by(|a, b| a.split('=').next() == b.split('=').next());
            let uri = if query.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", query.join("&"))
            };
            let accept = accepts[(rng.next() % accepts.len() as u64) as usize];
            (uri, accept)
        })
        .collect()
}

/// Differences that are vai's by design, with the reason; `true` when allowed.
fn allowed(uri: &str, accept: Option<&str>, vai: &Seen, upstream: &Seen) -> bool {
    // Protobuf preferred, JSON accepted: the apiserver answers protobuf, vai JSON (it stores
    // upstream's JSON and does not convert it); both are answers the client asked for.
    let protobuf = accept.is_some_and(|a| a.starts_with("application/vnd.kubernetes.protobuf"));
    if protobuf && vai.code == upstream.code && upstream.what.starts_with("non-JSON") {
        return true;
    }
    // `resourceVersion=0` ("any version") lets a cache ignore `limit`: the apiserver's watch
    // cache answers every item, vai pages as asked. Both are what the API allows.
    let any_version = uri.contains("resourceVersion=0") && uri.contains("limit=");
    if any_version && vai.code == upstream.code {
        return true;
    }
    // A version the cache has not reached yet (`resourceVersion=1` is older than anything
    // here; never newer), and versions older than the history: the apiserver answers from
    // etcd, which keeps more than vai's window; vai answers 410 Expired as the watch cache does.
    let exact_old = uri.contains("resourceVersionMatch=Exact") && uri.contains("resourceVersion=1");
    if exact_old && vai.code == 410 {
        return true;
    }
    // YAML: the apiserver converts objects to it; vai serves JSON only and refuses YAML alone
    // with 406 and the media types it serves (docs/ARCHITECTURE.md, "Content negotiation").
    if accept == Some("application/yaml") && vai.code == 406 {
        return true;
    }
    // A malformed continue token asked in a form refused for lists: vai reads the token only
    // as it lists, so it answers the 406 first; the apiserver decodes the token first (400).
    if uri.contains("continue=garbage") && vai.code == 406 && upstream.code == 400 {
        return true;
    }
    // An unparsable resourceVersion: the apiserver answers 500 InternalError (its storage
    // layer fails to parse it), vai the 400 BadRequest that says why.
    if uri.contains("resourceVersion=abc") && upstream.code == 500 && vai.code == 400 {
        return true;
    }
    false
}

#[tokio::test]
async fn vai_answers_generated_reads_as_the_apiserver_does() {
    let env = TestEnv::shared().await;
    let admin = env.client().await.unwrap();
    support::ensure_namespace(&admin, NS).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    for i in 0..8 {
        let app = if i % 2 == 0 { "web" } else { "db" };
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("c{i}"), "labels": {"app": app}},
            "data": {"i": i.to_string()},
        }))
        .unwrap();
        let _ = cms.create(&PostParams::default(), &cm).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(env, dir.path(), &["--resources", "configmaps,namespaces"]).await;
    let through_vai = vai.client();
    eventually(
        "vai holds the configmaps",
        Duration::from_secs(15),
        async || {
            let seen = ask(
                &through_vai,
                &format!("/api/v1/namespaces/{NS}/configmaps"),
                None,
            )
            .await;
            (seen.names.len() == 8).then_some(())
        },
    )
    .await;

    let mut mismatches = String::new();
    let mut compared = 0;
    let seeds = [0x5eed_cafe, 0xdead_beef];
    for (uri, accept) in seeds.into_iter().flat_map(|seed| requests(seed, 400)) {
        let upstream = ask(&admin, &uri, accept).await;
        let ours = ask(&through_vai, &uri, accept).await;
        compared += 1;
        let discovery = !uri.starts_with("/api/v1/namespaces");
        let same = ours.code == upstream.code
            && ours.what == upstream.what
            && (discovery
                || ours.code != 200
                || (ours.names == upstream.names && ours.objects == upstream.objects));
        if !same && !allowed(&uri, accept, &ours, &upstream) {
            let _ = writeln!(
                mismatches,
                "GET {uri} (Accept: {accept:?}):\n  vai:       {ours:?}\n  apiserver: {upstream:?}"
            );
        }
    }
    assert_eq!(compared, 800);
    assert!(
        mismatches.is_empty(),
        "answered otherwise than the apiserver:\n{mismatches}"
    );
}
