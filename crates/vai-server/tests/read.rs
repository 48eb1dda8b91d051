//! The read API in-process: list, get, watch and the query API's page answered from the store,
//! with the apiserver's errors for bad input.

mod support;

use support::{LISTED_AT, Server, pod};
use vai_store::EventKind;

#[tokio::test]
async fn lists_in_key_order_with_selectors_and_namespaces() {
    let s = Server::start().await;
    let all = s.get("/api/v1/pods").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.names(), ["a", "b", "c", "d", "e", "f", "g"]);
    let list = all.json();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["metadata"]["resourceVersion"], LISTED_AT.to_string());
    let ns1 = s.get("/api/v1/namespaces/ns2/pods").await;
    assert_eq!(ns1.names(), ["f", "g"]);
    let web = s.get("/api/v1/pods?labelSelector=app%3Dweb").await;
    assert_eq!(web.names(), ["a", "b", "d", "f"]);
    let running = s
        .get("/api/v1/namespaces/ns1/pods?fieldSelector=status.phase%3DRunning,metadata.name!%3Dd")
        .await;
    assert_eq!(running.names(), ["a", "c"]);
}

#[tokio::test]
async fn pages_with_limit_and_continue_from_one_snapshot() {
    let s = Server::start().await;
    let first = s.get("/api/v1/pods?limit=3").await;
    assert_eq!(first.names(), ["a", "b", "c"]);
    let token = first.json()["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    // A change after the first page is not in the later pages.
    s.event(EventKind::Deleted, pod("ns1", "d", 200, "web", "Running"))
        .await;
    let second = s
        .get(&format!("/api/v1/pods?limit=3&continue={token}"))
        .await;
    assert_eq!(second.names(), ["d", "e", "f"]);
    assert_eq!(
        second.json()["metadata"]["resourceVersion"],
        first.json()["metadata"]["resourceVersion"]
    );
    let now = s.get("/api/v1/pods").await;
    assert_eq!(now.names(), ["a", "b", "c", "e", "f", "g"]);
}

#[tokio::test]
async fn gets_one_object_or_a_not_found_status() {
    let s = Server::start().await;
    let a = s.get("/api/v1/namespaces/ns1/pods/a").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["metadata"]["name"], "a");
    assert_eq!(a.json()["kind"], "Pod");
    let message = s
        .get("/api/v1/namespaces/ns1/pods/zz")
        .await
        .status_error(404, "NotFound");
    assert_eq!(message, "pods \"zz\" not found");
    // In another namespace, the same name is another object.
    s.get("/api/v1/namespaces/ns2/pods/a")
        .await
        .status_error(404, "NotFound");
}

#[tokio::test]
async fn a_get_waits_for_a_resource_version_the_cache_has_not_reached() {
    let s = Server::start().await;
    // Not reached within the wait: 504 with Retry-After, as the apiserver answers.
    let newer = LISTED_AT + 50;
    let late = s
        .get(&format!(
            "/api/v1/namespaces/ns1/pods/a?resourceVersion={newer}"
        ))
        .await;
    late.status_error(504, "Timeout");
    assert_eq!(late.headers["retry-after"], "1");
    // Reached while waiting: the newer object.
    let waiting = {
        let router = s.router.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let request = axum::http::Request::get(format!(
                "/api/v1/namespaces/ns1/pods/a?resourceVersion={newer}"
            ))
            .body(axum::body::Body::empty())
            .unwrap();
            router.oneshot(request).await.unwrap()
        })
    };
    tokio::task::yield_now().await;
    s.event(
        EventKind::Modified,
        pod("ns1", "a", newer, "web", "Succeeded"),
    )
    .await;
    let answer = waiting.await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    let object: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(object["metadata"]["resourceVersion"], newer.to_string());
    // An older or any version: the newest, at once.
    for rv in ["0", "1", ""] {
        let a = s
            .get(&format!(
                "/api/v1/namespaces/ns1/pods/a?resourceVersion={rv}"
            ))
            .await;
        assert_eq!(
            a.json()["status"]["phase"],
            "Succeeded",
            "resourceVersion={rv}"
        );
    }
    s.get("/api/v1/namespaces/ns1/pods/a?resourceVersion=abc")
        .await
        .status_error(400, "BadRequest");
}

