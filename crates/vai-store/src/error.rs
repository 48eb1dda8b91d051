//! What the store can answer instead of data: one error type for the whole crate.
//!
//! The variants name what went wrong in the store's own terms (a file that is foreign, corrupt,
//! full or locked; a request the store refuses; a window the history no longer covers). The
//! storage engine's own errors are carried as an opaque [`Error::Backend`] source: this module
//! must never put an engine's types in a public variant, so that a second backend can live
//! under the same front.

use std::path::Path;

/// What the store can answer instead of data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The storage engine failed for a reason none of the other variants names; what it said
    /// is the source (its type is the engine's, and not part of this API).
    #[error("database: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The file is not a vai database (not SQLite, or another program's database).
    #[error(
        "{0} is not a vai database (hint: point --db at a new or a vai file; nothing was changed)"
    )]
    ForeignFile(String),
    /// The file is damaged.
    #[error("{0} is corrupt (hint: move it aside; vai rebuilds a cache from the cluster)")]
    Corrupt(String),
    /// The file was written by a newer vai.
    #[error(
        "{path} has schema version {found}, this vai understands up to {supported} (hint: use a newer vai)"
    )]
    NewerSchema {
        /// The file.
        path: String,
        /// Its schema version.
        found: i32,
        /// The newest this build supports.
        supported: i32,
    },
    /// No space left for the database.
    #[error("{0}: the disk is full; nothing of the failed batch was applied")]
    DiskFull(String),
    /// An object upstream sent cannot be stored.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// A resource version that is not an integer.
    #[error("invalid resource version {0:?}")]
    InvalidResourceVersion(String),
    /// A malformed label or field selector.
    #[error("{0}")]
    InvalidSelector(String),
    /// A field selector on a field the store does not index.
    #[error("{0}")]
    UnsupportedField(String),
    /// A configured field (`--index-field`) that is not written as one.
    #[error("--index-field {0}")]
    InvalidIndexField(String),
    /// A malformed continue token.
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// Nothing has been stored for this resource type.
    #[error("no data for resource {0}")]
    UnknownResource(String),
    /// The resource version is older than the history window (HTTP 410).
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// The version asked for.
        requested: u64,
        /// The oldest version still answerable.
        oldest: u64,
    },
    /// A continue token whose snapshot fell out of the history window (HTTP 410, `Expired`).
    #[error("the provided continue parameter is too old to display a consistent list result")]
    Expired,
    /// The resource version is newer than anything the store has seen (HTTP 504 upstream).
    #[error("too large resource version: {requested}, current resource version is {current}")]
    TooLargeResourceVersion {
        /// The version asked for.
        requested: u64,
        /// The newest version the store has.
        current: u64,
    },
    /// The transaction holding this batch failed to commit; nothing of it was applied.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// A watch fell too far behind the live events; re-watch from its last resource version.
    #[error("the watch fell behind; re-watch from the last resource version")]
    WatchLagged,
    /// The file was written by an older vai and is opened read-only, so it cannot be migrated.
    #[error("{0} has an older schema (hint: run `vai serve` once to upgrade it)")]
    OlderSchema(String),
    /// Another process has the database open for writing.
    #[error(
        "{0} is in use by another vai process (hint: stop it, or pass a different --db or --store)"
    )]
    Locked(String),
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// The key file (`--encryption-provider-config`) cannot be used.
    #[error("{path}: {reason}")]
    EncryptionConfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database holds encrypted rows and was opened without a key file.
    #[error(
        "{path} is encrypted with key `{key}` (hint: pass --encryption-provider-config with the key file it was written with; or move the file aside: vai rebuilds the cache from the cluster)"
    )]
    Encrypted {
        /// The database.
        path: String,
        /// A key its rows are encrypted with.
        key: String,
    },
    /// A key the database is encrypted with is not in the key file.
    #[error(
        "{path} is encrypted with key `{key}`, which the key file does not hold (hint: keep it in the file's aesgcm keys, after the one that encrypts, until vai has started once)"
    )]
    KeyMissing {
        /// The database.
        path: String,
        /// The key's name.
        key: String,
    },
    /// The key file has a key of the name the database records, with another secret.
    #[error(
        "{path}: key `{key}` does not match the key the database was encrypted with (hint: use the key file it was written with)"
    )]
    KeyMismatch {
        /// The database.
        path: String,
        /// The key's name.
        key: String,
    },
    /// A stored row that does not decrypt (its key is not in the key file, or the row was
    /// altered): it is not served.
    #[error("{0}: the stored object cannot be decrypted: {1}")]
    Undecryptable(String, String),
    /// The store is closed.
    #[error("the store is closed")]
    Closed,
    /// What was asked is not served by this store's backend yet (named in the message).
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
    /// The database server cannot be reached (down, restarting, the connection lost): what
    /// was asked may succeed once it answers again.
    #[error("the store's database is unreachable: {0}")]
    Unavailable(String),
}

impl Error {
    /// Names what the engine's error says of the file (corrupt, not a database, disk full)
    /// where it can; other errors are unchanged.
    pub(crate) fn about_file(self, path: &Path) -> Error {
        match self {
            Error::Backend(e) => match e.downcast::<rusqlite::Error>() {
                Ok(e) => classify(path, *e),
                Err(e) => Error::Backend(e),
            },
            other => other,
        }
    }
}

/// Inside the crate, `?` turns PostgreSQL's errors into [`Error::Unavailable`] when the
/// server cannot be reached (the connection closed or refused, the server shutting down or
/// starting: classes 08 and 57P), into [`Error::Backend`] otherwise. Hidden, as SQLite's below.
#[doc(hidden)]
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        let unreachable = e.is_closed()
            || match e.code() {
                Some(code) => code.code().starts_with("08") || code.code().starts_with("57P"),
                None => std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()),
            };
        if unreachable {
            Error::Unavailable(e.to_string())
        } else {
            Error::Backend(Box::new(e))
        }
    }
}

/// Inside the crate, `?` turns SQLite's errors into [`Error::Backend`] (classified by
/// [`Error::about_file`] where a file is involved). Not meant for callers: a trait impl cannot
/// be private, so it is hidden from the documentation instead.
#[doc(hidden)]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Backend(Box::new(e))
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns SQLite's error codes for bad files into errors that say what is wrong with the file.
pub(crate) fn classify(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::ForeignFile(path.display().to_string()),
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt(path.display().to_string()),
        Some(ErrorCode::DiskFull) => Error::DiskFull(path.display().to_string()),
        _ => Error::from(e),
    }
}
