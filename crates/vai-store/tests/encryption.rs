//! Secrets encrypted at rest: what the file (and its WAL) holds, what reads return, and which
//! key files are refused at open.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use vai_store::{
    Batch, Encryption, Error, EventKind, Item, ListRequest, PageRequest, Store, StoreConfig,
};

const SECRETS: &str = "/v1/secrets";
const PODS: &str = "/v1/pods";
/// The secret's value: stored base64 in the Secret's `data`, and plain in `stringData`-like
/// fields and in its table cells (as a type whose printer showed a value would).
const VALUE: &str = "correct-horse-battery-staple-7f3a";
const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret(name: &str, rv: u64, value: &str) -> Item {
    Item {
        object: serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "team-a", "resourceVersion": rv.to_string(),
                         "labels": {"app": "web"}},
            "data": {"password": b64(value)},
            "stringData": {"note": value},
        }))
        .unwrap(),
        cells: Some(serde_json::to_vec(&serde_json::json!([name, value])).unwrap()),
    }
}

fn pod(name: &str, rv: u64, value: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a", "resourceVersion": rv.to_string()},
        "spec": {"env": value},
    }))
    .unwrap()
}

/// A key file (mode 0600) encrypting secrets with `keys` (name, secret), first one writing;
/// `identity_first` puts the identity provider first (encryption off, keys only decrypt).
fn key_file(dir: &Path, keys: &[(&str, &str)], identity_first: bool) -> PathBuf {
    let keys: Vec<String> = keys
        .iter()
        .map(|(n, s)| format!("{{name: {n}, secret: \"{s}\"}}"))
        .collect();
    let aesgcm = format!("{{aesgcm: {{keys: [{}]}}}}", keys.join(", "));
    let providers = if identity_first {
        format!("[{{identity: {{}}}}, {aesgcm}]")
    } else {
        format!("[{aesgcm}, {{identity: {{}}}}]")
    };
    let path = dir.join(format!("enc-{}.yaml", next_number()));
    std::fs::write(
        &path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
             resources:\n  - resources: [secrets]\n    providers: {providers}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A distinct number per call (file names).
fn next_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn config(key_file: Option<&Path>) -> StoreConfig {
    StoreConfig {
        encryption: key_file.map(|p| Encryption::from_file(p).unwrap()),
        ..StoreConfig::default()
    }
}

/// Every file of the database (the file, its WAL, its shared memory) and whether `needle`
/// occurs in it.
fn found_in(db: &Path, needle: &str) -> Vec<String> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            let bytes = std::fs::read(PathBuf::from(&path)).ok()?;
            bytes
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
                .then(|| format!("db{suffix}"))
        })
        .collect()
}

fn wal_len(db: &Path) -> u64 {
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    std::fs::metadata(PathBuf::from(path)).map_or(0, |m| m.len())
}

/// Writes two secrets (the first also modified and then deleted: history and a tombstone)
/// and a pod holding the same value (stored plain: the scan's control).
fn write_data(store: &Store) {
    store
        .write_blocking(
            Batch::new(SECRETS)
                .replace(10, vec![secret("db", 10, VALUE), secret("api", 10, VALUE)]),
        )
        .unwrap();
    store
        .write_blocking(
            Batch::new(SECRETS)
                .event(EventKind::Modified, secret("db", 11, VALUE))
                .event(EventKind::Deleted, secret("api", 12, VALUE)),
        )
        .unwrap();
    store
        .write_blocking(Batch::new(PODS).replace(20, vec![pod("web", 20, VALUE)]))
        .unwrap();
}

fn assert_reads_are_plain(store: &Store) {
    let got = store
        .get_row(SECRETS, "team-a", "db", None)
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&got.object).unwrap();
    assert_eq!(json["data"]["password"], b64(VALUE));
    assert!(
        String::from_utf8(got.cells.unwrap())
            .unwrap()
            .contains(VALUE)
    );
    let mut listed = Vec::new();
    store
        .list(SECRETS, &ListRequest::default(), |_, name, body| {
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
            listed.push(name.to_string());
            Ok(())
        })
        .unwrap();
    assert_eq!(listed, ["db"]);
    let mut paged = 0;
    store
        .page(SECRETS, &PageRequest::default(), |_, _, body| {
            assert!(std::str::from_utf8(body).unwrap().contains(&b64(VALUE)));
            paged += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(paged, 1);
    // History: an older version, and the replay of every event with its body.
    let old = store
        .get(SECRETS, "team-a", "db", Some(10))
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&old).unwrap().contains(&b64(VALUE)));
    let events = store.events_since(SECRETS, 10).unwrap();
    assert_eq!(events.len(), 2);
    for e in events {
        assert!(std::str::from_utf8(&e.body).unwrap().contains(VALUE));
    }
}

