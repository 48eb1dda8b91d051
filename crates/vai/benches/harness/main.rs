//! The side-by-side load harness: a real control plane filled with a realistic workload, then
//! vai and the baselines measured in the same run, alternating, reported as ratios — once on a
//! quiet cluster and once while churn (a steady rate of updates, creates and deletes) flows.
//!
//! ```text
//! cargo bench -p vai --bench harness                          # full: 100,000 pods, 500 changes/s
//! VAI_BENCH_PODS=10000 cargo bench -p vai --bench harness     # quick
//! cargo test -p vai --bench harness                           # quick, as CI runs it (2,000 pods)
//! ```
//!
//! `VAI_BENCH_CHURN` sets the churn's changes per second (0 skips the churn phase);
//! `VAI_BENCH_SOAK_SECONDS` how long the soak's clients run on each side (600 in the full run,
//! 20 in the quick one); `VAI_BENCH_EDGE_KBPS` the edge link's cap (125 KB/s,
//! 1 Mbit/s, in the full run; 1,000 in the quick one) and `VAI_BENCH_EDGE_CUT_SECONDS` its cut
//! (300 / 15): the edge scenario runs at 10,000 pods or fewer unless the cap is set. Baselines:
//! the kube-apiserver itself (its watch cache serves lists) and kube-runtime's in-memory
//! reflector in a process of its own. Writes `target/vai-bench/report.json`, `report.md` and
//! PNG charts beside them, and prints the markdown table. Scenarios: initial sync, memory and
//! disk, full list, selective list, a UI page, watch fan-out with propagation delay, restart,
//! in the quiet phase the cost of identity and access (RBAC on against off), and in the churn
//! phase a soak of 200 clients on vai and then on the apiserver ([`soak`]) and the edge link:
//! vai and a reflector each through an emulated slow link, cut for a while ([`edge`]).
//! The quick run is CI's test: it fails, one line per miss, on the goals in [`goals`] (every
//! scenario measured something, no LIST at restart, no upstream watch added by fan-out, a floor
//! for the full list); the full run reports what it found, misses included, and does not fail
//! on them.
//!
//! The modules, in the order a run uses them: [`load`] fills the cluster, [`scenarios`] runs
//! the numbered scenarios against [`vai`] (the child process) and the [`baseline`]s, with
//! [`pages`] and [`fanout`] for scenarios 5 and 6, [`apiserver`] for its counts and [`churn`]
//! for the second phase; each scenario adds [`row`]s, which [`report`] and [`chart`] write out.

mod apiserver;
mod baseline;
mod chart;
mod churn;
mod edge;
mod fanout;
mod goals;
mod http1;
mod load;
mod pages;
mod report;
mod row;
mod scenarios;
mod soak;
mod stats;
mod vai;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use vai_testenv::TestEnv;

use churn::Churn;
use row::Phase;
use scenarios::{Setup, run_phase};

#[tokio::main]
async fn main() -> ExitCode {
    if let Ok(kubeconfig) = std::env::var(baseline::REFLECTOR_CHILD) {
        baseline::reflector_child(&kubeconfig).await;
    }
    if let Ok(kubeconfig) = std::env::var(edge::REFLECTOR_CHILD) {
        edge::reflector_child(&kubeconfig).await;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let n = var("VAI_BENCH_PODS").unwrap_or(if full { 100_000 } else { 2_000 });
    let rate = var("VAI_BENCH_CHURN").unwrap_or(if full { 500 } else { 100 });
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/vai-bench");
    std::fs::create_dir_all(&out).unwrap();
    let env = TestEnv::start().await.unwrap();
    let client = env.client().await.unwrap();
    let loaded = load::load(&env, &client, n).await;
    println!(
        "loaded {n} pods (with status) and {} ConfigMaps and Secrets in {:.1} s",
        loaded.others, loaded.seconds
    );
    let mut setup = Setup {
        // The pod garbage collector keeps 12,500 terminated pods, so upstream holds fewer than
        // were loaded (the generator makes a fifth of them Succeeded); each phase counts.
        objects: 0,
        runs: if full { 10 } else { 5 },
        watchers: if full { 1000 } else { 100 },
        soak: Duration::from_secs(var("VAI_BENCH_SOAK_SECONDS").unwrap_or(if full {
            600
        } else {
            20
        })),
        config_maps: loaded.others as u64 / 2,
        // The edge link's goals are set at 10,000 pods: at 100,000 a reflector's plain lists
        // would take an hour at 1 Mbit/s.
        edge: (n <= 10_000 || var("VAI_BENCH_EDGE_KBPS").is_some()).then(|| edge::EdgeSetup {
            kilobytes_per_second: var("VAI_BENCH_EDGE_KBPS").unwrap_or(if full {
                125
            } else {
                1_000
            }),
            cut: Duration::from_secs(var("VAI_BENCH_EDGE_CUT_SECONDS").unwrap_or(if full {
                300
            } else {
                15
            })),
            steady: Duration::from_secs(if full { 120 } else { 10 }),
        }),
    };
    let mut rows = Vec::new();
    setup.objects = apiserver::objects(&client).await;
    let quiet = run_phase(&env, &client, &out, &setup, Phase::Quiet, &mut rows).await;
    // A run that fails in its churn phase still leaves the quiet phase's report.
    report::write(&rows, n, None, &out);
    let mut stats = None;
    if rate > 0 {
        let churn = Churn::start(client.clone(), Arc::new(loaded.pods), rate as f64);
        setup.objects = apiserver::objects(&client).await;
        let outcome = run_phase(&env, &client, &out, &setup, Phase::Churn, &mut rows).await;
        let done = churn.stop().await;
        println!(
            "under churn: {} upstream LISTs at restart",
            outcome.lists_at_restart
        );
        assert!(done.done > 0, "the churn changed nothing");
        stats = Some(done);
    }
    report::write(&rows, n, stats.as_ref(), &out);
    if full {
        // The full run reports what it found, misses included, in its table.
        return ExitCode::SUCCESS;
    }
    let misses = goals::misses(&rows, &quiet, setup.watchers);
    for miss in &misses {
        eprintln!("quick-run goal missed: {miss}");
    }
    println!("quick run, quiet phase: {}", goals::measured_line(&quiet));
    if misses.is_empty() {
        println!("quick run: every goal met");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
