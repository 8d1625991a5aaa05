//! Errors of the compute layer, each with the context needed to act on it.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong launching or controlling a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The spec cannot be turned into a VM.
    #[error("invalid VM spec: {0}")]
    InvalidSpec(String),
    /// QEMU could not be started or died while starting.
    #[error("QEMU failed to start: {message}")]
    Launch {
        /// What happened, with the tail of qemu.log when there is one.
        message: String,
    },
    /// The run directory already holds a running QEMU.
    #[error("a VM is already running in {0}")]
    AlreadyRunning(PathBuf),
    /// UEFI boot was asked for and no OVMF firmware was found.
    #[error("OVMF firmware not found (looked in {0})")]
    FirmwareNotFound(String),
    /// QMP answered a command with an error.
    #[error("QMP {command} failed: {class}: {desc}")]
    QmpCommand {
        /// The command that failed.
        command: String,
        /// QMP's error class (e.g. `GenericError`, `DeviceNotFound`).
        class: String,
        /// QMP's description.
        desc: String,
    },
    /// The QMP conversation broke (bad greeting, bad JSON, closed socket).
    #[error("QMP protocol: {0}")]
    QmpProtocol(String),
    /// Waiting for QEMU timed out.
    #[error("timed out after {seconds:.1} s waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long.
        seconds: f64,
    },
    /// The VM is no longer running, so the operation cannot be done.
    #[error("the VM is not running")]
    NotRunning,
    /// state.json could not be read or written.
    #[error("VM state {path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
