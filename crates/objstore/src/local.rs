//! The local-filesystem [`ObjectStore`]: one file per object.
//!
//! ```text
//! <root>/
//!   .tmp/<pid>-<n>      objects being written; renamed into place when complete
//!   <key>               one file per object; key segments are directories
//! ```
//!
//! A put writes the temp file, fsyncs it, renames it over the final name and fsyncs the
//! parent directory (and any directory it had to create), so after a crash an object is
//! either absent or complete; a put that fails (a full disk: ENOSPC, EDQUOT) removes its
//! temp file and leaves the old object, if any. `put_name_pending` skips the directory sync, and
//! `persist_names` syncs each directory of a batch once. Temp files left by a crash are removed by
//! [`LocalFsStore::remove_stale_temp_files`].
//!
//! # Group commit: `stage` then `install`
//!
//! `stage` only writes the temp file (no sync, no rename). `install` takes a batch of staged
//! objects and makes them durable with as few syncs as the batch allows:
//!
//! ```text
//!  writers (in parallel)           the one thread that installs the batch
//!  ─────────────────────           ───────────────────────────────────────
//!  .tmp/<pid>-<n> ← bytes  ──┐
//!  .tmp/<pid>-<m> ← bytes  ──┼──▶  1. content durable: fdatasync of each file (up to 8 at
//!  .tmp/<pid>-<k> ← bytes  ──┘        once), or ONE syncfs(2) for a batch of over 64
//!                                  2. create the directories the batch lacks (each
//!                                     changed parent fsynced once), then rename each
//!                                     temp file to <key>
//!                                  3. names durable: fsync each parent directory once
//!                                     (also those of `names`: objects found present, maybe
//!                                     not yet synced), or one more syncfs when the batch
//!                                     spans more than 64 directories
//!                                  → install returns; only now may callers acknowledge
//! ```
//!
//! Because step 1 precedes step 2, no object is ever under its key with content that a
//! power loss could tear: a later writer that finds the key present (dedup) may trust it.
//! A crash before step 2 leaves only temp files (removed at the next start); between 2
//! and 3 complete objects whose names may or may not survive — none was acknowledged.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::{CrashPoint, ObjectKey, ObjectMeta, ObjectStore, Staged, StoreError};

const TEMP_DIR: &str = ".tmp";

/// Objects as files under a root directory.
#[derive(Debug)]
pub struct LocalFsStore {
    root: PathBuf,
    temp_counter: AtomicU64,
    /// [`CrashPoint::code`] at which `install` aborts the process (tests); 0: none.
    crash_at: AtomicU8,
}

