//! Fields that are not known when the store opens: those CRDs declare selectable (declared while
//! objects are stored) and configured ones (a configuration that changes between runs). Every
//! answer right after a change is complete: stored objects are reindexed before it returns.

use std::collections::BTreeMap;

use vai_store::{
    Batch, Column, ConfiguredField, Error, EventKind, FieldSelector, Filter, ListRequest, Operator,
    PageRequest, Store, StoreConfig,
};

mod common;

const WIDGETS: &str = "example.com/v1/widgets";
const DEPLOYMENTS: &str = "apps/v1/deployments";
const PODS: &str = "/v1/pods";

/// An object of any type: `spec` as given.
fn object(kind: &str, name: &str, rv: u64, spec: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv.to_string()},
        "spec": spec,
    }))
    .unwrap()
}

fn widget(name: &str, rv: u64, spec: serde_json::Value) -> Vec<u8> {
    object("Widget", name, rv, spec)
}

/// The names a field selector selects (or the store's refusal).
fn select(store: &Store, resource: &str, selector: &str) -> Result<Vec<String>, Error> {
    select_at(store, resource, selector, None)
}

fn select_at(
    store: &Store,
    resource: &str,
    selector: &str,
    rv: Option<u64>,
) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let request = ListRequest {
        fields: FieldSelector::parse(selector).unwrap(),
        resource_version: rv,
        ..ListRequest::default()
    };
    store.list(resource, &request, |_, name, _| {
        names.push(name.to_string());
        Ok(())
    })?;
    Ok(names)
}

/// A query-API filter `path op value` on `resource`, parsed against the store's fields as the
/// server parses it; the names it selects, sorted by `path`.
fn filter(
    store: &Store,
    resource: &str,
    path: &str,
    operator: Operator,
    value: &str,
) -> Result<Vec<String>, Error> {
    let column = Column::parse_for(&store.fields(resource), path)?;
    let request = PageRequest {
        filters: vec![Filter(vec![vai_store::Condition {
            column: column.clone(),
            operator,
            values: vec![value.to_string()],
        }])],
        sort: vec![vai_store::SortKey {
            column,
            descending: false,
            case_insensitive: false,
        }],
        ..PageRequest::default()
    };
    let mut names = Vec::new();
    store.page(resource, &request, |_, name, _| {
        names.push(name.to_string());
        Ok(())
    })?;
    Ok(names)
}

/// Counts per value of an indexed field, over every object of `resource`.
fn summary(store: &Store, resource: &str, path: &str) -> Vec<(Option<String>, u64)> {
    let column = Column::parse_for(&store.fields(resource), path).unwrap();
    store
        .summary(resource, &PageRequest::default(), &column)
        .unwrap()
        .counts
}

fn declared(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries
        .iter()
        .map(|(key, paths)| {
            (
                key.to_string(),
                paths.iter().map(|p| p.to_string()).collect(),
            )
        })
        .collect()
}

