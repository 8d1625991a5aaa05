//! Volumes through the engine under concurrency: races that `bench/soak.py` found
//! answered 500 before (two DeleteVolume calls of one volume, CreateVolume from a snapshot
//! deleted meanwhile, CreateSnapshot racing DeleteVolume).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::DataDir;

fn cloud() -> (tempfile::TempDir, Arc<Cloud>, Caller) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path(), true).unwrap();
    let cloud = Cloud::open(data, &["us-east-1".to_string()]).unwrap();
    let caller = Caller {
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
    };
    (dir, cloud, caller)
}

fn new_volume(cloud: &Cloud, caller: &Caller) -> String {
    cloud
        .create_volume(
            caller,
            CreateVolume {
                size: Some(1),
                availability_zone: Some("us-east-1a".into()),
                ..CreateVolume::default()
            },
        )
        .unwrap()
        .id
}

/// Runs `calls` at once (released together) and returns their results.
fn race<T: Send>(calls: Vec<Box<dyn FnOnce() -> T + Send + '_>>) -> Vec<T> {
    let barrier = std::sync::Barrier::new(calls.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .into_iter()
            .map(|call| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    call()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_deletes_of_one_volume_answer_not_found_not_internal() {
    let (_dir, cloud, caller) = cloud();
    for _ in 0..20 {
        let id = new_volume(&cloud, &caller);
        let calls: Vec<Box<dyn FnOnce() -> Ec2Result<()> + Send>> = (0..4)
            .map(|_| {
                let (cloud, caller, id) = (&cloud, &caller, id.clone());
                Box::new(move || cloud.delete_volume(caller, &id)) as Box<_>
            })
            .collect();
        let results = race(calls);
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        for r in results.into_iter().filter_map(Result::err) {
            assert_eq!(r.code, "InvalidVolume.NotFound", "{r:?}");
        }
    }
}

#[test]
fn volume_from_a_snapshot_deleted_meanwhile_is_not_found() {
    // CreateVolume checked the snapshot, then a DeleteSnapshot removed it before the
    // volume took its hold: the block store says SnapshotNotFound.
    let (_dir, cloud, caller) = cloud();
    let doc = VolumeDoc {
        size_gib: 1,
        volume_type: "gp3".into(),
        iops: Some(3000),
        throughput: Some(125),
        availability_zone: "us-east-1a".into(),
        snapshot_id: Some("snap-0123456789abcdef0".into()),
        encrypted: false,
        multi_attach: false,
        create_time_ms: now_ms(),
        client_token: None,
        last_modification: None,
        auto_enable_io: false,
        attachment: None,
    };
    let err = cloud
        .materialize_volume(&caller.account_id, &caller.region, doc, Vec::new())
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status),
        ("InvalidSnapshot.NotFound", 400)
    );
    let (volumes, _) = cloud
        .describe_volumes(&caller, &[], &[], &crate::query::Page::default())
        .unwrap();
    assert!(volumes.is_empty(), "{volumes:?}");
}

#[test]
fn snapshot_racing_delete_volume_is_a_client_error_or_completes() {
    let (_dir, cloud, caller) = cloud();
    for _ in 0..20 {
        let id = new_volume(&cloud, &caller);
        let (c, who, vol) = (&cloud, &caller, id.as_str());
        let (snap, delete) = std::thread::scope(|s| {
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let b = Arc::clone(&barrier);
            let snap = s.spawn(move || {
                b.wait();
                c.create_snapshot(who, vol, None, &[])
            });
            barrier.wait();
            let delete = c.delete_volume(who, vol);
            (snap.join().unwrap(), delete)
        });
        if let Err(e) = &snap {
            assert_eq!(e.status, 400, "{e:?}");
        }
        if let Err(e) = &delete {
            assert_eq!(e.status, 400, "{e:?}");
        }
        assert!(snap.is_ok() || delete.is_ok(), "{snap:?} {delete:?}");
        if let Ok(view) = snap {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let state = cloud.catalog.resource(&view.id).unwrap().unwrap().state;
                if state != "pending" {
                    assert_eq!(state, "completed");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "snapshot {} still pending",
                    view.id
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = cloud.delete_volume(&caller, &id);
    }
}
