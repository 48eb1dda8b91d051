//! Property test of the query API's primitives: for random data sets and random queries, the
//! store's pages, totals and summaries (SQL) equal the same query evaluated in plain Rust over
//! the full list — on every backend (the SQLite file and PostgreSQL), each case on both.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;
use vai_store::{
    Batch, Column, Condition, Filter, ListRequest, Operator, PageRequest, SortKey, Store,
    StoreConfig,
};

mod common;

const PODS: &str = "/v1/pods";

#[derive(Debug, Clone)]
struct Pod {
    namespace: String,
    name: String,
    created: String,
    phase: Option<String>,
    labels: BTreeMap<String, String>,
}

impl Pod {
    fn json(&self, rv: u64) -> Vec<u8> {
        let mut status = serde_json::json!({});
        if let Some(phase) = &self.phase {
            status["phase"] = phase.clone().into();
        }
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "resourceVersion": rv.to_string(), "creationTimestamp": self.created,
                         "labels": self.labels},
            "status": status,
        }))
        .unwrap()
    }

    /// The column's value, as the model sees it (`None`: absent).
    fn value(&self, column: &Column) -> Option<String> {
        match column {
            Column::Name => Some(self.name.clone()),
            Column::Namespace => Some(self.namespace.clone()),
            Column::CreationTimestamp => Some(self.created.clone()),
            Column::Label(k) => self.labels.get(k).cloned(),
            // An indexed field is stored for every pod, with upstream's default for absent.
            Column::Field(_) => Some(self.phase.clone().unwrap_or_default()),
        }
    }
}

fn pod() -> impl Strategy<Value = Pod> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        "[a-e][a-z0-9]{0,3}",
        0u32..50,
        prop::option::of(prop::sample::select(vec!["Running", "Pending", "Failed"])),
        prop::option::of(prop::sample::select(vec!["web", "Web", "db", "cache"])),
        prop::option::of(prop::sample::select(vec!["1", "7", "10", "012", "x"])),
    )
        .prop_map(|(ns, name, minute, phase, app, size)| {
            let mut labels = BTreeMap::new();
            if let Some(app) = app {
                labels.insert("app".to_string(), app.to_string());
            }
            if let Some(size) = size {
                labels.insert("size".to_string(), size.to_string());
            }
            Pod {
                namespace: ns.to_string(),
                name,
                created: format!("2026-01-01T00:{minute:02}:00Z"),
                phase: phase.map(String::from),
                labels,
            }
        })
}

fn column() -> impl Strategy<Value = Column> {
    prop::sample::select(vec![
        Column::Name,
        Column::Namespace,
        Column::CreationTimestamp,
        Column::Label("app".into()),
        Column::Label("size".into()),
        Column::Field("status.phase".into()),
    ])
}

fn condition() -> impl Strategy<Value = Condition> {
    let values = prop::sample::subsequence(
        vec![
            "web",
            "Web",
            "db",
            "a",
            "b",
            "Running",
            "e",
            "7",
            "10",
            "2026-01-01T00:20:00Z",
        ],
        1..3,
    );
    (
        column(),
        prop::sample::select(vec![
            Operator::Eq,
            Operator::NotEq,
            Operator::Contains,
            Operator::NotContains,
            Operator::In,
            Operator::NotIn,
            Operator::Lt,
            Operator::Gt,
            Operator::Exists,
            Operator::NotExists,
        ]),
        values,
    )
        .prop_map(|(column, operator, values)| {
            let values: Vec<String> = match operator {
                Operator::Exists | Operator::NotExists => Vec::new(),
                Operator::In | Operator::NotIn => values.iter().map(|v| v.to_string()).collect(),
                _ => vec![values[0].to_string()],
            };
            // Existence applies to labels only (the API refuses it elsewhere).
            let column = match (&operator, column) {
                (Operator::Exists | Operator::NotExists, Column::Label(k)) => Column::Label(k),
                (Operator::Exists | Operator::NotExists, _) => Column::Label("app".into()),
                (_, c) => c,
            };
            Condition {
                column,
                operator,
                values,
            }
        })
}

