//! The numbered scenarios (seven in each phase, the cost of access in the quiet one, the soak
//! and the writer's holds in the churn one), one
//! function each, and [`run_phase`], which runs them in order
//! against a fresh vai and adds their rows to the report. Each row's name, order and goal are
//! the report's contract: the markdown table pairs the quiet and the churn phase by position,
//! and the charts by name.

use std::path::Path;
use std::time::{Duration, Instant};

use vai_testenv::TestEnv;
use vai_testenv::measure::rss_mb;

use crate::apiserver;
use crate::baseline::{Reflected, paginated_download, reflector, side_by_side};
use crate::edge::{self, EdgeSetup};
use crate::fanout::{self, UpstreamWatch};
use crate::http1;
use crate::pages::{UI_CLIENTS, UI_RATE, concurrent_pages, ui_page};
use crate::row::{Goal, Phase, Row};
use crate::soak;
use crate::stats::percentile;
use crate::vai::Vai;

/// What every phase is asked to do.
pub struct Setup {
    /// Pods, ConfigMaps and Secrets upstream (at the phase's start).
    pub objects: u64,
    /// Requests per list scenario.
    pub runs: usize,
    /// Downstream watchers in the fan-out.
    pub watchers: usize,
    /// How long the soak's clients run, on vai and then on the apiserver (churn phase).
    pub soak: Duration,
    /// ConfigMaps upstream (`settings-000000`…), which the soak's gets ask for.
    pub config_maps: u64,
    /// The edge link scenario's link and durations (churn phase; `None` skips it).
    pub edge: Option<EdgeSetup>,
}

/// What a phase saw that the quick run asserts on (see [`crate::goals`]); NaN where it was not
/// measured (vai never became ready).
pub struct Outcome {
    /// Median ms of the full list of pods: (through vai, from the apiserver).
    pub full_list: (f64, f64),
    /// The apiserver's pod watches before vai's downstream watchers opened.
    pub watches_before: f64,
    /// The pod watches the apiserver gained while they were open.
    pub upstream_watches: f64,
    /// LISTs of pods the apiserver had served before vai restarted.
    pub lists_before: f64,
    /// LISTs of pods it served while vai restarted.
    pub lists_at_restart: f64,
}

impl Outcome {
    fn not_measured() -> Outcome {
        Outcome {
            full_list: (f64::NAN, f64::NAN),
            watches_before: f64::NAN,
            upstream_watches: f64::NAN,
            lists_before: f64::NAN,
            lists_at_restart: f64::NAN,
        }
    }
}

/// One phase as its scenarios share it: the control plane, the setup, and the rows so far.
struct PhaseRun<'a> {
    env: &'a TestEnv,
    client: &'a kube::Client,
    setup: &'a Setup,
    phase: Phase,
    rows: &'a mut Vec<Row>,
    /// vai's database, and its log.
    db: &'a Path,
    log: &'a Path,
}

impl PhaseRun<'_> {
    /// Adds a row of this phase.
    fn row(
        &mut self,
        scenario: String,
        (vai, baseline): (f64, f64),
        baseline_name: &'static str,
        unit: &'static str,
        goal: Goal,
    ) {
        self.rows.push(Row {
            phase: self.phase,
            scenario,
            vai,
            baseline,
            baseline_name,
            unit,
            goal,
        });
    }
}

/// Scenarios 1–7 with a fresh vai: sync, memory, lists and a UI page against their baselines,
/// fan-out, restart.
pub async fn run_phase(
    env: &TestEnv,
    client: &kube::Client,
    out: &Path,
    setup: &Setup,
    phase: Phase,
    rows: &mut Vec<Row>,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let log = out.join(format!("vai-{}.log", phase.name()));
    let _ = std::fs::remove_file(&log);
    let mut run = PhaseRun {
        env,
        client,
        setup,
        phase,
        rows,
        db: &db,
        log: &log,
    };
    let Some(synced) = initial_sync(&mut run).await else {
        // Nothing else can be measured against a vai that never synced; the row says so.
        println!(
            "{} phase: vai not ready; its other scenarios are skipped",
            phase.name()
        );
        return Outcome::not_measured();
    };
    memory_and_disk(&mut run, &synced);
    let vai = &synced.vai;
    let full_list = full_list(&mut run, vai).await;
    selective_list(&mut run, vai).await;
    ui_pages(&mut run, vai).await;
    let fan_out = fan_out(&mut run, vai, &synced.upstream_watch).await;
    if phase == Phase::Churn {
        soak(&mut run, vai).await;
        writes_held(&mut run, vai).await;
        edge_link(&mut run, dir.path(), synced.raw_bytes).await;
    }
    let (lists_before, lists_at_restart) = restart(&mut run, synced).await;
    if phase == Phase::Quiet {
        access_cost(&mut run, dir.path()).await;
    }
    Outcome {
        full_list,
        watches_before: fan_out.watches_before,
        upstream_watches: fan_out.watches_added,
        lists_before,
        lists_at_restart,
    }
}

