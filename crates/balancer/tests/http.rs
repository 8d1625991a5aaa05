//! HTTP listeners end to end: routing rules, actions, forwarded headers, error statuses,
//! binding and live reconfiguration, against real target servers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use balancer::{Action, Balancer, Condition, HealthState};
use common::*;
use tokio::runtime::Handle;

fn fixed(body: &str) -> Action {
    Action::FixedResponse {
        status: 200,
        content_type: Some("text/plain".into()),
        body: body.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_two_targets() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![group("tg", vec![a.target(), b.target()])],
    );
    assert!(bal.apply(cfg.clone()).is_empty());
    eventually("both healthy", || {
        bal.target_health("tg")
            .iter()
            .all(|t| t.state == HealthState::Healthy)
    })
    .await;
    let lb = SocketAddr::from((LOOPBACK, port));
    let mut seen = Vec::new();
    for _ in 0..6 {
        let r = get(lb, "/x").await;
        assert_eq!(r.status, 200);
        seen.push(r.from().to_owned());
    }
    // Strict alternation.
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "{seen:?}");
    }
    assert_eq!(a.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(bal.requests("tg"), 6);
    assert_eq!(bal.requests("other"), 0);
    // Applying the same configuration again changes nothing.
    assert!(bal.apply(cfg).is_empty());
    assert!(
        bal.target_health("tg")
            .iter()
            .all(|t| t.state == HealthState::Healthy)
    );
    assert_eq!(get(lb, "/x").await.status, 200);
    bal.shutdown();
    assert!(
        try_request(lb, "GET", "/", &[]).await.is_err(),
        "listener closed by shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_as_the_target_sees_them() {
    let a = Backend::start("a").await;
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut lb = http_lb(port, vec![rule("default", vec![], forward("tg"))]);
    let cfg = config(vec![lb.clone()], vec![group("tg", vec![a.target()])]);
    assert!(bal.apply(cfg).is_empty());
    let addr = SocketAddr::from((LOOPBACK, port));
    let r = try_request(
        addr,
        "GET",
        "/p/q?x=1&y=2",
        &[
            ("host", "Example.COM:1234"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("connection", "x-foo"),
            ("x-foo", "hop"),
            ("x-keep", "end-to-end"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.from(), "a");
    assert!(r.body.contains("GET /p/q?x=1&y=2\n"), "{}", r.body);
    assert_eq!(r.seen("host"), "Example.COM:1234");
    assert_eq!(r.seen("x-forwarded-for"), "10.9.9.9, 127.0.0.1");
    assert_eq!(r.seen("x-forwarded-proto"), "http");
    assert_eq!(r.seen("x-forwarded-port"), port.to_string());
    assert_eq!(
        r.seen("x-foo"),
        "",
        "a header named by Connection is hop-by-hop"
    );
    assert_eq!(r.seen("x-keep"), "end-to-end");
    // ALB adds a non-default listener port to a Host without one...
    let r = try_request(addr, "GET", "/", &[("host", "plain.example")])
        .await
        .unwrap();
    assert_eq!(r.seen("host"), format!("plain.example:{port}"));
    // ...unless the load balancer preserves Host.
    lb.attributes.insert(
        "routing.http.preserve_host_header.enabled".into(),
        "true".into(),
    );
    assert!(
        bal.apply(config(
            vec![lb.clone()],
            vec![group("tg", vec![a.target()])]
        ))
        .is_empty()
    );
    let r = try_request(addr, "GET", "/", &[("host", "plain.example")])
        .await
        .unwrap();
    assert_eq!(r.seen("host"), "plain.example");

    // xff_client_port adds the client's port; remove mode drops the header.
    lb.attributes
        .insert("routing.http.xff_client_port.enabled".into(), "true".into());
    assert!(
        bal.apply(config(
            vec![lb.clone()],
            vec![group("tg", vec![a.target()])]
        ))
        .is_empty()
    );
    let r = get(addr, "/").await;
    let xff = r.seen("x-forwarded-for");
    let (ip, client_port) = xff.split_once(':').unwrap();
    assert_eq!(ip, "127.0.0.1");
    assert!(client_port.parse::<u16>().unwrap() > 0);
    lb.attributes.insert(
        "routing.http.xff_header_processing.mode".into(),
        "remove".into(),
    );
    assert!(
        bal.apply(config(vec![lb], vec![group("tg", vec![a.target()])]))
            .is_empty()
    );
    let r = try_request(addr, "GET", "/", &[("x-forwarded-for", "10.1.1.1")])
        .await
        .unwrap();
    assert_eq!(r.seen("x-forwarded-for"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rules_are_case_sensitive_and_hosts_are_not() {
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let rules = vec![
        rule(
            "r1",
            vec![Condition::PathPattern(vec!["/API/*".into()])],
            fixed("api"),
        ),
        rule(
            "r2",
            vec![Condition::HostHeader(vec!["*.Example.com".into()])],
            fixed("host"),
        ),
        rule(
            "r3",
            vec![
                Condition::QueryString(vec![(Some("v".into()), "2".into())]),
                Condition::Method(vec!["GET".into()]),
            ],
            fixed("query"),
        ),
        rule("default", vec![], fixed("default")),
    ];
    assert!(
        bal.apply(config(vec![http_lb(port, rules)], vec![]))
            .is_empty()
    );
    let addr = SocketAddr::from((LOOPBACK, port));
    assert_eq!(get(addr, "/API/x").await.body, "api");
    assert_eq!(get(addr, "/api/x").await.body, "default");
    assert_eq!(
        get(addr, "/x?path=/API/x").await.body,
        "default",
        "path only, not query"
    );
    let host = |h: &'static str| async move {
        try_request(addr, "GET", "/", &[("host", h)])
            .await
            .unwrap()
            .body
    };
    assert_eq!(host("WWW.EXAMPLE.COM").await, "host");
    assert_eq!(host("www.example.com:8080").await, "host");
    assert_eq!(host("example.com").await, "default");
    assert_eq!(get(addr, "/?V=2").await.body, "query");
    assert_eq!(
        try_request(addr, "HEAD", "/?v=2", &[])
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        try_request(addr, "POST", "/?v=2", &[]).await.unwrap().body,
        "default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_response_and_redirect() {
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let rules = vec![
        rule(
            "redirect",
            vec![Condition::PathPattern(vec!["/old/*".into()])],
            Action::Redirect {
                protocol: Some("HTTPS".into()),
                host: None,
                port: Some("443".into()),
                path: Some("/new/#{path}".into()),
                query: None,
                status: 301,
            },
        ),
        rule(
            "temp",
            vec![Condition::PathPattern(vec!["/temp".into()])],
            Action::Redirect {
                protocol: None,
                host: Some("other.#{host}".into()),
                port: None,
                path: None,
                query: Some("from=#{port}".into()),
                status: 302,
            },
        ),
        rule(
            "default",
            vec![],
            Action::FixedResponse {
                status: 418,
                content_type: Some("application/json".into()),
                body: "{\"teapot\":true}".into(),
            },
        ),
    ];
    assert!(
        bal.apply(config(vec![http_lb(port, rules)], vec![]))
            .is_empty()
    );
    let addr = SocketAddr::from((LOOPBACK, port));
    let r = try_request(addr, "GET", "/old/a?b=c", &[("host", "site.test")])
        .await
        .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://site.test/new/old/a?b=c");
    let r = try_request(addr, "GET", "/temp?x=y", &[("host", "site.test:9")])
        .await
        .unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers["location"],
        format!("http://other.site.test:{port}/temp?from={port}")
    );
    let r = get(addr, "/anything").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body, "{\"teapot\":true}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_503_502_504() {
    let port = free_port();
    let dead_port = free_port();
    let slow = Backend::start("slow").await;
    let bal = Balancer::new(Handle::current());
    let mut unchecked = group(
        "dead",
        vec![balancer::Target {
            id: "dead".into(),
            port: dead_port,
            addr: Some(LOOPBACK),
            unreachable_reason: None,
        }],
    );
    unchecked.health_check.enabled = false;
    let mut slow_group = group("slow", vec![slow.target()]);
    slow_group.health_check.enabled = false;
    let mut lb = http_lb(
        port,
        vec![
            rule(
                "r1",
                vec![Condition::PathPattern(vec!["/empty".into()])],
                forward("empty"),
            ),
            rule(
                "r2",
                vec![Condition::PathPattern(vec!["/dead".into()])],
                forward("dead"),
            ),
            rule("default", vec![], forward("slow")),
        ],
    );
    lb.attributes
        .insert("idle_timeout.timeout_seconds".into(), "1".into());
    let cfg = config(
        vec![lb],
        vec![group("empty", vec![]), unchecked, slow_group],
    );
    assert!(bal.apply(cfg).is_empty());
    let addr = SocketAddr::from((LOOPBACK, port));
    let r = get(addr, "/empty").await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("503 Service Temporarily Unavailable"),
        "{}",
        r.body
    );
    assert_eq!(get(addr, "/dead").await.status, 502);
    assert_eq!(bal.target_health("dead")[0].state, HealthState::Unavailable);
    assert_eq!(get(addr, "/slow?ms=100").await.status, 200);
    let started = std::time::Instant::now();
    assert_eq!(get(addr, "/slow?ms=3000").await.status, 504);
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_error_for_a_port_in_use_then_retried() {
    let taken = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let bal = Balancer::new(Handle::current());
    let cfg = config(
        vec![http_lb(port, vec![rule("d", vec![], fixed("up"))])],
        vec![],
    );
    let errors = bal.apply(cfg.clone());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].listener, format!("listener-{port}"));
    assert_eq!(errors[0].addr, SocketAddr::from((LOOPBACK, port)));
    assert!(
        errors[0].message.to_lowercase().contains("in use"),
        "{}",
        errors[0].message
    );
    // The same configuration is retried once the port is free.
    drop(taken);
    assert!(bal.apply(cfg).is_empty());
    assert_eq!(
        get(SocketAddr::from((LOOPBACK, port)), "/").await.body,
        "up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_change_live_and_close() {
    let port = free_port();
    let port2 = free_port();
    let bal = Balancer::new(Handle::current());
    let addr = SocketAddr::from((LOOPBACK, port));
    assert!(
        bal.apply(config(
            vec![http_lb(port, vec![rule("d", vec![], fixed("one"))])],
            vec![]
        ))
        .is_empty()
    );
    assert_eq!(get(addr, "/").await.body, "one");
    // New rules on the same listener: same socket, new answers (even on a kept-alive
    // connection's next request).
    assert!(
        bal.apply(config(
            vec![http_lb(port, vec![rule("d", vec![], fixed("two"))])],
            vec![]
        ))
        .is_empty()
    );
    assert_eq!(get(addr, "/").await.body, "two");
    // The listener moves to another port: the old one closes.
    let mut lb = http_lb(port2, vec![rule("d", vec![], fixed("three"))]);
    lb.listeners[0].id = format!("listener-{port}");
    assert!(bal.apply(config(vec![lb], vec![])).is_empty());
    assert_eq!(
        get(SocketAddr::from((LOOPBACK, port2)), "/").await.body,
        "three"
    );
    eventually("old port closed", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    // And back again: the port just released is bound at once.
    assert!(
        bal.apply(config(
            vec![http_lb(port, vec![rule("d", vec![], fixed("four"))])],
            vec![]
        ))
        .is_empty()
    );
    assert_eq!(get(addr, "/").await.body, "four");
    assert!(bal.apply(config(vec![], vec![])).is_empty());
    eventually("closed", || std::net::TcpStream::connect(addr).is_err()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_and_streamed_bodies() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut tg = group("tg", vec![a.target(), b.target()]);
    tg.health_check.enabled = false;
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![tg],
    );
    assert!(bal.apply(cfg).is_empty());
    let addr = SocketAddr::from((LOOPBACK, port));
    // One client connection, several requests, still round robin per request.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut froms = Vec::new();
    for _ in 0..4 {
        let req = hyper::Request::post("/upload")
            .header("host", "x")
            .body(Full::new(Bytes::from(vec![7u8; 8 << 20])))
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.contains(&format!("len={}\n", 8 << 20)), "{body}");
        froms.push(body.lines().next().unwrap().to_owned());
    }
    assert_eq!(froms, ["a", "b", "a", "b"]);
    let req = hyper::Request::get("/big?n=16777216")
        .header("host", "x")
        .body(Full::new(Bytes::new()));
    sender.ready().await.unwrap();
    let resp = sender.send_request(req.unwrap()).await.unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes().len(),
        16 << 20
    );
}

/// Reads from `s` until the end of an HTTP head.
async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed in the head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_passed_through_and_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A target that switches to an echo protocol.
    let target = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let target_port = target.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = target.accept().await.unwrap();
        let head = read_head(&mut s).await.to_ascii_lowercase();
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
        head
    });
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut tg = group(
        "tg",
        vec![balancer::Target {
            id: "t".into(),
            port: target_port,
            addr: Some(LOOPBACK),
            unreachable_reason: None,
        }],
    );
    tg.health_check.enabled = false;
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![tg],
    );
    assert!(bal.apply(cfg).is_empty());
    let mut c = tokio::net::TcpStream::connect((LOOPBACK, port))
        .await
        .unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    let seen = server.await.unwrap();
    assert!(seen.contains("connection: upgrade\r\n"), "{seen}");
    assert!(seen.contains("upgrade: echo\r\n"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut lb = http_lb(port, vec![rule("d", vec![], fixed("hi"))]);
    lb.attributes
        .insert("idle_timeout.timeout_seconds".into(), "1".into());
    assert!(bal.apply(config(vec![lb], vec![])).is_empty());
    let mut c = tokio::net::TcpStream::connect((LOOPBACK, port))
        .await
        .unwrap();
    // Requests 600 ms apart keep the connection.
    for _ in 0..3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = [0u8; 2];
        c.read_exact(&mut body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // Then idle: closed after about a second.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(started.elapsed() < Duration::from_millis(1500));
}
