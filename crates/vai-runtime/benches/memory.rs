//! Holding N Pods: vai-runtime's store (SQLite, decode on read) against kube-runtime's in-memory
//! reflector store, each in a process of its own, side by side in one run: resident memory, and
//! `get` latency (vai's includes decoding the object). Run:
//!
//! ```text
//! cargo bench -p vai-runtime --bench memory            # 100,000 pods
//! VAI_BENCH_PODS=10000 cargo bench -p vai-runtime --bench memory
//! ```

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use vai_store::{Batch, EventKind, ListRequest, Store, StoreConfig};
use vai_testenv::measure::{bench_pods, percentile, rss_mb};
use vai_testenv::workload::{Rng, pod};

const PODS: &str = "/v1/pods";
const GETS: usize = 20_000;

/// Every pod's key, without decoding the pods.
fn keys(store: &Store) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    store
        .list(PODS, &ListRequest::default(), |ns, name, _| {
            keys.push((ns.to_string(), name.to_string()));
            Ok(())
        })
        .unwrap();
    keys
}

/// Times `GETS` gets of pseudo-randomly chosen keys; returns (p50, p99).
fn time_gets(
    keys: &[(String, String)],
    mut get: impl FnMut(&str, &str) -> bool,
) -> (Duration, Duration) {
    let mut rng = Rng(7);
    let mut samples = Vec::with_capacity(GETS);
    for _ in 0..GETS {
        let (ns, name) = &keys[(rng.next_u64() % keys.len() as u64) as usize];
        let t = Instant::now();
        assert!(get(ns, name), "{ns}/{name} is held");
        samples.push(t.elapsed());
    }
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    )
}

/// A child process: hold the pods one way, print `rss_mb p50_ns p99_ns`.
fn child(mode: &str, db: &std::path::Path) {
    let store = Store::open(db, StoreConfig::default()).unwrap();
    let (rss, (p50, p99)) = match mode {
        "vai" => {
            let pods = vai_runtime::Store::<Pod>::new(store.clone());
            assert!(!pods.is_empty());
            let keys = keys(&store);
            let timed = time_gets(&keys, |ns, name| {
                pods.get(&ObjectRef::new(name).within(ns)).is_some()
            });
            (rss_mb(std::process::id()), timed)
        }
        "kube" => {
            let (reader, mut writer) = kube::runtime::reflector::store::<Pod>();
            writer.apply_watcher_event(&watcher::Event::Init);
            store
                .list(PODS, &ListRequest::default(), |_, _, body| {
                    let pod: Pod = serde_json::from_slice(body).unwrap();
                    writer.apply_watcher_event(&watcher::Event::InitApply(pod));
                    Ok(())
                })
                .unwrap();
            writer.apply_watcher_event(&watcher::Event::InitDone);
            let keys = keys(&store);
            store.close();
            let timed = time_gets(&keys, |ns, name| {
                reader.get(&ObjectRef::new(name).within(ns)).is_some()
            });
            (rss_mb(std::process::id()), timed)
        }
        other => panic!("unknown mode {other}"),
    };
    println!("{rss:.1} {} {}", p50.as_nanos(), p99.as_nanos());
}

fn main() {
    if let (Ok(mode), Ok(db)) = (
        std::env::var("VAI_BENCH_CHILD"),
        std::env::var("VAI_BENCH_DB"),
    ) {
        return child(&mode, db.as_ref());
    }
    let Some(n) = bench_pods(100_000) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pods.db");
    {
        let store = Store::open(&db, StoreConfig::default()).unwrap();
        store
            .write_blocking(Batch::new(PODS).replace(1, Vec::<Vec<u8>>::new()))
            .unwrap();
        let mut rng = Rng(vai_testenv::workload::SEED);
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut batch = Batch::new(PODS);
            for &i in chunk {
                batch = batch.event(EventKind::Added, pod(i, i + 2, &mut rng));
            }
            store.write_blocking(batch).unwrap();
        }
        store.close();
    }
    println!("{n} pods held by each, in a process of its own; {GETS} gets of random keys\n");
    println!("| holder | RSS | get p50 | get p99 |\n|---|---|---|---|");
    let mut rss = Vec::new();
    for (mode, label) in [
        ("vai", "vai-runtime Store (SQLite, decode on get)"),
        ("kube", "kube-runtime reflector Store (in memory)"),
    ] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("VAI_BENCH_CHILD", mode)
            .env("VAI_BENCH_DB", &db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<f64> = text
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        println!(
            "| {label} | {:.0} MB | {:.1} µs | {:.1} µs |",
            fields[0],
            fields[1] / 1000.0,
            fields[2] / 1000.0
        );
        rss.push(fields[0]);
    }
    println!(
        "\nvai / kube-runtime RSS: {:.3} (goal ≤ 0.1); get goal: p50 ≤ 50 µs including decode",
        rss[0] / rss[1]
    );
}
