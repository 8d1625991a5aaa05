//! The `openami` binary on a PostgreSQL catalog (`--catalog postgres://…`): a real
//! server started by `catalog::test_postgres`; two data directories (two nodes) share
//! it. And an unreachable server: one clear error line and a failure exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use catalog::test_postgres::TestPostgres;

const BIN: &str = env!("CARGO_BIN_EXE_openami");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn openami(args: &[&str], data_dir: &Path, catalog: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--catalog", catalog])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("error"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_unreachable_catalog_fails_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("postgres://openami:hunter2@127.0.0.1:{}/cat", free_port());
    let started = Instant::now();
    let account = openami(&["account", "create", "alice"], tmp.path(), &url);
    let serve = openami(
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &tmp.path().join("serve"),
        &url,
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    for out in [account, serve] {
        assert!(!out.status.success());
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let line = &errors[0];
        assert!(line.contains("catalog database unavailable"), "{line}");
        assert!(line.contains("127.0.0.1"), "{line}");
        assert!(
            !line.contains("hunter2"),
            "the password is not shown: {line}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn two_nodes_share_accounts_and_imported_images_in_postgres() {
    let pg = TestPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    let url = pg.create_database("openami").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (node_a, node_b) = (tmp.path().join("a"), tmp.path().join("b"));

    let out = openami(
        &["account", "create", "alice", "--account-id", "111111111111"],
        &node_a,
        &url,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["AccountId"], "111111111111");
    // The other node sees the account: its name is taken.
    let again = openami(&["account", "create", "alice"], &node_b, &url);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // (The data directory makes an empty catalog.db placeholder; SQLite never wrote it.)
    assert_eq!(
        std::fs::metadata(node_a.join("catalog.db")).map_or(0, |m| m.len()),
        0,
        "no SQLite catalog next to a PostgreSQL one"
    );

    let images = tmp.path().join("images.json");
    std::fs::write(
        &images,
        serde_json::json!({"Images": [{
            "ImageId": "ami-0123456789abcdef0",
            "Name": "al2023-ami-2023.1-x86_64",
            "OwnerId": "137112412989",
            "ImageOwnerAlias": "amazon",
            "Public": true,
            "CreationDate": "2024-01-01T00:00:00.000Z",
            "RootDeviceName": "/dev/xvda",
            "RootDeviceType": "ebs",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
                "SnapshotId": "snap-0123456789abcdef0", "VolumeSize": 8}}],
        }]})
        .to_string(),
    )
    .unwrap();
    let imported = openami(
        &["catalog", "import", images.to_str().unwrap()],
        &node_b,
        &url,
    );
    let stderr = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!(report["Imported"][0], "ami-0123456789abcdef0", "{report}");

    let catalog = catalog::Catalog::open_postgres(&url).unwrap();
    let row = catalog.resource("ami-0123456789abcdef0").unwrap().unwrap();
    assert_eq!(
        (row.kind.as_str(), row.region.as_str()),
        ("image", "us-east-1")
    );
    assert_eq!(
        catalog.permissions(&row.id, "launchPermission").unwrap(),
        ["all"]
    );
}
