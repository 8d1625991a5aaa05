//! The read loop shared by the cluster-mapped formats (qcow2, vmdk, dynamic vhd, vhdx):
//! each splits the virtual disk into fixed-size units (cluster, grain, block) and maps a
//! unit to "zero", "these bytes of the file" or "this compressed range of the file";
//! [`read_at`] and [`range_is_zero`] walk the units of a request.

use crate::src::Src;
use crate::{Result, check_range};

/// Where a unit of the virtual disk lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// Reads as zeros (unallocated, or flagged zero).
    Zero,
    /// Stored uncompressed, starting at this file offset.
    Data(u64),
    /// Stored compressed in `len` bytes at file offset `offset`.
    Compressed { offset: u64, len: u64 },
}

/// A format whose virtual disk is a sequence of mapped units.
pub(crate) trait UnitMap {
    fn src(&self) -> &Src;
    fn unit_size(&self) -> u64;
    fn size(&self) -> u64;
    fn map(&self, unit: u64) -> Result<Mapping>;
    /// Inflates unit `unit`, stored as `Mapping::Compressed { offset, len }`, into `out`
    /// (exactly `unit_size` bytes).
    fn decompress(&self, unit: u64, offset: u64, len: u64, out: &mut [u8]) -> Result<()> {
        let _ = (len, out);
        Err(self.src().corrupt(
            offset,
            format!("unit {unit} is compressed, which this format does not allow"),
        ))
    }
}

pub(crate) fn read_at<M: UnitMap + ?Sized>(m: &M, offset: u64, buf: &mut [u8]) -> Result<()> {
    check_range(offset, buf.len() as u64, m.size())?;
    let us = m.unit_size();
    let mut scratch: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let off = offset + pos as u64;
        let unit = off / us;
        let within = off % us;
        let n = (us - within).min((buf.len() - pos) as u64) as usize;
        let out = &mut buf[pos..pos + n];
        match m.map(unit)? {
            Mapping::Zero => out.fill(0),
            Mapping::Data(host) => {
                let at = host.checked_add(within).ok_or_else(|| {
                    m.src()
                        .corrupt(host, format!("unit {unit} maps past the end of the file"))
                })?;
                m.src().read(at, out, "data")?;
            }
            Mapping::Compressed { offset: c, len } => {
                if scratch.is_empty() {
                    scratch = vec![0u8; us as usize];
                }
                m.decompress(unit, c, len, &mut scratch)?;
                out.copy_from_slice(&scratch[within as usize..within as usize + n]);
            }
        }
        pos += n;
    }
    Ok(())
}

pub(crate) fn range_is_zero<M: UnitMap + ?Sized>(m: &M, offset: u64, len: u64) -> Result<bool> {
    check_range(offset, len, m.size())?;
    if len == 0 {
        return Ok(true);
    }
    let us = m.unit_size();
    for unit in offset / us..=(offset + len - 1) / us {
        if m.map(unit)? != Mapping::Zero {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Implements [`crate::DiskReader`] for a [`UnitMap`].
macro_rules! unit_reader {
    ($t:ty) => {
        impl $crate::DiskReader for $t {
            fn format(&self) -> $crate::DiskFormat {
                $crate::map::UnitMap::src(self).format
            }
            fn virtual_size(&self) -> u64 {
                $crate::map::UnitMap::size(self)
            }
            fn read_at(&self, offset: u64, buf: &mut [u8]) -> $crate::Result<()> {
                $crate::map::read_at(self, offset, buf)
            }
            fn range_is_zero(&self, offset: u64, len: u64) -> $crate::Result<bool> {
                $crate::map::range_is_zero(self, offset, len)
            }
        }
    };
}
pub(crate) use unit_reader;
