//! qcow2 (QEMU copy-on-write, versions 2 and 3): reader here, writer in [`write`].
//!
//! ```text
//! offset  size  field (big-endian)                 what we do with it
//!      0     4  magic "QFI\xfb"
//!      4     4  version                            2 or 3
//!      8     8  backing_file_offset                must be 0 (else refused)
//!     16     4  backing_file_size                  must be 0
//!     20     4  cluster_bits                       9..=21
//!     24     8  size (virtual, bytes)              <= Limits::max_virtual_size
//!     32     4  crypt_method                       must be 0 (else refused)
//!     36     4  l1_size (entries)                  >= entries the size needs
//!     40     8  l1_table_offset                    cluster-aligned, inside the file
//!     48     8  refcount_table_offset              unused for reading
//!     56     4  refcount_table_clusters
//!     60     4  nb_snapshots                       internal snapshots: ignored
//!     64     8  snapshots_offset
//!  -- v3 only --
//!     72     8  incompatible_features              bit 0 dirty (ok), 1 corrupt (refused),
//!                                                  2 external data file (refused),
//!                                                  3 compression type (ok), 4 extended
//!                                                  L2 (refused), others refused
//!     80     8  compatible_features                ignored
//!     88     8  autoclear_features                 ignored
//!     96     4  refcount_order
//!    100     4  header_length
//!    104     1  compression_type                   0 deflate, 1 zstd
//!
//! header extensions (from header_length, or 72 in v2, up to the end of cluster 0):
//!   u32 type, u32 length, data padded to 8; type 0 ends the list. Refused: 0xe2792aca
//!   (backing file format), 0x0537be77 (full disk encryption), 0x44415441 (external data
//!   file). Others are skipped.
//!
//! L1 entry (u64): bits 9..55 offset of an L2 table (0 = unallocated), bit 63 "copied".
//! L2 table: one cluster of u64 entries, cluster_size / 8 of them.
//! L2 entry, standard: bit 0 reads as zero (v3), bits 9..55 host cluster offset
//!   (0 = unallocated), bit 63 "copied".
//! L2 entry, compressed (bit 62): x = 62 - (cluster_bits - 8); bits 0..x host byte
//!   offset, bits x..61 additional 512-byte sectors; compressed length =
//!   (sectors + 1) * 512 - (offset % 512). Raw deflate (no zlib header) or a zstd frame.
//! ```
//!
//! L2 tables and data clusters must be cluster-aligned, inside the file and not in
//! cluster 0 (the header); L2 tables must also not overlap the L1 table. Refcounts are not
//! needed for reading and are not checked.

pub(crate) mod write;

use std::io::Read as _;

use crate::map::{Mapping, UnitMap, unit_reader};
use crate::src::{Src, be32, be64};
use crate::{Limits, Result};

/// The magic at offset 0.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_CRYPTO: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Deflate,
    Zstd,
}

/// Reader of a qcow2 image.
#[derive(Debug)]
pub struct Qcow2Reader {
    src: Src,
    size: u64,
    cluster_bits: u32,
    v3: bool,
    compression: Compression,
    l1: Vec<u64>,
}