/// A vai that synced, and what scenario 1 measured that later scenarios compare with.
struct Synced {
    vai: Vai,
    /// vai's resident memory once ready.
    vai_rss: f64,
    /// Bytes of JSON in a paginated download of everything.
    raw_bytes: usize,
    reflected: Reflected,
    /// The reflector baseline as the report names it.
    reflector_name: &'static str,
    /// The propagation baseline: one watch on the apiserver, as old as vai's own.
    upstream_watch: UpstreamWatch,
}

/// Scenario 1, initial sync: vai to ready, the reflector to its first complete state, a bare
/// download.
async fn initial_sync(run: &mut PhaseRun<'_>) -> Option<Synced> {
    let (download, raw_bytes) = paginated_download(run.client).await;
    let upstream_watch = UpstreamWatch::open(run.client).await;
    let vai = Vai::start(run.env, run.db, run.log);
    let vai_sync = vai.ready(&http1::Client).await;
    let vai_rss = rss_mb(vai.pid());
    let reflected = reflector(run.env);
    let reflector_name = if reflected.synced {
        "kube-rs reflector"
    } else {
        "kube-rs reflector, not synced within 300 s"
    };
    let n = run.setup.objects;
    assert!(
        !reflected.synced || reflected.held >= n * 95 / 100,
        "the reflector holds {} of ~{n} objects",
        reflected.held,
    );
    let scenario = format!("1. initial sync of {n} objects");
    let sync = vai_sync.unwrap_or(f64::NAN);
    let against_reflector = (sync, reflected.seconds);
    run.row(
        scenario.clone(),
        against_reflector,
        reflector_name,
        "s",
        Goal::None,
    );
    let vai_sync = vai_sync?;
    let against_download = (vai_sync, download);
    run.row(
        scenario,
        against_download,
        "paginated LIST download",
        "s",
        Goal::None,
    );
    Some(Synced {
        vai,
        vai_rss,
        raw_bytes,
        reflected,
        reflector_name,
        upstream_watch,
    })
}

/// Scenario 2, memory and disk.
fn memory_and_disk(run: &mut PhaseRun<'_>, synced: &Synced) {
    run.row(
        "2. RSS holding every object".into(),
        (synced.vai_rss, synced.reflected.rss_mb),
        synced.reflector_name,
        "MB",
        Goal::Ratio(0.1, "≤ 0.1"),
    );
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = run.db.as_os_str().to_owned();
    wal.push("-wal");
    let on_disk = (size(run.db) + size(Path::new(&wal))) as f64 / 1e6;
    run.row(
        "2. disk vs raw JSON".into(),
        (on_disk, synced.raw_bytes as f64 / 1e6),
        "the LISTs' JSON",
        "MB",
        Goal::Ratio(1.0, "≤ 1"),
    );
}

/// Scenario 3, the full list of pods, alternating with the apiserver; median ms of both.
async fn full_list(run: &mut PhaseRun<'_>, vai: &Vai) -> (f64, f64) {
    let medians = side_by_side(vai, run.client, "/api/v1/pods", run.setup.runs).await;
    run.row(
        "3. full list of pods".into(),
        medians,
        "kube-apiserver",
        "ms",
        Goal::Ratio(1.0 / 3.0, "≥ 3× faster"),
    );
    medians
}

