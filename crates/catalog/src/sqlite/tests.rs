//! Tests of the SQLite backend: the conformance suite, and what is SQLite's own
//! (reopening a file, `data_version` semantics, a full database).

use super::*;
use crate::Catalog;

fn account(id: &str, name: &str) -> Account {
    Account {
        account_id: id.into(),
        name: name.into(),
    }
}

#[test]
fn conformance_in_memory() {
    crate::conformance::run_all(&Catalog::in_memory().unwrap());
}

#[test]
fn conformance_two_connections_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let a = Catalog::open(&path).unwrap();
    crate::conformance::run_all(&a);
    let b = Catalog::open(&path).unwrap();
    crate::conformance::run_shared(&a, &b);
    crate::conformance::run_concurrent(&a);
}

#[test]
fn open_url_takes_a_path_and_refuses_other_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let c = Catalog::open_url(path.to_str().unwrap()).unwrap();
    assert_eq!(c.backend_name(), "sqlite");
    assert!(path.exists());
    let err = Catalog::open_url("mysql://u:secret@h/db").unwrap_err();
    assert!(matches!(err, CatalogError::BadLocation(_)), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        crate::redact("postgres://u:pw@h:5432/db?connect_timeout=3"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(crate::redact("postgres://u@h/db"), "postgres://u@h:5432/db");
    // A password anywhere: after a '/' in the authority, as a parameter, in key=value form.
    for secret in [
        "postgres://u:p%2Fw%3Fx@h/db",
        "postgres://u@h/db?password=s3cr3t",
        "host=h user=u password=s3cr3t dbname=db",
    ] {
        let shown = crate::redact(secret);
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("p%2Fw"),
            "{shown}"
        );
        assert!(shown.contains(":***@"), "{shown}");
    }
    assert!(!crate::redact("postgres://u:pw@h/db?bogus=pw").contains("pw"));
    assert_eq!(crate::redact("/var/lib/x.db"), "/var/lib/x.db");
    assert_eq!(crate::redact("mysql://u:pw@h/db"), "mysql://…");
    // key=value strings are no file names.
    assert!(matches!(
        crate::Catalog::open_url("host=h password=pw"),
        Err(crate::CatalogError::BadLocation(m)) if !m.contains("pw")
    ));
}

#[test]
fn data_version_tracks_other_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let mine = Sqlite::open(&path).unwrap();
    let other = Sqlite::open(&path).unwrap();
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
        "another connection's commit does, at once"
    );
}

#[test]
fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let before = now_ms();
    {
        let c = Sqlite::open(&path).unwrap();
        c.create_account(&account("111111111111", "alice"), "AKIA1", "s")
            .unwrap();
        c.put_upload_block("snap-1", 3, "ab").unwrap();
    }
    let c = Sqlite::open(&path).unwrap();
    assert_eq!(c.accounts().unwrap().len(), 1);
    let last = c.upload_last_write("snap-1").unwrap().unwrap();
    assert!(last >= before && last <= now_ms());
}

/// A catalog that cannot grow (here SQLite's own page limit, which fails exactly like a
/// full disk: `SQLITE_FULL`) reports `is_storage_full`, keeps what it had, and writes
/// again once it may grow.
#[test]
fn a_full_database_is_reported_as_storage_full_and_recovers() {
    let c = Sqlite::in_memory().unwrap();
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
    assert!(!err.is_unavailable(), "{err}");
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
