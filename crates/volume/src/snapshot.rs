//! Incremental, point-in-time snapshots of a [`Volume`].
//!
//! [`Volume::begin_snapshot`] freezes the dirty set under the volume lock and clears it:
//! that instant is the snapshot's point in time. [`PendingSnapshot::run`] then reads the
//! frozen blocks with a few worker threads, hashing and storing the non-zero ones, while
//! the volume stays writable. A write to a frozen block the workers have not reached
//! takes the block out of the pending set and captures its old content first. Blocks
//! that are not dirty inherit the parent manifest's entries unchanged, so the cost is
//! proportional to the changed blocks.
//!
//! A snapshot that fails (a full disk included) or is dropped before it runs leaves no
//! manifest, and its frozen blocks count as dirty again: nothing is lost for the next one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use blockstore::{BlockHash, Manifest, ResourceId, WriteSession};

use crate::bitmap::Bitmap;
use crate::{Volume, VolumeError};

const WORKERS: usize = 4;

/// Live counters of a snapshot in progress.
#[derive(Debug, Default)]
pub struct SnapshotProgress {
    /// Blocks the snapshot has to read (the frozen dirty set).
    pub total_blocks: AtomicU64,
    /// Blocks read so far.
    pub done_blocks: AtomicU64,
    /// Blocks that were new to the store.
    pub new_blocks: AtomicU64,
    /// Bytes written to the store.
    pub stored_bytes: AtomicU64,
}

impl SnapshotProgress {
    /// Completion in percent (100 when there was nothing to read).
    pub fn percent(&self) -> u8 {
        let total = self.total_blocks.load(Ordering::Relaxed);
        let done = self.done_blocks.load(Ordering::Relaxed);
        (done.min(total) * 100)
            .checked_div(total)
            .map_or(100, |percent| percent as u8)
    }
}

/// What a completed snapshot did.
#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    /// The committed manifest.
    pub manifest: Arc<Manifest>,
    /// Dirty blocks read and hashed.
    pub blocks_read: u64,
    /// Blocks new to the store.
    pub new_blocks: u64,
    /// Bytes written to the store.
    pub stored_bytes: u64,
    /// Time from `run` to commit.
    pub elapsed: Duration,
}

/// State shared between the snapshot workers and writers of the volume.
#[derive(Debug)]
pub(crate) struct SharedCapture {
    pub snapshot_id: ResourceId,
    pub parent: Option<ResourceId>,
    pub size: u64,
    /// The dirty set at the point in time.
    pub frozen: Bitmap,
    session: WriteSession,
    results: Mutex<HashMap<u64, Option<BlockHash>>>,
    /// The first error of any worker, kept typed so that callers can tell a full disk
    /// from other failures.
    first_error: Mutex<Option<VolumeError>>,
    failed: AtomicBool,
    pub progress: Arc<SnapshotProgress>,
}

impl SharedCapture {
    /// Hashes and stores one block's point-in-time content.
    pub fn capture_block(&self, b: u64, content: &[u8]) {
        let outcome = if blockstore::block::is_zero(content) {
            Ok(None)
        } else {
            self.session.put_block(content).map(Some)
        };
        match outcome {
            Ok(put) => {
                if let Some(put) = put
                    && put.stored_bytes > 0
                {
                    self.progress.new_blocks.fetch_add(1, Ordering::Relaxed);
                    self.progress
                        .stored_bytes
                        .fetch_add(put.stored_bytes, Ordering::Relaxed);
                }
                let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
                results.insert(b, put.map(|p| p.hash));
            }
            Err(e) => self.fail(e.into()),
        }
        self.progress.done_blocks.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, error: VolumeError) {
        self.failed.store(true, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(error);
    }
}

/// The volume-side half of a capture: which frozen blocks are still unread.
#[derive(Debug)]
pub(crate) struct Capture {
    pub shared: Arc<SharedCapture>,
    pending: Bitmap,
    cursor: u64,
}

impl Capture {
    /// Takes block `b` out of the pending set; true if it was pending.
    pub fn take_pending(&mut self, b: u64) -> bool {
        self.pending.get(b) && self.pending.set(b, false)
    }

    fn next_pending(&mut self) -> Option<u64> {
        while self.cursor < self.pending.len() {
            let b = self.cursor;
            self.cursor += 1;
            if self.take_pending(b) {
                return Some(b);
            }
        }
        None
    }
}

/// A snapshot whose point in time is fixed but whose data is not yet stored.
#[derive(Debug)]
pub struct PendingSnapshot {
    volume: Arc<Volume>,
    shared: Arc<SharedCapture>,
}

impl Volume {
    /// Fixes the point in time of a new snapshot `snapshot_id`. Writes after this call
    /// are not in the snapshot. Only one snapshot per volume runs at a time.
    pub fn begin_snapshot(
        self: &Arc<Self>,
        snapshot_id: ResourceId,
    ) -> Result<PendingSnapshot, VolumeError> {
        let mut inner = self.lock();
        if inner.capture.is_some() {
            return Err(VolumeError::SnapshotInProgress {
                id: self.id().clone(),
            });
        }
        let frozen = inner.dirty.clone();
        inner.dirty.clear_all();
        let progress = Arc::new(SnapshotProgress::default());
        progress
            .total_blocks
            .store(frozen.count_ones(), Ordering::Relaxed);
        let shared = Arc::new(SharedCapture {
            snapshot_id,
            parent: inner.backing.clone(),
            size: inner.size,
            frozen: frozen.clone(),
            session: self.store.session(),
            results: Mutex::new(HashMap::new()),
            first_error: Mutex::new(None),
            failed: AtomicBool::new(false),
            progress,
        });
        inner.capture = Some(Capture {
            shared: Arc::clone(&shared),
            pending: frozen,
            cursor: 0,
        });
        Ok(PendingSnapshot {
            volume: Arc::clone(self),
            shared,
        })
    }

