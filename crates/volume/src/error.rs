//! Volume errors.

use std::path::PathBuf;

use blockstore::{BlockStoreError, ResourceId};

/// What can go wrong with a volume, with the volume or path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A local file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The block store failed (e.g. a backing block is missing or corrupt).
    #[error(transparent)]
    Store(#[from] BlockStoreError),
    /// An access outside the volume.
    #[error("range {offset}+{len} is outside the volume's {size} bytes")]
    OutOfRange {
        /// Start of the access.
        offset: u64,
        /// Its length.
        len: u64,
        /// The volume size.
        size: u64,
    },
    /// A size that is not allowed.
    #[error("invalid volume size {size}: {reason}")]
    InvalidSize {
        /// The size asked for.
        size: u64,
        /// Why it is refused.
        reason: String,
    },
    /// The state file does not decode.
    #[error("volume state {path} is invalid: {reason}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot of this volume is already being taken.
    #[error("volume {id} already has a snapshot in progress")]
    SnapshotInProgress {
        /// The volume.
        id: ResourceId,
    },
    /// The volume directory already exists.
    #[error("volume directory {path} already exists")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// The volume was being deleted.
    #[error("volume {id} is being deleted")]
    Deleted {
        /// The volume.
        id: ResourceId,
    },
    /// The snapshot failed (its first error).
    #[error("snapshot {id} failed: {reason}")]
    SnapshotFailed {
        /// The snapshot.
        id: ResourceId,
        /// The first error.
        reason: String,
    },
}

impl VolumeError {
    /// True if the volume's files or the block store are out of space or over quota.
    pub fn is_storage_full(&self) -> bool {
        match self {
            VolumeError::Io { source, .. } => objstore::is_storage_full(source),
            VolumeError::Store(e) => e.is_storage_full(),
            _ => false,
        }
    }

    /// True if the block store's object store could not be reached (see
    /// [`blockstore::BlockStoreError::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, VolumeError::Store(e) if e.is_unavailable())
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VolumeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
