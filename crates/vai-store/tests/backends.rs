//! One test source, every backend: each test here runs against the SQLite file and against a
//! real PostgreSQL (a private server, `scripts/pg`), and asserts the same answers —
//! lists, gets, history and watches, continue tokens on their snapshot, selectors, chunked
//! relists, retention, the single writer, and what survives a reopen.

use vai_store::{
    Batch, Error, EventKind, FieldSelector, LabelSelector, ListRequest, Store, StoreConfig,
};

const PODS: &str = "/v1/pods";

mod common;

use common::{Place, each_backend};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pod(ns: &str, name: &str, rv: u64, app: &str, phase: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(),
                     "labels": {"app": app}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": phase},
    }))
    .unwrap()
}

/// `ns/name@rv` of every listed object, and the list's metadata.
fn list(store: &Store, request: &ListRequest) -> (Vec<String>, vai_store::ListMeta) {
    let mut out = Vec::new();
    let meta = store
        .list(PODS, request, |ns, name, body| {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            out.push(format!(
                "{ns}/{name}@{}",
                v["metadata"]["resourceVersion"].as_str().unwrap()
            ));
            Ok(())
        })
        .unwrap();
    (out, meta)
}

fn names(store: &Store, request: &ListRequest) -> Vec<String> {
    list(store, request).0
}

/// A store with five pods listed at resource version 10.
fn five(place: &Place) -> Store {
    let store = place.open(StoreConfig::default()).unwrap();
    store
        .write_blocking(Batch::new(PODS).replace(
            10,
            vec![
                pod("a", "p1", 5, "web", "Running"),
                pod("a", "p2", 6, "db", "Pending"),
                pod("b", "p1", 7, "web", "Running"),
                pod("b", "p3", 8, "web", "Failed"),
                pod("c", "p9", 9, "db", "Running"),
            ],
        ))
        .unwrap();
    store
}

#[test]
fn lists_gets_counts_and_history_agree() {
    each_backend(|place| {
        let store = five(place);
        let (all, meta) = list(&store, &ListRequest::default());
        assert_eq!(all, ["a/p1@5", "a/p2@6", "b/p1@7", "b/p3@8", "c/p9@9"]);
        assert_eq!(meta.resource_version, 10);
        assert_eq!(store.count(PODS).unwrap(), 5);
        assert_eq!(store.count("/v1/nothing").unwrap(), 0);

        store
            .write_blocking(
                Batch::new(PODS)
                    .event(EventKind::Modified, pod("a", "p1", 11, "web", "Failed"))
                    .event(EventKind::Deleted, pod("b", "p3", 12, "web", "Failed"))
                    .event(EventKind::Added, pod("d", "p4", 13, "api", "Running"))
                    // A replay of what is stored: skipped.
                    .event(EventKind::Modified, pod("a", "p2", 6, "db", "Pending")),
            )
            .unwrap();
        assert_eq!(
            names(&store, &ListRequest::default()),
            ["a/p1@11", "a/p2@6", "b/p1@7", "c/p9@9", "d/p4@13"]
        );
        // As of the list: the old state, exactly.
        let at_list = ListRequest {
            resource_version: Some(10),
            ..Default::default()
        };
        assert_eq!(
            names(&store, &at_list),
            ["a/p1@5", "a/p2@6", "b/p1@7", "b/p3@8", "c/p9@9"]
        );
        let got = store.get(PODS, "a", "p1", Some(10)).unwrap().unwrap();
        assert!(String::from_utf8(got).unwrap().contains("Running"));
        assert!(store.get(PODS, "b", "p3", None).unwrap().is_none());
        assert!(store.get(PODS, "b", "p3", Some(11)).unwrap().is_some());
        assert!(matches!(
            store.get(PODS, "a", "p1", Some(99)),
            Err(Error::TooLargeResourceVersion { .. })
        ));

        let events: Vec<String> = store
            .events_since(PODS, 10)
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{:?} {}/{}@{}",
                    e.kind, e.namespace, e.name, e.resource_version
                )
            })
            .collect();
        assert_eq!(
            events,
            ["Modified a/p1@11", "Deleted b/p3@12", "Added d/p4@13"]
        );
        let deleted = &store.events_since(PODS, 11).unwrap()[0];
        assert_eq!(
            deleted.attributes.labels.get("app").map(String::as_str),
            Some("web")
        );

        let state = store.resource_state(PODS).unwrap().unwrap();
        assert_eq!(
            (
                state.list_resource_version,
                state.last_resource_version,
                state.oldest_resource_version
            ),
            (Some(10), 13, 10)
        );
        assert!(matches!(
            store.events_since(PODS, 3),
            Err(Error::Gone { oldest: 10, .. })
        ));
        store.check_integrity().unwrap();
    });
}

