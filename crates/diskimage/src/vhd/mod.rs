//! VHD (Virtual PC / Hyper-V; qemu's `vpc`), fixed and dynamic: reader here, dynamic
//! writer in [`write`]. Differencing disks are refused.
//!
//! ```text
//! footer (512 bytes, big-endian; last sector of the file, copied to sector 0 in dynamic
//! disks):
//!   0 cookie "conectix"   8 u32 features   12 u32 version   16 u64 data offset
//!      (dynamic header; all ones for fixed)   24 u32 timestamp   28 creator app[4]
//!  32 u32 creator version   36 creator OS[4]   40 u64 original size   48 u64 current size
//!  56 u16 cylinders, u8 heads, u8 sectors per track   60 u32 disk type (2 fixed,
//!      3 dynamic, 4 differencing = refused)   64 u32 checksum   68 unique id[16]
//!  84 u8 saved state
//!  checksum = !(sum of all bytes with the checksum field zeroed)
//!
//! fixed disk: the disk's bytes, then the footer.
//!
//! dynamic header (1024 bytes at the footer's data offset):
//!   0 cookie "cxsparse"   8 u64 data offset (unused)   16 u64 BAT offset
//!  24 u32 version   28 u32 max table entries   32 u32 block size (power of two)
//!  36 u32 checksum (as the footer's)   40 parent unique id[16]   56 u32 parent timestamp
//!  64 parent name (UTF-16, 512 bytes)   576 8 parent locators of 24 bytes (platform code
//!      u32 first; any non-zero code is refused)
//!
//! BAT: max table entries u32 sector numbers (0xffffffff = unallocated).
//! block: a sector bitmap (block size / 512 bits, padded to 512 bytes; ignored for
//!   dynamic disks, as qemu does), then block size bytes of data.
//! ```
//!
//! The virtual size follows qemu: images made by Virtual PC (`vpc `) or old qemu (`qemu`)
//! use the CHS geometry (cylinders × heads × sectors × 512) unless it is the maximum
//! geometry; every other creator (Hyper-V, disk2vhd, qemu's `qem2`, us) uses current size.

pub(crate) mod write;

use crate::map::{Mapping, UnitMap, unit_reader};
use crate::raw::RawReader;
use crate::src::{Src, be16, be32, be64};
use crate::{DiskReader, Limits, Result};

/// The footer cookie.
pub const COOKIE: &[u8; 8] = b"conectix";
const DYN_COOKIE: &[u8; 8] = b"cxsparse";
const UNALLOCATED: u32 = u32::MAX;

/// The checksum of a footer or dynamic header: the ones' complement of the byte sum with
/// the 4-byte checksum field at `field` taken as zero.
pub(crate) fn checksum(b: &[u8], field: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |s, (_, &x)| s.wrapping_add(u32::from(x)));
    !sum
}

/// Opens a fixed or dynamic VHD.
pub(crate) fn open(src: Src, limits: Limits) -> Result<Box<dyn DiskReader>> {
    if src.len < 512 {
        return Err(src.corrupt(0, "file is shorter than a VHD footer"));
    }
    let footer_at = src.len - 512;
    let mut f = [0u8; 512];
    src.read(footer_at, &mut f, "footer")?;
    if &f[..8] != COOKIE {
        return Err(src.corrupt(footer_at, "no footer in the last sector (truncated?)"));
    }
    let sum = be32(&f, 64);
    if checksum(&f, 64) != sum {
        return Err(src.corrupt(
            footer_at + 64,
            format!(
                "footer checksum {sum:#x} is wrong (expected {:#x})",
                checksum(&f, 64)
            ),
        ));
    }
    let current = be64(&f, 48);
    let (cyls, heads, secs) = (u64::from(be16(&f, 56)), u64::from(f[58]), u64::from(f[59]));
    let chs_max = cyls == 65535 && heads == 16 && secs == 255;
    let size = if (&f[28..32] == b"vpc " || &f[28..32] == b"qemu") && !chs_max {
        cyls * heads * secs * 512
    } else {
        current
    };
    src.check_virtual_size(size, &limits)?;
    match be32(&f, 60) {
        2 => {
            if size > footer_at {
                return Err(src.corrupt(
                    48,
                    format!(
                        "fixed disk of {size} bytes in a file of {} (truncated?)",
                        src.len
                    ),
                ));
            }
            Ok(Box::new(RawReader::with_size(src, size, limits)?))
        }
        3 => Ok(Box::new(VhdReader::open(src, &f, size, limits)?)),
        4 => Err(src.refuse("it is a differencing disk (it needs a parent image)")),
        t => Err(src.corrupt(footer_at + 60, format!("unknown disk type {t}"))),
    }
}

