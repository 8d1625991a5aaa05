//! A small object-store abstraction: flat keys mapped to immutable byte objects.
//!
//! Everything openami persists in its data plane (blocks, snapshot manifests, holds) goes
//! through [`ObjectStore`]. The trait is deliberately tiny — put, get, head, delete, list —
//! so that every backend can be checked by the one [`conformance`] suite:
//!
//! * [`LocalFsStore`] — the embedded default: one file per object under a root directory,
//!   written crash-safely (temp file → fsync → rename → fsync directory).
//! * [`MemoryStore`] — for tests.
//! * [`S3Store`] — objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO…), for
//!   scale-out: every node sees the same blocks and manifests.
//!
//! Keys are validated by [`ObjectKey`]: lowercase ASCII letters, digits, `.`, `_`, `-`
//! and `/` separators, no empty segment and none starting with `.` (so no `..`), at most
//! 512 bytes. A key can never
//! name a path outside the store.

mod key;
mod local;
mod memory;
mod s3;
mod staged;

pub mod conformance;

pub use key::{KeyError, ObjectKey};
pub use local::LocalFsStore;
pub use memory::MemoryStore;
pub use s3::{CheckError, DEFAULT_REGION, S3Config, S3ConfigError, S3Credentials, S3Store};
pub use staged::{CrashPoint, Staged};

use std::fmt::Debug;

/// What a listing reports about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// The object's size in bytes.
    pub size: u64,
}

/// Errors from an object store; each carries the key or path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key} not found")]
    NotFound {
        /// The missing key.
        key: ObjectKey,
    },
    /// An I/O error on the backing medium.
    #[error("{op} {what}: {source}")]
    Io {
        /// The operation that failed (e.g. "write", "rename").
        op: &'static str,
        /// The key or path concerned.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key that the store refuses.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A remote backend (S3) failed the request, after any retries.
    #[error("{op} {what}: {source}")]
    Remote {
        /// The operation that failed (e.g. "put", "list").
        op: &'static str,
        /// The key or prefix concerned.
        what: String,
        /// What kind of failure it was.
        kind: RemoteErrorKind,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How a remote backend failed; layers above choose their answer by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The backend could not be reached, timed out or answered 5xx (after retries): the same
    /// request may succeed later (`ServiceUnavailable`).
    Unavailable,
    /// The backend said it is out of space or over quota.
    StorageFull,
    /// The backend refused the request: credentials, permissions, a missing bucket, or an
    /// answer that could not be understood (`InternalError`).
    Failed,
}

impl StoreError {
    /// True if this error means the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// True if the backing medium is out of space or over quota: the same operation may
    /// succeed once space is freed.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => is_storage_full(source),
            StoreError::Remote { kind, .. } => *kind == RemoteErrorKind::StorageFull,
            _ => false,
        }
    }

    /// True if the backing store could not be reached or did not answer (a remote backend
    /// that is down, overloaded or cut off): the same operation may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Remote {
                kind: RemoteErrorKind::Unavailable,
                ..
            }
        )
    }

    /// An equivalent error for another waiter of the same failed batch (group commit): same
    /// variant, key, operation and kind (so `is_storage_full` / `is_unavailable` answer
    /// alike), with the source reduced to its message.
    pub fn replicate(&self) -> Self {
        match self {
            StoreError::NotFound { key } => StoreError::NotFound { key: key.clone() },
            StoreError::Io { op, what, source } => StoreError::Io {
                op,
                what: what.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::Key(e) => StoreError::Key(e.clone()),
            StoreError::Remote {
                op,
                what,
                kind,
                source,
            } => StoreError::Remote {
                op,
                what: what.clone(),
                kind: *kind,
                source: source.to_string().into(),
            },
        }
    }

    pub(crate) fn io(op: &'static str, what: impl ToString, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            what: what.to_string(),
            source,
        }
    }
}

/// True if an I/O error means "no space left" (`ENOSPC`) or "quota exceeded" (`EDQUOT`).
/// Layers above use it to tell a full disk — a condition that clears when space is
/// freed — from other failures.
pub fn is_storage_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// A store of immutable objects addressed by [`ObjectKey`].
///
/// Contract (checked by [`conformance::run_all`]):
/// * `put` is atomic and durable when it returns: a reader sees the old object or the new
///   one, never a torn mix, and after a crash the new object is there in full.
/// * `put` replaces an existing object with the same key.
/// * `get`/`head` of a missing key: `NotFound` / `None`.
/// * `delete` of a missing key succeeds (idempotent).
/// * `list(prefix)` returns every object whose key starts with `prefix`, sorted by key.
pub trait ObjectStore: Send + Sync + Debug {
    /// Stores `data` under `key`, atomically and durably.
    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError>;

    /// Stores several objects; durable when it returns. Backends may batch the
    /// durability work (one sync for many objects), which is why this exists.
    fn put_many(&self, objects: &[(ObjectKey, Vec<u8>)]) -> Result<(), StoreError> {
        for (key, data) in objects {
            self.put(key, data)?;
        }
        Ok(())
    }

    /// Stores `data` under `key` atomically, with its content durable but its *name* not
    /// necessarily: after a crash the object is either complete or absent. Call
    /// [`persist_names`](Self::persist_names) to make a batch of such puts durable with
    /// less synchronisation than one `put` each.
    fn put_name_pending(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        self.put(key, data)
    }

    /// Makes the names of objects stored with `put_name_pending` durable.
    fn persist_names(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
        let _ = keys;
        Ok(())
    }

    /// Writes an object for `key` without making it durable or visible: the first half of
    /// a group commit. Its bytes come in `parts`, one after the other (a caller adding a
    /// header to a large buffer need not copy the buffer to join them). Nothing is under
    /// `key` until [`install`](Self::install) made the content durable and renamed it into
    /// place; a [`Staged`] dropped uninstalled removes its bytes. The default stores the
    /// object at once with `put` (durable and visible: a backend whose puts are durable on
    /// return, like S3, needs no more).
    fn stage(&self, key: &ObjectKey, parts: &[&[u8]]) -> Result<Staged, StoreError> {
        self.put(key, &parts.concat())?;
        Ok(Staged::stored(key.clone()))
    }

    /// The second half of a group commit: makes the content of every staged object durable
    /// (one sync for the batch where the backend can), then renames each into place, then
    /// makes the names durable — those of `staged` and of `names` (objects found already
    /// present, perhaps only just renamed by another batch) — syncing each directory once.
    /// When it returns every object of the batch survives a crash; no object is ever
    /// visible under its key before its content is durable.
    fn install(&self, staged: Vec<Staged>, names: &[ObjectKey]) -> Result<(), StoreError> {
        let mut keys: Vec<ObjectKey> = staged.into_iter().map(Staged::into_key).collect();
        keys.extend(names.iter().cloned());
        self.persist_names(&keys)
    }

    /// Reads a whole object.
    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError>;

    /// The object's metadata, or `None` if it does not exist.
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError>;

    /// Removes an object; succeeds if it does not exist.
    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Whether `get` is a local read (a file or memory, no network round trip), so that a
    /// caller may read an object to save CPU elsewhere — comparing a block's bytes with the
    /// stored copy instead of hashing them. False unless the backend says so.
    fn reads_are_local(&self) -> bool {
        false
    }
}
