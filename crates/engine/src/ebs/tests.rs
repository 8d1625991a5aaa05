//! Snapshots racing DeleteSnapshot (found by `bench/soak.py`, which saw them answer 500
//! or leave an image without its snapshot): a parent deleted during an incremental
//! upload, a snapshot whose manifest is gone while its catalog row still says
//! `completed`, two deletes of one snapshot, RegisterImage against DeleteSnapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blockstore::{BLOCK_SIZE, BlockHash};

use super::*;
use crate::DataDir;

const REGION: &str = "us-east-1";

fn cloud() -> (tempfile::TempDir, Arc<Cloud>, Caller) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path(), true).unwrap();
    let cloud = Cloud::open(data, &[REGION.to_string()]).unwrap();
    let caller = Caller {
        account_id: "111122223333".into(),
        region: REGION.into(),
    };
    (dir, cloud, caller)
}

/// Uploads one block of `fill` at index 0 (on `parent` if given) and returns the id,
/// completed unless `complete` is false.
fn upload(cloud: &Cloud, who: &Caller, parent: Option<&str>, fill: u8, complete: bool) -> String {
    let id = cloud
        .start_snapshot(
            who,
            StartSnapshot {
                volume_size: 1,
                parent_snapshot_id: parent.map(String::from),
                ..StartSnapshot::default()
            },
        )
        .unwrap()
        .snapshot_id;
    let data = vec![fill; BLOCK_SIZE];
    let checksum = B64.encode(BlockHash::of(&data).0);
    let block = BlockWrite {
        index: 0,
        data: &data,
        data_length: Some(BLOCK_SIZE as u64),
        checksum: &checksum,
        algorithm: "SHA256",
    };
    cloud.put_snapshot_block(who, &id, block).unwrap();
    if complete {
        cloud
            .complete_snapshot(who, &id, 1, None, None, None)
            .unwrap();
    }
    id
}

#[test]
fn an_incremental_upload_whose_parent_was_deleted_fails_with_not_found() {
    let (_dir, cloud, who) = cloud();
    let parent = upload(&cloud, &who, None, 1, true);
    let child = upload(&cloud, &who, Some(&parent), 2, false);
    cloud.delete_snapshot(&who, &parent).unwrap();

    let err = cloud
        .complete_snapshot(&who, &child, 1, None, None, None)
        .unwrap_err();
    assert_eq!((err.kind, err.status), ("ResourceNotFoundException", 404));
    // It can never complete: it failed, and its blocks are no longer GC roots.
    let row = cloud.catalog.resource(&child).unwrap().unwrap();
    assert_eq!(row.state, "error");
    assert!(cloud.catalog.upload_blocks(&child).unwrap().is_empty());
    let report = cloud.gc_region(REGION).unwrap();
    assert_eq!(report.blocks_deleted, 2, "{report:?}");
    // A new incremental upload on the deleted parent is refused the same way.
    let err = cloud
        .start_snapshot(
            &who,
            StartSnapshot {
                volume_size: 1,
                parent_snapshot_id: Some(parent),
                ..StartSnapshot::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind, "ResourceNotFoundException");
}

#[test]
fn a_manifest_deleted_under_a_completed_row_reads_as_not_found() {
    // DeleteSnapshot removes the manifest, then the catalog row: a read in between
    // sees the row but no manifest.
    let (_dir, cloud, who) = cloud();
    let id = upload(&cloud, &who, None, 3, true);
    let storage = cloud.region(REGION).unwrap();
    storage
        .store
        .delete_snapshot(&blockstore::ResourceId::new(&id).unwrap())
        .unwrap();

    let err = cloud
        .list_snapshot_blocks(&who, &id, None, None, None)
        .unwrap_err();
    assert_eq!((err.kind, err.status), ("ResourceNotFoundException", 404));
    let err = cloud
        .start_snapshot(
            &who,
            StartSnapshot {
                volume_size: 1,
                parent_snapshot_id: Some(id),
                ..StartSnapshot::default()
            },
        )
        .unwrap_err();
    assert_eq!((err.kind, err.status), ("ResourceNotFoundException", 404));
}

/// Runs `a` and `b` at once (released together).
fn race<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            barrier.wait();
            a()
        });
        barrier.wait();
        let second = b();
        (first.join().unwrap(), second)
    })
}

#[test]
fn concurrent_deletes_of_one_snapshot_answer_not_found_not_internal() {
    let (_dir, cloud, who) = cloud();
    for fill in 0..20u8 {
        let id = upload(&cloud, &who, None, fill + 1, true);
        let (a, b) = race(
            || cloud.delete_snapshot(&who, &id),
            || cloud.delete_snapshot(&who, &id),
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        let err = a.err().or(b.err()).unwrap();
        assert_eq!(err.code, "InvalidSnapshot.NotFound", "{err:?}");
    }
}

#[test]
fn register_image_and_delete_snapshot_never_both_succeed() {
    use crate::images::{EbsRequest, MappingRequest, RegisterImage};
    let (_dir, cloud, who) = cloud();
    for n in 0..20u8 {
        let id = upload(&cloud, &who, None, n + 1, true);
        let request = RegisterImage {
            name: format!("race-{n}"),
            root_device_name: Some("/dev/xvda".into()),
            block_device_mappings: vec![MappingRequest {
                device_name: Some("/dev/xvda".into()),
                ebs: Some(EbsRequest {
                    snapshot_id: Some(id.clone()),
                    ..EbsRequest::default()
                }),
                ..MappingRequest::default()
            }],
            ..RegisterImage::default()
        };
        let (image, delete) = race(
            || cloud.register_image(&who, request),
            || cloud.delete_snapshot(&who, &id),
        );
        match (&image, &delete) {
            (Ok(_), Err(e)) => assert_eq!(e.code, "InvalidSnapshot.InUse", "{e:?}"),
            (Err(e), Ok(())) => assert_eq!(e.code, "InvalidSnapshot.NotFound", "{e:?}"),
            _ => panic!("{image:?} {delete:?}"),
        }
    }
}
