//! An NBD (Network Block Device) server on unix sockets, for serving openami volumes to
//! QEMU (`-blockdev driver=nbd,server.type=unix,server.path=…,export=…`), `qemu-img`,
//! `qemu-io`, `nbdinfo` and `nbdcopy`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(dev: Arc<dyn nbd::BlockDevice>) -> Result<(), nbd::NbdError> {
//! let handle = nbd::NbdServer::bind_unix("/run/openami/vol-1.sock", [("vol".to_string(), dev)])?;
//! // … QEMU connects to nbd+unix:///vol?socket=/run/openami/vol-1.sock …
//! handle.shutdown(); // stop accepting, disconnect clients, join every thread
//! # Ok(()) }
//! ```
//!
//! # Protocol
//!
//! Fixed newstyle negotiation only (no oldstyle), simple replies only (structured replies,
//! extended headers, block status, meta contexts and TLS are answered `NBD_REP_ERR_UNSUP`;
//! every client falls back to simple replies):
//!
//! ```text
//! S: "NBDMAGIC" "IHAVEOPT" u16 handshake flags (FIXED_NEWSTYLE | NO_ZEROES)
//! C: u32 client flags (unknown bits → hard disconnect)
//! repeat:
//!   C: "IHAVEOPT" u32 option u32 length <data>
//!   S: option replies (0x3e889045565a9 u32 option u32 type u32 length <data>)
//!      NBD_OPT_LIST        → NBD_REP_SERVER(u32 namelen, name[, description])… NBD_REP_ACK
//!      NBD_OPT_INFO / _GO  → data: u32 namelen, name, u16 n, n × u16 info type
//!                            NBD_REP_INFO(EXPORT: u16 0, u64 size, u16 tflags)
//!                            NBD_REP_INFO(BLOCK_SIZE: u16 3, u32 min 1, u32 pref 4096, u32 max)
//!                            [NBD_REP_INFO(NAME) / (DESCRIPTION) when asked] NBD_REP_ACK
//!                            unknown export → NBD_REP_ERR_UNKNOWN; GO then transmits
//!      NBD_OPT_EXPORT_NAME → (no header) u64 size, u16 tflags[, 124 zero bytes]; transmits;
//!                            an unknown export is a hard disconnect (the spec's only choice)
//!      NBD_OPT_ABORT       → NBD_REP_ACK, close
//!      anything else       → NBD_REP_ERR_UNSUP (its data is drained, never stored)
//! ```
//!
//! The empty export name selects the only export when exactly one is served.
//! Transmission flags: `HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES |
//! SEND_CACHE | CAN_MULTI_CONN`; a read-only device gets `HAS_FLAGS | READ_ONLY | SEND_FLUSH |
//! SEND_CACHE | CAN_MULTI_CONN`. The
//! request/reply layouts are drawn in [`proto`]. Commands and their errors:
//!
//! | command | action | errors |
//! |---|---|---|
//! | READ | [`BlockDevice::read_at`] | EINVAL past the end, EOVERFLOW above the max payload |
//! | WRITE | [`BlockDevice::write_at`], then flush if FUA | EPERM read-only, ENOSPC past the end, EOVERFLOW above the max payload (the data is drained) |
//! | WRITE_ZEROES | [`BlockDevice::write_zeroes`] (with NO_HOLE: explicit zero writes) | EPERM, ENOSPC |
//! | TRIM | [`BlockDevice::trim`] | EPERM, EINVAL past the end |
//! | FLUSH | [`BlockDevice::flush`] (global, hence CAN_MULTI_CONN) | |
//! | CACHE | no-op | EINVAL past the end |
//! | DISC | finish in-flight requests, close | |
//!
//! Unknown commands or flags not valid for a command answer EINVAL; backend errors map to
//! EIO (or EPERM/ENOSPC/EINVAL when the `io::Error` says so). A bad request magic is a
//! hard disconnect.
//!
//! # Threads, not async
//!
//! The backend ([`BlockDevice`]) is blocking file I/O, so the server uses std threads: one
//! accept thread (polling the listener and a wake-up socket), and per connection one reader
//! thread that parses requests (reading WRITE payloads) and a small worker pool (started on
//! demand, at most [`ServerConfig::workers_per_connection`]) that runs them and writes the
//! replies under a mutex, so pipelined requests run concurrently and may complete out of
//! order (matched by cookie). An idle connection costs two threads. In-flight requests and bytes per
//! connection are bounded ([`ServerConfig`]): the reader stops reading when the budget is
//! spent, so memory never follows what a client asks for. A tokio runtime would only move
//! the same blocking calls into `spawn_blocking`.

pub mod proto;

mod device;
mod handshake;
mod server;
mod transmission;

pub use device::{BlockDevice, FileDevice};
pub use server::{Export, NbdServer, ServerConfig, ServerHandle};

use std::path::PathBuf;

/// Errors of the NBD server.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// An I/O error while setting up the server (bind, poll, spawn…).
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved (the socket, a file).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The socket path is in use by a live server.
    #[error("socket {path} is in use by another server")]
    AddrInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// An export name is invalid (longer than 4096 bytes or containing NUL) or repeated.
    #[error("invalid export name {name:?}: {reason}")]
    InvalidExport {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The peer broke the protocol (connection-level; logged, never returned by the API).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A connection-level I/O error (logged, never returned by the API).
    #[error("connection: {0}")]
    Connection(#[from] std::io::Error),
}

impl NbdError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        NbdError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
