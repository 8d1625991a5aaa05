//! VMDK sparse extents with an embedded descriptor (`monolithicSparse`, and
//! `streamOptimized` with compressed grains and markers): reader here, streamOptimized
//! writer in [`write`].
//!
//! ```text
//! sector 0: sparse extent header (little-endian)
//!   0  u32 magic "KDMV"          4  u32 version (1..=3)     8  u32 flags
//!  12  u64 capacity (sectors)   20  u64 grainSize (sectors, power of two, <= 4096)
//!  28  u64 descriptorOffset     36  u64 descriptorSize (sectors)
//!  44  u32 numGTEsPerGT (<= 512) 48 u64 rgdOffset   56  u64 gdOffset (sectors)
//!  64  u64 overHead  72 u8 uncleanShutdown  73..77 newline test chars
//!  77  u16 compressAlgorithm (1 = deflate)
//! flags: bit 0 valid newline test, bit 1 redundant grain table, bit 2 "GTE 1 means a
//!   zeroed grain", bit 16 compressed grains, bit 17 markers.
//!
//! descriptor (text, descriptorSize sectors at descriptorOffset):
//!   createType="monolithicSparse" | "streamOptimized"   (anything else is refused)
//!   parentCID=ffffffff                                   (a parent is refused)
//!   RW <sectors> SPARSE "name.vmdk"                       (exactly one SPARSE extent;
//!                                                         it is this file, whatever
//!                                                         its name; FLAT, ZERO, VMFS*
//!                                                         and further extents are refused)
//!
//! grain directory (GD) at gdOffset: u32 sector of each grain table (0 = none).
//! grain table (GT): numGTEsPerGT u32 entries, each the sector of a grain
//!   (0 = unallocated, 1 = zeroed grain when flag bit 2 is set).
//! compressed grain (flag bit 16): with markers (bit 17) a u64 lba and a u32 size, then
//!   `size` bytes of zlib data (at +12); without markers the zlib data starts at the
//!   grain's sector and is at most two grains long.
//!
//! streamOptimized: gdOffset in the header is GD_AT_END (all ones); the real header is the
//! footer at end-1024, after a footer marker (type 3) and before the end-of-stream marker.
//!   marker: u64 value, u32 size (0 for metadata markers), u32 type
//!   (0 EOS, 1 grain table, 2 grain directory, 3 footer), padded to a sector.
//! ```
//!
//! Grain tables, the grain directory and grains must lie inside the file and after the
//! header and descriptor.

pub(crate) mod write;

use crate::map::{Mapping, UnitMap, unit_reader};
use crate::src::{Src, le16, le32, le64};
use crate::{Limits, Result};

/// The magic at offset 0 (`KDMV` read as a little-endian u32 is 0x564d444b).
pub const MAGIC: [u8; 4] = *b"KDMV";

pub(crate) const GD_AT_END: u64 = u64::MAX;
pub(crate) const FLAG_ZERO_GRAIN: u32 = 1 << 2;
pub(crate) const FLAG_COMPRESSED: u32 = 1 << 16;
pub(crate) const FLAG_MARKERS: u32 = 1 << 17;
const MAX_DESCRIPTOR: u64 = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Header {
    version: u32,
    flags: u32,
    capacity: u64,
    grain: u64,
    desc_offset: u64,
    desc_size: u64,
    gtes: u64,
    gd_offset: u64,
    compress: u16,
}

fn parse_header(src: &Src, at: u64) -> Result<Header> {
    let mut h = [0u8; 512];
    src.read(at, &mut h, "sparse extent header")?;
    if h[..4] != MAGIC {
        return Err(src.corrupt(at, "bad magic"));
    }
    Ok(Header {
        version: le32(&h, 4),
        flags: le32(&h, 8),
        capacity: le64(&h, 12),
        grain: le64(&h, 20),
        desc_offset: le64(&h, 28),
        desc_size: le64(&h, 36),
        gtes: u64::from(le32(&h, 44)),
        gd_offset: le64(&h, 56),
        compress: le16(&h, 77),
    })
}

/// Reader of a monolithicSparse or streamOptimized VMDK.
#[derive(Debug)]
pub struct VmdkReader {
    src: Src,
    size: u64,
    grain_bytes: u64,
    gtes: u64,
    flags: u32,
    gd: Vec<u64>,
    /// File bytes before this belong to the header and descriptor.
    meta_end: u64,
}

