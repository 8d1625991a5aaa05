//! Listeners: binding (synchronously, so errors reach `apply`'s caller) and the accept loops.
//!
//! An HTTP listener serves each connection with hyper's HTTP/1.1 server (keep-alive on,
//! upgrades allowed) and hands every request to [`proxy::handle`] with the listener's current
//! [`ListenerView`]; a connection idle for the load balancer's idle timeout is closed. A TCP
//! listener hands each connection to [`tcp::splice`]. Every connection
//! task stops when its listener is cancelled (removed, moved, or the balancer shut down).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use crate::Protocol;
use crate::proxy::{self, Groups, ListenerView};
use crate::state::Cancel;
use crate::tcp::{self, TcpView};

/// The live, swappable routing of a listener.
#[derive(Debug, Clone)]
pub(crate) enum View {
    Http(Arc<ListenerView>),
    Tcp(Arc<TcpView>),
}

impl View {
    /// The view of a listener of the configuration.
    pub(crate) fn new(listener: &crate::Listener, lb: &crate::LoadBalancer) -> View {
        match listener.protocol {
            Protocol::Http => View::Http(Arc::new(ListenerView::new(
                listener.port,
                &listener.rules,
                &lb.attributes,
            ))),
            Protocol::Tcp => View::Tcp(Arc::new(TcpView::new(listener))),
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) view: Arc<RwLock<View>>,
    cancel: Cancel,
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Binds `addr:port` and starts the accept loop on `runtime`.
pub(crate) fn bind<G: Groups>(
    runtime: &Handle,
    groups: Arc<G>,
    shutdown: Cancel,
    addr: Ipv4Addr,
    port: u16,
    view: View,
) -> std::io::Result<Bound> {
    let addr = SocketAddr::from((addr, port));
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = {
        let _enter = runtime.enter();
        TcpListener::from_std(std_listener)?
    };
    let protocol = match view {
        View::Http(_) => Protocol::Http,
        View::Tcp(_) => Protocol::Tcp,
    };
    let view = Arc::new(RwLock::new(view));
    let cancel = Cancel::new();
    let (loop_view, loop_cancel) = (Arc::clone(&view), cancel.clone());
    runtime.spawn(async move {
        tokio::select! {
            () = accept_loop(listener, groups, loop_view, loop_cancel.clone(), shutdown.clone()) => {}
            () = loop_cancel.cancelled() => {}
            () = shutdown.cancelled() => {}
        }
    });
    Ok(Bound {
        addr,
        protocol,
        view,
        cancel,
    })
}

async fn accept_loop<G: Groups>(
    listener: TcpListener,
    groups: Arc<G>,
    view: Arc<RwLock<View>>,
    cancel: Cancel,
    shutdown: Cancel,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let current = view.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (groups, view, cancel, shutdown) = (
            Arc::clone(&groups),
            Arc::clone(&view),
            cancel.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let serve = async {
                match current {
                    View::Http(_) => serve_http(stream, peer, groups, view).await,
                    View::Tcp(tcp) => tcp::splice(stream, groups, &tcp).await,
                }
            };
            tokio::select! {
                () = serve => {}
                () = cancel.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// Serves one client connection. Waiting for the next request longer than the load
/// balancer's `idle_timeout.timeout_seconds` closes it (hyper's header read timeout starts when
/// the connection turns idle).
async fn serve_http<G: Groups>(
    stream: TcpStream,
    peer: SocketAddr,
    groups: Arc<G>,
    view: Arc<RwLock<View>>,
) {
    let idle = match &*view.read().unwrap_or_else(|e| e.into_inner()) {
        View::Http(v) => v.idle_timeout,
        View::Tcp(_) => Duration::from_secs(60),
    };
    let service = service_fn(move |req| {
        let current = view.read().unwrap_or_else(|e| e.into_inner()).clone();
        let groups = Arc::clone(&groups);
        async move {
            match current {
                View::Http(v) => proxy::handle(groups, v, req, peer).await,
                View::Tcp(_) => Ok(proxy::error(hyper::StatusCode::SERVICE_UNAVAILABLE)),
            }
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "client connection ended");
    }
}
