//! Node identity, zone claims, zone states, placement and recovery of own resources
//! only: two clouds on one catalog file (SQLite), each with its own data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::*;

fn served() -> Vec<String> {
    vec!["us-east-1".into(), "us-west-2".into()]
}

#[test]
fn node_config_checks_id_and_zones() {
    let z = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let n = NodeConfig::new(
        "a-1",
        &z(&["us-west-2a", "us-east-1b", "us-east-1b"]),
        &served(),
    )
    .unwrap();
    assert_eq!(n.zones, z(&["us-east-1b", "us-west-2a"]));
    assert!(matches!(
        NodeConfig::new("a b", &z(&["us-east-1a"]), &served()),
        Err(NodeError::BadId(_))
    ));
    assert!(matches!(
        NodeConfig::new("a", &z(&["eu-west-1a"]), &served()),
        Err(NodeError::BadZone { .. })
    ));
    assert!(matches!(
        NodeConfig::new("a", &z(&[""]), &served()),
        Err(NodeError::NoZones)
    ));
}

#[test]
fn claims_refuse_a_live_owner_and_take_over_a_silent_one() {
    let catalog = Catalog::in_memory().unwrap();
    let a = NodeConfig::new("a", &["us-east-1a".into()], &served()).unwrap();
    let b = NodeConfig::new("b", &["us-east-1a".into()], &served()).unwrap();
    claim(&catalog, Some(&a)).unwrap();
    let err = claim(&catalog, Some(&b)).unwrap_err();
    assert!(matches!(err, NodeError::ZoneTaken { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));
    // Without a node identity, a catalog live nodes serve is refused.
    let err = claim(&catalog, None).unwrap_err();
    assert!(matches!(err, NodeError::ClusterWithoutNode(_)), "{err}");
    // a has been silent: b takes over.
    catalog
        .register_node("a", &a.zones, 1, 0)
        .map(|_| ())
        .unwrap();
    claim(&catalog, Some(&b)).unwrap();
    let nodes = catalog.nodes().unwrap();
    assert_eq!(nodes[1].zones, vec!["us-east-1a".to_string()]);
    assert!(nodes[0].zones.is_empty());
}

fn open_node(
    dir: &std::path::Path,
    catalog: &std::path::Path,
    node: Option<(&str, &str)>,
) -> Result<Arc<Cloud>, crate::OpenError> {
    let data = crate::DataDir::open(dir, true).unwrap();
    let node = node.map(|(id, zone)| NodeConfig::new(id, &[zone.to_string()], &served()).unwrap());
    Cloud::open_with(
        data,
        &served(),
        crate::CloudOptions {
            catalog: Some(catalog.display().to_string()),
            node,
            ..crate::CloudOptions::default()
        },
    )
}

fn caller() -> crate::Caller {
    crate::Caller {
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
    }
}

fn volume_in(cloud: &Cloud, zone: &str) -> crate::Ec2Result<String> {
    cloud
        .create_volume(
            &caller(),
            crate::volumes::CreateVolume {
                size: Some(1),
                availability_zone: Some(zone.into()),
                ..Default::default()
            },
        )
        .map(|v| v.id)
}

#[test]
fn a_node_recovers_only_its_own_resources_and_places_only_in_its_zones() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = tmp.path().join("catalog.db");
    let a = open_node(&tmp.path().join("a"), &catalog, Some(("a", "us-east-1a"))).unwrap();
    let vol = volume_in(&a, "us-east-1a").unwrap();
    let snap = a.create_snapshot(&caller(), &vol, None, &[]).unwrap().id;
    a.shutdown();
    let state = |c: &Cloud, id: &str| c.catalog().resource(id).unwrap().map(|r| r.state);
    assert_eq!(state(&a, &snap).as_deref(), Some("completed"));
    let snap_doc =
        crate::snapshots::doc_of(&a.catalog().resource(&snap).unwrap().unwrap()).unwrap();
    assert_eq!(
        snap_doc.node.as_deref(),
        Some("a"),
        "a snapshot names its node"
    );

    // Node b, on its own data directory (which holds neither a's volume nor a's
    // snapshot): its recovery leaves both alone.
    let b = open_node(&tmp.path().join("b"), &catalog, Some(("b", "us-east-1b"))).unwrap();
    assert_eq!(state(&b, &vol).as_deref(), Some("available"));
    assert_eq!(state(&b, &snap).as_deref(), Some("completed"));

    // Placement: b's own zone works; a's (registered moments ago: alive) is refused
    // naming a; a zone nobody serves is refused.
    volume_in(&b, "us-east-1b").unwrap();
    let err = volume_in(&b, "us-east-1a").unwrap_err();
    assert_eq!(err.code, "Unsupported");
    assert!(err.message.contains("node a"), "{}", err.message);
    assert_eq!(volume_in(&b, "us-east-1c").unwrap_err().code, "Unsupported");
    let views = b.describe_zones(&caller(), &[], &[], &[]).unwrap();
    let got: Vec<(&str, &str)> = views
        .iter()
        .map(|z| (z.name.as_str(), z.state.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("us-east-1a", "available"),
            ("us-east-1b", "available"),
            ("us-east-1c", "unavailable")
        ]
    );

    // a goes silent: its zone is impaired and placing there is a capacity error.
    b.catalog()
        .register_node("a", &["us-east-1a".to_string()], 1, 0)
        .unwrap();
    let views = b.describe_zones(&caller(), &[], &[], &[]).unwrap();
    assert_eq!(views[0].state, ZoneState::Impaired);
    assert!(views[0].message.as_deref().unwrap().contains("node a"));
    assert_eq!(
        volume_in(&b, "us-east-1a").unwrap_err().code,
        "InsufficientVolumeCapacity"
    );
    b.shutdown();
    drop(b);

    // Without a node identity on a catalog live nodes serve: refused.
    let err = open_node(&tmp.path().join("c"), &catalog, None).unwrap_err();
    assert!(err.to_string().contains("served by openami nodes"), "{err}");

    // Without nodes at all, nothing changes: every zone is available and ours.
    let plain = tempfile::tempdir().unwrap();
    let solo = open_node(plain.path(), &plain.path().join("catalog.db"), None).unwrap();
    volume_in(&solo, "us-east-1c").unwrap();
    let views = solo.describe_zones(&caller(), &[], &[], &[]).unwrap();
    assert!(
        views
            .iter()
            .all(|z| z.state == ZoneState::Available && z.message.is_none())
    );
}

