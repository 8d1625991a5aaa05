//! Read-ahead and shared fetches for copy-on-read.
//!
//! A volume created from a snapshot fetches each absent block from the block store on
//! first read (read the object, decode, verify its SHA-256). Alone, a sequential reader
//! pays one synchronous fetch per 512 KiB block, and an NBD client's parallel requests
//! into the same block each fetch it again. This module does two things:
//!
//! * **Shared fetches.** A block being fetched (by a reader or by read-ahead) is
//!   *in flight*; a reader that needs it waits for that fetch instead of repeating it.
//! * **Read-ahead.** Once a read continues a sequential run (it starts near where an
//!   earlier read ended; up to [`STREAMS`] runs are followed, as a client may read
//!   several regions in parallel), the next absent blocks — up to [`WINDOW`] past the
//!   read — are queued for a small pool of worker threads, which fetch them
//!   concurrently and fill them through the same [`Volume::fill_with`] a read uses. A
//!   read spanning several blocks queues its own blocks after the first, so even a
//!   single large read fetches in parallel.
//!
//! ```text
//!  read_at(b..=e) ──► Tracker (under the volume lock): sequential? queue e+1..e+WINDOW
//!        │                  │ absent, in the backing, not in flight
//!        │                  ▼
//!        │           bounded queue ──► worker ×N: get_block (no lock held)
//!        │                                   │ lock; still absent? fill_with
//!        ▼                                   ▼
//!   block in flight? wait for the fetch ◄── notify_all
//! ```
//!
//! Why a fetched block can be filled later: an absent block's content is the same in
//! any later backing (a snapshot copies absent blocks from its backing), so content
//! fetched under an older backing is still right — unless the block became present
//! meanwhile (a write, or another fill), and then the fetch is dropped: the worker fills
//! only a block that is still absent while it holds the volume lock.
//!
//! Bounds: at most [`WINDOW`] blocks queued or in flight, each worker holds one block.
//! Workers hold a weak reference to the volume; [`Volume::close`] and dropping the volume
//! end them (queued work is dropped, not done). A failed read-ahead only logs: the
//! reader that needs the block fetches it itself and reports its own error.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use blockstore::{BLOCK_SIZE, BlockHash};

use crate::VolumeError;
use crate::volume::{Inner, Volume};

/// Blocks read ahead of a sequential reader (8 MiB), and the most queued or in flight.
pub(crate) const WINDOW: u64 = 16;
/// Most read-ahead workers per volume.
const MAX_WORKERS: usize = 4;
/// A reader waits this long at most for someone else's fetch, then fetches itself.
const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// Sequential runs followed at once (an NBD client such as nbdcopy reads several
/// regions in parallel, one per connection).
const STREAMS: usize = 8;

/// Pipelined requests reach the volume slightly out of order: a read this many blocks
/// before the end of a run still continues it.
const BEHIND: u64 = 4;

/// One sequential run of reads.
#[derive(Debug, Clone, Copy)]
struct Stream {
    /// Last block read.
    last: u64,
    /// Blocks below this were already considered for read-ahead.
    ahead_to: u64,
    /// When the run was last extended (the tracker's read counter).
    used: u64,
}

/// Read-ahead state kept under the volume lock.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    streams: Vec<Stream>,
    reads: u64,
    /// Blocks being fetched by a reader or a worker.
    in_flight: HashSet<u64>,
    /// Absent blocks whose content is being written to the data file outside the
    /// volume lock; writes to them wait (see [`Volume::fill_outside_lock`]).
    filling: HashSet<u64>,
}

impl Tracker {
    /// Records a read of blocks `first..=last` and returns the blocks to consider for
    /// read-ahead: after `first` up to [`WINDOW`] past `last` if the read continues a
    /// sequential run (starts at most [`BEHIND`] blocks before or [`WINDOW`] blocks
    /// after where one ended), else only
    /// the rest of the read itself. The range starts past what the run considered.
    fn note(&mut self, first: u64, last: u64) -> std::ops::Range<u64> {
        self.reads += 1;
        let reads = self.reads;
        let run = self
            .streams
            .iter_mut()
            .find(|s| first + BEHIND >= s.last && first <= s.last + WINDOW);
        let (start, end) = match run {
            Some(s) => {
                s.last = s.last.max(last);
                s.used = reads;
                ((first + 1).max(s.ahead_to), s.last + 1 + WINDOW)
            }
            None => {
                let fresh = Stream {
                    last,
                    ahead_to: 0,
                    used: reads,
                };
                if self.streams.len() < STREAMS {
                    self.streams.push(fresh);
                } else if let Some(lru) = self.streams.iter_mut().min_by_key(|s| s.used) {
                    *lru = fresh;
                }
                (first + 1, last + 1)
            }
        };
        start..end.max(start)
    }

