//! Crash points of the group commit (see `objstore::CrashPoint`): a child process runs
//! concurrent write sessions that stage blocks and persist them through the store's group
//! commit, journalling each block before its persist (`S <hex>`) and after its persist
//! returned (`A <hex>`: acknowledged). After a few acknowledged rounds it arms one crash
//! point; the next batch's install aborts the process there. The parent then checks:
//!
//! * every acknowledged block is present and reads back verified (nothing acknowledged lost);
//! * every object under `blocks/` decodes and matches its name (no torn block named);
//! * before the renames (`BeforeContentSync`, `BeforeRename`) no unacknowledged block of
//!   the crashed batch is under its name — its bytes are only in temp files, which the
//!   next start removes.
//!
//! A kill keeps the page cache, so what a power loss would add is covered by the order
//! the crash points pin down: nothing is renamed before the batch's content sync.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blockstore::{BLOCK_SIZE, BlockHash, BlockStore};
use objstore::{CrashPoint, LocalFsStore, ObjectStore};

const THREADS: u64 = 6;
const ROUNDS_BEFORE_ARMING: u64 = 3;

fn point(name: &str) -> CrashPoint {
    match name {
        "before-content-sync" => CrashPoint::BeforeContentSync,
        "before-rename" => CrashPoint::BeforeRename,
        "before-name-sync" => CrashPoint::BeforeNameSync,
        other => panic!("unknown crash point {other}"),
    }
}

fn block(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..BLOCK_SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
#[ignore = "run as a child process by a_crash_inside_a_group_commit_loses_nothing_acknowledged"]
fn group_commit_crash_child() {
    let dir = std::env::var("OPENAMI_CRASH_DIR").expect("OPENAMI_CRASH_DIR");
    let at = point(&std::env::var("OPENAMI_CRASH_POINT").expect("OPENAMI_CRASH_POINT"));
    let dir = Path::new(&dir);
    let local = Arc::new(LocalFsStore::open(dir.join("store")).unwrap());
    let objects: Arc<dyn ObjectStore> = local.clone();
    let store = BlockStore::new(objects);
    let journal = Arc::new(Mutex::new(
        OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .unwrap(),
    ));
    let log = |journal: &Mutex<File>, line: String| {
        let mut j = journal.lock().unwrap();
        j.write_all(format!("{line}\n").as_bytes()).unwrap();
        j.sync_data().unwrap();
    };
    for round in 0.. {
        if round == ROUNDS_BEFORE_ARMING {
            local.crash_at(Some(at));
        }
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (store, journal) = (&store, &journal);
                s.spawn(move || {
                    let session = store.session();
                    let mut hashes = Vec::new();
                    for b in 0..3 {
                        let data = block(round * 1000 + t * 10 + b + 1);
                        let put = session.put_block(&data).unwrap();
                        log(journal, format!("S {}", put.hash));
                        hashes.push(put.hash);
                    }
                    session.persist().unwrap();
                    for h in hashes {
                        log(journal, format!("A {h}"));
                    }
                });
            }
        });
        assert!(round < 1000, "the crash point was never reached");
    }
}

fn crash_at(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    File::create(dir.path().join("journal")).unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "group_commit_crash_child",
            "--nocapture",
        ])
        .env("OPENAMI_CRASH_DIR", dir.path())
        .env("OPENAMI_CRASH_POINT", name)
        .status()
        .unwrap();
    assert!(!status.success(), "{name}: the child was meant to crash");

    let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    let acked: HashSet<BlockHash> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("A "))
        .map(|h| h.parse().unwrap())
        .collect();
    let staged: HashSet<BlockHash> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("S "))
        .map(|h| h.parse().unwrap())
        .collect();
    assert!(
        acked.len() as u64 >= ROUNDS_BEFORE_ARMING * THREADS * 3,
        "{name}: the unarmed rounds were acknowledged"
    );

    let local = LocalFsStore::open(dir.path().join("store")).unwrap();
    let leftovers = local.remove_stale_temp_files(Duration::ZERO).unwrap();
    let objects: Arc<dyn ObjectStore> = Arc::new(local);
    let store = BlockStore::new(objects.clone());
    for hash in &acked {
        store
            .get_block(hash)
            .unwrap_or_else(|e| panic!("{name}: acknowledged block {hash} lost: {e}"));
    }
    let named = objects.list("blocks/").unwrap();
    for meta in &named {
        let hash: BlockHash = meta
            .key
            .as_str()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        store
            .get_block(&hash)
            .unwrap_or_else(|e| panic!("{name}: torn block under its name: {e}"));
    }
    let unacked: Vec<&BlockHash> = staged.difference(&acked).collect();
    assert!(
        !unacked.is_empty(),
        "{name}: the crashed batch staged blocks"
    );
    if name != "before-name-sync" {
        assert_eq!(
            named.len(),
            acked.len(),
            "{name}: only acknowledged blocks are under their names"
        );
        assert!(leftovers > 0, "{name}: the crashed batch left temp files");
    }
}

#[test]
fn a_crash_inside_a_group_commit_loses_nothing_acknowledged() {
    for name in ["before-content-sync", "before-rename", "before-name-sync"] {
        crash_at(name);
    }
}
