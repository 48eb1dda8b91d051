//! What encrypting Secrets at rest costs (`StoreConfig::encryption`): storing a list of
//! Secrets, a get by name, and a list of all, with and without the key file. Each Secret's
//! body is ~2.5 KB (a TLS secret's size). Run:
//!
//! ```text
//! cargo bench -p vai-store --bench secrets
//! VAI_BENCH_PODS=50000 cargo bench -p vai-store --bench secrets   # that many Secrets
//! ```

use std::time::{Duration, Instant};

use vai_store::{Batch, Encryption, ListRequest, Store, StoreConfig};

use vai_testenv::measure::{bench_pods, print_row};

const SECRETS: &str = "/v1/secrets";

fn secret(k: u64) -> Vec<u8> {
    let blob = "QUJD".repeat(600);
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": format!("s-{k:06}"), "namespace": format!("team-{:02}", k % 50),
                     "resourceVersion": "1", "labels": {"app": format!("app-{}", k % 100)}},
        "data": {"tls.crt": blob, "tls.key": format!("a2V5LXtrfQ=={k}")},
    }))
    .unwrap()
}

fn encryption() -> Encryption {
    Encryption::parse(
        r#"{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration",
            "resources":[{"resources":["secrets"],"providers":[{"aesgcm":{"keys":[
              {"name":"k1","secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}}]}]}"#,
    )
    .unwrap()
}

fn run(n: u64, encrypted: bool) {
    let label = if encrypted { "encrypted" } else { "plain" };
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        encryption: encrypted.then(encryption),
        ..StoreConfig::default()
    };
    let store = Store::open(&dir.path().join("bench.db"), config).unwrap();
    let secrets: Vec<Vec<u8>> = (0..n).map(secret).collect();
    let started = Instant::now();
    store
        .write_blocking(Batch::new(SECRETS).replace(1, secrets))
        .unwrap();
    let stored = started.elapsed();
    println!(
        "| {label}: store {n} secrets | {stored:.2?} ({:.2?} each) | | |",
        stored / n as u32
    );
    let mut samples: Vec<Duration> = (0..20_000u64)
        .map(|i| {
            let k = (i * 7919) % n;
            let t = Instant::now();
            let body = store
                .get(
                    SECRETS,
                    &format!("team-{:02}", k % 50),
                    &format!("s-{k:06}"),
                    None,
                )
                .unwrap()
                .unwrap();
            assert!(body.len() > 2000);
            t.elapsed()
        })
        .collect();
    print_row(&format!("{label}: get by name"), &mut samples, "");
    let mut samples: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut bytes = 0;
            store
                .list(SECRETS, &ListRequest::default(), |_, _, body| {
                    bytes += body.len();
                    Ok(())
                })
                .unwrap();
            assert!(bytes > 0);
            t.elapsed()
        })
        .collect();
    print_row(&format!("{label}: list all {n}"), &mut samples, "");
}

fn main() {
    let Some(n) = bench_pods(10_000) else {
        return;
    };
    println!("| measure | median | p99 | goal |\n|---|---|---|---|");
    for encrypted in [false, true, false, true] {
        run(n, encrypted);
    }
}
