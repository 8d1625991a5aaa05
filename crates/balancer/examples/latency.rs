//! Measures the latency the balancer adds: the same small GET sent straight to a target and
//! through an HTTP listener, sequentially on one kept-alive connection (per-request latency
//! percentiles) and from several connections at once (throughput).
//!
//! ```text
//! cargo run --release -p balancer --example latency -- [requests] [connections]
//! ```
//! Everything runs on 127.0.0.1 ephemeral ports.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use balancer::{
    Action, Balancer, Config, HealthCheck, Listener, LoadBalancer, Protocol, Rule, Target,
    TargetGroup,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let connections: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(requests, connections.max(1)))
}

async fn run(requests: usize, connections: usize) -> Result<()> {
    let target = start_target().await?;
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let balancer = Balancer::new(tokio::runtime::Handle::current());
    let errors = balancer.apply(config(port, target));
    if let Some(e) = errors.first() {
        return Err(e.clone().into());
    }
    let via = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    println!("{requests} sequential GETs on one kept-alive connection:");
    let direct = sequential(target, requests).await?;
    let proxied = sequential(via, requests).await?;
    report("direct", &direct);
    report("via balancer", &proxied);
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "  added latency (p50): {:?}",
        median(&proxied).saturating_sub(median(&direct))
    );

    println!("{requests} GETs over {connections} concurrent connections:");
    for (name, addr) in [("direct", target), ("via balancer", via)] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            tasks.push(tokio::spawn(sequential(addr, requests / connections)));
        }
        for t in tasks {
            t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  {name:>13}: {:.0} requests/s",
            (requests / connections * connections) as f64 / secs
        );
    }
    println!("forwarded by the balancer: {}", balancer.requests("tg"));
    balancer.shutdown();
    Ok(())
}

fn report(name: &str, samples: &[Duration]) {
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "  {name:>13}: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        pct(50),
        pct(90),
        pct(99),
        samples[samples.len() - 1]
    );
}

/// Sorted latencies of `n` GETs on one connection.
async fn sequential(addr: SocketAddr, n: usize) -> Result<Vec<Duration>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let req = Request::get("/")
            .header("host", "bench")
            .body(Empty::<Bytes>::new())?;
        let started = Instant::now();
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        resp.into_body().collect().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
}

async fn start_target() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn config(port: u16, target: SocketAddr) -> Config {
    Config {
        load_balancers: vec![LoadBalancer {
            id: "lb".into(),
            addr: Ipv4Addr::LOCALHOST,
            attributes: BTreeMap::new(),
            listeners: vec![Listener {
                id: "listener".into(),
                port,
                protocol: Protocol::Http,
                rules: vec![Rule {
                    id: "default".into(),
                    conditions: vec![],
                    action: Action::Forward(vec![("tg".into(), 1)]),
                }],
                attributes: BTreeMap::new(),
            }],
        }],
        target_groups: vec![TargetGroup {
            id: "tg".into(),
            protocol: Protocol::Http,
            health_check: HealthCheck {
                enabled: false,
                protocol: Protocol::Http,
                port: None,
                path: "/".into(),
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(5),
                healthy_threshold: 5,
                unhealthy_threshold: 2,
                matcher: "200".into(),
            },
            deregistration_delay: Duration::from_secs(300),
            targets: vec![Target {
                id: "t".into(),
                port: target.port(),
                addr: Some(Ipv4Addr::LOCALHOST),
                unreachable_reason: None,
            }],
            attributes: BTreeMap::new(),
        }],
    }
}
