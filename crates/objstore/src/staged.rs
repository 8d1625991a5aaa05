//! [`Staged`]: an object written but not yet durable or visible, and the [`CrashPoint`]s of
//! the group commit that installs it (see [`crate::ObjectStore::stage`] and
//! [`crate::ObjectStore::install`]).

use std::path::PathBuf;

use crate::ObjectKey;

/// An object written by [`crate::ObjectStore::stage`] and waiting for
/// [`crate::ObjectStore::install`]. Dropped uninstalled, it removes its bytes.
#[derive(Debug)]
pub struct Staged {
    key: ObjectKey,
    /// The temp file holding the bytes (local store); `None` once the object is stored.
    temp: Option<PathBuf>,
}

impl Staged {
    /// An object already stored durably under its key (backends without staging).
    pub fn stored(key: ObjectKey) -> Self {
        Staged { key, temp: None }
    }

    pub(crate) fn in_temp(key: ObjectKey, temp: PathBuf) -> Self {
        Staged {
            key,
            temp: Some(temp),
        }
    }

    /// The key it will be stored under.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// The temp file, if the bytes are still in one.
    pub(crate) fn temp(&self) -> Option<&PathBuf> {
        self.temp.as_ref()
    }

    /// Marks the bytes as renamed into place (nothing left to remove).
    pub(crate) fn installed(&mut self) {
        self.temp = None;
    }

    /// The key; the staged bytes (if still in a temp file) are removed.
    pub fn into_key(mut self) -> ObjectKey {
        self.remove_temp();
        self.key.clone()
    }

    fn remove_temp(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.remove_temp();
    }
}

/// A moment inside [`crate::ObjectStore::install`] at which a test can make the process
/// die (`abort`, as abrupt as `kill -9`) to check what a crash there leaves:
///
/// ```text
///  stage, stage, …        (temp files written, not synced)
///    ── BeforeContentSync ──
///  one sync of the batch's content
///    ── BeforeRename ──
///  rename each temp file to its key
///    ── BeforeNameSync ──
///  fsync each directory once → install returns → callers acknowledge
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The batch's bytes are written to temp files, not synced.
    BeforeContentSync,
    /// The content is durable; nothing is renamed yet.
    BeforeRename,
    /// Every object is under its key; the directories are not synced.
    BeforeNameSync,
}

impl CrashPoint {
    pub(crate) fn code(self) -> u8 {
        match self {
            CrashPoint::BeforeContentSync => 1,
            CrashPoint::BeforeRename => 2,
            CrashPoint::BeforeNameSync => 3,
        }
    }
}
