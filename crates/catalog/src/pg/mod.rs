//! The PostgreSQL backend of the catalog: a regional catalog that several openami nodes
//! share (`--catalog postgres://…`).
//!
//! How it differs from the SQLite backend:
//!
//! ```text
//!  Catalog method ──job──► mpsc ──► worker 1..N ── connection ──► PostgreSQL
//!   (blocks on reply) ◄──reply──        (owns a postgres::Client,     ▲
//!                                         reconnects on next job)     │ NOTIFY openami_catalog
//!  data_version() ◄── AtomicI64 ◄── listener thread ── LISTEN ────────┘  (row triggers)
//! ```
//!
//! * **Threads own the connections.** Catalog methods are synchronous and are called from
//!   inside tokio tasks too, where the blocking `postgres` client (which runs its own
//!   runtime) must not run. So [`WORKERS`] threads each own a connection and run jobs
//!   (closures) sent over a channel; a method sends one and waits for its reply. A job
//!   is one statement or one transaction, on one connection.
//! * **Lost connections.** A connection idle for more than [`IDLE_CHECK`], or used after
//!   another worker lost its connection, is checked (one round trip) before use, so a
//!   server restart costs at most one failed call, none if it happened while idle. A connection
//!   that failed is dropped and the next job on that worker reconnects; the failed call (and any call while the server is unreachable)
//!   fails with [`CatalogError::Unavailable`], which the API turns into a "service
//!   unavailable" answer. A write whose connection broke is not retried: it may or may
//!   not have committed.
//! * **Errors.** `unique_violation` (23505) becomes [`CatalogError::AlreadyExists`] like
//!   SQLite's constraint errors; `disk_full` (53100) makes `is_storage_full` true;
//!   connection errors, class 08 and the 57P0x shutdown codes become `Unavailable`.
//! * **Migrations** (same numbering as SQLite, PostgreSQL dialect, see [`schema`]) run in
//!   one transaction holding `pg_advisory_xact_lock`, so nodes that start together
//!   migrate once.
//! * **`data_version`** is a local counter. Row triggers on every table whose rows are
//!   cached (accounts, access keys, resources, tags, permissions, SSM parameters,
//!   console passwords — not `upload_blocks`, which changes per written block and is never
//!   cached) `pg_notify('openami_catalog')` on commit; a listener thread LISTENs on its own
//!   connection and bumps the counter for each notification sent by a backend that is not
//!   one of this catalog's own connections (notifications carry the sender's backend pid).
//!   So, like SQLite's `data_version`, it changes for other nodes' commits and not for
//!   its own writes, but asynchronously: a few milliseconds after the other commit.
//!   When the listener's connection is lost it reconnects and bumps the counter, since
//!   notifications may have been missed meanwhile.
//! * **The node request queue** notifies its own channel, `openami_requests` (a queue
//!   change must not invalidate caches); the same listener counts those notifications
//!   (own ones too) and wakes [`crate::Catalog::wait_node_requests`]'s waiters.
//! * Plain TCP (or a unix socket) without TLS: a catalog server is meant to sit on a
//!   trusted network.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use crate::{CatalogError, redact};

mod gc_leases;
mod node_requests;
mod nodes;
mod queries;
pub(crate) mod schema;
mod sessions;

/// Connections (worker threads) per catalog.
pub(crate) const WORKERS: usize = 4;
/// The NOTIFY channel the triggers of [`schema`] signal.
const CHANNEL: &str = "openami_catalog";
/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle longer than this is checked (one round trip) before it is used.
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// Unacknowledged data older than this closes the connection (a partitioned server).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle time before TCP keepalive probes start (the listener's connection is mostly idle).
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// Server-side limits of every connection (unless the URL sets `options`).
const SESSION_OPTIONS: &str =
    "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000";
/// The longest a caller waits for its job's answer (the statement timeout plus margin).
const CALL_TIMEOUT: Duration = Duration::from_secs(75);
/// How often the listener looks whether its catalog was dropped.
const LISTEN_POLL: Duration = Duration::from_millis(250);

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// What the worker threads and the listener share.
#[derive(Debug)]
struct Shared {
    config: Config,
    /// The URL with its password hidden, for messages.
    location: String,
    /// Backend pids of this catalog's worker connections (their notifications are
    /// own writes).
    own_pids: Mutex<HashSet<i32>>,
    /// `data_version`.
    version: AtomicI64,
    /// Set when the catalog is dropped.
    stopped: AtomicBool,
    /// Bumped whenever a worker lost its connection: the others check theirs before
    /// their next job (they likely lost theirs too, e.g. the server restarted).
    losses: AtomicU64,
    /// Bumped for every notification on the request queue's channel (own writes too: a
    /// node may wait for a request it queued for itself), with `requests_changed`
    /// signalled under `requests_lock`.
    requests_version: AtomicU64,
    requests_lock: Mutex<()>,
    requests_changed: Condvar,
}

