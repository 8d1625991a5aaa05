//! Fuzz the NBD server's handshake and request stream: arbitrary bytes are what one
//! client sends on a connection to a real `nbd::NbdServer` (on a unix socket in a temp
//! directory) serving two small in-memory devices, `vol` (read-write) and `ro`
//! (read-only). The client half-closes after sending and reads until the server hangs
//! up. Checks that nothing panics (a panic in any server thread aborts the process), the
//! server always greets with `NBDMAGIC`, and it never hangs (libFuzzer's `-timeout`).
#![no_main]

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nbd::{BlockDevice, Export, NbdServer, ServerConfig, ServerHandle};

/// A device in memory; out-of-range access is an `InvalidInput` error.
struct MemDevice {
    data: Mutex<Vec<u8>>,
    read_only: bool,
}

impl MemDevice {
    fn range(&self, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(offset as usize..end as usize),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "out of range")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.lock().len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let r = self.range(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.lock()[r]);
        Ok(())
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let r = self.range(offset, data.len() as u64)?;
        self.lock()[r].copy_from_slice(data);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = self.range(offset, len)?;
        self.lock()[r].fill(0);
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
}

struct Server {
    socket: PathBuf,
    _handle: ServerHandle,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nbd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("nbd.sock");
        let dev = |size: usize, read_only| -> Arc<dyn BlockDevice> {
            Arc::new(MemDevice {
                data: Mutex::new(vec![0x5a; size]),
                read_only,
            })
        };
        let config = ServerConfig {
            max_payload: 64 << 10,
            max_in_flight_bytes: 256 << 10,
            handshake_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_millis(100),
            ..ServerConfig::default()
        };
        let exports = [
            Export::new("vol", dev(1 << 20, false)).with_description("fuzz volume"),
            Export::new("ro", dev((64 << 10) + 512, true)),
        ];
        let handle = NbdServer::bind_unix_with(&socket, exports, config).expect("bind");
        Server {
            socket,
            _handle: handle,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let server = server();
    let mut conn = UnixStream::connect(&server.socket).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The server may hang up before reading everything: a failed write is fine.
    let _ = conn.write_all(data);
    let _ = conn.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    match conn.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the server's replies: {e}"),
    }
    assert!(
        reply.starts_with(b"NBDMAGIC"),
        "the server did not greet: {:?}",
        &reply[..reply.len().min(16)]
    );
});
