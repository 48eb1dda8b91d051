//! Behaviour of the store through its public API: files, writes, snapshots, history, watches.
//! The tests of behaviour run on each backend (the SQLite file, a real PostgreSQL); those of
//! the file itself (permissions, corruption, a full disk, the journal, compression) on the file.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use vai_store::{
    Batch, Error, EventKind, FieldSelector, LabelSelector, ListRequest, Store, StoreConfig,
    SyncState,
};

const PODS: &str = "/v1/pods";

mod common;

use common::{Place, fresh_places};

fn pod(ns: &str, name: &str, rv: u64, app: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(),
                     "labels": {"app": app}},
    }))
    .unwrap()
}

fn names(store: &Store, req: &ListRequest) -> (Vec<String>, vai_store::ListMeta) {
    let mut out = Vec::new();
    let meta = store
        .list(PODS, req, |ns, name, _| {
            out.push(format!("{ns}/{name}"));
            Ok(())
        })
        .unwrap();
    (out, meta)
}

/// The error a list that must fail gives.
fn list_err(store: &Store, req: ListRequest) -> Error {
    store.list(PODS, &req, |_, _, _| Ok(())).unwrap_err()
}

fn open(place: &Place) -> Store {
    place.open(StoreConfig::default()).unwrap()
}

fn open_file(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("vai.db"), StoreConfig::default()).unwrap()
}

#[test]
fn files_are_private_and_foreign_or_newer_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_file(&dir);
    store
        .write_blocking(Batch::new(PODS).replace(5, vec![pod("a", "p", 5, "x")]))
        .unwrap();
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    store.close();
    drop(store);

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello, not a database, but long enough to look like a header....................................................").unwrap();
    let err = Store::open(&text, StoreConfig::default()).unwrap_err();
    assert!(matches!(err, Error::ForeignFile(_)), "{err:?}");
    assert!(std::fs::read_to_string(&text).unwrap().starts_with("hello"));

    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    let err = Store::open(&other, StoreConfig::default()).unwrap_err();
    assert!(matches!(err, Error::ForeignFile(_)), "{err:?}");

    let newer = dir.path().join("vai.db");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(conn);
    let err = Store::open(&newer, StoreConfig::default()).unwrap_err();
    assert!(
        matches!(err, Error::NewerSchema { found: 99, .. }),
        "{err:?}"
    );
}

#[test]
fn replace_swaps_the_set_atomically_and_yields_the_diff() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write_blocking(Batch::new(PODS).replace(
                10,
                vec![
                    pod("a", "keep", 3, "x"),
                    pod("a", "change", 4, "x"),
                    pod("b", "gone", 5, "x"),
                ],
            ))
            .unwrap();
        let events = store
            .write_blocking(Batch::new(PODS).replace(
                20,
                vec![
                    pod("a", "keep", 3, "x"),
                    pod("a", "change", 15, "y"),
                    pod("c", "new", 18, "x"),
                ],
            ))
            .unwrap();
        let mut diff: Vec<(EventKind, String)> = events
            .iter()
            .map(|e| (e.kind, format!("{}/{}", e.namespace, e.name)))
            .collect();
        diff.sort_by_key(|(_, n)| n.clone());
        assert_eq!(
            diff,
            vec![
                (EventKind::Modified, "a/change".into()),
                (EventKind::Deleted, "b/gone".into()),
                (EventKind::Added, "c/new".into()),
            ]
        );
        let (now, meta) = names(&store, &ListRequest::default());
        assert_eq!(now, ["a/change", "a/keep", "c/new"]);
        assert_eq!(meta.resource_version, 20);
        // The state before the relist is still answerable from history.
        let before = ListRequest {
            resource_version: Some(10),
            ..Default::default()
        };
        assert_eq!(names(&store, &before).0, ["a/change", "a/keep", "b/gone"]);
    }
}

#[test]
fn replayed_events_are_skipped_and_deletes_of_unknown_objects_ignored() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write_blocking(Batch::new(PODS).replace(1, Vec::<Vec<u8>>::new()))
            .unwrap();
        let first = store
            .write_blocking(Batch::new(PODS).event(EventKind::Added, pod("a", "p", 2, "x")))
            .unwrap();
        assert_eq!(first[0].kind, EventKind::Added);
        let again = store
            .write_blocking(
                Batch::new(PODS)
                    .event(EventKind::Modified, pod("a", "p", 2, "x"))
                    .event(EventKind::Deleted, pod("a", "ghost", 3, "x")),
            )
            .unwrap();
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(
            store
                .resource_state(PODS)
                .unwrap()
                .unwrap()
                .last_resource_version,
            3
        );
    }
}

