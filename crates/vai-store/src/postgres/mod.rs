//! The shared engine: the store's data in a PostgreSQL database ([`Postgres`]), for several
//! vai processes at once.
//!
//! The same model as the SQLite file (one table of versions that is both state and history,
//! label rows, resource rows with their window; see `schema`), in PostgreSQL's terms: every
//! read one `REPEATABLE READ READ ONLY` transaction (one snapshot), writes group-committed by
//! one writer thread (`writer`) on a connection that holds the database's advisory lock for
//! the store, so one process writes at a time.
//!
//! The client is `tokio-postgres`: the store's engine is threads, but its reads are called
//! from anywhere (a blocking thread, an async task), so the connections' I/O runs on a small
//! runtime of the backend's own and callers wait on the client's futures, which need no
//! runtime of theirs ([`block`]). (The blocking `postgres` crate would run `Runtime::block_on`
//! on the caller's thread, which panics inside an async task.) It has binary `COPY` and
//! `LISTEN`, which later steps need.
//!
//! Not yet here (refused with [`Error::Unsupported`], never served wrong): encryption at rest.
//! Bodies are stored as upstream sent them (PostgreSQL compresses large values itself).
//! This module must never hand a PostgreSQL type to the front.

mod fields;
mod page;
mod reads;
mod role;
mod rows;
mod schema;
mod tail;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement, Transaction};

use crate::backend::{Backend, Reads};
use crate::registry::FieldRegistry;
use crate::work::WriteRequest;
use crate::{Compression, Error, Event, Result, StoreConfig, WritesHeld};

/// The advisory lock (`pg_try_advisory_lock`) whose holder is the database's writer: `vai1`.
const WRITER_LOCK: i64 = 0x7661_6931;

/// Waits for a future of the client on the calling thread. The client's futures only wait on
/// channels to the connection task (which runs on the backend's runtime), so any thread may
/// wait on them, an async task's included.
///
/// Outside tokio's cooperative budget: a caller on a tokio task whose budget is spent would
/// otherwise get `Pending` from every tokio future it waits on here (a connection's
/// `JoinHandle`), woken at once, forever — the budget only comes back when the task yields,
/// which a thread blocked here never does (a watch test spun on one core for minutes).
fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(tokio::task::unconstrained(f))
}

/// Prepared statements of one connection, by their SQL: a query then takes one round trip,
/// not two (a statement prepared anew each time is a round trip of its own).
#[derive(Debug, Default)]
pub(crate) struct Statements(Mutex<std::collections::HashMap<String, Statement>>);

/// Statements kept per connection at most (dynamic SQL varies with selectors' shapes).
const STATEMENTS_KEPT: usize = 512;

/// A transaction with its connection's statements: every query of the backend goes through
/// one, and waits for its answer ([`block`]). The writer's is a `Transaction`; a read's is
/// begun by its first statement, sent with it (one round trip, not two: see [`Tx::reading`]).
pub(crate) struct Tx<'a, 'b> {
    on: On<'a, 'b>,
    statements: &'a Statements,
    /// The `BEGIN` still to send, with the first statement.
    begin: std::cell::Cell<Option<&'static str>>,
    /// A read of one statement, outside any transaction (see [`Tx::single`]).
    single: bool,
}

