//! The data directory: where one openami instance keeps everything.
//!
//! ```text
//! <data-dir>/
//!   openami.lock              held exclusively by the process that owns the directory
//!   catalog.db (+ -wal, -shm) the SQLite catalog (see the catalog crate)
//!   regions/<region>/objects/ that region's object store: blocks, manifests, holds
//!   regions/<region>/volumes/<vol-id>/  one directory per volume
//!   block-token.key           32 random bytes: key of EBS direct block tokens
//!   imds-token.key            32 random bytes: key of instance metadata (IMDSv2) tokens
//! ```
//!
//! The root is canonicalized when opened, so whatever names the directory (its
//! machines' runtime directory, its owner file) does so the same way from any working
//! directory.
//!
//! Regions have separate block stores, as in AWS: copying a snapshot to another region
//! copies the blocks that region lacks.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockstore::BlockStore;
use objstore::{LocalFsStore, StoreError};

/// Errors opening or locking a data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The object store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory does not exist (and was not to be created).
    #[error("data directory {0} does not exist")]
    Missing(PathBuf),
    /// Another process owns the directory.
    #[error("data directory {path} is in use by another openami process (pid {pid})")]
    InUse {
        /// The directory.
        path: PathBuf,
        /// The owner's pid as it wrote it.
        pid: String,
    },
    /// A region name that cannot be a directory name.
    #[error("invalid region name {0:?}")]
    BadRegion(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError {
    let path = path.to_path_buf();
    move |source| DataDirError::Io { what, path, source }
}

/// True for region names like `us-east-1`: lowercase letters, digits and dashes.
pub fn valid_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// One region's storage.
#[derive(Debug, Clone)]
pub struct RegionStorage {
    /// Region name.
    pub name: String,
    /// Its block store.
    pub store: Arc<BlockStore>,
    /// Its object store (local filesystem).
    pub objects: Arc<LocalFsStore>,
    /// Where its volumes live.
    pub volumes_dir: PathBuf,
}

/// An opened data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
}

/// Held while this process owns the data directory; released on drop.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

impl DataDir {
    /// Opens `root`, creating it when `create` is set.
    pub fn open(root: &Path, create: bool) -> Result<Self, DataDirError> {
        if create {
            fs::create_dir_all(root).map_err(io("creating data directory", root))?;
        } else if !root.is_dir() {
            return Err(DataDirError::Missing(root.into()));
        }
        // Absolute, so that everything keyed by the directory (the machines' runtime
        // directory, its owner file) names it the same way from any working directory.
        let root = fs::canonicalize(root).map_err(io("resolving data directory", root))?;
        Ok(DataDir { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the catalog database.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.db")
    }

    /// Opens (creating) a region's storage.
    pub fn region(&self, name: &str) -> Result<RegionStorage, DataDirError> {
        if !valid_region_name(name) {
            return Err(DataDirError::BadRegion(name.into()));
        }
        let base = self.root.join("regions").join(name);
        let objects = Arc::new(LocalFsStore::open(base.join("objects"))?);
        let volumes_dir = base.join("volumes");
        fs::create_dir_all(&volumes_dir).map_err(io("creating", &volumes_dir))?;
        Ok(RegionStorage {
            name: name.into(),
            store: BlockStore::new(objects.clone()),
            objects,
            volumes_dir,
        })
    }

    /// Names of the regions that have storage here.
    pub fn existing_regions(&self) -> Result<Vec<String>, DataDirError> {
        let dir = self.root.join("regions");
        let mut names = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io("reading", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("reading", &dir))?;
            if let Ok(name) = entry.file_name().into_string()
                && valid_region_name(&name)
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// A 32-byte secret kept in `<data-dir>/<name>` (created, mode 0600, on first use).
    pub fn secret_key(&self, name: &str) -> Result<[u8; 32], DataDirError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root.join(name);
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                return Ok(key);
            }
            Ok(_) => {
                return Err(DataDirError::Io {
                    what: "reading key",
                    path,
                    source: std::io::Error::other("key file is not 32 bytes"),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("reading", &path)(e)),
        }
        let key = crate::ids::random_bytes::<32>();
        let temp = self.root.join(format!(".{name}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io("creating", &temp))?;
        file.write_all(&key).map_err(io("writing", &temp))?;
        file.sync_all().map_err(io("syncing", &temp))?;
        fs::rename(&temp, &path).map_err(io("renaming", &path))?;
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", &self.root))?;
        Ok(key)
    }

    /// Takes exclusive ownership of the directory, or explains who has it.
    pub fn lock_exclusive(&self) -> Result<OwnerLock, DataDirError> {
        let path = self.root.join("openami.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("opening", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&path).unwrap_or_default();
                return Err(DataDirError::InUse {
                    path: self.root.clone(),
                    pid: pid.trim().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("locking", &path)(e)),
        }
        file.set_len(0).map_err(io("writing", &path))?;
        (&file)
            .write_all(std::process::id().to_string().as_bytes())
            .map_err(io("writing", &path))?;
        Ok(OwnerLock { _file: file })
    }
}