/// Scenario 4, a selective list (1% of pods), alternating with the apiserver.
async fn selective_list(run: &mut PhaseRun<'_>, vai: &Vai) {
    let path = "/api/v1/pods?labelSelector=shard%3D7";
    let medians = side_by_side(vai, run.client, path, run.setup.runs).await;
    run.row(
        "4. selective list (1%)".into(),
        medians,
        "kube-apiserver",
        "ms",
        Goal::Ratio(0.02, "≥ 50× faster"),
    );
}

/// Scenario 5, a UI page against a list sorted in the client; then the query API's dashboard
/// page under 50 clients: at a stated rate (their latency, from when each page was due), and
/// back to back (what the machine can serve).
async fn ui_pages(run: &mut PhaseRun<'_>, vai: &Vai) {
    let medians = ui_page(vai, run.client, run.setup.runs).await;
    run.row(
        "5. UI page (filter, sort, total)".into(),
        medians,
        "list + client-side sort",
        "ms",
        Goal::Ratio(0.02, "≥ 50× faster"),
    );
    let (alone, _) = concurrent_pages(vai, 1, run.setup.runs * 10, None).await;
    let (at_rate, _) = concurrent_pages(vai, UI_CLIENTS, UI_RATE as usize * 4, Some(UI_RATE)).await;
    for (p, goal) in [
        (0.5, Goal::Max(5.0, "p50 ≤ 5 ms")),
        (0.99, Goal::Max(20.0, "p99 ≤ 20 ms")),
    ] {
        run.row(
            format!(
                "5. dashboard page, {UI_CLIENTS} clients asking {UI_RATE:.0} pages/s in all: p{:.0}",
                p * 100.0
            ),
            (percentile(&at_rate, p), percentile(&alone, p)),
            "one client alone",
            "ms",
            goal,
        );
    }
    let (back_to_back, rate) = concurrent_pages(vai, UI_CLIENTS, UI_CLIENTS * 20, None).await;
    run.row(
        format!("5. dashboard page, {UI_CLIENTS} clients back to back ({rate:.0} pages/s): p50"),
        (percentile(&back_to_back, 0.5), percentile(&alone, 0.5)),
        "one client alone",
        "ms",
        Goal::Note("queueing: 50 / pages per second"),
    );
}

/// Scenario 6, fan-out: many watchers on vai; upstream still sees one watch per type.
async fn fan_out(
    run: &mut PhaseRun<'_>,
    vai: &Vai,
    upstream_watch: &UpstreamWatch,
) -> fanout::FanOut {
    let watchers = run.setup.watchers;
    let seen = fanout::fan_out(vai, run.client, upstream_watch, watchers, run.phase).await;
    run.row(
        format!("6. upstream pod watches added by {watchers} watchers on vai"),
        (seen.watches_added, watchers as f64),
        "each watcher on the apiserver",
        "watches",
        Goal::Note("0 (one per type, already open)"),
    );
    let lost = seen.delays.lost;
    run.row(
        format!("6. probe events lost at the {watchers} watchers"),
        (lost.0 as f64, lost.1 as f64),
        "lost at one watch on the apiserver",
        "events",
        Goal::Max(0.0, "0"),
    );
    let (direct, delays) = (&seen.delays.direct, &seen.delays.through_vai);
    for (p, goal) in [(0.5, Goal::None), (0.99, Goal::Max(100.0, "p99 ≤ 100 ms"))] {
        let at = (percentile(delays, p), percentile(direct, p));
        let name = format!("6. propagation to {watchers} watchers, p{}", p * 100.0);
        run.row(name, at, "one watch on the apiserver", "ms", goal);
    }
    seen
}