impl VmdkReader {
    pub(crate) fn open(src: Src, limits: Limits) -> Result<VmdkReader> {
        let mut h = parse_header(&src, 0)?;
        if !(1..=3).contains(&h.version) {
            return Err(src.refuse(format!("unsupported version {}", h.version)));
        }
        let mut meta_end = 512u64;
        if h.desc_offset != 0 {
            let (off, len) = (h.desc_offset.checked_mul(512), h.desc_size.checked_mul(512));
            let (Some(off), Some(len)) = (off, len) else {
                return Err(src.corrupt(28, "descriptor offset overflows"));
            };
            if len > MAX_DESCRIPTOR || off == 0 {
                return Err(src.corrupt(28, format!("bad descriptor at {off}, {len} bytes")));
            }
            let text = src.read_vec(off, len, &limits, "descriptor")?;
            check_descriptor(&src, off, &text, h.capacity)?;
            meta_end = meta_end.max(off + len);
        }
        if h.flags & FLAG_MARKERS != 0 && h.gd_offset == GD_AT_END {
            if src.len < 1536 + 512 {
                return Err(src.corrupt(0, "streamOptimized file too short for a footer"));
            }
            let marker_at = src.len - 1536;
            let mut m = [0u8; 16];
            src.read(marker_at, &mut m, "footer marker")?;
            if le32(&m, 12) != 3 {
                return Err(
                    src.corrupt(marker_at, "no footer marker before the footer (truncated?)")
                );
            }
            let footer = parse_header(&src, src.len - 1024)?;
            if footer.capacity != h.capacity || footer.grain != h.grain || footer.gtes != h.gtes {
                return Err(src.corrupt(src.len - 1024, "footer disagrees with the header"));
            }
            h.gd_offset = footer.gd_offset;
            h.flags = footer.flags;
        }
        if h.flags & FLAG_COMPRESSED != 0 && h.compress != 1 {
            return Err(src.refuse(format!("unknown compression algorithm {}", h.compress)));
        }
        let size = h
            .capacity
            .checked_mul(512)
            .ok_or_else(|| src.too_large("capacity overflows"))?;
        src.check_virtual_size(size, &limits)?;
        if !h.grain.is_power_of_two() || h.grain > 4096 {
            return Err(src.corrupt(20, format!("bad grain size {} sectors", h.grain)));
        }
        if h.gtes == 0 || h.gtes > 512 {
            return Err(src.corrupt(44, format!("bad numGTEsPerGT {}", h.gtes)));
        }
        let grain_bytes = h.grain * 512;
        let gt_count = size.div_ceil(grain_bytes * h.gtes);
        let gd_at = h
            .gd_offset
            .checked_mul(512)
            .ok_or_else(|| src.corrupt(56, "gdOffset overflows"))?;
        if gt_count > 0 && gd_at < meta_end {
            return Err(src.corrupt(
                56,
                format!("grain directory at {gd_at} overlaps the header"),
            ));
        }
        let raw = src.read_vec(gd_at, gt_count * 4, &limits, "grain directory")?;
        let mut gd = Vec::with_capacity(gt_count as usize);
        for (i, e) in raw.chunks_exact(4).enumerate() {
            let gt = u64::from(le32(e, 0)) * 512;
            if gt != 0 {
                if gt < meta_end {
                    return Err(src.corrupt(
                        gd_at + i as u64 * 4,
                        format!("grain table {i} overlaps the header"),
                    ));
                }
                src.check(gt, h.gtes * 4, &format!("grain table {i}"))?;
            }
            gd.push(gt);
        }
        Ok(VmdkReader {
            src,
            size,
            grain_bytes,
            gtes: h.gtes,
            flags: h.flags,
            gd,
            meta_end,
        })
    }
}