#[test]
fn no_secret_value_is_in_the_file_or_its_wal_and_reads_return_it_plain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let keys = key_file(dir.path(), &[("k1", K1)], false);
    let store = Store::open(&db, config(Some(&keys))).unwrap();
    write_data(&store);
    // Before any checkpoint has run (the checkpointer waits up to a second), the WAL holds
    // every page written.
    assert!(wal_len(&db) > 0);
    assert!(
        found_in(&db, VALUE).contains(&"db-wal".to_string()),
        "the control: the pod, not encrypted, holds the value as is, and the WAL has it"
    );
    // Only secrets hold its base64 form (their `data`).
    assert_eq!(
        found_in(&db, &b64(VALUE)),
        Vec::<String>::new(),
        "base64 form"
    );
    // Names, namespaces and labels stay readable (the indexes use them).
    assert!(!found_in(&db, "team-a").is_empty());
    assert_reads_are_plain(&store);
    store.close();
    drop(store);
    assert_eq!(found_in(&db, &b64(VALUE)), Vec::<String>::new());

    // Reopened with the same key file: the same answers.
    let store = Store::open(&db, config(Some(&keys))).unwrap();
    assert_reads_are_plain(&store);
    store.close();
    drop(store);
    let reader = Store::open_read_only_with(&db, config(Some(&keys))).unwrap();
    assert_reads_are_plain(&reader);
}

#[test]
fn without_pods_holding_it_the_value_is_nowhere_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let keys = key_file(dir.path(), &[("k1", K1)], false);
    let store = Store::open(&db, config(Some(&keys))).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut watch = store.subscribe();
    // A first list, staged chunk by chunk and read back from the file to be published.
    rt.block_on(async {
        let mut relist = store.relist(SECRETS).unwrap();
        relist.push(vec![secret("db", 10, VALUE)]).await.unwrap();
        relist.finish(10).await.unwrap();
    });
    let events = watch.try_recv().unwrap();
    assert_eq!(events.len(), 1);
    assert!(
        std::str::from_utf8(&events[0].body)
            .unwrap()
            .contains(VALUE)
    );
    store
        .write_blocking(Batch::new(SECRETS).event(EventKind::Modified, secret("db", 11, VALUE)))
        .unwrap();
    let _ = watch.try_recv().unwrap();
    // A relist, compared with the stored bodies: only what differs is written.
    rt.block_on(async {
        let mut relist = store.relist(SECRETS).unwrap();
        relist
            .push(vec![secret("db", 11, VALUE), secret("new", 13, VALUE)])
            .await
            .unwrap();
        relist.finish(13).await.unwrap();
    });
    let events = watch.try_recv().unwrap();
    assert_eq!(events.len(), 1, "only the new secret differs");
    assert!(
        std::str::from_utf8(&events[0].body)
            .unwrap()
            .contains(VALUE)
    );
    assert!(wal_len(&db) > 0);
    for needle in [VALUE, &b64(VALUE), "correct-horse"] {
        assert_eq!(found_in(&db, needle), Vec::<String>::new(), "{needle}");
    }
    store.close();
    drop(store);
    for needle in [VALUE, &b64(VALUE)] {
        assert_eq!(found_in(&db, needle), Vec::<String>::new(), "{needle}");
    }
    // Looked at with SQL: every body and every cell of a secret is sealed under k1.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, sealed): (i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(substr(body, 1, 17) = CAST('vai:aesgcm:v1:k1:' AS BLOB)
                                 AND substr(cells, 1, 17) = CAST('vai:aesgcm:v1:k1:' AS BLOB))
             FROM versions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, sealed), (3, 3));
    let labels: i64 = conn
        .query_row("SELECT count(*) FROM labels WHERE key = 'app'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(labels > 0, "labels stay readable");
}

#[test]
fn a_missing_or_wrong_key_or_none_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let k1 = key_file(dir.path(), &[("k1", K1)], false);
    let store = Store::open(&db, config(Some(&k1))).unwrap();
    write_data(&store);
    store.close();
    drop(store);

    let wrong = key_file(dir.path(), &[("k1", K2)], false);
    let other = key_file(dir.path(), &[("k2", K2)], false);
    let e = Store::open(&db, config(Some(&wrong))).unwrap_err();
    let read_only = Store::open_read_only_with(&db, config(Some(&wrong))).unwrap_err();
    assert_eq!(e.to_string(), read_only.to_string());
    assert!(
        matches!(e, Error::KeyMismatch { ref key, .. } if key == "k1"),
        "{e:?}"
    );
    assert!(e.to_string().contains("key `k1` does not match"), "{e}");
    let e = Store::open(&db, config(Some(&other))).unwrap_err();
    assert!(
        matches!(e, Error::KeyMissing { ref key, .. } if key == "k1"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("encrypted with key `k1`, which the key file does not hold"),
        "{e}"
    );
    let e = Store::open(&db, StoreConfig::default()).unwrap_err();
    assert!(matches!(e, Error::Encrypted { .. }), "{e:?}");
    assert!(
        e.to_string().contains("--encryption-provider-config"),
        "{e}"
    );
    let read_only = Store::open_read_only(&db).unwrap_err();
    assert_eq!(e.to_string(), read_only.to_string());

    // A refused open changed nothing: the right key still reads everything.
    let store = Store::open(&db, config(Some(&k1))).unwrap();
    assert_reads_are_plain(&store);
}

