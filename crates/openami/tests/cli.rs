//! The `openami` binary end to end: serve (health, lock, signals, env vars) and the
//! store maintenance commands on a real data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstore::{BlockStore, ResourceId};
use objstore::LocalFsStore;
use volume::Volume;

const BIN: &str = env!("CARGO_BIN_EXE_openami");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

fn wait_healthy(child: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited early: {status}");
        }
        if let Some((200, _)) = http_get(port, "/health") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not become healthy");
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("server did not stop on its signal");
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn run(args: &[&str], data_dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

#[test]
fn serve_creates_the_data_dir_answers_health_owns_the_dir_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("fresh/data");
    let port = free_port();
    let mut server = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(&mut server, port);
    let (status, body) = http_get(port, "/health").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert_eq!(http_get(port, "/nope").unwrap().0, 404);
    assert!(data_dir.join("regions/us-east-1/objects").is_dir());
    assert!(data_dir.join("catalog.db").is_file());

    // A second server, and an offline GC, are refused while this one owns the directory.
    let second = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"));
    let gc = run(&["store", "gc"], &data_dir);
    assert!(!gc.status.success(), "gc must refuse while the server runs");

    signal(&server, "-TERM");
    assert!(wait_exit(&mut server).success(), "clean exit on SIGTERM");
    // The directory is free again.
    assert!(run(&["store", "gc"], &data_dir).status.success());
}

#[test]
fn serve_honours_env_vars_and_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Command::new(BIN)
        .arg("serve")
        .env("OPENAMI_DATA_DIR", tmp.path().join("envdata"))
        .env("OPENAMI_LISTEN", format!("127.0.0.1:{port}"))
        .env("OPENAMI_REGIONS", "eu-west-1,us-west-2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(&mut server, port);
    assert!(
        tmp.path()
            .join("envdata/regions/eu-west-1/objects")
            .is_dir()
    );
    signal(&server, "-INT");
    assert!(wait_exit(&mut server).success());
}

fn seed_data_dir(data_dir: &Path) -> Arc<BlockStore> {
    let region = data_dir.join("regions/us-east-1");
    std::fs::create_dir_all(region.join("volumes")).unwrap();
    let store = BlockStore::new(Arc::new(
        LocalFsStore::open(region.join("objects")).unwrap(),
    ));
    let bs = blockstore::BLOCK_SIZE;
    let vol = Volume::create(
        &data_dir.join("regions/us-east-1/volumes/vol-1"),
        ResourceId::new("vol-1").unwrap(),
        4 * bs as u64,
        store.clone(),
    )
    .unwrap();
    vol.write_at(&vec![b'x'; bs], 0).unwrap();
    vol.write_at(&vec![b'x'; bs], bs as u64).unwrap();
    vol.write_at(
        &(0..bs).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(),
        2 * bs as u64,
    )
    .unwrap();
    vol.snapshot(ResourceId::new("snap-1").unwrap()).unwrap();
    vol.close().unwrap();
    store
}

#[test]
fn store_stats_scrub_and_gc_report_on_a_real_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let store = seed_data_dir(&data_dir);

    let stats = run(&["store", "stats", "--json"], &data_dir);
    assert!(stats.status.success());
    let text = String::from_utf8(stats.stdout).unwrap();
    assert!(text.contains("\"snapshots\":1"), "{text}");
    assert!(
        text.contains(&format!("\"logical_bytes\":{}", 3 * blockstore::BLOCK_SIZE)),
        "{text}"
    );
    assert!(text.contains("\"dedup_ratio\":1.5"), "{text}");
    let table = run(&["store", "stats"], &data_dir);
    assert!(String::from_utf8_lossy(&table.stdout).contains("dedup ratio"));

    let scrub = run(&["store", "scrub"], &data_dir);
    assert!(scrub.status.success());
    assert!(String::from_utf8_lossy(&scrub.stdout).contains("scrub us-east-1: clean"));

    // Corrupt one block on disk: scrub names it and fails.
    let hash = store
        .referenced_by(&ResourceId::new("snap-1").unwrap())
        .unwrap()[0];
    let hex = hash.to_hex();
    let path = data_dir
        .join("regions/us-east-1/objects/blocks")
        .join(&hex[..2])
        .join(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let scrub = run(&["store", "scrub"], &data_dir);
    assert_eq!(scrub.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&scrub.stdout).contains(&format!("CORRUPT BLOCK {hex}")));

    // Delete the snapshot (and the volume holding it): gc frees its blocks.
    Volume::destroy(&data_dir.join("regions/us-east-1/volumes/vol-1"), &store).unwrap();
    store
        .delete_snapshot(&ResourceId::new("snap-1").unwrap())
        .unwrap();
    let gc = run(&["store", "gc", "--json"], &data_dir);
    assert!(gc.status.success());
    let text = String::from_utf8(gc.stdout).unwrap();
    assert!(text.contains("\"blocks_deleted\":2"), "{text}");
    assert!(store.stored_blocks().unwrap().is_empty());
}

#[test]
fn store_commands_on_a_missing_data_dir_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["store", "stats"], &tmp.path().join("absent"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
