//! Random and hostile requests through the in-process router — paths, query strings,
//! selectors, continue tokens, resource versions, `Accept` headers, huge and malformed values:
//! no panic, no `500`, and every error a well-formed `Status` whose code is the answer's.

mod support;

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use support::Server;

fn runtime_and_server() -> &'static (tokio::runtime::Runtime, Server) {
    static SHARED: OnceLock<(tokio::runtime::Runtime, Server)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(Server::start());
        (runtime, server)
    })
}

fn path() -> impl Strategy<Value = String> {
    let reads = prop::sample::select(vec![
        "/api/v1/pods",
        "/api/v1/namespaces/ns1/pods",
        "/api/v1/namespaces/ns2/pods",
        "/api/v1/namespaces/ns1/pods/a",
    ])
    .prop_map(String::from);
    let known = prop::sample::select(vec![
        "/api/v1/namespaces/ns1/pods/a/status",
        "/api/v1/namespaces/ns1/pods/a/log",
        "/api/v1/configmaps",
        "/api/v1/watch/pods",
        "/api/v1/namespaces",
        "/api/v1",
        "/api",
        "/apis",
        "/version",
        "/healthz",
        "/readyz",
        "/metrics",
        "/vai/v1/status",
        "/",
    ])
    .prop_map(String::from);
    let segment = "[a-z0-9.%~_-]{0,12}";
    prop_oneof![
        8 => reads,
        2 => known,
        1 => prop::collection::vec(segment, 0..7).prop_map(|s| format!("/{}", s.join("/"))),
        1 => prop::collection::vec(segment, 0..4)
            .prop_map(|s| format!("/api/v1/namespaces/ns1/pods/{}", s.join("/"))),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("99999999999".to_string()),
        Just("Exact".to_string()),
        Just("NotOlderThan".to_string()),
        Just("app in (web,db)".to_string()),
        Just("metadata.name=a".to_string()),
        Just("status.phase!=Running,spec.nodeName=n".to_string()),
        Just("metadata.labels[app]=web".to_string()),
        Just("-metadata.creationTimestamp".to_string()),
        "[ -~]{0,40}",
        "\\PC{0,20}",
        "[a-z=!,()]{0,2000}",
        (1usize..20_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        9 => prop::sample::select(vec![
            "labelSelector",
            "watch",
            "timeoutSeconds",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "resourceVersionMatch",
            "allowWatchBookmarks",
            "sendInitialEvents",
            "includeObject",
            "filter",
            "sort",
            "sortcase",
            "page",
            "pagesize",
            "revision",
            "summary",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z]{1,10}",
    ];
    prop::collection::vec((key, value()), 0..5)
}

fn accept() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        Just(Some("application/json".to_string())),
        Just(Some("application/yaml".to_string())),
        Just(Some("application/vnd.kubernetes.protobuf".to_string())),
        Just(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json".to_string()
        )),
        Just(Some(
            "application/json;as=Table;v=v9;g=meta.k8s.io".to_string()
        )),
        Just(Some(
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1".to_string()
        )),
        Just(Some(
            "application/json;as=APIGroupDiscoveryList;g=apidiscovery.k8s.io;v=v2".to_string()
        )),
        "[ -~]{0,60}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn hostile_requests_get_statuses_never_a_500(
        method in prop::sample::select(vec!["GET", "GET", "GET", "GET", "GET", "GET", "POST", "DELETE", "PATCH"]),
        path in path(),
        query in query(),
        accept in accept(),
    ) {
        let (runtime, server) = runtime_and_server();
        let mut uri = path.clone();
        if !query.is_empty() {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish();
            uri = format!("{uri}?{encoded}");
        }
        let mut request = Request::builder().method(method).uri(&uri);
        if let Some(accept) = accept.as_ref()
            && let Ok(value) = axum::http::HeaderValue::from_str(accept)
        {
            request = request.header("accept", value);
        }
        let request = request.body(Body::empty()).unwrap();
        let (status, body) = runtime.block_on(async {
            use tower::ServiceExt;
            let response = server.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            // Successful answers may be endless watches: only errors are read.
            let body = if status.is_success() {
                Vec::new()
            } else {
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec()
            };
            (status, body)
        });
        prop_assert!(status.as_u16() != 500, "{method} {uri}: 500 {}", String::from_utf8_lossy(&body));
        if !status.is_success() {
            let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                TestCaseError::fail(format!("{method} {uri} ({accept:?}): {status} not JSON ({e}): {}", String::from_utf8_lossy(&body)))
            })?;
            prop_assert_eq!(&answer["kind"], "Status", "{} {}: {}", method, uri, answer);
            prop_assert_eq!(&answer["code"], status.as_u16(), "{} {}: {}", method, uri, answer);
            prop_assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()), "{}", answer);
            prop_assert!(answer["message"].as_str().is_some(), "{}", answer);
        }
    }
}
