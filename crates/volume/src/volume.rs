//! [`Volume`]: create, open, read, write, trim, flush, grow, delete.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use blockstore::{BLOCK_SIZE, BlockStore, BlockStoreError, Manifest, ResourceId};

use crate::VolumeError;
use crate::bitmap::Bitmap;
use crate::readahead::{ReadAhead, Tracker};
use crate::segments::SegmentedFile;
use crate::snapshot::Capture;
use crate::state::{VolumeState, block_count};

/// Largest volume: 64 TiB (the EBS io2 Block Express maximum).
pub const MAX_VOLUME_SIZE: u64 = blockstore::manifest::MAX_VOLUME_SIZE;

const STATE_FILE: &str = "state";
const BS: u64 = BLOCK_SIZE as u64;

/// A block device: a sparse local file plus presence and dirty bitmaps, lazily filled
/// from its backing snapshot. All methods take `&self`; I/O from many threads is safe.
#[derive(Debug)]
pub struct Volume {
    dir: PathBuf,
    id: ResourceId,
    pub(crate) store: Arc<BlockStore>,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) ahead: ReadAhead,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub data: SegmentedFile,
    pub size: u64,
    pub backing: Option<ResourceId>,
    backing_manifest: Option<Arc<Manifest>>,
    pub presence: Bitmap,
    pub dirty: Bitmap,
    /// The bitmaps or backing changed since the state file was last written.
    pub state_changed: bool,
    /// Holds on former backing snapshots, dropped once a state naming the new backing
    /// is durable (until then a crash would reopen the volume on the old one).
    pub released_holds: Vec<ResourceId>,
    pub capture: Option<Capture>,
    /// Sequential-read detection and blocks being fetched (see `readahead`).
    pub ahead: Tracker,
}

fn check_size(size: u64) -> Result<(), VolumeError> {
    let reason = if size == 0 {
        "must be positive"
    } else if !size.is_multiple_of(512) {
        "must be a multiple of 512 bytes"
    } else if size > MAX_VOLUME_SIZE {
        "exceeds the 64 TiB maximum"
    } else {
        return Ok(());
    };
    Err(VolumeError::InvalidSize {
        size,
        reason: reason.into(),
    })
}

fn read_state(dir: &Path) -> Result<VolumeState, VolumeError> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).map_err(|e| VolumeError::io("read", &path, e))?;
    VolumeState::decode(&bytes).map_err(|reason| VolumeError::BadState { path, reason })
}

impl Volume {
    /// Creates an empty volume of `size` bytes in `dir` (which must not exist).
    /// Nothing is allocated: the data file is sparse.
    pub fn create(
        dir: &Path,
        id: ResourceId,
        size: u64,
        store: Arc<BlockStore>,
    ) -> Result<Arc<Volume>, VolumeError> {
        check_size(size)?;
        Self::create_inner(dir, id, size, None, store)
    }

    /// Creates a volume from a snapshot in O(1): no block is copied; each is read from the
    /// snapshot on first access. `size` defaults to the snapshot's and may only be larger.
    pub fn create_from_snapshot(
        dir: &Path,
        id: ResourceId,
        snapshot: &ResourceId,
        size: Option<u64>,
        store: Arc<BlockStore>,
    ) -> Result<Arc<Volume>, VolumeError> {
        if !store.snapshot_exists(snapshot)? {
            return Err(BlockStoreError::SnapshotNotFound {
                id: snapshot.clone(),
            }
            .into());
        }
        let manifest = store.read_manifest(snapshot)?;
        let size = size.unwrap_or(manifest.volume_size);
        check_size(size)?;
        if size < manifest.volume_size {
            return Err(VolumeError::InvalidSize {
                size,
                reason: format!(
                    "smaller than snapshot {snapshot} ({} bytes)",
                    manifest.volume_size
                ),
            });
        }
        store.add_hold(snapshot, &id)?;
        let created = Self::create_inner(dir, id.clone(), size, Some(manifest), Arc::clone(&store));
        if created.is_err() {
            let _ = store.remove_hold(snapshot, &id);
        }
        created
    }

