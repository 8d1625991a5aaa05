//! VHDX (Hyper-V), read only; differencing disks and images with a log to replay are
//! refused.
//!
//! ```text
//! 0       file identifier: "vhdxfile", creator (UTF-16)
//! 64 KiB  header 1 }  4 KiB each, little-endian: "head", u32 CRC-32C (over 4 KiB with the
//! 128 KiB header 2 }  field zeroed), u64 sequence number, file/data/log GUIDs (16 each),
//!                     u16 log version, u16 version (1), u32 log length, u64 log offset.
//!                     The valid header with the higher sequence number wins; a non-zero
//!                     log GUID means an unreplayed log: refused.
//! 192 KiB region table 1 }  64 KiB: "regi", u32 CRC-32C (over 64 KiB), u32 entry count
//! 256 KiB region table 2 }  (<= 2047), u32 reserved; entries of 32 bytes: GUID, u64 file
//!                           offset, u32 length, u32 flags (bit 0 required). Regions must be
//!                           1 MiB-aligned, inside the file, past 1 MiB and not overlap.
//!                           Known: BAT, metadata. An unknown required region is refused.
//! metadata region: "metadata", u16 reserved, u16 entry count (<= 2047), 20 reserved;
//!   entries of 32 bytes: item GUID, u32 offset (in the region), u32 length, u32 flags
//!   (bit 2 required). Items used: file parameters (u32 block size, u32 flags: bit 1 "has
//!   parent" is refused), virtual disk size (u64), logical sector size (u32, 512 or 4096).
//!   A parent locator item or an unknown required item is refused.
//! BAT: u64 entries; bits 0..2 state, bits 20..63 file offset in MiB. After every
//!   `chunk ratio` = 2^23 × logical sector size / block size payload entries comes one
//!   sector bitmap entry (unused without a parent). Payload states: 0 not present,
//!   1 undefined, 2 zero, 3 unmapped (all read as zeros), 6 fully present (data at the
//!   offset), 7 partially present (differencing only: refused).
//! ```

use crate::map::{Mapping, UnitMap, unit_reader};
use crate::src::{Src, crc32c, le16, le32, le64};
use crate::{Limits, MIB, Result};

/// The file identifier at offset 0.
pub const FILE_MAGIC: &[u8; 8] = b"vhdxfile";

const KIB: u64 = 1024;
const BAT_GUID: [u8; 16] = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
const METADATA_GUID: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
const FILE_PARAMETERS: [u8; 16] = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
const LOGICAL_SECTOR_SIZE: [u8; 16] = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
const VIRTUAL_DISK_ID: [u8; 16] = guid(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
const PHYSICAL_SECTOR_SIZE: [u8; 16] = guid(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);
const PARENT_LOCATOR: [u8; 16] = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);

/// A GUID in its on-disk byte order (first three fields little-endian).
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// Reader of a VHDX.
#[derive(Debug)]
pub struct VhdxReader {
    src: Src,
    size: u64,
    block: u64,
    chunk_ratio: u64,
    bat: Vec<u64>,
}