/// What a [`Tx`] runs its statements on.
#[derive(Clone, Copy)]
enum On<'a, 'b> {
    Transaction(&'a Transaction<'b>),
    Client(&'a Client),
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

type Answer<'f, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + 'f>>;

/// How a read transaction begins: one snapshot for all its statements, each planned for its
/// arguments (statements are kept prepared, and PostgreSQL would move a kept statement to a
/// generic plan: a list's label selector matching 1% then scanned the whole type, 185 ms
/// instead of 6 through the inverted index). A read of one statement outside a transaction (a
/// get: one shape, whatever its arguments) keeps the generic plan, and saves planning it each
/// time (280 µs of a get's 450).
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
    SET LOCAL plan_cache_mode = force_custom_plan";

impl<'a, 'b> Tx<'a, 'b> {
    pub(crate) fn new(tx: &'a Transaction<'b>, statements: &'a Statements) -> Tx<'a, 'b> {
        Tx {
            on: On::Transaction(tx),
            statements,
            begin: std::cell::Cell::new(None),
            single: false,
        }
    }

    /// A read of one statement on `client`, outside any transaction: the statement is its own
    /// snapshot, and no `COMMIT` waits after it.
    fn single(client: &'a Client, statements: &'a Statements) -> Tx<'a, 'b> {
        Tx {
            on: On::Client(client),
            statements,
            begin: std::cell::Cell::new(None),
            single: true,
        }
    }

    /// A read-only snapshot on `client`, begun by its first statement: `BEGIN` and that
    /// statement are sent together (the client pipelines requests polled together, and the
    /// server runs them in order). End it with [`Tx::end`].
    fn reading(client: &'a Client, statements: &'a Statements) -> Tx<'a, 'b> {
        Tx {
            on: On::Client(client),
            statements,
            begin: std::cell::Cell::new(Some(BEGIN_READ)),
            single: false,
        }
    }

    /// Ends a read begun by [`Tx::reading`]: committed after `ok`, rolled back otherwise (if
    /// any statement began it).
    fn end(&self, ok: bool) -> Result<()> {
        match (self.on, self.begin.get()) {
            (On::Client(client), None) if !self.single => Ok(block(client.batch_execute(if ok {
                "COMMIT"
            } else {
                "ROLLBACK"
            }))?),
            _ => Ok(()),
        }
    }

    fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.0.lock().expect("statements lock").get(sql) {
            return Ok(s.clone());
        }
        let statement = match self.on {
            On::Transaction(tx) => block(tx.prepare(sql))?,
            On::Client(client) => block(client.prepare(sql))?,
        };
        let mut kept = self.statements.0.lock().expect("statements lock");
        if kept.len() >= STATEMENTS_KEPT {
            kept.clear();
        }
        kept.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Waits for `answer`, sent after the `BEGIN` if this statement is the transaction's first.
    fn answer<T>(&self, answer: Answer<'_, T>) -> Result<T> {
        match (self.on, self.begin.take()) {
            (On::Client(client), Some(begin)) => {
                let (begun, answer) =
                    block(futures::future::join(client.batch_execute(begin), answer));
                begun?;
                Ok(answer?)
            }
            _ => Ok(block(answer)?),
        }
    }

    pub(crate) fn query(&self, sql: &str, params: &Params) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.answer(match self.on {
            On::Transaction(tx) => Box::pin(tx.query(&statement, params)),
            On::Client(client) => Box::pin(client.query(&statement, params)),
        })
    }

    pub(crate) fn query_one(&self, sql: &str, params: &Params) -> Result<Row> {
        let statement = self.statement(sql)?;
        self.answer(match self.on {
            On::Transaction(tx) => Box::pin(tx.query_one(&statement, params)),
            On::Client(client) => Box::pin(client.query_one(&statement, params)),
        })
    }

    pub(crate) fn query_opt(&self, sql: &str, params: &Params) -> Result<Option<Row>> {
        let statement = self.statement(sql)?;
        self.answer(match self.on {
            On::Transaction(tx) => Box::pin(tx.query_opt(&statement, params)),
            On::Client(client) => Box::pin(client.query_opt(&statement, params)),
        })
    }

    pub(crate) fn execute(&self, sql: &str, params: &Params) -> Result<u64> {
        let statement = self.statement(sql)?;
        self.answer(match self.on {
            On::Transaction(tx) => Box::pin(tx.execute(&statement, params)),
            On::Client(client) => Box::pin(client.execute(&statement, params)),
        })
    }

    /// Statements without parameters, not kept (savepoints, `NOTIFY`).
    pub(crate) fn batch_execute(&self, sql: &str) -> Result<()> {
        self.answer(match self.on {
            On::Transaction(tx) => Box::pin(tx.batch_execute(sql)),
            On::Client(client) => Box::pin(client.batch_execute(sql)),
        })
    }
}

/// The URL without its password, for messages.
fn describe(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            format!(
                "PostgreSQL database {} on {}",
                config.get_dbname().unwrap_or("(default)"),
                hosts.join(",")
            )
        }
        Err(_) => "a PostgreSQL database".to_string(),
    }
}

/// The runtime the connections' I/O runs on. Dropping it does not wait for its threads: a
/// store may be opened (and fail to open) or dropped inside an async task, where waiting is
/// not allowed.
#[derive(Debug)]
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn start() -> Result<OwnRuntime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vai-store-pg")
            .enable_all()
            .build()
            .map(|r| OwnRuntime(Some(r)))
            .map_err(|e| Error::Io("starting the PostgreSQL client's runtime".into(), e))
    }
}

