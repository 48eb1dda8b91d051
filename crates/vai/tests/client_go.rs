//! A client-go SharedInformer (the Go client every controller uses) pointed at vai: it syncs,
//! then sees creates, updates and deletes made upstream, in order (their latency is the
//! benchmark harness's to measure).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::{Informer, Vai};
use vai_testenv::TestEnv;

#[tokio::test]
async fn a_client_go_informer_through_vai_syncs_and_sees_changes_in_order() {
    let env = TestEnv::shared().await;
    let direct = env.client().await.unwrap();
    let ns = "t-client-go";
    support::ensure_namespace(&direct, ns).await;
    let upstream: Api<ConfigMap> = Api::namespaced(direct, ns);
    let existing: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "before"}})).unwrap();
    let _ = upstream.create(&PostParams::default(), &existing).await;
    let dir = tempfile::tempdir().unwrap();
    let vai = Vai::start(env, dir.path(), &["--resources", "configmaps,namespaces"]).await;
    // How fast events arrive is measured by the benchmark harness; here, that they do, in order.
    let soon = Duration::from_secs(15);
    for streaming in [true, false] {
        let informer = Informer::start(env, &vai.url(), ns, streaming);
        let first = informer.next(Duration::from_secs(20));
        assert_eq!(
            (&first["event"], &first["name"]),
            (&"ADDED".into(), &"before".into())
        );
        assert_eq!(informer.next(Duration::from_secs(20))["event"], "SYNCED");

        let name = format!("cg-{streaming}");
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "data": {"step": "1"}
        }))
        .unwrap();
        upstream.create(&PostParams::default(), &cm).await.unwrap();
        let added = informer.next(soon);
        assert_eq!(
            (&added["event"], &added["name"], &added["data"]["step"]),
            (&"ADDED".into(), &name.clone().into(), &"1".into())
        );
        let patch = serde_json::json!({"data": {"step": "2"}});
        upstream
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let updated = informer.next(soon);
        assert_eq!(
            (&updated["event"], &updated["data"]["step"]),
            (&"UPDATED".into(), &"2".into())
        );
        upstream
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        let deleted = informer.next(soon);
        assert_eq!(
            (&deleted["event"], &deleted["name"]),
            (&"DELETED".into(), &name.clone().into())
        );
    }
}