impl LocalFsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        create_dir_durably(&root.join(TEMP_DIR))?;
        Ok(Self {
            root,
            temp_counter: AtomicU64::new(0),
            crash_at: AtomicU8::new(0),
        })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temp files older than `min_age` (left behind by crashed writers).
    /// Returns how many were removed.
    pub fn remove_stale_temp_files(&self, min_age: Duration) -> Result<usize, StoreError> {
        let dir = self.root.join(TEMP_DIR);
        let entries =
            fs::read_dir(&dir).map_err(|e| StoreError::io("read dir", dir.display(), e))?;
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read dir", dir.display(), e))?;
            let modified = entry.metadata().and_then(|m| m.modified());
            let old_enough = match modified {
                Ok(time) => now.duration_since(time).unwrap_or_default() >= min_age,
                Err(_) => true,
            };
            if old_enough {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove", entry.path().display(), e)),
                }
            }
        }
        Ok(removed)
    }

    /// Makes `install` abort the process at `point` (crash tests only: the process dies
    /// as abruptly as with `kill -9`). `None` disarms it.
    pub fn crash_at(&self, point: Option<CrashPoint>) {
        self.crash_at
            .store(point.map_or(0, CrashPoint::code), Ordering::SeqCst);
    }

    fn crash_point(&self, point: CrashPoint) {
        if self.crash_at.load(Ordering::SeqCst) == point.code() {
            std::process::abort();
        }
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn write_temp(&self, data: &[u8]) -> Result<PathBuf, StoreError> {
        self.write_temp_file(&[data], true)
    }

    /// Writes `parts`, one after the other, to a new temp file, synced if `sync`.
    fn write_temp_file(&self, parts: &[&[u8]], sync: bool) -> Result<PathBuf, StoreError> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join(TEMP_DIR)
            .join(format!("{}-{n}", std::process::id()));
        let mut file =
            File::create(&path).map_err(|e| StoreError::io("create", path.display(), e))?;
        // On any failure (ENOSPC included) the temp file goes: nothing half-written is
        // ever renamed into place.
        write_all_parts(&mut file, parts)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
            .map_err(|e| {
                let _ = fs::remove_file(&path);
                StoreError::io("write", path.display(), e)
            })?;
        Ok(path)
    }

    /// Makes the content of `temps` durable: fdatasync of each file (several at once) for a
    /// small batch, one `syncfs` of the store's filesystem for a large one. `syncfs` also
    /// writes every other dirty page of the filesystem (volumes written by guests, say),
    /// so a small batch does not pay for those.
    fn sync_content(&self, temps: &[&PathBuf]) -> Result<(), StoreError> {
        if temps.len() > SYNC_EACH_MAX {
            return self.syncfs();
        }
        sync_each(temps, |path| {
            File::open(path)
                .and_then(|f| f.sync_data())
                .map_err(|e| StoreError::io("sync", path.display(), e))
        })
    }

    /// `syncfs(2)` of the filesystem the store is on: every file's data and metadata
    /// (directory entries included) durable.
    fn syncfs(&self) -> Result<(), StoreError> {
        let dir = self.root.join(TEMP_DIR);
        File::open(&dir)
            .and_then(|d| rustix::fs::syncfs(&d).map_err(std::io::Error::from))
            .map_err(|e| StoreError::io("syncfs", dir.display(), e))
    }

    /// Creates the directories `staged` objects go into that do not exist yet, syncing each
    /// changed parent once for the whole batch (not once per new directory: the first
    /// batches of a young store create most of the 256 `blocks/hh/` directories).
    fn create_dirs_of(&self, staged: &[Staged]) -> Result<(), StoreError> {
        let mut changed = BTreeSet::new();
        for object in staged.iter().filter(|o| o.temp().is_some()) {
            let path = self.path_of(object.key());
            create_dir_unsynced(path.parent().unwrap_or(&self.root), &mut changed)?;
        }
        let changed: Vec<&PathBuf> = changed.iter().collect();
        sync_each(&changed, sync_dir)
    }

    /// Renames a complete temp file into place; the caller syncs the parent directory.
    fn rename_into_place(&self, temp: &Path, key: &ObjectKey) -> Result<PathBuf, StoreError> {
        let target = self.path_of(key);
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        if let Err(e) = create_dir_durably(&parent) {
            let _ = fs::remove_file(temp);
            return Err(e);
        }
        fs::rename(temp, &target).map_err(|e| {
            let _ = fs::remove_file(temp);
            StoreError::io("rename", key, e)
        })?;
        Ok(parent)
    }
}

/// Writes every byte of `parts` in order with vectored writes (`Write::write_all_vectored`
/// is not stable yet).
fn write_all_parts(file: &mut File, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0); // drops leading empty parts
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `dir` and any missing ancestors, syncing each parent whose entries changed.
fn create_dir_durably(dir: &Path) -> Result<(), StoreError> {
    let mut changed = BTreeSet::new();
    create_dir_unsynced(dir, &mut changed)?;
    changed.iter().try_for_each(|parent| sync_dir(parent))
}

/// Creates `dir` and any missing ancestors, adding the parent of each directory it created
/// to `changed`: the caller syncs those before anything in them is acknowledged.
fn create_dir_unsynced(dir: &Path, changed: &mut BTreeSet<PathBuf>) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_unsynced(parent, changed)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(StoreError::io("create dir", dir.display(), e)),
    }
    if let Some(parent) = dir.parent() {
        changed.insert(parent.to_path_buf());
    }
    Ok(())
}

/// Batches up to this many files (or directories) are synced one by one, several at once;
/// larger ones with one `syncfs`.
const SYNC_EACH_MAX: usize = 64;

/// Threads that sync the files of one batch at once: the syncs wait on the disk, not the
/// CPU, and the device takes their writes together.
const SYNC_THREADS: usize = 8;