impl std::ops::Deref for OwnRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A connection (and the task that drives it on `runtime`).
fn connect(runtime: &tokio::runtime::Runtime, url: &str) -> Result<Client> {
    let about = |e: tokio_postgres::Error| match Error::from(e) {
        Error::Unavailable(m) => Error::Unavailable(format!("{}: {m}", describe(url))),
        Error::Backend(e) => Error::Backend(format!("{}: {e}", describe(url)).into()),
        other => other,
    };
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Error::Backend(format!("{}: {e}", describe(url)).into()))?;
    let (client, connection) = block(runtime.spawn(async move { config.connect(NoTls).await }))
        .map_err(|_| Error::Closed)?
        .map_err(about)?;
    runtime.spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Takes the writer's lock on `client`'s session, if no other session holds it.
fn try_lock(client: &Client) -> Result<bool> {
    Ok(block(client.query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK]))?.get(0))
}

/// How a store opens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Writes, or fails to open ([`Error::Locked`]) while another process writes.
    Write,
    /// Writes when no other process does; otherwise reads, and takes over writing when the
    /// writer goes (see `role`).
    Replica,
    /// Reads only, never writes.
    Read,
}

/// Whether this process writes the database now, and the way in for writes while it does.
#[derive(Debug)]
pub(crate) struct Role {
    requests: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    writing: watch::Sender<bool>,
}

/// A vai store in a PostgreSQL database. See the module docs.
#[derive(Debug)]
pub(crate) struct Postgres {
    shared: Arc<Shared>,
    role: Arc<Role>,
    /// Asks the engine thread to stop (with a ring, so a standby stops at once).
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<tail::Ring>,
    engine: Mutex<Option<JoinHandle<()>>>,
    mode: Mode,
}

/// What the reads, the writer's owner and the tailer share.
#[derive(Debug)]
pub(crate) struct Shared {
    url: String,
    /// Runs the connections' I/O.
    runtime: OwnRuntime,
    /// Read connections: opened on demand, at most `max_readers` at once (readers beyond
    /// wait for one: a connection per caller under load is a server process each, and
    /// opening one costs more than the reads it serves).
    readers: Mutex<Readers>,
    returned: Condvar,
    max_readers: usize,
}

/// The read connections: the idle ones with their statements, and how many are open.
#[derive(Debug, Default)]
struct Readers {
    idle: Vec<(Client, Statements)>,
    open: usize,
}

impl Postgres {
    /// Connects and, as `mode` says, takes the writer's lock ([`Error::Locked`] in
    /// [`Mode::Write`] when another process holds it), creates or checks the schema and
    /// starts the writer; or starts following the writer's commits. Either way what is
    /// committed is published on `events`: by the writer, or by the standby's tailer (see
    /// `role`, `tail`).
    pub(crate) fn open(
        url: &str,
        config: &StoreConfig,
        events: broadcast::Sender<Arc<[Event]>>,
        mode: Mode,
    ) -> Result<(Postgres, Arc<FieldRegistry>)> {
        if config.encryption.is_some() {
            return Err(Error::Unsupported(
                "encryption at rest on the PostgreSQL backend",
            ));
        }
        let runtime = OwnRuntime::start()?;
        let fields = Arc::new(FieldRegistry::new(
            config.indexed_fields.clone(),
            Arc::new(crate::sealed::Sealer::plain()),
        ));
        let mut first = connect(&runtime, url)?;
        let shared = Arc::new(Shared {
            url: url.to_string(),
            runtime,
            readers: Mutex::new(Readers::default()),
            returned: Condvar::new(),
            max_readers: config.read_connections.max(1),
        });
        let locked = mode != Mode::Read && try_lock(&first)?;
        if mode == Mode::Write && !locked {
            return Err(Error::Locked(describe(url)));
        }
        let (requests, writing) = (Mutex::new(None), watch::Sender::new(locked));
        let role = Arc::new(Role { requests, writing });
        let start = if locked {
            schema::prepare(&mut first, url, true)?;
            let writer =
                writer::Writer::new(first, config.clone(), events.clone(), fields.clone())?;
            let (tx, rx) = mpsc::channel();
            *role.requests.lock().expect("requests lock") = Some(tx);
            role::Start::Writing(Box::new(writer), rx)
        } else {
            schema::prepare(&mut first, url, false)?;
            // The first connection becomes a read connection.
            shared.readers.lock().expect("readers lock").open += 1;
            shared.give_back(first, Statements::default());
            let mut known = None;
            tail::look(&shared, &events, &mut known)?;
            role::Start::Standby(known)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, rings) = mpsc::channel();
        let engine = role::Engine {
            shared: shared.clone(),
            role: role.clone(),
            config: config.clone(),
            events,
            fields: fields.clone(),
            may_write: mode != Mode::Read,
            stop: stop.clone(),
            rings,
            ring: wake.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("vai-store-pg".into())
            .spawn(move || engine.run(start))
            .map_err(|e| Error::Io("spawning the store's thread".into(), e))?;
        let backend = Postgres {
            shared,
            role,
            stop,
            wake,
            engine: Mutex::new(Some(handle)),
            mode,
        };
        Ok((backend, fields))
    }
}

impl Shared {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// An idle read connection, a new one if fewer than the bound are open, or the next one
    /// given back.
    fn take(&self) -> Result<(Client, Statements)> {
        let mut readers = self.readers.lock().expect("readers lock");
        loop {
            if let Some((client, statements)) = readers.idle.pop() {
                if !client.is_closed() {
                    return Ok((client, statements));
                }
                readers.open -= 1;
                continue;
            }
            if readers.open < self.max_readers {
                readers.open += 1;
                drop(readers);
                return connect(self.runtime(), &self.url)
                    .map(|client| (client, Statements::default()))
                    .inspect_err(|_| {
                        self.readers.lock().expect("readers lock").open -= 1;
                        self.returned.notify_one();
                    });
            }
            readers = self.returned.wait(readers).expect("readers lock");
        }
    }

