//! Transmission phase: a reader (this connection's thread) parses requests and reads WRITE
//! payloads; a pool of workers runs them against the device and writes simple replies
//! under a mutex, in completion order.
//!
//! ```text
//!  socket ──► reader ──(budget: ≤ N requests, ≤ B payload bytes in flight)──► queue
//!                │ invalid request: error reply at once (WRITE data drained)     │
//!                ▼                                                               ▼
//!             writer mutex ◄──────── reply (16 bytes [+ READ data]) ◄──── workers × W
//! ```

use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::handshake::{Negotiated, drain};
use crate::proto::*;
use crate::server::ServerConfig;
use crate::{BlockDevice, NbdError};

/// Zeros written per call when NO_HOLE asks for allocated zeros.
const ZERO_CHUNK: u64 = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only means another thread of this connection panicked; the data (a socket,
    // two counters, a receiver) stays consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bounds what one connection has in flight.
struct Budget {
    state: Mutex<(u64, usize)>,
    freed: Condvar,
    max_bytes: u64,
    max_requests: usize,
}

impl Budget {
    fn acquire(&self, cost: u64) {
        let mut g = lock(&self.state);
        while g.1 >= self.max_requests || (g.0 > 0 && g.0 + cost > self.max_bytes) {
            g = self.freed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.0 += cost;
        g.1 += 1;
    }

    fn release(&self, cost: u64) {
        let mut g = lock(&self.state);
        g.0 -= cost;
        g.1 -= 1;
        self.freed.notify_all();
    }
}

/// Recycled payload buffers, so a request does not pay for zeroing fresh memory.
/// Holds at most [`POOL_BUFFERS`] buffers of at most [`POOL_MAX_BUFFER`] bytes.
struct Pool(Mutex<Vec<Vec<u8>>>);

const POOL_BUFFERS: usize = 8;
const POOL_MAX_BUFFER: usize = 1 << 20;

impl Pool {
    /// A buffer of at least `len` bytes (contents unspecified; use `[..len]`).
    fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = lock(&self.0).pop().unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    fn give(&self, buf: Vec<u8>) {
        if buf.len() <= POOL_MAX_BUFFER {
            let mut pool = lock(&self.0);
            if pool.len() < POOL_BUFFERS {
                pool.push(buf);
            }
        }
    }
}

/// The write half: replies are written whole under the mutex.
struct Writer {
    stream: Mutex<UnixStream>,
    dead: AtomicBool,
}

impl Writer {
    fn send(&self, bytes: &[u8]) {
        let mut s = lock(&self.stream);
        if self.dead.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = s.write_all(bytes) {
            tracing::debug!(error = %e, "NBD: reply failed, closing the connection");
            self.dead.store(true, Ordering::Relaxed);
            // Wakes the reader, which then stops taking requests.
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn reply(&self, error: u32, cookie: u64) {
        let mut b = [0u8; REPLY_LEN];
        encode_reply(&mut b, error, cookie);
        self.send(&b);
    }
}

struct Ctx {
    device: Arc<dyn BlockDevice>,
    size: u64,
    read_only: bool,
    max_payload: u32,
    writer: Writer,
    budget: Budget,
    pool: Pool,
    /// Workers waiting for a job.
    idle: AtomicUsize,
}

struct Job {
    req: Request,
    /// A WRITE's payload is `data[..req.length]` (a pooled buffer may be longer).
    data: Vec<u8>,
    cost: u64,
}

/// NBD error code for a backend error.
pub(crate) fn errno_of(e: &io::Error) -> u32 {
    const EDQUOT: i32 = 122;
    const EFBIG: i32 = 27;
    const EACCES: i32 = 13;
    const EROFS: i32 = 30;
    match e.raw_os_error() {
        Some(c) if c == ENOSPC as i32 || c == EDQUOT || c == EFBIG => ENOSPC,
        Some(c) if c == EPERM as i32 || c == EACCES || c == EROFS => EPERM,
        Some(c) if c == EINVAL as i32 => EINVAL,
        Some(_) => EIO,
        None => match e.kind() {
            io::ErrorKind::InvalidInput => EINVAL,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => EPERM,
            io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge => ENOSPC,
            _ => EIO,
        },
    }
}

impl Ctx {
    /// Checks a request before it is queued; `Err(code)` is replied at once.
    fn check(&self, r: &Request) -> Result<(), u32> {
        let allowed = match r.kind {
            CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM | CMD_CACHE => CMD_FLAG_FUA,
            CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
            _ => return Err(EINVAL),
        };
        if r.flags & !allowed != 0 {
            return Err(EINVAL);
        }
        let writes = matches!(r.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
        if writes && self.read_only {
            return Err(EPERM);
        }
        if matches!(r.kind, CMD_READ | CMD_WRITE) && r.length > self.max_payload {
            return Err(EOVERFLOW);
        }
        if r.kind != CMD_FLUSH {
            let in_range = r
                .offset
                .checked_add(u64::from(r.length))
                .is_some_and(|end| end <= self.size);
            if !in_range {
                return Err(if matches!(r.kind, CMD_WRITE | CMD_WRITE_ZEROES) {
                    ENOSPC
                } else {
                    EINVAL
                });
            }
        }
        Ok(())
    }

    fn run(&self, job: Job) {
        let Job { req, data, cost } = job;
        let len = u64::from(req.length);
        let fua = req.flags & CMD_FLAG_FUA != 0;
        let dev = &*self.device;
        let result = match req.kind {
            CMD_READ => {
                let n = REPLY_LEN + req.length as usize;
                let mut buf = self.pool.take(n);
                let read = if len == 0 {
                    Ok(())
                } else {
                    dev.read_at(&mut buf[REPLY_LEN..n], req.offset)
                };
                match read {
                    Ok(()) => {
                        encode_reply(&mut buf[..REPLY_LEN], 0, req.cookie);
                        self.writer.send(&buf[..n]);
                        self.pool.give(buf);
                        self.budget.release(cost);
                        return;
                    }
                    Err(e) => {
                        self.pool.give(buf);
                        Err(e)
                    }
                }
            }
            CMD_WRITE if len == 0 => Ok(()),
            CMD_WRITE => dev.write_at(&data[..req.length as usize], req.offset),
            CMD_FLUSH => dev.flush(),
            CMD_TRIM if len == 0 => Ok(()),
            CMD_TRIM => dev.trim(req.offset, len),
            CMD_WRITE_ZEROES if len == 0 => Ok(()),
            CMD_WRITE_ZEROES if req.flags & CMD_FLAG_NO_HOLE != 0 => {
                write_allocated_zeroes(dev, req.offset, len)
            }
            CMD_WRITE_ZEROES => dev.write_zeroes(req.offset, len),
            // CMD_CACHE: a hint; the device has no cache to fill.
            _ => Ok(()),
        };
        let wrote = matches!(req.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
        let result = if fua && wrote && len > 0 {
            result.and_then(|()| dev.flush())
        } else {
            result
        };
        self.pool.give(data);
        let code = match result {
            Ok(()) => 0,
            Err(e) => {
                tracing::warn!(command = req.kind, offset = req.offset, length = len, error = %e, "NBD: device error");
                errno_of(&e)
            }
        };
        self.writer.reply(code, req.cookie);
        self.budget.release(cost);
    }
}

/// WRITE_ZEROES with NO_HOLE: the range must end up allocated, so zeros are written.
fn write_allocated_zeroes(dev: &dyn BlockDevice, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; len.min(ZERO_CHUNK) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZERO_CHUNK);
        dev.write_at(&zeros[..n as usize], offset + done)?;
        done += n;
    }
    Ok(())
}

fn worker(ctx: &Ctx, queue: &Mutex<Receiver<Job>>) {
    loop {
        ctx.idle.fetch_add(1, Ordering::SeqCst);
        let job = lock(queue).recv();
        ctx.idle.fetch_sub(1, Ordering::SeqCst);
        match job {
            Ok(job) => ctx.run(job),
            Err(_) => return,
        }
    }
}

/// Serves requests until the client disconnects (NBD_CMD_DISC or EOF), breaks the
/// protocol, or the socket is shut down; in-flight requests finish before it returns.
pub(crate) fn serve(
    stream: UnixStream,
    negotiated: Negotiated,
    config: &ServerConfig,
) -> Result<(), NbdError> {
    let ctx = Arc::new(Ctx {
        read_only: negotiated.flags & TF_READ_ONLY != 0,
        device: Arc::clone(&negotiated.export.device),
        size: negotiated.size,
        max_payload: config.max_payload,
        writer: Writer {
            stream: Mutex::new(stream.try_clone()?),
            dead: AtomicBool::new(false),
        },
        budget: Budget {
            state: Mutex::new((0, 0)),
            freed: Condvar::new(),
            max_bytes: config.max_in_flight_bytes,
            max_requests: config.max_in_flight_requests,
        },
        pool: Pool(Mutex::new(Vec::new())),
        idle: AtomicUsize::new(0),
    });
    let (tx, rx) = mpsc::channel::<Job>();
    let mut pool = Workers {
        ctx: Arc::clone(&ctx),
        queue: Arc::new(Mutex::new(rx)),
        tx,
        handles: Vec::with_capacity(config.workers_per_connection),
        max: config.workers_per_connection,
    };
    let mut reader = BufReader::with_capacity(64 * 1024, &stream);
    let result = read_loop(&mut reader, &ctx, &mut pool);
    drop(pool.tx);
    for w in pool.handles {
        let _ = w.join();
    }
    let _ = stream.shutdown(Shutdown::Both);
    result
}

/// The worker threads of one connection, started on demand (an idle connection holds
/// one): a request that finds no idle worker starts another, up to `max`.
struct Workers {
    ctx: Arc<Ctx>,
    queue: Arc<Mutex<Receiver<Job>>>,
    tx: mpsc::Sender<Job>,
    handles: Vec<std::thread::JoinHandle<()>>,
    max: usize,
}

impl Workers {
    fn submit(&mut self, job: Job) -> Result<(), NbdError> {
        let busy =
            self.handles.len() - self.ctx.idle.load(Ordering::SeqCst).min(self.handles.len());
        if self.handles.len() < self.max && busy == self.handles.len() {
            let (ctx, queue) = (Arc::clone(&self.ctx), Arc::clone(&self.queue));
            let spawned = std::thread::Builder::new()
                .name(format!("nbd-worker-{}", self.handles.len()))
                .spawn(move || worker(&ctx, &queue));
            match spawned {
                Ok(h) => self.handles.push(h),
                // Fewer workers still serve; none at all cannot.
                Err(e) if self.handles.is_empty() => return Err(e.into()),
                Err(e) => tracing::warn!(error = %e, "NBD: cannot start another worker"),
            }
        }
        self.tx
            .send(job)
            .map_err(|_| NbdError::Protocol("worker pool gone".into()))
    }
}

fn read_loop<R: Read>(reader: &mut R, ctx: &Ctx, workers: &mut Workers) -> Result<(), NbdError> {
    loop {
        if ctx.writer.dead.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut header = [0u8; REQUEST_LEN];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let Some(req) = Request::decode(&header) else {
            return Err(NbdError::Protocol("bad request magic".into()));
        };
        if req.kind == CMD_DISC {
            return Ok(());
        }
        if let Err(code) = ctx.check(&req) {
            if req.kind == CMD_WRITE {
                drain(reader, u64::from(req.length))?;
            }
            ctx.writer.reply(code, req.cookie);
            continue;
        }
        let cost = match req.kind {
            CMD_READ | CMD_WRITE => u64::from(req.length),
            _ => 0,
        };
        ctx.budget.acquire(cost);
        let mut data = Vec::new();
        if req.kind == CMD_WRITE {
            data = ctx.pool.take(req.length as usize);
            if let Err(e) = reader.read_exact(&mut data[..req.length as usize]) {
                ctx.budget.release(cost);
                return Err(e.into());
            }
        }
        if let Err(e) = workers.submit(Job { req, data, cost }) {
            ctx.budget.release(cost);
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_of(&io::Error::from_raw_os_error(28)), ENOSPC);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(122)), ENOSPC);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(30)), EPERM);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(5)), EIO);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(2)), EIO);
        assert_eq!(errno_of(&io::Error::other("boom")), EIO);
        assert_eq!(
            errno_of(&io::Error::new(io::ErrorKind::InvalidInput, "x")),
            EINVAL
        );
    }
}