#[test]
fn a_watch_replays_history_then_goes_live_in_order() {
    each_backend(|place| {
        let store = five(place);
        store
            .write_blocking(
                Batch::new(PODS).event(EventKind::Modified, pod("a", "p1", 11, "web", "Failed")),
            )
            .unwrap();
        let mut watch = store.watch(PODS, 10).unwrap();
        store
            .write_blocking(
                Batch::new(PODS).event(EventKind::Deleted, pod("a", "p2", 12, "db", "Pending")),
            )
            .unwrap();
        let seen: Vec<String> = runtime().block_on(async {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let e = watch.next().await.unwrap();
                seen.push(format!("{:?} {}@{}", e.kind, e.name, e.resource_version));
            }
            seen
        });
        assert_eq!(seen, ["Modified p1@11", "Deleted p2@12"]);
    });
}

#[test]
fn continue_tokens_stay_on_their_snapshot() {
    each_backend(|place| {
        let store = five(place);
        let first = ListRequest {
            limit: Some(2),
            ..Default::default()
        };
        let (page, meta) = list(&store, &first);
        assert_eq!(page, ["a/p1@5", "a/p2@6"]);
        let token = meta.continue_token.clone().expect("more follow");
        // Changes after the first page are not in the rest of its list.
        store
            .write_blocking(
                Batch::new(PODS)
                    .event(EventKind::Deleted, pod("b", "p1", 11, "web", "Running"))
                    .event(EventKind::Added, pod("b", "p2", 12, "web", "Running")),
            )
            .unwrap();
        let rest = ListRequest {
            continue_token: Some(token),
            ..Default::default()
        };
        let (page, meta) = list(&store, &rest);
        assert_eq!(page, ["b/p1@7", "b/p3@8", "c/p9@9"]);
        assert_eq!((meta.resource_version, meta.continue_token), (10, None));
        // A token of another type is refused.
        let foreign = ListRequest {
            continue_token: Some(list(&store, &first).1.continue_token.unwrap()),
            ..Default::default()
        };
        assert!(matches!(
            store.list("/v1/configmaps", &foreign, |_, _, _| Ok(())),
            Err(Error::InvalidContinue(_) | Error::UnknownResource(_))
        ));
    });
}

#[test]
fn label_and_field_selectors_select_the_same() {
    each_backend(|place| {
        let store = five(place);
        let by = |labels: &str, fields: &str, namespace: Option<&str>| {
            names(
                &store,
                &ListRequest {
                    labels: LabelSelector::parse(labels).unwrap(),
                    fields: FieldSelector::parse(fields).unwrap(),
                    namespace: namespace.map(str::to_string),
                    ..Default::default()
                },
            )
        };
        assert_eq!(by("app=web", "", None), ["a/p1@5", "b/p1@7", "b/p3@8"]);
        assert_eq!(by("app!=web", "", None), ["a/p2@6", "c/p9@9"]);
        assert_eq!(by("app in (db,api)", "", Some("c")), ["c/p9@9"]);
        assert_eq!(by("!app", "", None), Vec::<String>::new());
        assert_eq!(
            by("", "status.phase=Running", None),
            ["a/p1@5", "b/p1@7", "c/p9@9"]
        );
        assert_eq!(by("app=web", "status.phase!=Running", None), ["b/p3@8"]);
        assert_eq!(by("", "metadata.name=p1", None), ["a/p1@5", "b/p1@7"]);
        assert_eq!(
            by("", "metadata.namespace!=a", Some("b")),
            ["b/p1@7", "b/p3@8"]
        );
        assert!(matches!(
            store.list(
                PODS,
                &ListRequest {
                    fields: FieldSelector::parse("spec.nothing=x").unwrap(),
                    ..Default::default()
                },
                |_, _, _| Ok(())
            ),
            Err(Error::UnsupportedField(_))
        ));
    });
}

#[test]
fn chunked_lists_stage_then_compare() {
    each_backend(|place| {
        let store = place.open(StoreConfig::default()).unwrap();
        let mut events = store.subscribe();
        let runtime = runtime();
        // A first list, staged: invisible until its end.
        runtime.block_on(async {
            let mut relist = store.relist(PODS).unwrap();
            relist
                .push(vec![pod("a", "p1", 3, "web", "Running").into()])
                .await
                .unwrap();
            relist.flush().await.unwrap();
            assert_eq!(store.count(PODS).unwrap(), 0, "a staged chunk is visible");
            relist
                .push(vec![pod("a", "p2", 4, "web", "Running").into()])
                .await
                .unwrap();
            relist.finish(10).await.unwrap();
        });
        assert_eq!(names(&store, &ListRequest::default()), ["a/p1@3", "a/p2@4"]);
        // A relist of stored data: what changed, what vanished, what is new.
        runtime.block_on(async {
            let mut relist = store.relist(PODS).unwrap();
            relist
                .push(vec![
                    pod("a", "p1", 3, "web", "Running").into(),
                    pod("a", "p3", 15, "web", "Running").into(),
                ])
                .await
                .unwrap();
            relist.finish(20).await.unwrap();
        });
        assert_eq!(
            names(&store, &ListRequest::default()),
            ["a/p1@3", "a/p3@15"]
        );
        let mut seen = Vec::new();
        while let Ok(batch) = events.try_recv() {
            seen.extend(
                batch
                    .iter()
                    .map(|e| format!("{:?} {}@{}", e.kind, e.name, e.resource_version)),
            );
        }
        assert_eq!(
            seen,
            ["Added p1@10", "Added p2@10", "Added p3@20", "Deleted p2@20"]
        );
    });
}