/// Scenario 9 (churn phase only), the soak: the same clients on vai, then on the apiserver,
/// after a stretch with no clients that measures what the churn alone costs the apiserver.
async fn soak(run: &mut PhaseRun<'_>, vai: &Vai) {
    let Some(apiserver) = run
        .env
        .control_plane()
        .pid(vai_testenv::Component::ApiServer)
        .map(|p| p.as_raw())
    else {
        println!("9. soak: the apiserver's process is not known; not measured");
        return;
    };
    let duration = run.setup.soak;
    let alone = duration / 10;
    let before = soak::cpu_seconds(apiserver);
    tokio::time::sleep(alone).await;
    let churn_alone = (soak::cpu_seconds(apiserver) - before) / alone.as_secs_f64();
    let on_vai = soak::soak(
        soak::client_for(&vai.url),
        run.client,
        duration,
        run.setup.config_maps,
        apiserver,
        Some(vai.pid()),
    )
    .await;
    let direct = soak::soak(
        run.client.clone(),
        run.client,
        duration,
        run.setup.config_maps,
        apiserver,
        None,
    )
    .await;
    for (on, seen) in [("vai", &on_vai), ("the apiserver", &direct)] {
        println!(
            "9. soak on {on}: {} requests, {} failed{}; {} events delivered to the watches, {} lost, {} relists; apiserver CPU {:.1} s",
            seen.requests,
            seen.errors,
            seen.first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (first: {e})")),
            seen.delivered,
            seen.lost,
            seen.relists,
            seen.apiserver_cpu,
        );
    }
    let minutes = duration.as_secs_f64() / 60.0;
    let clients = soak::CLIENTS;
    run.row(
        format!("9. soak, {clients} clients for {minutes:.1} min under churn: failed requests"),
        (on_vai.errors as f64, direct.errors as f64),
        "the same clients on the apiserver",
        "failed requests",
        Goal::Max(0.0, "0"),
    );
    run.row(
        format!("9. soak: events lost at {} watches", soak::WATCHES),
        (on_vai.lost as f64, direct.lost as f64),
        "the same watches on the apiserver",
        "events",
        Goal::Max(0.0, "0"),
    );
    for (what, rss) in [
        ("RSS", on_vai.rss),
        ("RSS, anonymous part", on_vai.rss_anon),
    ] {
        let (second, last) = rss.unwrap_or((f64::NAN, f64::NAN));
        run.row(
            format!("9. soak: vai {what}, the run's last tenth against its second"),
            (last, second),
            "its second tenth",
            "MB",
            Goal::Ratio(1.1, "≤ +10%"),
        );
    }
    let (vai_p50, vai_p99) = soak::p50_p99(&on_vai.latencies);
    let (direct_p50, direct_p99) = soak::p50_p99(&direct.latencies);
    run.row(
        "9. soak: request latency p50".into(),
        (vai_p50, direct_p50),
        "the same clients on the apiserver",
        "ms",
        Goal::None,
    );
    run.row(
        "9. soak: request latency p99".into(),
        (vai_p99, direct_p99),
        "the same clients on the apiserver",
        "ms",
        Goal::None,
    );
    run.row(
        "9. soak: apiserver CPU seconds".into(),
        (on_vai.apiserver_cpu, direct.apiserver_cpu),
        "the same clients on the apiserver",
        "s",
        Goal::Ratio(0.05, "≤ 1/20"),
    );
    // The churn's own writes cost the apiserver the same in both runs.
    let churn = churn_alone * duration.as_secs_f64();
    run.row(
        format!("9. soak: apiserver CPU seconds beyond the churn's ({churn:.1} s)"),
        (on_vai.apiserver_cpu - churn, direct.apiserver_cpu - churn),
        "the same clients on the apiserver",
        "s",
        Goal::Ratio(0.05, "≤ 1/20"),
    );
}

/// Scenario 10 (churn phase only, after the soak): how long vai's writer was held for the
/// journal over the phase (behind a checkpoint waiting for long readers, or for the WAL's
/// limit), from vai's `/metrics`.
async fn writes_held(run: &mut PhaseRun<'_>, vai: &Vai) {
    let page = match http1::Client.get(&format!("{}/metrics", vai.url)).await {
        Ok((200, body)) => String::from_utf8_lossy(&body).to_string(),
        other => {
            println!("10. writes held: /metrics not read ({other:?})");
            return;
        }
    };
    for (cause, what) in [
        ("checkpoint", "behind a checkpoint"),
        ("journal_limit", "for the WAL's limit"),
    ] {
        let label = format!("cause=\"{cause}\"");
        let gauge = |name: &str| {
            vai_testenv::measure::metric_sum(&page, name, &[&label]).unwrap_or(f64::NAN) * 1000.0
        };
        run.row(
            format!("10. the store's writer held {what} under churn: the longest hold"),
            (
                gauge("vai_store_writes_held_longest_seconds"),
                gauge("vai_store_writes_held_seconds"),
            ),
            "all such holds together",
            "ms",
            Goal::Max(50.0, "≤ tens of ms"),
        );
    }
}

