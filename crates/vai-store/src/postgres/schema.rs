//! The PostgreSQL database's schema: recognising a vai database, refusing another program's or
//! a newer vai's untouched, and creating or migrating vai's tables.
//!
//! A vai database holds `vai_schema` (one row: the application and the schema version) and
//! tables prefixed `vai_`. One table of versions is both the current state and the history, as
//! in the SQLite file: a row is visible at resource version `R` when `rv <= R < rv_to`. Keys
//! sort as Kubernetes sorts them (bytewise): every key column is `COLLATE "C"`.
//!
//! This module must never drop or rewrite data that is not vai's.

use tokio_postgres::Client;

use super::{block, describe};
use crate::{Error, Result};

/// The schema version this build writes. Older databases are migrated; newer ones refused.
pub(crate) const SCHEMA_VERSION: i32 = 4;

const SCHEMA_V1: &str = r#"
CREATE TABLE vai_schema (
    application text NOT NULL,
    version integer NOT NULL
);
INSERT INTO vai_schema VALUES ('vai', 1);
CREATE TABLE vai_resources (
    id bigserial PRIMARY KEY,
    key text COLLATE "C" NOT NULL UNIQUE,
    list_rv bigint,
    last_rv bigint NOT NULL DEFAULT 0,
    compacted_rv bigint NOT NULL DEFAULT 0,
    last_contact_ms bigint,
    last_error text,
    state text NOT NULL DEFAULT 'syncing'
);
CREATE TABLE vai_versions (
    id bigserial PRIMARY KEY,
    resource_id bigint NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    rv bigint NOT NULL,
    rv_to bigint,
    kind smallint NOT NULL,
    seq bigint NOT NULL,
    prune_rv bigint,
    prune_ms bigint,
    created text COLLATE "C",
    body bytea NOT NULL,
    cells bytea
);
CREATE INDEX vai_versions_by_key ON vai_versions (resource_id, namespace, name, rv);
CREATE UNIQUE INDEX vai_versions_current ON vai_versions (resource_id, namespace, name)
    WHERE rv_to IS NULL;
CREATE INDEX vai_versions_by_rv ON vai_versions (resource_id, rv, seq);
CREATE UNIQUE INDEX vai_versions_by_seq ON vai_versions (seq);
CREATE INDEX vai_versions_prunable ON vai_versions (resource_id, prune_rv)
    WHERE prune_rv IS NOT NULL;
CREATE TABLE vai_labels (
    version_id bigint NOT NULL,
    resource_id bigint NOT NULL,
    key text COLLATE "C" NOT NULL,
    value text COLLATE "C" NOT NULL,
    PRIMARY KEY (version_id, key)
);
CREATE INDEX vai_labels_by_value ON vai_labels (resource_id, key, value, version_id);
CREATE TABLE vai_fields (
    resource text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    path text NOT NULL,
    default_value text,
    selectable boolean NOT NULL,
    indexed boolean NOT NULL,
    declared boolean NOT NULL,
    PRIMARY KEY (resource, name)
);
CREATE TABLE vai_documents (
    key text COLLATE "C" PRIMARY KEY,
    content_type text NOT NULL,
    body bytea NOT NULL,
    fetched_ms bigint NOT NULL
);
"#;

