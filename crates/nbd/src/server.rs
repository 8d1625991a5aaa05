//! [`NbdServer`]: binds a unix socket, accepts connections, one thread set per connection;
//! [`ServerHandle`]: shuts it all down.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::proto::MAX_STRING;
use crate::{BlockDevice, NbdError, handshake, transmission};

/// One export: a name clients select, an optional description, a device.
#[derive(Clone)]
pub struct Export {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) device: Arc<dyn BlockDevice>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("size", &self.device.size())
            .finish()
    }
}

impl Export {
    /// An export named `name` serving `device`.
    pub fn new(name: impl Into<String>, device: Arc<dyn BlockDevice>) -> Export {
        Export {
            name: name.into(),
            description: None,
            device,
        }
    }

    /// Sets the description shown by `NBD_OPT_LIST` and `NBD_INFO_DESCRIPTION`.
    pub fn with_description(mut self, description: impl Into<String>) -> Export {
        self.description = Some(description.into());
        self
    }

    /// The export's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Tunables; [`Default`] suits QEMU.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest READ/WRITE payload (advertised as the maximum block size); larger requests
    /// get EOVERFLOW. Default 32 MiB, at least 64 KiB.
    pub max_payload: u32,
    /// Preferred block size advertised to clients. Default 4096.
    pub preferred_block_size: u32,
    /// Most worker threads per connection (pipelined requests run this many at a time;
    /// they start on demand, an idle connection has one). Default 4.
    pub workers_per_connection: usize,
    /// Request payload bytes (READ and WRITE lengths) in flight per connection before the
    /// server stops reading requests. Default 64 MiB, at least `max_payload`.
    pub max_in_flight_bytes: u64,
    /// Requests in flight per connection before the server stops reading. Default 128.
    pub max_in_flight_requests: usize,
    /// A client must finish negotiating within this time. Default 30 s.
    pub handshake_timeout: Duration,
    /// Simultaneous connections; more are closed at once. Default 64.
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests get to finish and be answered before
    /// the connections are cut. Default 2 s.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_payload: 32 << 20,
            preferred_block_size: 4096,
            workers_per_connection: 4,
            max_in_flight_bytes: 64 << 20,
            max_in_flight_requests: 128,
            handshake_timeout: Duration::from_secs(30),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

impl ServerConfig {
    fn validate(&self) -> Result<(), NbdError> {
        if self.max_payload < 65536 {
            return Err(NbdError::InvalidConfig(
                "max_payload must be at least 64 KiB",
            ));
        }
        if !self.preferred_block_size.is_power_of_two()
            || self.preferred_block_size < 512
            || self.preferred_block_size > self.max_payload
        {
            return Err(NbdError::InvalidConfig(
                "preferred_block_size must be a power of two in [512, max_payload]",
            ));
        }
        if self.workers_per_connection == 0
            || self.max_in_flight_requests == 0
            || self.max_connections == 0
        {
            return Err(NbdError::InvalidConfig(
                "workers, in-flight requests and connections must be positive",
            ));
        }
        if self.max_in_flight_bytes < u64::from(self.max_payload) {
            return Err(NbdError::InvalidConfig(
                "max_in_flight_bytes must be at least max_payload",
            ));
        }
        Ok(())
    }
}

/// Entry point: see [`NbdServer::bind_unix`].
#[derive(Debug)]
pub struct NbdServer;

impl NbdServer {
    /// Serves `exports` (name → device) on a unix socket at `path` with the default
    /// [`ServerConfig`]. A stale socket file left by a dead server is replaced.
    pub fn bind_unix<N: Into<String>>(
        path: impl AsRef<Path>,
        exports: impl IntoIterator<Item = (N, Arc<dyn BlockDevice>)>,
    ) -> Result<ServerHandle, NbdError> {
        let exports = exports.into_iter().map(|(n, d)| Export::new(n, d));
        Self::bind_unix_with(path, exports, ServerConfig::default())
    }

