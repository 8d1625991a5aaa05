//! Raw images: the file is the disk. Also used for fixed VHDs, whose disk is the file minus
//! its 512-byte footer.
//!
//! Zero detection uses `SEEK_DATA`: a range with no data extent (a hole of a sparse file)
//! reads as zeros without being read.

use rustix::fs::SeekFrom;

use crate::src::Src;
use crate::{DiskFormat, DiskReader, Limits, Result, check_range};

/// Reader of a raw image (or of the data part of a fixed VHD).
#[derive(Debug)]
pub struct RawReader {
    src: Src,
    size: u64,
}

impl RawReader {
    pub(crate) fn open(src: Src, limits: Limits) -> Result<RawReader> {
        let size = src.len;
        RawReader::with_size(src, size, limits)
    }

    /// The first `size` bytes of `src` as a disk.
    pub(crate) fn with_size(src: Src, size: u64, limits: Limits) -> Result<RawReader> {
        src.check_virtual_size(size, &limits)?;
        src.check(0, size, "disk data")?;
        Ok(RawReader { src, size })
    }
}

impl DiskReader for RawReader {
    fn format(&self) -> DiskFormat {
        self.src.format
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        self.src.read(offset, buf, "data")
    }

    fn range_is_zero(&self, offset: u64, len: u64) -> Result<bool> {
        check_range(offset, len, self.size)?;
        if len == 0 {
            return Ok(true);
        }
        match rustix::fs::seek(&self.src.file, SeekFrom::Data(offset)) {
            Ok(data) => Ok(data >= offset + len),
            Err(rustix::io::Errno::NXIO) => Ok(true),
            // Filesystems without SEEK_DATA: we do not know.
            Err(_) => Ok(false),
        }
    }
}