impl Shared {
    /// A change of the request queue (or a chance of a missed one): wakes its waiters.
    fn requests_moved(&self) {
        let _guard = self.requests_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.requests_version.fetch_add(1, Ordering::SeqCst);
        self.requests_changed.notify_all();
    }

    fn own_pids(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.own_pids.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<Client, CatalogError> {
        self.config
            .connect(NoTls)
            .map_err(|e| CatalogError::Unavailable(format!("{}: {}", self.location, describe(&e))))
    }
}

/// The PostgreSQL catalog.
#[derive(Debug)]
pub(crate) struct Postgres {
    shared: Arc<Shared>,
    jobs: Mutex<Option<Sender<Job>>>,
}

/// A worker thread's connection.
struct Worker {
    shared: Arc<Shared>,
    conn: Option<(Client, i32)>,
    /// When the connection last ran a job.
    last_used: Instant,
    /// `Shared::losses` when this worker last looked.
    losses_seen: u64,
}

impl Worker {
    /// The connection, opened if needed.
    fn client(&mut self) -> Result<&mut Client, CatalogError> {
        let losses = self.shared.losses.load(Ordering::SeqCst);
        let suspect = self.last_used.elapsed() > IDLE_CHECK
            || std::mem::replace(&mut self.losses_seen, losses) != losses;
        self.last_used = Instant::now();
        if let Some((c, _)) = self.conn.as_mut()
            && (c.is_closed() || (suspect && c.is_valid(IDLE_CHECK).is_err()))
        {
            // Gone while idle (e.g. the server restarted): reconnect rather than fail.
            self.reset();
        }
        if self.conn.is_none() {
            let mut client = self.shared.connect()?;
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .map_err(classify)?
                .try_get(0)
                .map_err(classify)?;
            self.shared.own_pids().insert(pid);
            self.conn = Some((client, pid));
        }
        match self.conn.as_mut() {
            Some((client, _)) => Ok(client),
            None => Err(CatalogError::Unavailable(self.shared.location.clone())),
        }
    }

    /// Forgets the connection (the next job reconnects).
    fn reset(&mut self) {
        if let Some((_, pid)) = self.conn.take() {
            self.shared.own_pids().remove(&pid);
        }
    }
}

fn work(shared: Arc<Shared>, jobs: Arc<Mutex<Receiver<Job>>>) {
    let mut worker = Worker {
        shared,
        conn: None,
        last_used: Instant::now(),
        losses_seen: 0,
    };
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                // The catalog was dropped.
                Err(_) => break,
            }
        };
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut worker))).is_err() {
            worker.reset();
        }
    }
    worker.reset();
}

/// Sorts a PostgreSQL error: connection trouble is [`CatalogError::Unavailable`].
pub(crate) fn classify(e: postgres::Error) -> CatalogError {
    let unavailable = match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: the connection failed or closed (a database error always has one).
        None => e.as_db_error().is_none(),
    };
    if unavailable || e.is_closed() {
        CatalogError::Unavailable(describe(&e))
    } else {
        CatalogError::Postgres(e)
    }
}

/// An error with its causes (a `postgres::Error` alone says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Maps a unique violation to [`CatalogError::AlreadyExists`].
pub(crate) fn exists(
    e: postgres::Error,
    what: &'static str,
    key: impl Into<String>,
) -> CatalogError {
    if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
        CatalogError::AlreadyExists {
            what,
            key: key.into(),
        }
    } else {
        classify(e)
    }
}

