//! [`ImdsServer`]: binds an instance's unix socket and serves it, one thread per
//! connection (bounded); [`ImdsHandle`]: reports the last request and shuts it all down.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::http::{Limits, ParseOutcome, Response, parse_request};
use crate::time::now_ms;
use crate::{Error, MetadataSource, respond_to};

/// Tunables; [`Default`] suits a guest.
#[derive(Debug, Clone)]
pub struct ImdsConfig {
    /// Simultaneous connections on the socket; more get 503 and are closed. Default 32.
    pub max_connections: usize,
    /// A connection with no request in progress is closed after this. Default 10 s.
    pub idle_timeout: Duration,
    /// A request (head and body) must arrive within this from its first byte, or the
    /// connection is closed (slow clients cannot hold a thread). Default 10 s.
    pub request_timeout: Duration,
    /// Writing one response may block this long. Default 10 s.
    pub write_timeout: Duration,
    /// Request size limits.
    pub limits: Limits,
}

impl Default for ImdsConfig {
    fn default() -> Self {
        ImdsConfig {
            max_connections: 32,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// Entry point: see [`ImdsServer::bind`].
#[derive(Debug)]
pub struct ImdsServer;

impl ImdsServer {
    /// Serves the metadata `source` describes on a unix socket at `socket`, signing tokens
    /// with `token_key`, with the default [`ImdsConfig`]. A stale socket file (nobody
    /// listening) is replaced; a live one is [`Error::AddrInUse`].
    pub fn bind(
        socket: &Path,
        source: Arc<dyn MetadataSource>,
        token_key: [u8; 32],
    ) -> Result<ImdsHandle, Error> {
        Self::bind_with(socket, source, token_key, ImdsConfig::default())
    }

    /// [`bind`](Self::bind) with `config`.
    pub fn bind_with(
        socket: &Path,
        source: Arc<dyn MetadataSource>,
        token_key: [u8; 32],
        config: ImdsConfig,
    ) -> Result<ImdsHandle, Error> {
        if config.max_connections == 0
            || config.idle_timeout.is_zero()
            || config.request_timeout.is_zero()
            || config.write_timeout.is_zero()
            || config.limits.max_head == 0
        {
            return Err(Error::InvalidConfig(
                "connections, timeouts and the head limit must be positive",
            ));
        }
        let path = socket.to_path_buf();
        let listener = bind(&path)?;
        let ino = fs::metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| Error::io("stat", &path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set nonblocking", &path, e))?;
        let (wake_rx, wake_tx) =
            UnixStream::pair().map_err(|e| Error::io("socketpair", &path, e))?;
        let shared = Arc::new(Shared {
            source,
            key: token_key,
            config,
            last_request_ms: AtomicI64::new(NEVER),
            shutting_down: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("imds-accept".into())
            .spawn(move || accept_loop(listener, wake_rx, accept_shared))
            .map_err(|e| Error::io("spawn accept thread for", &path, e))?;
        tracing::debug!(path = %path.display(), "IMDS listening");
        Ok(ImdsHandle {
            path,
            ino,
            shared,
            stop: Mutex::new(Some((wake_tx, accept))),
        })
    }
}

const NEVER: i64 = i64::MIN;

fn bind(path: &Path) -> Result<UnixListener, Error> {
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            // A socket nobody listens on is left over from a dead server: replace it.
            if is_socket && UnixStream::connect(path).is_err() {
                fs::remove_file(path).map_err(|e| Error::io("remove stale socket", path, e))?;
                UnixListener::bind(path).map_err(|e| Error::io("bind", path, e))
            } else {
                Err(Error::AddrInUse { path: path.into() })
            }
        }
        Err(e) => Err(Error::io("bind", path, e)),
    }
}

struct Shared {
    source: Arc<dyn MetadataSource>,
    key: [u8; 32],
    config: ImdsConfig,
    last_request_ms: AtomicI64,
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
                tracing::error!(error = %e, "IMDS accept: poll failed");
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
                    tracing::warn!(error = %e, "IMDS accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
            }
        }
        shared.conns().threads.retain(|t| !t.is_finished());
    }
}

fn start_connection(shared: &Arc<Shared>, mut stream: UnixStream) {
    let mut conns = shared.conns();
    if shared.shutting_down.load(Ordering::SeqCst) {
        return;
    }
    if conns.streams.len() >= shared.config.max_connections {
        tracing::warn!(
            max = shared.config.max_connections,
            "IMDS: too many connections, refusing a new one"
        );
        // Best effort, never blocking the accept loop: a fresh socket's buffer is empty.
        let mut busy = Response::error(503);
        busy.close = true;
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(&busy.to_bytes(now_ms()));
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let clone = match stream
        .set_nonblocking(false)
        .and_then(|()| stream.try_clone())
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "IMDS: cannot set up a connection");
            return;
        }
    };
    let id = conns.next_id;
    conns.next_id += 1;
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("imds-conn-{id}"))
        .spawn(move || {
            if let Err(e) = serve_connection(stream, &thread_shared) {
                tracing::debug!(connection = id, error = %e, "IMDS connection ended with an error");
            }
            thread_shared.conns().streams.remove(&id);
        });
    match spawned {
        Ok(handle) => {
            conns.streams.insert(id, clone);
            conns.threads.push(handle);
        }
        Err(e) => tracing::warn!(error = %e, "IMDS: cannot spawn a connection thread"),
    }
}

