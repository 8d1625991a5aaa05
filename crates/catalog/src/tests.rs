//! Unit tests of the catalog.

use super::*;

fn account(id: &str, name: &str) -> Account {
    Account {
        account_id: id.into(),
        name: name.into(),
    }
}

#[test]
fn accounts_keys_and_uniqueness() {
    let c = Catalog::in_memory().unwrap();
    c.create_account(&account("111111111111", "alice"), "AKIAALICE", "s1")
        .unwrap();
    assert_eq!(
        c.access_key("AKIAALICE").unwrap(),
        Some(("111111111111".into(), "s1".into()))
    );
    assert!(c.access_key("nope").unwrap().is_none());
    assert!(matches!(
        c.create_account(&account("222222222222", "alice"), "AKIAB", "s"),
        Err(CatalogError::AlreadyExists { .. })
    ));
    assert!(matches!(
        c.create_account(&account("222222222222", "bob"), "AKIAALICE", "s"),
        Err(CatalogError::AlreadyExists { .. })
    ));
    // The failed creation left nothing behind.
    assert_eq!(c.accounts().unwrap().len(), 1);
    assert_eq!(
        c.access_keys_of("111111111111").unwrap(),
        vec![("AKIAALICE".to_string(), "s1".to_string())]
    );
    assert!(c.access_keys_of("222222222222").unwrap().is_empty());
}

#[test]
fn resources_tags_permissions() {
    let c = Catalog::in_memory().unwrap();
    let row = ResourceRow {
        id: "vol-1".into(),
        kind: "volume".into(),
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
        state: "creating".into(),
        doc: "{}".into(),
        created_at_ms: 1,
    };
    c.insert_resource(&row).unwrap();
    assert!(c.insert_resource(&row).is_err());
    assert!(
        c.update_resource("vol-1", "available", "{\"a\":1}")
            .unwrap()
    );
    assert_eq!(c.resource("vol-1").unwrap().unwrap().state, "available");
    assert_eq!(c.resources("volume", "us-east-1").unwrap().len(), 1);
    assert!(c.resources("volume", "eu-west-1").unwrap().is_empty());
    c.set_tags(
        "vol-1",
        &[("Name".into(), "a".into()), ("env".into(), "x".into())],
    )
    .unwrap();
    c.set_tags("vol-1", &[("Name".into(), "b".into())]).unwrap();
    c.delete_tags("vol-1", &[("env".into(), Some("wrong".into()))])
        .unwrap();
    assert_eq!(c.tags("vol-1").unwrap().len(), 2);
    c.delete_tags("vol-1", &[("env".into(), None)]).unwrap();
    assert_eq!(
        c.tags("vol-1").unwrap(),
        [("Name".to_string(), "b".to_string())]
    );
    c.add_permission("vol-1", "createVolumePermission", "all")
        .unwrap();
    c.add_permission("vol-1", "createVolumePermission", "all")
        .unwrap();
    assert_eq!(
        c.permissions("vol-1", "createVolumePermission").unwrap(),
        ["all"]
    );
    assert!(c.delete_resource("vol-1").unwrap());
    assert!(c.tags("vol-1").unwrap().is_empty());
    assert!(
        c.permissions("vol-1", "createVolumePermission")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn data_version_tracks_other_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let mine = Catalog::open(&path).unwrap();
    let other = Catalog::open(&path).unwrap();
    let v0 = mine.data_version().unwrap();
    mine.create_account(&account("111111111111", "a"), "AKIA1", "s")
        .unwrap();
    assert_eq!(mine.data_version().unwrap(), v0, "own writes do not count");
    other
        .create_account(&account("222222222222", "b"), "AKIA2", "s")
        .unwrap();
    assert_ne!(
        mine.data_version().unwrap(),
        v0,
        "another connection's commit does"
    );
}

#[test]
fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    {
        let c = Catalog::open(&path).unwrap();
        c.create_account(&account("111111111111", "alice"), "AKIA1", "s")
            .unwrap();
    }
    let c = Catalog::open(&path).unwrap();
    assert_eq!(c.accounts().unwrap().len(), 1);
}

