//! Health checks: one task per (target group, target) while a listener uses the group.
//!
//! Every `interval` the task sends `GET path` (HTTP checks; a fresh connection, as ELB's
//! `ELB-HealthChecker/2.0`) or opens a TCP connection (TCP checks) to the target's address on
//! the traffic port or the check's port, within `timeout`, and feeds the result to the
//! target's [`Machine`]. The group's settings are read anew each round, so
//! ModifyTargetGroup applies live.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::state::{Group, Probe, TargetState, lock};
use crate::{HealthCheck, Protocol};

/// Starts the health-check task of `target` (stopping a previous one), which runs until
/// aborted. The target's state starts over at `initial`.
pub(crate) fn start(
    runtime: &tokio::runtime::Handle,
    group: &Arc<Group>,
    target: &Arc<TargetState>,
) {
    target.stop_checks();
    lock(&target.inner).machine = crate::state::Machine::new();
    let (group, t) = (Arc::downgrade(group), Arc::clone(target));
    let task = runtime.spawn(async move {
        loop {
            let Some(check) = group.upgrade().map(|g| g.settings().health_check) else {
                return;
            };
            let Some(addr) = lock(&t.inner).addr else {
                return;
            };
            let addr = SocketAddr::from((addr, check.port.unwrap_or(t.port)));
            let probe = probe(addr, &check).await;
            tracing::trace!(target = %t.id, %addr, ?probe, "health check");
            lock(&t.inner).machine.record(&probe, &check);
            tokio::time::sleep(check.interval.max(Duration::from_millis(10))).await;
        }
    });
    *lock(&target.checker) = Some(task);
}

/// One health check.
pub(crate) async fn probe(addr: SocketAddr, check: &HealthCheck) -> Probe {
    let attempt = async {
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => return Probe::Failed,
        };
        if check.protocol == Protocol::Tcp {
            return Probe::Pass;
        }
        http_check(stream, addr, check).await
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(p) => p,
        Err(_) => Probe::Timeout,
    }
}

async fn http_check(stream: TcpStream, addr: SocketAddr, check: &HealthCheck) -> Probe {
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return Probe::Failed;
    };
    let conn = tokio::spawn(conn);
    let path = if check.path.starts_with('/') {
        check.path.clone()
    } else {
        format!("/{}", check.path)
    };
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "ELB-HealthChecker/2.0")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let Ok(req) = req else { return Probe::Failed };
    let probe = match sender.send_request(req).await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            if matcher_accepts(&check.matcher, code) {
                Probe::Pass
            } else {
                Probe::Code(code)
            }
        }
        Err(_) => Probe::Failed,
    };
    conn.abort();
    probe
}

/// Whether `code` satisfies a matcher such as `200`, `200,202`, `200-299` (or a mix).
pub(crate) fn matcher_accepts(matcher: &str, code: u16) -> bool {
    matcher
        .split(',')
        .map(str::trim)
        .any(|part| match part.split_once('-') {
            Some((lo, hi)) => match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                (Ok(lo), Ok(hi)) => (lo..=hi).contains(&code),
                _ => false,
            },
            None => part.parse::<u16>() == Ok(code),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        assert!(matcher_accepts("200", 200));
        assert!(!matcher_accepts("200", 201));
        assert!(matcher_accepts("200,202", 202));
        assert!(!matcher_accepts("200,202", 201));
        assert!(matcher_accepts("200-299", 250));
        assert!(!matcher_accepts("200-299", 300));
        assert!(matcher_accepts("200, 300-310", 305));
        assert!(!matcher_accepts("", 200));
    }
}