#[test]
fn continue_chains_stay_on_their_snapshot_and_expire_with_410() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let config = StoreConfig {
            history_max_events: 2,
            ..Default::default()
        };
        let store = place.open(config).unwrap();
        let all: Vec<_> = (0..5)
            .map(|i| pod("ns", &format!("p{i}"), 10, "x"))
            .collect();
        store
            .write_blocking(Batch::new(PODS).replace(10, all))
            .unwrap();

        let first = ListRequest {
            limit: Some(2),
            ..Default::default()
        };
        let (page1, meta1) = names(&store, &first);
        assert_eq!(page1, ["ns/p0", "ns/p1"]);
        let token = meta1.continue_token.clone().unwrap();

        // Writes after the first page do not show in the rest of the chain.
        store
            .write_blocking(
                Batch::new(PODS)
                    .event(EventKind::Deleted, pod("ns", "p3", 11, "x"))
                    .event(EventKind::Added, pod("ns", "p9", 12, "x")),
            )
            .unwrap();
        let next = ListRequest {
            limit: Some(10),
            continue_token: Some(token),
            ..Default::default()
        };
        let (page2, meta2) = names(&store, &next);
        assert_eq!(page2, ["ns/p2", "ns/p3", "ns/p4"]);
        assert_eq!(meta2.resource_version, 10);
        assert_eq!(meta2.continue_token, None);

        // Push the snapshot out of the window (two history rows kept).
        for rv in 13..17 {
            store
                .write_blocking(
                    Batch::new(PODS).event(EventKind::Modified, pod("ns", "p0", rv, "x")),
                )
                .unwrap();
        }
        let first = ListRequest {
            limit: Some(1),
            ..Default::default()
        };
        let stale = ListRequest {
            continue_token: meta1.continue_token,
            ..first
        };
        let err = store.list(PODS, &stale, |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Expired), "{err:?}");
        let err = list_err(
            &store,
            ListRequest {
                resource_version: Some(10),
                ..Default::default()
            },
        );
        assert!(matches!(err, Error::Gone { requested: 10, .. }), "{err:?}");
        let err = list_err(
            &store,
            ListRequest {
                resource_version: Some(99),
                ..Default::default()
            },
        );
        assert!(
            matches!(
                err,
                Error::TooLargeResourceVersion {
                    requested: 99,
                    current: 16
                }
            ),
            "{err:?}"
        );
        let err = store
            .list(
                PODS,
                &ListRequest {
                    continue_token: Some("garbage!".into()),
                    ..Default::default()
                },
                |_, _, _| Ok(()),
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidContinue(_)), "{err:?}");
    }
}

#[test]
fn selectors_filter_in_sql() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write_blocking(Batch::new(PODS).replace(
                9,
                vec![
                    pod("a", "web-1", 1, "web"),
                    pod("a", "db-1", 2, "db"),
                    pod("b", "web-2", 3, "web"),
                ],
            ))
            .unwrap();
        let req = |labels: &str, fields: &str, ns: Option<&str>| ListRequest {
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::parse(fields).unwrap(),
            namespace: ns.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(
            names(&store, &req("app=web", "", None)).0,
            ["a/web-1", "b/web-2"]
        );
        assert_eq!(names(&store, &req("app!=web", "", None)).0, ["a/db-1"]);
        assert_eq!(
            names(&store, &req("app in (db, web)", "", Some("a"))).0,
            ["a/db-1", "a/web-1"]
        );
        assert_eq!(
            names(&store, &req("!app", "", None)).0,
            Vec::<String>::new()
        );
        assert_eq!(
            names(&store, &req("", "metadata.name=web-2", None)).0,
            ["b/web-2"]
        );
        assert_eq!(
            names(&store, &req("app", "metadata.namespace!=a", None)).0,
            ["b/web-2"]
        );
    }
}

#[tokio::test]
async fn a_watch_replays_history_then_follows_live_events_without_gap_or_duplicate() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write(Batch::new(PODS).replace(10, vec![pod("a", "p", 10, "x")]))
            .await
            .unwrap();
        store
            .write(Batch::new(PODS).event(EventKind::Modified, pod("a", "p", 11, "y")))
            .await
            .unwrap();
        store
            .write(Batch::new(PODS).event(EventKind::Added, pod("a", "q", 12, "y")))
            .await
            .unwrap();

        let mut watch = store.watch(PODS, 10).unwrap();
        store
            .write(Batch::new(PODS).event(EventKind::Deleted, pod("a", "p", 13, "y")))
            .await
            .unwrap();
        store.write(Batch::new(PODS).bookmark(14)).await.unwrap();
        store
            .write(Batch::new("/v1/configmaps").replace(15, Vec::<Vec<u8>>::new()))
            .await
            .unwrap();
        store
            .write(Batch::new(PODS).event(EventKind::Added, pod("a", "r", 16, "y")))
            .await
            .unwrap();

        let mut seen = Vec::new();
        while seen.len() < 5 {
            let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .unwrap()
                .unwrap();
            seen.push((e.kind, e.name.clone(), e.resource_version));
        }
        assert_eq!(
            seen,
            vec![
                (EventKind::Modified, "p".into(), 11),
                (EventKind::Added, "q".into(), 12),
                (EventKind::Deleted, "p".into(), 13),
                (EventKind::Bookmark, "".into(), 14),
                (EventKind::Added, "r".into(), 16),
            ]
        );
        assert!(matches!(store.watch(PODS, 3), Err(Error::Gone { .. })));
    }
}

/// Watches opened while a writer commits, each from the version it last read (as a client
/// that has just listed): each gets exactly the events after that version, in order, whether
/// they were committed before its history read, during it, or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_opened_while_writes_commit_miss_nothing_and_repeat_nothing() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write(Batch::new(PODS).replace(1, vec![pod("a", "p0", 1, "x")]))
            .await
            .unwrap();
        let last = 400u64;
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for rv in 2..=last {
                    let name = format!("p{}", rv % 7);
                    store
                        .write(
                            Batch::new(PODS).event(EventKind::Modified, pod("a", &name, rv, "y")),
                        )
                        .await
                        .unwrap();
                }
            })
        };
        let mut watches = Vec::new();
        while !writer.is_finished() || watches.is_empty() {
            let from = store
                .resource_state(PODS)
                .unwrap()
                .unwrap()
                .last_resource_version;
            watches.push((from, store.watch(PODS, from).unwrap()));
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        let opened_midway = watches
            .iter()
            .filter(|(from, _)| *from > 1 && *from < last)
            .count();
        assert!(
            opened_midway > 0,
            "some watches opened while the writer ran"
        );
        for (from, mut watch) in watches {
            let mut seen = Vec::new();
            while seen.last().is_none_or(|rv| *rv < last) && from < last {
                let e = tokio::time::timeout(Duration::from_secs(10), watch.next())
                    .await
                    .expect("every event up to the last arrives")
                    .unwrap();
                seen.push(e.resource_version);
            }
            let want: Vec<u64> = (from + 1..=last).collect();
            assert_eq!(seen, want, "the watch from {from}");
        }
    }
}

