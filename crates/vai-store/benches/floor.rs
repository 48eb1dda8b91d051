//! What SQLite itself costs for the store's schema, without vai: the floor under the `scale`
//! benchmark's ingest rows. The same generated Pods, parsed beforehand (untimed), inserted with
//! plain rusqlite statements in transactions of 1,000 into a file the store's own schema code
//! created (same tables, indexes and pragmas), three ways:
//!
//! - *schema*: a version row and its label rows (labels and indexed fields), as the writer does
//!   at the least (no lookups, no counts, no events);
//! - *schema, label rows by value only*: the same without the label table's by-version side
//!   (what one copy of each label row would cost);
//! - *bytes only*: each body into a table with no index (the cost of writing the bytes).
//!
//! ```text
//! cargo bench -p vai-store --bench floor            # 100,000 pods
//! VAI_BENCH_PODS=10000 cargo bench -p vai-store --bench floor
//! ```

use std::time::Instant;

use rusqlite::{Connection, params};
use vai_store::StoredObject;
use vai_testenv::measure::bench_pods;

const BATCH: usize = 1000;

/// The ways of inserting.
#[derive(Clone, Copy)]
enum Way {
    Schema,
    ByValueOnly,
    BytesOnly,
}

fn main() {
    let Some(n) = bench_pods(100_000) else {
        return;
    };
    let fields = vai_store::fields::builtin("/v1/pods");
    let objects: Vec<StoredObject> = vai_testenv::workload::pods(n)
        .into_iter()
        .map(|body| StoredObject::with_fields(body, false, &fields).unwrap())
        .collect();
    println!("{n} pods, inserted in transactions of {BATCH}\n");
    println!("| insert | objects/s |\n|---|---|");
    for (what, way) in [
        ("schema: version row and label rows", Way::Schema),
        ("schema, label rows by value only", Way::ByValueOnly),
        ("bytes only (no index)", Way::BytesOnly),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let conn = vai_store::bench_support::open_writer(&dir.path().join("floor.db")).unwrap();
        match way {
            Way::Schema => {}
            Way::ByValueOnly => conn
                .execute_batch(
                    "DROP TABLE labels;
                     CREATE TABLE labels (resource_id INTEGER NOT NULL, key TEXT NOT NULL,
                         value TEXT NOT NULL, version_id INTEGER NOT NULL,
                         PRIMARY KEY (resource_id, key, value, version_id)) WITHOUT ROWID;",
                )
                .unwrap(),
            Way::BytesOnly => conn
                .execute_batch("CREATE TABLE bytes (id INTEGER PRIMARY KEY, body BLOB NOT NULL);")
                .unwrap(),
        }
        let started = Instant::now();
        for (k, chunk) in objects.chunks(BATCH).enumerate() {
            insert(&conn, way, (k * BATCH) as i64, chunk);
        }
        println!(
            "| {what} | {:.0} |",
            n as f64 / started.elapsed().as_secs_f64()
        );
    }
}

fn insert(conn: &Connection, way: Way, first_seq: i64, objects: &[StoredObject]) {
    let tx = conn.unchecked_transaction().unwrap();
    let mut version = tx
        .prepare_cached(
            "INSERT INTO versions (resource_id, namespace, name, rv, rv_to, kind, seq, created, body)
             VALUES (1, ?1, ?2, ?3, NULL, 0, ?4, ?5, ?6)",
        )
        .unwrap();
    let mut label = tx
        .prepare_cached(
            "INSERT INTO labels (version_id, key, value, resource_id) VALUES (?1, ?2, ?3, 1)",
        )
        .unwrap();
    let mut bytes = match way {
        Way::BytesOnly => Some(
            tx.prepare_cached("INSERT INTO bytes (body) VALUES (?1)")
                .unwrap(),
        ),
        _ => None,
    };
    for (i, obj) in objects.iter().enumerate() {
        if let Some(bytes) = &mut bytes {
            bytes.execute([&obj.body]).unwrap();
            continue;
        }
        let seq = first_seq + i as i64;
        version
            .execute(params![
                obj.namespace,
                obj.name,
                obj.resource_version as i64,
                seq,
                obj.created,
                obj.body
            ])
            .unwrap();
        let id = tx.last_insert_rowid();
        for (k, v) in obj
            .labels
            .iter()
            .chain(obj.fields.iter().map(|(k, v)| (k, v)))
        {
            label.execute(params![id, k, v]).unwrap();
        }
    }
    drop((version, label, bytes));
    tx.commit().unwrap();
}