/// Runs `sync` on every path, on up to [`SYNC_THREADS`] threads; the first error wins.
fn sync_each<P: AsRef<Path> + Sync>(
    paths: &[P],
    sync: impl Fn(&Path) -> Result<(), StoreError> + Sync,
) -> Result<(), StoreError> {
    if paths.len() <= 1 {
        return paths.iter().try_for_each(|p| sync(p.as_ref()));
    }
    let per_thread = paths.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(per_thread)
            .map(|chunk| {
                let sync = &sync;
                scope.spawn(move || chunk.iter().try_for_each(|p| sync(p.as_ref())))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(StoreError::io(
                    "sync",
                    "a batch",
                    std::io::Error::other("a sync thread panicked"),
                ))
            })
        })
    })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync dir", dir.display(), e))
}

impl ObjectStore for LocalFsStore {
    fn reads_are_local(&self) -> bool {
        true
    }

    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        let temp = self.write_temp(data)?;
        let parent = self.rename_into_place(&temp, key)?;
        sync_dir(&parent)
    }

    fn put_name_pending(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        let temp = self.write_temp(data)?;
        self.rename_into_place(&temp, key)?;
        Ok(())
    }

    fn persist_names(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
        let dirs: BTreeSet<PathBuf> = keys
            .iter()
            .map(|k| self.path_of(k).parent().unwrap_or(&self.root).to_path_buf())
            .collect();
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    fn stage(&self, key: &ObjectKey, parts: &[&[u8]]) -> Result<Staged, StoreError> {
        let temp = self.write_temp_file(parts, false)?;
        Ok(Staged::in_temp(key.clone(), temp))
    }

    fn install(&self, mut staged: Vec<Staged>, names: &[ObjectKey]) -> Result<(), StoreError> {
        self.crash_point(CrashPoint::BeforeContentSync);
        let temps: Vec<&PathBuf> = staged.iter().filter_map(Staged::temp).collect();
        self.sync_content(&temps)?;
        self.crash_point(CrashPoint::BeforeRename);
        self.create_dirs_of(&staged)?;
        let mut dirs = BTreeSet::new();
        for object in &mut staged {
            if let Some(temp) = object.temp().cloned() {
                // On failure the rename removed the temp file; the rest of the batch is
                // removed by the drop of `staged`.
                dirs.insert(self.rename_into_place(&temp, object.key())?);
                object.installed();
            }
        }
        for key in names {
            dirs.insert(
                self.path_of(key)
                    .parent()
                    .unwrap_or(&self.root)
                    .to_path_buf(),
            );
        }
        self.crash_point(CrashPoint::BeforeNameSync);
        if dirs.len() > SYNC_EACH_MAX {
            // Blocks spread over the 256 `blocks/hh/` directories: one syncfs instead of
            // an fsync per directory.
            return self.syncfs();
        }
        let dirs: Vec<&PathBuf> = dirs.iter().collect();
        sync_each(&dirs, sync_dir)
    }

    fn put_many(&self, objects: &[(ObjectKey, Vec<u8>)]) -> Result<(), StoreError> {
        let mut dirs = BTreeSet::new();
        for (key, data) in objects {
            let temp = self.write_temp(data)?;
            dirs.insert(self.rename_into_place(&temp, key)?);
        }
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        fs::read(self.path_of(key)).map_err(|e| match e.kind() {
            ErrorKind::NotFound => StoreError::NotFound { key: key.clone() },
            _ => StoreError::io("read", key, e),
        })
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        match fs::metadata(self.path_of(key)) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: meta.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("stat", key, e)),
        }
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("delete", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Start the walk at the deepest directory the prefix fully names.
        let start_rel = match prefix.rfind('/') {
            Some(slash) => &prefix[..slash],
            None => "",
        };
        if start_rel.split('/').any(|s| s.starts_with('.')) {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut pending = vec![(self.root.join(start_rel), start_rel.to_string())];
        while let Some((dir, rel)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("read dir", dir.display(), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io("read dir", dir.display(), e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue; // not a name this store ever writes
                };
                if name.starts_with('.') {
                    continue;
                }
                let child_rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let file_type = entry
                    .file_type()
                    .map_err(|e| StoreError::io("stat", entry.path().display(), e))?;
                if file_type.is_dir() {
                    if child_rel.starts_with(prefix) || prefix.starts_with(&child_rel) {
                        pending.push((entry.path(), child_rel));
                    }
                } else if file_type.is_file() && child_rel.starts_with(prefix) {
                    let Ok(key) = ObjectKey::new(child_rel) else {
                        continue;
                    };
                    let size = match entry.metadata() {
                        Ok(meta) => meta.len(),
                        // Deleted between readdir and stat: not there any more.
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => return Err(StoreError::io("stat", entry.path().display(), e)),
                    };
                    found.push(ObjectMeta { key, size });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::run_all(&LocalFsStore::open(dir.path()).unwrap());
        let dir2 = tempfile::tempdir().unwrap();
        crate::conformance::run_concurrent(std::sync::Arc::new(
            LocalFsStore::open(dir2.path()).unwrap(),
        ));
    }

    #[test]
    fn objects_survive_reopen_and_temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let key = ObjectKey::new("a/b/c").unwrap();
        {
            let store = LocalFsStore::open(dir.path()).unwrap();
            store.put(&key, b"hello").unwrap();
            fs::write(dir.path().join(".tmp/999-1"), b"torn").unwrap();
        }
        let store = LocalFsStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&key).unwrap(), b"hello");
        assert_eq!(store.remove_stale_temp_files(Duration::ZERO).unwrap(), 1);
        assert!(store.list("").unwrap().iter().all(|m| m.key == key));
    }

    #[test]
    fn staged_objects_have_no_name_until_installed_and_dropped_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFsStore::open(dir.path()).unwrap();
        let (a, b) = (
            ObjectKey::new("s/a").unwrap(),
            ObjectKey::new("s/b").unwrap(),
        );
        let staged = vec![
            store.stage(&a, &[b"aa"]).unwrap(),
            store.stage(&b, &[b"b", b"b"]).unwrap(),
        ];
        let dropped = store
            .stage(&ObjectKey::new("s/c").unwrap(), &[b"cc"])
            .unwrap();
        assert!(store.head(&a).unwrap().is_none(), "no name before install");
        assert_eq!(fs::read_dir(dir.path().join(TEMP_DIR)).unwrap().count(), 3);
        drop(dropped);
        store.install(staged, &[]).unwrap();
        assert_eq!(store.get(&a).unwrap(), b"aa");
        assert_eq!(store.get(&b).unwrap(), b"bb");
        assert_eq!(store.list("s/").unwrap().len(), 2);
        assert_eq!(fs::read_dir(dir.path().join(TEMP_DIR)).unwrap().count(), 0);
        // A batch of one (fdatasync instead of syncfs) installs too.
        let one = vec![store.stage(&a, &[b"a2"]).unwrap()];
        store.install(one, std::slice::from_ref(&b)).unwrap();
        assert_eq!(store.get(&a).unwrap(), b"a2");
    }

    #[test]
    fn small_and_large_batches_install_alike() {
        // Up to SYNC_EACH_MAX files are synced one by one on several threads; more take one
        // syncfs; the same for directories. Both ways every object ends under its name.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFsStore::open(dir.path()).unwrap();
        for (count, spread) in [(3, 3), (SYNC_EACH_MAX, SYNC_EACH_MAX), (150, 100)] {
            let keys: Vec<ObjectKey> = (0..count)
                .map(|i| ObjectKey::new(format!("b{count}/{:03}/o{i}", i % spread)).unwrap())
                .collect();
            let staged = keys
                .iter()
                .map(|k| store.stage(k, &[k.as_str().as_bytes()]).unwrap())
                .collect();
            store.install(staged, &[]).unwrap();
            for key in &keys {
                assert_eq!(store.get(key).unwrap(), key.as_str().as_bytes());
            }
            assert_eq!(store.list(&format!("b{count}/")).unwrap().len(), count);
        }
        assert_eq!(fs::read_dir(dir.path().join(TEMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn foreign_files_are_not_listed_as_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFsStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("UPPER"), b"x").unwrap();
        fs::write(dir.path().join("ok"), b"x").unwrap();
        let keys: Vec<_> = store.list("").unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, vec![ObjectKey::new("ok").unwrap()]);
    }
}
