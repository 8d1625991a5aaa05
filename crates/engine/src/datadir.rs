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
//! copies the blocks that region lacks. With [`DataDir::with_s3_objects`] a region's
//! objects live in an S3-compatible bucket instead, under `<prefix>/regions/<region>/`
//! (the same layout as `regions/<region>/objects/`); its volumes stay in the data directory.
//!
//! Everything here is owner-only: the directories openami creates are 0700, the catalog
//! and the key files 0600 (SQLite gives `-wal`/`-shm` the database's mode). Opening an
//! existing directory tightens its top level, the catalog and the keys, logging each
//! change. (`openami serve` also sets its umask to 077, so the object stores' and the
//! volumes' files are created owner-only too.)

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockstore::BlockStore;
use objstore::{LocalFsStore, ObjectStore, S3Config, S3Store, StoreError};

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
    /// The S3 object store is misconfigured or cannot be used (one line).
    #[error("S3 object store of region {region}: {message}")]
    S3 {
        /// The region.
        region: String,
        /// What is wrong.
        message: String,
    },
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
    /// Its object store.
    pub objects: Arc<dyn ObjectStore>,
    /// The same store when it is the local filesystem (for its maintenance).
    pub local_objects: Option<Arc<LocalFsStore>>,
    /// Where its volumes live.
    pub volumes_dir: PathBuf,
}

