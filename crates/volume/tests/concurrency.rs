//! Snapshots taken while writers run, and GC running while snapshots are created.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use volume::Volume;

fn pattern(seed: u64) -> Vec<u8> {
    Rng(seed).bytes(BS)
}

#[test]
fn snapshot_is_point_in_time_and_concurrent_writes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let blocks = 48u64;
    let vol = Volume::create(
        &dir.path().join("v"),
        id("vol-1"),
        blocks * BS as u64,
        store.clone(),
    )
    .unwrap();
    let mut model = vec![0u8; blocks as usize * BS];
    for b in 0..blocks {
        let data = pattern(1000 + b);
        vol.write_at(&data, b * BS as u64).unwrap();
        model[b as usize * BS..(b as usize + 1) * BS].copy_from_slice(&data);
    }
    let at_snapshot = model.clone();

    let pending = vol.begin_snapshot(id("snap-1")).unwrap();
    let progress = pending.progress();
    let model = Arc::new(Mutex::new(model));
    let writes_during = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (vol, model, writes_during, progress) = (
            vol.clone(),
            model.clone(),
            writes_during.clone(),
            progress.clone(),
        );
        std::thread::spawn(move || {
            let mut rng = Rng(42);
            for round in 0..3u64 {
                for _ in 0..blocks {
                    let b = rng.below(blocks);
                    // Alternate partial and whole-block writes.
                    let (off, len) = if rng.below(2) == 0 {
                        (b * BS as u64 + rng.below(1000), 4096)
                    } else {
                        (b * BS as u64, BS as u64)
                    };
                    let data = Rng(round * 1_000_000 + off).bytes(len as usize);
                    if progress.percent() < 100 {
                        writes_during.fetch_add(1, Ordering::Relaxed);
                    }
                    vol.write_at(&data, off).unwrap();
                    model.lock().unwrap()[off as usize..(off + len) as usize]
                        .copy_from_slice(&data);
                }
            }
        })
    };
    let summary = pending.run().unwrap();
    writer.join().unwrap();
    assert!(
        writes_during.load(Ordering::Relaxed) > 0,
        "the writer never overlapped the snapshot; the test proves nothing"
    );
    assert_eq!(
        summary.blocks_read, blocks,
        "every frozen block captured exactly once"
    );
    assert_eq!(progress.total_blocks.load(Ordering::Relaxed), blocks);
    assert_eq!(progress.done_blocks.load(Ordering::Relaxed), blocks);
    assert_eq!(progress.percent(), 100);
    assert_eq!(
        snapshot_content(&store, &id("snap-1")),
        at_snapshot,
        "the snapshot holds exactly the state at begin_snapshot"
    );
    let final_model = model.lock().unwrap().clone();
    assert_eq!(
        volume_content(&vol),
        final_model,
        "no concurrent write was lost"
    );
    vol.snapshot(id("snap-2")).unwrap();
    assert_eq!(snapshot_content(&store, &id("snap-2")), final_model);
    assert!(store.scrub().unwrap().is_clean());
}

#[test]
fn gc_concurrent_with_snapshot_creation_never_frees_a_referenced_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let blocks = 16u64;
    let vol = Volume::create(
        &dir.path().join("v"),
        id("vol-1"),
        blocks * BS as u64,
        store.clone(),
    )
    .unwrap();
    // A small pool of block contents: blocks drop out of every manifest and come back
    // as dedup hits while GC considers them garbage.
    let pool: Vec<Vec<u8>> = (0..8).map(pattern).collect();
    let done = Arc::new(AtomicBool::new(false));
    let gc_runs = Arc::new(AtomicUsize::new(0));
    let collector = {
        let (store, done, gc_runs) = (store.clone(), done.clone(), gc_runs.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                store.gc().unwrap();
                gc_runs.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut rng = Rng(11);
    let mut live: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..30 {
        let (a, c) = (rng.below(8) as usize, rng.below(8) as usize);
        for b in 0..blocks {
            let data = if b % 2 == 0 { &pool[a] } else { &pool[c] };
            vol.write_at(data, b * BS as u64).unwrap();
        }
        let name = format!("snap-{i}");
        vol.snapshot(id(&name)).unwrap();
        live.push((name, volume_content(&vol)));
        // Keep two snapshots; older ones become garbage for GC.
        if live.len() > 2 {
            let (old, _) = live.remove(0);
            store.delete_snapshot(&id(&old)).unwrap();
        }
        for (name, content) in &live {
            assert_eq!(
                &snapshot_content(&store, &id(name)),
                content,
                "{name} after GC"
            );
        }
    }
    done.store(true, Ordering::Relaxed);
    collector.join().unwrap();
    assert!(
        gc_runs.load(Ordering::Relaxed) >= 5,
        "GC really ran concurrently"
    );
    assert!(store.scrub().unwrap().is_clean());
    // The flush makes the new backing durable, which releases the hold on the old one.
    vol.flush().unwrap();
    store.gc().unwrap();
    assert!(store.list_retained().unwrap().is_empty());
    let referenced: HashSet<_> = live
        .iter()
        .flat_map(|(name, _)| store.referenced_by(&id(name)).unwrap())
        .collect();
    let stored: HashSet<_> = store.stored_blocks().unwrap().into_iter().collect();
    assert_eq!(
        stored, referenced,
        "after a quiet GC exactly the referenced blocks remain"
    );
}

/// A pending snapshot that its caller drops without running (e.g. the catalog could not
/// record it because the disk was full) must not wedge the volume: the next snapshot can
/// begin, and it still contains the blocks that were frozen for the abandoned one.
#[test]
fn abandoned_pending_snapshot_frees_the_volume_and_keeps_its_blocks_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let vol = Volume::create(
        &dir.path().join("v"),
        id("vol-1"),
        8 * BS as u64,
        store.clone(),
    )
    .unwrap();
    let data = pattern(7);
    vol.write_at(&data, 3 * BS as u64).unwrap();
    assert_eq!(vol.block_counts().1, 1);

    let abandoned = vol.begin_snapshot(id("snap-1")).unwrap();
    assert_eq!(
        vol.block_counts().1,
        0,
        "begin_snapshot froze the dirty set"
    );
    assert!(
        vol.begin_snapshot(id("snap-2")).is_err(),
        "one snapshot at a time"
    );
    drop(abandoned);
    assert_eq!(vol.block_counts().1, 1, "the frozen block is dirty again");

    let summary = vol.snapshot(id("snap-3")).unwrap();
    assert_eq!(summary.blocks_read, 1);
    let content = snapshot_content(&store, &id("snap-3"));
    assert_eq!(&content[3 * BS..4 * BS], &data[..]);
    assert!(!store.snapshot_exists(&id("snap-1")).unwrap());
    // A snapshot that ran to completion does not undo anything when dropped.
    assert_eq!(vol.block_counts().1, 0);
    vol.snapshot(id("snap-4")).unwrap();
}