#[test]
fn sync_state_and_data_survive_reopening() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        {
            let store = open(&place);
            store
                .write_blocking(
                    Batch::new(PODS)
                        .replace(7, vec![pod("a", "p", 7, "x")])
                        .bookmark(9)
                        .state(SyncState::Stale, Some("connection refused".into())),
                )
                .unwrap();
            store.close();
        }
        let store = open(&place);
        let state = store.resource_state(PODS).unwrap().unwrap();
        assert_eq!(state.list_resource_version, Some(7));
        assert_eq!(state.last_resource_version, 9);
        assert_eq!(state.state, SyncState::Stale);
        assert_eq!(state.last_error.as_deref(), Some("connection refused"));
        assert!(store.get(PODS, "a", "p", None).unwrap().is_some());
        // New events continue the sequence after a reopen (no duplicate sequence numbers).
        let events = store
            .write_blocking(Batch::new(PODS).event(EventKind::Added, pod("a", "q", 10, "x")))
            .unwrap();
        assert!(events[0].seq > 1);
        store.check_integrity().unwrap();
    }
}

fn aged_pod(ns: &str, name: &str, rv: u64, app: &str, created: &str, rank: Option<u32>) -> Vec<u8> {
    let mut labels = serde_json::json!({"app": app});
    if let Some(rank) = rank {
        labels["rank"] = rank.to_string().into();
    }
    serde_json::to_vec(&serde_json::json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(),
                     "creationTimestamp": created, "labels": labels},
    }))
    .unwrap()
}

#[test]
fn pages_filter_sort_and_count_in_one_snapshot() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        use vai_store::{Column, Condition, Filter, Operator, PageRequest, SortKey};
        let store = open(&place);
        store
            .write_blocking(Batch::new(PODS).replace(
                50,
                vec![
                    aged_pod("a", "web-1", 1, "web", "2026-01-03T00:00:00Z", Some(10)),
                    aged_pod("a", "web-2", 2, "web", "2026-01-01T00:00:00Z", Some(9)),
                    aged_pod("b", "Web-3", 3, "web", "2026-01-02T00:00:00Z", None),
                    aged_pod("b", "db-1", 4, "db", "2026-01-04T00:00:00Z", Some(100)),
                    aged_pod("c", "cache-1", 5, "cache", "2026-01-05T00:00:00Z", Some(2)),
                ],
            ))
            .unwrap();
        let run = |req: &PageRequest| {
            let mut out = Vec::new();
            let meta = store
                .page(PODS, req, |_, name, _| {
                    out.push(name.to_string());
                    Ok(())
                })
                .unwrap();
            (out, meta.total)
        };
        let cond = |column: Column, operator: Operator, values: &[&str]| Condition {
            column,
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let newest_first = vec![SortKey {
            column: Column::CreationTimestamp,
            descending: true,
            case_insensitive: false,
        }];

        // Filter by label, newest first, page 1 of size 2, with the total.
        let mut req = PageRequest {
            filters: vec![Filter(vec![cond(
                Column::Label("app".into()),
                Operator::Eq,
                &["web"],
            )])],
            sort: newest_first.clone(),
            page_size: Some(2),
            ..Default::default()
        };
        assert_eq!(run(&req), (vec!["web-1".into(), "Web-3".into()], 3));
        req.offset = 2;
        assert_eq!(run(&req), (vec!["web-2".into()], 3));

        // OR within a filter, AND across filters; substring; time comparison.
        let req = PageRequest {
            filters: vec![
                Filter(vec![
                    cond(Column::Name, Operator::Contains, &["eb"]),
                    cond(Column::Namespace, Operator::Eq, &["c"]),
                ]),
                Filter(vec![cond(
                    Column::CreationTimestamp,
                    Operator::Gt,
                    &["2026-01-01T12:00:00Z"],
                )]),
            ],
            sort: newest_first.clone(),
            ..Default::default()
        };
        assert_eq!(run(&req).0, ["cache-1", "web-1", "Web-3"]);

        // Numeric comparison on a label: 9 < 10 < 100, not text order; absent labels never match.
        let req = PageRequest {
            filters: vec![Filter(vec![cond(
                Column::Label("rank".into()),
                Operator::Gt,
                &["5"],
            )])],
            sort: vec![SortKey {
                column: Column::Name,
                descending: false,
                case_insensitive: false,
            }],
            ..Default::default()
        };
        assert_eq!(run(&req).0, ["db-1", "web-1", "web-2"]);

        // Case-insensitive sort, and a not-in that keeps objects without the label.
        let req = PageRequest {
            filters: vec![Filter(vec![cond(
                Column::Label("rank".into()),
                Operator::NotIn,
                &["10", "100"],
            )])],
            sort: vec![SortKey {
                column: Column::Name,
                descending: false,
                case_insensitive: true,
            }],
            ..Default::default()
        };
        assert_eq!(run(&req).0, ["cache-1", "web-2", "Web-3"]);

        // Pages of an older snapshot.
        store
            .write_blocking(Batch::new(PODS).event(
                EventKind::Deleted,
                aged_pod("a", "web-1", 60, "web", "", None),
            ))
            .unwrap();
        let mut req = PageRequest {
            sort: newest_first,
            ..Default::default()
        };
        assert_eq!(run(&req).1, 4);
        req.list.resource_version = Some(50);
        assert_eq!(run(&req).1, 5);

        assert!(matches!(
            Column::parse("spec.nodeName"),
            Err(Error::UnsupportedField(_))
        ));
        assert_eq!(
            Column::parse("metadata.labels[app]").unwrap(),
            Column::Label("app".into())
        );
    }
}

