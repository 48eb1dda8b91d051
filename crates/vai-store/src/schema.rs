//! The database file: opening it safely, recognising it, and its versioned schema.
//!
//! A vai database is marked with SQLite's `application_id` and carries its schema version in
//! `user_version`. Opening a file that is not SQLite, is another program's database, or was
//! written by a newer vai is a clear error; nothing here ever drops or rewrites existing data
//! to "fix" a file. New files are created with mode 0600 (SQLite gives its `-wal` and `-shm`
//! files the database file's permissions).
//!
//! One table of object versions is both the current state and the history, read in Kubernetes
//! key order through the covering index `versions_by_key` (bodies live in the table's rowid
//! b-tree, where multi-KB rows pack densely; a `WITHOUT ROWID` table clustered by key spilled
//! each row into its own overflow page, 4.6× the raw JSON on disk): a row is visible at resource version `R` when `rv <= R < rv_to` (`rv_to`
//! is NULL while current). Deletions are tombstone rows, kept for watch replay. History older
//! than a resource's `compacted_rv` is pruned.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// `vai1` in ASCII: marks a file as a vai database.
pub const APPLICATION_ID: i32 = 0x7661_6931;
/// The schema version this build writes. Older files are migrated; newer ones are refused.
pub const SCHEMA_VERSION: i32 = 10;

const SCHEMA_V1: &str = "
CREATE TABLE resources (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    list_rv INTEGER,
    last_rv INTEGER NOT NULL DEFAULT 0,
    compacted_rv INTEGER NOT NULL DEFAULT 0,
    last_contact_ms INTEGER,
    last_error TEXT,
    state TEXT NOT NULL DEFAULT 'syncing'
);
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    resource_id INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    rv INTEGER NOT NULL,
    rv_to INTEGER,
    kind INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    prune_rv INTEGER,
    prune_ms INTEGER,
    created TEXT,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX versions_by_key ON versions (resource_id, namespace, name, rv, rv_to, kind, created);
CREATE INDEX versions_by_rv ON versions (resource_id, rv, seq);
CREATE INDEX versions_prunable ON versions (resource_id, prune_rv) WHERE prune_rv IS NOT NULL;
CREATE TABLE labels (
    version_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    PRIMARY KEY (version_id, key, value)
) WITHOUT ROWID;
CREATE INDEX labels_by_value ON labels (resource_id, key, value, version_id);
";

/// Version 2: documents that are not objects (discovery, `/version`), kept so that they can be
/// served while upstream is unreachable.
const SCHEMA_V2: &str = "
CREATE TABLE documents (
    key TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    fetched_ms INTEGER NOT NULL
);
";

/// Version 3: the table cells upstream printed for a version (`as=Table`), kept beside the object
/// so that kubectl's tables are served as upstream prints them, offline too.
const SCHEMA_V3: &str = "ALTER TABLE versions ADD COLUMN cells BLOB;";

/// Version 5: each type's fields as its label rows reflect them (see `crate::registry`), so that
/// fields declared by CRDs or configured can be added and removed while objects are stored, and
/// survive a restart.
const SCHEMA_V5: &str = "
CREATE TABLE fields (
    resource TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    default_value TEXT,
    selectable INTEGER NOT NULL,
    indexed INTEGER NOT NULL,
    declared INTEGER NOT NULL,
    PRIMARY KEY (resource, name)
) WITHOUT ROWID;
";

/// Version 6: counts of the current state per type (objects, and objects per indexed field
/// value), kept by the writer (see `crate::counts`).
const SCHEMA_V6: &str = "
CREATE TABLE current_counts (
    resource_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (resource_id, key, value)
) WITHOUT ROWID;
";

/// Version 7: versions newest first, so that a query API page sorted by creation time walks
/// the index instead of sorting every object (see `page.rs`); covering, so visibility is
/// checked in the index. The counts gain rows per namespace (see `crate::counts`).
const SCHEMA_V7: &str = "
CREATE INDEX versions_by_created ON versions (resource_id, created DESC, namespace, name, rv, rv_to, kind);
";

/// Version 8: each version's indexed field values beside it (`fields`, a JSON object by field
/// name, NULL without any; the label rows stay what selects by value), and one namespace's
/// versions newest first, covering those values. A dashboard's page of one namespace's running
/// pods, newest first, then walks that namespace's entries only and checks each one's phase in
/// the index: ~170 entries and no other page, where version 7 walked ~8,300 entries of every
/// namespace and looked each candidate's phase up in the label table.
const SCHEMA_V8: &str = "
ALTER TABLE versions ADD COLUMN fields TEXT;
CREATE INDEX versions_by_namespace_created ON versions (resource_id, namespace, created DESC, name, rv, rv_to, kind, fields);
";

