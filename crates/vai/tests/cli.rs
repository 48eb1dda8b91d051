//! The `vai` command line: one-line errors with a hint, and `vai status`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Vai, eventually};
use vai_testenv::TestEnv;

/// Runs vai; returns (success, stdout, stderr).
fn vai(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vai"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs vai with `env` set (and `KUBECONFIG` and `HOME` as given), expecting it to fail;
/// returns its stderr.
fn fails_with_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vai"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "vai {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_empty_kubeconfig_variable_counts_as_unset_and_causes_are_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().display().to_string();
    let db = dir.path().join("vai.db").display().to_string();
    let err = fails_with_env(
        &["serve", "--db", &db],
        &[("KUBECONFIG", ""), ("HOME", &home)],
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("a value is required"), "{err}");
    assert!(err.starts_with("vai: no kubeconfig found"), "{err}");
    assert!(err.contains("hint: pass --kubeconfig"), "{err}");
    // Each cause once: a cause that repeats would say "No such file" (or its kin) twice.
    for words in ["No such file", "os error", "not found"] {
        assert!(err.matches(words).count() <= 1, "{words:?} repeated: {err}");
    }
}

#[test]
fn status_of_a_missing_database_says_so_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing.db").display().to_string();
    let err = fails(&["status", "--db", &db]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("vai: no database at {db}")),
        "{err}"
    );
    assert!(err.contains("hint: `vai serve` creates it"), "{err}");
    assert!(!std::path::Path::new(&db).exists(), "nothing was created");
}

#[test]
fn encryption_key_files_that_are_public_or_wrong_are_refused_in_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = |name: &str, secret: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
                 resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      \
                 keys: [{{name: k1, secret: {secret}}}]\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    };
    let right = key_file(
        "k1.yaml",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        0o600,
    );
    let wrong = key_file(
        "wrong.yaml",
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
        0o600,
    );
    let public = key_file(
        "public.yaml",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        0o644,
    );
    let db = dir.path().join("vai.db");
    let db_arg = db.display().to_string();

    // Read before anything else is tried (no cluster is needed to be refused).
    let err = fails(&[
        "serve",
        "--db",
        &db_arg,
        "--encryption-provider-config",
        &public,
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "vai: {public}: the key file is readable by others (mode 0644)"
        )),
        "{err}"
    );
    assert!(err.contains("hint: chmod 600"), "{err}");
    assert!(!db.exists(), "nothing was created");

    let store = vai_store::Store::open(
        &db,
        vai_store::StoreConfig {
            encryption: Some(
                vai_store::Encryption::from_file(std::path::Path::new(&right)).unwrap(),
            ),
            ..Default::default()
        },
    )
    .unwrap();
    let secret = br#"{"kind":"Secret","metadata":{"name":"s","namespace":"ns","resourceVersion":"5"},"data":{"k":"dmFsdWU="}}"#;
    store
        .write_blocking(vai_store::Batch::new("/v1/secrets").replace(5, vec![secret.to_vec()]))
        .unwrap();
    store.close();
    drop(store);
    for (args, says) in [
        (
            vec![],
            "is encrypted with key `k1` (hint: pass --encryption-provider-config",
        ),
        (
            vec!["--encryption-provider-config", &wrong],
            "key `k1` does not match",
        ),
    ] {
        let err = fails(&[&["status", "--db", &db_arg][..], &args].concat());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
    let (ok, out, err) = vai(&[
        "status",
        "--db",
        &db_arg,
        "--encryption-provider-config",
        &right,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("/v1/secrets"), "{out}");
}

/// Runs vai expecting it to fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let (ok, _, err) = vai(args);
    assert!(!ok, "vai {args:?} should fail");
    err
}