#[tokio::test]
async fn bad_list_parameters_get_the_apiservers_errors() {
    let s = Server::start().await;
    for (query, code, reason) in [
        ("labelSelector=app%20in%20(", 400, "BadRequest"),
        ("labelSelector=%3D%3D%3D", 400, "BadRequest"),
        ("fieldSelector=metadata.name", 400, "BadRequest"),
        ("limit=ten", 400, "BadRequest"),
        ("continue=not-a-token", 400, "BadRequest"),
        ("resourceVersion=abc", 400, "BadRequest"),
        (
            "resourceVersionMatch=Sometimes&resourceVersion=5",
            422,
            "Invalid",
        ),
        ("resourceVersionMatch=Exact", 422, "Invalid"),
        (
            "resourceVersionMatch=Exact&resourceVersion=0",
            422,
            "Invalid",
        ),
    ] {
        let answer = s.get(&format!("/api/v1/pods?{query}")).await;
        assert_eq!(answer.status.as_u16(), code, "{query}: {}", answer.json());
        answer.status_error(code, reason);
    }
    // Booleans as the apiserver converts them (checked against it): any value but `false` (any
    // case) and `0` is true, so `watch=maybe` is a watch.
    let watched = s.get("/api/v1/pods?watch=maybe&timeoutSeconds=1").await;
    assert_eq!(watched.status, 200);
    assert!(
        String::from_utf8_lossy(&watched.body).contains(r#""type":"ADDED""#),
        "a watch"
    );
    assert_eq!(s.get("/api/v1/pods?watch=FALSE").await.names().len(), 7);
    // Read as the apiserver reads them: a negative limit is none, and includeObject matters
    // (and is checked) only for tables.
    assert_eq!(s.get("/api/v1/pods?limit=-1").await.names().len(), 7);
    assert_eq!(s.get("/api/v1/pods?includeObject=All").await.status, 200);
    s.get("/api/v1/pods?resourceVersion=abc&resourceVersionMatch=Sometimes")
        .await
        .status_error(422, "Invalid");
    // A continue token with a resource version.
    let first = s.get("/api/v1/pods?limit=2").await;
    let token = first.json()["metadata"]["continue"]
        .as_str()
        .unwrap()
        .to_string();
    s.get(&format!(
        "/api/v1/pods?limit=2&continue={token}&resourceVersion=5"
    ))
    .await
    .status_error(422, "Invalid");
}

#[tokio::test]
async fn an_exact_list_reads_history_or_answers_gone() {
    let s = Server::start().await;
    s.event(EventKind::Deleted, pod("ns1", "a", 150, "web", "Running"))
        .await;
    let now = s.get("/api/v1/pods").await;
    assert!(!now.names().contains(&"a".to_string()));
    let then = s
        .get(&format!(
            "/api/v1/pods?resourceVersion={LISTED_AT}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(then.status, 200, "{}", then.json());
    assert!(then.names().contains(&"a".to_string()));
    s.get("/api/v1/pods?resourceVersion=3&resourceVersionMatch=Exact")
        .await
        .status_error(410, "Expired");
}

#[tokio::test]
async fn watches_replay_history_then_follow_live_events() {
    let s = Server::start().await;
    s.event(EventKind::Modified, pod("ns1", "b", 110, "web", "Running"))
        .await;
    let (status, mut lines) = s
        .stream(&format!(
            "/api/v1/namespaces/ns1/pods?watch=true&resourceVersion={LISTED_AT}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines.next_event().await,
        Some(("MODIFIED".into(), "b".into()))
    );
    // ns2's pod, committed first, is not for this watch.
    s.event(EventKind::Added, pod("ns2", "h2", 120, "web", "Running"))
        .await;
    s.event(EventKind::Added, pod("ns1", "h", 121, "web", "Running"))
        .await;
    assert_eq!(lines.next_event().await, Some(("ADDED".into(), "h".into())));
}

#[tokio::test]
async fn a_watch_from_unset_version_starts_with_the_current_state() {
    let s = Server::start().await;
    let (_, mut lines) = s.stream("/api/v1/namespaces/ns2/pods?watch=1").await;
    assert_eq!(lines.next_event().await, Some(("ADDED".into(), "f".into())));
    assert_eq!(lines.next_event().await, Some(("ADDED".into(), "g".into())));
    s.event(EventKind::Deleted, pod("ns2", "f", 130, "web", "Running"))
        .await;
    assert_eq!(
        lines.next_event().await,
        Some(("DELETED".into(), "f".into()))
    );
}

#[tokio::test]
async fn a_label_selected_watch_sees_entries_as_added_and_exits_as_deleted() {
    let s = Server::start().await;
    let (_, mut lines) = s
        .stream(&format!(
            "/api/v1/namespaces/ns1/pods?watch=true&labelSelector=app%3Ddb&resourceVersion={LISTED_AT}"
        ))
        .await;
    // `a` joins the selection, `c` leaves it: ADDED and DELETED, not MODIFIED.
    s.event(EventKind::Modified, pod("ns1", "a", 140, "db", "Running"))
        .await;
    s.event(EventKind::Modified, pod("ns1", "c", 141, "web", "Running"))
        .await;
    s.event(EventKind::Modified, pod("ns1", "a", 142, "db", "Failed"))
        .await;
    assert_eq!(lines.next_event().await, Some(("ADDED".into(), "a".into())));
    assert_eq!(
        lines.next_event().await,
        Some(("DELETED".into(), "c".into()))
    );
    assert_eq!(
        lines.next_event().await,
        Some(("MODIFIED".into(), "a".into()))
    );
}

#[tokio::test]
async fn a_watch_from_before_history_gets_an_error_event_with_410() {
    let s = Server::start().await;
    let (status, mut lines) = s.stream("/api/v1/pods?watch=true&resourceVersion=3").await;
    assert_eq!(status, 200);
    let line = lines.next().await.expect("an event");
    assert_eq!(line["type"], "ERROR", "{line}");
    assert_eq!(line["object"]["kind"], "Status");
    assert_eq!(line["object"]["code"], 410);
    assert_eq!(line["object"]["reason"], "Expired");
}

#[tokio::test]
async fn streaming_lists_end_their_initial_events_with_an_annotated_bookmark() {
    let s = Server::start().await;
    s.get("/api/v1/pods?watch=true&sendInitialEvents=true")
        .await
        .status_error(422, "Invalid");
    s.get("/api/v1/pods?watch=true&resourceVersionMatch=NotOlderThan")
        .await
        .status_error(422, "Invalid");
    s.get("/api/v1/pods?watch=true&timeoutSeconds=soon")
        .await
        .status_error(400, "BadRequest");
    let (_, mut lines) = s
        .stream("/api/v1/namespaces/ns2/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
        .await;
    assert_eq!(lines.next_event().await, Some(("ADDED".into(), "f".into())));
    assert_eq!(lines.next_event().await, Some(("ADDED".into(), "g".into())));
    let bookmark = lines.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(bookmark["object"]["kind"], "Pod");
}

#[tokio::test]
async fn a_watch_ends_at_its_timeout() {
    let s = Server::start().await;
    let (_, mut lines) = s
        .stream(&format!(
            "/api/v1/pods?watch=true&timeoutSeconds=1&resourceVersion={LISTED_AT}"
        ))
        .await;
    assert_eq!(lines.next().await, None);
}

#[tokio::test]
async fn negotiates_metadata_and_refuses_media_types_it_cannot_serve() {
    let s = Server::start().await;
    let metadata = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let list = s.get_as("/api/v1/namespaces/ns2/pods", metadata).await;
    assert_eq!(list.json()["kind"], "PartialObjectMetadataList");
    assert_eq!(list.json()["items"][0]["kind"], "PartialObjectMetadata");
    assert!(list.json()["items"][0].get("spec").is_none());
    // The list form for one object: the apiserver refuses it.
    s.get_as("/api/v1/namespaces/ns2/pods/f", metadata)
        .await
        .status_error(406, "NotAcceptable");
    let one = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let f = s.get_as("/api/v1/namespaces/ns2/pods/f", one).await;
    assert_eq!(f.json()["kind"], "PartialObjectMetadata");
    for refused in [
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
        "text/html",
    ] {
        s.get_as("/api/v1/pods", refused)
            .await
            .status_error(406, "NotAcceptable");
    }
    // An empty Accept takes anything: JSON.
    assert_eq!(s.get_as("/api/v1/pods", "").await.status, 200);
}

#[tokio::test]
async fn answers_say_the_data_may_be_stale_and_when_upstream_last_answered() {
    let s = Server::start().await;
    let answer = s.get("/api/v1/pods").await;
    assert_eq!(answer.headers["x-vai-state"], "stale");
    assert!(answer.headers.contains_key("x-vai-stale-since"));
    let warning = answer.headers["warning"].to_str().unwrap();
    assert!(
        warning.starts_with("299 - \"vai: data may be stale since"),
        "{warning}"
    );
    // The store recorded when sync last heard from upstream (its list): that is the last contact.
    let state = s.store.resource_state(support::PODS).unwrap().unwrap();
    assert!(state.last_contact_ms.is_some());
    assert!(
        answer.headers.contains_key("x-vai-last-contact"),
        "{:?}",
        answer.headers
    );
}

#[tokio::test]
async fn a_type_never_synced_offline_is_unavailable_not_empty() {
    let s = Server::start().await;
    let answer = s.get("/api/v1/configmaps").await;
    let message = answer.status_error(503, "ServiceUnavailable");
    assert!(message.contains("upstream is unreachable"), "{message}");
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn writes_and_unknown_paths_offline_get_a_status() {
    let s = Server::start().await;
    let post = axum::http::Request::post("/api/v1/namespaces/ns1/pods")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(pod("ns1", "z", 1, "x", "Running")))
        .unwrap();
    s.send(post).await.status_error(503, "ServiceUnavailable");
    s.get("/no/such/path")
        .await
        .status_error(503, "ServiceUnavailable");
}

#[tokio::test]
async fn the_query_api_pages_sorts_and_counts() {
    let s = Server::start().await;
    let page = s
        .get("/api/v1/pods?filter=metadata.labels[app]%3Dweb&sort=-metadata.name&pagesize=2&page=1&summary=status.phase")
        .await;
    assert_eq!(page.status, 200, "{}", page.json());
    assert_eq!(page.names(), ["f", "d"]);
    let body = page.json();
    assert_eq!(body["total"], 4);
    assert_eq!(body["pages"], 2);
    assert_eq!(body["summary"]["status.phase"]["Running"], 3);
    s.get("/api/v1/pods?filter=spec.unknown%3Dx")
        .await
        .status_error(400, "BadRequest");
    s.get("/api/v1/pods?watch=true&pagesize=2")
        .await
        .status_error(400, "BadRequest");
}

#[tokio::test]
async fn a_second_router_on_one_registry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = vai_store::Store::open(&dir.path().join("x.db"), Default::default()).unwrap();
    let syncer = vai_sync::Syncer::detached(store, vec![support::pods_type()]).unwrap();
    let registry = prometheus::Registry::new();
    let config = vai_server::ServerConfig::default();
    assert!(vai_server::router(syncer.clone(), config.clone(), registry.clone()).is_ok());
    assert!(vai_server::router(syncer, config, registry).is_err());
}

#[tokio::test]
async fn filtered_and_field_selected_watches_follow_live_events_in_and_out() {
    let s = Server::start().await;
    let (_, mut filtered) = s
        .stream(&format!(
            "/api/v1/namespaces/ns1/pods?watch=true&filter=metadata.labels[app]%3Ddb&resourceVersion={LISTED_AT}"
        ))
        .await;
    let (_, mut running) = s
        .stream(&format!(
            "/api/v1/namespaces/ns1/pods?watch=true&fieldSelector=status.phase%3DRunning&resourceVersion={LISTED_AT}"
        ))
        .await;
    // `b` becomes a running db pod, `c` (a running db pod) fails, `d` (running web) is relabelled.
    s.event(EventKind::Modified, pod("ns1", "b", 160, "db", "Running"))
        .await;
    s.event(EventKind::Modified, pod("ns1", "c", 161, "db", "Failed"))
        .await;
    s.event(EventKind::Modified, pod("ns1", "d", 162, "db", "Running"))
        .await;
    s.event(EventKind::Modified, pod("ns1", "e", 163, "web", "Failed"))
        .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(filtered.next_event().await.unwrap());
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_string(), "b".to_string()),
            ("MODIFIED".into(), "c".into()),
            ("ADDED".into(), "d".into()),
            ("DELETED".into(), "e".into()),
        ]
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(running.next_event().await.unwrap());
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_string(), "b".to_string()),
            ("DELETED".into(), "c".into()),
            ("MODIFIED".into(), "d".into()),
        ]
    );
}
