//! Test fixtures: HTTP and TCP target servers on 127.0.0.1 ephemeral ports, a small HTTP
//! client, configuration builders and polling helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use balancer::{
    Action, Condition, Config, HealthCheck, HealthState, Listener, LoadBalancer, Protocol, Rule,
    Target, TargetGroup,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP target: `/health` answers `health`'s status; `/slow?ms=N` answers after N ms;
/// anything else answers `name`, the request line and the headers the proxy forwarded.
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub health: Arc<AtomicU16>,
    /// Requests other than health checks received.
    pub hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let (h, n) = (Arc::clone(&health), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, n) = (Arc::clone(&h), Arc::clone(&n));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, n) = (Arc::clone(&h), Arc::clone(&n));
                        async move { Ok::<_, std::convert::Infallible>(answer(name, req, &h, &n).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name,
            addr,
            health,
            hits,
            task,
        }
    }

    pub fn target(&self) -> Target {
        Target {
            id: self.name.to_owned(),
            port: self.addr.port(),
            addr: Some(LOOPBACK),
            unreachable_reason: None,
        }
    }
}

async fn answer(
    name: &str,
    req: Request<Incoming>,
    health: &AtomicU16,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
        *r.status_mut() = StatusCode::from_u16(health.load(Ordering::SeqCst)).unwrap();
        return r;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    if path == "/big" {
        let n: usize = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .unwrap()
            .parse()
            .unwrap();
        return Response::new(Full::new(Bytes::from(vec![b'x'; n])));
    }
    if path == "/slow" {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let header = |k: &str| {
        req.headers()
            .get_all(k)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut body = format!("{name}\n{} {}\n", req.method(), req.uri());
    for k in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-foo",
        "x-keep",
    ] {
        body.push_str(&format!("{k}={}\n", header(k)));
    }
    // Echo the request body's length, to prove it streamed through.
    let len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    body.push_str(&format!("len={len}\n"));
    Response::new(Full::new(Bytes::from(body)))
}

/// A TCP target answering each read with `name:` and the bytes read.
pub struct TcpBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpBackend {
    pub async fn start(name: &'static str) -> TcpBackend {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut out = format!("{name}:").into_bytes();
                        out.extend_from_slice(&buf[..n]);
                        if s.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        TcpBackend { addr, task }
    }
}

/// A response as the test client saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The target that answered (first line of a [`Backend`] body).
    pub fn from(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }

    /// A `key=value` line of a [`Backend`] body.
    pub fn seen(&self, key: &str) -> String {
        let prefix = format!("{key}=");
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or("<absent>")
            .to_owned()
    }
}

/// One request on a fresh connection.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", addr.to_string());
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = sender
        .send_request(b.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    try_request(addr, "GET", path, &[]).await.unwrap()
}

/// A health check every 50 ms, 2 to turn healthy, 2 to turn unhealthy.
pub fn fast_check() -> HealthCheck {
    HealthCheck {
        enabled: true,
        protocol: Protocol::Http,
        port: None,
        path: "/health".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        matcher: "200-299".into(),
    }
}

pub fn group(id: &str, targets: Vec<Target>) -> TargetGroup {
    TargetGroup {
        id: id.into(),
        protocol: Protocol::Http,
        health_check: fast_check(),
        deregistration_delay: Duration::from_secs(30),
        targets,
        attributes: BTreeMap::new(),
    }
}

pub fn forward(tg: &str) -> Action {
    Action::Forward(vec![(tg.to_owned(), 1)])
}

pub fn rule(id: &str, conditions: Vec<Condition>, action: Action) -> Rule {
    Rule {
        id: id.into(),
        conditions,
        action,
    }
}

/// One load balancer on 127.0.0.1 with one HTTP listener on `port`.
pub fn http_lb(port: u16, rules: Vec<Rule>) -> LoadBalancer {
    LoadBalancer {
        id: "lb".into(),
        addr: LOOPBACK,
        attributes: BTreeMap::new(),
        listeners: vec![Listener {
            id: format!("listener-{port}"),
            port,
            protocol: Protocol::Http,
            rules,
            attributes: BTreeMap::new(),
        }],
    }
}

pub fn config(lbs: Vec<LoadBalancer>, groups: Vec<TargetGroup>) -> Config {
    Config {
        load_balancers: lbs,
        target_groups: groups,
    }
}

/// Polls `cond` every 20 ms for up to 5 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..250 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The state of target `id` in `tg`.
pub fn state_of(b: &balancer::Balancer, tg: &str, id: &str) -> Option<HealthState> {
    b.target_health(tg)
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.state)
}
