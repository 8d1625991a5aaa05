//! The conformance suite every catalog backend must pass.
//!
//! Backends call [`run_all`] on an empty catalog and [`run_shared`] on two catalogs opened
//! on the same database, from their own tests. The checks panic with a message naming
//! the property that failed, like ordinary test assertions.

use std::time::{Duration, Instant};

use crate::node_requests::state;
use crate::{
    Account, Catalog, CatalogError, ConsoleSession, NodeRequest, NodeRow, ResourceRow, SsmVersion,
    ZoneClaim, now_ms,
};

fn ok<T>(what: &str, r: Result<T, CatalogError>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn account(id: &str, name: &str) -> Account {
    Account {
        account_id: id.into(),
        name: name.into(),
    }
}

fn volume(id: &str) -> ResourceRow {
    ResourceRow {
        id: id.into(),
        kind: "volume".into(),
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
        state: "creating".into(),
        doc: "{}".into(),
        created_at_ms: 1,
    }
}

/// Runs every single-catalog check against `c`, which must start empty.
pub fn run_all(c: &Catalog) {
    accounts_keys_and_uniqueness(c);
    resources_tags_permissions(c);
    resources_with_tags_are_atomic(c);
    upload_blocks(c);
    console_passwords(c);
    console_sessions(c);
    ssm_versions(c);
    ssm_old_versions_are_forgotten(c);
    nodes_and_zone_claims(c);
    node_request_queue(c);
    crate::gc_leases::conformance(c);
}

/// Checks two catalogs opened on one (empty or not) database: each sees the other's
/// writes, and `data_version` changes for the other's commits but not for own writes.
pub fn run_shared(a: &Catalog, b: &Catalog) {
    // Access keys: an unknown key is asked again (never remembered as unknown), a known
    // one is the same whether remembered or not.
    assert_eq!(
        ok("unknown key", b.access_key("AKIASHAREDKEY0000001")),
        None
    );
    ok(
        "account",
        a.create_account(
            &account("444455556666", "shared-keys"),
            "AKIASHAREDKEY0000001",
            "s3cr3t",
        ),
    );
    let expected = Some(("444455556666".to_string(), "s3cr3t".to_string()));
    assert_eq!(
        ok("key made elsewhere", b.access_key("AKIASHAREDKEY0000001")),
        expected
    );
    assert_eq!(
        ok("key again", b.access_key("AKIASHAREDKEY0000001")),
        expected
    );

    let v0 = ok("data_version", b.data_version());
    ok("own write", b.insert_resource(&volume("vol-shared-own")));
    // Give an asynchronous backend the time to (wrongly) count it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ok("data_version", b.data_version()),
        v0,
        "own writes do not change data_version"
    );
    ok(
        "other's write",
        a.insert_resource(&volume("vol-shared-other")),
    );
    wait_for_change(b, v0, "another catalog's insert changes data_version");
    assert!(
        ok("read", b.resource("vol-shared-other")).is_some(),
        "a commit by one catalog is visible to the other"
    );
    for (what, f) in [
        (
            "tags",
            Box::new(|| a.set_tags("vol-shared-other", &[("k".into(), "v".into())]))
                as Box<dyn Fn() -> Result<(), CatalogError>>,
        ),
        (
            "permissions",
            Box::new(|| a.add_permission("vol-shared-other", "launchPermission", "all")),
        ),
        (
            "resource updates",
            Box::new(|| {
                a.update_resource("vol-shared-other", "available", "{}")
                    .map(|_| ())
            }),
        ),
    ] {
        let v = ok("data_version", b.data_version());
        ok(what, f());
        wait_for_change(b, v, &format!("another catalog's change to {what}"));
    }
    assert_eq!(
        ok("tags", b.tags("vol-shared-other")),
        [("k".to_string(), "v".to_string())]
    );
    ok("delete", a.delete_resource("vol-shared-other"));
    ok("delete", b.delete_resource("vol-shared-own"));
    node_requests_shared(a, b);
}