fn unsupported(result: Result<Vec<String>, Error>) -> String {
    match result {
        Err(Error::UnsupportedField(message)) => message,
        other => panic!("expected UnsupportedField, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_declared_while_objects_are_stored_is_backfilled_before_the_declaration_returns() {
    for place in common::fresh_places() {
        eprintln!("-- {}", place.backend());
        a_field_declared_while_objects_are_stored_is_backfilled_before_the_declaration_returns_on(
            &place,
        )
        .await;
    }
}

async fn a_field_declared_while_objects_are_stored_is_backfilled_before_the_declaration_returns_on(
    place: &common::Place,
) {
    let store = place.open(StoreConfig::default()).unwrap();
    store
        .write(Batch::new(WIDGETS).replace(
            10,
            vec![
                widget(
                    "blue-1",
                    10,
                    serde_json::json!({"color": "blue", "replicas": 3}),
                ),
                widget(
                    "red",
                    10,
                    serde_json::json!({"color": "red", "replicas": 1}),
                ),
                widget("none", 10, serde_json::json!({"replicas": 3})),
                widget("null", 10, serde_json::json!({"color": null})),
            ],
        ))
        .await
        .unwrap();
    // History: `red` was blue before.
    store
        .write(Batch::new(WIDGETS).event(
            EventKind::Modified,
            widget(
                "blue-1",
                11,
                serde_json::json!({"color": "green", "replicas": 3}),
            ),
        ))
        .await
        .unwrap();
    assert_eq!(
        unsupported(select(&store, WIDGETS, "spec.color=blue")),
        "field label not supported: spec.color",
        "undeclared: upstream's refusal"
    );

    store
        .declare_fields(declared(&[(WIDGETS, &[".spec.color", ".spec.replicas"])]))
        .await
        .unwrap();
    // At once, from the index, for the objects stored before.
    assert_eq!(
        select(&store, WIDGETS, "spec.color=green").unwrap(),
        vec!["blue-1"]
    );
    assert_eq!(
        select(&store, WIDGETS, "spec.color=").unwrap(),
        vec!["none", "null"],
        "absent and null are \"\", as upstream"
    );
    assert_eq!(
        select(&store, WIDGETS, "spec.color!=red").unwrap(),
        vec!["blue-1", "none", "null"]
    );
    assert_eq!(
        select(&store, WIDGETS, "spec.replicas=3,spec.color!=green").unwrap(),
        vec!["none"]
    );
    // History was backfilled too: as of 10, blue-1 was blue.
    assert_eq!(
        select_at(&store, WIDGETS, "spec.color=blue", Some(10)).unwrap(),
        vec!["blue-1"]
    );
    // The query API: filters, sorts and summaries on the declared fields.
    assert_eq!(
        filter(&store, WIDGETS, "spec.replicas", Operator::Gt, "1").unwrap(),
        vec!["blue-1", "none"]
    );
    assert_eq!(
        summary(&store, WIDGETS, "spec.color"),
        vec![
            (Some(String::new()), 2),
            (Some("green".into()), 1),
            (Some("red".into()), 1)
        ]
    );
    let fields = store.fields(WIDGETS);
    assert!(fields.selectable("spec.color").is_some_and(|f| f.indexed));
    assert!(fields.get("spec.size").is_none());

    // Objects written afterwards are indexed as they are stored.
    store
        .write(Batch::new(WIDGETS).event(
            EventKind::Added,
            widget("blue-2", 12, serde_json::json!({"color": "blue"})),
        ))
        .await
        .unwrap();
    assert_eq!(
        select(&store, WIDGETS, "spec.color=blue").unwrap(),
        vec!["blue-2"]
    );

    // A relist parsed before a declaration and finished after it: its objects are indexed
    // with the declaration in force when they are applied.
    let mut relist = store.relist(WIDGETS).unwrap();
    relist
        .push(vec![
            widget(
                "blue-2",
                12,
                serde_json::json!({"color": "blue", "size": "xl"}),
            )
            .into(),
            widget(
                "new",
                13,
                serde_json::json!({"color": "blue", "size": "xl"}),
            )
            .into(),
        ])
        .await
        .unwrap();
    store
        .declare_fields(declared(&[(WIDGETS, &[".spec.color", ".spec.size"])]))
        .await
        .unwrap();
    relist.finish(14).await.unwrap();
    assert_eq!(
        select(&store, WIDGETS, "spec.size=xl").unwrap(),
        vec!["blue-2", "new"]
    );
    assert_eq!(
        unsupported(select(&store, WIDGETS, "spec.replicas=3")),
        "field label not supported: spec.replicas",
        "a field the CRD no longer declares is refused again"
    );

    // A declaration that goes (the CRD was deleted): refused again, its index dropped.
    store.declare_fields(BTreeMap::new()).await.unwrap();
    assert_eq!(
        unsupported(select(&store, WIDGETS, "spec.color=blue")),
        "field label not supported: spec.color"
    );
    let labels = place.count(
        "SELECT count(*) FROM labels WHERE key LIKE '#spec.%'",
        "SELECT count(*) FROM vai_versions v, jsonb_object_keys(v.attributes) k
         WHERE k LIKE '#spec.%'",
    );
    assert_eq!(labels, 0, "no index rows are left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_and_configured_fields_survive_restarts_and_a_changed_configuration_reindexes()
{
    for place in common::fresh_places() {
        eprintln!("-- {}", place.backend());
        declarations_and_configured_fields_survive_restarts_and_a_changed_configuration_reindexes_on(&place).await;
    }
}

async fn declarations_and_configured_fields_survive_restarts_and_a_changed_configuration_reindexes_on(
    place: &common::Place,
) {
    let config = |fields: &str| StoreConfig {
        indexed_fields: ConfiguredField::parse_list(fields).unwrap(),
        ..StoreConfig::default()
    };
    let deployment = |name: &str, rv: u64, replicas: u64, paused: bool| {
        object(
            "Deployment",
            name,
            rv,
            serde_json::json!({"replicas": replicas, "paused": paused}),
        )
    };
    {
        let store = place
            .open(config("deployments.apps=spec.replicas"))
            .unwrap();
        store
            .write(Batch::new(DEPLOYMENTS).replace(
                5,
                vec![
                    deployment("a", 5, 3, false),
                    deployment("b", 5, 1, true),
                    deployment("c", 5, 3, true),
                ],
            ))
            .await
            .unwrap();
        store
            .write(Batch::new(WIDGETS).replace(
                5,
                vec![widget("w", 5, serde_json::json!({"color": "blue"}))],
            ))
            .await
            .unwrap();
        store
            .declare_fields(declared(&[(WIDGETS, &[".spec.color"])]))
            .await
            .unwrap();
        assert_eq!(
            filter(&store, DEPLOYMENTS, "spec.replicas", Operator::Eq, "3").unwrap(),
            vec!["a", "c"]
        );
        // Upstream has no field selector on it: only the query API may use it.
        assert_eq!(
            unsupported(select(&store, DEPLOYMENTS, "spec.replicas=3")),
            "field label not supported: spec.replicas"
        );
        store.close();
    }

    // Another configuration: replicas goes, paused comes; nothing is written after the open,
    // and the answers are already right (and the declaration is still known, with no CRD).
    {
        let store = place.open(config("deployments.apps=spec.paused")).unwrap();
        assert_eq!(
            filter(&store, DEPLOYMENTS, "spec.paused", Operator::Eq, "true").unwrap(),
            vec!["b", "c"]
        );
        let refused = unsupported(filter(
            &store,
            DEPLOYMENTS,
            "spec.replicas",
            Operator::Eq,
            "3",
        ));
        assert!(
            refused.contains("\"spec.replicas\" is not indexed")
                && refused.contains("metadata.labels[<key>], spec.paused"),
            "{refused}"
        );
        assert_eq!(
            select(&store, WIDGETS, "spec.color=blue").unwrap(),
            vec!["w"]
        );
        store
            .write(Batch::new(DEPLOYMENTS).event(EventKind::Modified, deployment("a", 6, 5, true)))
            .await
            .unwrap();
        store.close();
    }

    // Back to replicas: rebuilt from the objects as they are now (a changed since), with no
    // value left over from the first run.
    let store = place
        .open(config("deployments.apps=spec.replicas"))
        .unwrap();
    assert_eq!(
        summary(&store, DEPLOYMENTS, "spec.replicas"),
        vec![
            (Some("1".into()), 1),
            (Some("3".into()), 1),
            (Some("5".into()), 1)
        ]
    );
    assert!(store.fields(DEPLOYMENTS).get("spec.paused").is_none());
    store.close();
    drop(store);

    // A read-only open (what `vai status` uses) reads the fields from the file.
    let reader = place.open_read_only().unwrap();
    assert!(reader.fields(WIDGETS).selectable("spec.color").is_some());
    assert_eq!(
        select(&reader, WIDGETS, "spec.color=blue").unwrap(),
        vec!["w"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_fields_on_a_missing_path_are_absent_and_built_in_ones_keep_upstreams_default() {
    for place in common::fresh_places() {
        eprintln!("-- {}", place.backend());
        configured_fields_on_a_missing_path_are_absent_and_built_in_ones_keep_upstreams_default_on(
            &place,
        )
        .await;
    }
}

async fn configured_fields_on_a_missing_path_are_absent_and_built_in_ones_keep_upstreams_default_on(
    place: &common::Place,
) {
    let config = StoreConfig {
        indexed_fields: ConfiguredField::parse_list(
            "pods=spec.serviceAccountName,spec.priority,metadata.annotations[example.com/team]",
        )
        .unwrap(),
        ..StoreConfig::default()
    };
    let store = place.open(config).unwrap();
    let pod = |name: &str, spec: serde_json::Value, team: Option<&str>| {
        let mut pod = serde_json::json!({
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"},
            "spec": spec,
        });
        if let Some(team) = team {
            pod["metadata"]["annotations"] = serde_json::json!({"example.com/team": team});
        }
        serde_json::to_vec(&pod).unwrap()
    };
    store
        .write(Batch::new(PODS).replace(
            7,
            vec![
                pod(
                    "a",
                    serde_json::json!({"serviceAccountName": "robot", "priority": 10}),
                    Some("blue"),
                ),
                pod("b", serde_json::json!({"priority": 0}), None),
                pod("c", serde_json::json!({}), Some("red")),
            ],
        ))
        .await
        .unwrap();
    // A built-in selectable field, now indexed: upstream's "" for absent.
    assert_eq!(
        select(&store, PODS, "spec.serviceAccountName=").unwrap(),
        vec!["b", "c"]
    );
    assert_eq!(
        filter(
            &store,
            PODS,
            "spec.serviceAccountName",
            Operator::Eq,
            "robot"
        )
        .unwrap(),
        vec!["a"]
    );
    // A configured field upstream does not know: absent stays absent.
    assert_eq!(
        filter(&store, PODS, "spec.priority", Operator::NotEq, "10").unwrap(),
        vec!["b", "c"]
    );
    assert_eq!(
        summary(&store, PODS, "spec.priority"),
        vec![(Some("0".into()), 1), (Some("10".into()), 1), (None, 1)]
    );
    assert_eq!(
        filter(
            &store,
            PODS,
            "metadata.annotations[example.com/team]",
            Operator::Eq,
            "red"
        )
        .unwrap(),
        vec!["c"]
    );
    assert_eq!(
        unsupported(select(&store, PODS, "spec.priority=10")),
        "field label not supported: spec.priority"
    );
}
