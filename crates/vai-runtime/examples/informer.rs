//! An informer-style controller loop: Pods indexed by node (client-go's indexer semantics), a
//! reconcile on every change that looks up the pod's node-mates through the index, and a query
//! the in-memory reflector cannot answer (a sorted, filtered page with its total).
//!
//! ```sh
//! scripts/testenv up /tmp/e && export KUBECONFIG=/tmp/e/kubeconfig
//! cargo run -p vai-runtime --example informer
//! ```

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use vai_runtime::indexer::IndexFn;
use vai_runtime::{Change, Column, PageRequest, SortKey, reflector};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let db = vai_store::Store::open("informer.db".as_ref(), Default::default())?;
    let pods = reflector::<Pod>(client, db);
    let store = pods.store();
    let by_node: IndexFn<Pod> = Arc::new(|p: &Pod| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        vec![node.unwrap_or_else(|| "<unscheduled>".into())]
    });
    store.indexers().add([("node".to_string(), by_node)])?;
    store.wait_until_ready().await?;

    // The ten newest pods, with the total, straight from SQLite.
    let (newest, page) = store.page(&PageRequest {
        sort: vec![SortKey {
            column: Column::CreationTimestamp,
            descending: true,
            case_insensitive: false,
        }],
        page_size: Some(10),
        ..Default::default()
    })?;
    println!(
        "{} pods; newest: {:?}",
        page.total,
        newest
            .iter()
            .map(|p| p.metadata.name.clone())
            .collect::<Vec<_>>()
    );

    let mut changes = pods.changes();
    while let Some(change) = changes.next().await {
        let (Change::Applied(pod) | Change::Deleted(pod)) = &change;
        let mates = store.indexers().index("node", pod)?;
        println!(
            "reconcile {}: {} pods share its node",
            pod.metadata.name.as_deref().unwrap_or(""),
            mates.len()
        );
    }
    Ok(())
}
