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
#[derive(Clone, Copy, PartialEq)]
enum Way {
    Schema,
    ByValueOnly,
    BytesOnly,
}

/// How bodies are written.
#[derive(Clone, Copy)]
enum Codec {
    Plain,
    /// zstd at this level with a dictionary trained on the first objects.
    Dictionary(i32),
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
    let raw: usize = objects.iter().map(|o| o.body.len()).sum();
    let started = Instant::now();
    let samples: Vec<&[u8]> = objects.iter().take(1000).map(|o| &o.body[..]).collect();
    let dict = zstd::dict::from_samples(&samples, 64 * 1024).unwrap();
    println!(
        "dictionary: {} bytes trained from {} bodies in {:?}",
        dict.len(),
        samples.len(),
        started.elapsed()
    );
    for level in [1, 3] {
        let mut c = zstd::bulk::Compressor::with_dictionary(level, &dict).unwrap();
        let started = Instant::now();
        let packed: Vec<Vec<u8>> = objects
            .iter()
            .map(|o| c.compress(&o.body).unwrap())
            .collect();
        let took = started.elapsed();
        let size: usize = packed.iter().map(Vec::len).sum();
        let mut d = zstd::bulk::Decompressor::with_dictionary(&dict).unwrap();
        let mut out = Vec::with_capacity(64 * 1024);
        let started = Instant::now();
        for (p, o) in packed.iter().zip(&objects) {
            out.clear();
            d.decompress_to_buffer(p, &mut out).unwrap();
            assert_eq!(out.len(), o.body.len());
        }
        let unpacked = started.elapsed();
        println!(
            "level {level}: ratio {:.3}, compress {:.0} MB/s ({:.1} µs/object), decompress {:.0} MB/s ({:.2} µs/object)",
            size as f64 / raw as f64,
            raw as f64 / took.as_secs_f64() / 1e6,
            took.as_secs_f64() * 1e6 / n as f64,
            raw as f64 / unpacked.as_secs_f64() / 1e6,
            unpacked.as_secs_f64() * 1e6 / n as f64,
        );
    }
    println!("\n{n} pods\n");
    println!("| insert | objects/s | file MB |\n|---|---|---|");
    for (what, way, codec, batch) in [
        (
            "schema: version row and label rows",
            Way::Schema,
            Codec::Plain,
            BATCH,
        ),
        (
            "schema, transactions of 10,000",
            Way::Schema,
            Codec::Plain,
            10 * BATCH,
        ),
        (
            "schema, bodies zstd 1 + dictionary",
            Way::Schema,
            Codec::Dictionary(1),
            BATCH,
        ),
        (
            "schema, bodies zstd 3 + dictionary",
            Way::Schema,
            Codec::Dictionary(3),
            BATCH,
        ),
        (
            "schema, zstd 1, transactions of 10,000",
            Way::Schema,
            Codec::Dictionary(1),
            10 * BATCH,
        ),
        (
            "schema, label rows by value only",
            Way::ByValueOnly,
            Codec::Plain,
            BATCH,
        ),
        (
            "schema, by value only, zstd 1, 10,000",
            Way::ByValueOnly,
            Codec::Dictionary(1),
            10 * BATCH,
        ),
        ("bytes only (no index)", Way::BytesOnly, Codec::Plain, BATCH),
        (
            "bytes only, zstd 1 + dictionary",
            Way::BytesOnly,
            Codec::Dictionary(1),
            BATCH,
        ),
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
        let mut compressor = match codec {
            Codec::Plain => None,
            Codec::Dictionary(level) => {
                Some(zstd::bulk::Compressor::with_dictionary(level, &dict).unwrap())
            }
        };
        let started = Instant::now();
        for (k, chunk) in objects.chunks(batch).enumerate() {
            insert(&conn, way, compressor.as_mut(), (k * batch) as i64, chunk);
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let size = std::fs::metadata(dir.path().join("floor.db"))
            .unwrap()
            .len();
        println!("| {what} | {rate:.0} | {:.1} |", size as f64 / 1e6);
    }
}

fn insert(
    conn: &Connection,
    way: Way,
    mut compressor: Option<&mut zstd::bulk::Compressor>,
    first_seq: i64,
    objects: &[StoredObject],
) {
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
        let packed;
        let body: &[u8] = match compressor.as_mut() {
            Some(c) => {
                packed = c.compress(&obj.body).unwrap();
                &packed
            }
            None => &obj.body,
        };
        if let Some(bytes) = &mut bytes {
            bytes.execute([body]).unwrap();
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
                body
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
