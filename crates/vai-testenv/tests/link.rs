//! The emulated link's levers do what the tests of vai on a bad link rely on: a delay each way,
//! a stall that hangs requests without refusing them, a cut that refuses them, a restore, and
//! byte counts.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use vai_testenv::TestEnv;

/// Fetches `path` through the link on a client (a connection) of its own; its size.
async fn api_get(link: &vai_testenv::Link, path: &str) -> usize {
    let client = link.client(None).await.unwrap();
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client.request_text(request).await.unwrap().len()
}

#[tokio::test]
async fn the_link_delays_stalls_cuts_and_counts_what_it_carries() {
    let env = TestEnv::start().await.unwrap();
    let link = env.link().await.unwrap();
    let api: Api<Namespace> = Api::all(link.client(Some(Duration::from_secs(2))).await.unwrap());
    let params = ListParams::default();
    let list = || api.list(&params);

    let before = link.bytes();
    let namespaces = list().await.unwrap();
    assert!(
        !namespaces.items.is_empty(),
        "the list came through the link"
    );
    let after = link.bytes();
    assert!(
        after.up > before.up && after.down > before.down && after.connections >= 1,
        "the link counted the request, its answer and the connection: {before:?} -> {after:?}"
    );

    // A delay each way: a request on the open connection takes at least a round trip.
    link.latency(Duration::from_millis(150), Duration::ZERO)
        .await
        .unwrap();
    let started = Instant::now();
    list().await.unwrap();
    let slow = started.elapsed();
    assert!(
        slow >= Duration::from_millis(300),
        "a round trip takes 2 x 150 ms, took {slow:?}"
    );
    link.restore().await.unwrap();

    // A cap on the link, shared by its connections: two clients (two connections) each
    // fetching a 1.6 MB document at 1 MB/s take at least 3.2 s together (1.6 s if each
    // connection had the cap to itself).
    link.bandwidth(1_000);
    let document = "/openapi/v3/api/v1";
    let size = api_get(link, document).await;
    assert!(size > 1_000_000, "the document is large: {size} bytes");
    let started = Instant::now();
    let (a, b) = tokio::join!(api_get(link, document), api_get(link, document));
    let capped = started.elapsed();
    let floor = Duration::from_secs_f64((a + b) as f64 / 1_000_000.0);
    assert!(
        capped >= floor.mul_f64(0.9),
        "{} bytes over a 1 MB/s link took {capped:?} (at least {floor:?})",
        a + b
    );
    link.restore().await.unwrap();

    // A stall: the request is neither answered nor refused; it times out.
    link.stall().await.unwrap();
    let started = Instant::now();
    let stalled = list().await;
    let waited = started.elapsed();
    assert!(stalled.is_err(), "a stalled link answered: {stalled:?}");
    assert!(
        waited >= Duration::from_millis(1500),
        "the request should wait for its 2 s timeout, failed after {waited:?}: {stalled:?}"
    );
    link.restore().await.unwrap();
    list().await.unwrap();

    // A cut: new connections are refused at once, not waited on.
    link.cut().await.unwrap();
    let fresh: Api<Namespace> = Api::all(link.client(Some(Duration::from_secs(30))).await.unwrap());
    let started = Instant::now();
    let cut = fresh.list(&ListParams::default()).await;
    assert!(cut.is_err(), "a cut link answered: {cut:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a refused connection fails well before the 30 s timeout: {:?}",
        started.elapsed()
    );
    link.up().await.unwrap();
    fresh.list(&ListParams::default()).await.unwrap();
}
