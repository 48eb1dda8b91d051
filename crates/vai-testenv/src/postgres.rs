//! A private PostgreSQL server for a test: `scripts/pg up` in a fresh temporary directory, a
//! unix socket there and no TCP port, stopped and removed when the [`Postgres`] is dropped.
//!
//! The script holds the logic (installing Debian's `postgresql` package when its server is
//! missing, `initdb`, running as an unprivileged user); this module only drives it, so a person
//! at a shell and a test start the same server. It never touches a shared system instance.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crate::{Error, KEEP_ENV_VAR, Result};

/// `scripts/pg` at the repository root.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg");

/// Run by `sh -c` with the temporary directory that holds the server's (`pg/`) as `$0`: once stdin closes (the test process
/// ended, however it ended), stop the server at once (SIGQUIT: immediate shutdown) and remove
/// the directory unless a `keep` marker is there.
const WATCHDOG_SCRIPT: &str = r#"cat >/dev/null
pid="$(head -n1 "$0/pg/data/postmaster.pid" 2>/dev/null)"
[ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
[ -e "$0/keep" ] || rm -rf "$0""#;

/// A running PostgreSQL server owned by a test. See the module docs.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    url: String,
    watchdog: Mutex<Option<Child>>,
}

impl Postgres {
    /// Starts a new server in a fresh temporary directory (installing PostgreSQL first if this
    /// machine lacks it) and waits until it accepts connections. Blocking: about a second.
    pub fn start() -> Result<Postgres> {
        let dir = tempfile::Builder::new()
            .prefix("vai-pg-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?
            .keep()
            .join("pg");
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg(dir.parent().expect("a temporary directory has a parent"))
            .stdin(Stdio::piped())
            // A group of its own: a signal to the test's group (`timeout`, a terminal's
            // Ctrl-C) must not take the watchdog with it, or the server outlives the test.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(Path::new("sh"), e))?;
        let mut pg = Postgres {
            dir,
            url: String::new(),
            watchdog: Mutex::new(Some(watchdog)),
        };
        pg.url = pg.up()?;
        Ok(pg)
    }

    /// The connection URL (`postgresql:///vai?host=DIR&user=vai`), for `--store`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates a new, empty database on this server and returns its URL (for tests that want
    /// a fresh store each, on one server).
    pub fn create_database(&self) -> Result<String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let name = format!(
            "vai_{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        psql(&self.url, &format!("CREATE DATABASE {name}"))?;
        Ok(self.url.replacen(":///vai?", &format!(":///{name}?"), 1))
    }

    /// Runs SQL on the server's own database with `psql` (it comes with the server's package);
    /// what it printed, trimmed (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(&self.url, sql)
    }

    /// The server's directory: its data, socket and `pg.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (a fast shutdown: connections are ended); its data stays.
    pub fn stop(&self) -> Result<()> {
        self.script("down").map(|_| ())
    }

    /// Starts a stopped server again on the same socket and data.
    pub fn restart(&self) -> Result<()> {
        self.up().map(|_| ())
    }

    fn up(&self) -> Result<String> {
        Ok(self.script("up")?.trim().to_string())
    }

    fn script(&self, verb: &str) -> Result<String> {
        let out = Command::new(SCRIPT)
            .arg(verb)
            .arg(&self.dir)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| Error::io(Path::new(SCRIPT), e))?;
        if !out.status.success() {
            return Err(Error::Config(format!(
                "scripts/pg {verb} {} failed ({}); see its pg.log",
                self.dir.display(),
                out.status
            )));
        }
        String::from_utf8(out.stdout)
            .map_err(|_| Error::Config(format!("scripts/pg {verb}: output is not UTF-8")))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let root = self
            .dir
            .parent()
            .expect("a temporary directory has a parent");
        if std::thread::panicking() || std::env::var_os(KEEP_ENV_VAR).is_some() {
            let _ = std::fs::write(root.join("keep"), b"");
            eprintln!(
                "vai-testenv: kept PostgreSQL's data and log in {}",
                self.dir.display()
            );
        }
        if let Err(e) = self.stop() {
            eprintln!(
                "vai-testenv: stopping PostgreSQL in {}: {e}",
                self.dir.display()
            );
        }
        if let Some(mut watchdog) = self.watchdog.lock().expect("watchdog lock").take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// Runs SQL on the database at `url` with `psql`; what it printed, trimmed (unaligned, tuples
/// only). A failure is an error with what `psql` said.
pub fn psql(url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([url, "-XtAc", sql])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::io(Path::new("psql"), e))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