#[test]
fn upload_blocks_survive_reopening_with_their_write_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let before = now_ms();
    {
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.upload_last_write("snap-1").unwrap(), None);
        c.put_upload_block("snap-1", 3, "ab").unwrap();
        c.put_upload_block("snap-1", 1, "").unwrap();
        c.put_upload_block("snap-2", 0, "cd").unwrap();
    }
    let c = Catalog::open(&path).unwrap();
    assert_eq!(
        c.upload_blocks("snap-1").unwrap(),
        vec![(1, String::new()), (3, "ab".to_string())]
    );
    let last = c.upload_last_write("snap-1").unwrap().unwrap();
    assert!(last >= before && last <= now_ms());
    let mut ids = c.upload_snapshot_ids().unwrap();
    ids.sort();
    assert_eq!(ids, vec!["snap-1".to_string(), "snap-2".to_string()]);
    c.clear_upload("snap-1").unwrap();
    assert_eq!(c.upload_last_write("snap-1").unwrap(), None);
    assert_eq!(c.upload_snapshot_ids().unwrap(), vec!["snap-2".to_string()]);
}

/// A catalog that cannot grow (here SQLite's own page limit, which fails exactly like a
/// full disk: `SQLITE_FULL`) reports `is_storage_full`, keeps what it had, and writes
/// again once it may grow.
#[test]
fn a_full_database_is_reported_as_storage_full_and_recovers() {
    let c = Catalog::in_memory().unwrap();
    c.create_account(&account("111111111111", "alice"), "AKIAALICE", "s1")
        .unwrap();
    let pages: i64 = c
        .conn()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    c.conn()
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let big = "x".repeat(64 * 1024);
    let err = c
        .create_account(&account("222222222222", &big), "AKIABOB", "s2")
        .unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    assert!(c.access_key("AKIABOB").unwrap().is_none(), "rolled back");
    // A resource whose tags do not fit is not inserted either.
    let row = ResourceRow {
        id: "vol-1".into(),
        kind: "volume".into(),
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
        state: "available".into(),
        doc: "{}".into(),
        created_at_ms: 1,
    };
    let tags: Vec<(String, String)> = (0..64)
        .map(|i| (format!("key-{i}"), "v".repeat(4096)))
        .collect();
    let err = c.insert_resource_with_tags(&row, &tags).unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    assert!(c.resource("vol-1").unwrap().is_none());
    assert!(c.tags("vol-1").unwrap().is_empty());
    assert!(
        !CatalogError::TooNew {
            found: 9,
            supported: 4
        }
        .is_storage_full()
    );
    c.conn()
        .pragma_update(None, "max_page_count", 1_000_000)
        .unwrap();
    c.create_account(&account("222222222222", &big), "AKIABOB", "s2")
        .unwrap();
    assert_eq!(c.accounts().unwrap().len(), 2);
    c.insert_resource_with_tags(&row, &tags).unwrap();
    assert_eq!(c.tags("vol-1").unwrap().len(), 64);
}

#[test]
fn console_passwords_are_set_replaced_and_removed_per_account() {
    let c = Catalog::in_memory().unwrap();
    c.create_account(&account("111111111111", "alice"), "AKIAALICE", "s1")
        .unwrap();
    assert_eq!(c.console_password("111111111111").unwrap(), None);
    assert!(!c.set_console_password("999999999999", Some("h")).unwrap());
    assert!(c.set_console_password("111111111111", Some("h1")).unwrap());
    assert!(c.set_console_password("111111111111", Some("h2")).unwrap());
    assert_eq!(
        c.console_password("111111111111").unwrap().as_deref(),
        Some("h2")
    );
    assert!(c.set_console_password("111111111111", None).unwrap());
    assert_eq!(c.console_password("111111111111").unwrap(), None);
}
