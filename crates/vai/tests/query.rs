//! The query API over HTTP: filters, sorts, pages with totals, revisions and summaries on the
//! list endpoints, against objects synced from a real apiserver.

mod support;

use std::time::Duration;

use support::{Vai, eventually, get};
use vai_testenv::TestEnv;

const NS: &str = "t-query";

fn manifest() -> String {
    let mut docs = vec![format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
    )];
    for i in 0..30 {
        let tier = ["web", "db", "Cache"][i % 3];
        let size = i * 7 % 30;
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i:02}, namespace: {NS}, labels: {{tier: {tier}, size: \"{size}\"}}}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n"
        ));
    }
    docs.join("---\n")
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Percent-encodes what a URI may not hold (the test writes queries readably).
fn encode(q: &str) -> String {
    q.replace('[', "%5B")
        .replace(']', "%5D")
        .replace('>', "%3E")
        .replace('<', "%3C")
        .replace(' ', "%20")
        .replace('"', "%22")
}

async fn query(vai: &Vai, q: &str) -> support::Answer {
    get(
        &vai.url(),
        &format!("/api/v1/namespaces/{NS}/pods?{}", encode(q)),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn filters_sorts_pages_revisions_and_summaries_over_http() {
    let env = TestEnv::shared().await;
    support::apply(support::kubectl_direct(env), &manifest());
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(env, dir.path(), &["--resources", "pods,namespaces"]).await;
    eventually(
        "vai holds the 30 pods",
        Duration::from_secs(15),
        async || (query(&vai, "pagesize=1").await.json()["total"] == 30).then_some(()),
    )
    .await;

    // A filter (OR within, AND across), a sort, a page, and the total of all pages.
    let answer = query(
        &vai,
        "filter=metadata.labels[tier]=web,metadata.labels[tier]=db&filter=metadata.labels[size]>5&sort=-metadata.labels[size],metadata.name&page=2&pagesize=4",
    )
    .await;
    assert_eq!(answer.status, 200);
    let page = answer.json();
    assert_eq!(page["kind"], "PodList");
    // Expected in plain Rust: pods of tier web|db with size > 5 (compared as a number), by
    // size desc (label values sort as text) then name.
    let mut expected: Vec<(String, String)> = (0..30)
        .filter(|i| i % 3 != 2 && i * 7 % 30 > 5)
        .map(|i| ((i * 7 % 30).to_string(), format!("p{i:02}")))
        .collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let expected: Vec<String> = expected.into_iter().map(|(_, n)| n).collect();
    assert_eq!(page["total"], expected.len());
    assert_eq!(page["pages"], expected.len().div_ceil(4));
    assert_eq!(names(&page), expected[4..8].to_vec());
    let revision = page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Case-insensitive sort puts "Cache" among the others by letter.
    let sorted = query(
        &vai,
        "sort=metadata.labels[tier],metadata.name&sortcase=insensitive&pagesize=30",
    )
    .await
    .json();
    let tiers: Vec<String> = sorted["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["metadata"]["labels"]["tier"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tiers[0], "Cache");
    assert_eq!(tiers[10], "db");

    // Summaries count every match, in the same snapshot.
    let summary = query(
        &vai,
        "summary=metadata.labels[tier],status.phase&pagesize=1",
    )
    .await
    .json();
    assert_eq!(
        summary["summary"]["metadata.labels[tier]"],
        serde_json::json!({"Cache": 10, "db": 10, "web": 10})
    );
    assert_eq!(
        summary["summary"]["status.phase"],
        serde_json::json!({"Pending": 30})
    );

    // A revision pins the snapshot: a pod deleted since still shows on that revision's pages.
    support::run(support::kubectl_direct(env).args([
        "delete",
        "pod",
        &expected[0],
        "-n",
        NS,
        "--grace-period=0",
        "--force",
    ]));
    eventually(
        "the deletion reaches vai",
        Duration::from_secs(10),
        async || (query(&vai, "pagesize=1").await.json()["total"] == 29).then_some(()),
    )
    .await;
    let pinned = query(
        &vai,
        &format!("filter=metadata.labels[tier]=web,metadata.labels[tier]=db&filter=metadata.labels[size]>5&sort=-metadata.labels[size],metadata.name&page=1&pagesize=4&revision={revision}"),
    )
    .await
    .json();
    assert_eq!(names(&pinned), expected[0..4].to_vec());
    assert_eq!(pinned["total"], expected.len());

    // Bad queries get a 400 Status, never a 500 or a scan.
    for bad in [
        "filter=metadata.namespace%20in%20(a,b",
        "filter=metadata.name%20%3F%3F%20x",
        "filter=spec.containers=x",
        "filter=%27%3B%20DROP%20TABLE%20versions%3B%20--",
        "pagesize=1000000000",
        "page=100000&pagesize=10000",
        "sort=spec.containers",
    ] {
        let answer = query(&vai, bad).await;
        assert_eq!(
            answer.status,
            400,
            "{bad}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let status = answer.json();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some("BadRequest")),
            "{bad}"
        );
    }
    let too_old = query(&vai, "pagesize=1&revision=1").await;
    assert_eq!(too_old.status, 410);

    // A watch with a filter sees only what the filter shows.
    let watch = format!(
        "/api/v1/namespaces/{NS}/pods?watch=1&filter=metadata.labels[tier]=db&timeoutSeconds=1"
    );
    let events = get(&vai.url(), &encode(&watch)).await.unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(events.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    let tiers: Vec<&str> = lines
        .iter()
        .map(|e| {
            e["object"]["metadata"]["labels"]["tier"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    assert!(tiers.iter().all(|t| *t == "db"), "{tiers:?}");
}
