//! What the apiserver says about itself: how many objects it holds, and the counts in its
//! metrics that show what vai asked of it (LISTs served, watches open); and a reader's token
//! for the scenarios that ask vai as a user.

use vai_testenv::measure::{apiserver_metrics, metric_sum};

/// Objects upstream now, of the cached types but namespaces.
pub async fn objects(client: &kube::Client) -> u64 {
    let mut total = 0;
    for resource in ["pods", "configmaps", "secrets"] {
        let page: serde_json::Value = serde_json::from_str(
            &client
                .request_text(
                    http::Request::get(format!("/api/v1/{resource}?limit=1"))
                        .body(Vec::new())
                        .unwrap(),
                )
                .await
                .unwrap(),
        )
        .unwrap();
        let rest = page["metadata"]["remainingItemCount"].as_u64().unwrap_or(0);
        total += rest + page["items"].as_array().map_or(0, |i| i.len() as u64);
    }
    total
}

/// The apiserver's current long-running WATCH requests on pods.
pub async fn pod_watches(client: &kube::Client) -> f64 {
    let page = apiserver_metrics(client).await.unwrap();
    metric_sum(
        &page,
        "apiserver_longrunning_requests",
        &[r#"verb="WATCH""#, r#"resource="pods""#],
    )
    .expect("the apiserver counts its watches on pods (vai's own is one)")
}

/// LIST requests on pods the apiserver has served.
pub async fn pod_lists(client: &kube::Client) -> f64 {
    let page = apiserver_metrics(client).await.unwrap();
    metric_sum(
        &page,
        "apiserver_request_total",
        &[r#"verb="LIST""#, r#"resource="pods""#],
    )
    .expect("the apiserver counts LISTs of pods (vai's first sync made some)")
}

/// A token of a ServiceAccount that may read everything (the default `view` ClusterRole),
/// made once: what scenario 8's caller authenticates with.
pub async fn reader_token(client: &kube::Client) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::api::{Api, PostParams};
    let name = "vai-bench-reader";
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let account = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    let _ = accounts.create(&PostParams::default(), &account).await;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}],
    }))
    .unwrap();
    let _ = bindings.create(&PostParams::default(), &binding).await;
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 7200}
    }))
    .unwrap();
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a token for the bench reader")
        .status
        .and_then(|status| status.token)
        .expect("a token request's token")
}