#[test]
fn a_corrupt_file_is_reported_as_corrupt_never_silently_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vai.db");
    {
        let store = open_file(&dir);
        let pods: Vec<_> = (0..200)
            .map(|i| pod("ns", &format!("p{i}"), 5, "x"))
            .collect();
        store
            .write_blocking(Batch::new(PODS).replace(5, pods))
            .unwrap();
        store.close();
    }
    // Scribble over the middle of the file, past the header, as a failing disk might.
    let mut bytes = std::fs::read(&path).unwrap();
    let len_before = bytes.len();
    for b in &mut bytes[len_before / 3..len_before / 3 + 40_000] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();

    let outcome = Store::open(&path, StoreConfig::default()).and_then(|store| {
        store.check_integrity()?;
        store.list(PODS, &ListRequest::default(), |_, _, _| Ok(()))
    });
    assert!(matches!(outcome, Err(Error::Corrupt(_))), "{outcome:?}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        len_before,
        "the file was changed"
    );
}

#[test]
fn history_older_than_the_age_limit_is_pruned() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let config = StoreConfig {
            history_max_age: Duration::ZERO,
            ..Default::default()
        };
        let store = place.open(config).unwrap();
        store
            .write_blocking(Batch::new(PODS).replace(10, vec![pod("a", "p", 10, "x")]))
            .unwrap();
        store
            .write_blocking(Batch::new(PODS).event(EventKind::Modified, pod("a", "p", 11, "y")))
            .unwrap();
        // With no age allowed, the superseded version is gone at once: RV 10 is out of the window.
        let as_of_10 = ListRequest {
            resource_version: Some(10),
            ..Default::default()
        };
        let err = store.list(PODS, &as_of_10, |_, _, _| Ok(())).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Gone {
                    requested: 10,
                    oldest: 11
                }
            ),
            "{err:?}"
        );
        assert!(matches!(store.watch(PODS, 10), Err(Error::Gone { .. })));
        // The current state is untouched.
        assert_eq!(names(&store, &ListRequest::default()).0, ["a/p"]);
        assert_eq!(
            store
                .resource_state(PODS)
                .unwrap()
                .unwrap()
                .oldest_resource_version,
            11
        );
    }
}

#[test]
fn one_writer_per_file_and_read_only_opens_alongside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vai.db");
    let store = open_file(&dir);
    store
        .write_blocking(Batch::new(PODS).replace(3, vec![pod("a", "p", 3, "x")]))
        .unwrap();
    match Store::open(&path, StoreConfig::default()) {
        Err(Error::Locked(p)) => assert!(p.ends_with("vai.db")),
        other => panic!("a second writer must be refused, got {other:?}"),
    }
    let lock_mode = std::fs::metadata(dir.path().join("vai.db.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(lock_mode & 0o777, 0o600);
    // A reader sees the writer's data and cannot write.
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.count(PODS).unwrap(), 1);
    assert!(matches!(
        reader.write_blocking(Batch::new(PODS).bookmark(4)),
        Err(Error::ReadOnly)
    ));
    // The lock goes with the store.
    drop(store);
    let store = open_file(&dir);
    assert_eq!(store.count(PODS).unwrap(), 1);
    // Read-only opens never create files.
    assert!(matches!(
        Store::open_read_only(&dir.path().join("absent.db")),
        Err(Error::Io(..))
    ));
    assert!(!dir.path().join("absent.db").exists());
}

#[tokio::test]
async fn documents_are_stored_replaced_and_survive_reopening() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let doc = |body: &str| vai_store::Document {
            key: "/version".into(),
            content_type: "application/json".into(),
            body: body.as_bytes().to_vec(),
        };
        {
            let store = open(&place);
            assert_eq!(store.document("/version").unwrap(), None);
            store.put_documents(vec![doc("{\"a\":1}")]).await.unwrap();
            store.put_documents(vec![doc("{\"a\":2}")]).await.unwrap();
            assert_eq!(store.document("/version").unwrap(), Some(doc("{\"a\":2}")));
            store.close();
        }
        let store = open(&place);
        assert_eq!(store.document("/version").unwrap(), Some(doc("{\"a\":2}")));
    }
}