#[test]
fn history_beyond_the_window_is_pruned_and_answers_gone() {
    each_backend(|place| {
        let config = StoreConfig {
            history_max_events: 3,
            ..Default::default()
        };
        let store = place.open(config).unwrap();
        store
            .write_blocking(Batch::new(PODS).replace(10, vec![pod("a", "p", 1, "web", "Running")]))
            .unwrap();
        for rv in 11..=20 {
            store
                .write_blocking(
                    Batch::new(PODS)
                        .event(EventKind::Modified, pod("a", "p", rv, "web", "Running")),
                )
                .unwrap();
        }
        let oldest = store
            .resource_state(PODS)
            .unwrap()
            .unwrap()
            .oldest_resource_version;
        assert!(
            oldest > 10,
            "nothing was pruned: the window starts at {oldest}"
        );
        assert!(matches!(
            store.events_since(PODS, 10),
            Err(Error::Gone { .. })
        ));
        let kept = store.events_since(PODS, oldest).unwrap();
        assert!(
            !kept.is_empty() && kept.len() <= 3,
            "{} events kept",
            kept.len()
        );
        assert_eq!(kept.last().unwrap().resource_version, 20);
    });
}

#[test]
fn one_writer_and_what_it_wrote_survives_a_reopen() {
    each_backend(|place| {
        let store = five(place);
        assert!(
            matches!(place.open(StoreConfig::default()), Err(Error::Locked(_))),
            "a second writer was let in"
        );
        let reader = place.open_read_only().unwrap();
        assert_eq!(reader.count(PODS).unwrap(), 5);
        assert!(matches!(
            reader.write_blocking(Batch::new(PODS).bookmark(11)),
            Err(Error::ReadOnly)
        ));
        let before = store
            .write_blocking(
                Batch::new(PODS).event(EventKind::Modified, pod("a", "p1", 11, "web", "Failed")),
            )
            .unwrap()[0]
            .seq;
        assert!(before > 0);
        drop(reader);
        store.close();
        drop(store);

        let store = place.open(StoreConfig::default()).unwrap();
        assert_eq!(store.count(PODS).unwrap(), 5);
        let events = store
            .write_blocking(
                Batch::new(PODS).event(EventKind::Added, pod("z", "new", 30, "web", "Running")),
            )
            .unwrap();
        assert!(
            events[0].seq > before,
            "sequence numbers went back after a reopen"
        );
        store.check_integrity().unwrap();
    });
}

#[test]
fn a_database_of_another_program_or_a_newer_vai_is_refused_untouched() {
    let pg = vai_testenv::Postgres::start().unwrap();
    pg.psql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (7)")
        .unwrap();
    let refused = Store::open_postgres(pg.url(), StoreConfig::default()).unwrap_err();
    assert!(matches!(refused, Error::ForeignFile(_)), "{refused}");
    assert!(
        refused.to_string().contains("not a vai database"),
        "{refused}"
    );
    assert_eq!(pg.psql("SELECT id FROM orders").unwrap(), "7");
    assert_eq!(
        pg.psql("SELECT to_regclass('vai_versions') IS NULL")
            .unwrap(),
        "t"
    );

    let pg = vai_testenv::Postgres::start().unwrap();
    drop(Store::open_postgres(pg.url(), StoreConfig::default()).unwrap());
    pg.psql("UPDATE vai_schema SET version = 99").unwrap();
    let refused = Store::open_postgres(pg.url(), StoreConfig::default()).unwrap_err();
    assert!(
        matches!(refused, Error::NewerSchema { found: 99, .. }),
        "{refused}"
    );
    assert_eq!(pg.psql("SELECT version FROM vai_schema").unwrap(), "99");
}

