//! The store at scale: a generated, realistic set of Pods (default 100,000 of ~5 KB), then
//! ingest, single events, gets, selective pages and a full list, each reported as median and
//! p99 against the goals, three times in one run, side by side: in the file with bodies stored
//! plain, in the file compressed with the store's dictionaries (`StoreConfig::compress_bodies`),
//! and, with `VAI_BENCH_POSTGRES=1`, in PostgreSQL (a private server started by `scripts/pg`,
//! which installs the server package when it is missing: off by default for that), with
//! propagation to a watch on a second replica besides. Run:
//!
//! ```text
//! cargo bench -p vai-store --bench scale            # 100,000 pods
//! VAI_BENCH_PODS=10000 cargo bench -p vai-store --bench scale
//! ```

use std::time::Instant;

use vai_store::{
    Batch, Column, Condition, EventKind, Filter, LabelSelector, ListRequest, Operator, PageRequest,
    SortKey, Store, StoreConfig,
};

use vai_testenv::measure::{bench_pods, percentile};
use vai_testenv::workload::{modified, with_managed_fields};

const PODS: &str = "/v1/pods";

/// One way's results: a row per measure (what, the figures, the goal).
#[derive(Default)]
struct Rows(Vec<(String, String, String)>);

impl Rows {
    fn add(&mut self, what: &str, figures: String, goal: &str) {
        self.0.push((what.into(), figures, goal.into()));
    }

    /// Median and p99 of `samples`.
    fn timed(&mut self, what: &str, samples: &mut [std::time::Duration], goal: &str) {
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        self.add(what, format!("{p50:.2?} | {p99:.2?}"), goal);
    }

    fn rate(&mut self, what: &str, n: u64, took: std::time::Duration, goal: &str) {
        let rate = n as f64 / took.as_secs_f64();
        self.add(what, format!("{rate:.0} objects/s |"), goal);
    }
}

fn main() {
    let Some(n) = bench_pods(100_000) else {
        return;
    };
    let pods = vai_testenv::workload::pods(n);
    let raw: usize = pods.iter().map(Vec::len).sum();
    println!(
        "{n} pods, {:.0} bytes each on average, {:.1} MB of JSON\n",
        raw as f64 / n as f64,
        raw as f64 / 1e6
    );
    let plain = run(&pods, raw, Engine::File { compress: false });
    let compressed = run(&pods, raw, Engine::File { compress: true });
    let postgres = (std::env::var("VAI_BENCH_POSTGRES").as_deref() == Ok("1")).then(|| {
        let server = vai_testenv::Postgres::start().expect("a private PostgreSQL starts");
        run(&pods, raw, Engine::Postgres(&server))
    });
    println!(
        "| measure | plain median | p99 | compressed median | p99 | postgres median | p99 | goal |\n|---|---|---|---|---|---|---|---|"
    );
    for (at, ((what, before, goal), (_, after, _))) in plain.0.iter().zip(&compressed.0).enumerate()
    {
        let pg = postgres.as_ref().map_or("- | -", |p| p.0[at].1.as_str());
        println!("| {what} | {before} | {after} | {pg} | {goal} |");
    }
    println!(
        "process RSS at the end: {:.0} MB (includes the generated data set held by the benchmark)",
        vai_testenv::measure::rss_mb(std::process::id())
    );
}

/// Where a run stores.
enum Engine<'a> {
    /// A file, with bodies compressed or not.
    File { compress: bool },
    /// A database of its own (one per store opened) on this server.
    Postgres(&'a vai_testenv::Postgres),
}

impl Engine<'_> {
    /// A new store named `name`, and where it lives (a file's path, a database's URL).
    fn open(&self, dir: &std::path::Path, name: &str) -> (Store, String) {
        match self {
            Engine::File { compress } => {
                let path = dir.join(format!("{name}.db"));
                let config = StoreConfig {
                    compress_bodies: *compress,
                    ..StoreConfig::default()
                };
                (
                    Store::open(&path, config).unwrap(),
                    path.display().to_string(),
                )
            }
            Engine::Postgres(server) => {
                let url = server.create_database().unwrap();
                (
                    Store::open_postgres(&url, StoreConfig::default()).unwrap(),
                    url,
                )
            }
        }
    }

    /// Bytes the store at `place` takes on disk.
    fn size(&self, place: &str) -> u64 {
        match self {
            Engine::File { .. } => {
                let path = std::path::Path::new(place);
                let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                size(path) + size(&path.with_extension("db-wal"))
            }
            Engine::Postgres(_) => {
                let out = std::process::Command::new("psql")
                    .args([
                        place,
                        "-XtAc",
                        "SELECT pg_database_size(current_database())",
                    ])
                    .output()
                    .unwrap();
                String::from_utf8(out.stdout)
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap_or(0)
            }
        }
    }
}