    /// Serves `exports` on a unix socket at `path` with `config`.
    pub fn bind_unix_with(
        path: impl AsRef<Path>,
        exports: impl IntoIterator<Item = Export>,
        config: ServerConfig,
    ) -> Result<ServerHandle, NbdError> {
        config.validate()?;
        let mut map = BTreeMap::new();
        for export in exports {
            let reason = if export.name.len() > MAX_STRING {
                Some("longer than 4096 bytes")
            } else if export.name.contains('\0') {
                Some("contains NUL")
            } else if export
                .description
                .as_ref()
                .is_some_and(|d| d.len() > MAX_STRING)
            {
                Some("description longer than 4096 bytes")
            } else if map.contains_key(&export.name) {
                Some("served twice")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(NbdError::InvalidExport {
                    name: export.name,
                    reason,
                });
            }
            map.insert(export.name.clone(), Arc::new(export));
        }
        let path = path.as_ref().to_path_buf();
        let listener = bind(&path)?;
        let ino = fs::metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| NbdError::io("stat", &path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| NbdError::io("set nonblocking", &path, e))?;
        let (wake_rx, wake_tx) =
            UnixStream::pair().map_err(|e| NbdError::io("socketpair", &path, e))?;
        let shared = Arc::new(Shared {
            exports: map,
            config,
            shutting_down: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("nbd-accept".into())
            .spawn(move || accept_loop(listener, wake_rx, accept_shared))
            .map_err(|e| NbdError::io("spawn accept thread for", &path, e))?;
        tracing::debug!(path = %path.display(), "NBD server listening");
        Ok(ServerHandle {
            path,
            ino,
            shared,
            wake: Some(wake_tx),
            accept: Some(accept),
        })
    }
}

fn bind(path: &Path) -> Result<UnixListener, NbdError> {
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            // A socket nobody listens on is left over from a dead server: replace it.
            if is_socket && UnixStream::connect(path).is_err() {
                fs::remove_file(path).map_err(|e| NbdError::io("remove stale socket", path, e))?;
                UnixListener::bind(path).map_err(|e| NbdError::io("bind", path, e))
            } else {
                Err(NbdError::AddrInUse { path: path.into() })
            }
        }
        Err(e) => Err(NbdError::io("bind", path, e)),
    }
}

pub(crate) struct Shared {
    pub exports: BTreeMap<String, Arc<Export>>,
    pub config: ServerConfig,
    shutting_down: AtomicBool,
    conns: Mutex<Conns>,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    /// A clone of every live connection's socket, to shut it down from outside.
    streams: HashMap<u64, UnixStream>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        // A poisoned lock only means a connection thread panicked; the map is still valid.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn accept_loop(listener: UnixListener, wake: UnixStream, shared: Arc<Shared>) {
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&wake, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "NBD accept: poll failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        if !fds[1].revents().is_empty() || shared.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => start_connection(&shared, stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "NBD accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
            }
        }
        shared.conns().threads.retain(|t| !t.is_finished());
    }
}

fn start_connection(shared: &Arc<Shared>, stream: UnixStream) {
    let mut conns = shared.conns();
    if shared.shutting_down.load(Ordering::SeqCst) {
        return;
    }
    if conns.streams.len() >= shared.config.max_connections {
        tracing::warn!(
            max = shared.config.max_connections,
            "NBD: too many connections, closing a new one"
        );
        return;
    }
    let clone = match stream
        .set_nonblocking(false)
        .and_then(|()| stream.try_clone())
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "NBD: cannot set up connection");
            return;
        }
    };
    let id = conns.next_id;
    conns.next_id += 1;
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("nbd-conn-{id}"))
        .spawn(move || {
            if let Err(e) = serve_connection(stream, &thread_shared) {
                tracing::debug!(connection = id, error = %e, "NBD connection ended with an error");
            }
            thread_shared.conns().streams.remove(&id);
        });
    match spawned {
        Ok(handle) => {
            conns.streams.insert(id, clone);
            conns.threads.push(handle);
        }
        Err(e) => tracing::warn!(error = %e, "NBD: cannot spawn a connection thread"),
    }
}

fn serve_connection(mut stream: UnixStream, shared: &Shared) -> Result<(), NbdError> {
    stream.set_read_timeout(Some(shared.config.handshake_timeout))?;
    stream.set_write_timeout(Some(shared.config.handshake_timeout))?;
    let negotiated = handshake::negotiate(&mut stream, &shared.exports, &shared.config);
    let negotiated = match negotiated {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(()),
        Err(e) => {
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
            return Err(e);
        }
    };
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    tracing::debug!(export = %negotiated.export.name, "NBD client entered transmission");
    transmission::serve(stream, negotiated, &shared.config)
}

/// A running server. [`shutdown`](Self::shutdown) (or dropping the handle) stops
/// accepting, stops reading requests, lets in-flight requests finish and be answered
/// (for up to [`ServerConfig::shutdown_grace`]), disconnects every client, joins every
/// thread and removes the socket file.
#[derive(Debug)]
pub struct ServerHandle {
    path: PathBuf,
    ino: (u64, u64),
    shared: Arc<Shared>,
    wake: Option<UnixStream>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("exports", &self.exports.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections currently open (negotiating or transmitting).
    pub fn connection_count(&self) -> usize {
        self.shared.conns().streams.len()
    }

    /// Stops the server: see the type's documentation. Blocks until every thread ended
    /// (a backend call in progress finishes first).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        if let Some(mut wake) = self.wake.take() {
            let _ = wake.write_all(&[1]);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // Stop reading first: in-flight requests finish and their replies go out (the
        // spec's graceful shutdown); after the grace period, cut whatever is left.
        let threads = {
            let mut conns = self.shared.conns();
            for stream in conns.streams.values() {
                let _ = stream.shutdown(Shutdown::Read);
            }
            std::mem::take(&mut conns.threads)
        };
        let deadline = Instant::now() + self.shared.config.shutdown_grace;
        while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for stream in self.shared.conns().streams.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for t in threads {
            let _ = t.join();
        }
        // Remove the socket only if it is still ours (not replaced by another server).
        if let Ok(m) = fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.ino
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop();
        }
    }
}
