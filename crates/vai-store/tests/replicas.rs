//! Several stores on one PostgreSQL database, as several `vai serve` replicas open it: one
//! writes at a time, fenced by the database's advisory lock; a replica takes over when the
//! writer goes or loses its session, and what watchers on any of them see goes on in order,
//! with nothing missed or repeated; with the server down, reads say so
//! ([`Error::Unavailable`]) and everything resumes when it is back.

use std::time::{Duration, Instant};

use vai_store::{Batch, Error, Event, EventKind, Store, StoreConfig, Watch};

const PODS: &str = "/v1/pods";

mod common;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pod(name: &str, rv: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "a", "resourceVersion": rv.to_string()},
    }))
    .unwrap()
}

/// Waits (at most `within`) until `done` holds, looking every 20 ms; how long it took.
fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The next `n` object events of a watch (bookmarks skipped), as `(kind, rv)`.
fn next_events(
    runtime: &tokio::runtime::Runtime,
    watch: &mut Watch,
    n: usize,
) -> Vec<(EventKind, u64)> {
    runtime.block_on(async {
        let mut out = Vec::new();
        while out.len() < n {
            let e: Event = tokio::time::timeout(Duration::from_secs(20), watch.next())
                .await
                .expect("an event within 20 s")
                .expect("the watch goes on");
            if e.kind != EventKind::Bookmark {
                out.push((e.kind, e.resource_version));
            }
        }
        out
    })
}

fn modify(store: &Store, rv: u64) -> vai_store::Result<()> {
    store
        .write_blocking(Batch::new(PODS).event(EventKind::Modified, pod("p", rv)))
        .map(|_| ())
}

#[test]
fn a_replica_takes_over_when_the_writer_stops_and_its_watchers_miss_nothing() {
    let url = common::server().create_database().unwrap();
    let first = Store::open_postgres_replica(&url, StoreConfig::default()).unwrap();
    assert!(first.writes(), "the first replica on a database writes");
    first
        .write_blocking(Batch::new(PODS).replace(10, vec![pod("p", 1)]))
        .unwrap();
    let second = Store::open_postgres_replica(&url, StoreConfig::default()).unwrap();
    assert!(!second.writes(), "a second replica stands by");
    assert!(matches!(modify(&second, 11), Err(Error::ReadOnly)));
    let runtime = runtime();
    let mut watch = second.watch(PODS, 10).unwrap();
    for rv in 11..=20 {
        modify(&first, rv).unwrap();
    }
    let stopped = Instant::now();
    drop(first);
    let took = until(Duration::from_secs(10), "the standby writes", || {
        second.writes()
    });
    eprintln!(
        "the standby wrote {took:?} after the writer stopped ({:?} after the drop began)",
        stopped.elapsed()
    );
    for rv in 21..=30 {
        modify(&second, rv).unwrap();
    }
    let seen = next_events(&runtime, &mut watch, 20);
    let expected: Vec<_> = (11..=30).map(|rv| (EventKind::Modified, rv)).collect();
    assert_eq!(
        seen, expected,
        "the watch saw both writers' events once, in order"
    );
    second.check_integrity().unwrap();
}

#[test]
fn a_writer_that_loses_its_session_stops_writing_and_one_replica_goes_on() {
    let pg = vai_testenv::Postgres::start().unwrap();
    let a = Store::open_postgres_replica(pg.url(), StoreConfig::default()).unwrap();
    a.write_blocking(Batch::new(PODS).replace(10, vec![pod("p", 1)]))
        .unwrap();
    let b = Store::open_postgres_replica(pg.url(), StoreConfig::default()).unwrap();
    let watcher = Store::open_postgres_read_only(pg.url(), StoreConfig::default()).unwrap();
    let runtime = runtime();
    let mut watch = watcher.watch(PODS, 10).unwrap();
    assert!(a.writes() && !b.writes());
    modify(&a, 11).unwrap();

    // The writer's session ends under it, as when its connection is cut.
    let ended = pg
        .psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
         WHERE locktype = 'advisory' AND granted",
        )
        .unwrap();
    assert_eq!(ended, "1", "one session held the writer's lock");
    let took = until(Duration::from_secs(10), "a replica writes again", || {
        // Until one writes again, writes fail: none is lost silently.
        let writers = [&a, &b].into_iter().filter(|s| s.writes()).count();
        assert!(writers <= 1, "two replicas write at once");
        writers == 1 && [&a, &b].iter().any(|s| s.writes() && modify(s, 12).is_ok())
    });
    eprintln!("a replica wrote again {took:?} after the writer's session ended");
    let writer = if a.writes() { &a } else { &b };
    modify(writer, 13).unwrap();
    let seen = next_events(&runtime, &mut watch, 3);
    assert_eq!(
        seen,
        vec![
            (EventKind::Modified, 11),
            (EventKind::Modified, 12),
            (EventKind::Modified, 13)
        ]
    );
    writer.check_integrity().unwrap();
}

#[test]
fn with_the_database_down_reads_say_so_and_everything_resumes_when_it_is_back() {
    let pg = vai_testenv::Postgres::start().unwrap();
    let writer = Store::open_postgres_replica(pg.url(), StoreConfig::default()).unwrap();
    writer
        .write_blocking(Batch::new(PODS).replace(10, vec![pod("p", 1)]))
        .unwrap();
    let reader = Store::open_postgres_replica(pg.url(), StoreConfig::default()).unwrap();
    assert_eq!(reader.count(PODS).unwrap(), 1);
    let runtime = runtime();
    let mut watch = reader.watch(PODS, 10).unwrap();

    pg.stop().unwrap();
    for store in [&writer, &reader] {
        let down = store.count(PODS).unwrap_err();
        assert!(matches!(down, Error::Unavailable(_)), "{down}");
    }
    assert!(
        modify(&writer, 11).is_err(),
        "nothing is written while down"
    );

    pg.restart().unwrap();
    let took = until(Duration::from_secs(15), "a replica writes again", || {
        [&writer, &reader]
            .iter()
            .any(|s| s.writes() && modify(s, 11).is_ok())
    });
    eprintln!("a replica wrote again {took:?} after the database restarted");
    assert!(!(writer.writes() && reader.writes()));
    assert_eq!(reader.count(PODS).unwrap(), 1);
    assert_eq!(
        next_events(&runtime, &mut watch, 1),
        vec![(EventKind::Modified, 11)]
    );
    reader.check_integrity().unwrap();
}
