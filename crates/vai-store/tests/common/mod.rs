//! What the store's tests share: a fresh place for a store on each backend — the SQLite file
//! and a real PostgreSQL — so that one test source asserts the same answers of both.

#![allow(dead_code)] // Each test binary uses its own part of this.

use std::sync::OnceLock;

use vai_store::{Store, StoreConfig};

/// Where a store lives: a file in a temporary directory, or a database of its own on the test
/// binary's PostgreSQL server.
pub enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Place {
    /// Opens the store for writing.
    pub fn open(&self, config: StoreConfig) -> vai_store::Result<Store> {
        match self {
            Place::Sqlite(dir) => Store::open(&dir.path().join("vai.db"), config),
            Place::Postgres(url) => Store::open_postgres(url, config),
        }
    }

    /// Opens the store for reading only, beside its writer.
    pub fn open_read_only(&self) -> vai_store::Result<Store> {
        match self {
            Place::Sqlite(dir) => Store::open_read_only(&dir.path().join("vai.db")),
            Place::Postgres(url) => Store::open_postgres_read_only(url, StoreConfig::default()),
        }
    }

    /// A count read straight from the engine's tables: `sqlite` on the file, `postgres` on
    /// the database (with `psql`).
    pub fn count(&self, sqlite: &str, postgres: &str) -> i64 {
        match self {
            Place::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("vai.db"))
                .unwrap()
                .query_row(sqlite, [], |r| r.get(0))
                .unwrap(),
            Place::Postgres(url) => vai_testenv::postgres::psql(url, postgres)
                .unwrap()
                .parse()
                .unwrap(),
        }
    }

    /// A new, empty place on the same backend.
    pub fn another(&self) -> Place {
        match self {
            Place::Sqlite(_) => Place::Sqlite(tempfile::tempdir().unwrap()),
            Place::Postgres(_) => Place::Postgres(server().create_database().unwrap()),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres(_) => "postgres",
        }
    }
}

/// One PostgreSQL server per test binary (stopped by its watchdog when the binary exits); each
/// place gets a database of its own on it.
pub fn server() -> &'static vai_testenv::Postgres {
    static SERVER: OnceLock<vai_testenv::Postgres> = OnceLock::new();
    SERVER.get_or_init(|| vai_testenv::Postgres::start().expect("a private PostgreSQL starts"))
}

/// A new, empty place on every backend.
pub fn fresh_places() -> Vec<Place> {
    vec![
        Place::Sqlite(tempfile::tempdir().unwrap()),
        Place::Postgres(server().create_database().unwrap()),
    ]
}

/// A store under test, with the place that keeps it.
pub struct Fresh {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub store: Store,
    pub place: Place,
}

/// A new, empty store on every backend, with `config`.
pub fn fresh_stores(config: StoreConfig) -> Vec<Fresh> {
    fresh_places()
        .into_iter()
        .map(|place| Fresh {
            backend: place.backend(),
            store: place.open(config.clone()).unwrap(),
            place,
        })
        .collect()
}

/// Runs `test` once per backend, each on a fresh place (the backend's name on stderr, so a
/// failure says which).
pub fn each_backend(test: impl Fn(&Place)) {
    for place in fresh_places() {
        eprintln!("-- {}", place.backend());
        test(&place);
    }
}
