//! The server on a real unix socket: curl `--unix-socket`, raw keep-alive clients, abusive
//! clients (slowloris, 100 MiB of garbage, too many connections) and the relay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imds::{ImdsConfig, ImdsHandle, ImdsServer, Metadata, MetadataSource, Options};

const KEY: [u8; 32] = [3; 32];

/// A source whose metadata a test can change (or remove: the instance is gone).
struct Source(Mutex<Option<Metadata>>);

impl MetadataSource for Source {
    fn metadata(&self) -> Option<Metadata> {
        self.0.lock().unwrap().clone()
    }
}

fn meta() -> Metadata {
    Metadata {
        options: Options::default(),
        instance_id: "i-0123456789abcdef0".into(),
        ami_id: "ami-0123".into(),
        instance_type: "t3.micro".into(),
        reservation_id: "r-1".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        availability_zone: "us-east-1a".into(),
        availability_zone_id: "use1-az1".into(),
        architecture: "x86_64".into(),
        local_hostname: "ip-172-31-5-10.ec2.internal".into(),
        local_ipv4: "172.31.5.10".into(),
        mac: "02:00:00:00:00:01".into(),
        public_keys: vec![("k".into(), "ssh-ed25519 AAAA k".into())],
        user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
        ..Metadata::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    source: Arc<Source>,
    handle: ImdsHandle,
}

fn serve(config: ImdsConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(Source(Mutex::new(Some(meta()))));
    let handle =
        ImdsServer::bind_with(&dir.path().join("imds.sock"), source.clone(), KEY, config).unwrap();
    Fixture {
        _dir: dir,
        source,
        handle,
    }
}

fn curl(socket: &Path, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// A response: status, headers (names lower-cased), body.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads one response.
fn read_response(r: &mut impl BufRead) -> Option<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")?
        .1
        .parse()
        .ok()?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((status, headers, body))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
}

#[test]
fn curl_imdsv2_session() {
    let f = serve(ImdsConfig::default());
    let sock = f.handle.socket().to_path_buf();
    assert_eq!(f.handle.last_request_ms(), None);
    let (code, token) = curl(
        &sock,
        &[
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 21600",
            "http://169.254.169.254/latest/api/token",
        ],
    );
    assert_eq!(code, 200);
    assert_eq!(token.len(), 54);
    assert!(f.handle.last_request_ms().is_some());
    let auth = format!("X-aws-ec2-metadata-token: {token}");
    let (code, body) = curl(
        &sock,
        &[
            "-H",
            &auth,
            "http://169.254.169.254/latest/meta-data/instance-id",
        ],
    );
    assert_eq!((code, body.as_str()), (200, "i-0123456789abcdef0"));
    let (code, body) = curl(
        &sock,
        &["-H", &auth, "http://169.254.169.254/latest/user-data"],
    );
    assert_eq!((code, body.as_str()), (200, "#!/bin/sh\necho hi\n"));
    let (code, _) = curl(
        &sock,
        &[
            "-H",
            "X-aws-ec2-metadata-token: nope",
            "http://169.254.169.254/latest/",
        ],
    );
    assert_eq!(code, 401);
    // Several URLs on one curl run share a keep-alive connection.
    let (code, body) = curl(
        &sock,
        &[
            "-H",
            &auth,
            "http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key",
            "http://169.254.169.254/latest/meta-data/local-ipv4",
        ],
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("ssh-ed25519 AAAA k") && body.contains("172.31.5.10"),
        "{body}"
    );
    // HEAD through curl.
    let (code, body) = curl(
        &sock,
        &["-I", "http://169.254.169.254/latest/meta-data/instance-id"],
    );
    assert_eq!(code, 200);
    assert!(body.contains("Content-Length: 19"), "{body}");

    // Options and the instance are read per request.
    f.source
        .0
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .options
        .tokens_required = true;
    assert_eq!(curl(&sock, &["http://169.254.169.254/latest/"]).0, 401);
    assert_eq!(
        curl(&sock, &["-H", &auth, "http://169.254.169.254/latest/"]).0,
        200
    );
    f.source
        .0
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .options
        .endpoint_enabled = false;
    assert_eq!(
        curl(&sock, &["-H", &auth, "http://169.254.169.254/latest/"]).0,
        403
    );
    *f.source.0.lock().unwrap() = None;
    assert_eq!(
        curl(&sock, &["-H", &auth, "http://169.254.169.254/latest/"]).0,
        404
    );
}

#[test]
fn twenty_concurrent_keep_alive_connections() {
    let f = serve(ImdsConfig::default());
    let sock = f.handle.socket().to_path_buf();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let stream = UnixStream::connect(&sock).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut w = stream;
                for round in 0..10 {
                    let path = if (i + round) % 2 == 0 {
                        "/latest/meta-data/instance-id"
                    } else {
                        "/2009-04-04/meta-data/local-ipv4"
                    };
                    w.write_all(get(path).as_bytes()).unwrap();
                    let (status, headers, body) = read_response(&mut reader).unwrap();
                    assert_eq!(status, 200);
                    assert!(headers.contains(&("connection".into(), "keep-alive".into())));
                    let expect: &[u8] = if path.contains("instance-id") {
                        b"i-0123456789abcdef0"
                    } else {
                        b"172.31.5.10"
                    };
                    assert_eq!(body, expect);
                }
                // Pipelined: three requests in one write, answered in order.
                let batch = format!(
                    "{}{}{}",
                    get("/latest/meta-data/ami-id"),
                    get("/latest/meta-data/nope"),
                    get("/latest/meta-data/instance-type")
                );
                w.write_all(batch.as_bytes()).unwrap();
                let statuses: Vec<(u16, Vec<u8>)> = (0..3)
                    .map(|_| {
                        let (s, _, b) = read_response(&mut reader).unwrap();
                        (s, b)
                    })
                    .collect();
                assert_eq!(statuses[0], (200, b"ami-0123".to_vec()));
                assert_eq!(statuses[1].0, 404);
                assert_eq!(statuses[2], (200, b"t3.micro".to_vec()));
                // Connection: close is honoured.
                w.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let (status, headers, _) = read_response(&mut reader).unwrap();
                assert_eq!(status, 200);
                assert!(headers.contains(&("connection".into(), "close".into())));
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn slowloris_does_not_block_others_and_is_cut() {
    let config = ImdsConfig {
        request_timeout: Duration::from_millis(800),
        ..ImdsConfig::default()
    };
    let f = serve(config);
    let sock = f.handle.socket().to_path_buf();
    let mut slow = UnixStream::connect(&sock).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let slow_sock = slow.try_clone().unwrap();
    let dripper = std::thread::spawn(move || {
        let mut s = slow_sock;
        let start = Instant::now();
        for b in b"GET /latest/meta-data/instance-id HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    });
    // Meanwhile others are served at once.
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        let t = Instant::now();
        let (code, body) = curl(&sock, &["http://x/latest/meta-data/instance-id"]);
        assert_eq!((code, body.as_str()), (200, "i-0123456789abcdef0"));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    // The slow request is cut after the request timeout with 408.
    let t = Instant::now();
    let mut reader = BufReader::new(&mut slow);
    let (status, _, _) = read_response(&mut reader).expect("a 408 response");
    assert_eq!(status, 408);
    assert!(t.elapsed() < Duration::from_secs(3));
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    dripper.join().unwrap();
}

#[test]
fn garbage_of_100_mib_is_refused_and_the_server_stays_up() {
    let f = serve(ImdsConfig::default());
    let sock = f.handle.socket().to_path_buf();
    for (garbage_byte, expect) in [(b'A', 431u16), (0u8, 400)] {
        let stream = UnixStream::connect(&sock).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let chunk = vec![garbage_byte; 1 << 20];
            let mut sent = 0usize;
            for _ in 0..100 {
                match writer.write_all(&chunk) {
                    Ok(()) => sent += chunk.len(),
                    Err(_) => break,
                }
            }
            sent
        });
        let mut reader = BufReader::new(stream);
        let (status, headers, _) = read_response(&mut reader).unwrap();
        assert_eq!(status, expect);
        assert!(headers.contains(&("connection".into(), "close".into())));
        let sent = sender.join().unwrap();
        assert!(sent < 100 << 20, "the server read all 100 MiB");
        assert_eq!(
            curl(&sock, &["http://x/latest/meta-data/instance-id"]).0,
            200
        );
    }
    // A declared 100 MiB body is refused before it is read.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(b"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 104857600\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut BufReader::new(&mut s)).unwrap();
    assert_eq!(status, 413);
    assert_eq!(
        curl(&sock, &["http://x/latest/meta-data/instance-id"]).0,
        200
    );
}

#[test]
fn connections_are_bounded_and_idle_ones_closed() {
    let config = ImdsConfig {
        max_connections: 2,
        idle_timeout: Duration::from_millis(600),
        ..ImdsConfig::default()
    };
    let f = serve(config);
    let sock = f.handle.socket().to_path_buf();
    let a = UnixStream::connect(&sock).unwrap();
    let b = UnixStream::connect(&sock).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.handle.connection_count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (status, _, _) = read_response(&mut BufReader::new(&mut c)).unwrap();
    assert_eq!(status, 503);
    // Idle connections are closed after the idle timeout, freeing the slots.
    for mut s in [a, b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 0);
        assert!(t.elapsed() < Duration::from_secs(3));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.handle.connection_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        curl(&sock, &["http://x/latest/meta-data/instance-id"]).0,
        200
    );
}

#[test]
fn relay_joins_a_stream_to_the_socket() {
    let f = serve(ImdsConfig::default());
    let sock = f.handle.socket().to_path_buf();
    // The guest's side ends when it shuts its write half: the relay shuts the socket's,
    // the server answers and closes, the relay returns.
    let (guest, relay_end) = UnixStream::pair().unwrap();
    let s = sock.clone();
    let relay = std::thread::spawn(move || {
        let input = relay_end.try_clone().unwrap();
        imds::relay_fds(&s, input, relay_end)
    });
    let mut g = guest;
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let put = "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n";
    g.write_all(put.as_bytes()).unwrap();
    let mut reader = BufReader::new(g.try_clone().unwrap());
    let (status, _, token) = read_response(&mut reader).unwrap();
    assert_eq!(status, 200);
    let token = String::from_utf8(token).unwrap();
    let req = format!(
        "GET /latest/meta-data/instance-id HTTP/1.1\r\nX-aws-ec2-metadata-token: {token}\r\n\r\n"
    );
    g.write_all(req.as_bytes()).unwrap();
    g.shutdown(Shutdown::Write).unwrap();
    let (status, _, body) = read_response(&mut reader).unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"i-0123456789abcdef0"[..])
    );
    relay.join().unwrap().unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    // The server closing (Connection: close) ends the relay while the guest side is open.
    let (guest, relay_end) = UnixStream::pair().unwrap();
    let s = sock.clone();
    let relay = std::thread::spawn(move || {
        let input = relay_end.try_clone().unwrap();
        imds::relay_fds(&s, input, relay_end)
    });
    let mut g = guest;
    g.write_all(b"GET /latest/ HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    relay.join().unwrap().unwrap();
    let mut reader = BufReader::new(g);
    let (status, _, body) = read_response(&mut reader).unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"dynamic\nmeta-data\nuser-data"[..])
    );

    // No server: an error, not a hang.
    assert!(
        imds::relay_fds(
            Path::new("/nonexistent/imds.sock"),
            std::fs::File::open("/dev/null").unwrap(),
            Vec::new()
        )
        .is_err()
    );
}

#[test]
fn bind_replaces_stale_sockets_and_refuses_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imds.sock");
    // A stale socket file (its listener is gone).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let source: Arc<dyn MetadataSource> = Arc::new(|| Some(meta()));
    let handle = ImdsServer::bind(&path, source.clone(), KEY).unwrap();
    assert!(matches!(
        ImdsServer::bind(&path, source.clone(), KEY),
        Err(imds::Error::AddrInUse { .. })
    ));
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(get("/latest/meta-data/instance-id").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut reader).unwrap().0, 200);
    // Shutdown disconnects the open client, removes the socket, and is idempotent.
    handle.shutdown();
    assert!(!path.exists());
    let mut rest = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(reader.read_to_end(&mut rest).unwrap_or(0), 0);
    handle.shutdown();
}
