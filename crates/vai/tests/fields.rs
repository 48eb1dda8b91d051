//! Field selectors on custom resources (CRD `selectableFields`) and configured indexed fields,
//! against a real apiserver: kubectl through vai prints what the apiserver prints, answered
//! from vai's index (not proxied), and keeps answering as the apiserver did once it is frozen,
//! dead, and vai restarted without it.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Vai, eventually, get, items, kubectl_direct};
use vai_testenv::TestEnv;

const NS: &str = "t-fields";
const OTHER_NS: &str = "t-fields-2";

const PROPERTIES: &[(&str, &str)] = &[
    ("color", "string"),
    ("size", "integer"),
    ("shiny", "boolean"),
    ("note", "string"),
];

fn objects() -> String {
    let gadget = |ns: &str, name: &str, spec: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        )
    };
    let pod = |name: &str, spec: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{{spec}containers: [{{name: c, image: busybox}}]}}\n"
        )
    };
    [
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {OTHER_NS}}}\n"),
        gadget(NS, "g1", "{color: blue, size: 3, shiny: true, note: hello}"),
        gadget(NS, "g2", "{color: red, size: 1, shiny: false}"),
        gadget(NS, "g3", "{size: 3}"),
        gadget(OTHER_NS, "g4", "{color: blue, size: 5, note: hello}"),
        pod("p1", "serviceAccountName: robot, "),
        pod("p2", ""),
    ]
    .join("---\n")
}