/// Accepts only a descriptor whose one extent is the embedded sparse one.
fn check_descriptor(src: &Src, at: u64, text: &[u8], capacity: u64) -> Result<()> {
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let text = String::from_utf8_lossy(&text[..end]);
    let mut create_type = None;
    let mut extents = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let (key, value) = (key.trim(), value.trim().trim_matches('"'));
            match key.to_ascii_lowercase().as_str() {
                "createtype" => create_type = Some(value.to_owned()),
                "parentcid" if !value.eq_ignore_ascii_case("ffffffff") => {
                    return Err(src.refuse(format!("it has a parent (parentCID={value})")));
                }
                "parentfilenamehint" => {
                    return Err(src.refuse(format!("it names a parent file ({value})")));
                }
                _ => {}
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if matches!(words.first(), Some(&("RW" | "RDONLY" | "NOACCESS"))) {
            extents += 1;
            let kind = words.get(2).copied().unwrap_or("");
            if kind != "SPARSE" || extents > 1 {
                return Err(src.refuse(format!(
                    "descriptor names an extent other than the embedded sparse one: {line:?} \
                     (only monolithicSparse and streamOptimized single-file images are accepted)"
                )));
            }
            let sectors = words.get(1).and_then(|s| s.parse::<u64>().ok());
            if sectors != Some(capacity) {
                return Err(src.corrupt(
                    at,
                    format!("extent size in {line:?} differs from the capacity {capacity}"),
                ));
            }
        }
    }
    match create_type.as_deref() {
        Some(t)
            if t.eq_ignore_ascii_case("monolithicSparse")
                || t.eq_ignore_ascii_case("streamOptimized") => {}
        Some(t) => {
            return Err(src.refuse(format!(
                "createType {t:?} is not a single-file sparse image (monolithicSparse or streamOptimized)"
            )));
        }
        None => return Err(src.corrupt(at, "descriptor has no createType")),
    }
    if extents != 1 {
        return Err(src.corrupt(at, "descriptor names no extent"));
    }
    Ok(())
}

impl UnitMap for VmdkReader {
    fn src(&self) -> &Src {
        &self.src
    }

    fn unit_size(&self) -> u64 {
        self.grain_bytes
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn map(&self, grain: u64) -> Result<Mapping> {
        let Some(&gt) = self.gd.get((grain / self.gtes) as usize) else {
            return Err(self
                .src
                .corrupt(0, format!("grain {grain} is beyond the grain directory")));
        };
        if gt == 0 {
            return Ok(Mapping::Zero);
        }
        let at = gt + (grain % self.gtes) * 4;
        let mut e = [0u8; 4];
        self.src.read(at, &mut e, "grain table entry")?;
        let sector = u64::from(u32::from_le_bytes(e));
        if sector == 0 || (sector == 1 && self.flags & FLAG_ZERO_GRAIN != 0) {
            return Ok(Mapping::Zero);
        }
        let offset = sector * 512;
        if offset < self.meta_end {
            return Err(self.src.corrupt(
                at,
                format!("grain {grain} points into the header ({offset})"),
            ));
        }
        if self.flags & FLAG_COMPRESSED != 0 {
            return Ok(Mapping::Compressed { offset, len: 0 });
        }
        Ok(Mapping::Data(offset))
    }

    fn decompress(&self, grain: u64, offset: u64, _len: u64, out: &mut [u8]) -> Result<()> {
        let max = 2 * self.grain_bytes + 1024;
        let (data_at, len) = if self.flags & FLAG_MARKERS != 0 {
            let mut m = [0u8; 12];
            self.src.read(offset, &mut m, "grain marker")?;
            let (lba, len) = (le64(&m, 0), u64::from(le32(&m, 8)));
            if lba != grain * (self.grain_bytes / 512) {
                return Err(self
                    .src
                    .corrupt(offset, format!("grain {grain}: marker says LBA {lba}")));
            }
            if len == 0 || len > max {
                return Err(self
                    .src
                    .corrupt(offset, format!("grain {grain}: compressed size {len}")));
            }
            (offset + 12, len)
        } else {
            (offset, max.min(self.src.len - offset))
        };
        let mut input = vec![0u8; len as usize];
        self.src.read(data_at, &mut input, "compressed grain")?;
        let mut d = flate2::Decompress::new(true);
        let bad = |what: String| self.src.corrupt(offset, format!("grain {grain}: {what}"));
        d.decompress(&input, out, flate2::FlushDecompress::Finish)
            .map_err(|e| bad(format!("inflate: {e}")))?;
        let need = self.grain_bytes.min(self.size - grain * self.grain_bytes);
        let got = d.total_out();
        if got < need {
            return Err(bad(format!("inflates to {got} bytes, {need} needed")));
        }
        out[got as usize..].fill(0);
        Ok(())
    }
}

unit_reader!(VmdkReader);