/// What each later schema version changes, in order (each run in one transaction with the
/// version's mark).
const MIGRATIONS: [(i32, &str); 3] = [
    (
        2,
        // Retention without scans: each type's count of history rows kept beside it (the writer
        // updates it in the transaction that changes it), and an index by when rows left the
        // state, so that finding what aged out reads only that.
        r#"
ALTER TABLE vai_resources ADD COLUMN history_rows bigint NOT NULL DEFAULT 0;
UPDATE vai_resources r SET history_rows =
    (SELECT count(*) FROM vai_versions v WHERE v.resource_id = r.id AND v.prune_rv IS NOT NULL);
CREATE INDEX vai_versions_aging ON vai_versions (resource_id, prune_ms)
    WHERE prune_rv IS NOT NULL;
"#,
    ),
    (
        3,
        // Bodies compressed with LZ4 rather than PostgreSQL's own pglz: a 5 KB body is
        // compressed on every insert, and pglz set the writer's pace. Rows written before
        // keep theirs; a server built without LZ4 keeps pglz. And the index by age under a
        // predicate of its own (`prune_ms` is set exactly when `prune_rv` is): under the same
        // predicate as the index of prunable rows, the planner, its statistics behind, took it
        // for retention's delete and read every history row of the type (21 ms per commit).
        r#"
DROP INDEX vai_versions_aging;
CREATE INDEX vai_versions_aging ON vai_versions (resource_id, prune_ms)
    WHERE prune_ms IS NOT NULL;
DO $$ BEGIN
    ALTER TABLE vai_versions ALTER COLUMN body SET COMPRESSION lz4,
        ALTER COLUMN cells SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no LZ4: bodies stay compressed with pglz';
END $$;
"#,
    ),
    (
        4,
        // Labels and indexed fields inside the version row (`attributes`, one JSON object,
        // `#`-prefixed keys for fields) instead of a row each in `vai_labels`: a first list
        // wrote seven label rows per pod into two indexes (45% of its time), and a page's
        // filter and sort probed them per candidate (8 of a page's 13 ms at 100,000 pods). An
        // inverted index serves selectors by equality.
        r#"
ALTER TABLE vai_versions ADD COLUMN attributes jsonb;
UPDATE vai_versions v SET attributes = coalesce(
    (SELECT jsonb_object_agg(l.key, l.value) FROM vai_labels l WHERE l.version_id = v.id),
    '{}') WHERE v.kind != 2;
DROP TABLE vai_labels;
CREATE INDEX vai_versions_by_attribute ON vai_versions USING gin (attributes jsonb_path_ops);
"#,
    ),
];

/// Brings a vai database of schema `version` up to [`SCHEMA_VERSION`].
fn migrate(client: &mut Client, mut version: i32) -> Result<()> {
    for (to, sql) in MIGRATIONS {
        if version >= to {
            continue;
        }
        let tx = block(client.transaction())?;
        block(tx.batch_execute(sql))?;
        block(tx.execute("UPDATE vai_schema SET version = $1", &[&to]))?;
        block(tx.commit())?;
        tracing::info!(from = version, to, "PostgreSQL: migrated the schema");
        version = to;
    }
    Ok(())
}

/// Checks that the database is vai's (or empty) and of a schema this build reads; with
/// `create`, makes an empty database a vai one. Returns the schema version found.
pub(crate) fn prepare(client: &mut Client, url: &str, create: bool) -> Result<i32> {
    let found: Option<(String, i32)> = {
        let marked = block(client.query_one("SELECT to_regclass('vai_schema') IS NOT NULL", &[]))?
            .get::<_, bool>(0);
        if marked {
            let row = block(client.query_opt("SELECT application, version FROM vai_schema", &[]))?;
            row.map(|r| (r.get(0), r.get(1)))
        } else {
            None
        }
    };
    match found {
        Some((application, version)) if application == "vai" => {
            if version > SCHEMA_VERSION {
                return Err(Error::NewerSchema {
                    path: describe(url),
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            // The writer brings an older schema up to date; a reader waits for one that has
            // (its statements are this schema's).
            if version < SCHEMA_VERSION {
                if !create {
                    return Err(Error::OlderSchema(describe(url)));
                }
                migrate(client, version)?;
                return Ok(SCHEMA_VERSION);
            }
            Ok(version)
        }
        Some(_) => Err(Error::ForeignFile(describe(url))),
        None => {
            // No mark: only an empty database becomes vai's.
            let tables: i64 = block(client.query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables
                 WHERE schemaname = current_schema()",
                &[],
            ))?
            .get(0);
            if tables > 0 {
                return Err(Error::ForeignFile(describe(url)));
            }
            if !create {
                return Err(Error::OlderSchema(describe(url)));
            }
            let tx = block(client.transaction())?;
            block(tx.batch_execute(SCHEMA_V1))?;
            block(tx.commit())?;
            migrate(client, 1)?;
            Ok(SCHEMA_VERSION)
        }
    }
}