/// Writers on several threads at once through one catalog: every write lands, none
/// is lost or duplicated.
pub fn run_concurrent(c: &Catalog) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..50 {
                    let id = format!("vol-conc-{t}-{i}");
                    let tags = [("t".to_string(), t.to_string())];
                    ok(
                        "concurrent insert",
                        c.insert_resource_with_tags(&volume(&id), &tags),
                    );
                    assert!(
                        ok("read back", c.resource(&id)).is_some(),
                        "concurrent read-back"
                    );
                }
            });
        }
    });
    let rows = ok("resources", c.resources("volume", "us-east-1"));
    let conc = rows
        .iter()
        .filter(|r| r.id.starts_with("vol-conc-"))
        .count();
    assert_eq!(conc, 200, "every concurrent insert is listed");
    for r in rows.iter().filter(|r| r.id.starts_with("vol-conc-")) {
        ok("delete", c.delete_resource(&r.id));
    }
}

/// Waits (up to 5 s) until `c`'s data_version is not `before`.
fn wait_for_change(c: &Catalog, before: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ok("data_version", c.data_version()) == before {
        assert!(Instant::now() < deadline, "{what} (within 5 s)");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn accounts_keys_and_uniqueness(c: &Catalog) {
    ok(
        "create account",
        c.create_account(&account("111111111111", "alice"), "AKIAALICE", "s1"),
    );
    assert_eq!(
        ok("access key", c.access_key("AKIAALICE")),
        Some(("111111111111".into(), "s1".into()))
    );
    assert!(ok("access key", c.access_key("nope")).is_none());
    assert!(
        matches!(
            c.create_account(&account("222222222222", "alice"), "AKIAB", "s"),
            Err(CatalogError::AlreadyExists { .. })
        ),
        "a taken account name is AlreadyExists"
    );
    assert!(
        matches!(
            c.create_account(&account("222222222222", "bob"), "AKIAALICE", "s"),
            Err(CatalogError::AlreadyExists { .. })
        ),
        "a taken access key is AlreadyExists"
    );
    assert_eq!(
        ok("accounts", c.accounts()),
        [account("111111111111", "alice")],
        "a failed creation leaves nothing behind"
    );
    assert_eq!(
        ok("keys", c.access_keys_of("111111111111")),
        vec![("AKIAALICE".to_string(), "s1".to_string())]
    );
    assert!(ok("keys", c.access_keys_of("222222222222")).is_empty());
}

fn resources_tags_permissions(c: &Catalog) {
    let row = volume("vol-1");
    ok("insert", c.insert_resource(&row));
    assert!(
        matches!(
            c.insert_resource(&row),
            Err(CatalogError::AlreadyExists { .. })
        ),
        "a taken resource id is AlreadyExists"
    );
    assert!(ok(
        "update",
        c.update_resource("vol-1", "available", "{\"a\":1}")
    ));
    assert!(!ok(
        "update",
        c.update_resource("vol-none", "available", "{}")
    ));
    let got = ok("resource", c.resource("vol-1")).unwrap_or_else(|| panic!("vol-1 is there"));
    assert_eq!(
        (got.state.as_str(), got.doc.as_str()),
        ("available", "{\"a\":1}")
    );
    assert_eq!(got.created_at_ms, 1);
    assert_eq!(ok("resources", c.resources("volume", "us-east-1")).len(), 1);
    assert!(ok("resources", c.resources("volume", "eu-west-1")).is_empty());
    assert_eq!(ok("of kind", c.resources_of_kind("volume")).len(), 1);
    c_ok(c.set_tags(
        "vol-1",
        &[("Name".into(), "a".into()), ("env".into(), "x".into())],
    ));
    c_ok(c.set_tags("vol-1", &[("Name".into(), "b".into())]));
    c_ok(c.delete_tags("vol-1", &[("env".into(), Some("wrong".into()))]));
    assert_eq!(
        ok("tags", c.tags("vol-1")).len(),
        2,
        "a wrong value keeps the tag"
    );
    c_ok(c.delete_tags("vol-1", &[("env".into(), None)]));
    assert_eq!(
        ok("tags", c.tags("vol-1")),
        [("Name".to_string(), "b".to_string())]
    );
    let all = ok("all tags", c.all_tags());
    assert_eq!(all.get("vol-1").map(Vec::len), Some(1));
    c_ok(c.add_permission("vol-1", "createVolumePermission", "all"));
    c_ok(c.add_permission("vol-1", "createVolumePermission", "all"));
    c_ok(c.add_permission("vol-1", "createVolumePermission", "222222222222"));
    assert_eq!(
        ok("perms", c.permissions("vol-1", "createVolumePermission")),
        ["222222222222", "all"]
    );
    c_ok(c.remove_permission("vol-1", "createVolumePermission", "222222222222"));
    let all = ok("all perms", c.all_permissions("createVolumePermission"));
    assert_eq!(all.get("vol-1").cloned(), Some(vec!["all".to_string()]));
    c_ok(c.clear_permissions("vol-1", "createVolumePermission"));
    assert!(ok("perms", c.permissions("vol-1", "createVolumePermission")).is_empty());
    c_ok(c.add_permission("vol-1", "createVolumePermission", "all"));
    assert!(ok("delete", c.delete_resource("vol-1")));
    assert!(!ok("delete", c.delete_resource("vol-1")));
    assert!(
        ok("tags", c.tags("vol-1")).is_empty(),
        "tags go with the resource"
    );
    assert!(
        ok("perms", c.permissions("vol-1", "createVolumePermission")).is_empty(),
        "permissions go with the resource"
    );
    c_ok(c.set_tags("vol-2", &[("a".into(), "1".into())]));
    c_ok(c.clear_tags("vol-2"));
    assert!(ok("tags", c.tags("vol-2")).is_empty());
}

fn c_ok(r: Result<(), CatalogError>) {
    ok("catalog write", r);
}

fn resources_with_tags_are_atomic(c: &Catalog) {
    let row = volume("vol-t");
    let tags = vec![
        ("a".to_string(), "1".to_string()),
        ("b".to_string(), "2".to_string()),
    ];
    ok("insert with tags", c.insert_resource_with_tags(&row, &tags));
    assert_eq!(ok("tags", c.tags("vol-t")), tags);
    // A second insert of the id fails and does not touch the tags.
    let other = vec![("a".to_string(), "changed".to_string())];
    assert!(c.insert_resource_with_tags(&row, &other).is_err());
    assert_eq!(
        ok("tags", c.tags("vol-t")),
        tags,
        "a failed insert writes no tag"
    );
    assert!(ok("delete", c.delete_resource("vol-t")));
}

fn upload_blocks(c: &Catalog) {
    let before = now_ms();
    assert_eq!(ok("last write", c.upload_last_write("snap-1")), None);
    c_ok(c.put_upload_block("snap-1", 3, "ab"));
    c_ok(c.put_upload_block("snap-1", 1, ""));
    c_ok(c.put_upload_block("snap-1", 3, "ef"));
    c_ok(c.put_upload_block("snap-2", 0, "cd"));
    assert_eq!(
        ok("blocks", c.upload_blocks("snap-1")),
        vec![(1, String::new()), (3, "ef".to_string())]
    );
    assert_eq!(ok("count", c.upload_block_count("snap-1")), 2);
    let last = ok("last write", c.upload_last_write("snap-1"))
        .unwrap_or_else(|| panic!("snap-1 has a last write"));
    assert!(last >= before && last <= now_ms());
    let mut ids = ok("ids", c.upload_snapshot_ids());
    ids.sort();
    assert_eq!(ids, ["snap-1", "snap-2"]);
    let mut hashes = ok("hashes", c.all_upload_hashes());
    hashes.sort();
    assert_eq!(hashes, ["cd", "ef"], "zero blocks are not hashes");
    c_ok(c.clear_upload("snap-1"));
    assert_eq!(ok("last write", c.upload_last_write("snap-1")), None);
    assert_eq!(ok("count", c.upload_block_count("snap-1")), 0);
    assert_eq!(ok("ids", c.upload_snapshot_ids()), ["snap-2"]);
    c_ok(c.clear_upload("snap-2"));
    // A batch: all rows in one transaction, later rows of a batch overwrite earlier ones.
    c_ok(c.put_upload_blocks(&[]));
    c_ok(c.put_upload_blocks(&[
        ("snap-3".to_string(), 2, "aa".to_string()),
        ("snap-4".to_string(), 0, "bb".to_string()),
        ("snap-3".to_string(), 0, String::new()),
        ("snap-3".to_string(), 2, "cc".to_string()),
    ]));
    assert_eq!(
        ok("batch blocks", c.upload_blocks("snap-3")),
        vec![(0, String::new()), (2, "cc".to_string())]
    );
    assert_eq!(ok("batch count", c.upload_block_count("snap-4")), 1);
    assert!(ok("batch last write", c.upload_last_write("snap-3")).is_some());
    c_ok(c.clear_upload("snap-3"));
    c_ok(c.clear_upload("snap-4"));
}

fn console_passwords(c: &Catalog) {
    ok(
        "create account",
        c.create_account(&account("333333333333", "carol"), "AKIACAROL", "s3"),
    );
    assert_eq!(ok("password", c.console_password("333333333333")), None);
    assert!(!ok(
        "set",
        c.set_console_password("999999999999", Some("h"))
    ));
    assert!(ok(
        "set",
        c.set_console_password("333333333333", Some("h1"))
    ));
    assert!(ok(
        "set",
        c.set_console_password("333333333333", Some("h2"))
    ));
    assert_eq!(
        ok("password", c.console_password("333333333333")).as_deref(),
        Some("h2")
    );
    assert!(ok("remove", c.set_console_password("333333333333", None)));
    assert_eq!(ok("password", c.console_password("333333333333")), None);
}

fn session(hash: &str, account: &str, key: Option<&str>, last_seen_ms: i64) -> ConsoleSession {
    ConsoleSession {
        token_hash: hash.into(),
        account_id: account.into(),
        access_key_id: key.map(str::to_string),
        csrf: format!("csrf-{hash}"),
        created_ms: last_seen_ms - 5,
        last_seen_ms,
    }
}

fn console_sessions(c: &Catalog) {
    let a = session("h-a", "111111111111", Some("AKIAALICE"), 1_000);
    let b = session("h-b", "111111111111", None, 2_000);
    let other = session("h-c", "333333333333", None, 3_000);
    for s in [&a, &b, &other] {
        c_ok(c.insert_console_session(s));
    }
    assert!(
        matches!(
            c.insert_console_session(&session("h-a", "333333333333", None, 9)),
            Err(CatalogError::AlreadyExists { .. })
        ),
        "a taken token hash is AlreadyExists"
    );
    assert_eq!(
        ok("lookup", c.console_session("h-a")),
        Some(a.clone()),
        "a failed insert changes nothing; the row reads back as written"
    );
    assert_eq!(ok("lookup", c.console_session("h-b")), Some(b.clone()));
    assert_eq!(ok("lookup", c.console_session("h-none")), None);

    assert!(ok("touch", c.touch_console_session("h-a", 5_000)));
    assert!(ok("touch", c.touch_console_session("h-a", 4_000)));
    assert_eq!(
        ok("lookup", c.console_session("h-a")).map(|s| s.last_seen_ms),
        Some(5_000),
        "a touch never moves last_seen back"
    );
    assert!(!ok("touch", c.touch_console_session("h-none", 5_000)));

    // Idle past 2_500: only b (2_000) goes.
    assert_eq!(ok("purge", c.purge_console_sessions(2_500)), 1);
    assert_eq!(ok("lookup", c.console_session("h-b")), None);
    assert!(ok("lookup", c.console_session("h-a")).is_some());
    assert!(ok("lookup", c.console_session("h-c")).is_some());

    assert!(ok("delete", c.delete_console_session("h-a")));
    assert!(!ok("delete", c.delete_console_session("h-a")));
    assert_eq!(ok("lookup", c.console_session("h-a")), None);

    c_ok(c.insert_console_session(&session("h-d", "333333333333", None, 3_000)));
    assert_eq!(
        ok("of account", c.delete_console_sessions_of("333333333333")),
        2
    );
    assert_eq!(ok("lookup", c.console_session("h-c")), None);
    assert_eq!(
        ok("of account", c.delete_console_sessions_of("333333333333")),
        0
    );
}

fn v(name: &str, version: i64) -> SsmVersion {
    SsmVersion {
        name: name.into(),
        version,
        doc: format!("{{\"v\":{version}}}"),
        modified_ms: version,
    }
}

fn ssm_versions(c: &Catalog) {
    c_ok(c.ssm_insert("r", "111", &v("/a/b", 1), 100));
    c_ok(c.ssm_insert("r", "111", &v("/a/b", 2), 100));
    c_ok(c.ssm_insert("r", "111", &v("/a/c", 1), 100));
    c_ok(c.ssm_insert("r", "222", &v("/a/b", 1), 100));
    assert!(
        matches!(
            c.ssm_insert("r", "111", &v("/a/b", 2), 100),
            Err(CatalogError::AlreadyExists { .. })
        ),
        "a version is written once"
    );
    assert_eq!(
        ok("latest", c.ssm_latest("r", "111", "/a/b")),
        Some(v("/a/b", 2))
    );
    assert_eq!(ok("latest", c.ssm_latest("r2", "111", "/a/b")), None);
    let listed = ok("list", c.ssm_list("r", "111", "/a/"));
    let names: Vec<_> = listed
        .iter()
        .map(|p| (p.name.as_str(), p.version))
        .collect();
    assert_eq!(names, [("/a/b", 2), ("/a/c", 1)]);
    assert!(ok("list", c.ssm_list("r", "111", "/b")).is_empty());
    assert_eq!(ok("list all", c.ssm_list("r", "111", "")).len(), 2);
    assert_eq!(ok("history", c.ssm_history("r", "111", "/a/b")).len(), 2);
    c_ok(c.set_tags("t", &[("k".into(), "v".into())]));
    assert!(ok("delete", c.ssm_delete("r", "111", "/a/b", "t")));
    assert!(!ok("delete", c.ssm_delete("r", "111", "/a/b", "t")));
    assert!(ok("tags", c.tags("t")).is_empty());
    assert_eq!(
        ok("latest", c.ssm_latest("r", "222", "/a/b")).map(|p| p.version),
        Some(1)
    );
}

fn ssm_old_versions_are_forgotten(c: &Catalog) {
    for i in 1..=5 {
        c_ok(c.ssm_insert("r", "o", &v("/x", i), 3));
    }
    let kept: Vec<_> = ok("history", c.ssm_history("r", "o", "/x"))
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(kept, [3, 4, 5]);
}

fn zones(names: &[&str]) -> Vec<String> {
    names.iter().map(|z| z.to_string()).collect()
}

fn node(id: &str, names: &[&str], started_ms: i64, heartbeat_ms: i64) -> NodeRow {
    NodeRow {
        node_id: id.into(),
        zones: zones(names),
        started_ms,
        heartbeat_ms,
    }
}

fn nodes_and_zone_claims(c: &Catalog) {
    let claimed = |taken: &[(&str, &str)]| ZoneClaim::Claimed {
        taken_over: taken
            .iter()
            .map(|(z, n)| (z.to_string(), n.to_string()))
            .collect(),
    };
    assert_eq!(ok("no nodes", c.nodes()), Vec::new());
    assert_eq!(
        ok(
            "claim",
            c.register_node("a", &zones(&["z1", "z2"]), 1000, 0)
        ),
        claimed(&[]),
        "free zones are claimed"
    );
    assert_eq!(
        ok("nodes", c.nodes()),
        vec![node("a", &["z1", "z2"], 1000, 1000)]
    );
    assert!(ok("heartbeat", c.node_heartbeat("a", 2000)));
    assert!(ok("old heartbeat", c.node_heartbeat("a", 1500)));
    assert!(!ok("unknown", c.node_heartbeat("nobody", 2000)));
    assert_eq!(
        ok("nodes", c.nodes()),
        vec![node("a", &["z1", "z2"], 1000, 2000)],
        "a heartbeat never moves back"
    );
    // Another node wants z2 while a is alive (heartbeat 2000 >= stale_before 1500).
    assert_eq!(
        ok(
            "refused",
            c.register_node("b", &zones(&["z3", "z2"]), 3000, 1500)
        ),
        ZoneClaim::Refused {
            zone: "z2".into(),
            node_id: "a".into(),
            heartbeat_ms: 2000,
        },
        "a zone of a live node is refused"
    );
    assert_eq!(
        ok("nodes", c.nodes()),
        vec![node("a", &["z1", "z2"], 1000, 2000)],
        "a refused claim writes nothing (not even the free zone z3)"
    );
    // a went quiet: b takes z2 over.
    assert_eq!(
        ok(
            "take over",
            c.register_node("b", &zones(&["z2", "z3"]), 20_000, 15_000)
        ),
        claimed(&[("z2", "a")]),
        "a stale node's zone is taken over"
    );
    assert_eq!(
        ok("nodes", c.nodes()),
        vec![
            node("a", &["z1"], 1000, 2000),
            node("b", &["z2", "z3"], 20_000, 20_000)
        ]
    );
    // a restarts with its remaining zone; then b restarts owning only z3.
    assert_eq!(
        ok(
            "restart",
            c.register_node("a", &zones(&["z1"]), 21_000, 16_000)
        ),
        claimed(&[]),
        "a node re-registers its own zones"
    );
    assert_eq!(
        ok(
            "shrink",
            c.register_node("b", &zones(&["z3"]), 22_000, 17_000)
        ),
        claimed(&[])
    );
    assert_eq!(
        ok("nodes", c.nodes()),
        vec![
            node("a", &["z1"], 21_000, 21_000),
            node("b", &["z3"], 22_000, 22_000)
        ],
        "zones a node no longer lists are released"
    );
    // Concurrent claims of one free zone: exactly one wins.
    let results: Vec<ZoneClaim> = std::thread::scope(|s| {
        let handles: Vec<_> = ["c", "d", "e", "f"]
            .iter()
            .map(|id| s.spawn(move || c.register_node(id, &zones(&["z9"]), 30_000, 25_000)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                ok(
                    "claim",
                    h.join().unwrap_or_else(|_| panic!("claim panicked")),
                )
            })
            .collect()
    });
    let winners = results
        .iter()
        .filter(|r| matches!(r, ZoneClaim::Claimed { .. }))
        .count();
    assert_eq!(
        winners, 1,
        "one of four concurrent claims wins: {results:?}"
    );
    let owners: Vec<NodeRow> = ok("nodes", c.nodes())
        .into_iter()
        .filter(|n| n.zones.contains(&"z9".to_string()))
        .collect();
    assert_eq!(owners.len(), 1, "one owner of z9");
}

fn ids(requests: &[NodeRequest]) -> Vec<&str> {
    requests.iter().map(|r| r.id.as_str()).collect()
}

fn node_request_queue(c: &Catalog) {
    for (i, id) in ["req-1", "req-2", "req-3"].iter().enumerate() {
        ok(
            "enqueue",
            c.enqueue_node_request(id, "node-a", &format!("{{\"n\":{i}}}"), 100 + i as i64),
        );
    }
    ok(
        "enqueue",
        c.enqueue_node_request("req-b", "node-b", "{}", 50),
    );
    assert!(
        matches!(
            c.enqueue_node_request("req-1", "node-b", "{}", 200),
            Err(CatalogError::AlreadyExists { .. })
        ),
        "a request id is unique"
    );
    let first = ok("claim", c.claim_node_requests("node-a", 2, 300));
    assert_eq!(
        ids(&first),
        ["req-1", "req-2"],
        "the oldest queued requests of the node"
    );
    assert!(
        first
            .iter()
            .all(|r| r.state == state::RUNNING && r.claimed_ms == Some(300))
    );
    assert_eq!(
        first[0].request, "{\"n\":0}",
        "the request text is kept as given"
    );
    let second = ok("claim", c.claim_node_requests("node-a", 5, 301));
    assert_eq!(
        ids(&second),
        ["req-3"],
        "claimed requests are not claimed again"
    );
    assert!(ok("claim", c.claim_node_requests("node-a", 5, 302)).is_empty());
    assert!(ok(
        "complete",
        c.complete_node_request("req-1", "answer", 400)
    ));
    assert!(
        !ok("complete", c.complete_node_request("req-1", "other", 401)),
        "the first answer stands"
    );
    assert!(!ok(
        "complete",
        c.complete_node_request("req-none", "x", 401)
    ));
    assert!(
        !ok("cancel", c.cancel_node_request("req-2", "cancelled", 402)),
        "a claimed request cannot be cancelled"
    );
    ok(
        "enqueue",
        c.enqueue_node_request("req-c", "node-c", "{}", 403),
    );
    assert!(ok(
        "cancel",
        c.cancel_node_request("req-c", "cancelled", 404)
    ));
    assert!(
        ok("claim", c.claim_node_requests("node-c", 5, 405)).is_empty(),
        "a cancelled request is never claimed"
    );
    assert!(!ok("cancel", c.cancel_node_request("req-c", "again", 406)));
    let done = ok("read", c.node_request("req-1")).unwrap_or_else(|| panic!("req-1 is stored"));
    assert_eq!(
        (done.state.as_str(), done.response.as_deref(), done.done_ms),
        (state::DONE, Some("answer"), Some(400))
    );
    assert_eq!(ok("read", c.node_request("req-none")), None);
    let running = ok(
        "in state",
        c.node_requests_in_state("node-a", state::RUNNING),
    );
    assert_eq!(ids(&running), ["req-2", "req-3"]);
    let queued_b = ok(
        "in state",
        c.node_requests_in_state("node-b", state::QUEUED),
    );
    assert_eq!(
        ids(&queued_b),
        ["req-b"],
        "another node's request stays queued"
    );
    // Answered before 500: req-1 and req-c go; created before 60 (a node that never
    // came): req-b.
    assert_eq!(ok("purge", c.purge_node_requests(500, 60)), 3);
    assert_eq!(ok("read", c.node_request("req-b")), None);
    assert!(ok("read", c.node_request("req-2")).is_some());
    assert_eq!(ok("purge", c.purge_node_requests(i64::MAX, i64::MAX)), 2);
}

/// Two catalogs on one database claiming the same node's requests at once: each request
/// is claimed exactly once; a waiter wakes for the other catalog's enqueue.
fn node_requests_shared(a: &Catalog, b: &Catalog) {
    for i in 0..40 {
        ok(
            "enqueue",
            a.enqueue_node_request(&format!("shared-{i:02}"), "node-x", "{}", i),
        );
    }
    let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
        let claimers: Vec<_> = [a, b, a, b]
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let got = ok("claim", c.claim_node_requests("node-x", 3, now_ms()));
                        if got.is_empty() {
                            return mine;
                        }
                        mine.extend(got.into_iter().map(|r| r.id));
                    }
                })
            })
            .collect();
        claimers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a claimer panicked")))
            .collect()
    });
    let mut all: Vec<String> = claimed.into_iter().flatten().collect();
    all.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("shared-{i:02}")).collect();
    assert_eq!(all, expected, "every request claimed exactly once");

    let seen = b.wait_node_requests(0, Duration::ZERO);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            ok(
                "enqueue",
                a.enqueue_node_request("wake", "node-y", "{}", now_ms()),
            );
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut version = seen;
        while ok("read", b.node_request("wake")).is_none() {
            assert!(
                Instant::now() < deadline,
                "a waiter sees another catalog's enqueue within 5 s"
            );
            version = b.wait_node_requests(version, Duration::from_secs(5));
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the waiter woke for the enqueue, not at its timeout"
    );
    ok("purge", a.purge_node_requests(i64::MAX, i64::MAX));
}