/// The model's reading of one condition (written from the API's definition, not the store's).
fn holds(c: &Condition, value: Option<&str>) -> bool {
    let v0 = c.values.first().map(String::as_str).unwrap_or("");
    let integer = |s: &str| s.parse::<i64>().ok().filter(|n| n.to_string() == s);
    match c.operator {
        Operator::Exists => value.is_some(),
        Operator::NotExists => value.is_none(),
        Operator::Eq => value == Some(v0),
        Operator::NotEq => value != Some(v0),
        Operator::Contains => value.is_some_and(|v| v.contains(v0)),
        Operator::NotContains => value.is_none_or(|v| !v.contains(v0)),
        Operator::In => value.is_some_and(|v| c.values.iter().any(|x| x == v)),
        Operator::NotIn => value.is_none_or(|v| c.values.iter().all(|x| x != v)),
        Operator::Lt | Operator::Gt => {
            let want = if c.operator == Operator::Lt {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            match (value, v0.parse::<i64>()) {
                (None, _) => false,
                (Some(v), Ok(n)) => integer(v).is_some_and(|m| m.cmp(&n) == want),
                (Some(v), Err(_)) => v.cmp(v0) == want,
            }
        }
    }
}

fn model_order(a: &Pod, b: &Pod, sort: &[SortKey]) -> Ordering {
    for key in sort {
        let (va, vb) = (a.value(&key.column), b.value(&key.column));
        let ord = match (va, vb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let ord = if key.case_insensitive {
                    x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase())
                } else {
                    x.cmp(&y)
                };
                if key.descending { ord.reverse() } else { ord }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
}

/// The store's page for a request: its meta and the (namespace, name) of each item.
fn store_page(
    store: &Store,
    request: &PageRequest,
) -> (vai_store::PageMeta, Vec<(String, String)>) {
    let mut got = Vec::new();
    let meta = store
        .page(PODS, request, |ns, name, _| {
            got.push((ns.to_string(), name.to_string()));
            Ok(())
        })
        .unwrap();
    (meta, got)
}

/// Whether a pod passes every filter, as the model evaluates them.
fn passes(filters: &[Filter], p: &Pod) -> bool {
    filters
        .iter()
        .all(|f| f.0.iter().any(|c| holds(c, p.value(&c.column).as_deref())))
}

/// The model's page: `matching` sorted, then cut.
fn model_page(
    mut matching: Vec<&Pod>,
    sort: &[SortKey],
    offset: usize,
    page_size: Option<usize>,
) -> Vec<(String, String)> {
    matching.sort_by(|a, b| model_order(a, b, sort));
    matching
        .iter()
        .skip(offset)
        .take(page_size.unwrap_or(usize::MAX))
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect()
}

/// Counts per value of `column`: the store's summary of a request, and the model's of the pods
/// it matches.
fn summaries(
    store: &Store,
    request: &PageRequest,
    matching: &[&Pod],
    column: &Column,
) -> (BTreeMap<Option<String>, u64>, BTreeMap<Option<String>, u64>) {
    let stored = store
        .summary(PODS, request, column)
        .unwrap()
        .counts
        .into_iter()
        .collect();
    let mut model = BTreeMap::new();
    for p in matching {
        *model.entry(p.value(column)).or_default() += 1;
    }
    (stored, model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pages_totals_and_summaries_equal_a_plain_evaluation(
        pods in prop::collection::vec(pod(), 0..40),
        filters in prop::collection::vec(prop::collection::vec(condition(), 1..3), 0..3),
        sort in prop::collection::vec((column(), any::<bool>(), any::<bool>()), 0..3),
        offset in 0usize..20,
        page_size in prop::option::of(1usize..15),
        summary_column in column(),
    ) {
        for common::Fresh { backend, store, .. } in common::fresh_stores(StoreConfig::default()) {
        eprintln!("-- {backend}");
        let (pods, filters, sort) = (pods.clone(), filters.clone(), sort.clone());
        // One pod per key (the last generated wins), as a cluster holds them.
        let mut unique: BTreeMap<(String, String), Pod> = BTreeMap::new();
        for p in pods {
            unique.insert((p.namespace.clone(), p.name.clone()), p);
        }
        let objects: Vec<Vec<u8>> = unique.values().map(|p| p.json(5)).collect();
        store.write_blocking(Batch::new(PODS).replace(5, objects)).unwrap();

        let filters: Vec<Filter> = filters.into_iter().map(Filter).collect();
        let sort: Vec<SortKey> = sort
            .into_iter()
            .map(|(column, descending, case_insensitive)| SortKey { column, descending, case_insensitive })
            .collect();
        let request = PageRequest {
            list: ListRequest::default(),
            filters: filters.clone(),
            sort: sort.clone(),
            offset,
            page_size,
        };
        let (meta, got) = store_page(&store, &request);
        let matching: Vec<&Pod> = unique.values().filter(|p| passes(&filters, p)).collect();
        prop_assert_eq!(meta.total, matching.len() as u64);
        // Under a case-insensitive key, values equal but for case are a tie the store breaks
        // by namespace and name, as the model does — so the pages agree exactly.
        prop_assert_eq!(&got, &model_page(matching.clone(), &sort, offset, page_size));

        let (stored, model) = summaries(&store, &request, &matching, &summary_column);
        prop_assert_eq!(stored, model);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Pages newest first walk their own index (`versions_by_created`, history and deletions
    /// included in it) and take their totals from the writer's counts where they can: pages and
    /// summaries at the latest state and as of an older resource version equal the model's.
    #[test]
    fn pages_newest_first_equal_a_plain_evaluation_now_and_as_of_before(
        before in prop::collection::vec(pod(), 0..30),
        after in prop::collection::vec(pod(), 0..30),
        offset in 0usize..20,
        page_size in prop::option::of(1usize..15),
    ) {
        for common::Fresh { backend, store, .. } in common::fresh_stores(StoreConfig::default()) {
        eprintln!("-- {backend}");
        let (before, after) = (before.clone(), after.clone());
        let unique = |pods: Vec<Pod>| -> BTreeMap<(String, String), Pod> {
            pods.into_iter().map(|p| ((p.namespace.clone(), p.name.clone()), p)).collect()
        };
        let (before, after) = (unique(before), unique(after));
        // The second list replaces the first: some pods stay (maybe changed), the rest go.
        for (rv, pods) in [(5, &before), (9, &after)] {
            let objects: Vec<Vec<u8>> = pods.values().map(|p| p.json(rv)).collect();
            store.write_blocking(Batch::new(PODS).replace(rv, objects)).unwrap();
        }
        let newest_first = vec![SortKey {
            column: Column::CreationTimestamp,
            descending: true,
            case_insensitive: false,
        }];
        let running = Filter(vec![Condition {
            column: Column::Field("status.phase".into()),
            operator: Operator::Eq,
            values: vec!["Running".into()],
        }]);
        // The whole type, one namespace, one namespace's running pods (whose total the
        // writer's counts hold at the latest state).
        let scopes = [(None, vec![]), (Some("a"), vec![]), (Some("a"), vec![running])];
        for ((at, pods), (namespace, filters)) in [(None, &after), (Some(5), &before)]
            .into_iter()
            .flat_map(|state| scopes.iter().map(move |scope| (state, scope)))
        {
            let request = PageRequest {
                list: ListRequest {
                    resource_version: at,
                    namespace: namespace.map(String::from),
                    ..Default::default()
                },
                filters: filters.clone(),
                sort: newest_first.clone(),
                offset,
                page_size,
            };
            let (meta, got) = store_page(&store, &request);
            let all: Vec<&Pod> = pods
                .values()
                .filter(|p| namespace.is_none_or(|ns| p.namespace == ns) && passes(filters, p))
                .collect();
            prop_assert_eq!(meta.total, all.len() as u64, "as of {:?} in {:?}", at, namespace);
            let expected = model_page(all.clone(), &newest_first, offset, page_size);
            prop_assert_eq!(got, expected, "as of {:?} in {:?}", at, namespace);
            // Summaries of the same selections (one namespace's at the latest state come from
            // the writer's per-namespace counts).
            let phase = Column::Field("status.phase".into());
            let (stored, model) = summaries(&store, &request, &all, &phase);
            prop_assert_eq!(stored, model, "summary as of {:?} in {:?}", at, namespace);
        }
        }
    }
}

/// A label selector of one to three requirements on the generated labels.
fn label_selector() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "app=web",
            "app!=db",
            "app in (web,Web)",
            "app notin (cache)",
            "app",
            "!app",
            "size>5",
            "size<10",
            "!size",
        ]),
        0..3,
    )
    .prop_map(|parts| parts.join(","))
}

/// A field selector on the columns, an indexed field and an evaluated one.
fn field_selector() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "status.phase=Running",
            "status.phase!=Pending",
            "status.phase=",
            "metadata.namespace!=a",
            "metadata.name=b1",
            "spec.restartPolicy=",
            "spec.restartPolicy!=Always",
        ]),
        0..3,
    )
    .prop_map(|parts| parts.join(","))
}

