//! Model-based property test: random sequences of events, stale replays, bookmarks, relists
//! (whole, in chunks, abandoned midway) and reopenings, applied to the store and to a plain in-memory model. Every list (whole, paged,
//! by selector, by namespace), every get and every "as of" list must agree with the model — on
//! every backend (the SQLite file and PostgreSQL), each case on both.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vai_store::{
    Batch, Column, EventKind, LabelSelector, ListRequest, PageRequest, SortKey, Store, StoreConfig,
};

mod common;

const PODS: &str = "/v1/pods";
type Key = (String, String);

#[derive(Debug, Clone)]
enum Action {
    Upsert {
        key: usize,
        app: usize,
        tier: usize,
    },
    Delete {
        key: usize,
    },
    /// Re-sends the key's current object with its old resource version (a resumed watch's replay).
    Replay {
        key: usize,
    },
    Bookmark,
    /// A full list; `chunk` > 0 sends it in chunks of that many objects through
    /// `Store::relist`, 0 as one `replace`.
    Relist {
        keep: Vec<(usize, usize, usize)>,
        chunk: usize,
    },
    /// A chunked list that stops before its end (an error mid-list): nothing may change.
    AbandonedRelist {
        keep: Vec<(usize, usize, usize)>,
    },
    Reopen,
}

fn key(i: usize) -> Key {
    (format!("ns{}", i % 3), format!("pod-{}", i % 7))
}

const PHASES: [&str; 3] = ["Running", "Pending", "Failed"];

fn body(k: &Key, rv: u64, app: usize, tier: usize) -> Vec<u8> {
    let apps = ["web", "db", "cache"];
    let mut labels = serde_json::Map::new();
    labels.insert("app".into(), apps[app % 3].into());
    if !tier.is_multiple_of(3) {
        labels.insert("tier".into(), ["", "front", "back"][tier % 3].into());
    }
    serde_json::to_vec(&serde_json::json!({
        "kind": "Pod",
        "metadata": {"namespace": k.0, "name": k.1, "resourceVersion": rv.to_string(), "labels": labels},
        "spec": {"n": app * 10 + tier},
        "status": {"phase": PHASES[(app + tier) % 3]},
    }))
    .unwrap()
}

fn labels_of(body: &[u8]) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default()
}

/// The reference: current objects (with the resource version of their stored version), the
/// log of changes for "as of" queries, and the window.
#[derive(Default)]
struct Model {
    /// key -> (version rv, body); tombstones are `None`.
    current: BTreeMap<Key, (u64, Option<Vec<u8>>)>,
    changes: Vec<(u64, Key, Option<Vec<u8>>)>,
    last_rv: u64,
    compacted: u64,
    listed: bool,
}

impl Model {
    fn live(&self) -> BTreeMap<Key, Vec<u8>> {
        self.current
            .iter()
            .filter_map(|(k, (_, b))| b.clone().map(|b| (k.clone(), b)))
            .collect()
    }

    fn at(&self, rv: u64) -> BTreeMap<Key, Vec<u8>> {
        let mut state = BTreeMap::new();
        for (at, k, b) in &self.changes {
            if *at <= rv {
                match b {
                    Some(b) => state.insert(k.clone(), b.clone()),
                    None => state.remove(k),
                };
            }
        }
        state
    }

    fn set(&mut self, k: Key, rv: u64, b: Option<Vec<u8>>) {
        self.current.insert(k.clone(), (rv, b.clone()));
        self.changes.push((rv, k, b));
    }
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (0..21usize, 0..3usize, 0..3usize).prop_map(|(key, app, tier)| Action::Upsert { key, app, tier }),
        2 => (0..21usize).prop_map(|key| Action::Delete { key }),
        1 => (0..21usize).prop_map(|key| Action::Replay { key }),
        1 => Just(Action::Bookmark),
        1 => (proptest::collection::vec((0..21usize, 0..3usize, 0..3usize), 0..12), 0..4usize)
            .prop_map(|(keep, chunk)| Action::Relist { keep, chunk }),
        1 => proptest::collection::vec((0..21usize, 0..3usize, 0..3usize), 1..12)
            .prop_map(|keep| Action::AbandonedRelist { keep }),
        1 => Just(Action::Reopen),
    ]
}