    /// Takes a snapshot and waits for it: [`begin_snapshot`](Self::begin_snapshot) then
    /// [`PendingSnapshot::run`].
    pub fn snapshot(
        self: &Arc<Self>,
        snapshot_id: ResourceId,
    ) -> Result<SnapshotSummary, VolumeError> {
        self.begin_snapshot(snapshot_id)?.run()
    }

    /// Next frozen block for a worker, read under the volume lock.
    fn next_capture_block(&self) -> Result<Option<(u64, Vec<u8>)>, VolumeError> {
        let mut inner = self.lock();
        let Some(b) = inner.capture.as_mut().and_then(Capture::next_pending) else {
            return Ok(None);
        };
        let content = self.read_block_locked(&mut inner, b)?;
        Ok(Some((b, content)))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A pending snapshot dropped without [`PendingSnapshot::run`] (its caller could not
/// record it, e.g. on a full disk) is abandoned: the volume may take another snapshot and
/// the frozen blocks count as dirty again.
impl Drop for PendingSnapshot {
    fn drop(&mut self) {
        let mut inner = self.volume.lock();
        if inner
            .capture
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.shared, &self.shared))
        {
            inner.capture = None;
            inner.dirty.union_with(&self.shared.frozen);
        }
    }
}

impl PendingSnapshot {
    /// Live progress counters.
    pub fn progress(&self) -> Arc<SnapshotProgress> {
        Arc::clone(&self.shared.progress)
    }

    /// The snapshot's id.
    pub fn snapshot_id(&self) -> &ResourceId {
        &self.shared.snapshot_id
    }

    /// Reads, hashes and stores the frozen blocks, commits the manifest, and makes the
    /// snapshot the volume's new backing snapshot. On failure (a full disk included) the
    /// frozen blocks count as dirty again and no manifest is left behind.
    pub fn run(self) -> Result<SnapshotSummary, VolumeError> {
        let started = Instant::now();
        let result = self.capture_all().and_then(|()| {
            let captured = started.elapsed();
            let manifest = self.commit()?;
            tracing::debug!(
                snapshot = %self.shared.snapshot_id,
                capture_ms = captured.as_millis() as u64,
                commit_ms = (started.elapsed() - captured).as_millis() as u64,
                "snapshot data stored"
            );
            // Hold the new snapshot before the volume reads from it. The state file is
            // rewritten at the next flush; the old hold goes only after that.
            if let Err(e) = self
                .volume
                .store
                .add_hold(&manifest.snapshot_id, self.volume.id())
            {
                if let Err(undo) = self.volume.store.delete_snapshot(&manifest.snapshot_id) {
                    tracing::warn!(snapshot = %manifest.snapshot_id, error = %undo,
                        "cannot remove the manifest of a failed snapshot");
                }
                return Err(e.into());
            }
            Ok(manifest)
        });
        let mut inner = self.volume.lock();
        match result {
            Ok(manifest) => {
                inner.capture = None;
                if let Some(old) = inner.backing.clone() {
                    inner.released_holds.push(old);
                }
                self.volume.set_backing(&mut inner, Arc::clone(&manifest));
                drop(inner);
                let progress = &self.shared.progress;
                Ok(SnapshotSummary {
                    manifest,
                    blocks_read: progress.done_blocks.load(Ordering::Relaxed),
                    new_blocks: progress.new_blocks.load(Ordering::Relaxed),
                    stored_bytes: progress.stored_bytes.load(Ordering::Relaxed),
                    elapsed: started.elapsed(),
                })
            }
            Err(e) => {
                inner.capture = None;
                let frozen = &self.shared.frozen;
                inner.dirty.union_with(frozen);
                Err(e)
            }
        }
    }

    fn capture_all(&self) -> Result<(), VolumeError> {
        let shared = &self.shared;
        std::thread::scope(|scope| {
            for _ in 0..WORKERS {
                scope.spawn(|| {
                    while !shared.failed.load(Ordering::Relaxed) {
                        match self.volume.next_capture_block() {
                            Ok(Some((b, content))) => shared.capture_block(b, &content),
                            Ok(None) => break,
                            Err(e) => shared.fail(e),
                        }
                    }
                });
            }
        });
        let first = shared
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match first {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn commit(&self) -> Result<Arc<Manifest>, VolumeError> {
        let shared = &self.shared;
        let blocks = shared.size.div_ceil(blockstore::BLOCK_SIZE as u64);
        let parent = match &shared.parent {
            Some(id) => Some(self.volume.store.read_manifest(id)?),
            None => None,
        };
        let results =
            std::mem::take(&mut *shared.results.lock().unwrap_or_else(|p| p.into_inner()));
        let mut entries: Vec<(u64, BlockHash)> = parent
            .iter()
            .flat_map(|m| m.entries().iter().copied())
            .filter(|(b, _)| *b < blocks && !shared.frozen.get(*b))
            .collect();
        entries.extend(results.into_iter().filter_map(|(b, h)| h.map(|h| (b, h))));
        let manifest = Manifest::new(
            shared.snapshot_id.clone(),
            shared.parent.clone(),
            shared.size,
            now_ms(),
            entries,
        )
        .map_err(|reason| VolumeError::SnapshotFailed {
            id: shared.snapshot_id.clone(),
            reason,
        })?;
        shared.session.commit(&manifest)?;
        Ok(Arc::new(manifest))
    }
}