fn kubeconfig_for(dir: &std::path::Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{token: t}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn startup_errors_are_one_line_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), "http://127.0.0.1:1");
    let db = dir.path().join("vai.db").display().to_string();

    let err = fails(&[
        "serve",
        "--kubeconfig",
        &kubeconfig,
        "--db",
        &db,
        "--listen",
        "0.0.0.0:8001",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("vai: refusing to listen on 0.0.0.0:8001"),
        "{err}"
    );
    assert!(
        err.contains("hint: pass --authorization-mode=RBAC, with --tls-cert-file and --tls-private-key-file or vai's own certificate, or --listen 127.0.0.1:8001"),
        "{err}"
    );
    // TLS alone is not enough off loopback.
    let err = fails(&[
        "serve",
        "--kubeconfig",
        &kubeconfig,
        "--db",
        &db,
        "--listen",
        "0.0.0.0:8001",
        "--tls-cert-file",
        "c.pem",
        "--tls-private-key-file",
        "k.pem",
    ]);
    assert!(
        err.starts_with("vai: refusing to listen on 0.0.0.0:8001 without authorization"),
        "{err}"
    );

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "{{{ not yaml").unwrap();
    let err = fails(&[
        "serve",
        "--kubeconfig",
        garbage.to_str().unwrap(),
        "--db",
        &db,
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("vai: reading kubeconfig"), "{err}");

    let err = fails(&[
        "serve",
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "nope",
        "--db",
        &db,
    ]);
    assert!(err.contains("hint: pass --context"), "{err}");

    // A malformed --index-field is refused before anything is opened.
    for (bad, says) in [
        ("spec.serviceAccountName", "expected <resource>=<path>"),
        ("pods=spec..x", "empty key"),
        ("pods=metadata.name", "always queryable"),
    ] {
        let err = fails(&[
            "serve",
            "--kubeconfig",
            &kubeconfig,
            "--db",
            &db,
            "--index-field",
            bad,
        ]);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("vai: --index-field "), "{err}");
        assert!(
            err.contains(says) && err.contains("hint: --index-field pods=spec.serviceAccountName"),
            "{err}"
        );
    }
    assert!(!dir.path().join("vai.db").exists(), "nothing was created");

    // Nothing listens on port 1, and the database is new: nothing to serve.
    let err = fails(&[
        "serve",
        "--kubeconfig",
        &kubeconfig,
        "--db",
        &db,
        "--listen",
        "127.0.0.1:0",
        "--upstream-timeout",
        "1",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot reach the cluster and the database holds no data yet"),
        "{err}"
    );

    let err = fails(&[
        "status",
        "--db",
        dir.path().join("absent.db").to_str().unwrap(),
    ]);
    assert!(
        err.starts_with("vai: ") && err.contains("absent.db"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("foreign.db"),
        b"not a database at all, just text",
    )
    .unwrap();
    let err = fails(&[
        "status",
        "--db",
        dir.path().join("foreign.db").to_str().unwrap(),
    ]);
    assert!(err.contains("is not a vai database"), "{err}");
}

#[tokio::test]
async fn a_database_in_use_is_refused_and_status_reads_it_alongside() {
    let env = TestEnv::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let running = Vai::start(env, dir.path(), &["--resources", "configmaps,namespaces"]).await;
    let db = running.db.display().to_string();
    let kubeconfig = env.kubeconfig_path().display().to_string();
    let err = fails(&[
        "serve",
        "--kubeconfig",
        &kubeconfig,
        "--db",
        &db,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "is in use by another vai process (hint: stop it, or pass a different --db or --store)"
        ),
        "{err}"
    );

    let table = eventually(
        "vai status shows both types live",
        Duration::from_secs(10),
        async || {
            let (ok, out, _) = vai(&["status", "--db", &db]);
            (ok && out.lines().filter(|l| l.contains(" live ")).count() == 2).then_some(out)
        },
    )
    .await;
    assert!(table.starts_with("RESOURCE"), "{table}");
    let configmaps = table
        .lines()
        .find(|l| l.starts_with("/v1/configmaps "))
        .unwrap();
    let objects: u64 = configmaps
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(objects >= 1, "{configmaps}");
    // The bodies at rest and their ratio to the JSON (the last columns; a live type has no
    // error after them). A few ConfigMaps get no dictionary: stored as they are, 1.00.
    let cells: Vec<&str> = configmaps.split_whitespace().rev().take(3).collect();
    let ratio: f64 = cells[0].parse().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{configmaps}");
    let stored: f64 = cells[2].parse().unwrap();
    assert!(
        stored > 0.0 && ["B", "KB", "MB"].contains(&cells[1]),
        "{configmaps}"
    );
}