fn collect(store: &Store, req: &ListRequest) -> (BTreeMap<Key, Vec<u8>>, vai_store::ListMeta) {
    let mut out = BTreeMap::new();
    let mut order = Vec::new();
    let meta = store
        .list(PODS, req, |ns, name, b| {
            order.push((ns.to_string(), name.to_string()));
            out.insert((ns.to_string(), name.to_string()), b.to_vec());
            Ok(())
        })
        .unwrap();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "lists come in Kubernetes key order");
    (out, meta)
}

fn check(store: &Store, model: &Model) {
    if !model.listed && model.changes.is_empty() {
        return;
    }
    let (all, meta) = collect(store, &ListRequest::default());
    assert_eq!(all, model.live());
    assert_eq!(meta.resource_version, model.last_rv);

    // Paging by 2 gives the same list.
    let mut paged = BTreeMap::new();
    let mut req = ListRequest {
        limit: Some(2),
        ..Default::default()
    };
    loop {
        let (page, meta) = collect(store, &req);
        assert!(page.len() <= 2);
        paged.extend(page);
        match meta.continue_token {
            Some(t) => req.continue_token = Some(t),
            None => break,
        }
    }
    assert_eq!(paged, model.live());

    for selector in [
        "app=web",
        "app!=db",
        "tier",
        "!tier",
        "app in (web,cache),tier notin (back)",
    ] {
        let sel = LabelSelector::parse(selector).unwrap();
        let req = ListRequest {
            labels: sel.clone(),
            namespace: Some("ns1".into()),
            ..Default::default()
        };
        let expected: BTreeMap<_, _> = model
            .live()
            .into_iter()
            .filter(|((ns, _), b)| {
                let labels = labels_of(b);
                ns == "ns1" && sel.matches(|k| labels.get(k).map(String::as_str))
            })
            .collect();
        assert_eq!(collect(store, &req).0, expected, "selector {selector}");

        // Paged by one: small pages take the key-order plan once a label matches more than
        // ten versions, unlimited lists the label-driven plan; both must agree.
        let mut paged = BTreeMap::new();
        let mut req = ListRequest {
            limit: Some(1),
            namespace: None,
            ..req
        };
        loop {
            let (page, meta) = collect(store, &req);
            paged.extend(page);
            match meta.continue_token {
                Some(t) => req.continue_token = Some(t),
                None => break,
            }
        }
        let all_namespaces: BTreeMap<_, _> = model
            .live()
            .into_iter()
            .filter(|(_, b)| {
                let labels = labels_of(b);
                sel.matches(|k| labels.get(k).map(String::as_str))
            })
            .collect();
        assert_eq!(paged, all_namespaces, "paged selector {selector}");
    }

    // The writer's counts (whole type, latest): objects, a summary, a page's total.
    assert_eq!(store.count(PODS).unwrap(), model.live().len() as u64);
    let mut phases: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for b in model.live().values() {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        *phases
            .entry(v["status"]["phase"].as_str().map(String::from))
            .or_default() += 1;
    }
    let summary = store
        .summary(
            PODS,
            &PageRequest::default(),
            &Column::Field("status.phase".into()),
        )
        .unwrap();
    assert_eq!(summary.resource_version, model.last_rv);
    assert_eq!(
        summary.counts.into_iter().collect::<BTreeMap<_, _>>(),
        phases,
        "summary per status.phase"
    );
    let request = PageRequest {
        sort: vec![SortKey {
            column: Column::Name,
            descending: true,
            case_insensitive: false,
        }],
        offset: 2,
        page_size: Some(3),
        ..Default::default()
    };
    let mut page = Vec::new();
    let meta = store
        .page(PODS, &request, |ns, name, _| {
            page.push((ns.to_string(), name.to_string()));
            Ok(())
        })
        .unwrap();
    let mut expected: Vec<Key> = model.live().into_keys().collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let expected: Vec<Key> = expected.into_iter().skip(2).take(3).collect();
    assert_eq!((page, meta.total), (expected, model.live().len() as u64));

    for i in 0..21 {
        let k = key(i);
        assert_eq!(
            store.get(PODS, &k.0, &k.1, None).unwrap(),
            model.live().get(&k).cloned()
        );
    }

    for rv in model.compacted..=model.last_rv {
        let req = ListRequest {
            resource_version: Some(rv),
            ..Default::default()
        };
        assert_eq!(collect(store, &req).0, model.at(rv), "as of {rv}");
    }
}

