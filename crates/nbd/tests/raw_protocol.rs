//! The protocol byte by byte with a hand-written client: option haggling, error replies,
//! pipelining, out-of-order completion, disconnects, shutdown.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nbd::proto::*;
use nbd::{BlockDevice, NbdError, NbdServer, ServerConfig};

struct Raw {
    s: UnixStream,
}

impl Raw {
    fn connect(path: &Path) -> Raw {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { s }
    }

    /// Reads the greeting and sends client flags.
    fn hello(path: &Path, client_flags: u32) -> Raw {
        let mut c = Raw::connect(path);
        let mut g = [0u8; 18];
        c.s.read_exact(&mut g).unwrap();
        assert_eq!(&g[0..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(u16::from_be_bytes([g[16], g[17]]), 3);
        c.s.write_all(&client_flags.to_be_bytes()).unwrap();
        c
    }

    fn option(&mut self, option: u32, data: &[u8]) {
        let mut m = Vec::new();
        m.extend_from_slice(b"IHAVEOPT");
        m.extend_from_slice(&option.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.s.write_all(&m).unwrap();
    }

    fn opt_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(
            u64::from_be_bytes(h[0..8].try_into().unwrap()),
            OPT_REPLY_MAGIC
        );
        let opt = u32::from_be_bytes(h[8..12].try_into().unwrap());
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut data = vec![0u8; len as usize];
        self.s.read_exact(&mut data).unwrap();
        (opt, kind, data)
    }

    /// Sends INFO/GO; returns the replies up to and including the final one.
    fn info(&mut self, option: u32, name: &str, requests: &[u16]) -> Vec<(u32, Vec<u8>)> {
        let mut d = Vec::new();
        d.extend_from_slice(&(name.len() as u32).to_be_bytes());
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(requests.len() as u16).to_be_bytes());
        for r in requests {
            d.extend_from_slice(&r.to_be_bytes());
        }
        self.option(option, &d);
        let mut out = Vec::new();
        loop {
            let (opt, kind, data) = self.opt_reply();
            assert_eq!(opt, option);
            let last = kind != REP_INFO;
            out.push((kind, data));
            if last {
                return out;
            }
        }
    }

    /// Handshake through NBD_OPT_GO; returns (size, flags).
    fn go(path: &Path, name: &str) -> (Raw, u64, u16) {
        let mut c = Raw::hello(path, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        let replies = c.info(OPT_GO, name, &[]);
        assert_eq!(replies.last().unwrap().0, REP_ACK, "{replies:?}");
        let export = &replies.iter().find(|r| r.1[..2] == [0, 0]).unwrap().1;
        let size = u64::from_be_bytes(export[2..10].try_into().unwrap());
        let flags = u16::from_be_bytes([export[10], export[11]]);
        (c, size, flags)
    }

    fn request(&mut self, flags: u16, kind: u16, cookie: u64, offset: u64, length: u32) {
        let r = Request {
            flags,
            kind,
            cookie,
            offset,
            length,
        };
        self.s.write_all(&r.encode()).unwrap();
    }

    fn reply(&mut self) -> (u32, u64) {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(
            u32::from_be_bytes(h[0..4].try_into().unwrap()),
            SIMPLE_REPLY_MAGIC
        );
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }

    fn read(&mut self, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
        self.request(0, CMD_READ, cookie, offset, len);
        let (err, c) = self.reply();
        assert_eq!((err, c), (0, cookie));
        let mut data = vec![0u8; len as usize];
        self.s.read_exact(&mut data).unwrap();
        data
    }

    fn write(&mut self, flags: u16, cookie: u64, offset: u64, data: &[u8]) -> u32 {
        self.request(flags, CMD_WRITE, cookie, offset, data.len() as u32);
        self.s.write_all(data).unwrap();
        let (err, c) = self.reply();
        assert_eq!(c, cookie);
        err
    }

    /// True when the server closed the connection (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

const MIB: usize = 1 << 20;

#[test]
fn option_haggling() {
    let a = MemDevice::new(MIB);
    let b = MemDevice::with_content(vec![1; 4096], true);
    let server = TestServer::start(vec![
        export("a", &a).with_description("disk a"),
        export("b", &b),
    ]);
    let mut c = Raw::hello(&server.socket, FLAG_C_FIXED_NEWSTYLE);

    c.option(OPT_LIST, &[]);
    let (opt, kind, data) = c.opt_reply();
    assert_eq!((opt, kind), (OPT_LIST, REP_SERVER));
    assert_eq!(&data[..4], &1u32.to_be_bytes());
    assert_eq!(&data[4..], b"adisk a");
    let (_, kind, data) = c.opt_reply();
    assert_eq!(kind, REP_SERVER);
    assert_eq!(&data[4..], b"b");
    assert_eq!(c.opt_reply().1, REP_ACK);

    c.option(OPT_LIST, b"junk");
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);

    let replies = c.info(
        OPT_INFO,
        "a",
        &[INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE],
    );
    let kinds: Vec<u16> = replies[..replies.len() - 1]
        .iter()
        .map(|r| u16::from_be_bytes([r.1[0], r.1[1]]))
        .collect();
    assert_eq!(
        kinds,
        vec![INFO_EXPORT, INFO_BLOCK_SIZE, INFO_NAME, INFO_DESCRIPTION]
    );
    let export = &replies[0].1;
    assert_eq!(export.len(), 12);
    assert_eq!(
        u64::from_be_bytes(export[2..10].try_into().unwrap()),
        MIB as u64
    );
    let flags = u16::from_be_bytes([export[10], export[11]]);
    let want = TF_HAS_FLAGS
        | TF_SEND_FLUSH
        | TF_SEND_FUA
        | TF_SEND_TRIM
        | TF_SEND_WRITE_ZEROES
        | TF_SEND_CACHE
        | TF_CAN_MULTI_CONN;
    assert_eq!(flags, want);
    let bs = &replies[1].1;
    assert_eq!(&bs[2..6], &1u32.to_be_bytes());
    assert_eq!(&bs[6..10], &4096u32.to_be_bytes());
    assert_eq!(&bs[10..14], &(32u32 << 20).to_be_bytes());
    assert_eq!(&replies[2].1[2..], b"a");
    assert_eq!(&replies[3].1[2..], b"disk a");
    assert_eq!(replies[4].0, REP_ACK);

    // Read-only export: READ_ONLY, no write features.
    let replies = c.info(OPT_INFO, "b", &[]);
    let e = &replies[0].1;
    let flags = u16::from_be_bytes([e[10], e[11]]);
    assert_ne!(flags & TF_READ_ONLY, 0);
    assert_eq!(
        flags & (TF_SEND_TRIM | TF_SEND_WRITE_ZEROES | TF_SEND_FUA),
        0
    );

    // Unknown export, malformed request.
    let replies = c.info(OPT_INFO, "zzz", &[]);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, REP_ERR_UNKNOWN);
    c.option(OPT_GO, &[0, 0, 0, 9, b'a']);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    // Empty name with two exports: no default.
    assert_eq!(c.info(OPT_GO, "", &[])[0].0, REP_ERR_UNKNOWN);

    // Unsupported: STARTTLS, STRUCTURED_REPLY, meta contexts, EXTENDED_HEADERS, junk.
    for opt in [OPT_STARTTLS, OPT_STRUCTURED_REPLY, 9, 10, 11, 0xdead_beef] {
        c.option(opt, &[1, 2, 3, 4, 5]);
        let (o, kind, _) = c.opt_reply();
        assert_eq!((o, kind), (opt, REP_ERR_UNSUP), "option {opt}");
    }
    // A big unknown option is drained, not stored, and answered.
    c.option(0x4242, &vec![0u8; 200_000]);
    assert_eq!(c.opt_reply().1, REP_ERR_UNSUP);

    c.option(OPT_ABORT, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    assert!(c.closed());
    server.wait_idle();
}

#[test]
fn export_name_with_and_without_zeroes() {
    let dev = MemDevice::new(MIB);
    let server = TestServer::start(vec![export("vol", &dev)]);
    for (flags, expect) in [
        (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES, 10),
        (FLAG_C_FIXED_NEWSTYLE, 134),
        (0, 134),
    ] {
        let mut c = Raw::hello(&server.socket, flags);
        c.option(OPT_EXPORT_NAME, b"vol");
        let mut buf = vec![0u8; expect];
        c.s.read_exact(&mut buf).unwrap();
        assert_eq!(
            u64::from_be_bytes(buf[0..8].try_into().unwrap()),
            MIB as u64
        );
        assert!(buf[10..].iter().all(|&b| b == 0));
        // Transmission works right after.
        assert_eq!(c.read(1, 0, 512), vec![0u8; 512]);
        c.request(0, CMD_DISC, 2, 0, 0);
        assert!(c.closed());
    }
    // Unknown name: the only possible answer is a hard disconnect.
    let mut c = Raw::hello(&server.socket, FLAG_C_FIXED_NEWSTYLE);
    c.option(OPT_EXPORT_NAME, b"nope");
    assert!(c.closed());
    server.wait_idle();
}

#[test]
fn handshake_violations_disconnect() {
    let dev = MemDevice::new(MIB);
    let server = TestServer::start(vec![export("vol", &dev)]);
    // Unknown client flags.
    let mut c = Raw::hello(&server.socket, 1 << 7);
    assert!(c.closed());
    // Bad option magic.
    let mut c = Raw::hello(&server.socket, FLAG_C_FIXED_NEWSTYLE);
    c.s.write_all(b"HTTP/1.1 GET / xxxxxxxx").unwrap();
    assert!(c.closed());
    // An option claiming gigabytes of data.
    let mut c = Raw::hello(&server.socket, FLAG_C_FIXED_NEWSTYLE);
    let mut m = Vec::new();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&OPT_GO.to_be_bytes());
    m.extend_from_slice(&u32::MAX.to_be_bytes());
    c.s.write_all(&m).unwrap();
    assert!(c.closed());
    // Leaves after the greeting / mid-option.
    let c = Raw::connect(&server.socket);
    drop(c);
    let mut c = Raw::hello(&server.socket, FLAG_C_FIXED_NEWSTYLE);
    c.s.write_all(b"IHAVEOPT\0\0\0\x07\0\0\0\x20vol").unwrap();
    drop(c);
    server.wait_idle();
    // The server still serves.
    let (mut c, size, _) = Raw::go(&server.socket, "vol");
    assert_eq!(size, MIB as u64);
    assert_eq!(c.read(5, 0, 16), vec![0u8; 16]);
}

#[test]
fn transmission_errors() {
    let dev = MemDevice::new(MIB);
    let ro = MemDevice::with_content(vec![3; 8192], true);
    let server = TestServer::start(vec![export("vol", &dev), export("ro", &ro)]);
    let (mut c, _, _) = Raw::go(&server.socket, "vol");
    let size = MIB as u64;

    // Out of range.
    c.request(0, CMD_READ, 1, size - 10, 11);
    assert_eq!(c.reply(), (EINVAL, 1));
    c.request(0, CMD_READ, 2, u64::MAX - 5, 100);
    assert_eq!(c.reply(), (EINVAL, 2));
    assert_eq!(c.write(0, 3, size - 2, &[1, 2, 3]), ENOSPC);
    c.request(0, CMD_WRITE_ZEROES, 4, size, 1);
    assert_eq!(c.reply(), (ENOSPC, 4));
    c.request(0, CMD_TRIM, 5, size + 1, 0);
    assert_eq!(c.reply(), (EINVAL, 5));
    c.request(0, CMD_CACHE, 6, size, 512);
    assert_eq!(c.reply(), (EINVAL, 6));
    // Too large: a read is refused, a write's payload is drained.
    c.request(0, CMD_READ, 7, 0, (32 << 20) + 1);
    assert_eq!(c.reply(), (EOVERFLOW, 7));
    let big = vec![0x77u8; (32 << 20) + 4096];
    assert_eq!(c.write(0, 8, 0, &big), EOVERFLOW);
    // Unknown command, bad flags (DF without structured replies, NO_HOLE on a write,
    // FAST_ZERO not advertised), block status without negotiation.
    c.request(0, 42, 9, 0, 0);
    assert_eq!(c.reply(), (EINVAL, 9));
    c.request(1 << 2, CMD_READ, 10, 0, 512);
    assert_eq!(c.reply(), (EINVAL, 10));
    assert_eq!(c.write(CMD_FLAG_NO_HOLE, 11, 0, &[1; 16]), EINVAL);
    c.request(1 << 4, CMD_WRITE_ZEROES, 12, 0, 512);
    assert_eq!(c.reply(), (EINVAL, 12));
    c.request(0, 7, 13, 0, 512);
    assert_eq!(c.reply(), (EINVAL, 13));
    // None of that changed anything, and the connection still works.
    assert_eq!(dev.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(dev.snapshot().iter().all(|&b| b == 0));
    assert_eq!(c.write(0, 14, size - 3, &[1, 2, 3]), 0);
    assert_eq!(c.read(15, size - 4, 4), vec![0, 1, 2, 3]);
    // Zero-length requests succeed without touching the device.
    assert_eq!(c.read(16, size, 0), Vec::<u8>::new());
    assert_eq!(c.write(0, 17, 0, &[]), 0);
    // Flush, cache, write zeroes with and without NO_HOLE.
    c.request(0, CMD_FLUSH, 18, 0, 0);
    assert_eq!(c.reply(), (0, 18));
    c.request(0, CMD_CACHE, 19, 0, 4096);
    assert_eq!(c.reply(), (0, 19));
    // FUA: durable when the reply arrives; a plain write is not.
    assert_eq!(c.write(0, 40, 65536, &[0x42; 512]), 0);
    assert_eq!(dev.durable()[65536], 0);
    assert_eq!(c.write(CMD_FLAG_FUA, 41, 70000, &[0x43; 512]), 0);
    assert_eq!(dev.durable()[65536..65536 + 512], [0x42; 512]);
    assert_eq!(dev.durable()[70000..70000 + 512], [0x43; 512]);
    assert_eq!(c.write(0, 20, 0, &[9; 8192]), 0);
    c.request(
        CMD_FLAG_NO_HOLE | CMD_FLAG_FUA,
        CMD_WRITE_ZEROES,
        21,
        0,
        4096,
    );
    assert_eq!(c.reply(), (0, 21));
    c.request(0, CMD_WRITE_ZEROES, 22, 4096, 4096);
    assert_eq!(c.reply(), (0, 22));
    assert_eq!(c.read(23, 0, 8192), vec![0u8; 8192]);
    assert_eq!(dev.durable()[..4096], [0u8; 4096]);
    c.request(0, CMD_DISC, 24, 0, 0);
    assert!(c.closed());

    // Read-only: reads work, writes get EPERM.
    let (mut c, _, flags) = Raw::go(&server.socket, "ro");
    assert_ne!(flags & TF_READ_ONLY, 0);
    assert_eq!(c.read(1, 0, 8192), vec![3u8; 8192]);
    assert_eq!(c.write(0, 2, 0, &[0; 512]), EPERM);
    c.request(0, CMD_TRIM, 3, 0, 512);
    assert_eq!(c.reply(), (EPERM, 3));
    c.request(0, CMD_WRITE_ZEROES, 4, 0, 512);
    assert_eq!(c.reply(), (EPERM, 4));
    c.request(0, CMD_FLUSH, 5, 0, 0);
    assert_eq!(c.reply(), (0, 5));
    assert_eq!(ro.snapshot(), vec![3u8; 8192]);
}

#[test]
fn bad_request_magic_disconnects() {
    let dev = MemDevice::new(MIB);
    let server = TestServer::start(vec![export("vol", &dev)]);
    let (mut c, _, _) = Raw::go(&server.socket, "vol");
    c.s.write_all(&[0xffu8; 28]).unwrap();
    assert!(c.closed());
    server.wait_idle();
}

#[test]
fn pipelined_requests_complete_out_of_order() {
    let dev = MemDevice::slow_at(4 * MIB, 0);
    let server = TestServer::start(vec![export("vol", &dev)]);
    let (mut c, _, _) = Raw::go(&server.socket, "vol");
    // 64 writes sent back to back before reading any reply.
    let mut rng = Rng(5);
    let content = rng.bytes(4 * MIB);
    let mut batch = Vec::new();
    for i in 0..64u64 {
        let off = i * 65536;
        let r = Request {
            flags: 0,
            kind: CMD_WRITE,
            cookie: 1000 + i,
            offset: off,
            length: 65536,
        };
        batch.extend_from_slice(&r.encode());
        batch.extend_from_slice(&content[off as usize..off as usize + 65536]);
    }
    c.s.write_all(&batch).unwrap();
    let mut cookies: Vec<u64> = (0..64)
        .map(|_| c.reply())
        .map(|(e, k)| {
            assert_eq!(e, 0);
            k
        })
        .collect();
    cookies.sort();
    assert_eq!(cookies, (1000..1064).collect::<Vec<_>>());
    assert!(dev.snapshot() == content);

    // A slow read (offset 0 sleeps) then a fast one: the fast one is answered first.
    let start = Instant::now();
    c.request(0, CMD_READ, 1, 0, 4096);
    c.request(0, CMD_READ, 2, 65536, 4096);
    let (e, first) = c.reply();
    assert_eq!(
        (e, first),
        (0, 2),
        "the fast read should overtake the slow one"
    );
    let mut d = vec![0u8; 4096];
    c.s.read_exact(&mut d).unwrap();
    assert_eq!(d, content[65536..65536 + 4096]);
    assert_eq!(c.reply(), (0, 1));
    c.s.read_exact(&mut d).unwrap();
    assert_eq!(d, content[..4096]);
    assert!(start.elapsed() >= Duration::from_millis(250));
}

#[test]
fn disc_finishes_in_flight_requests() {
    let dev = MemDevice::new(MIB);
    let server = TestServer::start(vec![export("vol", &dev)]);
    let (mut c, _, _) = Raw::go(&server.socket, "vol");
    let mut m = Vec::new();
    for i in 0..8u64 {
        let r = Request {
            flags: 0,
            kind: CMD_WRITE,
            cookie: i,
            offset: i * 4096,
            length: 4096,
        };
        m.extend_from_slice(&r.encode());
        m.extend_from_slice(&[i as u8 + 1; 4096]);
    }
    m.extend_from_slice(
        &Request {
            flags: 0,
            kind: CMD_DISC,
            cookie: 99,
            offset: 0,
            length: 0,
        }
        .encode(),
    );
    c.s.write_all(&m).unwrap();
    for _ in 0..8 {
        assert_eq!(c.reply().0, 0);
    }
    assert!(c.closed());
    let data = dev.snapshot();
    for i in 0..8 {
        assert!(
            data[i * 4096..(i + 1) * 4096]
                .iter()
                .all(|&b| b == i as u8 + 1)
        );
    }
    server.wait_idle();
}

#[test]
fn abrupt_disconnect_mid_write() {
    let dev = MemDevice::new(MIB);
    let server = TestServer::start(vec![export("vol", &dev)]);
    let (mut c, _, _) = Raw::go(&server.socket, "vol");
    c.request(0, CMD_WRITE, 1, 0, 65536);
    c.s.write_all(&[0xaa; 100]).unwrap();
    drop(c);
    // And one that leaves with requests in flight and replies unread.
    let (mut c, _, _) = Raw::go(&server.socket, "vol");
    for i in 0..32 {
        c.request(0, CMD_READ, i, 0, 65536);
    }
    drop(c);
    server.wait_idle();
    assert_eq!(dev.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(dev.snapshot().iter().all(|&b| b == 0));
}

#[test]
fn in_flight_budget_bounds_a_flooding_client() {
    // A client that sends reads but never reads the replies: the server stops reading
    // once the budget is spent instead of buffering without bound.
    let dev = MemDevice::new(4 * MIB);
    let config = ServerConfig {
        max_payload: 1 << 20,
        max_in_flight_bytes: 2 << 20,
        max_in_flight_requests: 8,
        shutdown_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(vec![export("vol", &dev)], config);
    let (mut c, _, _) = Raw::go(&server.socket, "vol");
    c.s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent = 0u64;
    let req = Request {
        flags: 0,
        kind: CMD_READ,
        cookie: 0,
        offset: 0,
        length: 1 << 20,
    }
    .encode();
    // Unix socket buffers hold a few hundred KiB; a server that kept reading would
    // accept all 100000 requests (2.8 MB of headers) while holding 100 GB of replies.
    for _ in 0..100_000 {
        if c.s.write_all(&req).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent < 100_000, "the server kept accepting requests");
    // Shutdown with workers blocked writing replies nobody reads: cut after the grace.
    let mut server = server;
    let start = Instant::now();
    server.handle.take().unwrap().shutdown();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    drop(c);
}

#[test]
fn shutdown_disconnects_clients_and_removes_the_socket() {
    let dev = MemDevice::new(MIB);
    let mut server = TestServer::start(vec![export("vol", &dev)]);
    let (mut transmitting, _, _) = Raw::go(&server.socket, "vol");
    let mut negotiating = Raw::hello(&server.socket, FLAG_C_FIXED_NEWSTYLE);
    let idle = Raw::connect(&server.socket);
    for _ in 0..200 {
        if server.handle().connection_count() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.handle().connection_count(), 3);
    let start = Instant::now();
    server.handle.take().unwrap().shutdown();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!server.socket.exists(), "socket file left behind");
    assert!(transmitting.closed());
    assert!(negotiating.closed());
    drop(idle);
    assert!(UnixStream::connect(&server.socket).is_err());
}

#[test]
fn stale_socket_is_replaced_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let dev: Arc<dyn BlockDevice> = MemDevice::new(4096);
    let handle = NbdServer::bind_unix(&path, [("v", Arc::clone(&dev))]).unwrap();
    match NbdServer::bind_unix(&path, [("v", Arc::clone(&dev))]) {
        Err(NbdError::AddrInUse { .. }) => {}
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    // A regular file is never removed.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(NbdServer::bind_unix(&file, [("v", Arc::clone(&dev))]).is_err());
    assert!(file.exists());
    drop(handle);
    assert!(!path.exists());
    // Invalid exports and configs.
    let dup = vec![
        nbd::Export::new("v", Arc::clone(&dev)),
        nbd::Export::new("v", Arc::clone(&dev)),
    ];
    assert!(matches!(
        NbdServer::bind_unix_with(&path, dup, ServerConfig::default()),
        Err(NbdError::InvalidExport { .. })
    ));
    let bad = ServerConfig {
        max_payload: 1000,
        ..ServerConfig::default()
    };
    assert!(matches!(
        NbdServer::bind_unix_with(&path, vec![], bad),
        Err(NbdError::InvalidConfig(_))
    ));
}
