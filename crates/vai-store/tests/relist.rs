//! Lists that arrive in chunks (`Store::relist`): invisible until their end, then whole, with
//! the events a one-shot replace gives; abandoned ones leave nothing behind. Every test runs
//! on each backend (the SQLite file, a real PostgreSQL).

use vai_store::{Batch, Event, EventKind, ListRequest, Store, StoreConfig};

mod common;

use common::{Place, fresh_places};

const PODS: &str = "/v1/pods";

fn pod(name: &str, rv: u64, app: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv.to_string(),
                     "labels": {"app": app}},
    }))
    .unwrap()
}

/// `name=app@rv` of every listed pod, in key order, and the list's resource version.
fn listed(store: &Store) -> (Vec<String>, u64) {
    let mut out = Vec::new();
    let meta = store
        .list(PODS, &ListRequest::default(), |_, name, body| {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            out.push(format!(
                "{name}={}@{}",
                v["metadata"]["labels"]["app"].as_str().unwrap(),
                v["metadata"]["resourceVersion"].as_str().unwrap()
            ));
            Ok(())
        })
        .unwrap();
    (out, meta.resource_version)
}

/// Every stored row, staged ones included (straight from the engine's tables).
fn rows_in_file(place: &Place) -> i64 {
    place.count(
        "SELECT count(*) FROM versions",
        "SELECT count(*) FROM vai_versions",
    )
}

/// Drains what a subscriber has received so far.
fn received(events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<[Event]>>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(batch) = events.try_recv() {
        for e in batch.iter() {
            out.push(format!("{:?} {} @{}", e.kind, e.name, e.resource_version));
        }
    }
    out
}

fn open(place: &Place) -> Store {
    place.open(StoreConfig::default()).unwrap()
}

#[tokio::test]
async fn a_first_list_in_chunks_is_invisible_until_its_end_then_appears_whole() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        let mut events = store.subscribe();
        let mut relist = store.relist(PODS).unwrap();
        for chunk in 0..3 {
            let items = (0..4)
                .map(|i| pod(&format!("p{chunk}{i}"), 50 + chunk, "web").into())
                .collect();
            relist.push(items).await.unwrap();
            relist.flush().await.unwrap();
            assert_eq!(relist.len(), 4 * (chunk + 1));
            // Staged rows are in the file, but no read sees them.
            assert_eq!(rows_in_file(&place), 4 * (chunk as i64 + 1));
            assert_eq!(listed(&store).0, Vec::<String>::new());
            assert_eq!(store.count(PODS).unwrap(), 0);
            assert_eq!(store.events_since(PODS, 0).unwrap(), Vec::new());
            let state = store.resource_state(PODS).unwrap().unwrap();
            assert_eq!(state.list_resource_version, None);
            assert!(received(&mut events).is_empty());
        }
        relist.finish(100).await.unwrap();

        let (names, rv) = listed(&store);
        assert_eq!(rv, 100);
        assert_eq!(names.len(), 12);
        assert_eq!(names[0], "p00=web@50");
        assert_eq!(store.count(PODS).unwrap(), 12);
        let state = store.resource_state(PODS).unwrap().unwrap();
        assert_eq!(state.list_resource_version, Some(100));
        assert_eq!(state.oldest_resource_version, 100);
        // Subscribers get every object as ADDED at the list's version, in list order.
        let got = received(&mut events);
        assert_eq!(got.len(), 12);
        assert_eq!(got[0], "Added p00 @100");
        assert_eq!(got[11], "Added p23 @100");
        // History starts at the list: nothing to replay from it, and a get or list as of it works.
        assert_eq!(store.events_since(PODS, 100).unwrap(), Vec::new());
        assert!(store.get(PODS, "ns", "p13", Some(100)).unwrap().is_some());

        // Later events apply on top as usual.
        store
            .write(Batch::new(PODS).event(EventKind::Modified, pod("p13", 101, "api")))
            .await
            .unwrap();
        assert!(listed(&store).0.contains(&"p13=api@101".to_string()));
    }
}

