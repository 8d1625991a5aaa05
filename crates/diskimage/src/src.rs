//! `Src`: the image file being read, with its length fixed at open, and bounds-checked
//! positioned reads that turn "past the end" into a [`Error::Corrupt`] naming the structure.
//! Also the little-/big-endian field helpers and CRC-32C the parsers share.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::{DiskFormat, Error, Limits, Result};

/// The file an image reader reads.
#[derive(Debug)]
pub(crate) struct Src {
    pub file: File,
    pub path: PathBuf,
    pub len: u64,
    pub format: DiskFormat,
}

impl Src {
    pub fn new(file: File, path: &Path, format: DiskFormat) -> Result<Src> {
        let len = file
            .metadata()
            .map_err(|e| Error::io(path, "reading metadata", e))?
            .len();
        Ok(Src {
            file,
            path: path.to_owned(),
            len,
            format,
        })
    }

    pub fn corrupt(&self, offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            format: self.format,
            offset,
            what: what.into(),
        }
    }

    pub fn refuse(&self, what: impl Into<String>) -> Error {
        Error::Refused {
            path: self.path.clone(),
            format: self.format,
            what: what.into(),
        }
    }

    pub fn too_large(&self, what: impl Into<String>) -> Error {
        Error::TooLarge {
            path: self.path.clone(),
            format: self.format,
            what: what.into(),
        }
    }

    /// Checks that `offset..offset+len` lies inside the file.
    pub fn check(&self, offset: u64, len: u64, what: &str) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(self.corrupt(
                offset,
                format!(
                    "{what} ({len} bytes) extends past the end of the file ({} bytes)",
                    self.len
                ),
            )),
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset`, which must lie inside the file.
    pub fn read(&self, offset: u64, buf: &mut [u8], what: &str) -> Result<()> {
        self.check(offset, buf.len() as u64, what)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(&self.path, format!("reading {what} at offset {offset}"), e))
    }

    /// Reads `len` bytes at `offset` into a new vector, refusing more than the metadata
    /// limit.
    pub fn read_vec(&self, offset: u64, len: u64, limits: &Limits, what: &str) -> Result<Vec<u8>> {
        if len > limits.max_metadata_bytes {
            return Err(self.too_large(format!(
                "{what} is {len} bytes, more than the limit of {} bytes",
                limits.max_metadata_bytes
            )));
        }
        self.check(offset, len, what)?;
        let mut buf = vec![0u8; len as usize];
        self.read(offset, &mut buf, what)?;
        Ok(buf)
    }

    /// Refuses a virtual size above the limit.
    pub fn check_virtual_size(&self, size: u64, limits: &Limits) -> Result<()> {
        if size > limits.max_virtual_size {
            return Err(self.too_large(format!(
                "virtual size {size} bytes exceeds the limit of {} bytes",
                limits.max_virtual_size
            )));
        }
        Ok(())
    }
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as VHDX uses it.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(super::crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    }
}
