//! Copying a snapshot's data between region stores: the work behind CopySnapshot and
//! CopyImage, in parallel with bounded memory.
//!
//! The source manifest's distinct block hashes are shared out to [`COPY_THREADS`]
//! threads through one atomic cursor. For each hash a thread either references the block
//! (the destination store has it already: nothing is read) or fetches its stored bytes
//! from the source store (decoded and SHA-256 verified, but not compressed again) and
//! stages them through the destination's
//! [`WriteSession::copy_block_from`](blockstore::WriteSession::copy_block_from), which
//! pins it against GC. Each thread
//! holds one block at a time, so memory stays at about `COPY_THREADS` × 512 KiB (twice
//! that with the encoded copy). The first error stops every thread; the manifest is
//! committed (the session makes every stored block durable first) only when all blocks
//! are in.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use blockstore::{BlockHash, BlockStore, BlockStoreError, Manifest, ResourceId};
use catalog::now_ms;
use volume::SnapshotProgress;

use crate::{Ec2Error, Ec2Result};

/// Threads copying blocks. Fetching is CPU work (decode, SHA-256) and storing waits on
/// the disk, so a few more threads than cores keep both busy.
pub const COPY_THREADS: usize = 4;

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopySummary {
    /// Manifest entries (blocks of the snapshot that are not all zeros).
    pub blocks: u64,
    /// Distinct blocks among them.
    pub distinct_blocks: u64,
    /// Distinct blocks fetched from the source and stored (the rest were present).
    pub copied_blocks: u64,
    /// Bytes written to the destination store (after compression).
    pub stored_bytes: u64,
}

/// Copies snapshot `src_id` from `src` to `dst` as `dst_id` (no parent: a copy is a
/// full snapshot in its region) on [`COPY_THREADS`] threads, copying only blocks `dst`
/// lacks. `progress` counts distinct blocks.
pub fn copy_snapshot_blocks(
    src: &BlockStore,
    dst: &Arc<BlockStore>,
    src_id: &ResourceId,
    dst_id: &ResourceId,
    progress: Option<&SnapshotProgress>,
) -> Ec2Result<CopySummary> {
    copy_snapshot_blocks_with(src, dst, src_id, dst_id, progress, COPY_THREADS)
}

