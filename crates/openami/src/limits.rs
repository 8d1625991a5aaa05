//! Connection limits for `openami serve`: slow or idle clients cannot hold connections
//! forever, and the number of open connections is capped.
//!
//! * [`LimitedListener`] wraps the plain or TLS listener. It takes a slot of the
//!   connection cap (`--max-connections`) before accepting: beyond the cap new
//!   connections **wait** in the kernel's accept backlog (they are not refused) until
//!   another connection closes. Each accepted stream is a [`TimedIo`], which closes the
//!   connection when a request's head (request line and headers) has not fully arrived
//!   within `--header-timeout` of the connection opening or of the previous response —
//!   so a slowloris client is cut off, and an idle keep-alive connection closes after
//!   the same time. (A client pipelining requests has its next head awaited from the
//!   first byte of a response on; no SDK pipelines.) Over TLS the handshake (with its own
//!   time limit, see [`crate::tls`]) runs before a connection takes its slot.
//! * [`body_timeout`] is a middleware that fails a request body that makes no progress
//!   (no bytes) for `--body-timeout`: the handler answers an error and the connection,
//!   whose body was not read to its end, closes.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// A listener whose connections count against a cap and have a header read timeout.
pub struct LimitedListener<L> {
    inner: L,
    slots: Arc<Semaphore>,
    header_timeout: Duration,
}

impl<L> LimitedListener<L> {
    /// Wraps `inner`: at most `max_connections` open at once (0: no cap), each closed when
    /// a request head takes longer than `header_timeout`.
    pub fn new(inner: L, max_connections: usize, header_timeout: Duration) -> Self {
        let cap = if max_connections == 0 {
            Semaphore::MAX_PERMITS
        } else {
            max_connections
        };
        Self {
            inner,
            slots: Arc::new(Semaphore::new(cap)),
            header_timeout,
        }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for LimitedListener<L> {
    type Io = TimedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring fails never; if it did, the
        // connection would simply not count.
        let permit = Arc::clone(&self.slots).acquire_owned().await.ok();
        let (io, addr) = self.inner.accept().await;
        (TimedIo::new(io, permit, self.header_timeout), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Its connections' remote address is the client's, as the wrapped listener's.
impl<L: api::audit::ClientListener> api::audit::ClientListener for LimitedListener<L> {}

/// A connection's stream: holds its slot of the connection cap and enforces the header
/// read timeout.
pub struct TimedIo<T> {
    inner: T,
    _permit: Option<OwnedSemaphorePermit>,
    header_timeout: Duration,
    /// Set while a request head is awaited: the time by which it must be complete.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The last bytes read (to find the head's end, `\r\n\r\n`, across reads).
    tail: [u8; 3],
}

impl<T> TimedIo<T> {
    fn new(inner: T, permit: Option<OwnedSemaphorePermit>, header_timeout: Duration) -> Self {
        Self {
            inner,
            _permit: permit,
            header_timeout,
            deadline: Some(Box::pin(tokio::time::sleep(header_timeout))),
            tail: [0; 3],
        }
    }

    /// A response is going out: the next request's head is awaited from now. The timer
    /// is polled at once so that it wakes the connection's task (the one writing) when it
    /// expires, even if no read is pending by then.
    fn await_head(&mut self, cx: &mut Context<'_>) {
        let mut deadline = Box::pin(tokio::time::sleep(self.header_timeout));
        let _ = deadline.as_mut().poll(cx);
        self.deadline = Some(deadline);
        self.tail = [0; 3];
    }

    /// Notes bytes read while a head is awaited: the head ends at an empty line.
    fn saw(&mut self, bytes: &[u8]) {
        if self.deadline.is_none() || bytes.is_empty() {
            return;
        }
        let mut window = self.tail.to_vec();
        window.extend_from_slice(bytes);
        if window.windows(4).any(|w| w == b"\r\n\r\n") {
            self.deadline = None;
        }
        let n = window.len();
        self.tail.copy_from_slice(&window[n - 3..]);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled()[before..].to_vec();
                this.saw(&filled);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = match this.deadline.as_mut() {
                    Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request headers not received in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
            && this.deadline.is_none()
        {
            this.await_head(cx);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
            && this.deadline.is_none()
        {
            this.await_head(cx);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Middleware: a request body that yields no bytes for the given time fails.
pub async fn body_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = Body::new(TimedBody {
        inner: body,
        limit,
        idle: Box::pin(tokio::time::sleep(limit)),
    });
    next.run(Request::from_parts(parts, body)).await
}

/// A request body failing when no frame arrives within `limit`.
struct TimedBody {
    inner: Body,
    limit: Duration,
    idle: Pin<Box<Sleep>>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.limit;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request body made no progress in time",
                    )))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_across_reads() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let mut io = TimedIo::new((), None, Duration::from_secs(1));
        io.saw(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(io.deadline.is_some());
        io.saw(b"\n\r");
        assert!(io.deadline.is_some());
        io.saw(b"\n");
        assert!(io.deadline.is_none());
    }
}