    fn create_inner(
        dir: &Path,
        id: ResourceId,
        size: u64,
        backing: Option<Manifest>,
        store: Arc<BlockStore>,
    ) -> Result<Arc<Volume>, VolumeError> {
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(VolumeError::AlreadyExists { path: dir.into() });
            }
            Err(e) => return Err(VolumeError::io("create dir", dir, e)),
        }
        // A volume that could not be created completely (e.g. on a full disk) leaves no
        // directory behind.
        let created = Self::init_dir(dir, id, size, backing, store);
        if created.is_err() {
            let _ = fs::remove_dir_all(dir);
        }
        created
    }

    fn init_dir(
        dir: &Path,
        id: ResourceId,
        size: u64,
        backing: Option<Manifest>,
        store: Arc<BlockStore>,
    ) -> Result<Arc<Volume>, VolumeError> {
        let data = SegmentedFile::open(dir, size, true)?;
        let blocks = block_count(size);
        let volume = Arc::new_cyclic(|weak| Volume {
            dir: dir.into(),
            id,
            store,
            ahead: ReadAhead::new(weak.clone()),
            inner: Mutex::new(Inner {
                data,
                size,
                backing: backing.as_ref().map(|m| m.snapshot_id.clone()),
                backing_manifest: backing.map(Arc::new),
                presence: Bitmap::new(blocks),
                dirty: Bitmap::new(blocks),
                state_changed: true,
                capture: None,
                released_holds: Vec::new(),
                ahead: Tracker::default(),
            }),
        });
        volume.persist(&mut volume.lock(), false)?;
        if let Some(parent) = dir.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| VolumeError::io("sync dir", parent, e))?;
        }
        Ok(volume)
    }

    /// Opens an existing volume. After an unclean shutdown every present block is
    /// treated as dirty (the next snapshot re-reads them).
    pub fn open(dir: &Path, store: Arc<BlockStore>) -> Result<Arc<Volume>, VolumeError> {
        let mut state = read_state(dir)?;
        if state.deleting {
            return Err(VolumeError::Deleted { id: state.id });
        }
        // Setting the lengths also undoes a grow that crashed before its state write
        // (the grow was never acknowledged).
        let data = SegmentedFile::open(dir, state.size, false)?;
        if !state.clean {
            let presence = state.presence.clone();
            state.dirty.union_with(&presence);
            tracing::info!(volume = %state.id, "unclean shutdown: all present blocks marked dirty");
        }
        // Holds: exactly one, on the backing snapshot.
        for held in store.holds_by(&state.id)? {
            if Some(&held) != state.backing.as_ref() {
                store.remove_hold(&held, &state.id)?;
            }
        }
        if let Some(backing) = &state.backing {
            store.add_hold(backing, &state.id)?;
        }
        let volume = Arc::new_cyclic(|weak| Volume {
            dir: dir.into(),
            id: state.id,
            store,
            ahead: ReadAhead::new(weak.clone()),
            inner: Mutex::new(Inner {
                data,
                size: state.size,
                backing: state.backing,
                backing_manifest: None,
                presence: state.presence,
                dirty: state.dirty,
                state_changed: true,
                capture: None,
                released_holds: Vec::new(),
                ahead: Tracker::default(),
            }),
        });
        volume.persist(&mut volume.lock(), false)?;
        Ok(volume)
    }

    /// The volume's id.
    pub fn id(&self) -> &ResourceId {
        &self.id
    }

    /// The volume's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.lock().size
    }

    /// The snapshot absent blocks come from (the latest snapshot of this volume, or the
    /// one it was created from).
    pub fn backing_snapshot(&self) -> Option<ResourceId> {
        self.lock().backing.clone()
    }

    /// (present blocks, dirty blocks, total blocks).
    pub fn block_counts(&self) -> (u64, u64, u64) {
        let inner = self.lock();
        (
            inner.presence.count_ones(),
            inner.dirty.count_ones(),
            inner.presence.len(),
        )
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section either completes or leaves bitmaps conservative
        // (a block marked present only after its data is written).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_range(inner: &Inner, offset: u64, len: u64) -> Result<(), VolumeError> {
        match offset.checked_add(len) {
            Some(end) if end <= inner.size => Ok(()),
            _ => Err(VolumeError::OutOfRange {
                offset,
                len,
                size: inner.size,
            }),
        }
    }

    /// Splits `[offset, offset+len)` into (block, offset in block, length) pieces.
    fn segments(offset: u64, len: u64) -> impl Iterator<Item = (u64, usize, usize)> {
        let end = offset + len;
        let mut pos = offset;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let block = pos / BS;
            let within = pos % BS;
            let take = (BS - within).min(end - pos);
            pos += take;
            Some((block, within as usize, take as usize))
        })
    }

    /// Bytes of block `b` that lie inside the volume.
    pub(crate) fn block_len(inner: &Inner, b: u64) -> usize {
        (inner.size - b * BS).min(BS) as usize
    }

    pub(crate) fn backing_manifest(
        &self,
        inner: &mut Inner,
    ) -> Result<Option<Arc<Manifest>>, VolumeError> {
        if inner.backing_manifest.is_none()
            && let Some(id) = &inner.backing
        {
            inner.backing_manifest = Some(Arc::new(self.store.read_manifest(id)?));
        }
        Ok(inner.backing_manifest.clone())
    }

    pub(crate) fn set_backing(&self, inner: &mut Inner, manifest: Arc<Manifest>) {
        inner.backing = Some(manifest.snapshot_id.clone());
        inner.backing_manifest = Some(manifest);
        inner.state_changed = true;
    }

    /// The content of block `b` from the backing snapshot (zeros if it has none).
    fn backing_block(&self, inner: &mut Inner, b: u64) -> Result<Vec<u8>, VolumeError> {
        let hash = self.backing_manifest(inner)?.and_then(|m| m.get(b));
        match hash {
            Some(hash) => Ok(self.store.get_block(&hash)?),
            None => Ok(vec![0; BLOCK_SIZE]),
        }
    }

    /// The full current content of block `b`, zero-padded past the end of the volume.
    pub(crate) fn read_block_locked(
        &self,
        inner: &mut Inner,
        b: u64,
    ) -> Result<Vec<u8>, VolumeError> {
        if inner.presence.get(b) {
            let mut buf = vec![0; BLOCK_SIZE];
            let len = Self::block_len(inner, b);
            inner.data.read_exact_at(&mut buf[..len], b * BS)?;
            Ok(buf)
        } else {
            self.backing_block(inner, b)
        }
    }

    /// Makes block `b` present by copying it from the backing snapshot (copy-on-read).
    fn fill_locked(&self, inner: &mut Inner, b: u64) -> Result<Vec<u8>, VolumeError> {
        let content = self.backing_block(inner, b)?;
        self.fill_with(inner, b, &content)?;
        Ok(content)
    }

    /// Makes absent block `b` present with `content` (its backing content).
    pub(crate) fn fill_with(
        &self,
        inner: &mut Inner,
        b: u64,
        content: &[u8],
    ) -> Result<(), VolumeError> {
        let len = Self::block_len(inner, b);
        if blockstore::block::is_zero(content) {
            // The data file may hold bytes of an unflushed write from before a crash.
            inner.data.punch_hole(b * BS, len as u64)?;
        } else {
            inner.data.write_all_at(&content[..len], b * BS)?;
        }
        if inner.presence.set(b, true) {
            inner.state_changed = true;
        }
        Ok(())
    }

    /// Before block `b` changes: if a snapshot still needs its old content, hand it over.
    fn preserve_for_snapshot(&self, inner: &mut Inner, b: u64) -> Result<(), VolumeError> {
        let wanted = inner
            .capture
            .as_mut()
            .is_some_and(|capture| capture.take_pending(b));
        if wanted {
            let old = self.read_block_locked(inner, b)?;
            if let Some(capture) = &inner.capture {
                capture.shared.capture_block(b, &old);
            }
        }
        Ok(())
    }

    fn mark_written(inner: &mut Inner, b: u64) {
        let p = inner.presence.set(b, true);
        let d = inner.dirty.set(b, true);
        if p || d {
            inner.state_changed = true;
        }
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError> {
        let mut done = 0;
        {
            let mut inner = self.lock();
            Self::check_range(&inner, offset, buf.len() as u64)?;
            if !buf.is_empty() {
                let last = (offset + buf.len() as u64 - 1) / BS;
                self.plan_read_ahead(&mut inner, offset / BS, last);
            }
        }
        for (b, within, len) in Self::segments(offset, buf.len() as u64) {
            let out = &mut buf[done..done + len];
            done += len;
            let mut inner = self.lock();
            if inner.presence.get(b) {
                inner.data.read_exact_at(out, b * BS + within as u64)?;
                continue;
            }
            let Some(hash) = self.backing_manifest(&mut inner)?.and_then(|m| m.get(b)) else {
                out.fill(0);
                continue;
            };
            // Fetched already by read-ahead or another reader? Then read it; else claim
            // it so concurrent readers wait for this fetch instead of repeating it.
            let (inner, claimed) = self.begin_fetch(inner, b);
            if inner.presence.get(b) {
                inner.data.read_exact_at(out, b * BS + within as u64)?;
                continue;
            }
            // Fetch from the block store without holding the volume: other blocks stay
            // readable and writable meanwhile. An absent block's content is the same in
            // any later backing (a snapshot copies absent blocks from its backing), so
            // the fetched content is still right unless the block became present.
            drop(inner);
            let fetched = self.store.get_block(&hash);
            let mut inner = self.lock();
            let content = match fetched {
                Ok(content) => content,
                Err(e) => {
                    if claimed {
                        self.end_fetch(&mut inner, b);
                    }
                    return Err(e.into());
                }
            };
            if inner.presence.get(b) {
                if claimed {
                    self.end_fetch(&mut inner, b);
                }
                inner.data.read_exact_at(out, b * BS + within as u64)?;
            } else {
                let (mut inner, filled) = self.fill_outside_lock(inner, b, &content);
                if claimed {
                    self.end_fetch(&mut inner, b);
                }
                filled?;
                out.copy_from_slice(&content[within..within + len]);
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset`. Durable after the next [`flush`](Self::flush).
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<(), VolumeError> {
        let mut done = 0;
        {
            let inner = self.lock();
            Self::check_range(&inner, offset, data.len() as u64)?;
        }
        for (b, within, len) in Self::segments(offset, data.len() as u64) {
            let mut inner = self.wait_filled(self.lock(), b);
            self.preserve_for_snapshot(&mut inner, b)?;
            let whole = within == 0 && len == Self::block_len(&inner, b);
            if !whole && !inner.presence.get(b) {
                self.fill_locked(&mut inner, b)?;
            }
            inner
                .data
                .write_all_at(&data[done..done + len], b * BS + within as u64)?;
            Self::mark_written(&mut inner, b);
            done += len;
        }
        Ok(())
    }

    /// Zeroes `[offset, offset+len)`, deallocating whole blocks (trim / write-zeroes).
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        {
            let inner = self.lock();
            Self::check_range(&inner, offset, len)?;
        }
        for (b, within, seg) in Self::segments(offset, len) {
            let mut inner = self.wait_filled(self.lock(), b);
            self.preserve_for_snapshot(&mut inner, b)?;
            let whole = within == 0 && seg == Self::block_len(&inner, b);
            if whole {
                inner.data.punch_hole(b * BS, seg as u64)?;
            } else {
                if !inner.presence.get(b) {
                    self.fill_locked(&mut inner, b)?;
                }
                inner
                    .data
                    .write_all_at(&vec![0; seg], b * BS + within as u64)?;
            }
            Self::mark_written(&mut inner, b);
        }
        Ok(())
    }

    /// Trim: the same as [`write_zeroes`](Self::write_zeroes) (trimmed ranges read as zeros).
    pub fn trim(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        self.write_zeroes(offset, len)
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<(), VolumeError> {
        let mut inner = self.lock();
        self.persist(&mut inner, false)
    }

    /// Syncs data, then (if anything changed) atomically rewrites the state file.
    pub(crate) fn persist(&self, inner: &mut Inner, clean: bool) -> Result<(), VolumeError> {
        inner.data.sync_data()?;
        if !inner.state_changed && !clean {
            return Ok(());
        }
        let mut dirty = inner.dirty.clone();
        if let Some(capture) = &inner.capture {
            // Until the snapshot is committed, its blocks still count as dirty.
            dirty.union_with(&capture.shared.frozen);
        }
        let state = VolumeState {
            clean,
            deleting: false,
            size: inner.size,
            id: self.id.clone(),
            backing: inner.backing.clone(),
            presence: inner.presence.clone(),
            dirty,
        };
        state
            .write_atomically(&self.dir, STATE_FILE)
            .map_err(|e| VolumeError::io("write state", self.dir.join(STATE_FILE), e))?;
        inner.state_changed = false;
        for old in std::mem::take(&mut inner.released_holds) {
            if let Err(e) = self.store.remove_hold(&old, &self.id) {
                // Harmless: the next open removes holds on anything but the backing.
                tracing::warn!(volume = %self.id, snapshot = %old, error = %e, "cannot drop hold");
            }
        }
        Ok(())
    }

    /// Grows the volume to `new_size` bytes; the new space reads as zeros.
    pub fn grow(&self, new_size: u64) -> Result<(), VolumeError> {
        check_size(new_size)?;
        let mut inner = self.lock();
        if new_size < inner.size {
            return Err(VolumeError::InvalidSize {
                size: new_size,
                reason: format!("smaller than the current {} bytes", inner.size),
            });
        }
        inner.data.resize(new_size, true)?;
        inner.size = new_size;
        let blocks = block_count(new_size);
        inner.presence.grow(blocks);
        inner.dirty.grow(blocks);
        inner.state_changed = true;
        self.persist(&mut inner, false)
    }

    /// Flushes and marks the state clean, so the next open trusts the dirty bitmap.
    /// Read-ahead stops for good (its workers end); reads still work without it.
    pub fn close(&self) -> Result<(), VolumeError> {
        self.stop_read_ahead();
        let mut inner = self.lock();
        if inner.capture.is_some() {
            return Err(VolumeError::SnapshotInProgress {
                id: self.id.clone(),
            });
        }
        self.persist(&mut inner, true)
    }

    /// Deletes the volume: its files and its hold on the backing snapshot.
    pub fn destroy(dir: &Path, store: &BlockStore) -> Result<(), VolumeError> {
        let mut state = read_state(dir)?;
        state.deleting = true;
        state
            .write_atomically(dir, STATE_FILE)
            .map_err(|e| VolumeError::io("write state", dir.join(STATE_FILE), e))?;
        for held in store.holds_by(&state.id)? {
            store.remove_hold(&held, &state.id)?;
        }
        fs::remove_dir_all(dir).map_err(|e| VolumeError::io("remove", dir, e))
    }
}
