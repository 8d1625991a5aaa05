//! The collection steps of a node: fossils made, a step that waits for a live write
//! lease, the sweep once it ended, and a step that finds the GC lock taken.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::nodes::NodeConfig;

const REGION: &str = "us-east-1";

fn node(dir: &std::path::Path, grace: Duration) -> Arc<Cloud> {
    let served = vec![REGION.to_string()];
    let data = crate::DataDir::open(&dir.join("data"), true).unwrap();
    Cloud::open_with(
        data,
        &served,
        crate::CloudOptions {
            catalog: Some(dir.join("catalog.db").display().to_string()),
            node: Some(NodeConfig::new("node-1", &["us-east-1a".into()], &served).unwrap()),
            gc_grace: grace,
            ..crate::CloudOptions::default()
        },
    )
    .unwrap()
}

fn live_leases(cloud: &Cloud) -> Vec<String> {
    cloud
        .catalog
        .gc_live_leases(REGION, catalog::now_ms())
        .unwrap()
}

fn block(seed: u8) -> Vec<u8> {
    let mut data = vec![seed; blockstore::BLOCK_SIZE];
    data[1] = 2;
    data
}

#[test]
fn a_node_makes_fossils_waits_for_live_leases_and_then_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = node(dir.path(), Duration::ZERO);
    let store = Arc::clone(&cloud.region(REGION).unwrap().store);
    assert!(store.is_shared(), "a node's stores take write leases");

    // An unreferenced block, and a session still open (its lease live in the catalog).
    let s = store.session();
    let garbage = s.put_block(&block(1)).unwrap().hash;
    s.persist().unwrap();
    drop(s);
    let open = store.session();
    open.put_block(&block(2)).unwrap();
    open.persist().unwrap();
    assert_eq!(live_leases(&cloud).len(), 1);

    let first = cloud.gc_cluster_step(REGION).unwrap();
    assert_eq!(
        first.fossilized.as_ref().unwrap().fossilized,
        1,
        "{first:?}"
    );
    assert!(first.swept.is_none());
    assert_eq!(store.fossils().unwrap(), vec![garbage]);
    assert_eq!(
        store.get_block(&garbage).unwrap(),
        block(1),
        "a fossil is readable"
    );

    let second = cloud.gc_cluster_step(REGION).unwrap();
    assert!(
        second.waiting,
        "the open session's lease holds the sweep: {second:?}"
    );
    assert_eq!(store.fossils().unwrap(), vec![garbage]);

    drop(open);
    // The lease outlives its last session until the heartbeat ends it (sessions share
    // leases); then nothing holds the sweep.
    assert!(cloud.gc_cluster_step(REGION).unwrap().waiting);
    assert!(!cloud.leads(), "not before its first heartbeat");
    cloud.heartbeat().unwrap();
    assert!(cloud.leads(), "the only live node leads");
    assert!(live_leases(&cloud).is_empty());
    let third = cloud.gc_cluster_step(REGION).unwrap();
    let swept = third.swept.as_ref().unwrap();
    assert_eq!(
        (swept.blocks_deleted, swept.resurrected),
        (1, 0),
        "{third:?}"
    );
    // The open session's block was unpinned when it ended: the same step made it a fossil.
    assert_eq!(third.fossilized.as_ref().unwrap().fossilized, 1);
    assert!(!store.fossils().unwrap().contains(&garbage));
    assert!(store.scrub().unwrap().is_clean());
}

#[test]
fn a_step_waits_out_the_grace_period_and_skips_a_busy_lock() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = node(dir.path(), Duration::from_secs(3600));
    let store = Arc::clone(&cloud.region(REGION).unwrap().store);
    let s = store.session();
    s.put_block(&block(3)).unwrap();
    s.persist().unwrap();
    drop(s);
    assert_eq!(
        cloud
            .gc_cluster_step(REGION)
            .unwrap()
            .fossilized
            .unwrap()
            .fossilized,
        1
    );
    let waiting = cloud.gc_cluster_step(REGION).unwrap();
    assert!(waiting.waiting && waiting.swept.is_none(), "{waiting:?}");
    assert_eq!(
        store.fossils().unwrap().len(),
        1,
        "nothing is deleted inside the grace"
    );

    // Another node holds the region's lock: the step does nothing.
    let now = catalog::now_ms();
    assert!(matches!(
        cloud
            .catalog
            .gc_lock(REGION, "node-2", now, 60_000)
            .unwrap(),
        catalog::GcLock::Held(Some(_))
    ));
    let busy = cloud.gc_cluster_step(REGION).unwrap();
    assert_eq!(busy.busy.as_deref(), Some("node-2"));
    assert_eq!(store.fossils().unwrap().len(), 1);
}

#[test]
fn a_lease_that_lapsed_is_never_revived_and_its_session_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = node(dir.path(), Duration::ZERO);
    let store = Arc::clone(&cloud.region(REGION).unwrap().store);
    let s = store.session();
    let hash = s.put_block(&block(4)).unwrap().hash;
    s.persist().unwrap();
    // Its row is gone (expired and purged, as when the node could not reach the catalog
    // for longer than the lease lasts): the next renewal finds it lost.
    let [lease] = live_leases(&cloud).try_into().unwrap();
    cloud.catalog.gc_lease_release(&lease).unwrap();
    cloud.heartbeat().unwrap();
    let manifest = blockstore::Manifest::new(
        blockstore::ResourceId::new("snap-lapsed").unwrap(),
        None,
        1 << 30,
        0,
        vec![(0, hash)],
    )
    .unwrap();
    assert!(matches!(
        s.commit(&manifest),
        Err(blockstore::BlockStoreError::Lease(_))
    ));
    assert!(!store.snapshot_exists(&manifest.snapshot_id).unwrap());
    // A new session takes a new lease.
    let t = store.session();
    t.put_block(&block(5)).unwrap();
    t.persist().unwrap();
    assert_eq!(live_leases(&cloud).len(), 1);
}
