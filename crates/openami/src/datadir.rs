//! The data directory: where one openami instance keeps everything.
//!
//! ```text
//! <data-dir>/
//!   openami.lock      held exclusively by the process that owns the directory
//!   objects/          the object store: blocks, snapshot manifests, holds (see blockstore)
//!   volumes/<id>/     one directory per volume (see volume)
//! ```

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use blockstore::BlockStore;
use objstore::LocalFsStore;

/// An opened data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    pub store: Arc<BlockStore>,
    objects: Arc<LocalFsStore>,
}

/// Held while this process owns the data directory; released on drop.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

impl DataDir {
    /// Opens `root`, creating it when `create` is set.
    pub fn open(root: &Path, create: bool) -> anyhow::Result<Self> {
        if create {
            fs::create_dir_all(root)
                .with_context(|| format!("creating data directory {}", root.display()))?;
        } else if !root.is_dir() {
            bail!("data directory {} does not exist", root.display());
        }
        let objects = Arc::new(
            LocalFsStore::open(root.join("objects"))
                .with_context(|| format!("opening object store in {}", root.display()))?,
        );
        fs::create_dir_all(root.join("volumes")).context("creating volumes directory")?;
        let store = BlockStore::new(objects.clone());
        Ok(DataDir {
            root: root.into(),
            store,
            objects,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local object store (for maintenance such as removing stale temp files).
    pub fn local_objects(&self) -> &LocalFsStore {
        &self.objects
    }

    /// Takes exclusive ownership of the directory, or explains who has it.
    pub fn lock_exclusive(&self) -> anyhow::Result<OwnerLock> {
        let path = self.root.join("openami.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let owner = fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "data directory {} is in use by another openami process (pid {})",
                    self.root.display(),
                    owner.trim()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0).context("writing lock file")?;
        use std::io::Write;
        (&file)
            .write_all(std::process::id().to_string().as_bytes())
            .context("writing lock file")?;
        Ok(OwnerLock { _file: file })
    }
}
