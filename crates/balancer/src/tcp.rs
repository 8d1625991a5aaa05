//! TCP listeners (Network Load Balancer): each client connection is spliced to one target,
//! chosen by round robin over the healthy targets of the listener's group (all reachable ones
//! when none is healthy). A connection ends when either side closes, when nothing crossed it
//! for the listener's `tcp.idle_timeout.seconds` (default 350), or when its target's
//! draining time runs out. With the group attribute `proxy_protocol_v2.enabled` the target
//! first receives a PROXY protocol v2 header naming the client (the host cannot preserve
//! client addresses as AWS does for instance targets). `requests()` counts connections for
//! TCP groups.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy::{Groups, choose};

/// What a TCP listener forwards to.
#[derive(Debug)]
pub(crate) struct TcpView {
    /// The default rule's target groups and weights.
    pub(crate) forward: Vec<(String, u32)>,
    /// Closes connections idle this long.
    pub(crate) idle_timeout: Duration,
    turn: AtomicU64,
}

impl TcpView {
    /// The view of a TCP listener.
    pub(crate) fn new(listener: &crate::Listener) -> TcpView {
        let forward = listener
            .rules
            .iter()
            .rev()
            .find_map(|r| match &r.action {
                crate::Action::Forward(groups) => Some(groups.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let idle = listener
            .attributes
            .get("tcp.idle_timeout.seconds")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(350);
        TcpView {
            forward,
            idle_timeout: Duration::from_secs(idle.max(1)),
            turn: AtomicU64::new(0),
        }
    }
}

/// Splices a client connection to a target.
pub(crate) async fn splice<G: Groups>(client: TcpStream, groups: Arc<G>, view: &TcpView) {
    let turn = view.turn.fetch_add(1, Ordering::Relaxed);
    let Some(group) = choose(&view.forward, turn).and_then(|id| groups.group(id)) else {
        return;
    };
    let Some((guard, addr)) = group.pick(None) else {
        return;
    };
    group.requests.fetch_add(1, Ordering::Relaxed);
    let connect = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr));
    let mut upstream = match connect.await {
        Ok(Ok(s)) => s,
        _ => {
            tracing::debug!(%addr, "target connection failed");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if group
        .settings
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .proxy_protocol
    {
        let (Ok(src), Ok(dst)) = (client.peer_addr(), client.local_addr()) else {
            return;
        };
        if upstream
            .write_all(&proxy_v2_header(src, dst))
            .await
            .is_err()
        {
            return;
        }
    }
    let closed = guard.target().closed.clone();
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Watched {
        inner: client,
        last: Arc::clone(&last),
        start,
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r { tracing::debug!(%addr, error = %e, "splice ended"); }
        }
        () = idle(&last, start, view.idle_timeout) => {
            tracing::debug!(%addr, "idle connection closed");
        }
        () = closed.cancelled() => {}
    }
    drop(guard);
}

/// A PROXY protocol v2 header (`PROXY` command, TCP) carrying the client's address and the
/// listener's.
pub(crate) fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(a, |v4| SocketAddr::from((v4, a.port()))),
        IpAddr::V4(_) => a,
    };
    match (unmap(src).ip(), unmap(dst).ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.push(0x11); // AF_INET, STREAM
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.push(0x21); // AF_INET6, STREAM
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// Completes once nothing has crossed the connection for `timeout`.
async fn idle(last: &AtomicU64, start: Instant, timeout: Duration) {
    loop {
        let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// The client side of a splice, noting when bytes last crossed it (either way).
struct Watched {
    inner: TcpStream,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl Watched {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v2_ipv4() {
        let h = proxy_v2_header(
            "127.0.0.9:40000".parse().unwrap(),
            "127.102.0.5:80".parse().unwrap(),
        );
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(h[12..16], [0x21, 0x11, 0, 12]);
        assert_eq!(h[16..20], [127, 0, 0, 9]);
        assert_eq!(h[20..24], [127, 102, 0, 5]);
        assert_eq!(h[24..28], [0x9c, 0x40, 0, 80]);
        assert_eq!(h.len(), 28);
        let h6 = proxy_v2_header("[::1]:1".parse().unwrap(), "[::2]:2".parse().unwrap());
        assert_eq!(h6[13..16], [0x21, 0, 36]);
        assert_eq!(h6.len(), 16 + 36);
    }
}