/// An opened data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Where the regions' objects live when not under `regions/<region>/objects/`.
    s3: Option<S3Config>,
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
            private_dir(root).map_err(io("creating data directory", root))?;
        } else if !root.is_dir() {
            return Err(DataDirError::Missing(root.into()));
        }
        // Absolute, so that everything keyed by the directory (the machines' runtime
        // directory, its owner file) names it the same way from any working directory.
        let root = fs::canonicalize(root).map_err(io("resolving data directory", root))?;
        let dir = DataDir { root, s3: None };
        dir.tighten();
        let catalog = dir.catalog_path();
        // Created empty (SQLite takes an empty file as a new database) so that it, and the
        // -wal/-shm files SQLite makes with its mode, are owner-only from the start.
        if !catalog.exists() {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&catalog)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("creating", &catalog)(e)),
            }
        }
        Ok(dir)
    }

    /// Makes an existing directory owner-only where it is not: the directory itself (and
    /// `regions/`, `audit/`) 0700, the catalog and the key files 0600. Each change is
    /// logged; a change that fails is logged and skipped (the owner may differ).
    fn tighten(&self) {
        const DIRS: [&str; 3] = ["", "regions", "audit"];
        const FILES: [&str; 5] = [
            "catalog.db",
            "catalog.db-wal",
            "catalog.db-shm",
            "block-token.key",
            "imds-token.key",
        ];
        let wanted = DIRS
            .iter()
            .map(|d| (*d, 0o700))
            .chain(FILES.iter().map(|f| (*f, 0o600)));
        for (name, mode) in wanted {
            let path = if name.is_empty() {
                self.root.clone()
            } else {
                self.root.join(name)
            };
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let old = meta.permissions().mode() & 0o7777;
            if old & 0o077 == 0 || meta.file_type().is_symlink() {
                continue;
            }
            match fs::set_permissions(&path, fs::Permissions::from_mode(mode)) {
                Ok(()) => tracing::warn!(
                    path = %path.display(),
                    old = format!("{old:o}"),
                    new = format!("{mode:o}"),
                    "data directory: made owner-only"
                ),
                Err(e) => tracing::error!(
                    path = %path.display(),
                    mode = format!("{old:o}"),
                    error = %e,
                    "data directory: cannot make owner-only"
                ),
            }
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the catalog database.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.db")
    }

    /// Keeps the regions' objects in the S3 bucket `config` names (region `r` under
    /// `<prefix>/regions/r/`) instead of the data directory.
    pub fn with_s3_objects(mut self, config: S3Config) -> Self {
        self.s3 = Some(config);
        self
    }

    /// Opens (creating) a region's storage. With S3 objects, probes the bucket first: an
    /// endpoint that does not answer, a missing bucket or refused credentials fail here.
    pub fn region(&self, name: &str) -> Result<RegionStorage, DataDirError> {
        if !valid_region_name(name) {
            return Err(DataDirError::BadRegion(name.into()));
        }
        let base = self.root.join("regions").join(name);
        let (objects, local_objects): (Arc<dyn ObjectStore>, _) = match &self.s3 {
            Some(config) => (Arc::new(self.s3_region(config, name)?), None),
            None => {
                let objects_dir = base.join("objects");
                private_dir(&objects_dir).map_err(io("creating", &objects_dir))?;
                let local = Arc::new(LocalFsStore::open(objects_dir)?);
                (local.clone(), Some(local))
            }
        };
        let volumes_dir = base.join("volumes");
        private_dir(&volumes_dir).map_err(io("creating", &volumes_dir))?;
        Ok(RegionStorage {
            name: name.into(),
            store: BlockStore::new(objects.clone()),
            objects,
            local_objects,
            volumes_dir,
        })
    }

    fn s3_region(&self, config: &S3Config, region: &str) -> Result<S3Store, DataDirError> {
        let fail = |message: String| DataDirError::S3 {
            region: region.into(),
            message,
        };
        let mut config = config.clone();
        config.prefix = match config.prefix.as_str() {
            "" => format!("regions/{region}"),
            prefix => format!("{prefix}/regions/{region}"),
        };
        let store = S3Store::open(config).map_err(|e| fail(e.to_string()))?;
        store.check().map_err(|e| fail(e.to_string()))?;
        Ok(store)
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

    /// `<data-dir>/<name>`, a directory created (with its parents) owner-only, for data
    /// kept beside the catalog (the audit log).
    pub fn private_subdir(&self, name: &str) -> Result<PathBuf, DataDirError> {
        let path = self.root.join(name);
        private_dir(&path).map_err(io("creating", &path))?;
        Ok(path)
    }

    /// Takes exclusive ownership of the directory, or explains who has it.
    pub fn lock_exclusive(&self) -> Result<OwnerLock, DataDirError> {
        let path = self.root.join("openami.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
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

/// Creates `path` and its missing parents with mode 0700 (existing ones are left as they
/// are).
fn private_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap()
    }

    #[test]
    fn created_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let dir = DataDir::open(&root, true).unwrap();
        let region = dir.region("us-east-1").unwrap();
        dir.secret_key("imds-token.key").unwrap();
        let _lock = dir.lock_exclusive().unwrap();
        let audit = dir.private_subdir("audit").unwrap();
        assert_eq!(mode(dir.root()), 0o700);
        assert_eq!(mode(&dir.catalog_path()), 0o600);
        assert_eq!(mode(&dir.root().join("imds-token.key")), 0o600);
        assert_eq!(mode(&dir.root().join("openami.lock")), 0o600);
        assert_eq!(mode(&region.volumes_dir), 0o700);
        assert_eq!(mode(&dir.root().join("regions/us-east-1/objects")), 0o700);
        assert_eq!(mode(&dir.root().join("regions")), 0o700);
        assert_eq!(mode(&audit), 0o700);
    }

    #[test]
    fn existing_dir_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["catalog.db", "catalog.db-wal", "imds-token.key"] {
            fs::write(root.join(f), b"").unwrap();
            fs::set_permissions(root.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        let other = root.join("notes.txt");
        fs::write(&other, b"").unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).unwrap();
        let dir = DataDir::open(&root, false).unwrap();
        assert_eq!(mode(dir.root()), 0o700);
        assert_eq!(mode(&root.join("catalog.db")), 0o600);
        assert_eq!(mode(&root.join("catalog.db-wal")), 0o600);
        assert_eq!(mode(&root.join("imds-token.key")), 0o600);
        // Only what openami owns is changed.
        assert_eq!(mode(&other), 0o644);
    }
}