/// A full list at `rv` of the keys in `keep`: objects unchanged since last seen keep their
/// bytes (`app` 0), others are new states.
fn listed(model: &Model, keep: Vec<(usize, usize, usize)>, rv: u64) -> BTreeMap<Key, Vec<u8>> {
    let live = model.live();
    let mut objects = BTreeMap::new();
    for (i, app, tier) in keep {
        let k = key(i);
        let b = match live.get(&k) {
            Some(b) if app == 0 => b.clone(),
            _ => body(&k, rv, app, tier),
        };
        objects.insert(k, b);
    }
    objects
}

fn run(place: &common::Place, actions: Vec<Action>) {
    let config = StoreConfig {
        history_max_events: 1_000_000,
        ..Default::default()
    };
    let mut store = place.open(config.clone()).unwrap();
    let mut model = Model::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut rv = 1;
    for action in actions {
        match action {
            Action::Upsert { key: i, app, tier } => {
                rv += 1;
                let k = key(i);
                let b = body(&k, rv, app, tier);
                store
                    .write_blocking(Batch::new(PODS).event(EventKind::Modified, b.clone()))
                    .unwrap();
                model.set(k, rv, Some(b));
                model.last_rv = rv;
            }
            Action::Delete { key: i } => {
                rv += 1;
                let k = key(i);
                let b = body(&k, rv, 0, 0);
                store
                    .write_blocking(Batch::new(PODS).event(EventKind::Deleted, b))
                    .unwrap();
                if model.live().contains_key(&k) {
                    model.set(k, rv, None);
                }
                model.last_rv = rv;
            }
            Action::Replay { key: i } => {
                let k = key(i);
                if let Some((at, Some(b))) = model.current.get(&k).cloned() {
                    let events = store
                        .write_blocking(Batch::new(PODS).event(EventKind::Modified, b))
                        .unwrap();
                    assert!(events.is_empty(), "a replay at {at} must be skipped");
                }
            }
            Action::Bookmark => {
                rv += 1;
                store.write_blocking(Batch::new(PODS).bookmark(rv)).unwrap();
                model.last_rv = rv;
            }
            Action::AbandonedRelist { keep } => {
                let objects = listed(&model, keep, rv + 1);
                runtime.block_on(async {
                    let mut relist = store.relist(PODS).unwrap();
                    relist
                        .push(objects.into_values().map(Into::into).collect())
                        .await
                        .unwrap();
                });
            }
            Action::Relist { keep, chunk } => {
                rv += 1;
                let live = model.live();
                let objects = listed(&model, keep, rv);
                if chunk == 0 {
                    store
                        .write_blocking(Batch::new(PODS).replace(rv, objects.values().cloned()))
                        .unwrap();
                } else {
                    let items: Vec<vai_store::Item> =
                        objects.values().cloned().map(Into::into).collect();
                    runtime.block_on(async {
                        let mut relist = store.relist(PODS).unwrap();
                        for part in items.chunks(chunk) {
                            relist.push(part.to_vec()).await.unwrap();
                            // Nothing of a list is visible before its end.
                            check(&store, &model);
                        }
                        relist.finish(rv).await.unwrap();
                    });
                }
                for (k, b) in &objects {
                    if live.get(k) != Some(b) {
                        model.set(k.clone(), rv, Some(b.clone()));
                    }
                }
                for k in live.keys().filter(|k| !objects.contains_key(*k)) {
                    model.set(k.clone(), rv, None);
                }
                if !model.listed && model.compacted == 0 {
                    model.compacted = rv;
                }
                model.listed = true;
                model.last_rv = rv;
            }
            Action::Reopen => {
                store.close();
                drop(store);
                store = place.open(config.clone()).unwrap();
            }
        }
        check(&store, &model);
    }
    store.check_integrity().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn the_store_agrees_with_a_plain_model(actions in proptest::collection::vec(action(), 1..40)) {
        common::each_backend(|place| run(place, actions.clone()));
    }
}