    /// Returns a read connection (one that closed is dropped, making room for a new one).
    fn give_back(&self, client: Client, statements: Statements) {
        let mut readers = self.readers.lock().expect("readers lock");
        if client.is_closed() {
            readers.open = readers.open.saturating_sub(1);
        } else {
            readers.idle.push((client, statements));
        }
        drop(readers);
        self.returned.notify_one();
    }

    /// Runs `f` on a read connection, in a read-only snapshot or (`one`: `f` reads with one
    /// statement) in none.
    fn read(&self, one: bool, f: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()> {
        let (client, statements) = self.take()?;
        let result = {
            let tx = if one {
                Tx::single(&client, &statements)
            } else {
                Tx::reading(&client, &statements)
            };
            let snapshot = reads::Snapshot::new(tx);
            let read = f(&snapshot);
            let ended = snapshot.tx().end(read.is_ok());
            read.and(ended)
        };
        self.give_back(client, statements);
        result
    }
}

impl Drop for Shared {
    /// Closes the idle connections before the runtime that drives them stops.
    fn drop(&mut self) {
        self.readers.lock().expect("readers lock").idle.clear();
    }
}

impl Backend for Postgres {
    fn read(&self, f: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()> {
        self.shared.read(false, f)
    }

    fn read_one(&self, f: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()> {
        self.shared.read(true, f)
    }

    fn submit(&self, request: WriteRequest) -> Result<()> {
        let requests = self.role.requests.lock().expect("requests lock");
        match requests.as_ref() {
            Some(requests) => requests.send(request).map_err(|_| Error::Closed),
            None if self.stop.load(Ordering::Relaxed) => Err(Error::Closed),
            None => Err(Error::ReadOnly),
        }
    }

    fn writes(&self) -> bool {
        *self.role.writing.borrow()
    }

    fn writer_changes(&self) -> Option<watch::Receiver<bool>> {
        (self.mode != Mode::Read).then(|| self.role.writing.subscribe())
    }

    fn path(&self) -> &Path {
        Path::new("")
    }

    fn describe(&self) -> String {
        describe(&self.shared.url)
    }

    fn compression(&self) -> BTreeMap<String, Compression> {
        BTreeMap::new()
    }

    fn writes_held(&self) -> WritesHeld {
        WritesHeld::default()
    }

    /// Stops the writer after the writes queued (releasing the writer's lock), or the
    /// standby's tailer.
    fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.role.requests.lock().expect("requests lock").take();
        let _ = self.wake.send(tail::Ring::Stop);
        if let Some(handle) = self.engine.lock().expect("engine lock").take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.close();
    }
}