/// Version 9: rows encrypted at rest (see `crate::sealed`): the keys in use, each with a check
/// value (a known text sealed with it, never the key), and which key each encrypted type's rows
/// are sealed with.
const SCHEMA_V9: &str = "
CREATE TABLE sealing_keys (
    name TEXT PRIMARY KEY,
    check_value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE sealed_resources (
    resource TEXT PRIMARY KEY,
    key TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 10: bodies compressed at rest (see `crate::codec`): each type's zstd dictionaries,
/// trained from its first objects, by the id each compressed body's frame names. Bodies
/// written before stay plain until they change.
const SCHEMA_V10: &str = "
CREATE TABLE dictionaries (
    id INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    trained_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    trained_ratio REAL NOT NULL,
    content BLOB NOT NULL
);
";

/// Opens (creating if needed) the database for writing, checks what it is, and brings its
/// schema up to date.
pub fn open_writer(path: &Path) -> Result<Connection> {
    if !path.exists() {
        // Create the file ourselves so it is private from its first byte.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::Io(path.display().to_string(), e))?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| crate::error::classify(path, e))?;
    let (app_id, version, tables) = identify(&conn).map_err(|e| crate::error::classify(path, e))?;
    if tables > 0 && app_id != APPLICATION_ID {
        return Err(Error::ForeignFile(path.display().to_string()));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            path: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // Larger pages suit multi-KB JSON objects; only takes effect on a new file.
    conn.execute_batch("PRAGMA page_size = 16384;")
        .map_err(|e| crate::error::classify(path, e))?;
    configure(&conn).map_err(|e| crate::error::classify(path, e))?;
    migrate(&conn, version).map_err(|e| crate::error::classify(path, e))?;
    Ok(conn)
}

/// Opens a second connection to a database `open_writer` has prepared.
fn open_secondary(
    path: &Path,
    flags: OpenFlags,
    busy: Duration,
    pragmas: &str,
) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| crate::error::classify(path, e))?;
    conn.busy_timeout(busy)
        .map_err(|e| crate::error::classify(path, e))?;
    conn.execute_batch(pragmas)
        .map_err(|e| crate::error::classify(path, e))?;
    Ok(conn)
}

/// How long the checkpointer's truncating checkpoints wait for readers of old snapshots.
pub(crate) const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens the checkpointer's connection (see [`crate::checkpoint`]).
pub fn open_checkpointer(path: &Path) -> Result<Connection> {
    open_secondary(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE,
        CHECKPOINT_BUSY_TIMEOUT,
        "",
    )
}

/// Checks that an existing file is a vai database this build can read, without changing it
/// (for read-only opens such as `vai status`).
pub fn check_readable(path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::Io(
            path.display().to_string(),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let conn = open_reader(path)?;
    let (app_id, version, tables) = identify(&conn).map_err(|e| crate::error::classify(path, e))?;
    if tables == 0 || app_id != APPLICATION_ID {
        return Err(Error::ForeignFile(path.display().to_string()));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            path: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        return Err(Error::OlderSchema(path.display().to_string()));
    }
    Ok(())
}

/// Opens a read-only connection, with a page cache of 16 MiB (SQLite's default is 2 MiB) and
/// the first GiB of the file memory-mapped: a page a read needs is then the kernel's page
/// cache itself, not a `pread` copied into the connection's cache (the scale bench, 20,000
/// pods, compressed: full list 331 → 220–232 ms, UI page 1.8 → 0.9 ms, in alternating runs;
/// docs/BENCHMARKS.md). Frames in the WAL are still read by `pread`. The writer does not map
/// the file: its ingest measured the same either way.
pub fn open_reader(path: &Path) -> Result<Connection> {
    open_secondary(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
        Duration::from_secs(5),
        "PRAGMA cache_size = -16384; PRAGMA mmap_size = 1073741824;",
    )
}

fn identify(conn: &Connection) -> rusqlite::Result<(i32, i32, i64)> {
    let app_id = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    Ok((app_id, version, tables))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // The writer may wait for a truncating checkpoint (see `checkpoint`).
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // WAL: readers never block the writer nor each other. synchronous=NORMAL: a commit is
    // durable once the WAL is synced at checkpoint; a power cut may lose the last commits but
    // never corrupts, and sync resumes from the stored resource version either way.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 0;",
    )
}

fn migrate(conn: &Connection, from: i32) -> rusqlite::Result<()> {
    if from < 1 {
        conn.execute_batch(&format!(
            "BEGIN;
             {SCHEMA_V1}
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = 1;
             COMMIT;"
        ))?;
    }
    // Steps that are plain SQL, each in its own transaction with the version it reaches.
    for (version, sql) in [(2, SCHEMA_V2), (3, SCHEMA_V3)] {
        if from < version {
            conn.execute_batch(&format!(
                "BEGIN;
                 {sql}
                 PRAGMA user_version = {version};
                 COMMIT;"
            ))?;
        }
    }
    if from < 4 {
        // Version 4 indexes fields (`fields.rs`) in the label table: add them to what is stored.
        conn.execute_batch("BEGIN")?;
        backfill_indexed_fields(conn)?;
        conn.execute_batch("PRAGMA user_version = 4; COMMIT;")?;
    }
    if from < 5 {
        // Version 5 records each type's fields; what version 4 indexed are the built-in ones.
        conn.execute_batch(&format!("BEGIN; {SCHEMA_V5}"))?;
        let keys: Vec<String> = conn
            .prepare("SELECT key FROM resources")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for key in keys {
            crate::registry::record(conn, &key, &crate::fields::builtin(&key))?;
        }
        conn.execute_batch("PRAGMA user_version = 5; COMMIT;")?;
    }
    if from < 6 {
        conn.execute_batch("BEGIN")?;
        conn.execute_batch(SCHEMA_V6)?;
        crate::counts::recount_all(conn)?;
        conn.execute_batch("PRAGMA user_version = 6; COMMIT;")?;
    }
    if from < 7 {
        conn.execute_batch(&format!("BEGIN; {SCHEMA_V7}"))?;
        crate::counts::recount_all(conn)?;
        conn.execute_batch("PRAGMA user_version = 7; COMMIT;")?;
    }
    if from < 8 {
        conn.execute_batch(&format!("BEGIN; {SCHEMA_V8}"))?;
        crate::fields::fill_columns(conn, None)?;
        conn.execute_batch("PRAGMA user_version = 8; COMMIT;")?;
    }
    for (version, sql) in [(9, SCHEMA_V9), (10, SCHEMA_V10)] {
        if from < version {
            conn.execute_batch(&format!(
                "BEGIN; {sql} PRAGMA user_version = {version}; COMMIT;"
            ))?;
        }
    }
    // Later schema versions add their steps here, each in its own transaction.
    Ok(())
}

/// Adds the indexed fields of every stored version (history included) of the types that have
/// them. Bodies are the objects as upstream sent them (no row is encrypted before version 9);
/// one that cannot be read keeps no fields.
fn backfill_indexed_fields(conn: &Connection) -> rusqlite::Result<()> {
    let resources: Vec<(i64, String)> = conn
        .prepare("SELECT id, key FROM resources")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut insert = conn.prepare(
        "INSERT OR IGNORE INTO labels (version_id, key, value, resource_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (rid, key) in resources {
        let indexed = crate::fields::builtin(&key);
        if indexed.is_empty() {
            continue;
        }
        let mut versions =
            conn.prepare("SELECT id, body FROM versions WHERE resource_id = ?1 AND kind != 2")?;
        let mut rows = versions.query([rid])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let body = row.get_ref(1)?.as_blob()?;
            for (k, v) in crate::fields::extract(&indexed, body).unwrap_or_default() {
                insert.execute(rusqlite::params![id, k, v, rid])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    #[test]
    fn readers_map_the_file_and_the_writer_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vai.db");
        let writer = open_writer(&path).unwrap();
        let mapped =
            |c: &Connection| -> i64 { c.query_row("PRAGMA mmap_size", [], |r| r.get(0)).unwrap() };
        assert_eq!(mapped(&open_reader(&path).unwrap()), 1 << 30);
        assert_eq!(mapped(&writer), 0);
    }

    #[test]
    fn a_version_1_file_is_migrated_in_place_keeping_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "{SCHEMA_V1}
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = 1;
                 INSERT INTO resources (key, last_rv) VALUES ('/v1/pods', 42);
                 INSERT INTO versions (resource_id, namespace, name, rv, kind, seq, body)
                 VALUES (1, 'ns', 'p', 42, 0, 1,
                         CAST('{{\"metadata\":{{\"name\":\"p\"}},\"spec\":{{\"nodeName\":\"n7\"}}}}' AS BLOB));"
            ))
            .unwrap();
        }
        let conn = open_writer(&path).unwrap();
        let (_, version, _) = identify(&conn).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let last_rv: i64 = conn
            .query_row(
                "SELECT last_rv FROM resources WHERE key = '/v1/pods'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(last_rv, 42);
        let documents: i64 = conn
            .query_row("SELECT count(*) FROM documents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(documents, 0);
        let cells: Option<Vec<u8>> = conn
            .query_row("SELECT cells FROM versions LIMIT 1", [], |r| r.get(0))
            .optional()
            .unwrap()
            .flatten();
        assert_eq!(cells, None);
        let node: String = conn
            .query_row(
                "SELECT value FROM labels WHERE key = '#spec.nodeName'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(node, "n7", "indexed fields are backfilled");
        let column: String = conn
            .query_row("SELECT fields FROM versions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            column, r#"{"spec.nodeName":"n7","status.phase":""}"#,
            "and copied beside the version"
        );
        let recorded: Vec<String> = conn
            .prepare("SELECT name FROM fields WHERE resource = '/v1/pods' AND indexed")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            recorded,
            vec!["spec.nodeName", "status.phase"],
            "what is indexed is recorded"
        );
        let counts: Vec<(String, String, i64)> = conn
            .prepare("SELECT key, value, n FROM current_counts ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            counts,
            [
                (String::new(), String::new(), 1),
                ("#spec.nodeName".into(), "n7".into(), 1),
                ("#status.phase".into(), String::new(), 1),
                ("@ns/".into(), String::new(), 1),
                ("@ns/#spec.nodeName".into(), "n7".into(), 1),
                ("@ns/#status.phase".into(), String::new(), 1)
            ],
            "the current state is counted, in all and per namespace"
        );
    }
}