fn run(pods: &[Vec<u8>], raw: usize, engine: Engine) -> Rows {
    let n = pods.len() as u64;
    let mut rows = Rows::default();
    let dir = tempfile::tempdir().unwrap();
    let (store, place) = engine.open(dir.path(), "bench");

    // Ingest: the initial list as batches of 1,000 events (after an empty list at version 0:
    // events at or below a list's version are replays the list already reflects).
    let started = Instant::now();
    store
        .write_blocking(Batch::new(PODS).replace(0, Vec::<Vec<u8>>::new()))
        .unwrap();
    for chunk in pods.chunks(1000) {
        let batch = chunk.iter().fold(Batch::new(PODS), |b, p| {
            b.event(EventKind::Added, p.clone())
        });
        store.write_blocking(batch).unwrap();
    }
    rows.rate(
        "ingest, batches of 1,000",
        n,
        started.elapsed(),
        "≥ 50,000 objects/s",
    );

    // Ingest as the initial sync does it: one replace holding the whole list, into a new file.
    let (fresh, _) = engine.open(dir.path(), "replace");
    let started = Instant::now();
    fresh
        .write_blocking(Batch::new(PODS).replace(n + 1, pods.to_vec()))
        .unwrap();
    rows.rate(
        "ingest, one replace of the full list",
        n,
        started.elapsed(),
        "≥ 50,000 objects/s",
    );
    fresh.close();
    drop(fresh);

    // As sync sends a first list: chunks of 500 (`Store::relist`), objects carrying
    // managedFields as upstream sends every object (the store drops them).
    let with_fields: Vec<Vec<u8>> = pods.iter().map(|p| with_managed_fields(p)).collect();
    let (fresh, _) = engine.open(dir.path(), "managed");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let mut relist = fresh.relist(PODS).unwrap();
        for chunk in with_fields.chunks(500) {
            let items = chunk.iter().map(|p| p.clone().into()).collect();
            relist.push(items).await.unwrap();
        }
        relist.finish(n + 1).await.unwrap();
    });
    let took = started.elapsed();
    assert_eq!(fresh.count(PODS).unwrap(), n);
    rows.rate(
        "ingest, first list in chunks of 500 as sync sends it (with managedFields)",
        n,
        took,
        "≥ 50,000 objects/s",
    );
    fresh.close();
    drop(fresh);

    // Steady state first: a history at the retention's 20,000 events, of pods all over the
    // file (a write must not cost more as history fills: pruning by age once read every
    // history row, 80 ms per commit at 13,000 rows in the end-to-end harness).
    // Timed: a backlog of watch events applied as sync applies a spool (batches of 500), and
    // the same in batches of 2,000 (one transaction each: fewer commits of the same pages).
    let mut rv = n + 10;
    for (size, salt) in [(500u64, 3u64), (2_000, 5)] {
        let backlog: Vec<Batch> = (0..20_000 / size)
            .map(|chunk| {
                let mut batch = Batch::new(PODS);
                for k in 0..size {
                    let i = ((chunk * size + k) * 104_729 + salt) % n;
                    let body = modified(&pods[i as usize], rv, salt + k);
                    batch = batch.event(EventKind::Modified, body);
                    rv += 1;
                }
                batch
            })
            .collect();
        let started = Instant::now();
        for batch in backlog {
            store.write_blocking(batch).unwrap();
        }
        rows.add(
            &format!("a backlog of 20,000 modifications in batches of {size}"),
            format!(
                "{:.0} events/s |",
                20_000.0 / started.elapsed().as_secs_f64()
            ),
            "≥ 20,000 events/s",
        );
    }
    // Steady single events: one modification per commit.
    let mut samples = Vec::new();
    for k in 0..2000u64 {
        let i = (k * 7919) % n;
        let body = modified(&pods[i as usize], rv + k, k);
        let t = Instant::now();
        store
            .write_blocking(Batch::new(PODS).event(EventKind::Modified, body))
            .unwrap();
        samples.push(t.elapsed());
    }
    rows.timed(
        "single event applied (commit included)",
        &mut samples,
        "p99 ≤ 2 ms",
    );
    rv += 2000;

    // Propagation to a watcher on another replica: a second store on the same database (its
    // own connections, following the writer's commits), a watch on it, and the time from a
    // write's start on the writer to its event on that watch. Only a shared database has
    // another replica.
    if let Engine::Postgres(_) = engine {
        let reader = Store::open_postgres_read_only(&place, StoreConfig::default()).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut watch = reader.watch(PODS, rv - 1).unwrap();
        let mut samples = Vec::new();
        for k in 0..300u64 {
            let i = (k * 6151) % n;
            let body = modified(&pods[i as usize], rv, k + 7);
            let t = Instant::now();
            store
                .write_blocking(Batch::new(PODS).event(EventKind::Modified, body))
                .unwrap();
            let seen = runtime.block_on(async {
                loop {
                    let event = watch.next().await.unwrap();
                    if event.resource_version == rv {
                        break event;
                    }
                }
            });
            samples.push(t.elapsed());
            assert_eq!(seen.kind, EventKind::Modified);
            rv += 1;
        }
        rows.timed(
            "propagation to a watch on another replica (write started → event there)",
            &mut samples,
            "p99 ≤ 200 ms",
        );
    } else {
        rows.add(
            "propagation to a watch on another replica (write started → event there)",
            "- | -".into(),
            "p99 ≤ 200 ms",
        );
    }

    // Gets by name.
    let keys: Vec<(String, String)> = pods
        .iter()
        .step_by((n as usize / 5000).max(1))
        .map(|b| {
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            (
                v["metadata"]["namespace"].as_str().unwrap().into(),
                v["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut samples = Vec::new();
    for (ns, name) in &keys {
        let t = Instant::now();
        assert!(store.get(PODS, ns, name, None).unwrap().is_some());
        samples.push(t.elapsed());
    }
    rows.timed("get by name", &mut samples, "p50 ≤ 10 µs");

    // A watch opened at the current version, as a client that has just listed opens it: its
    // history read finds nothing to replay, so its cost must not grow with the stored objects.
    let now = store
        .resource_state(PODS)
        .unwrap()
        .unwrap()
        .last_resource_version;
    let mut samples = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        drop(store.watch(PODS, now).unwrap());
        samples.push(t.elapsed());
    }
    rows.timed(
        "watch opened at the current version (its history read)",
        &mut samples,
        "does not grow with the objects",
    );

    // A UI page: 100 pods by label in one namespace, newest first, with the total count; then
    // page 500 of the whole list in the same order.
    let newest_first = vec![SortKey {
        column: Column::CreationTimestamp,
        descending: true,
        case_insensitive: false,
    }];
    for (what, offset, filtered) in [
        (
            "UI page of 100: label + namespace, newest first, total count",
            0,
            true,
        ),
        (
            "UI page 500 of 100: all pods, newest first, total count",
            49_900,
            false,
        ),
    ] {
        let mut samples = Vec::new();
        for k in 0..50u64 {
            let req = PageRequest {
                list: ListRequest {
                    namespace: filtered.then(|| format!("team-{:02}", k % 50)),
                    ..Default::default()
                },
                filters: if filtered {
                    vec![Filter(vec![Condition {
                        column: Column::Label("tier".into()),
                        operator: Operator::Eq,
                        values: vec!["backend".into()],
                    }])]
                } else {
                    vec![]
                },
                sort: newest_first.clone(),
                offset: offset.min(n as usize / 2),
                page_size: Some(100),
            };
            let t = Instant::now();
            let mut count = 0;
            let meta = store
                .page(PODS, &req, |_, _, _| {
                    count += 1;
                    Ok(())
                })
                .unwrap();
            samples.push(t.elapsed());
            assert!(count > 0 && meta.total >= count as u64);
        }
        rows.timed(what, &mut samples, "p50 ≤ 5 ms, p99 ≤ 20 ms");
    }

    // The query API's own goals (a summary, 50 concurrent clients): the `pages` bench.

    // A selective list: ~1% of all pods by label.
    let mut samples = Vec::new();
    for k in 0..20u64 {
        let req = ListRequest {
            labels: LabelSelector::parse(&format!("shard={}", k % 100)).unwrap(),
            ..Default::default()
        };
        let t = Instant::now();
        let mut count = 0;
        store
            .list(PODS, &req, |_, _, _| {
                count += 1;
                Ok(())
            })
            .unwrap();
        samples.push(t.elapsed());
        assert!(count >= (n / 100) as usize - 1);
    }
    rows.timed(
        "selective list, label matching 1%",
        &mut samples,
        "(≥ 100× the apiserver: the harness)",
    );

    // Full list into a Kubernetes List body.
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut out = Vec::with_capacity(raw + 1024);
        out.extend_from_slice(
            br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":""},"items":["#,
        );
        let mut first = true;
        store
            .list(PODS, &ListRequest::default(), |_, _, body| {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(body);
                Ok(())
            })
            .unwrap();
        out.extend_from_slice(b"]}");
        samples.push(t.elapsed());
        assert!(out.len() > raw / 2);
    }
    rows.timed("full list into a List body", &mut samples, "≤ 0.5 s");

    let ratio = store
        .compression()
        .get(PODS)
        .map_or("none".to_string(), |c| format!("{:.3}", c.ratio));
    store.close();
    let db = engine.size(&place);
    rows.add(
        "database on disk, history of the 42,000 modifications (20,000 kept) included",
        format!(
            "{:.1} MB, {:.2}× the raw JSON | bodies {ratio}",
            db as f64 / 1e6,
            db as f64 / raw as f64
        ),
        "≤ 0.5× (under churn)",
    );
    rows
}