#[test]
fn a_rotated_key_reads_the_old_rows_rewrites_them_and_can_then_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let k1 = key_file(dir.path(), &[("k1", K1)], false);
    let store = Store::open(&db, config(Some(&k1))).unwrap();
    write_data(&store);
    store.close();
    drop(store);
    assert!(!found_in(&db, "vai:aesgcm:v1:k1:").is_empty());

    // k2 first: new writes use k2, and the stored rows are rewritten under it at open.
    let rotated = key_file(dir.path(), &[("k2", K2), ("k1", K1)], false);
    let store = Store::open(&db, config(Some(&rotated))).unwrap();
    assert_reads_are_plain(&store);
    store
        .write_blocking(Batch::new(SECRETS).event(EventKind::Added, secret("later", 30, VALUE)))
        .unwrap();
    store.close();
    drop(store);
    assert_eq!(found_in(&db, "vai:aesgcm:v1:k1:"), Vec::<String>::new());
    assert!(!found_in(&db, "vai:aesgcm:v1:k2:").is_empty());

    // k1 may now leave the file.
    let k2 = key_file(dir.path(), &[("k2", K2)], false);
    let store = Store::open(&db, config(Some(&k2))).unwrap();
    for (name, rv) in [("db", Some(10)), ("db", None), ("later", None)] {
        let body = store.get(SECRETS, "team-a", name, rv).unwrap().unwrap();
        assert!(std::str::from_utf8(&body).unwrap().contains(&b64(VALUE)));
    }
}

#[test]
fn turning_encryption_on_seals_the_stored_plain_rows_and_leaves_no_plaintext_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    write_data(&store);
    store.close();
    drop(store);
    assert!(!found_in(&db, &b64(VALUE)).is_empty(), "plain before");

    let k1 = key_file(dir.path(), &[("k1", K1)], false);
    let store = Store::open(&db, config(Some(&k1))).unwrap();
    // Sealed in place, the file vacuumed and the WAL truncated: no old page keeps it.
    assert_eq!(found_in(&db, &b64(VALUE)), Vec::<String>::new());
    assert_reads_are_plain(&store);
    // A sealed body's plain size is not read: its type's footprint has none.
    let sealed = &store.footprint().unwrap()[SECRETS];
    assert!(sealed.versions > 0 && sealed.stored_bytes > 0, "{sealed:?}");
    assert_eq!((sealed.plain_bytes, sealed.ratio()), (None, None));
    store.close();
    drop(store);

    // Identity first turns encryption off: the rows are decrypted with the key, and the file
    // opens without a key file afterwards.
    let off = key_file(dir.path(), &[("k1", K1)], true);
    let store = Store::open(&db, config(Some(&off))).unwrap();
    assert_reads_are_plain(&store);
    store.close();
    drop(store);
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    assert_reads_are_plain(&store);
    assert!(!found_in(&db, &b64(VALUE)).is_empty(), "plain again");
}

#[test]
fn a_tampered_or_moved_row_is_an_error_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vai.db");
    let k1 = key_file(dir.path(), &[("k1", K1)], false);
    let store = Store::open(&db, config(Some(&k1))).unwrap();
    store
        .write_blocking(Batch::new(SECRETS).replace(
            10,
            vec![secret("a", 10, VALUE), secret("b", 10, "another value")],
        ))
        .unwrap();
    store.close();
    drop(store);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let body = |name: &str| -> Vec<u8> {
            conn.query_row("SELECT body FROM versions WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let (mut a, a_sealed) = (body("a"), body("a"));
        // a's last byte (its tag) flipped; b given a's sealed body, as is.
        *a.last_mut().unwrap() ^= 1;
        let set = "UPDATE versions SET body = ?2 WHERE name = ?1";
        conn.execute(set, rusqlite::params!["a", a]).unwrap();
        conn.execute(set, rusqlite::params!["b", a_sealed]).unwrap();
    }
    let store = Store::open(&db, config(Some(&k1))).unwrap();
    for name in ["a", "b"] {
        let e = store.get(SECRETS, "team-a", name, None).unwrap_err();
        assert!(matches!(e, Error::Undecryptable(..)), "{name}: {e:?}");
    }
    let e = store
        .list(SECRETS, &ListRequest::default(), |_, _, _| Ok(()))
        .unwrap_err();
    assert!(matches!(e, Error::Undecryptable(..)), "{e:?}");
    assert!(store.events_since(SECRETS, 0).is_err());
}
