//! Volume I/O, copy-on-read, incremental snapshots, holds, GC and scrub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use blockstore::BlockStoreError;
use common::*;
use volume::{Volume, VolumeError};

#[test]
fn huge_empty_volume_allocates_nothing_and_reads_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let size = 16u64 << 40;
    let vol = Volume::create(&dir.path().join("v"), id("vol-big"), size, store).unwrap();
    let mut total_len = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir.path().join("v")).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_name().to_string_lossy().starts_with("data.") {
            continue;
        }
        let meta = entry.metadata().unwrap();
        total_len += meta.len();
        allocated += meta.blocks() * 512;
    }
    assert!(total_len >= size, "data segments cover the volume");
    assert!(
        allocated < 1 << 20,
        "nothing is allocated: {allocated} bytes"
    );
    let mut buf = vec![1u8; 4096];
    vol.read_at(&mut buf, size - 4096).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    vol.write_at(b"end", size - 3).unwrap();
    vol.read_at(&mut buf[..3], size - 3).unwrap();
    assert_eq!(&buf[..3], b"end");
    assert!(matches!(
        vol.read_at(&mut buf, size - 10),
        Err(VolumeError::OutOfRange { .. })
    ));
    assert!(matches!(
        vol.write_at(b"x", u64::MAX),
        Err(VolumeError::OutOfRange { .. })
    ));
}

#[test]
fn invalid_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    for size in [0, 1000, (64u64 << 40) + 512] {
        let r = Volume::create(
            &dir.path().join(format!("v{size}")),
            id("vol-x"),
            size,
            store.clone(),
        );
        assert!(matches!(r, Err(VolumeError::InvalidSize { .. })), "{size}");
    }
}

#[test]
fn random_io_matches_a_model_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let size = 6 * BS as u64 + 4096;
    let vdir = dir.path().join("v");
    let vol = Volume::create(&vdir, id("vol-1"), size, store.clone()).unwrap();
    let mut model = vec![0u8; size as usize];
    let mut rng = Rng(7);
    for _ in 0..300 {
        let off = rng.below(size);
        let len = rng.below((size - off).min(3 * BS as u64)) + 1;
        let len = len.min(size - off);
        match rng.below(4) {
            0 => {
                vol.write_zeroes(off, len).unwrap();
                model[off as usize..(off + len) as usize].fill(0);
            }
            1 => {
                let mut got = vec![0; len as usize];
                vol.read_at(&mut got, off).unwrap();
                assert_eq!(got, model[off as usize..(off + len) as usize]);
            }
            _ => {
                let data = rng.bytes(len as usize);
                vol.write_at(&data, off).unwrap();
                model[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
        }
    }
    vol.close().unwrap();
    drop(vol);
    let vol = Volume::open(&vdir, store).unwrap();
    assert_eq!(volume_content(&vol), model);
}

#[test]
fn volume_from_snapshot_is_lazy_and_copy_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let size = 8 * BS as u64;
    let src = Volume::create(&dir.path().join("src"), id("vol-src"), size, store.clone()).unwrap();
    let mut rng = Rng(1);
    let content = rng.bytes(size as usize);
    src.write_at(&content, 0).unwrap();
    src.snapshot(id("snap-a")).unwrap();

    let vol = Volume::create_from_snapshot(
        &dir.path().join("clone"),
        id("vol-clone"),
        &id("snap-a"),
        Some(size * 2),
        store.clone(),
    )
    .unwrap();
    assert_eq!(vol.block_counts().0, 0, "no block copied at creation");
    let mut buf = vec![0u8; 100];
    vol.read_at(&mut buf, BS as u64 + 5).unwrap();
    assert_eq!(buf, content[BS + 5..BS + 105]);
    assert_eq!(vol.block_counts().0, 1, "the block read is kept");
    // A partial write into an absent block keeps the rest of the block.
    vol.write_at(b"patch", 3 * BS as u64 + 10).unwrap();
    let mut expected = content.clone();
    expected[3 * BS + 10..3 * BS + 15].copy_from_slice(b"patch");
    expected.resize(size as usize * 2, 0);
    assert_eq!(volume_content(&vol), expected);
    assert!(matches!(
        Volume::create_from_snapshot(
            &dir.path().join("small"),
            id("vol-s"),
            &id("snap-a"),
            Some(BS as u64),
            store.clone()
        ),
        Err(VolumeError::InvalidSize { .. })
    ));
    assert!(matches!(
        Volume::create_from_snapshot(
            &dir.path().join("none"),
            id("vol-n"),
            &id("snap-missing"),
            None,
            store
        ),
        Err(VolumeError::Store(BlockStoreError::SnapshotNotFound { .. }))
    ));
}