/// Scenario 11 (churn phase only): vai and a reflector each through an emulated slow link
/// ([`crate::edge`]); `raw_bytes` is the plain JSON of the lists, downloaded in scenario 1.
async fn edge_link(run: &mut PhaseRun<'_>, dir: &Path, raw_bytes: usize) {
    let Some(setup) = &run.setup.edge else {
        println!(
            "11. edge link: skipped (it runs at 10,000 pods or fewer, or set VAI_BENCH_EDGE_KBPS)"
        );
        return;
    };
    let log = run.log.with_file_name("vai-edge.log");
    let edge = edge::measure(run.env, run.client, setup, &dir.join("vai-edge.db"), &log).await;
    let link = format!(
        "{} kbit/s, 200 ms round trip",
        setup.kilobytes_per_second * 8
    );
    let reflector = "kube-rs reflector through the same link";
    run.row(
        format!("11. edge link ({link}): initial sync"),
        edge.sync_seconds,
        reflector,
        "s",
        Goal::None,
    );
    run.row(
        "11. edge link: initial sync, bytes received until ready".into(),
        edge.sync_megabytes,
        reflector,
        "MB",
        Goal::None,
    );
    run.row(
        "11. edge link: from ready until the OpenAPI documents are stored (the watches' events included)".into(),
        (edge.openapi_megabytes, 0.0),
        "the reflector fetches none",
        "MB",
        Goal::None,
    );
    run.row(
        "11. edge link: initial sync, bytes received until ready vs the lists' plain JSON".into(),
        (edge.sync_megabytes.0, raw_bytes as f64 / 1e6),
        "the LISTs' JSON",
        "MB",
        Goal::Ratio(0.35, "≤ 0.35"),
    );
    run.row(
        "11. edge link: bytes received per hour once synced, under churn".into(),
        edge.steady_megabytes_per_hour,
        reflector,
        "MB/h",
        Goal::None,
    );
    let tried = edge.reads_tried as f64;
    run.row(
        format!(
            "11. edge link: reads unanswered of {tried} during a {} s cut",
            setup.cut.as_secs()
        ),
        (
            tried - edge.reads_during_cut.0,
            tried - edge.reads_during_cut.1,
        ),
        "the apiserver through the link",
        "unanswered reads",
        Goal::Max(0.0, "0"),
    );
    run.row(
        "11. edge link, after the cut: time until current".into(),
        edge.current_seconds,
        reflector,
        "s",
        Goal::None,
    );
    run.row(
        "11. edge link, after the cut: bytes received until current".into(),
        edge.current_megabytes,
        reflector,
        "MB",
        Goal::Ratio(0.05, "≤ 0.05"),
    );
    run.row(
        "11. edge link, after the cut: upstream LISTs".into(),
        edge.lists_after_cut,
        "the reflector's relists",
        "calls",
        Goal::Max(0.0, "0"),
    );
}

