//! No thread outlives its connection or the server. One test in its own process, so the
//! thread names counted are only this server's.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nbd::proto::*;

fn wait_threads(expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = nbd_threads();
        if t.len() == expected || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn go(socket: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).unwrap();
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    let mut m = Vec::new();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
    m.extend_from_slice(&3u32.to_be_bytes());
    m.extend_from_slice(b"vol");
    s.write_all(&m).unwrap();
    let mut info = [0u8; 10];
    s.read_exact(&mut info).unwrap();
    s
}

#[test]
fn no_thread_outlives_its_connection_or_the_server() {
    assert!(nbd_threads().is_empty());
    let dev = MemDevice::slow_at(8 << 20, 4096);
    let mut server = TestServer::start(vec![export("vol", &dev)]);
    assert_eq!(wait_threads(1), vec!["nbd-accept".to_string()]);

    // Abrupt disconnects in every phase.
    drop(UnixStream::connect(&server.socket).unwrap());
    let mut s = go(&server.socket);
    s.write_all(
        &Request {
            flags: 0,
            kind: CMD_WRITE,
            cookie: 1,
            offset: 0,
            length: 1 << 20,
        }
        .encode(),
    )
    .unwrap();
    s.write_all(&[1; 1000]).unwrap();
    drop(s);
    let mut s = go(&server.socket);
    s.write_all(&[0x55; 28]).unwrap();
    drop(s);
    let mut s = go(&server.socket);
    for i in 0..16 {
        s.write_all(
            &Request {
                flags: 0,
                kind: CMD_READ,
                cookie: i,
                offset: 0,
                length: 1 << 20,
            }
            .encode(),
        )
        .unwrap();
    }
    drop(s);
    // Real clients, several connections each.
    if have("nbdcopy") {
        let dst = server.dir.path().join("out.raw");
        run(Command::new("nbdcopy")
            .args(["--connections", "4", "--requests", "32"])
            .arg(server.url("vol"))
            .arg(&dst));
    }
    server.wait_idle();
    assert_eq!(wait_threads(1), vec!["nbd-accept".to_string()]);

    // Shutdown while a request is in flight on a slow device: it completes, then all ends.
    let mut s = go(&server.socket);
    s.write_all(
        &Request {
            flags: 0,
            kind: CMD_READ,
            cookie: 7,
            offset: 4096,
            length: 4096,
        }
        .encode(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(nbd_threads().len() > 1);
    server.handle.take().unwrap().shutdown();
    assert!(nbd_threads().is_empty(), "{:?}", nbd_threads());
    // The in-flight read was answered before the connection closed.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 16 + 4096);
    assert_eq!(&rest[4..16], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
}