impl VhdxReader {
    pub(crate) fn open(src: Src, limits: Limits) -> Result<VhdxReader> {
        if src.len < 320 * KIB {
            return Err(src.corrupt(0, "file is shorter than the VHDX header section"));
        }
        let mut id = [0u8; 8];
        src.read(0, &mut id, "file identifier")?;
        if &id != FILE_MAGIC {
            return Err(src.corrupt(0, "bad file identifier"));
        }
        // Headers.
        let mut best: Option<(u64, [u8; 16])> = None;
        for at in [64 * KIB, 128 * KIB] {
            let mut h = vec![0u8; 4096];
            src.read(at, &mut h, "header")?;
            if &h[..4] != b"head" || !crc_ok(&mut h, 4) {
                continue;
            }
            let seq = le64(&h, 8);
            let mut log = [0u8; 16];
            log.copy_from_slice(&h[48..64]);
            if best.is_none_or(|(s, _)| seq > s) {
                best = Some((seq, log));
            }
        }
        let Some((_, log)) = best else {
            return Err(src.corrupt(64 * KIB, "no header with a valid signature and CRC-32C"));
        };
        if log != [0u8; 16] {
            return Err(src.refuse("its log has entries to replay (open and close it in Hyper-V or run `qemu-img check -r all` first)"));
        }
        // Region tables: the first valid one.
        let mut regions = None;
        for at in [192 * KIB, 256 * KIB] {
            let mut r = vec![0u8; (64 * KIB) as usize];
            src.read(at, &mut r, "region table")?;
            if &r[..4] == b"regi" && crc_ok(&mut r, 4) {
                regions = Some((at, r));
                break;
            }
        }
        let Some((rt_at, rt)) = regions else {
            return Err(src.corrupt(
                192 * KIB,
                "no region table with a valid signature and CRC-32C",
            ));
        };
        let count = le32(&rt, 8) as usize;
        if count > 2047 {
            return Err(src.corrupt(rt_at + 8, format!("{count} region entries (at most 2047)")));
        }
        let (mut bat_region, mut meta_region) = (None, None);
        let mut seen: Vec<(u64, u64)> = Vec::new();
        for i in 0..count {
            let e = &rt[16 + i * 32..48 + i * 32];
            let at = rt_at + 16 + i as u64 * 32;
            let (off, len, required) = (le64(e, 16), u64::from(le32(e, 24)), le32(e, 28) & 1 != 0);
            if off % MIB != 0 || off < MIB || len == 0 || len % MIB != 0 {
                return Err(src.corrupt(
                    at,
                    format!("region {i} at {off}, {len} bytes: not 1 MiB-aligned past the headers"),
                ));
            }
            src.check(off, len, &format!("region {i}"))?;
            if seen.iter().any(|&(o, l)| off < o + l && o < off + len) {
                return Err(src.corrupt(at, format!("region {i} overlaps another region")));
            }
            seen.push((off, len));
            if e[..16] == BAT_GUID {
                bat_region = Some((off, len));
            } else if e[..16] == METADATA_GUID {
                meta_region = Some((off, len));
            } else if required {
                return Err(src.refuse(format!("unknown required region {i}")));
            }
        }
        let (Some((bat_at, bat_len)), Some((meta_at, meta_len))) = (bat_region, meta_region) else {
            return Err(src.corrupt(
                rt_at,
                "the region table lacks the BAT or the metadata region",
            ));
        };
        let meta = Metadata::read(&src, meta_at, meta_len, &limits)?;
        src.check_virtual_size(meta.size, &limits)?;
        let chunk_ratio = ((1u64 << 23) * meta.sector) / meta.block;
        let blocks = meta.size.div_ceil(meta.block);
        let entries = blocks + blocks.saturating_sub(1) / chunk_ratio.max(1);
        let bat_bytes = entries * 8;
        if bat_bytes > limits.max_metadata_bytes {
            return Err(src.too_large(format!(
                "BAT of {bat_bytes} bytes is more than the limit of {} bytes",
                limits.max_metadata_bytes
            )));
        }
        if bat_bytes > bat_len {
            return Err(src.corrupt(
                bat_at,
                format!("BAT region of {bat_len} bytes is too small for {entries} entries"),
            ));
        }
        let raw = src.read_vec(bat_at, bat_bytes, &limits, "BAT")?;
        let mut bat = Vec::with_capacity(entries as usize);
        for (i, e) in raw.chunks_exact(8).enumerate() {
            let entry = le64(e, 0);
            let is_payload = !(i as u64 + 1).is_multiple_of(chunk_ratio + 1);
            let state = entry & 7;
            if is_payload {
                let at = bat_at + i as u64 * 8;
                match state {
                    0..=3 => {}
                    6 => {
                        let off = entry & !(MIB - 1);
                        if off < MIB {
                            return Err(src.corrupt(
                                at,
                                format!("BAT entry {i}: block in the header section ({off})"),
                            ));
                        }
                        if seen
                            .iter()
                            .any(|&(o, l)| off < o + l && o < off + meta.block)
                        {
                            return Err(src.corrupt(
                                at,
                                format!("BAT entry {i}: block overlaps a metadata region"),
                            ));
                        }
                        src.check(off, meta.block, &format!("payload block of BAT entry {i}"))?;
                    }
                    7 => return Err(src.refuse("a block is partially present (differencing disk)")),
                    s => return Err(src.corrupt(at, format!("BAT entry {i}: invalid state {s}"))),
                }
            }
            bat.push(entry);
        }
        Ok(VhdxReader {
            src,
            size: meta.size,
            block: meta.block,
            chunk_ratio,
            bat,
        })
    }
}

