//! The query API's goals over a generated set of Pods (default 100,000): a summary, and a
//! dashboard's page (one namespace's running pods, newest first, with the total) alone and under
//! 50 concurrent clients — back to back, which measures what the machine can serve, and
//! together at stated rates, which measures the latency they see while it keeps up. Run:
//!
//! ```text
//! cargo bench -p vai-store --bench pages
//! VAI_BENCH_PODS=10000 cargo bench -p vai-store --bench pages
//! VAI_BENCH_POSTGRES=1 cargo bench -p vai-store --bench pages   # and in PostgreSQL after it
//! ```

use std::time::{Duration, Instant};

use vai_store::{
    Batch, Column, Condition, Filter, ListRequest, Operator, PageRequest, SortKey, Store,
    StoreConfig,
};

use vai_testenv::measure::{bench_pods, print_row};

const PODS: &str = "/v1/pods";

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

/// Runs `clients` threads asking for pages: back to back (`rate: None`), or together at `rate`
/// pages/s, each at its share on a fixed schedule, a page's latency counted from when it was
/// due (so a server that falls behind shows it, not only the pages it got to). The latencies
/// and the pages/s achieved.
fn clients(store: &Store, clients: u64, pages: u64, rate: Option<f64>) -> (Vec<Duration>, f64) {
    let per_client = pages / clients;
    let started = Instant::now();
    let samples: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    (0..per_client)
                        .map(|k| {
                            let Some(rate) = rate else {
                                return timed_page(store, &running_page(c + k));
                            };
                            // Client c's k-th page, spread evenly among the clients.
                            let due =
                                started + Duration::from_secs_f64((k * clients + c) as f64 / rate);
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            timed_page(store, &running_page(c + k));
                            due.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let achieved = samples.len() as f64 / started.elapsed().as_secs_f64();
    (samples, achieved)
}

fn main() {
    let Some(n) = bench_pods(100_000) else {
        return;
    };
    let pods = vai_testenv::workload::pods(n);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let started = Instant::now();
    store
        .write_blocking(Batch::new(PODS).replace(n, pods.clone()))
        .unwrap();
    // The list's WAL is checkpointed in the background: measure after it, not against it.
    let wal = path.with_extension("db-wal");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{n} pods stored in the file and checkpointed in {:.1?}",
        started.elapsed()
    );
    measure(&store);
    drop(store);
    if std::env::var("VAI_BENCH_POSTGRES").as_deref() == Ok("1") {
        // The same in PostgreSQL (a private server on a unix socket, `scripts/pg`), with the
        // store's default of read connections.
        let server = vai_testenv::Postgres::start().expect("a private PostgreSQL starts");
        let store = Store::open_postgres(server.url(), StoreConfig::default()).unwrap();
        let started = Instant::now();
        store
            .write_blocking(Batch::new(PODS).replace(n, pods))
            .unwrap();
        println!(
            "\n{n} pods stored in PostgreSQL in {:.1?}",
            started.elapsed()
        );
        measure(&store);
    }
}

/// The summary and the page, alone and under 50 clients, as a table.
fn measure(store: &Store) {
    println!("\n| measure | median | p99 | goal |\n|---|---|---|---|");
    // The dashboard's counts: pods per status.phase (an indexed field), all pods.
    let mut samples = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let summary = store
            .summary(
                PODS,
                &PageRequest::default(),
                &Column::Field("status.phase".into()),
            )
            .unwrap();
        samples.push(t.elapsed());
        assert_eq!(
            summary.counts.iter().map(|(_, c)| c).sum::<u64>(),
            store.count(PODS).unwrap()
        );
    }
    print_row("summary: pods per status.phase", &mut samples, "≤ 20 ms");
    const GOAL: &str = "p50 ≤ 5 ms, p99 ≤ 20 ms";
    let (mut samples, rate) = clients(store, 1, 1000, None);
    print_row(
        &format!(
            "UI page (ns + status.phase, newest first, total), one client back to back: {rate:.0} pages/s"
        ),
        &mut samples,
        "",
    );
    let (mut samples, rate) = clients(store, 50, 4000, None);
    print_row(
        &format!("the same, 50 clients back to back: {rate:.0} pages/s"),
        &mut samples,
        GOAL,
    );
    for offered in [100.0, 250.0, 500.0, 1000.0] {
        let (mut samples, _) = clients(store, 50, (offered * 4.0) as u64, Some(offered));
        print_row(
            &format!("the same, 50 clients asking {offered:.0} pages/s in all"),
            &mut samples,
            GOAL,
        );
    }
}
