//! Recovery of EBS direct uploads: a cloud reopened on the same data directory in the
//! middle of an upload resumes it, fails it if it timed out while down, and fails it
//! with a clear reason if a block it acknowledged is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blockstore::{BLOCK_SIZE, BlockHash};

use crate::ebs::{BlockWrite, StartSnapshot};
use crate::{Caller, Cloud, DataDir, snapshots};

const REGION: &str = "us-east-1";

fn open(dir: &std::path::Path) -> Arc<Cloud> {
    let data = DataDir::open(dir, true).unwrap();
    Cloud::open(data, &[REGION.to_string()]).unwrap()
}

fn caller() -> Caller {
    Caller {
        account_id: "111122223333".into(),
        region: REGION.into(),
    }
}

/// A block whose bytes depend on `seed` everywhere (not compressible to one value).
fn block(seed: u8) -> Vec<u8> {
    (0..BLOCK_SIZE)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

fn put(cloud: &Cloud, id: &str, index: u64, data: &[u8]) {
    let checksum = B64.encode(BlockHash::of(data).0);
    cloud
        .put_snapshot_block(
            &caller(),
            id,
            BlockWrite {
                index,
                data,
                data_length: Some(data.len() as u64),
                checksum: &checksum,
                algorithm: "SHA256",
            },
        )
        .unwrap();
}

fn start(cloud: &Cloud, timeout: i64) -> String {
    cloud
        .start_snapshot(
            &caller(),
            StartSnapshot {
                volume_size: 1,
                timeout: Some(timeout),
                ..StartSnapshot::default()
            },
        )
        .unwrap()
        .snapshot_id
}

fn state(cloud: &Cloud, id: &str) -> (String, Option<String>) {
    let row = cloud.catalog.resource(id).unwrap().unwrap();
    let doc = snapshots::doc_of(&row).unwrap();
    (row.state, doc.state_message)
}

#[test]
fn an_upload_resumes_after_a_reopen_and_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let before: Vec<(u64, Vec<u8>)> = vec![(0, block(1)), (7, block(2)), (9, block(1))];
    let id = {
        let cloud = open(dir.path());
        let id = start(&cloud, 60);
        for (index, data) in &before {
            put(&cloud, &id, *index, data);
        }
        put(&cloud, &id, 3, &vec![0u8; BLOCK_SIZE]);
        id
        // dropped without shutdown, as a crash leaves it
    };

    let cloud = open(dir.path());
    assert_eq!(state(&cloud, &id), ("pending".to_string(), None));
    // GC after the restart keeps every acknowledged block (no session pins them now).
    let report = cloud.gc_region(REGION).unwrap();
    assert_eq!(report.blocks_deleted, 0, "{report:?}");
    let after: Vec<(u64, Vec<u8>)> = vec![(12, block(3)), (7, block(4))];
    for (index, data) in &after {
        put(&cloud, &id, *index, data);
    }
    // Blocks 0, 3 (zeros), 7 (overwritten), 9 and 12: five distinct indexes.
    let wrong = cloud.complete_snapshot(&caller(), &id, 4, None, None, None);
    assert!(wrong.is_err());
    cloud
        .complete_snapshot(&caller(), &id, 5, None, None, None)
        .unwrap();
    assert_eq!(state(&cloud, &id).0, "completed");
    assert!(cloud.catalog.upload_blocks(&id).unwrap().is_empty());

    let expected: Vec<(u64, Vec<u8>)> =
        vec![(0, block(1)), (7, block(4)), (9, block(1)), (12, block(3))];
    let page = cloud
        .list_snapshot_blocks(&caller(), &id, None, None, None)
        .unwrap();
    let indexes: Vec<u64> = page.blocks.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, vec![0, 7, 9, 12]);
    for ((index, token), (want_index, want)) in page.blocks.iter().zip(&expected) {
        assert_eq!(index, want_index);
        let (data, _) = cloud
            .get_snapshot_block(&caller(), &id, *index, token)
            .unwrap();
        assert!(data == *want, "block {index} differs");
    }
    // The overwritten block 7 is garbage now; everything the snapshot uses stays.
    let report = cloud.gc_region(REGION).unwrap();
    assert_eq!(report.blocks_deleted, 1, "{report:?}");
}

#[test]
fn an_upload_that_lost_an_acknowledged_block_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let cloud = open(dir.path());
        let id = start(&cloud, 60);
        put(&cloud, &id, 0, &block(5));
        put(&cloud, &id, 1, &block(6));
        cloud
            .region(REGION)
            .unwrap()
            .store
            .remove_block_unchecked(&BlockHash::of(&block(6)))
            .unwrap();
        id
    };
    let cloud = open(dir.path());
    let (state, message) = state(&cloud, &id);
    assert_eq!(state, "error");
    let message = message.unwrap();
    assert!(
        message.contains("missing from the block store") && message.contains("block index 1"),
        "{message}"
    );
    assert!(cloud.catalog.upload_blocks(&id).unwrap().is_empty());
    let err = cloud
        .complete_snapshot(&caller(), &id, 2, None, None, None)
        .unwrap_err();
    assert_eq!(err.kind, "ValidationException");
    // Released: the surviving block is collected.
    assert_eq!(cloud.gc_region(REGION).unwrap().blocks_deleted, 1);
}

#[test]
fn an_upload_whose_timeout_passed_while_down_fails() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let cloud = open(dir.path());
        let id = start(&cloud, 10);
        // Eleven minutes pass while the service is down.
        let row = cloud.catalog.resource(&id).unwrap().unwrap();
        let mut doc = snapshots::doc_of(&row).unwrap();
        doc.start_time_ms -= 11 * 60_000;
        cloud
            .catalog
            .update_resource(&id, "pending", &snapshots::encode(&doc).unwrap())
            .unwrap();
        id
    };
    let cloud = open(dir.path());
    let (state, message) = state(&cloud, &id);
    assert_eq!(state, "error");
    assert!(message.unwrap().contains("timed out"));
}

#[test]
fn a_recent_write_keeps_an_old_upload_alive_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let cloud = open(dir.path());
        let id = start(&cloud, 10);
        put(&cloud, &id, 0, &block(8));
        // Started long ago, but a block was written just now: not timed out.
        let row = cloud.catalog.resource(&id).unwrap().unwrap();
        let mut doc = snapshots::doc_of(&row).unwrap();
        doc.start_time_ms -= 60 * 60_000;
        cloud
            .catalog
            .update_resource(&id, "pending", &snapshots::encode(&doc).unwrap())
            .unwrap();
        id
    };
    let cloud = open(dir.path());
    assert_eq!(state(&cloud, &id).0, "pending");
    assert_eq!(cloud.expire_uploads().unwrap(), 0);
    put(&cloud, &id, 1, &block(9));
    cloud
        .complete_snapshot(&caller(), &id, 2, None, None, None)
        .unwrap();
    assert_eq!(state(&cloud, &id).0, "completed");
}