    /// Blocks below `b` of the run that just asked were considered.
    fn considered(&mut self, b: u64) {
        let reads = self.reads;
        if let Some(s) = self.streams.iter_mut().find(|s| s.used == reads) {
            s.ahead_to = s.ahead_to.max(b);
        }
    }
}

/// One block for a worker to fetch.
#[derive(Debug)]
struct Job {
    block: u64,
    hash: BlockHash,
}

#[derive(Debug, Default)]
struct Pool {
    sender: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    closed: bool,
}

/// Test hook: (stage, block); stage 0 after a worker's fetch, 1 while a fill writes
/// outside the lock.
#[cfg(test)]
type Hook = Arc<dyn Fn(u8, u64) + Send + Sync>;

/// A volume's read-ahead workers and the signal that a fetch finished.
pub(crate) struct ReadAhead {
    volume: Weak<Volume>,
    enabled: AtomicBool,
    closed: AtomicBool,
    filled: Condvar,
    pool: Mutex<Pool>,
    /// Running workers.
    live: Arc<AtomicUsize>,
    /// Tests: see [`Hook`].
    #[cfg(test)]
    before_fill: Mutex<Option<Hook>>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("enabled", &self.enabled)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReadAhead {
    pub(crate) fn new(volume: Weak<Volume>) -> ReadAhead {
        ReadAhead {
            volume,
            enabled: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            filled: Condvar::new(),
            pool: Mutex::new(Pool::default()),
            live: Arc::default(),
            #[cfg(test)]
            before_fill: Mutex::new(None),
        }
    }

    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed) && !self.closed.load(Ordering::Relaxed)
    }

    /// Queues a job, starting the workers on first use; false if the queue is full or
    /// read-ahead is closed.
    fn submit(&self, job: Job) -> bool {
        let mut pool = lock(&self.pool);
        if pool.closed {
            return false;
        }
        if pool.sender.is_none() {
            let (tx, rx) = sync_channel::<Job>(WINDOW as usize);
            let rx = Arc::new(Mutex::new(rx));
            let workers = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, MAX_WORKERS);
            for i in 0..workers {
                let (volume, rx) = (Weak::clone(&self.volume), Arc::clone(&rx));
                let live = Arc::clone(&self.live);
                live.fetch_add(1, Ordering::SeqCst);
                match std::thread::Builder::new()
                    .name(format!("readahead-{i}"))
                    .spawn(move || {
                        work(volume, rx);
                        live.fetch_sub(1, Ordering::SeqCst);
                    }) {
                    Ok(handle) => pool.workers.push(handle),
                    Err(e) => {
                        self.live.fetch_sub(1, Ordering::SeqCst);
                        tracing::warn!(error = %e, "cannot start a read-ahead worker");
                    }
                }
            }
            if pool.workers.is_empty() {
                pool.closed = true;
                return false;
            }
            pool.sender = Some(tx);
        }
        match pool.sender.as_ref().map(|tx| tx.try_send(job)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }

    /// Stops read-ahead for good and waits for the workers (except the calling thread,
    /// which may be a worker dropping the last reference to the volume).
    pub(crate) fn shut_down(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let workers = {
            let mut pool = lock(&self.pool);
            pool.closed = true;
            pool.sender = None;
            std::mem::take(&mut pool.workers)
        };
        let me = std::thread::current().id();
        for worker in workers {
            if worker.thread().id() != me {
                let _ = worker.join();
            }
        }
    }

    /// Number of running read-ahead workers (tests).
    #[cfg(test)]
    fn worker_count(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn work(volume: Weak<Volume>, jobs: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = match lock(&jobs).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let Some(volume) = volume.upgrade() else {
            return;
        };
        volume.read_ahead_one(job.block, &job.hash);
    }
}