/// The keys the store's SQL selects for a list request as of `rv`.
fn listed_at(
    store: &Store,
    request: &ListRequest,
    rv: u64,
) -> std::collections::BTreeSet<(String, String)> {
    let request = ListRequest {
        resource_version: Some(rv),
        ..request.clone()
    };
    let mut keys = std::collections::BTreeSet::new();
    store
        .list(PODS, &request, |ns, name, _| {
            keys.insert((ns.to_string(), name.to_string()));
            Ok(())
        })
        .unwrap();
    keys
}

/// The keys the store's SQL passes through a filter as of `rv`.
fn filtered_at(
    store: &Store,
    filter: &Filter,
    rv: u64,
) -> std::collections::BTreeSet<(String, String)> {
    let request = PageRequest {
        list: ListRequest {
            resource_version: Some(rv),
            ..Default::default()
        },
        filters: vec![filter.clone()],
        ..Default::default()
    };
    store_page(store, &request).1.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The store's event matching (`ListRequest::matches`, `Filter::matches_event`, over what
    /// the writer extracted into each event) selects exactly what the SQL selects: for each
    /// event of a first list, of a relist that changes and deletes, and of the history replay
    /// of both, the object is matched iff the list (or the page) at the event's version holds
    /// it — for a deletion, at the version before, whose state the event carries.
    #[test]
    fn event_matching_selects_what_the_sql_selects(
        before in prop::collection::vec(pod(), 0..25),
        after in prop::collection::vec(pod(), 0..25),
        namespace in prop::option::of(prop::sample::select(vec!["a", "b"])),
        labels in label_selector(),
        fields in field_selector(),
        filter in prop::collection::vec(condition(), 1..3),
    ) {
        for common::Fresh { backend, store, .. } in common::fresh_stores(StoreConfig::default()) {
        eprintln!("-- {backend}");
        let (before, after, labels, fields, filter) = (before.clone(), after.clone(), labels.clone(), fields.clone(), filter.clone());
        let unique = |pods: Vec<Pod>| -> BTreeMap<(String, String), Pod> {
            pods.into_iter().map(|p| ((p.namespace.clone(), p.name.clone()), p)).collect()
        };
        let mut live = Vec::new();
        for (rv, pods) in [(5, unique(before)), (9, unique(after))] {
            let objects: Vec<Vec<u8>> = pods.values().map(|p| p.json(rv)).collect();
            live.extend(store.write_blocking(Batch::new(PODS).replace(rv, objects)).unwrap().iter().cloned());
        }
        // The history window starts at the first list: the relist's events are replayed.
        let replayed = store.events_since(PODS, 5).unwrap();
        prop_assert_eq!(replayed.len(), live.iter().filter(|e| e.resource_version > 5).count());
        let request = ListRequest {
            namespace: namespace.map(String::from),
            labels: vai_store::LabelSelector::parse(&labels).unwrap(),
            fields: vai_store::FieldSelector::parse(&fields).unwrap(),
            ..Default::default()
        };
        let filter = Filter(filter);
        let type_fields = store.fields(PODS);
        for (source, events) in [("live", &live), ("replayed", &replayed)] {
            for event in events {
                let key = (event.namespace.clone(), event.name.clone());
                let at = match event.kind {
                    vai_store::EventKind::Deleted => 5,
                    _ => event.resource_version,
                };
                prop_assert_eq!(
                    request.matches(&type_fields, event),
                    listed_at(&store, &request, at).contains(&key),
                    "{} {:?} {:?} at {} for {:?} / {:?} / {:?}",
                    source, event.kind, key, at, namespace, labels, fields
                );
                prop_assert_eq!(
                    filter.matches_event(event),
                    filtered_at(&store, &filter, at).contains(&key),
                    "{} {:?} {:?} at {} for {:?}", source, event.kind, key, at, filter
                );
            }
        }
        }
    }
}