#[test]
fn a_node_whose_zone_is_taken_over_or_whose_id_is_reused_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let catalog_path = dir.path().join("catalog.db");
    let a = open_node(
        &dir.path().join("a"),
        &catalog_path,
        Some(("a", "us-east-1a")),
    )
    .unwrap();
    a.heartbeat().unwrap();
    assert!(a.fenced().is_none());
    assert!(a.owns_zone("us-east-1a"));
    // Another node takes us-east-1a over (as if a had been silent): a stops owning it.
    let later = catalog::now_ms() + 60_000;
    a.catalog
        .register_node("b", &["us-east-1a".to_string()], later, later)
        .unwrap();
    a.heartbeat().unwrap();
    let reason = a.fenced().expect("fenced");
    assert!(reason.contains("us-east-1a → b"), "{reason}");
    assert!(!a.owns_zone("us-east-1a"));

    // A fenced node leads nothing (b, the lowest live id, does).
    assert!(!a.leads());

    // A second process registering the same node id fences the first.
    let c = open_node(
        &dir.path().join("c"),
        &catalog_path,
        Some(("c", "us-west-2a")),
    )
    .unwrap();
    c.heartbeat().unwrap();
    assert!(c.fenced().is_none());
    assert!(!c.leads(), "b is alive and has the lower id");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let again = open_node(
        &dir.path().join("c2"),
        &catalog_path,
        Some(("c", "us-west-2a")),
    )
    .unwrap();
    c.heartbeat().unwrap();
    assert!(c.fenced().expect("fenced").contains("another process"));
    again.heartbeat().unwrap();
    assert!(again.fenced().is_none(), "the newer process carries on");
    assert!(again.owns_zone("us-west-2a"));
}