impl Volume {
    /// Turns read-ahead (and shared fetches) on or off; on by default. Off, reads
    /// fetch absent blocks one at a time on the caller's thread (for benchmarks).
    pub fn set_read_ahead(&self, enabled: bool) {
        self.ahead.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Called by `read_at` under the volume lock before it reads blocks
    /// `first..=last`: queues the blocks after them if the reads are sequential.
    pub(crate) fn plan_read_ahead(&self, inner: &mut Inner, first: u64, last: u64) {
        if !self.ahead.enabled() {
            return;
        }
        let range = inner.ahead.note(first, last);
        if range.is_empty() {
            return;
        }
        let Ok(Some(manifest)) = self.backing_manifest(inner) else {
            return;
        };
        let end = range.end.min(inner.presence.len());
        let mut b = range.start;
        while b < end && (inner.ahead.in_flight.len() as u64) < WINDOW {
            if !inner.presence.get(b)
                && !inner.ahead.in_flight.contains(&b)
                && let Some(hash) = manifest.get(b)
            {
                if !self.ahead.submit(Job { block: b, hash }) {
                    break;
                }
                inner.ahead.in_flight.insert(b);
            }
            b += 1;
        }
        inner.ahead.considered(b);
    }

    /// Before a reader fetches absent block `b` itself: waits while someone else
    /// fetches it, then claims it. Returns the guard and whether `b` is claimed (the
    /// caller must then call [`end_fetch`](Self::end_fetch)).
    pub(crate) fn begin_fetch<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        b: u64,
    ) -> (MutexGuard<'a, Inner>, bool) {
        if !self.ahead.enabled.load(Ordering::Relaxed) {
            return (inner, false);
        }
        let mut waited = Duration::ZERO;
        while inner.ahead.in_flight.contains(&b) && !inner.presence.get(b) {
            if waited >= WAIT_LIMIT {
                return (inner, false);
            }
            let step = Duration::from_millis(100);
            inner = match self.ahead.filled.wait_timeout(inner, step) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
            waited += step;
        }
        if inner.presence.get(b) {
            return (inner, false);
        }
        inner.ahead.in_flight.insert(b);
        (inner, true)
    }

    /// Releases a block claimed by [`begin_fetch`](Self::begin_fetch).
    pub(crate) fn end_fetch(&self, inner: &mut Inner, b: u64) {
        inner.ahead.in_flight.remove(&b);
        self.ahead.filled.notify_all();
    }

    /// Stops read-ahead (on close): no new work, workers finish and exit.
    pub(crate) fn stop_read_ahead(&self) {
        self.ahead.shut_down();
    }

