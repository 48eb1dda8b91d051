//! Crash test: a child process writes batches as fast as it can and is killed (SIGKILL) at
//! varying points; after every kill the file reopens, passes SQLite's integrity check, holds
//! every batch the child saw committed, and its stored resource version never runs ahead of
//! its objects. The child is this same test binary, re-run in writer mode.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use vai_store::{Batch, EventKind, ListRequest, Store, StoreConfig};

const PODS: &str = "/v1/pods";
const CHILD_ENV: &str = "VAI_STORE_CRASH_CHILD_DB";
const PER_BATCH: u64 = 20;
const NAMES: u64 = 300;

fn pod(rv: u64) -> Vec<u8> {
    let name = format!("p{}", rv % NAMES);
    format!(r#"{{"kind":"Pod","metadata":{{"name":"{name}","namespace":"ns","resourceVersion":"{rv}"}},"spec":{{"padding":"{}"}}}}"#, "x".repeat(512))
        .into_bytes()
}

/// The objects the writer's deterministic sequence has produced by resource version `rv`.
fn expected_at(rv: u64) -> BTreeMap<String, u64> {
    let mut state = BTreeMap::new();
    for v in 1..=rv {
        state.insert(format!("p{}", v % NAMES), v);
    }
    state
}

/// Writer mode: continue the sequence from what is stored, printing each committed rv.
#[test]
#[ignore = "the child process of killed_writers_leave_a_consistent_file"]
fn crash_writer_child() {
    let path = std::env::var_os(CHILD_ENV).expect("run by killed_writers_leave_a_consistent_file");
    let store = Store::open(path.as_ref(), StoreConfig::default()).unwrap();
    let mut rv = store
        .resource_state(PODS)
        .unwrap()
        .map_or(0, |s| s.last_resource_version);
    loop {
        let mut batch = Batch::new(PODS);
        for _ in 0..PER_BATCH {
            rv += 1;
            batch = batch.event(EventKind::Modified, pod(rv));
        }
        store.write_blocking(batch).unwrap();
        println!("{rv}");
    }
}

#[test]
fn killed_writers_leave_a_consistent_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vai.db");
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acknowledged = 0;
        // Kill after a varying number of commits, mid-stream.
        for line in lines.take(5 + round as usize * 37) {
            if let Ok(rv) = line.unwrap().trim().parse::<u64>() {
                acknowledged = rv;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let store = Store::open(&path, StoreConfig::default()).unwrap();
        store.check_integrity().unwrap();
        let stored_rv = store
            .resource_state(PODS)
            .unwrap()
            .unwrap()
            .last_resource_version;
        assert!(
            stored_rv >= acknowledged,
            "round {round}: lost acknowledged commits ({stored_rv} < {acknowledged})"
        );
        assert_eq!(
            stored_rv % PER_BATCH,
            0,
            "round {round}: a batch was applied in part"
        );
        let mut stored = BTreeMap::new();
        store
            .list(PODS, &ListRequest::default(), |_, name, body| {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                let rv = v["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                stored.insert(name.to_string(), rv);
                Ok(())
            })
            .unwrap();
        assert_eq!(
            stored,
            expected_at(stored_rv),
            "round {round}: objects disagree with rv {stored_rv}"
        );
        store.close();
    }
}