#[tokio::test]
async fn chunks_pushed_ahead_of_their_commits_are_stored_whole_in_order_with_other_writes_between()
{
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        let mut events = store.subscribe();
        let mut relist = store.relist(PODS).unwrap();
        // Sixty chunks pushed without waiting between them: several wait for the writer at once
        // and are committed together; writes of another type come in between.
        for chunk in 0..60u64 {
            let items = (0..5)
                .map(|i| pod(&format!("p{chunk:02}{i}"), 50 + chunk, "web").into())
                .collect();
            relist.push(items).await.unwrap();
            let other = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("c{chunk}"), "namespace": "ns",
                             "resourceVersion": (1000 + chunk).to_string()}});
            let configmap = Batch::new("/v1/configmaps")
                .event(EventKind::Added, serde_json::to_vec(&other).unwrap());
            store.write(configmap).await.unwrap();
            assert_eq!(store.count(PODS).unwrap(), 0, "staged rows stay unseen");
        }
        relist.finish(200).await.unwrap();
        let (names, rv) = listed(&store);
        assert_eq!((names.len(), rv), (300, 200));
        let sorted = {
            let mut n = names.clone();
            n.sort();
            n
        };
        assert_eq!(names, sorted);
        assert_eq!(names[0], "p000=web@50");
        assert_eq!(names[299], "p594=web@109");
        assert_eq!(store.count("/v1/configmaps").unwrap(), 60);
        let added: Vec<String> = received(&mut events)
            .into_iter()
            .filter(|e| e.starts_with("Added p"))
            .collect();
        assert_eq!(added.len(), 300);
        assert_eq!(added[0], "Added p000 @200");
    }
}

#[tokio::test]
async fn an_abandoned_first_list_leaves_nothing_visible_and_is_cleaned_up() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);

        // Abandoned, then a new list: only the new one's objects.
        let mut relist = store.relist(PODS).unwrap();
        relist
            .push(vec![
                pod("old-a", 5, "web").into(),
                pod("old-b", 5, "web").into(),
            ])
            .await
            .unwrap();
        relist.flush().await.unwrap();
        drop(relist);
        let mut relist = store.relist(PODS).unwrap();
        relist
            .push(vec![pod("new", 6, "web").into()])
            .await
            .unwrap();
        relist.flush().await.unwrap();
        assert_eq!(rows_in_file(&place), 1, "the abandoned rows went first");
        relist.finish(10).await.unwrap();
        assert_eq!(listed(&store), (vec!["new=web@6".to_string()], 10));

        // Abandoned by a process that stopped: gone when the store is opened again.
        let place = place.another();
        let store = open(&place);
        let mut relist = store.relist(PODS).unwrap();
        relist
            .push(vec![pod("half", 5, "web").into()])
            .await
            .unwrap();
        relist.flush().await.unwrap();
        assert_eq!(rows_in_file(&place), 1);
        drop(relist);
        store.close();
        drop(store);
        let store = open(&place);
        assert_eq!(rows_in_file(&place), 0);
        store.check_integrity().unwrap();

        // Abandoned, then events instead of a list (a sync that gave up listing): the staged rows
        // never become visible, even though the events raise the resource version past them.
        let mut relist = store.relist(PODS).unwrap();
        relist
            .push(vec![pod("ghost", 5, "web").into()])
            .await
            .unwrap();
        relist.flush().await.unwrap();
        drop(relist);
        store
            .write(Batch::new(PODS).event(EventKind::Added, pod("real", 7, "web")))
            .await
            .unwrap();
        assert_eq!(listed(&store), (vec!["real=web@7".to_string()], 7));
        assert_eq!(rows_in_file(&place), 1);
    }
}

#[tokio::test]
async fn a_relist_of_stored_data_keeps_the_last_good_set_until_its_end_then_applies_the_diff() {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        let store = open(&place);
        store
            .write(Batch::new(PODS).replace(
                10,
                vec![pod("a", 3, "web"), pod("b", 4, "web"), pod("c", 5, "web")],
            ))
            .await
            .unwrap();
        let before = listed(&store);
        let mut events = store.subscribe();

        let mut relist = store.relist(PODS).unwrap();
        // a unchanged, b changed; then d new; c is not listed again.
        relist
            .push(vec![pod("a", 3, "web").into(), pod("b", 15, "api").into()])
            .await
            .unwrap();
        assert_eq!(listed(&store), before, "readers see the last-good set");
        relist.push(vec![pod("d", 16, "db").into()]).await.unwrap();
        assert_eq!(listed(&store), before);
        assert_eq!(rows_in_file(&place), 3, "nothing is written before the end");
        relist.finish(20).await.unwrap();

        assert_eq!(
            listed(&store),
            (
                vec![
                    "a=web@3".to_string(),
                    "b=api@15".to_string(),
                    "d=db@16".to_string()
                ],
                20
            )
        );
        assert_eq!(
            received(&mut events),
            ["Modified b @20", "Added d @20", "Deleted c @20"]
        );
        // The same events are history: a watch from before the relist replays them.
        let replay: Vec<_> = store
            .events_since(PODS, 10)
            .unwrap()
            .iter()
            .map(|e| format!("{:?} {}", e.kind, e.name))
            .collect();
        assert_eq!(replay, ["Modified b", "Added d", "Deleted c"]);
        // As of before the relist, the old set.
        let mut old = Vec::new();
        store
            .list(
                PODS,
                &ListRequest {
                    resource_version: Some(10),
                    ..Default::default()
                },
                |_, name, _| {
                    old.push(name.to_string());
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(old, ["a", "b", "c"]);
    }
}