#[tokio::test]
async fn a_snapshot_reads_documents_objects_and_states_from_one_state() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write(Batch::new(PODS).replace(3, vec![pod("a", "p", 3, "x")]))
            .await
            .unwrap();
        let doc = vai_store::Document {
            key: "k".into(),
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
        };
        store.put_documents(vec![doc.clone()]).await.unwrap();
        // A write committed while the snapshot is open is not in it.
        let (before, object, after) = store
            .snapshot(|s| {
                let before = s.resource_state(PODS)?.unwrap().last_resource_version;
                let writer = store.clone();
                std::thread::spawn(move || {
                    writer
                        .write_blocking(
                            Batch::new(PODS).event(EventKind::Added, pod("a", "q", 9, "x")),
                        )
                        .unwrap()
                })
                .join()
                .unwrap();
                let object = s.get_row(PODS, "a", "q", None)?;
                let after = s.resource_state(PODS)?.unwrap().last_resource_version;
                assert_eq!(s.document("k")?, Some(doc.clone()));
                Ok((before, object, after))
            })
            .unwrap();
        assert_eq!((before, after), (3, 3), "the snapshot's state stays");
        assert_eq!(object, None, "the later object is not in the snapshot");
        assert!(store.get_row(PODS, "a", "q", None).unwrap().is_some());
        assert_eq!(
            store
                .resource_state(PODS)
                .unwrap()
                .unwrap()
                .last_resource_version,
            9
        );
    }
}

#[test]
fn a_state_change_alone_is_not_contact_with_upstream() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write_blocking(Batch::new(PODS).replace(3, vec![pod("a", "p", 3, "x")]))
            .unwrap();
        let contact = store.resource_state(PODS).unwrap().unwrap().last_contact_ms;
        assert!(contact.is_some());
        std::thread::sleep(Duration::from_millis(5));
        store
            .write_blocking(Batch::new(PODS).state(SyncState::Stale, Some("refused".into())))
            .unwrap();
        let state = store.resource_state(PODS).unwrap().unwrap();
        assert_eq!(
            (state.state, state.last_contact_ms),
            (SyncState::Stale, contact)
        );
        std::thread::sleep(Duration::from_millis(5));
        store.write_blocking(Batch::new(PODS).bookmark(4)).unwrap();
        let later = store.resource_state(PODS).unwrap().unwrap().last_contact_ms;
        assert!(
            later > contact,
            "a bookmark is contact: {later:?} > {contact:?}"
        );
    }
}

