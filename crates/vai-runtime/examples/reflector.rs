//! A reflector for Pods into `pods.db`: prints how many it holds, then every change.
//! Run it twice: the second start answers at once from the file and lists nothing.
//!
//! ```sh
//! scripts/testenv up /tmp/e && export KUBECONFIG=/tmp/e/kubeconfig
//! cargo run -p vai-runtime --example reflector
//! ```

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use vai_runtime::{Change, reflector};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let db = vai_store::Store::open("pods.db".as_ref(), Default::default())?;
    let pods = reflector::<Pod>(client, db);
    let store = pods.store();
    store.wait_until_ready().await?;
    println!(
        "{} pods (from pods.db; the reflector resumes from it)",
        store.len()
    );
    let mut changes = pods.changes();
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(p) => println!("applied {}/{}", ns(&p), name(&p)),
            Change::Deleted(p) => println!("deleted {}/{}", ns(&p), name(&p)),
        }
    }
    Ok(())
}

fn ns(p: &Pod) -> &str {
    p.metadata.namespace.as_deref().unwrap_or("")
}

fn name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}