impl Postgres {
    /// Connects, migrates and starts listening for other nodes' changes.
    pub(crate) fn open(url: &str) -> Result<Self, CatalogError> {
        let location = redact(url);
        let mut config: Config = url
            .parse()
            .map_err(|e| CatalogError::BadLocation(format!("{location}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("openami");
        }
        // Bounded waits once connected: a dead peer is noticed (keepalives, unacknowledged
        // data), a statement or an idle transaction cannot hold a worker forever.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        config.keepalives_idle(KEEPALIVES_IDLE);
        if config.get_options().is_none() {
            config.options(SESSION_OPTIONS);
        }
        let shared = Arc::new(Shared {
            config,
            location,
            own_pids: Mutex::new(HashSet::new()),
            version: AtomicI64::new(1),
            stopped: AtomicBool::new(false),
            losses: AtomicU64::new(0),
            requests_version: AtomicU64::new(1),
            requests_lock: Mutex::new(()),
            requests_changed: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let (shared, rx) = (Arc::clone(&shared), Arc::clone(&rx));
            thread::Builder::new()
                .name(format!("catalog-pg-{i}"))
                .spawn(move || work(shared, rx))
                .map_err(|e| CatalogError::Unavailable(format!("starting a worker: {e}")))?;
        }
        let catalog = Postgres {
            shared: Arc::clone(&shared),
            jobs: Mutex::new(Some(tx)),
        };
        catalog.call(schema::migrate)?;
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("catalog-pg-listen".into())
            .spawn(move || listen(&shared, ready_tx))
            .map_err(|e| CatalogError::Unavailable(format!("starting the listener: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| CatalogError::Unavailable("the listener stopped".into()))??;
        Ok(catalog)
    }

    /// Runs `f` on a worker's connection and waits for its result.
    pub(crate) fn call<T, F>(&self, f: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> Result<T, CatalogError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |worker: &mut Worker| {
            let result = worker.client().and_then(f);
            if matches!(result, Err(CatalogError::Unavailable(_))) {
                worker.reset();
                worker.shared.losses.fetch_add(1, Ordering::SeqCst);
            }
            // The caller waits for this; if it is gone there is no one to tell.
            let _ = reply_tx.send(result);
        });
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let sent = jobs.as_ref().map(|tx| tx.send(job));
            if !matches!(sent, Some(Ok(()))) {
                return Err(CatalogError::Unavailable("catalog workers stopped".into()));
            }
        }
        match reply_rx.recv_timeout(CALL_TIMEOUT) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(CatalogError::Unavailable(format!(
                "{}: no answer within {} s",
                self.shared.location,
                CALL_TIMEOUT.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                Err(CatalogError::Unavailable("a catalog worker failed".into()))
            }
        }
    }

    /// See [`crate::Catalog::data_version`].
    pub(crate) fn data_version(&self) -> Result<i64, CatalogError> {
        Ok(self.shared.version.load(Ordering::SeqCst))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.requests_moved();
        // Closing the channel ends the workers, which close their connections.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The listener thread: LISTENs on its own connection and bumps `data_version` for
/// every notification of a backend that is not one of ours. Reports on `ready` whether
/// the first LISTEN worked; later failures reconnect (once a second).
fn listen(shared: &Shared, ready: mpsc::SyncSender<Result<(), CatalogError>>) {
    let mut ready = Some(ready);
    while !shared.stopped.load(Ordering::SeqCst) {
        let client = shared.connect().and_then(|mut c| {
            c.batch_execute(&format!(
                "LISTEN {CHANNEL}; LISTEN {}",
                node_requests::REQUESTS_CHANNEL
            ))
            .map_err(classify)?;
            Ok(c)
        });
        let mut client = match (client, ready.take()) {
            (Ok(c), Some(ready)) => {
                let _ = ready.send(Ok(()));
                c
            }
            (Ok(c), None) => {
                // Changes may have been missed while disconnected.
                shared.version.fetch_add(1, Ordering::SeqCst);
                shared.requests_moved();
                tracing::info!(catalog = %shared.location, "catalog listener reconnected");
                c
            }
            (Err(e), Some(ready)) => {
                let _ = ready.send(Err(e));
                return;
            }
            (Err(e), None) => {
                tracing::warn!(error = %e, "catalog listener cannot reconnect");
                thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        while !shared.stopped.load(Ordering::SeqCst) && !client.is_closed() {
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(LISTEN_POLL);
            loop {
                match iter.next() {
                    Ok(Some(n)) if n.channel() == node_requests::REQUESTS_CHANNEL => {
                        shared.requests_moved();
                    }
                    Ok(Some(n)) => {
                        if !shared.own_pids().contains(&n.process_id()) {
                            shared.version.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "catalog listener lost its connection");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