    /// Before block `b` changes: waits while a fill writes it outside the lock (so the
    /// fill cannot land after the change).
    pub(crate) fn wait_filled<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        b: u64,
    ) -> MutexGuard<'a, Inner> {
        while inner.ahead.filling.contains(&b) {
            inner = self
                .ahead
                .filled
                .wait(inner)
                .unwrap_or_else(|p| p.into_inner());
        }
        inner
    }

    /// Makes absent block `b` present with `content` (its backing content), writing
    /// the data file without holding the volume lock so fills run in parallel: `b` is
    /// marked *filling* meanwhile (writers to it wait in [`wait_filled`](Self::wait_filled))
    /// and present only after its bytes are written. If `b` is present or being filled
    /// already, does nothing (the content is the same).
    pub(crate) fn fill_outside_lock<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        b: u64,
        content: &[u8],
    ) -> (MutexGuard<'a, Inner>, Result<(), VolumeError>) {
        if inner.presence.get(b) || inner.ahead.filling.contains(&b) {
            return (inner, Ok(()));
        }
        let len = Self::block_len(&inner, b);
        if blockstore::block::is_zero(content) {
            let filled = self.fill_with(&mut inner, b, content);
            return (inner, filled);
        }
        let writer = match inner.data.writer_at(b * BLOCK_SIZE as u64) {
            Ok(writer) => writer,
            Err(e) => return (inner, Err(e)),
        };
        inner.ahead.filling.insert(b);
        drop(inner);
        #[cfg(test)]
        self.hook(1, b);
        let written = writer.write_all(&content[..len]);
        let mut inner = self.lock();
        inner.ahead.filling.remove(&b);
        if written.is_ok() && inner.presence.set(b, true) {
            inner.state_changed = true;
        }
        self.ahead.filled.notify_all();
        (inner, written)
    }

    #[cfg(test)]
    fn hook(&self, stage: u8, b: u64) {
        let hook = lock(&self.ahead.before_fill).clone();
        if let Some(hook) = hook {
            hook(stage, b);
        }
    }

    /// A worker's job: fetch block `b` without the lock, fill it if still absent.
    fn read_ahead_one(&self, b: u64, hash: &BlockHash) {
        let fetched = if self.ahead.closed.load(Ordering::Relaxed) {
            None
        } else {
            Some(self.store.get_block(hash))
        };
        #[cfg(test)]
        self.hook(0, b);
        let mut inner = self.lock();
        match fetched {
            Some(Ok(content)) if content.len() == BLOCK_SIZE && !inner.presence.get(b) => {
                let (guard, filled) = self.fill_outside_lock(inner, b, &content);
                inner = guard;
                if let Err(e) = filled {
                    tracing::debug!(volume = %self.id(), block = b, error = %e, "read-ahead fill failed");
                }
            }
            Some(Err(e)) => {
                tracing::debug!(volume = %self.id(), block = b, error = %e, "read-ahead fetch failed");
            }
            _ => {}
        }
        inner.ahead.in_flight.remove(&b);
        drop(inner);
        self.ahead.filled.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;

    use blockstore::{BlockStore, ResourceId};
    use objstore::LocalFsStore;

    use super::*;

    const BS: usize = BLOCK_SIZE;

    fn id(s: &str) -> ResourceId {
        ResourceId::new(s).unwrap()
    }

    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A snapshot of `blocks` blocks of distinct content, and a fresh volume from it.
    fn from_snapshot(
        dir: &std::path::Path,
        blocks: u64,
    ) -> (Arc<BlockStore>, Arc<Volume>, Vec<u8>) {
        let store = BlockStore::new(Arc::new(LocalFsStore::open(dir.join("objects")).unwrap()));
        let size = blocks * BS as u64;
        let src = Volume::create(&dir.join("src"), id("vol-src"), size, store.clone()).unwrap();
        let content = pattern(7, size as usize);
        src.write_at(&content, 0).unwrap();
        src.snapshot(id("snap-a")).unwrap();
        src.close().unwrap();
        // A second store object on the same objects: its read cache is empty.
        let store = BlockStore::new(Arc::new(LocalFsStore::open(dir.join("objects")).unwrap()));
        let vol = Volume::create_from_snapshot(
            &dir.join("dst"),
            id("vol-dst"),
            &id("snap-a"),
            None,
            store.clone(),
        )
        .unwrap();
        (store, vol, content)
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn sequential_reads_fill_blocks_ahead_and_random_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, vol, content) = from_snapshot(dir.path(), 40);
        // Random reads: no read-ahead.
        let mut buf = vec![0u8; 4096];
        for b in [30u64, 3, 20] {
            vol.read_at(&mut buf, b * BS as u64).unwrap();
            assert_eq!(buf, content[b as usize * BS..b as usize * BS + 4096]);
        }
        assert_eq!(vol.block_counts().0, 3);
        assert_eq!(
            vol.ahead.worker_count(),
            0,
            "no workers without a sequential run"
        );
        // Two sequential reads: the next WINDOW blocks are fetched in the background.
        vol.read_at(&mut buf, 5 * BS as u64).unwrap();
        vol.read_at(&mut buf, 5 * BS as u64 + 4096).unwrap();
        wait_until("read-ahead", || {
            (6..6 + WINDOW).all(|b| b == 20 || vol.lock().presence.get(b))
        });
        assert!(vol.ahead.worker_count() >= 2);
        // What read-ahead filled is the snapshot's content.
        let mut all = vec![0u8; content.len()];
        vol.read_at(&mut all, 0).unwrap();
        assert_eq!(all, content);
        vol.close().unwrap();
        assert_eq!(vol.ahead.worker_count(), 0, "close ends the workers");
        // After close, reads still work, without read-ahead.
        vol.read_at(&mut buf, 0).unwrap();
    }

    #[test]
    fn a_write_racing_a_read_ahead_of_the_same_block_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, vol, content) = from_snapshot(dir.path(), 32);
        // Hold the workers' fetches of blocks 5 and 7 between fetch and fill.
        let (fetched_tx, fetched_rx) = mpsc::channel::<u64>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        *lock(&vol.ahead.before_fill) = Some(Arc::new(move |stage, b| {
            if stage == 0 && (b == 5 || b == 7) {
                fetched_tx.send(b).unwrap();
                lock(&go_rx).recv().unwrap();
            }
        }));
        let mut buf = vec![0u8; 4096];
        vol.read_at(&mut buf, 0).unwrap();
        vol.read_at(&mut buf, 4096).unwrap();
        let mut held = vec![fetched_rx.recv().unwrap(), fetched_rx.recv().unwrap()];
        held.sort();
        assert_eq!(held, [5, 7]);
        // Both fetches are done and hold the old content; now the blocks change.
        let whole = pattern(99, BS);
        vol.write_at(&whole, 5 * BS as u64).unwrap();
        vol.write_at(b"partial write", 7 * BS as u64 + 1000)
            .unwrap();
        go_tx.send(()).unwrap();
        go_tx.send(()).unwrap();
        wait_until("in-flight fetches", || {
            vol.lock().ahead.in_flight.is_empty()
        });
        let mut block = vec![0u8; BS];
        vol.read_at(&mut block, 5 * BS as u64).unwrap();
        assert!(block == whole, "a stale read-ahead overwrote a write");
        vol.read_at(&mut block, 7 * BS as u64).unwrap();
        let mut want = content[7 * BS..8 * BS].to_vec();
        want[1000..1013].copy_from_slice(b"partial write");
        assert!(
            block == want,
            "a stale read-ahead overwrote a partial write"
        );
        // And the rest is the snapshot's.
        vol.read_at(&mut block, 6 * BS as u64).unwrap();
        assert!(block[..] == content[6 * BS..7 * BS]);
    }

    #[test]
    fn a_failed_read_ahead_never_fails_a_read_and_a_reader_waits_for_a_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let (store, vol, content) = from_snapshot(dir.path(), 24);
        let manifest = store.read_manifest(&id("snap-a")).unwrap();
        // Block 9's object is unreadable while read-ahead fetches it.
        let hash9 = manifest.get(9).unwrap();
        let path9 = find_object(dir.path(), &hash9.to_hex());
        let saved = std::fs::read(&path9).unwrap();
        std::fs::write(&path9, b"garbage").unwrap();
        let (fetched_tx, fetched_rx) = mpsc::channel::<u64>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        *lock(&vol.ahead.before_fill) = Some(Arc::new(move |stage, b| {
            if stage == 0 && b == 9 {
                fetched_tx.send(b).unwrap();
                lock(&go_rx).recv().unwrap();
            }
        }));
        let mut buf = vec![0u8; 4096];
        vol.read_at(&mut buf, 0).unwrap();
        vol.read_at(&mut buf, 4096).unwrap();
        assert_eq!(fetched_rx.recv().unwrap(), 9);
        // The failed fetch is held; a reader of block 9 waits for it, then fetches
        // block 9 itself (readable again by then) and succeeds.
        std::fs::write(&path9, &saved).unwrap();
        let reader = {
            let vol = Arc::clone(&vol);
            std::thread::spawn(move || {
                let mut block = vec![0u8; BS];
                vol.read_at(&mut block, 9 * BS as u64).map(|()| block)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !reader.is_finished(),
            "the reader waits for the fetch in flight"
        );
        go_tx.send(()).unwrap();
        let block = reader.join().unwrap().unwrap();
        assert!(block[..] == content[9 * BS..10 * BS]);
    }

    fn find_object(dir: &std::path::Path, hex: &str) -> std::path::PathBuf {
        let mut stack = vec![dir.join("objects")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().unwrap().to_string_lossy().contains(hex) {
                    return path;
                }
            }
        }
        panic!("no object for {hex}");
    }

    #[test]
    fn a_write_waits_for_a_fill_in_progress_of_the_same_block() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, vol, content) = from_snapshot(dir.path(), 32);
        let (filling_tx, filling_rx) = mpsc::channel::<u64>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        *lock(&vol.ahead.before_fill) = Some(Arc::new(move |stage, b| {
            if stage == 1 && b == 6 {
                filling_tx.send(b).unwrap();
                lock(&go_rx).recv().unwrap();
            }
        }));
        let mut buf = vec![0u8; 4096];
        vol.read_at(&mut buf, 0).unwrap();
        vol.read_at(&mut buf, 4096).unwrap();
        assert_eq!(filling_rx.recv().unwrap(), 6);
        // Block 6's old content is being written outside the lock; a whole-block write
        // and a partial one to it wait until that fill is done, then land on top.
        let new = pattern(5, BS);
        let writer = {
            let (vol, new) = (Arc::clone(&vol), new.clone());
            std::thread::spawn(move || {
                vol.write_at(&new, 6 * BS as u64).unwrap();
                vol.write_at(b"tail", 6 * BS as u64 + 100).unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!writer.is_finished(), "the write waits for the fill");
        // Other blocks stay readable meanwhile.
        let mut other = vec![0u8; BS];
        vol.read_at(&mut other, 20 * BS as u64).unwrap();
        assert!(other[..] == content[20 * BS..21 * BS]);
        go_tx.send(()).unwrap();
        writer.join().unwrap();
        let mut block = vec![0u8; BS];
        vol.read_at(&mut block, 6 * BS as u64).unwrap();
        let mut want = new;
        want[100..104].copy_from_slice(b"tail");
        assert!(block == want, "the fill landed after the write");
        assert!(vol.lock().ahead.filling.is_empty());
    }

    #[test]
    fn dropping_the_volume_ends_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, vol, _content) = from_snapshot(dir.path(), 40);
        let mut buf = vec![0u8; 4096];
        vol.read_at(&mut buf, 0).unwrap();
        vol.read_at(&mut buf, 4096).unwrap();
        let live = Arc::clone(&vol.ahead.live);
        assert!(live.load(Ordering::SeqCst) >= 2);
        let weak = Arc::downgrade(&vol);
        drop(vol);
        wait_until("the volume to drop", || weak.upgrade().is_none());
        // Drop joins the workers (a worker that dropped the last reference exits
        // right after).
        wait_until("the workers to end", || live.load(Ordering::SeqCst) == 0);
    }
}