#[test]
fn snapshots_are_incremental_deduplicated_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let blocks = 40u64;
    let vol = Volume::create(
        &dir.path().join("v"),
        id("vol-1"),
        blocks * BS as u64,
        store.clone(),
    )
    .unwrap();
    let mut rng = Rng(3);
    let repeated = rng.bytes(BS);
    for b in 0..blocks {
        match b % 4 {
            0 => {} // zeros
            1 => vol.write_at(&repeated, b * BS as u64).unwrap(),
            _ => vol.write_at(&rng.bytes(BS), b * BS as u64).unwrap(),
        }
    }
    let full = vol.snapshot(id("snap-1")).unwrap();
    assert_eq!(full.blocks_read, 30, "every written block is read once");
    assert_eq!(full.new_blocks, 21, "20 random + 1 repeated block stored");
    assert_eq!(
        full.manifest.entries().len(),
        30,
        "zero blocks are not listed"
    );
    assert_eq!(
        snapshot_content(&store, &id("snap-1")),
        volume_content(&vol)
    );

    vol.write_at(&rng.bytes(100), 5 * BS as u64 + 7).unwrap();
    vol.write_zeroes(6 * BS as u64, BS as u64).unwrap();
    let inc = vol.snapshot(id("snap-2")).unwrap();
    assert_eq!(inc.blocks_read, 2, "only dirty blocks are read");
    assert_eq!(inc.new_blocks, 1);
    assert_eq!(inc.manifest.parent_id, Some(id("snap-1")));
    assert_eq!(inc.manifest.entries().len(), 29);
    assert_eq!(
        snapshot_content(&store, &id("snap-2")),
        volume_content(&vol)
    );
    let nothing = vol.snapshot(id("snap-3")).unwrap();
    assert_eq!(nothing.blocks_read, 0);
    assert_eq!(nothing.manifest.entries(), inc.manifest.entries());
    assert!(store.scrub().unwrap().is_clean());
}

#[test]
fn grow_then_snapshot_covers_the_new_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let vol = Volume::create(&dir.path().join("v"), id("vol-1"), BS as u64, store.clone()).unwrap();
    vol.write_at(&[7u8; 512], 0).unwrap();
    vol.snapshot(id("snap-1")).unwrap();
    vol.grow(3 * BS as u64 + 512).unwrap();
    assert!(vol.grow(BS as u64).is_err(), "shrinking is refused");
    vol.write_at(&[9u8; 512], 3 * BS as u64).unwrap();
    let s = vol.snapshot(id("snap-2")).unwrap();
    assert_eq!(s.manifest.volume_size, 3 * BS as u64 + 512);
    assert_eq!(
        snapshot_content(&store, &id("snap-2")),
        volume_content(&vol)
    );
}

#[test]
fn deleted_snapshot_stays_readable_while_a_volume_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let src = Volume::create(
        &dir.path().join("src"),
        id("vol-src"),
        4 * BS as u64,
        store.clone(),
    )
    .unwrap();
    let content = Rng(9).bytes(4 * BS);
    src.write_at(&content, 0).unwrap();
    src.snapshot(id("snap-a")).unwrap();
    Volume::destroy(&dir.path().join("src"), &store).unwrap();

    let clone = Volume::create_from_snapshot(
        &dir.path().join("c"),
        id("vol-c"),
        &id("snap-a"),
        None,
        store.clone(),
    )
    .unwrap();
    store.delete_snapshot(&id("snap-a")).unwrap();
    assert!(!store.snapshot_exists(&id("snap-a")).unwrap());
    assert_eq!(store.list_retained().unwrap(), [id("snap-a")]);
    let report = store.gc().unwrap();
    assert_eq!(
        report.blocks_deleted, 0,
        "the clone still reads these blocks"
    );
    assert_eq!(volume_content(&clone), content);

    drop(clone);
    Volume::destroy(&dir.path().join("c"), &store).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.manifests_dropped, 1);
    assert_eq!(report.blocks_deleted, 4);
    assert!(store.stored_blocks().unwrap().is_empty());
}

#[test]
fn scrub_reports_corrupt_and_missing_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let vol = Volume::create(
        &dir.path().join("v"),
        id("vol-1"),
        3 * BS as u64,
        store.clone(),
    )
    .unwrap();
    vol.write_at(&Rng(5).bytes(3 * BS), 0).unwrap();
    let s = vol.snapshot(id("snap-1")).unwrap();
    assert!(store.scrub().unwrap().is_clean());
    let entries = s.manifest.entries();
    // Corrupt one block file in place, remove another.
    let hex = entries[0].1.to_hex();
    let path = dir.path().join("objects/blocks").join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    store.remove_block_unchecked(&entries[1].1).unwrap();
    let report = store.scrub().unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.corrupt_blocks.len(), 1);
    assert_eq!(report.corrupt_blocks[0].0, entries[0].1);
    assert_eq!(
        report.missing_blocks,
        [("snap-1".to_string(), entries[1].1)]
    );
    assert!(matches!(
        store.get_block(&entries[0].1),
        Err(BlockStoreError::CorruptBlock { .. })
    ));
}

#[test]
fn stats_account_for_dedup_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let vol = Volume::create(
        &dir.path().join("v"),
        id("vol-1"),
        8 * BS as u64,
        store.clone(),
    )
    .unwrap();
    let text = vec![b'a'; BS];
    for b in 0..8 {
        vol.write_at(&text, b * BS as u64).unwrap();
    }
    vol.snapshot(id("snap-1")).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.snapshots, 1);
    assert_eq!(stats.logical_bytes, 8 * BS as u64);
    assert_eq!(stats.unique_bytes, BS as u64);
    assert!((stats.dedup_ratio() - 8.0).abs() < 1e-9);
    assert!(stats.compression_ratio() > 100.0);
    let _ = Arc::clone(&store);
}
