//! Pages a UI asks for: one namespace's filtered, sorted page with its total from vai against
//! what a UI does without vai ([`ui_page`]), and the query API's dashboard page under many
//! concurrent clients ([`concurrent_pages`]).

use std::time::{Duration, Instant};

use crate::http1;
use crate::stats::median;
use crate::vai::Vai;

/// A UI's page — one namespace, a label filter, newest first, with the total — from vai, and
/// what a UI must do without vai: list the namespace, then filter and sort in the client.
pub async fn ui_page(vai: &Vai, client: &kube::Client, runs: usize) -> (f64, f64) {
    let http = http1::Client;
    let page = "/api/v1/namespaces/team-07/pods?filter=metadata.labels%5Btier%5D%3Dbackend&sort=-metadata.creationTimestamp&page=1&pagesize=100";
    let (mut ui, mut client_side) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let (status, _) = http.get(&format!("{}{page}", vai.url)).await.unwrap();
        assert_eq!(status, 200);
        ui.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let text = client
            .request_text(
                http::Request::get("/api/v1/namespaces/team-07/pods")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut items: Vec<&serde_json::Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["labels"]["tier"] == "backend")
            .collect();
        items.sort_by(|x, y| {
            y["metadata"]["creationTimestamp"]
                .as_str()
                .cmp(&x["metadata"]["creationTimestamp"].as_str())
        });
        items.truncate(100);
        client_side.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(ui), median(client_side))
}

/// Clients of the dashboard page (issue 5's benchmark).
pub const UI_CLIENTS: usize = 50;
/// The pages per second they ask in all.
pub const UI_RATE: f64 = 250.0;

/// The dashboard's page for namespace `k`: its running pods, newest first, 100, with the total.
fn dashboard_page(k: usize) -> String {
    format!(
        "/api/v1/namespaces/team-{:02}/pods?filter=status.phase%3DRunning&sort=-metadata.creationTimestamp&page=1&pagesize=100",
        k % 50
    )
}

/// `clients` tasks asking for `pages` dashboard pages of vai in all: back to back (`rate:
/// None`), or at `rate` pages/s on a fixed schedule, each page's latency counted from when it
/// was due (a server that falls behind shows it). Latencies in ms, and the pages/s achieved.
pub async fn concurrent_pages(
    vai: &Vai,
    clients: usize,
    pages: usize,
    rate: Option<f64>,
) -> (Vec<f64>, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = vai.url.clone();
            let bearer = vai.bearer.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for k in (c..pages).step_by(clients) {
                    let due = match rate {
                        Some(rate) => {
                            let due = started + Duration::from_secs_f64(k as f64 / rate);
                            tokio::time::sleep_until(due.into()).await;
                            due
                        }
                        None => Instant::now(),
                    };
                    let (status, _) = http1::Client
                        .get_as(&format!("{url}{}", dashboard_page(k)), bearer.as_deref())
                        .await
                        .unwrap();
                    assert_eq!(status, 200);
                    latencies.push(due.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let achieved = all.len() as f64 / started.elapsed().as_secs_f64();
    (all, achieved)
}
