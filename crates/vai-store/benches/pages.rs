//! The query API's goals over a generated set of Pods (default 100,000): a filtered, sorted page
//! with its total count, alone and under 50 concurrent clients, and a summary. Run:
//!
//! ```text
//! cargo bench -p vai-store --bench pages
//! VAI_BENCH_PODS=10000 cargo bench -p vai-store --bench pages
//! ```

use std::time::{Duration, Instant};

use vai_store::{
    Batch, Column, Condition, Filter, ListRequest, Operator, PageRequest, SortKey, Store,
    StoreConfig,
};

use vai_testenv::measure::{bench_pods, percentile};
use vai_testenv::workload::{Rng, pod};

const PODS: &str = "/v1/pods";

fn report(what: &str, samples: &mut [Duration], goal: &str) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    println!("| {what} | {p50:.2?} | {p99:.2?} | {goal} |");
}

/// The dashboard's page: one namespace's running pods, newest first, 100 with the total.
fn running_page(namespace: u64) -> PageRequest {
    PageRequest {
        list: ListRequest {
            namespace: Some(format!("team-{:02}", namespace % 50)),
            ..Default::default()
        },
        filters: vec![Filter(vec![Condition {
            column: Column::Field("status.phase".into()),
            operator: Operator::Eq,
            values: vec!["Running".into()],
        }])],
        sort: vec![SortKey {
            column: Column::CreationTimestamp,
            descending: true,
            case_insensitive: false,
        }],
        offset: 0,
        page_size: Some(100),
    }
}

/// Asks for one page, copying each item's body as a server would; the time it took.
fn timed_page(store: &Store, request: &PageRequest) -> Duration {
    let started = Instant::now();
    let mut bytes = Vec::with_capacity(1 << 20);
    let meta = store
        .page(PODS, request, |_, _, body| {
            bytes.extend_from_slice(body);
            Ok(())
        })
        .unwrap();
    let took = started.elapsed();
    assert!(meta.count > 0 && meta.total >= meta.count as u64 && !bytes.is_empty());
    took
}

fn main() {
    let Some(n) = bench_pods(100_000) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("KEEPDB")
        .map(std::path::PathBuf::from)
        .unwrap_or(dir.path().join("bench.db"));
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pods: Vec<Vec<u8>> = (0..n).map(|i| pod(i, i + 1, &mut rng)).collect();
    let started = Instant::now();
    store
        .write_blocking(Batch::new(PODS).replace(n, pods))
        .unwrap();
    println!(
        "{n} pods stored in {:.1?}\n\n| measure | median | p99 | goal |\n|---|---|---|---|",
        started.elapsed()
    );

    let mut samples: Vec<Duration> = (0..200)
        .map(|k| timed_page(&store, &running_page(k)))
        .collect();
    report(
        "UI page, one client (ns + status.phase, newest first, total)",
        &mut samples,
        "",
    );

    for clients in [1u64, 2, 50] {
        let per_client = 2000 / clients;
        let started = Instant::now();
        let mut samples: Vec<Duration> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let store = &store;
                    scope.spawn(move || {
                        (0..per_client)
                            .map(|k| timed_page(store, &running_page(c + k)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
        report(
            &format!("UI page, {clients} clients back to back: {rate:.0} pages/s"),
            &mut samples,
            "p50 ≤ 5 ms, p99 ≤ 20 ms",
        );
    }
}
