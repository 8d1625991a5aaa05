//! Health checks, fail-open, draining and TCP listeners end to end, against real target
//! servers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use balancer::{Balancer, HealthState, Listener, LoadBalancer, Protocol, Target};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_target_excluded_then_back_after_recovery() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![group("tg", vec![a.target(), b.target()])],
    );
    assert!(bal.apply(cfg.clone()).is_empty());
    // Before any decision the targets are initial.
    let first = bal.target_health("tg");
    assert!(
        first.iter().all(|t| t.state == HealthState::Initial),
        "{first:?}"
    );
    assert!(first[0].reason.as_deref().unwrap().starts_with("Elb."));
    eventually("healthy", || {
        bal.target_health("tg")
            .iter()
            .all(|t| t.state == HealthState::Healthy)
    })
    .await;
    let healthy = &bal.target_health("tg")[0];
    assert_eq!(
        (healthy.reason.clone(), healthy.description.clone()),
        (None, None)
    );

    b.health.store(500, Ordering::SeqCst);
    eventually("b unhealthy", || {
        state_of(&bal, "tg", "b") == Some(HealthState::Unhealthy)
    })
    .await;
    let hb = bal
        .target_health("tg")
        .into_iter()
        .find(|t| t.id == "b")
        .unwrap();
    assert_eq!(hb.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
    assert_eq!(
        hb.description.as_deref(),
        Some("Health checks failed with these codes: [500]")
    );
    let lb = SocketAddr::from((LOOPBACK, port));
    let before = b.hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(get(lb, "/").await.from(), "a");
    }
    assert_eq!(b.hits.load(Ordering::SeqCst), before);
    // The control plane re-applies the same configuration: b stays unhealthy.
    assert!(bal.apply(cfg).is_empty());
    assert_eq!(state_of(&bal, "tg", "b"), Some(HealthState::Unhealthy));

    b.health.store(200, Ordering::SeqCst);
    eventually("b healthy again", || {
        state_of(&bal, "tg", "b") == Some(HealthState::Healthy)
    })
    .await;
    let mut froms = Vec::new();
    for _ in 0..4 {
        froms.push(get(lb, "/").await.from().to_owned());
    }
    assert!(froms.iter().any(|f| f == "b"), "{froms:?}");

    // A stopped target (no address) is unused; a timeout is reported as such.
    drop(b);
    let mut stopped = a.target();
    stopped.id = "stopped".into();
    stopped.addr = None;
    stopped.unreachable_reason = Some("Target is in the stopped state".into());
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![group("tg", vec![a.target(), stopped])],
    );
    assert!(bal.apply(cfg).is_empty());
    let s = bal
        .target_health("tg")
        .into_iter()
        .find(|t| t.id == "stopped")
        .unwrap();
    assert_eq!(s.state, HealthState::Unused);
    assert_eq!(s.reason.as_deref(), Some("Target.InvalidState"));
    assert_eq!(
        s.description.as_deref(),
        Some("Target is in the stopped state")
    );
    assert_eq!(
        state_of(&bal, "tg", "a"),
        Some(HealthState::Healthy),
        "a kept its state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_when_all_targets_are_unhealthy() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.health.store(503, Ordering::SeqCst);
    b.health.store(404, Ordering::SeqCst);
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![group("tg", vec![a.target(), b.target()])],
    );
    assert!(bal.apply(cfg).is_empty());
    eventually("both unhealthy", || {
        bal.target_health("tg")
            .iter()
            .all(|t| t.state == HealthState::Unhealthy)
    })
    .await;
    let lb = SocketAddr::from((LOOPBACK, port));
    for _ in 0..4 {
        assert_eq!(get(lb, "/").await.status, 200);
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), 2);
    assert_eq!(b.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_states_not_in_use_disabled_and_live_settings() {
    let a = Backend::start("a").await;
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    // No listener uses the group: unused, no checks.
    assert!(
        bal.apply(config(vec![], vec![group("tg", vec![a.target()])]))
            .is_empty()
    );
    let h = &bal.target_health("tg")[0];
    assert_eq!(h.state, HealthState::Unused);
    assert_eq!(h.reason.as_deref(), Some("Target.NotInUse"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bal.target_health("tg")[0].state, HealthState::Unused);

    // A listener now uses it: checks start.
    let lb = vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])];
    let mut tg = group("tg", vec![a.target()]);
    assert!(bal.apply(config(lb.clone(), vec![tg.clone()])).is_empty());
    eventually("healthy", || {
        state_of(&bal, "tg", "a") == Some(HealthState::Healthy)
    })
    .await;

    // ModifyTargetGroup: a matcher that 200 fails, applied live.
    tg.health_check.matcher = "202".into();
    assert!(bal.apply(config(lb.clone(), vec![tg.clone()])).is_empty());
    eventually("unhealthy by matcher", || {
        state_of(&bal, "tg", "a") == Some(HealthState::Unhealthy)
    })
    .await;

    // Checks off: unavailable, and still served.
    tg.health_check.enabled = false;
    assert!(bal.apply(config(lb, vec![tg])).is_empty());
    let h = &bal.target_health("tg")[0];
    assert_eq!(h.state, HealthState::Unavailable);
    assert_eq!(h.reason.as_deref(), Some("Target.HealthCheckDisabled"));
    assert_eq!(
        get(SocketAddr::from((LOOPBACK, port)), "/").await.from(),
        "a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_in_flight_and_sends_new_requests_elsewhere() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let listener = vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])];
    assert!(
        bal.apply(config(
            listener.clone(),
            vec![group("tg", vec![a.target()])]
        ))
        .is_empty()
    );
    eventually("a healthy", || {
        state_of(&bal, "tg", "a") == Some(HealthState::Healthy)
    })
    .await;
    let lb = SocketAddr::from((LOOPBACK, port));

    let slow = tokio::spawn(async move { try_request(lb, "GET", "/slow?ms=800", &[]).await });
    eventually("slow request at a", || a.hits.load(Ordering::SeqCst) == 1).await;
    // a is deregistered and b registered.
    assert!(
        bal.apply(config(
            listener.clone(),
            vec![group("tg", vec![b.target()])]
        ))
        .is_empty()
    );
    let h = bal.target_health("tg");
    let da = h.iter().find(|t| t.id == "a").unwrap();
    assert_eq!(da.state, HealthState::Draining);
    assert_eq!(
        da.reason.as_deref(),
        Some("Target.DeregistrationInProgress")
    );
    assert_eq!(
        da.description.as_deref(),
        Some("Target deregistration is in progress")
    );
    assert_eq!(state_of(&bal, "tg", "b"), Some(HealthState::Initial));
    // New requests go to b (initial, the only registered target: fail open).
    for _ in 0..3 {
        assert_eq!(get(lb, "/").await.from(), "b");
    }
    let done = slow.await.unwrap().unwrap();
    assert_eq!((done.status, done.from()), (200, "a"));
    eventually("a gone", || state_of(&bal, "tg", "a").is_none()).await;
    assert_eq!(a.hits.load(Ordering::SeqCst), 1);

    // An idle target leaves at once.
    assert!(
        bal.apply(config(listener, vec![group("tg", vec![])]))
            .is_empty()
    );
    eventually("b gone", || bal.target_health("tg").is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistration_delay_cuts_what_is_still_in_flight() {
    let a = Backend::start("a").await;
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let listener = vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])];
    let mut tg = group("tg", vec![a.target()]);
    tg.deregistration_delay = Duration::from_millis(300);
    assert!(
        bal.apply(config(listener.clone(), vec![tg.clone()]))
            .is_empty()
    );
    let lb = SocketAddr::from((LOOPBACK, port));
    let slow = tokio::spawn(async move { try_request(lb, "GET", "/slow?ms=3000", &[]).await });
    eventually("slow request at a", || a.hits.load(Ordering::SeqCst) == 1).await;
    // The whole group goes away.
    assert!(bal.apply(config(listener, vec![])).is_empty());
    assert_eq!(state_of(&bal, "tg", "a"), Some(HealthState::Draining));
    let started = std::time::Instant::now();
    let r = slow.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "cut at the delay"
    );
    assert!(r.is_err() || r.as_ref().unwrap().status == 502, "{r:?}");
    eventually("a gone", || bal.target_health("tg").is_empty()).await;
}