/// [`copy_snapshot_blocks`] on `threads` threads (at least one; benchmarks compare).
pub fn copy_snapshot_blocks_with(
    src: &BlockStore,
    dst: &Arc<BlockStore>,
    src_id: &ResourceId,
    dst_id: &ResourceId,
    progress: Option<&SnapshotProgress>,
    threads: usize,
) -> Ec2Result<CopySummary> {
    let manifest = src.read_manifest(src_id)?;
    let mut seen = HashSet::new();
    let distinct: Vec<BlockHash> = manifest
        .entries()
        .iter()
        .filter_map(|(_, hash)| seen.insert(*hash).then_some(*hash))
        .collect();
    drop(seen);
    if let Some(p) = progress {
        p.total_blocks
            .store(distinct.len() as u64, Ordering::Relaxed);
    }
    let session = dst.session();
    let cursor = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<BlockStoreError>> = Mutex::new(None);
    let copied = AtomicU64::new(0);
    let stored_bytes = AtomicU64::new(0);
    let copy_one = |hash: &BlockHash| -> Result<(), BlockStoreError> {
        let stored = session.copy_block_from(src, *hash)?;
        if stored > 0 {
            copied.fetch_add(1, Ordering::Relaxed);
            stored_bytes.fetch_add(stored, Ordering::Relaxed);
        }
        Ok(())
    };
    let worker = || {
        while !stop.load(Ordering::Relaxed) {
            let i = cursor.fetch_add(1, Ordering::Relaxed);
            let Some(hash) = distinct.get(i) else {
                return;
            };
            if let Err(e) = copy_one(hash) {
                stop.store(true, Ordering::Relaxed);
                crate::lock(&first_error).get_or_insert(e);
                return;
            }
            if let Some(p) = progress {
                p.done_blocks.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let threads = threads.min(distinct.len()).max(1);
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(worker);
        }
        worker();
    });
    if let Some(e) = crate::lock(&first_error).take() {
        return Err(e.into());
    }
    let copy = Manifest::new(
        dst_id.clone(),
        None,
        manifest.volume_size,
        now_ms() as u64,
        manifest.entries().to_vec(),
    )
    .map_err(|e| Ec2Error::internal("manifest", e))?;
    session.commit(&copy)?;
    Ok(CopySummary {
        blocks: manifest.entries().len() as u64,
        distinct_blocks: distinct.len() as u64,
        copied_blocks: copied.load(Ordering::Relaxed),
        stored_bytes: stored_bytes.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use objstore::LocalFsStore;

    use super::*;

    fn store(dir: &std::path::Path) -> Arc<BlockStore> {
        BlockStore::new(Arc::new(LocalFsStore::open(dir).unwrap()))
    }

    fn rid(s: &str) -> ResourceId {
        ResourceId::new(s).unwrap()
    }

    /// Writes a snapshot of `blocks` blocks: distinct ones, repeats and zeros.
    fn snapshot(store: &Arc<BlockStore>, id: &str, blocks: u64, seed: u8) -> Vec<u8> {
        let bs = blockstore::BLOCK_SIZE;
        let session = store.session();
        let mut content = vec![0u8; blocks as usize * bs];
        let mut entries = Vec::new();
        for b in 0..blocks {
            if b % 3 == 1 {
                continue;
            }
            let tag = if b % 3 == 2 { 0 } else { b };
            let block: Vec<u8> = (0..bs)
                .map(|i| (i as u64 * 31 + tag * 7 + u64::from(seed)) as u8 ^ (i >> 9) as u8)
                .collect();
            let put = session.put_block(&block).unwrap();
            entries.push((b, put.hash));
            content[b as usize * bs..(b as usize + 1) * bs].copy_from_slice(&block);
        }
        let m = Manifest::new(rid(id), None, blocks * bs as u64, 1, entries).unwrap();
        session.commit(&m).unwrap();
        content
    }

    fn content(store: &BlockStore, id: &str) -> Vec<u8> {
        let m = store.read_manifest(&rid(id)).unwrap();
        let bs = blockstore::BLOCK_SIZE;
        let mut out = vec![0u8; m.volume_size as usize];
        for (b, hash) in m.entries() {
            out[*b as usize * bs..(*b as usize + 1) * bs]
                .copy_from_slice(&store.get_block(hash).unwrap());
        }
        out
    }

    #[test]
    fn copies_every_block_once_and_skips_what_the_destination_has() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (store(&dir.path().join("a")), store(&dir.path().join("b")));
        let want = snapshot(&src, "snap-0000000000000000a", 30, 1);
        let progress = SnapshotProgress::default();
        let s = copy_snapshot_blocks(
            &src,
            &dst,
            &rid("snap-0000000000000000a"),
            &rid("snap-0000000000000000b"),
            Some(&progress),
        )
        .unwrap();
        // 20 non-zero blocks; the repeats share block 0's content: 10 distinct.
        assert_eq!((s.blocks, s.distinct_blocks, s.copied_blocks), (20, 10, 10));
        assert_eq!(progress.percent(), 100);
        assert!(content(&dst, "snap-0000000000000000b") == want);
        // A second copy stores nothing new.
        let s = copy_snapshot_blocks(
            &src,
            &dst,
            &rid("snap-0000000000000000a"),
            &rid("snap-0000000000000000c"),
            None,
        )
        .unwrap();
        assert_eq!(s.copied_blocks, 0);
        assert!(content(&dst, "snap-0000000000000000c") == want);
    }

    #[test]
    fn a_corrupt_source_block_fails_the_copy_and_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (store(&dir.path().join("a")), store(&dir.path().join("b")));
        snapshot(&src, "snap-0000000000000000a", 12, 2);
        // Corrupt one block object in the source.
        let mut stack = vec![dir.path().join("a")];
        let mut victim = None;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().contains("blocks") {
                    victim = Some(p);
                }
            }
        }
        std::fs::write(victim.unwrap(), b"not a block").unwrap();
        let err = copy_snapshot_blocks(
            &src,
            &dst,
            &rid("snap-0000000000000000a"),
            &rid("snap-0000000000000000b"),
            None,
        );
        assert!(err.is_err());
        assert!(!dst.snapshot_exists(&rid("snap-0000000000000000b")).unwrap());
    }
}