#[test]
fn a_database_of_an_older_vai_is_migrated_with_its_data() {
    let pg = vai_testenv::Postgres::start().unwrap();
    let store = Store::open_postgres(pg.url(), StoreConfig::default()).unwrap();
    store
        .write_blocking(Batch::new(PODS).replace(10, vec![pod("a", "p", 1, "web", "Running")]))
        .unwrap();
    for rv in 11..=15 {
        store
            .write_blocking(
                Batch::new(PODS).event(EventKind::Modified, pod("a", "p", rv, "web", "Running")),
            )
            .unwrap();
    }
    drop(store);
    // Schema 1, as the first vai with PostgreSQL left it.
    pg.psql(
        "ALTER TABLE vai_resources DROP COLUMN history_rows; DROP INDEX vai_versions_aging;
         ALTER TABLE vai_versions ALTER COLUMN body SET COMPRESSION pglz,
             ALTER COLUMN cells SET COMPRESSION pglz;
         CREATE TABLE vai_labels (version_id bigint NOT NULL, resource_id bigint NOT NULL,
             key text COLLATE \"C\" NOT NULL, value text COLLATE \"C\" NOT NULL,
             PRIMARY KEY (version_id, key));
         INSERT INTO vai_labels SELECT v.id, v.resource_id, a.key, a.value
             FROM vai_versions v, jsonb_each_text(v.attributes) a;
         DROP INDEX vai_versions_by_attribute;
         ALTER TABLE vai_versions DROP COLUMN attributes;
         UPDATE vai_schema SET version = 1",
    )
    .unwrap();
    assert_eq!(
        pg.psql("SELECT count(*) FROM vai_labels WHERE key = 'app'")
            .unwrap(),
        "6",
        "schema 1 keeps labels in rows of their own"
    );
    let store = Store::open_postgres(pg.url(), StoreConfig::default()).unwrap();
    assert_eq!(pg.psql("SELECT version FROM vai_schema").unwrap(), "4");
    let (selected, _) = list(
        &store,
        &ListRequest {
            labels: LabelSelector::parse("app=web").unwrap(),
            fields: FieldSelector::parse("status.phase=Running").unwrap(),
            ..Default::default()
        },
    );
    assert_eq!(
        selected,
        ["a/p@15"],
        "labels and fields moved into the versions"
    );
    assert_eq!(
        pg.psql(
            "SELECT attcompression FROM pg_attribute
             WHERE attrelid = 'vai_versions'::regclass AND attname = 'body'"
        )
        .unwrap(),
        "l",
        "bodies are compressed with LZ4 from schema 3"
    );
    assert_eq!(
        pg.psql("SELECT history_rows FROM vai_resources").unwrap(),
        "5",
        "the count of history rows is taken from the rows"
    );
    store.check_integrity().unwrap();
    assert_eq!(store.events_since(PODS, 10).unwrap().len(), 5);
}

#[test]
fn a_reader_in_another_process_sees_every_commit_live_and_in_order() {
    let pg = vai_testenv::Postgres::start().unwrap();
    let writer = Store::open_postgres(pg.url(), StoreConfig::default()).unwrap();
    writer
        .write_blocking(Batch::new(PODS).replace(10, vec![pod("a", "p", 1, "web", "Running")]))
        .unwrap();
    let reader = Store::open_postgres_read_only(pg.url(), StoreConfig::default()).unwrap();
    let mut watch = reader.watch(PODS, 10).unwrap();
    let runtime = runtime();
    let mut waits = Vec::new();
    for rv in 11..=60u64 {
        let kind = if rv % 10 == 0 {
            EventKind::Deleted
        } else if rv % 10 == 1 && rv > 11 {
            // After a deletion: the pod comes back.
            EventKind::Added
        } else {
            EventKind::Modified
        };
        let written = std::time::Instant::now();
        writer
            .write_blocking(Batch::new(PODS).event(kind, pod("a", "p", rv, "web", "Running")))
            .unwrap();
        let event = runtime.block_on(async {
            loop {
                let e = watch.next().await.unwrap();
                if e.kind != EventKind::Bookmark {
                    return e;
                }
            }
        });
        waits.push(written.elapsed());
        assert_eq!((event.kind, event.resource_version), (kind, rv));
    }
    waits.sort();
    eprintln!(
        "a reader saw the writer's commits after p50 {:?}, max {:?} (50 commits)",
        waits[waits.len() / 2],
        waits.last().unwrap()
    );
    assert_eq!(
        reader.count(PODS).unwrap(),
        0,
        "the last event deleted the pod"
    );
}

/// `vai serve` opens its store inside an async task: a refused open and a drop there must
/// neither panic nor block.
#[tokio::test]
async fn opening_refused_and_dropping_inside_an_async_task_are_fine() {
    let url = common::server().create_database().unwrap();
    let writer = Store::open_postgres(&url, StoreConfig::default()).unwrap();
    let refused = Store::open_postgres(&url, StoreConfig::default()).unwrap_err();
    assert!(matches!(refused, Error::Locked(_)), "{refused}");
    drop(writer);
    let reopened = Store::open_postgres(&url, StoreConfig::default()).unwrap();
    drop(reopened);
}
