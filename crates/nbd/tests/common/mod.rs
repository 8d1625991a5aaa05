//! Helpers shared by the nbd integration tests: an in-memory device that records what
//! reached it, tool lookup (skip locally, fail under CI=true), command runners.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbd::{BlockDevice, Export, NbdServer, ServerConfig, ServerHandle};

/// An in-memory device. `durable` is what the last flush saw, so tests can tell FUA and
/// flush apart from plain writes.
pub struct MemDevice {
    pub data: Mutex<Vec<u8>>,
    pub durable: Mutex<Vec<u8>>,
    pub flushes: AtomicU64,
    pub trims: AtomicU64,
    pub zeroes: AtomicU64,
    pub writes: AtomicU64,
    pub read_only: bool,
    /// Reads at this offset sleep (to force out-of-order completion).
    pub slow_read_offset: Option<u64>,
    /// Every write ("W offset len") and flush ("F"), in order.
    pub log: Mutex<Vec<String>>,
}

impl MemDevice {
    pub fn new(size: usize) -> Arc<MemDevice> {
        Arc::new(Self::build(vec![0; size], false, None))
    }

    pub fn with_content(content: Vec<u8>, read_only: bool) -> Arc<MemDevice> {
        Arc::new(Self::build(content, read_only, None))
    }

    pub fn slow_at(size: usize, offset: u64) -> Arc<MemDevice> {
        Arc::new(Self::build(vec![0; size], false, Some(offset)))
    }

    fn build(content: Vec<u8>, read_only: bool, slow: Option<u64>) -> MemDevice {
        MemDevice {
            durable: Mutex::new(content.clone()),
            data: Mutex::new(content),
            flushes: AtomicU64::new(0),
            trims: AtomicU64::new(0),
            zeroes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            read_only,
            slow_read_offset: slow,
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    pub fn durable(&self) -> Vec<u8> {
        self.durable.lock().unwrap().clone()
    }

    fn range(&self, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        let size = self.data.lock().unwrap().len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(offset as usize..end as usize),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "out of range")),
        }
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.slow_read_offset == Some(offset) {
            std::thread::sleep(Duration::from_millis(300));
        }
        let r = self.range(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.data.lock().unwrap()[r]);
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let r = self.range(offset, data.len() as u64)?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .push(format!("W {offset} {}", data.len()));
        self.data.lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = self.range(offset, len)?;
        self.zeroes.fetch_add(1, Ordering::SeqCst);
        self.data.lock().unwrap()[r].fill(0);
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = self.range(offset, len)?;
        self.trims.fetch_add(1, Ordering::SeqCst);
        self.data.lock().unwrap()[r].fill(0);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push("F".into());
        let data = self.data.lock().unwrap().clone();
        *self.durable.lock().unwrap() = data;
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Whether `tool` is installed. Missing: under CI=true the test fails; otherwise it is
/// skipped with a message.
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is not installed (CI installs qemu-utils and libnbd-bin)");
        }
        eprintln!("SKIPPED: {tool} is not installed (apt-get install qemu-utils libnbd-bin)");
    }
    found
}

/// Runs a command; panics with its output unless it succeeded.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A server on a socket in a fresh temp dir (kept alive by the returned TempDir).
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub handle: Option<ServerHandle>,
    pub socket: PathBuf,
}

impl TestServer {
    pub fn start(exports: Vec<Export>) -> TestServer {
        Self::start_with(exports, ServerConfig::default())
    }

    pub fn start_with(exports: Vec<Export>, config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nbd.sock");
        let handle = NbdServer::bind_unix_with(&socket, exports, config).unwrap();
        TestServer {
            dir,
            handle: Some(handle),
            socket,
        }
    }

    pub fn url(&self, export: &str) -> String {
        url(&self.socket, export)
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    /// Waits until the server has no connection left (clients close asynchronously).
    pub fn wait_idle(&self) {
        for _ in 0..500 {
            if self.handle().connection_count() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "{} connections still open",
            self.handle().connection_count()
        );
    }
}

pub fn url(socket: &Path, export: &str) -> String {
    format!("nbd+unix:///{export}?socket={}", socket.display())
}

pub fn export(name: &str, dev: &Arc<MemDevice>) -> Export {
    Export::new(name, Arc::clone(dev) as Arc<dyn BlockDevice>)
}

/// A tiny deterministic PRNG (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        for chunk in v.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
        v
    }
}

/// Mixed content: random, zero, patterned and sparse-looking 64 KiB extents.
pub fn mixed_content(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = vec![0u8; size];
    for (i, chunk) in out.chunks_mut(64 * 1024).enumerate() {
        match rng.next() % 4 {
            0 => {}
            1 => chunk.fill((i % 251) as u8 + 1),
            _ => {
                let r = rng.bytes(chunk.len());
                chunk.copy_from_slice(&r);
            }
        }
    }
    out
}

/// Names of this process's threads that belong to the nbd server.
pub fn nbd_threads() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
                let comm = comm.trim().to_string();
                if comm.starts_with("nbd-") {
                    names.push(comm);
                }
            }
        }
    }
    names
}