#[cfg(test)]
mod timing {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Instant;

    use blockstore::{BlockStore, ResourceId};
    use objstore::LocalFsStore;

    use super::*;

    /// `cargo test -p volume --lib timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn lazy_fill_timing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::new(Arc::new(
            LocalFsStore::open(dir.path().join("objects")).unwrap(),
        ));
        let blocks = 600u64;
        let size = blocks * BLOCK_SIZE as u64;
        let src = Volume::create(
            &dir.path().join("src"),
            ResourceId::new("vol-src").unwrap(),
            size,
            store.clone(),
        )
        .unwrap();
        let mut x = 1u64;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        src.write_at(&data, 0).unwrap();
        src.snapshot(ResourceId::new("snap-a").unwrap()).unwrap();
        for (i, on) in [false, true, false, true].into_iter().enumerate() {
            let store = BlockStore::new(Arc::new(
                LocalFsStore::open(dir.path().join("objects")).unwrap(),
            ));
            let v = Volume::create_from_snapshot(
                &dir.path().join(format!("v{i}")),
                ResourceId::new(format!("vol-{i}")).unwrap(),
                &ResourceId::new("snap-a").unwrap(),
                None,
                store,
            )
            .unwrap();
            v.set_read_ahead(on);
            let mut buf = vec![0u8; 4 << 20];
            let t = Instant::now();
            let mut off = 0;
            while off < size {
                v.read_at(&mut buf, off).unwrap();
                off += buf.len() as u64;
            }
            eprintln!("read-ahead {on}: {:?}", t.elapsed());
        }
    }
}