#[tokio::test]
async fn table_cells_are_kept_per_version_and_travel_with_events() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        let row = |rv: u64, cells: &str| vai_store::Item {
            object: pod("a", "p", rv, "x"),
            cells: Some(cells.as_bytes().to_vec()),
        };
        store
            .write(Batch::new(PODS).replace(3, vec![row(3, r#"["p","Running"]"#)]))
            .await
            .unwrap();
        let mut watch = store.watch(PODS, 3).unwrap();
        let events = store
            .write(Batch::new(PODS).event(EventKind::Modified, row(4, r#"["p","Failed"]"#)))
            .await
            .unwrap();
        assert_eq!(events[0].cells.as_deref(), Some(&br#"["p","Failed"]"#[..]));
        assert_eq!(watch.next().await.unwrap().cells, events[0].cells);
        let mut listed = Vec::new();
        store
            .list_rows(PODS, &ListRequest::default(), |r| {
                listed.push(String::from_utf8(r.cells.unwrap().to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        assert_eq!(listed, vec![r#"["p","Failed"]"#]);
        // A relist that no longer has the object deletes it with its last cells.
        store
            .write(Batch::new(PODS).replace(5, Vec::<Vec<u8>>::new()))
            .await
            .unwrap();
        let deleted = watch.next().await.unwrap();
        assert_eq!(deleted.kind, EventKind::Deleted);
        assert_eq!(deleted.cells.as_deref(), Some(&br#"["p","Failed"]"#[..]));
        // Objects written without cells have none.
        store
            .write(Batch::new(PODS).event(EventKind::Added, pod("a", "q", 6, "x")))
            .await
            .unwrap();
        let mut cells = Vec::new();
        store
            .list_rows(PODS, &ListRequest::default(), |r| {
                cells.push(r.cells.is_some());
                Ok(())
            })
            .unwrap();
        assert_eq!(cells, vec![false]);
    }
}

#[test]
fn field_selectors_on_indexed_fields_are_answered_and_others_refused() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        let pod = |name: &str, rv: u64, node: Option<&str>, phase: &str| {
            let mut spec = serde_json::json!({});
            if let Some(node) = node {
                spec["nodeName"] = node.into();
            }
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv.to_string()},
                "spec": spec, "status": {"phase": phase},
            }))
            .unwrap()
        };
        store
            .write_blocking(Batch::new(PODS).replace(
                5,
                vec![
                    pod("a", 5, Some("n1"), "Running"),
                    pod("b", 5, Some("n2"), "Running"),
                    pod("c", 5, None, "Pending"),
                ],
            ))
            .unwrap();
        let select = |fields: &str| {
            let req = ListRequest {
                fields: FieldSelector::parse(fields).unwrap(),
                ..Default::default()
            };
            names(&store, &req).0
        };
        assert_eq!(select("spec.nodeName=n1"), vec!["ns/a"]);
        assert_eq!(
            select("spec.nodeName="),
            vec!["ns/c"],
            "unscheduled: empty node"
        );
        assert_eq!(select("status.phase!=Running"), vec!["ns/c"]);
        assert_eq!(
            select("status.phase=Running,spec.nodeName!=n1"),
            vec!["ns/b"]
        );
        assert_eq!(
            select("spec.hostNetwork=false").len(),
            3,
            "absent booleans are false"
        );
        // A change moves the pod between selections; history keeps the old answer.
        store
            .write_blocking(
                Batch::new(PODS).event(EventKind::Modified, pod("c", 6, Some("n1"), "Running")),
            )
            .unwrap();
        assert_eq!(select("spec.nodeName=n1"), vec!["ns/a", "ns/c"]);
        let then = ListRequest {
            fields: FieldSelector::parse("spec.nodeName=n1").unwrap(),
            resource_version: Some(5),
            ..Default::default()
        };
        assert_eq!(names(&store, &then).0, vec!["ns/a"]);
        // Fields a type does not index are refused, as upstream refuses them.
        let unsupported = ListRequest {
            fields: FieldSelector::parse("spec.color=red").unwrap(),
            ..Default::default()
        };
        assert!(
            matches!(list_err(&store, unsupported), Error::UnsupportedField(m) if m == "field label not supported: spec.color")
        );
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_batch_whole_keeps_reads_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vai.db");
    // A cap on the file's size gives the error a full disk gives (SQLITE_FULL).
    let small = StoreConfig {
        max_size_bytes: Some(2 << 20),
        ..Default::default()
    };
    let store = Store::open(&path, small).unwrap();
    let padded = |name: String, rv: u64| -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv.to_string()},
            "spec": {"padding": "x".repeat(4000)},
        }))
        .unwrap()
    };
    store
        .write(Batch::new(PODS).replace(1, Vec::<Vec<u8>>::new()))
        .await
        .unwrap();
    let mut rv = 1;
    let err = loop {
        let mut batch = Batch::new(PODS);
        for i in 0..20 {
            batch = batch.event(EventKind::Added, padded(format!("p{rv}-{i}"), rv + 1));
        }
        match store.write(batch).await {
            Ok(_) => rv += 1,
            Err(e) => break e,
        }
        assert!(rv < 1000, "the cap was never reached");
    };
    assert!(matches!(err, Error::DiskFull(_)), "{err:?}");
    assert!(err.to_string().contains("the disk is full"), "{err}");

    // Nothing of the failed batch is there; what was committed is, and reads go on.
    let stored = store.count(PODS).unwrap();
    assert_eq!(stored, 20 * (rv - 1));
    let state = store.resource_state(PODS).unwrap().unwrap();
    assert_eq!(
        state.last_resource_version, rv,
        "the stored RV did not move"
    );
    assert_eq!(
        names(&store, &ListRequest::default()).0.len() as u64,
        stored
    );
    // A chunked list fails the same way and leaves the last-good set in place.
    let mut relist = store.relist(PODS).unwrap();
    let chunk: Vec<vai_store::Item> = (0..200)
        .map(|i| padded(format!("q{i}"), rv + 5).into())
        .collect();
    relist.push(chunk).await.unwrap();
    let err = relist.finish(rv + 5).await.unwrap_err();
    assert!(matches!(err, Error::DiskFull(_)), "{err:?}");
    assert_eq!(store.count(PODS).unwrap(), stored);
    // So does a first list, staged chunk by chunk: nothing of it is visible.
    let mut first = store.relist("/v1/configmaps").unwrap();
    let chunk: Vec<vai_store::Item> = (0..200)
        .map(|i| padded(format!("c{i}"), rv + 5).into())
        .collect();
    // (A chunk is committed in the background: its error comes with the next call.)
    let err = match first.push(chunk).await {
        Err(e) => e,
        Ok(()) => first.finish(rv + 5).await.unwrap_err(),
    };
    assert!(matches!(err, Error::DiskFull(_)), "{err:?}");
    assert_eq!(store.count("/v1/configmaps").unwrap(), 0);
    store.close();
    drop(store);

    // Space again: the file is sound, nothing was lost, writes resume.
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    store.check_integrity().unwrap();
    assert_eq!(store.count(PODS).unwrap(), stored);
    let mut batch = Batch::new(PODS);
    for i in 0..20 {
        batch = batch.event(EventKind::Added, padded(format!("p{rv}-{i}"), rv + 1));
    }
    store.write(batch).await.unwrap();
    assert_eq!(store.count(PODS).unwrap(), stored + 20);
}

#[test]
fn the_wal_stays_bounded_under_a_stream_of_overlapping_long_readers_and_a_fast_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vai.db");
    let limit = 4 << 20;
    let store = Store::open(
        &path,
        StoreConfig {
            journal_limit_bytes: limit,
            ..Default::default()
        },
    )
    .unwrap();
    let wal = dir.path().join("vai.db-wal");
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    // One object from the start, so that every reader's list holds its snapshot.
    store
        .write_blocking(Batch::new(PODS).replace(1, vec![pod("ns", "seed", 1, "seed")]))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Three readers, staggered, each holding a snapshot for 150 ms: at every moment some
    // reader is on an old snapshot, which a checkpoint that never waits cannot get past.
    let readers: Vec<_> = (0..3)
        .map(|k| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50 * k));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A list holds its snapshot while its callback runs: the first item
                    // keeps it open for 150 ms.
                    let mut first = true;
                    store
                        .list(PODS, &ListRequest::default(), |_, _, _| {
                            if std::mem::take(&mut first) {
                                std::thread::sleep(Duration::from_millis(150));
                            }
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    // ~25 MB written, 6× the limit.
    let mut largest = 0;
    for rv in 2..120u64 {
        let mut batch = Batch::new(PODS);
        for i in 0..50 {
            let body = serde_json::to_vec(&serde_json::json!({
                "kind": "Pod",
                "metadata": {"name": format!("p{i}"), "namespace": "ns",
                             "resourceVersion": rv.to_string()},
                "spec": {"padding": format!("{rv}").repeat(1000)},
            }))
            .unwrap();
            batch = batch.event(EventKind::Modified, body);
        }
        store.write_blocking(batch).unwrap();
        largest = largest.max(wal_size());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    // The writer waits after a commit past the limit until a checkpoint has brought the WAL
    // back under it (asking again while old readers outlast an attempt): the WAL passes the
    // limit by at most one group of batches (0.65 MB here), whatever the scheduling, since no
    // reader here holds a snapshot anywhere near the writer's longest wait. Polling alone let a
    // fast writer reach 2.3× in a debug build and 9–18× in a release one; waiting for a single
    // attempt let it reach 2.2× on a loaded 2-core machine.
    assert!(
        largest < 2 * limit,
        "the WAL grew to {largest} bytes (limit {limit})"
    );
    // What bounded it was the writer waiting: the store says so.
    let held = store.writes_held();
    let waits = [held.behind_checkpoint, held.for_journal_limit];
    assert!(
        waits.iter().any(|w| w.count > 0) && waits.iter().all(|w| w.total >= w.longest),
        "{held:?}"
    );
}

/// A store of `n` pods `ns/p00000`… listed at version 1.
fn numbered_pods(dir: &tempfile::TempDir, n: usize) -> Store {
    let store = open_file(dir);
    let pods: Vec<_> = (0..n)
        .map(|i| pod("ns", &format!("p{i:05}"), 1, "web"))
        .collect();
    store
        .write_blocking(Batch::new(PODS).replace(1, pods))
        .unwrap();
    store
}

/// A list consumer that waits once, after its first item, and meanwhile writes and runs a
/// truncating checkpoint on a connection of its own.
struct WaitingConsumer {
    store: Store,
    path: std::path::PathBuf,
    listed: Vec<(String, String)>,
    /// What the checkpoint returned: (busy, frames left in the journal, frames copied).
    checkpoint: Option<(i64, i64, i64)>,
}

impl vai_store::ListSink for WaitingConsumer {
    fn item(&mut self, row: vai_store::Row) -> vai_store::Result<vai_store::Pace> {
        let v: serde_json::Value = serde_json::from_slice(row.body).unwrap();
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        self.listed
            .push((format!("{}/{}", row.namespace, row.name), rv));
        Ok(if self.checkpoint.is_none() {
            vai_store::Pace::Yield
        } else {
            vai_store::Pace::On
        })
    }

    fn between(&mut self) -> vai_store::Result<()> {
        if self.checkpoint.is_some() {
            return Ok(());
        }
        // While the consumer waits, every listed pod changes and more are added.
        let mut batch = Batch::new(PODS);
        for i in 0..300 {
            batch = batch.event(
                EventKind::Modified,
                pod("ns", &format!("p{i:05}"), 2, "changed"),
            );
            batch = batch.event(EventKind::Added, pod("ns", &format!("q{i:05}"), 2, "new"));
        }
        self.store.write_blocking(batch).unwrap();
        // A reader of the old snapshot would hold this checkpoint until its busy timeout,
        // and it would come back busy with frames left.
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        self.checkpoint = Some(
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap(),
        );
        Ok(())
    }
}

#[test]
fn a_list_waiting_for_its_consumer_holds_no_snapshot_and_is_still_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // More than one read serves (5,000 items).
    let n = 12_000;
    let store = numbered_pods(&dir, n);
    let mut consumer = WaitingConsumer {
        store: store.clone(),
        path: store.path().to_path_buf(),
        listed: Vec::new(),
        checkpoint: None,
    };
    let meta = store
        .list_paced(PODS, &ListRequest::default(), &mut consumer)
        .unwrap();
    let (busy, left, _) = consumer.checkpoint.expect("the consumer waited");
    assert_eq!(
        (busy, left),
        (0, 0),
        "no read held a snapshot while the consumer waited"
    );
    // The whole list is the snapshot it started on: every pod as of version 1, none of what
    // was written while it waited.
    assert_eq!((meta.resource_version, meta.count), (1, n));
    let want: Vec<(String, String)> = (0..n)
        .map(|i| (format!("ns/p{i:05}"), "1".to_string()))
        .collect();
    assert_eq!(consumer.listed, want);
    // A list now sees what was written.
    let (now, meta) = names(&store, &ListRequest::default());
    assert_eq!((now.len(), meta.resource_version), (n + 300, 2));
}

/// A list of more items than one read serves, with a limit past that: the same items and
/// continue token as pages of that limit always gave, each page one snapshot.
#[test]
fn a_limit_larger_than_one_read_pages_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let n = 13_000;
    let store = numbered_pods(&dir, n);
    let mut request = ListRequest {
        limit: Some(6_000),
        ..ListRequest::default()
    };
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let (items, meta) = names(&store, &request);
        assert_eq!(meta.resource_version, 1);
        pages += 1;
        assert_eq!(items.len(), if pages < 3 { 6_000 } else { 1_000 });
        all.extend(items);
        match meta.continue_token {
            Some(token) => request.continue_token = Some(token),
            None => break,
        }
        // A write between pages does not show in the chain.
        store
            .write_blocking(Batch::new(PODS).event(
                EventKind::Added,
                pod("ns", &format!("z{pages}"), 1 + pages, "x"),
            ))
            .unwrap();
    }
    let want: Vec<String> = (0..n).map(|i| format!("ns/p{i:05}")).collect();
    assert_eq!((pages, all), (3, want));
}

/// Every stored body of `PODS` by `namespace/name`, through a list.
fn bodies(store: &Store) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    store
        .list(PODS, &ListRequest::default(), |ns, name, body| {
            out.insert(format!("{ns}/{name}"), body.to_vec());
            Ok(())
        })
        .unwrap();
    out
}

/// Stores 3,000 generated pods as sync does (a first list in chunks of 500), then modifies 200
/// of them; returns the store and what each key's body must be.
async fn filled(
    dir: &tempfile::TempDir,
    compress_bodies: bool,
) -> (Store, std::collections::BTreeMap<String, Vec<u8>>) {
    let config = StoreConfig {
        compress_bodies,
        ..StoreConfig::default()
    };
    let store = Store::open(&dir.path().join("vai.db"), config).unwrap();
    let key = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let m = &v["metadata"];
        format!(
            "{}/{}",
            m["namespace"].as_str().unwrap(),
            m["name"].as_str().unwrap()
        )
    };
    let pods = vai_testenv::workload::pods(3000);
    let mut want: std::collections::BTreeMap<String, Vec<u8>> =
        pods.iter().map(|b| (key(b), b.clone())).collect();
    let mut list = store.relist(PODS).unwrap();
    for chunk in pods.chunks(500) {
        list.push(chunk.iter().cloned().map(Into::into).collect())
            .await
            .unwrap();
    }
    list.finish(3000).await.unwrap();
    let mut batch = Batch::new(PODS);
    for i in 0..200 {
        let mut pod: serde_json::Value = serde_json::from_slice(&pods[i * 13]).unwrap();
        pod["metadata"]["resourceVersion"] = (3001 + i).to_string().into();
        pod["status"]["phase"] = "Succeeded".into();
        let body = serde_json::to_vec(&pod).unwrap();
        want.insert(key(&body), body.clone());
        batch = batch.event(EventKind::Modified, body);
    }
    store.write(batch).await.unwrap();
    (store, want)
}

#[tokio::test]
async fn bodies_are_compressed_at_rest_and_read_back_byte_for_byte_on_every_path() {
    let plain_dir = tempfile::tempdir().unwrap();
    let (plain, want) = filled(&plain_dir, false).await;
    assert!(plain.compression().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let (store, same) = filled(&dir, true).await;
    assert_eq!(want, same);
    assert_eq!(want.len(), 3000);

    // Lists, gets, pages, history and watch replays all give the bodies as upstream sent them.
    assert_eq!(bodies(&plain), want);
    assert_eq!(bodies(&store), want);
    for (key, body) in want.iter().step_by(97) {
        let (ns, name) = key.split_once('/').unwrap();
        let got = store.get(PODS, ns, name, None).unwrap().unwrap();
        assert_eq!(&got, body, "{key}");
    }
    let mut paged = std::collections::BTreeMap::new();
    store
        .page(
            PODS,
            &vai_store::PageRequest::default(),
            |ns, name, body| {
                paged.insert(format!("{ns}/{name}"), body.to_vec());
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(paged, want);
    let history = store.events_since(PODS, 3000).unwrap();
    assert_eq!(history.len(), 200);
    for event in &history {
        assert_eq!(
            *event.body,
            want[&format!("{}/{}", event.namespace, event.name)][..]
        );
    }
    let mut watch = store.watch(PODS, 3000).unwrap();
    for event in &history {
        let got = watch.next().await.unwrap();
        assert_eq!((got.seq, &got.body), (event.seq, &event.body));
    }
    // A relist with the same objects compares them with the stored (decompressed) bodies:
    // nothing differs, so nothing is written.
    let mut events = store.subscribe();
    let mut relist = store.relist(PODS).unwrap();
    relist
        .push(want.values().cloned().map(Into::into).collect())
        .await
        .unwrap();
    relist.finish(3300).await.unwrap();
    assert!(
        events.try_recv().is_err(),
        "an unchanged relist produced events"
    );

    // The file: one dictionary for pods, and much smaller than the plain store's.
    let compression = store.compression();
    let pods = &compression[PODS];
    assert_eq!((pods.dictionary, pods.dictionaries), (1, 1));
    assert!(pods.ratio < 0.3, "{pods:?}");
    let size = |s: &Store| {
        let conn = rusqlite::Connection::open(s.path()).unwrap();
        conn.query_row("SELECT sum(length(body)) FROM versions", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
    };
    let (packed, raw) = (size(&store), size(&plain));
    assert!(raw > 10_000_000, "{raw}");
    assert!(
        packed * 4 < raw,
        "{packed} stored body bytes against {raw} plain"
    );
    // The footprint reports the same: the plain bodies' size read from the frames' headers.
    let (packed_at_rest, plain_at_rest) = (
        &store.footprint().unwrap()[PODS],
        &plain.footprint().unwrap()[PODS],
    );
    assert_eq!(plain_at_rest.stored_bytes, raw as u64);
    assert_eq!(plain_at_rest.ratio(), Some(1.0));
    assert_eq!(packed_at_rest.stored_bytes, packed as u64);
    assert_eq!(packed_at_rest.plain_bytes, Some(raw as u64));
    assert_eq!(packed_at_rest.versions, plain_at_rest.versions);
    assert!(packed_at_rest.versions >= 3200, "{packed_at_rest:?}");

    // Read by another process's kind of open, and after a restart.
    let path = store.path().to_path_buf();
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(bodies(&reader), want);
    assert_eq!(reader.compression()[PODS].dictionary, 1);
    drop(reader);
    store.close();
    drop((store, watch));
    let reopened = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(bodies(&reopened), want);
    // Compression off: what is stored compressed still reads.
    reopened.close();
    drop(reopened);
    let off = StoreConfig {
        compress_bodies: false,
        ..StoreConfig::default()
    };
    assert_eq!(bodies(&Store::open(&path, off).unwrap()), want);
}