impl Qcow2Reader {
    pub(crate) fn open(src: Src, limits: Limits) -> Result<Qcow2Reader> {
        if src.len < 72 {
            return Err(src.corrupt(0, "file is shorter than a qcow2 header"));
        }
        let mut h = [0u8; 112];
        let hlen = (src.len.min(112)) as usize;
        src.read(0, &mut h[..hlen], "header")?;
        if h[..4] != MAGIC {
            return Err(src.corrupt(0, "bad magic"));
        }
        let version = be32(&h, 4);
        if version != 2 && version != 3 {
            return Err(src.refuse(format!("unsupported version {version}")));
        }
        let v3 = version == 3;
        let backing_offset = be64(&h, 8);
        let backing_size = be32(&h, 16);
        let cluster_bits = be32(&h, 20);
        let size = be64(&h, 24);
        let crypt = be32(&h, 32);
        let l1_size = u64::from(be32(&h, 36));
        let l1_offset = be64(&h, 40);
        if !(9..=21).contains(&cluster_bits) {
            return Err(src.corrupt(20, format!("cluster_bits {cluster_bits} is not in 9..=21")));
        }
        let cs = 1u64 << cluster_bits;
        if backing_offset != 0 || backing_size != 0 {
            let name = backing_name(&src, backing_offset, backing_size, cs);
            return Err(src.refuse(format!(
                "it has a backing file{name}; only self-contained images are accepted \
                 (flatten it first: qemu-img convert -O qcow2 in.qcow2 out.qcow2)"
            )));
        }
        if crypt != 0 {
            return Err(src.refuse(format!("it is encrypted (crypt_method {crypt})")));
        }
        src.check_virtual_size(size, &limits)?;

        let (header_length, compression) = if v3 {
            if src.len < 104 {
                return Err(src.corrupt(0, "file is shorter than a qcow2 v3 header"));
            }
            let incompat = be64(&h, 72);
            if incompat & INCOMPAT_CORRUPT != 0 {
                return Err(src.corrupt(72, "the image is marked corrupt (incompatible bit 1)"));
            }
            if incompat & INCOMPAT_DATA_FILE != 0 {
                return Err(src.refuse("it uses an external data file (incompatible bit 2)"));
            }
            if incompat & INCOMPAT_EXTL2 != 0 {
                return Err(src.refuse("extended L2 entries (subclusters) are not supported"));
            }
            let known = INCOMPAT_DIRTY | INCOMPAT_COMPRESSION;
            if incompat & !known != 0 {
                return Err(src.refuse(format!(
                    "unknown incompatible features {:#x}",
                    incompat & !known
                )));
            }
            let header_length = u64::from(be32(&h, 100));
            if header_length < 104 || header_length % 8 != 0 || header_length > cs {
                return Err(src.corrupt(100, format!("bad header_length {header_length}")));
            }
            let ctype = if header_length > 104 { h[104] } else { 0 };
            let compression = match ctype {
                0 => Compression::Deflate,
                1 if incompat & INCOMPAT_COMPRESSION != 0 => Compression::Zstd,
                other => {
                    return Err(src.refuse(format!("unsupported compression type {other}")));
                }
            };
            (header_length, compression)
        } else {
            (72, Compression::Deflate)
        };
        check_extensions(&src, header_length, cs)?;

        // L1 table.
        let l2_bits = cluster_bits - 3;
        let l1_needed = size.div_ceil(cs << l2_bits);
        if l1_size < l1_needed {
            return Err(src.corrupt(
                36,
                format!("l1_size {l1_size} is too small for {size} bytes ({l1_needed} needed)"),
            ));
        }
        let l1_bytes = l1_needed * 8;
        if l1_needed > 0 && (!l1_offset.is_multiple_of(cs) || l1_offset < cs) {
            return Err(src.corrupt(40, format!("bad l1_table_offset {l1_offset}")));
        }
        let raw = src.read_vec(l1_offset, l1_bytes, &limits, "L1 table")?;
        let l1_end = l1_offset + l1_size.saturating_mul(8);
        let mut l1 = Vec::with_capacity(l1_needed as usize);
        for (i, e) in raw.chunks_exact(8).enumerate() {
            let l2 = be64(e, 0) & OFFSET_MASK;
            let at = l1_offset + i as u64 * 8;
            if l2 != 0 {
                if !l2.is_multiple_of(cs) || l2 < cs {
                    return Err(src.corrupt(at, format!("L1 entry {i}: bad L2 offset {l2}")));
                }
                if l2 < l1_end && l1_offset < l2 + cs {
                    return Err(
                        src.corrupt(at, format!("L1 entry {i}: L2 table overlaps the L1 table"))
                    );
                }
                src.check(l2, cs, &format!("L2 table of L1 entry {i}"))?;
            }
            l1.push(l2);
        }
        Ok(Qcow2Reader {
            src,
            size,
            cluster_bits,
            v3,
            compression,
            l1,
        })
    }
}

/// " \"NAME\"" for the refusal message, if the name is readable.
fn backing_name(src: &Src, offset: u64, len: u32, cs: u64) -> String {
    let end = offset.checked_add(u64::from(len));
    if offset == 0 || len == 0 || len > 1023 || end.is_none_or(|end| end > cs) {
        return String::new();
    }
    let mut buf = vec![0u8; len as usize];
    match src.read(offset, &mut buf, "backing file name") {
        Ok(()) => format!(" {:?}", String::from_utf8_lossy(&buf)),
        Err(_) => String::new(),
    }
}

