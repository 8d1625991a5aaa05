//! [`BlockDevice`]: what an export serves; [`FileDevice`]: a plain file as a device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::FallocateFlags;

/// A byte-addressed device served by an export. Every method takes `&self` and is called
/// from several threads at once (pipelined requests, several connections).
///
/// Ranges passed in are always inside `[0, size())` as it was when the client connected;
/// lengths of `read_at`/`write_at` never exceed [`ServerConfig::max_payload`](crate::ServerConfig).
/// Errors become NBD error codes by their `raw_os_error`/`kind` (ENOSPC, EDQUOT and EFBIG →
/// ENOSPC; EPERM, EACCES and EROFS → EPERM; `InvalidInput` → EINVAL; anything else → EIO).
pub trait BlockDevice: Send + Sync + 'static {
    /// Size in bytes (read once per connection, when the client selects the export).
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `data` at `offset`; durable after the next [`flush`](Self::flush).
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Makes `[offset, offset+len)` read as zeros (may deallocate).
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Discards `[offset, offset+len)` (it may read as anything afterwards; zeros here).
    fn trim(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Makes every completed write durable, whichever connection made it.
    fn flush(&self) -> io::Result<()>;
    /// Whether writes are refused (advertised as NBD_FLAG_READ_ONLY; writes get EPERM).
    fn read_only(&self) -> bool {
        false
    }
}

/// A regular file served as is: the size is the file's length at open time; trim and write-zeroes punch holes (`fallocate`), falling back to writing
/// zeros where the filesystem cannot.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    size: u64,
    read_only: bool,
}

impl FileDevice {
    /// Opens `path` for reading and (unless `read_only`) writing.
    pub fn open(path: &Path, read_only: bool) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        Self::from_file(file, read_only)
    }

    /// Wraps an open file.
    pub fn from_file(file: File, read_only: bool) -> io::Result<FileDevice> {
        let size = file.metadata()?.len();
        Ok(FileDevice {
            file,
            size,
            read_only,
        })
    }

    fn zero_fill(&self, mut offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; len.min(CHUNK) as usize];
        let end = offset + len;
        while offset < end {
            let n = (end - offset).min(CHUNK) as usize;
            self.file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }
}

impl BlockDevice for FileDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, punch, offset, len) {
            Ok(()) => Ok(()),
            Err(_) => self.zero_fill(offset, len),
        }
    }

    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}