/// Reader of a dynamic VHD.
#[derive(Debug)]
pub struct VhdReader {
    src: Src,
    size: u64,
    block: u64,
    bitmap: u64,
    bat: Vec<u32>,
}

impl VhdReader {
    fn open(src: Src, footer: &[u8], size: u64, limits: Limits) -> Result<VhdReader> {
        let footer_at = src.len - 512;
        let hdr_at = be64(footer, 16);
        if hdr_at < 512 || hdr_at.checked_add(1024).is_none_or(|e| e > footer_at) {
            return Err(src.corrupt(
                16,
                format!("dynamic header offset {hdr_at} is outside the file"),
            ));
        }
        let mut h = [0u8; 1024];
        src.read(hdr_at, &mut h, "dynamic header")?;
        if &h[..8] != DYN_COOKIE {
            return Err(src.corrupt(hdr_at, "bad dynamic header cookie"));
        }
        if checksum(&h, 36) != be32(&h, 36) {
            return Err(src.corrupt(hdr_at + 36, "dynamic header checksum is wrong"));
        }
        for i in 0..8 {
            let code = be32(&h, 576 + i * 24);
            if code != 0 {
                return Err(src.refuse(format!("it has a parent locator (platform code {code:#x}); differencing disks are refused")));
            }
        }
        let bat_at = be64(&h, 16);
        let entries = u64::from(be32(&h, 28));
        let block = u64::from(be32(&h, 32));
        if !block.is_power_of_two() || !(512..=(256 << 20)).contains(&block) {
            return Err(src.corrupt(hdr_at + 32, format!("bad block size {block}")));
        }
        let blocks = size.div_ceil(block);
        if entries < blocks {
            return Err(src.corrupt(
                hdr_at + 28,
                format!("{entries} BAT entries cannot cover {size} bytes"),
            ));
        }
        let bat_bytes = blocks * 4;
        if bat_at < 512 || (bat_at < hdr_at + 1024 && hdr_at < bat_at + bat_bytes) {
            return Err(src.corrupt(
                hdr_at + 16,
                format!("BAT at {bat_at} overlaps the header or footer"),
            ));
        }
        if bat_at.checked_add(bat_bytes).is_none_or(|e| e > footer_at) {
            return Err(src.corrupt(
                hdr_at + 16,
                format!("BAT at {bat_at} extends past the footer"),
            ));
        }
        let raw = src.read_vec(bat_at, bat_bytes, &limits, "BAT")?;
        let bitmap = (block / 512).div_ceil(8).div_ceil(512) * 512;
        let mut bat = Vec::with_capacity(blocks as usize);
        for (i, e) in raw.chunks_exact(4).enumerate() {
            let sector = be32(e, 0);
            if sector != UNALLOCATED {
                let start = u64::from(sector) * 512;
                if start < 512 || start + bitmap + block > src.len {
                    return Err(src.corrupt(
                        bat_at + i as u64 * 4,
                        format!("BAT entry {i}: block at {start} is outside the file"),
                    ));
                }
            }
            bat.push(sector);
        }
        Ok(VhdReader {
            src,
            size,
            block,
            bitmap,
            bat,
        })
    }
}

impl UnitMap for VhdReader {
    fn src(&self) -> &Src {
        &self.src
    }

    fn unit_size(&self) -> u64 {
        self.block
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn map(&self, block: u64) -> Result<Mapping> {
        match self.bat.get(block as usize) {
            Some(&UNALLOCATED) => Ok(Mapping::Zero),
            Some(&sector) => Ok(Mapping::Data(u64::from(sector) * 512 + self.bitmap)),
            None => Err(self
                .src
                .corrupt(0, format!("block {block} is beyond the BAT"))),
        }
    }
}

unit_reader!(VhdReader);