/// Scenario 7, restart: time to the first answered list, and LISTs upstream. Returns the LISTs
/// of pods the apiserver had served before, and those it served during the restart.
async fn restart(run: &mut PhaseRun<'_>, synced: Synced) -> (f64, f64) {
    synced.vai.stop();
    let lists_before = apiserver::pod_lists(run.client).await;
    assert!(lists_before >= 1.0, "vai's first sync listed pods");
    let started = Instant::now();
    let vai = Vai::start(run.env, run.db, run.log);
    loop {
        let first = http1::Client
            .get(&format!("{}/api/v1/pods?limit=1", vai.url))
            .await;
        if let Ok((200, _)) = first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart = started.elapsed().as_secs_f64();
    // A resumed watch is open once vai is ready again; count LISTs only after that (under
    // churn vai may have to relist and not be ready within the deadline: then the LISTs are
    // counted as they stand).
    vai.ready(&http1::Client).await;
    let lists_at_restart = apiserver::pod_lists(run.client).await - lists_before;
    run.row(
        "7. restart to first answer".into(),
        (restart, synced.reflected.seconds),
        "reflector's full resync",
        "s",
        Goal::Max(1.0, "≤ 1 s"),
    );
    run.row(
        "7. upstream LISTs at restart".into(),
        (lists_at_restart, 1.0),
        "a reflector relists",
        "calls",
        Goal::Max(0.0, "0"),
    );
    vai.stop();
    (lists_before, lists_at_restart)
}

/// Scenario 8 (quiet phase only), what identity and access cost: the same vai binary with
/// `--authorization-mode=RBAC` (every request authenticated by a ServiceAccount token and
/// authorized by the cluster's RBAC) beside one without (`AlwaysAllow`), both on loopback
/// over plain HTTP so only authentication and authorization differ; each syncs a database of
/// its own in `dir` afresh; rounds alternate.
async fn access_cost(run: &mut PhaseRun<'_>, dir: &Path) {
    let token = apiserver::reader_token(run.client).await;
    let off = Vai::start(run.env, &dir.join("vai-off.db"), run.log);
    let mut on = Vai::start_with(
        run.env,
        &dir.join("vai-on.db"),
        run.log,
        &["--authorization-mode", "RBAC"],
    );
    on.bearer = Some(token);
    let (Some(_), Some(_)) = (
        off.ready(&http1::Client).await,
        on.ready(&http1::Client).await,
    ) else {
        println!("8. access cost: a vai was not ready; not measured");
        return;
    };
    let get = "/api/v1/namespaces/team-07/configmaps/settings-000007";
    let timed = async |vai: &Vai, path: &str| {
        let t = Instant::now();
        let (status, _) = http1::Client
            .get_as(&format!("{}{path}", vai.url), vai.bearer.as_deref())
            .await
            .unwrap();
        assert_eq!(
            status,
            200,
            "{path} with access {}",
            if vai.bearer.is_some() { "on" } else { "off" }
        );
        t.elapsed().as_secs_f64() * 1000.0
    };
    // The first request of a token verifies it; what follows is the steady cost.
    timed(&on, get).await;
    // Pairs in both orders, so neither side always goes second.
    let (mut gets_on, mut gets_off) = (Vec::new(), Vec::new());
    for k in 0..run.setup.runs * 100 {
        if k % 2 == 0 {
            gets_off.push(timed(&off, get).await);
        }
        gets_on.push(timed(&on, get).await);
        if k % 2 == 1 {
            gets_off.push(timed(&off, get).await);
        }
    }
    let (p50_on, p50_off) = (percentile(&gets_on, 0.5), percentile(&gets_off, 0.5));
    run.row(
        "8. access on: get by name, p50 on − off".into(),
        ((p50_on - p50_off) * 1000.0, p50_off * 1000.0),
        "access off (its p50)",
        "µs",
        Goal::Max(50.0, "≤ +50 µs"),
    );
    // A full list takes tens of ms on a busy machine: three times the rounds of scenario 3.
    let (mut lists_on, mut lists_off) = (Vec::new(), Vec::new());
    for k in 0..run.setup.runs * 3 {
        if k % 2 == 0 {
            lists_off.push(timed(&off, "/api/v1/pods").await);
        }
        lists_on.push(timed(&on, "/api/v1/pods").await);
        if k % 2 == 1 {
            lists_off.push(timed(&off, "/api/v1/pods").await);
        }
    }
    run.row(
        "8. access on: full list of pods".into(),
        (percentile(&lists_on, 0.5), percentile(&lists_off, 0.5)),
        "access off",
        "ms",
        Goal::Ratio(1.05, "≤ +5%"),
    );
    let (at_rate_off, _) =
        concurrent_pages(&off, UI_CLIENTS, UI_RATE as usize * 4, Some(UI_RATE)).await;
    let (at_rate_on, _) =
        concurrent_pages(&on, UI_CLIENTS, UI_RATE as usize * 4, Some(UI_RATE)).await;
    for (p, goal) in [
        (0.5, Goal::Max(5.0, "p50 ≤ 5 ms")),
        (0.99, Goal::Max(20.0, "p99 ≤ 20 ms")),
    ] {
        run.row(
            format!(
                "8. access on: dashboard page, {UI_CLIENTS} clients, {UI_RATE:.0} pages/s: p{:.0}",
                p * 100.0
            ),
            (percentile(&at_rate_on, p), percentile(&at_rate_off, p)),
            "access off",
            "ms",
            goal,
        );
    }
    on.stop();
    off.stop();
}