fn check_extensions(src: &Src, start: u64, cs: u64) -> Result<()> {
    let end = cs.min(src.len);
    let mut at = start;
    while at + 8 <= end {
        let mut e = [0u8; 8];
        src.read(at, &mut e, "header extension")?;
        let (kind, len) = (be32(&e, 0), u64::from(be32(&e, 4)));
        match kind {
            0 => return Ok(()),
            EXT_BACKING_FORMAT => return Err(src.refuse("it names a backing file format")),
            EXT_CRYPTO => return Err(src.refuse("it has an encryption header")),
            EXT_DATA_FILE => return Err(src.refuse("it names an external data file")),
            _ => {}
        }
        let next = at + 8 + len.div_ceil(8) * 8;
        if next > end {
            return Err(src.corrupt(
                at,
                format!("header extension {kind:#x} of {len} bytes overruns cluster 0"),
            ));
        }
        at = next;
    }
    Ok(())
}

impl UnitMap for Qcow2Reader {
    fn src(&self) -> &Src {
        &self.src
    }

    fn unit_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn map(&self, cluster: u64) -> Result<Mapping> {
        let l2_bits = self.cluster_bits - 3;
        let cs = 1u64 << self.cluster_bits;
        let Some(&l2) = self.l1.get((cluster >> l2_bits) as usize) else {
            return Err(self
                .src
                .corrupt(0, format!("cluster {cluster} is beyond the L1 table")));
        };
        if l2 == 0 {
            return Ok(Mapping::Zero);
        }
        let at = l2 + (cluster & ((1 << l2_bits) - 1)) * 8;
        let mut e = [0u8; 8];
        self.src.read(at, &mut e, "L2 entry")?;
        let entry = u64::from_be_bytes(e);
        if entry & COMPRESSED != 0 {
            let x = 62 - (self.cluster_bits - 8);
            let offset = entry & ((1u64 << x) - 1);
            let sectors = ((entry >> x) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
            let len = sectors * 512 - (offset % 512);
            if offset < cs || offset >= self.src.len {
                return Err(self.src.corrupt(
                    at,
                    format!("compressed cluster {cluster} at bad offset {offset}"),
                ));
            }
            return Ok(Mapping::Compressed { offset, len });
        }
        if self.v3 && entry & 1 != 0 {
            return Ok(Mapping::Zero);
        }
        let host = entry & OFFSET_MASK;
        if host == 0 {
            return Ok(Mapping::Zero);
        }
        if !host.is_multiple_of(cs) || host < cs {
            return Err(self
                .src
                .corrupt(at, format!("cluster {cluster}: bad data offset {host}")));
        }
        Ok(Mapping::Data(host))
    }

    fn decompress(&self, cluster: u64, offset: u64, len: u64, out: &mut [u8]) -> Result<()> {
        // The last compressed cluster may end short of its sector-rounded length.
        let len = len.min(self.src.len - offset);
        let mut input = vec![0u8; len as usize];
        self.src.read(offset, &mut input, "compressed cluster")?;
        let bad = |what: String| {
            self.src
                .corrupt(offset, format!("compressed cluster {cluster}: {what}"))
        };
        match self.compression {
            Compression::Deflate => {
                let mut d = flate2::Decompress::new(false);
                match d.decompress(&input, out, flate2::FlushDecompress::Finish) {
                    Ok(_) if d.total_out() == out.len() as u64 => Ok(()),
                    Ok(_) => Err(bad(format!(
                        "inflates to {} bytes, not {}",
                        d.total_out(),
                        out.len()
                    ))),
                    Err(e) => Err(bad(format!("deflate: {e}"))),
                }
            }
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(&input[..])
                    .map_err(|e| bad(format!("zstd: {e}")))?;
                d.window_log_max(22)
                    .map_err(|e| bad(format!("zstd: {e}")))?;
                d.read_exact(out).map_err(|e| bad(format!("zstd: {e}")))
            }
        }
    }
}

unit_reader!(Qcow2Reader);