/// Checks (and restores) a structure whose CRC-32C field is at `field`.
fn crc_ok(buf: &mut [u8], field: usize) -> bool {
    let stored = le32(buf, field);
    buf[field..field + 4].fill(0);
    let ok = crc32c(buf) == stored;
    buf[field..field + 4].copy_from_slice(&stored.to_le_bytes());
    ok
}

struct Metadata {
    block: u64,
    size: u64,
    sector: u64,
}

impl Metadata {
    fn read(src: &Src, at: u64, len: u64, limits: &Limits) -> Result<Metadata> {
        let table = src.read_vec(at, 64 * KIB, limits, "metadata table")?;
        if &table[..8] != b"metadata" {
            return Err(src.corrupt(at, "bad metadata table signature"));
        }
        let count = usize::from(le16(&table, 10));
        if count > 2047 {
            return Err(src.corrupt(at + 10, format!("{count} metadata entries (at most 2047)")));
        }
        let (mut params, mut size, mut sector) = (None, None, None);
        for i in 0..count {
            let e = &table[32 + i * 32..64 + i * 32];
            let e_at = at + 32 + i as u64 * 32;
            let (off, ilen, flags) = (u64::from(le32(e, 16)), u64::from(le32(e, 20)), le32(e, 24));
            let item = |want: u64| -> Result<Vec<u8>> {
                if ilen < want || off < 64 * KIB || off + want > len {
                    return Err(src.corrupt(
                        e_at,
                        format!("metadata item {i} at {off}, {ilen} bytes is outside its region"),
                    ));
                }
                let mut b = vec![0u8; want as usize];
                src.read(at + off, &mut b, "metadata item")?;
                Ok(b)
            };
            let id = &e[..16];
            if id == FILE_PARAMETERS {
                let b = item(8)?;
                params = Some((u64::from(le32(&b, 0)), le32(&b, 4)));
            } else if id == VIRTUAL_DISK_SIZE {
                size = Some(le64(&item(8)?, 0));
            } else if id == LOGICAL_SECTOR_SIZE {
                sector = Some(u64::from(le32(&item(4)?, 0)));
            } else if id == VIRTUAL_DISK_ID || id == PHYSICAL_SECTOR_SIZE {
                // Known, not needed for reading.
            } else if id == PARENT_LOCATOR {
                return Err(src.refuse("it has a parent locator (differencing disk)"));
            } else if flags & 4 != 0 {
                return Err(src.refuse(format!("unknown required metadata item {i}")));
            }
        }
        let (Some((block, pflags)), Some(size), Some(sector)) = (params, size, sector) else {
            return Err(src.corrupt(
                at,
                "metadata lacks file parameters, virtual disk size or logical sector size",
            ));
        };
        if pflags & 2 != 0 {
            return Err(src.refuse("it has a parent (differencing disk)"));
        }
        if !block.is_power_of_two() || !(MIB..=256 * MIB).contains(&block) {
            return Err(src.corrupt(at, format!("bad block size {block}")));
        }
        if sector != 512 && sector != 4096 {
            return Err(src.corrupt(at, format!("bad logical sector size {sector}")));
        }
        Ok(Metadata {
            block,
            size,
            sector,
        })
    }
}

impl UnitMap for VhdxReader {
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
        let index = block + block / self.chunk_ratio;
        let Some(&entry) = self.bat.get(index as usize) else {
            return Err(self
                .src
                .corrupt(0, format!("block {block} is beyond the BAT")));
        };
        match entry & 7 {
            6 => Ok(Mapping::Data(entry & !(MIB - 1))),
            _ => Ok(Mapping::Zero),
        }
    }
}

unit_reader!(VhdxReader);