/// `kubectl apply -f -`; whether it succeeded.
fn try_apply(mut kubectl: Command, manifest: &str) -> bool {
    use std::io::Write;
    let mut child = kubectl
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

/// What `kubectl get` printed: the items on success, its error otherwise.
type Printed = Result<Vec<serde_json::Value>, String>;

/// What `kubectl get <args> -o json` prints: the items on success, stderr's error otherwise.
fn kubectl_get(mut kubectl: Command, args: &[&str]) -> Printed {
    let out = kubectl
        .arg("get")
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(items(&String::from_utf8(out.stdout).unwrap()))
    } else {
        // kubectl's error line (vai's staleness warnings, when offline, are other lines).
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("Warning: "))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

fn names(result: &Printed) -> Vec<String> {
    result
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Percent-encodes what a query string may not hold.
fn encode(q: &str) -> String {
    q.replace('%', "%25")
        .replace('=', "%3D")
        .replace('!', "%21")
        .replace(',', "%2C")
        .replace('[', "%5B")
        .replace(']', "%5D")
        .replace(' ', "%20")
}

/// A GET through vai: (status, `X-Vai-State`, body).
async fn fetch(vai: &Vai, path: &str) -> (u16, String, serde_json::Value) {
    let answer = get(&vai.url(), path).await.unwrap();
    let state = answer
        .headers
        .get("x-vai-state")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = serde_json::from_slice(&answer.body).unwrap_or_default();
    (answer.status, state, body)
}

/// A query-API list of gadgets in all namespaces.
async fn gadgets_query(vai: &Vai, query: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = fetch(vai, &format!("/apis/example.com/v1/gadgets?{query}")).await;
    (status, body)
}

fn item_names(list: &serde_json::Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `kubectl get <args>` through vai equals the apiserver's answer recorded in `expected`.
fn same_as_recorded(vai: &Vai, env: &TestEnv, expected: &[(Vec<&str>, Printed)]) {
    for (args, want) in expected {
        let got = kubectl_get(vai.kubectl(env), args);
        assert_eq!(&got, want, "kubectl get {}", args.join(" "));
    }
}

async fn upstream_reachable(vai: &Vai) -> bool {
    let (_, _, status) = fetch(vai, "/vai/v1/status").await;
    status["upstream"]["reachable"] == true
}

#[tokio::test]
async fn crd_selectable_fields_and_configured_fields_are_answered_from_the_cache_online_and_off() {
    let env = TestEnv::start().await.unwrap();
    let crd = |selectable: &[&str]| {
        support::crd_with_selectable_fields("gadgets", "Gadget", PROPERTIES, selectable)
    };
    support::apply(kubectl_direct(&env), &crd(&[".spec.color", ".spec.size"]));
    support::run(kubectl_direct(&env).args([
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=30s",
    ]));
    eventually(
        "the custom resources are created",
        Duration::from_secs(30),
        async || try_apply(kubectl_direct(&env), &objects()).then_some(()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--resources",
        "gadgets.example.com,customresourcedefinitions.apiextensions.k8s.io,pods,namespaces",
        "--index-field",
        "pods=spec.serviceAccountName",
        "--index-field",
        "gadgets.example.com=spec.note",
    ];
    let vai = Vai::start(&env, dir.path(), &args).await;
    // The query API answers only from vai's index: once it does, the declaration is in.
    eventually(
        "vai indexes the CRD's selectable fields",
        Duration::from_secs(30),
        async || {
            let (status, list) = gadgets_query(&vai, "filter=spec.color%3Dblue").await;
            (status == 200 && list["total"] == 2).then_some(())
        },
    )
    .await;

    // Online: kubectl through vai prints what the apiserver prints, and vai answers from its
    // index (X-Vai-State is set on what vai serves itself, never on proxied answers).
    let selectors: Vec<(&str, Vec<&str>)> = vec![
        ("spec.color=blue", vec!["g1", "g4"]),
        ("spec.color==blue", vec!["g1", "g4"]),
        ("spec.color!=blue", vec!["g2", "g3"]),
        ("spec.color=", vec!["g3"]),
        ("spec.size=3", vec!["g1", "g3"]),
        ("spec.size=3,spec.color!=blue", vec!["g3"]),
        ("metadata.namespace=t-fields-2,spec.color=blue", vec!["g4"]),
    ];
    let mut recorded = Vec::new();
    for (selector, want) in &selectors {
        let args = vec!["gadgets", "-A", "--field-selector", selector];
        let direct = kubectl_get(kubectl_direct(&env), &args);
        assert_eq!(&names(&direct), want, "the apiserver, {selector}");
        assert_eq!(
            kubectl_get(vai.kubectl(&env), &args),
            direct,
            "vai, {selector}"
        );
        let (status, state, _) = fetch(
            &vai,
            &format!(
                "/apis/example.com/v1/gadgets?fieldSelector={}",
                encode(selector)
            ),
        )
        .await;
        assert_eq!(
            (status, state.as_str()),
            (200, "live"),
            "{selector}: from the cache"
        );
        recorded.push((args, direct));
    }
    let in_namespace = vec!["gadgets", "-n", NS, "--field-selector", "spec.color=blue"];
    let direct = kubectl_get(kubectl_direct(&env), &in_namespace);
    assert_eq!(names(&direct), vec!["g1"]);
    assert_eq!(kubectl_get(vai.kubectl(&env), &in_namespace), direct);
    recorded.push((in_namespace, direct));
    // Fields the CRD does not declare (`spec.note` is only configured): upstream's error.
    for selector in ["spec.nope=x", "spec.note=hello", "spec.shiny=true"] {
        let args = vec!["gadgets", "-A", "--field-selector", selector];
        let direct = kubectl_get(kubectl_direct(&env), &args);
        let error = direct.as_ref().unwrap_err();
        assert!(
            error.contains("field label not supported"),
            "the apiserver, {selector}: {error}"
        );
        assert_eq!(
            kubectl_get(vai.kubectl(&env), &args),
            direct,
            "vai, {selector}"
        );
        recorded.push((args, direct));
    }
    // A configured built-in field: upstream selects on it, vai answers from its index.
    let by_account = vec![
        "pods",
        "-n",
        NS,
        "--field-selector",
        "spec.serviceAccountName=robot",
    ];
    let direct = kubectl_get(kubectl_direct(&env), &by_account);
    assert_eq!(names(&direct), vec!["p1"]);
    assert_eq!(kubectl_get(vai.kubectl(&env), &by_account), direct);
    let (status, state, _) = fetch(
        &vai,
        &format!(
            "/api/v1/namespaces/{NS}/pods?fieldSelector={}",
            encode("spec.serviceAccountName=robot")
        ),
    )
    .await;
    assert_eq!((status, state.as_str()), (200, "live"));
    recorded.push((by_account, direct));

    // The query API on declared and configured fields.
    let (status, list) = gadgets_query(
        &vai,
        "filter=spec.color%3Dblue,spec.color%3Dred&sort=-spec.size,metadata.name&summary=spec.color,spec.note",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(item_names(&list), vec!["g4", "g1", "g2"]);
    assert_eq!(
        list["summary"]["spec.color"],
        serde_json::json!({"blue": 2, "red": 1})
    );
    assert_eq!(
        list["summary"]["spec.note"],
        serde_json::json!({"hello": 2, "": 1}),
        "configured and absent: counted as \"\""
    );
    let (status, list) = gadgets_query(&vai, "filter=spec.note%3Dhello&sort=metadata.name").await;
    assert_eq!(
        (status, item_names(&list)),
        (200, vec!["g1".into(), "g4".into()])
    );
    let (status, _, list) = fetch(
        &vai,
        &format!("/api/v1/namespaces/{NS}/pods?filter=spec.serviceAccountName%3Drobot"),
    )
    .await;
    assert_eq!((status, item_names(&list)), (200, vec!["p1".into()]));
    let (status, refusal) = gadgets_query(&vai, "filter=spec.shiny%3Dtrue").await;
    let message = refusal["message"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{refusal}");
    assert!(
        message.contains("\"spec.shiny\" is not indexed")
            && message.contains("spec.color, spec.note, spec.size"),
        "the indexed fields are listed: {message}"
    );

    // A field the CRD declares later, while vai runs: the stored objects are reindexed.
    support::apply(
        kubectl_direct(&env),
        &crd(&[".spec.color", ".spec.size", ".spec.shiny"]),
    );
    let shiny = vec!["gadgets", "-A", "--field-selector", "spec.shiny=false"];
    let direct = eventually(
        "the apiserver selects on the new field",
        Duration::from_secs(30),
        async || kubectl_get(kubectl_direct(&env), &shiny).ok(),
    )
    .await;
    assert_eq!(
        names(&Ok(direct.clone())),
        vec!["g2"],
        "absent is \"\" for a custom resource, not false"
    );
    eventually(
        "vai indexes the new field",
        Duration::from_secs(30),
        async || {
            let (status, state, _) = fetch(
                &vai,
                &format!(
                    "/apis/example.com/v1/gadgets?fieldSelector={}",
                    encode("spec.shiny=false")
                ),
            )
            .await;
            (status == 200 && state == "live").then_some(())
        },
    )
    .await;
    assert_eq!(kubectl_get(vai.kubectl(&env), &shiny), Ok(direct.clone()));
    recorded.push((shiny, Ok(direct)));
    let (status, list) = gadgets_query(&vai, "summary=spec.shiny&pagesize=1").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["summary"]["spec.shiny"],
        serde_json::json!({"": 2, "false": 1, "true": 1})
    );
    // Now the apiserver and vai both accept it (the recorded refusal is outdated).
    recorded.retain(|(args, _)| !args.contains(&"spec.shiny=true"));

    // Frozen apiserver: the same answers, from the cache; the same refusals.
    env.pause_apiserver().unwrap();
    eventually(
        "vai notices the apiserver is frozen",
        Duration::from_secs(15),
        async || (!upstream_reachable(&vai).await).then_some(()),
    )
    .await;
    same_as_recorded(&vai, &env, &recorded);
    let out = vai
        .kubectl(&env)
        .args([
            "get",
            "gadgets",
            "-A",
            "--field-selector",
            "spec.color=blue",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: vai: data may be stale since"),
        "{stderr}"
    );

    // Dead, and vai restarted without it: the declarations were kept in the file.
    env.kill_apiserver().unwrap();
    drop(vai);
    let vai = Vai::start(&env, dir.path(), &args).await;
    assert!(!upstream_reachable(&vai).await);
    same_as_recorded(&vai, &env, &recorded);
    let (status, list) = gadgets_query(&vai, "filter=spec.note%3Dhello&sort=metadata.name").await;
    assert_eq!(
        (status, item_names(&list)),
        (200, vec!["g1".into(), "g4".into()])
    );
}