/// Why reading a request stopped.
enum ReadEnd {
    /// Clean EOF between requests.
    Eof,
    /// No bytes in time (idle) or the request did not finish in time.
    Timeout { partial: bool },
}

/// Reads more bytes into `buf` until `deadline`; `Ok(n)` with n > 0, or why not.
fn read_more(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<Result<usize, ReadEnd>> {
    let mut chunk = [0u8; 8192];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(Err(ReadEnd::Timeout {
                partial: !buf.is_empty(),
            }));
        }
        stream.set_read_timeout(Some(remaining))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(Err(ReadEnd::Eof)),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(Ok(n));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

fn serve_connection(mut stream: UnixStream, shared: &Shared) -> io::Result<()> {
    let config = &shared.config;
    stream.set_write_timeout(Some(config.write_timeout))?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // The head: idle deadline while nothing has arrived, then the request deadline.
        let idle_deadline = Instant::now() + config.idle_timeout;
        let mut request_deadline = None;
        let (request, head_len) = loop {
            if !buf.is_empty() && request_deadline.is_none() {
                request_deadline = Some(Instant::now() + config.request_timeout);
            }
            if !buf.is_empty() {
                match parse_request(&buf, &config.limits) {
                    ParseOutcome::Complete { request, head_len } => break (request, head_len),
                    ParseOutcome::Partial => {}
                    ParseOutcome::Invalid(response) => {
                        return refuse(&mut stream, response);
                    }
                }
            }
            match read_more(
                &mut stream,
                &mut buf,
                request_deadline.unwrap_or(idle_deadline),
            )? {
                Ok(_) => {}
                Err(ReadEnd::Eof) => return Ok(()),
                Err(ReadEnd::Timeout { partial: false }) => return Ok(()),
                Err(ReadEnd::Timeout { partial: true }) => {
                    return refuse(&mut stream, Response::error(408));
                }
            }
        };
        // The body (bounded by the limits), which the service ignores.
        let total =
            head_len.saturating_add(usize::try_from(request.content_length).unwrap_or(usize::MAX));
        let deadline = request_deadline.unwrap_or(idle_deadline);
        while buf.len() < total {
            match read_more(&mut stream, &mut buf, deadline)? {
                Ok(_) => {}
                Err(ReadEnd::Eof) => return Ok(()),
                Err(ReadEnd::Timeout { .. }) => return refuse(&mut stream, Response::error(408)),
            }
        }
        let now = now_ms();
        shared.last_request_ms.store(now, Ordering::SeqCst);
        let meta = shared.source.metadata();
        let response = respond_to(&request, meta.as_ref(), &shared.key, now);
        tracing::debug!(
            method = %request.method,
            target = %request.target,
            status = response.status,
            "IMDS request"
        );
        stream.write_all(&response.to_bytes(now))?;
        buf.drain(..total);
        if response.close {
            let _ = stream.shutdown(Shutdown::Write);
            linger(&mut stream);
            return Ok(());
        }
    }
}

/// Sends an error response to a request that will not be read further, then closes.
fn refuse(stream: &mut UnixStream, mut response: Response) -> io::Result<()> {
    response.close = true;
    tracing::debug!(status = response.status, "IMDS refused a request");
    let _ = stream.write_all(&response.to_bytes(now_ms()));
    let _ = stream.shutdown(Shutdown::Write);
    linger(stream);
    Ok(())
}

/// Reads and drops what the client still sends (briefly, boundedly), so that a TCP peer
/// behind slirp gets the response before the reset that closing with unread data causes.
fn linger(stream: &mut UnixStream) {
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut drained = 0usize;
    let mut chunk = [0u8; 8192];
    while drained < (1 << 20) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// A running server. [`shutdown`](Self::shutdown) (or dropping the handle) stops accepting,
/// disconnects every client, joins every thread and removes the socket file.
pub struct ImdsHandle {
    path: PathBuf,
    ino: (u64, u64),
    shared: Arc<Shared>,
    stop: Mutex<Option<(UnixStream, JoinHandle<()>)>>,
}

impl std::fmt::Debug for ImdsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImdsHandle")
            .field("path", &self.path)
            .field("last_request_ms", &self.last_request_ms())
            .finish_non_exhaustive()
    }
}

impl ImdsHandle {
    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// When the last complete request arrived (unix milliseconds), `None` if none has:
    /// tells whether the guest reached its metadata service.
    pub fn last_request_ms(&self) -> Option<i64> {
        match self.shared.last_request_ms.load(Ordering::SeqCst) {
            NEVER => None,
            ms => Some(ms),
        }
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.shared.conns().streams.len()
    }

    /// Stops the server (idempotent): see the type's documentation. Blocks until every
    /// thread ended.
    pub fn shutdown(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((mut wake, accept)) = stop else {
            return;
        };
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let _ = wake.write_all(&[1]);
        let _ = accept.join();
        let threads = {
            let mut conns = self.shared.conns();
            for stream in conns.streams.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut conns.threads)
        };
        for t in threads {
            let _ = t.join();
        }
        // Remove the socket only if it is still ours (not replaced by another server).
        if let Ok(m) = fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.ino
        {
            let _ = fs::remove_file(&self.path);
        }
        tracing::debug!(path = %self.path.display(), "IMDS stopped");
    }
}

impl Drop for ImdsHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
