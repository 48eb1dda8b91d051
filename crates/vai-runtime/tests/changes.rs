//! The change stream of a typed store: every change in commit order, a consumer that falls
//! behind the live buffer catches up from the history (deletions included), and one further
//! behind than the history is resynced (current objects applied, vanished ones deleted).

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use vai_runtime::{Change, Store};
use vai_store::{Batch, EventKind, StoreConfig};

fn cm(name: &str, rv: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv.to_string()},
    }))
    .unwrap()
}

fn named(change: &Change<ConfigMap>) -> (&'static str, String) {
    match change {
        Change::Applied(c) => ("applied", c.metadata.name.clone().unwrap()),
        Change::Deleted(c) => ("deleted", c.metadata.name.clone().unwrap()),
    }
}

async fn open(config: StoreConfig) -> (tempfile::TempDir, vai_store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let raw = vai_store::Store::open(&dir.path().join("vai.db"), config).unwrap();
    raw.write(Batch::new("/v1/configmaps").replace(1, vec![cm("old", 1)]))
        .await
        .unwrap();
    (dir, raw)
}

async fn write(raw: &vai_store::Store, kind: EventKind, name: &str, rv: u64) {
    raw.write(Batch::new("/v1/configmaps").event(kind, cm(name, rv)))
        .await
        .unwrap();
}

async fn take(
    changes: &mut futures::stream::BoxStream<'static, Change<ConfigMap>>,
    n: usize,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let change = tokio::time::timeout(std::time::Duration::from_secs(30), changes.next())
            .await
            .expect("a change")
            .expect("the stream goes on");
        out.push(named(&change));
    }
    out
}

#[tokio::test]
async fn a_consumer_behind_the_live_buffer_catches_up_from_history_with_its_deletions() {
    let (_dir, raw) = open(StoreConfig {
        event_buffer: 2,
        ..StoreConfig::default()
    })
    .await;
    let store = Store::<ConfigMap>::new(raw.clone());
    let mut changes = store.changes();
    write(&raw, EventKind::Added, "a", 2).await;
    assert_eq!(take(&mut changes, 1).await, [("applied", "a".to_string())]);
    // Ten batches while nobody reads: far beyond the live buffer of 2.
    for (i, name) in ["b", "c", "d", "e", "f"].iter().enumerate() {
        write(&raw, EventKind::Added, name, 10 + 2 * i as u64).await;
        write(&raw, EventKind::Deleted, name, 11 + 2 * i as u64).await;
    }
    let mut want = Vec::new();
    for name in ["b", "c", "d", "e", "f"] {
        want.push(("applied", name.to_string()));
        want.push(("deleted", name.to_string()));
    }
    assert_eq!(take(&mut changes, 10).await, want);
}

#[tokio::test]
async fn a_consumer_behind_the_history_is_resynced_with_the_objects_that_vanished() {
    let (_dir, raw) = open(StoreConfig {
        event_buffer: 2,
        history_max_events: 3,
        ..StoreConfig::default()
    })
    .await;
    let store = Store::<ConfigMap>::new(raw.clone());
    let mut changes = store.changes();
    write(&raw, EventKind::Added, "a", 2).await;
    assert_eq!(take(&mut changes, 1).await, [("applied", "a".to_string())]);
    // `old` and `a` go, `z` comes; then enough events that history no longer reaches back.
    write(&raw, EventKind::Deleted, "old", 3).await;
    write(&raw, EventKind::Deleted, "a", 4).await;
    write(&raw, EventKind::Added, "z", 5).await;
    for rv in 6..16 {
        write(&raw, EventKind::Modified, "z", rv).await;
    }
    let mut got = take(&mut changes, 3).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("applied", "z".to_string()),
            ("deleted", "a".to_string()),
            ("deleted", "old".to_string())
        ]
    );
}
