//! Block store errors.

use objstore::StoreError;

use crate::{BlockHash, ResourceId};

/// Everything that can go wrong in the block store, with the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BlockStoreError {
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored block does not decode or does not match its hash.
    #[error("block {hash} is corrupt: {reason}")]
    CorruptBlock {
        /// The block's address.
        hash: BlockHash,
        /// What is wrong with it.
        reason: String,
    },
    /// A block a manifest refers to is not in the store.
    #[error("block {hash} is missing from the store")]
    MissingBlock {
        /// The block's address.
        hash: BlockHash,
    },
    /// A manifest object that does not decode.
    #[error("manifest of snapshot {id} is invalid: {reason}")]
    BadManifest {
        /// Whose manifest.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No live or retained manifest with this id.
    #[error("snapshot {id} not found")]
    SnapshotNotFound {
        /// The snapshot asked for.
        id: ResourceId,
    },
    /// A manifest with this id already exists.
    #[error("snapshot {id} already exists")]
    SnapshotExists {
        /// The duplicate id.
        id: ResourceId,
    },
    /// A write lease of a shared store could not be taken, or may have expired.
    #[error("write lease: {0}")]
    Lease(String),
    /// The caller's extra GC roots could not be read (GC did nothing).
    #[error("reading external GC roots: {0}")]
    ExternalRoots(String),
    /// A block buffer of the wrong length.
    #[error("a block must be exactly {expected} bytes, got {actual}")]
    BadBlockLength {
        /// Always [`crate::BLOCK_SIZE`].
        expected: usize,
        /// What was given.
        actual: usize,
    },
}

impl BlockStoreError {
    /// True if the object store is out of space or over quota (see
    /// [`objstore::is_storage_full`]).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, BlockStoreError::Store(e) if e.is_storage_full())
    }

    /// True if the object store could not be reached or did not answer (a remote store
    /// that is down): the same operation may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BlockStoreError::Store(e) if e.is_unavailable())
    }
}
