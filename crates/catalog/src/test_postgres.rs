//! A throw-away PostgreSQL server for tests: `initdb` into a temporary directory, then
//! `postgres` on 127.0.0.1 and a free port (its unix socket in the same directory),
//! stopped and deleted on drop. Needs PostgreSQL's `initdb` and `postgres` on `PATH`
//! (or in `OPENAMI_PG_BIN`); fails with a message saying so when they are missing.
//!
//! PostgreSQL refuses to run as root. As root (CI), the server runs as the `postgres`
//! user through `runuser -u postgres --` (util-linux), after its directory is handed to
//! that user.
//!
//! ```text
//! <tmp>/pgtest-XXXX/   (owned by the server's user)
//!     data/            initdb's cluster
//!     .s.PGSQL.<port>  the unix socket
//!     server.log
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running test server; dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct TestPostgres {
    dir: PathBuf,
    child: Child,
    port: u16,
    stopped: bool,
    postgres: PathBuf,
    as_postgres: bool,
}

/// Why a test server could not start.
#[derive(Debug, thiserror::Error)]
#[error("test PostgreSQL: {0}")]
pub struct TestPostgresError(String);

fn err(msg: impl Into<String>) -> TestPostgresError {
    TestPostgresError(msg.into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` from `OPENAMI_PG_BIN` or `PATH`.
fn find(program: &str) -> Result<PathBuf, TestPostgresError> {
    let dirs = std::env::var_os("OPENAMI_PG_BIN")
        .into_iter()
        .chain(std::env::var_os("PATH"));
    for list in dirs {
        for dir in std::env::split_paths(&list) {
            let p = dir.join(program);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(err(format!(
        "`{program}` not found on PATH (nor in OPENAMI_PG_BIN): install PostgreSQL's server \
         (Debian: apt-get install postgresql) and put its bin directory \
         (/usr/lib/postgresql/<version>/bin) on PATH"
    )))
}

/// A command that runs `program` as the server's user.
fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, TestPostgresError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("finding a port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| err(format!("finding a port: {e}")))
}

/// Starts the server of the cluster in `dir`; its output is appended to `server.log`.
fn spawn(
    postgres: &Path,
    as_postgres: bool,
    dir: &Path,
    port: u16,
) -> Result<Child, TestPostgresError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(|e| err(format!("server log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| err(format!("server log: {e}")))?;
    command(postgres, as_postgres)
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| err(format!("starting postgres: {e}")))
}

impl TestPostgres {
    /// Creates a cluster and starts its server; returns once it accepts connections.
    pub fn start() -> Result<Self, TestPostgresError> {
        let initdb = find("initdb")?;
        let postgres = find("postgres")?;
        let as_postgres = is_root();
        let dir =
            std::env::temp_dir().join(format!("pgtest-{}-{}", std::process::id(), crate::now_ms()));
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .map_err(|e| err(format!("chown: {e}")))?;
            if !st.success() {
                return Err(err(
                    "running as root, but the directory cannot be given to the `postgres` \
                     user (create one: useradd --system postgres)",
                ));
            }
        }
        let data = dir.join("data");
        let out = command(&initdb, as_postgres)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("running initdb: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let port = free_port()?;
        let child = spawn(&postgres, as_postgres, &dir, port)?;
        let mut server = TestPostgres {
            dir,
            child,
            port,
            stopped: false,
            postgres,
            as_postgres,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&mut self) -> Result<(), TestPostgresError> {
        self.stop();
        self.child = spawn(&self.postgres, self.as_postgres, &self.dir, self.port)?;
        self.stopped = false;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), TestPostgresError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(err(format!(
                    "postgres exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                )));
            }
            if let Ok(mut c) = postgres::Client::connect(&self.url(), postgres::NoTls)
                && c.simple_query("SELECT 1").is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err("postgres did not accept connections within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of the `postgres` database as the superuser `postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// A URL of database `db` (see [`TestPostgres::create_database`]).
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, db: &str) -> Result<String, TestPostgresError> {
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls)
            .map_err(|e| err(format!("connecting: {e}")))?;
        c.batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .map_err(|e| err(format!("creating database {db}: {e}")))?;
        Ok(self.url_of(db))
    }

    /// Stops the server (fast shutdown: connections are closed) and waits for it.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        // The postmaster's pid (the child may be `runuser`, which waits for it).
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
            .unwrap_or_else(|| self.child.id().to_string());
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