fn tcp_lb(port: u16, tg: &str) -> LoadBalancer {
    LoadBalancer {
        id: "nlb".into(),
        addr: LOOPBACK,
        attributes: BTreeMap::new(),
        listeners: vec![Listener {
            id: "tcp".into(),
            port,
            protocol: Protocol::Tcp,
            rules: vec![rule("default", vec![], forward(tg))],
            attributes: BTreeMap::new(),
        }],
    }
}

async fn echo(lb: SocketAddr, msg: &str) -> String {
    let mut s = TcpStream::connect(lb).await.unwrap();
    s.write_all(msg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_splices_round_robin_with_tcp_checks() {
    let (x, y) = (TcpBackend::start("x").await, TcpBackend::start("y").await);
    let dead = free_port();
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let target = |id: &str, p: u16| Target {
        id: id.into(),
        port: p,
        addr: Some(LOOPBACK),
        unreachable_reason: None,
    };
    let mut tg = group(
        "tg",
        vec![
            target("x", x.addr.port()),
            target("y", y.addr.port()),
            target("dead", dead),
        ],
    );
    tg.protocol = Protocol::Tcp;
    tg.health_check.protocol = Protocol::Tcp;
    assert!(
        bal.apply(config(vec![tcp_lb(port, "tg")], vec![tg]))
            .is_empty()
    );
    eventually("x and y healthy, dead unhealthy", || {
        state_of(&bal, "tg", "x") == Some(HealthState::Healthy)
            && state_of(&bal, "tg", "y") == Some(HealthState::Healthy)
            && state_of(&bal, "tg", "dead") == Some(HealthState::Unhealthy)
    })
    .await;
    let dead_health = bal
        .target_health("tg")
        .into_iter()
        .find(|t| t.id == "dead")
        .unwrap();
    assert_eq!(
        dead_health.reason.as_deref(),
        Some("Target.FailedHealthChecks")
    );
    let lb = SocketAddr::from((LOOPBACK, port));
    let mut answers = Vec::new();
    for i in 0..4 {
        answers.push(echo(lb, &format!("hi{i}")).await);
    }
    assert_eq!(
        answers.iter().filter(|a| a.starts_with("x:hi")).count(),
        2,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| a.starts_with("y:hi")).count(),
        2,
        "{answers:?}"
    );
    assert_eq!(bal.requests("tg"), 4);
    // One connection carries many exchanges.
    let mut s = TcpStream::connect(lb).await.unwrap();
    for msg in ["one", "two"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with(msg));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_target_registered_again_is_taken_back_uncut() {
    let a = Backend::start("a").await;
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let listener = vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])];
    let mut tg = group("tg", vec![a.target()]);
    tg.deregistration_delay = Duration::from_millis(300);
    assert!(
        bal.apply(config(listener.clone(), vec![tg.clone()]))
            .is_empty()
    );
    let lb = SocketAddr::from((LOOPBACK, port));
    let slow = tokio::spawn(async move { try_request(lb, "GET", "/slow?ms=900", &[]).await });
    eventually("slow request at a", || a.hits.load(Ordering::SeqCst) == 1).await;
    let mut empty = tg.clone();
    empty.targets.clear();
    assert!(bal.apply(config(listener.clone(), vec![empty])).is_empty());
    assert_eq!(state_of(&bal, "tg", "a"), Some(HealthState::Draining));
    assert!(bal.apply(config(listener, vec![tg])).is_empty());
    let h = bal.target_health("tg");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].state, HealthState::Initial);
    // Past the deregistration delay, the request started before is still answered.
    let r = slow.await.unwrap().unwrap();
    assert_eq!((r.status, r.from()), (200, "a"));
    eventually("a healthy", || {
        state_of(&bal, "tg", "a") == Some(HealthState::Healthy)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_timeout_closes_quiet_connections() {
    let x = TcpBackend::start("x").await;
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut tg = group(
        "tg",
        vec![Target {
            id: "x".into(),
            port: x.addr.port(),
            addr: Some(LOOPBACK),
            unreachable_reason: None,
        }],
    );
    tg.protocol = Protocol::Tcp;
    tg.health_check.enabled = false;
    let mut lb = tcp_lb(port, "tg");
    lb.listeners[0]
        .attributes
        .insert("tcp.idle_timeout.seconds".into(), "1".into());
    assert!(bal.apply(config(vec![lb], vec![tg])).is_empty());
    let mut s = TcpStream::connect((LOOPBACK, port)).await.unwrap();
    // Traffic every 600 ms keeps it open past the timeout.
    for msg in ["a", "b", "c"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], format!("x:{msg}").as_bytes());
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // Then silence: closed after about a second.
    let mut buf = [0u8; 16];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_cookie_stickiness_keeps_a_client_on_its_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut tg = group("tg", vec![a.target(), b.target()]);
    tg.health_check.enabled = false;
    tg.attributes
        .insert("stickiness.enabled".into(), "true".into());
    tg.attributes
        .insert("stickiness.type".into(), "lb_cookie".into());
    tg.attributes
        .insert("stickiness.lb_cookie.duration_seconds".into(), "120".into());
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![tg],
    );
    assert!(bal.apply(cfg).is_empty());
    let lb = SocketAddr::from((LOOPBACK, port));
    let first = get(lb, "/").await;
    let set: Vec<&str> = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let awsalb = set
        .iter()
        .find(|c| c.starts_with("AWSALB="))
        .expect("AWSALB cookie");
    assert!(awsalb.contains("Max-Age=120"), "{awsalb}");
    let cookie = awsalb.split(';').next().unwrap().to_owned();
    for _ in 0..4 {
        let r = try_request(lb, "GET", "/", &[("cookie", &format!("x=1; {cookie}"))])
            .await
            .unwrap();
        assert_eq!(r.from(), first.from());
    }
    // Without the cookie, round robin as before.
    let (r1, r2) = (get(lb, "/").await, get(lb, "/").await);
    assert_ne!(r1.from(), r2.from());
    // A cookie naming an unknown target is ignored.
    let r = try_request(lb, "GET", "/", &[("cookie", "AWSALB=00")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_requests_avoids_a_busy_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut tg = group("tg", vec![a.target(), b.target()]);
    tg.health_check.enabled = false;
    tg.attributes.insert(
        "load_balancing.algorithm.type".into(),
        "least_outstanding_requests".into(),
    );
    let cfg = config(
        vec![http_lb(port, vec![rule("default", vec![], forward("tg"))])],
        vec![tg],
    );
    assert!(bal.apply(cfg).is_empty());
    let lb = SocketAddr::from((LOOPBACK, port));
    let slow = tokio::spawn(async move { try_request(lb, "GET", "/slow?ms=700", &[]).await });
    eventually("slow request arrived", || {
        a.hits.load(Ordering::SeqCst) + b.hits.load(Ordering::SeqCst) == 1
    })
    .await;
    let busy = if a.hits.load(Ordering::SeqCst) == 1 {
        "a"
    } else {
        "b"
    };
    for _ in 0..4 {
        assert_ne!(get(lb, "/").await.from(), busy);
    }
    assert_eq!(slow.await.unwrap().unwrap().from(), busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_names_the_client_to_the_target() {
    let target = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let target_port = target.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = target.accept().await.unwrap();
        let mut header = [0u8; 28];
        s.read_exact(&mut header).await.unwrap();
        let mut msg = [0u8; 5];
        s.read_exact(&mut msg).await.unwrap();
        s.write_all(b"ok").await.unwrap();
        (header, msg)
    });
    let port = free_port();
    let bal = Balancer::new(Handle::current());
    let mut tg = group(
        "tg",
        vec![Target {
            id: "t".into(),
            port: target_port,
            addr: Some(LOOPBACK),
            unreachable_reason: None,
        }],
    );
    tg.protocol = Protocol::Tcp;
    tg.health_check.enabled = false;
    tg.attributes
        .insert("proxy_protocol_v2.enabled".into(), "true".into());
    assert!(
        bal.apply(config(vec![tcp_lb(port, "tg")], vec![tg]))
            .is_empty()
    );
    let mut c = TcpStream::connect((LOOPBACK, port)).await.unwrap();
    let client_port = c.local_addr().unwrap().port();
    c.write_all(b"hello").await.unwrap();
    let mut ok = [0u8; 2];
    c.read_exact(&mut ok).await.unwrap();
    let (header, msg) = server.await.unwrap();
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(header[12..16], [0x21, 0x11, 0, 12]);
    assert_eq!(header[16..24], [127, 0, 0, 1, 127, 0, 0, 1]);
    assert_eq!(u16::from_be_bytes([header[24], header[25]]), client_port);
    assert_eq!(u16::from_be_bytes([header[26], header[27]]), port);
    assert_eq!(&msg, b"hello");
}
