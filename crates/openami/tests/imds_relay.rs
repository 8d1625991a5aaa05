//! `openami imds-relay SOCKET` as slirp runs it: stdin/stdout piped to a served IMDS
//! socket; it relays HTTP both ways, writes nothing else, and exits 0 when either side
//! is done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imds::{ImdsServer, Metadata, MetadataSource};

const BIN: &str = env!("CARGO_BIN_EXE_openami");

fn source() -> Arc<dyn MetadataSource> {
    Arc::new(|| {
        Some(Metadata {
            instance_id: "i-0123456789abcdef0".into(),
            availability_zone: "eu-west-1b".into(),
            region: "eu-west-1".into(),
            ..Metadata::default()
        })
    })
}

fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("imds-relay did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn relays_an_imdsv2_exchange_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("imds.sock");
    let server = ImdsServer::bind(&sock, source(), [5; 32]).unwrap();

    // The guest sends its requests and closes its side: the relay exits 0 after the
    // answers.
    let mut child = Command::new(BIN)
        .arg("imds-relay")
        .arg(&sock)
        .env("OPENAMI_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n\
              GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
        )
        .unwrap();
    drop(stdin);
    let status = wait(&mut child);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert!(err.is_empty(), "stderr: {}", String::from_utf8_lossy(&err));
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\ni-0123456789abcdef0"), "{out}");
    assert!(server.last_request_ms().is_some());

    // The server closes (Connection: close) while the guest side stays open: exit 0 too.
    let mut child = Command::new(BIN)
        .arg("imds-relay")
        .arg(&sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /latest/meta-data/nope HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let status = wait(&mut child);
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    assert!(status.success());
    assert!(err.is_empty());
    assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");

    // No server: a failure status, and still nothing on stderr.
    server.shutdown();
    let out = Command::new(BIN)
        .arg("imds-relay")
        .arg(&sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

/// What slirp's `guestfwd=…-cmd:` does, on loopback: every accepted TCP connection becomes
/// stdin, stdout *and* stderr of a fresh `openami imds-relay SOCKET`. botocore's own IMDS
/// client (token PUT, then GETs) then talks to the service through it.
#[test]
fn botocore_through_a_slirp_like_relay() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("imds.sock");
    let _server = ImdsServer::bind(&sock, source(), [6; 32]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let children: Arc<Mutex<Vec<Child>>> = Arc::default();
    let spawned = Arc::clone(&children);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let fd = OwnedFd::from(conn.unwrap());
            let child = Command::new(BIN)
                .arg("imds-relay")
                .arg(&sock)
                .env("OPENAMI_LOG", "trace")
                .stdin(Stdio::from(fd.try_clone().unwrap()))
                .stdout(Stdio::from(fd.try_clone().unwrap()))
                .stderr(Stdio::from(fd))
                .spawn()
                .unwrap();
            spawned.lock().unwrap().push(child);
        }
    });
    let script = r#"
import sys
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher
base = sys.argv[1]
print(InstanceMetadataRegionFetcher(timeout=5, num_attempts=1, base_url=base).retrieve_region())
f = InstanceMetadataFetcher(timeout=5, num_attempts=1, base_url=base)
token = f._fetch_metadata_token()
print(len(token))
print(f._get_request("latest/meta-data/instance-id", None, token).text)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &format!("http://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "eu-west-1\n54\ni-0123456789abcdef0\n");
    // Every relay ended with status 0 once botocore closed its connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut children = children.lock().unwrap();
        assert!(children.len() >= 2, "{} connections", children.len());
        let done: Vec<_> = children.iter_mut().map(|c| c.try_wait().unwrap()).collect();
        if done.iter().all(Option::is_some) {
            assert!(done.iter().all(|s| s.unwrap().success()), "{done:?}");
            break;
        }
        assert!(Instant::now() < deadline, "relays still running: {done:?}");
        drop(children);
        std::thread::sleep(Duration::from_millis(50));
    }
}
