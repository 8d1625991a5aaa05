//! `openami imds-relay SOCKET` as slirp runs it: stdin/stdout piped to a served IMDS
//! socket; it relays HTTP both ways, writes nothing else, and exits 0 when either side
//! is done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imds::{ImdsServer, Metadata, MetadataSource};

const BIN: &str = env!("CARGO_BIN_EXE_openami");

fn source() -> Arc<dyn MetadataSource> {
    Arc::new(|| {
        Some(Metadata {
            instance_id: "i-0123456789abcdef0".into(),
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
