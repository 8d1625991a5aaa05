//! Disk image formats: detect, read and write the virtual disk inside raw, qcow2, vmdk, vhd
//! and vhdx files, synchronously, with positioned reads, and refusing hostile images.
//!
//! * [`detect`] looks at magic bytes only; [`open`] detects, parses and validates the
//!   image's metadata against [`Limits`] and returns a [`DiskReader`] over its virtual
//!   disk. `read_at` returns the bytes a VM would see; [`DiskReader::range_is_zero`] says,
//!   from metadata alone, whether a range is unallocated (or zero-flagged) so callers can
//!   skip it without reading.
//! * [`DiskWriter`] writes raw (sparse), qcow2 v3, vmdk streamOptimized and dynamic vhd
//!   as a stream: blocks in increasing offset order, zero blocks skipped, then `finish`.
//!
//! # Hostile input
//!
//! Images come from users. Every reader reads only the one file it was given: formats that
//! can point at other files (qcow2 backing and external data files, vmdk extents other than
//! the embedded sparse one, vhd/vhdx differencing disks with parent locators) are refused at
//! `open`, as are encryption, unknown incompatible features, bad checksums (vhd footer and
//! dynamic header, vhdx CRC-32C), virtual sizes above [`Limits::max_virtual_size`], tables
//! larger than [`Limits::max_metadata_bytes`], and table entries that point into headers or
//! past the end of the file. Whatever else a corrupt file contains, a read either fails with
//! an [`Error`] or returns bytes that came from inside the file; allocations are bounded by
//! the limits and the format's cluster/grain/block size.
//!
//! # Why hand-written parsers
//!
//! `imago` (qcow2 and raw) is async-native with sync wrappers, covers one of the four
//! formats and changed its API between 0.1 and 0.2; the vmdk/vhd crates on crates.io are
//! small, little-used and do not promise to refuse extents or parents. One hand-written
//! reader per format, sharing one notion of limits and errors, is easier to audit and fuzz
//! (`fuzz/`), and keeps the dependency set to `flate2` (deflate, pure Rust) and `zstd`
//! (already in the workspace, for qcow2's zstd compression type).
//!
//! Modules: [`qcow2`], [`vmdk`], [`vhd`], [`vhdx`] (one per format, each draws its
//! layout), [`raw`], `map` (the shared cluster-mapped read loop), `src` (bounds-checked
//! positioned reads) and `writer` ([`DiskWriter`]).

#![forbid(unsafe_code)]

mod error;
mod map;
pub mod qcow2;
pub mod raw;
mod src;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
mod writer;

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

pub use error::{Error, Result};
pub use writer::DiskWriter;

/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// 1 GiB.
pub const GIB: u64 = 1 << 30;
/// 1 TiB.
pub const TIB: u64 = 1 << 40;

/// An image file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// The disk's bytes as they are (anything without a known magic).
    Raw,
    /// QEMU copy-on-write v2 or v3.
    Qcow2,
    /// VMware sparse extent (monolithicSparse or streamOptimized).
    Vmdk,
    /// Virtual PC / Hyper-V VHD, fixed or dynamic (qemu calls it `vpc`).
    Vhd,
    /// Hyper-V VHDX.
    Vhdx,
}

impl DiskFormat {
    /// The lower-case name (`raw`, `qcow2`, `vmdk`, `vhd`, `vhdx`).
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Vhdx => "vhdx",
        }
    }

    /// The name qemu-img uses for this format (`vpc` for vhd).
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Vhd => "vpc",
            other => other.name(),
        }
    }

    /// Parses a name as [`DiskFormat::name`] gives it (also `vpc` and `img` aliases,
    /// case-insensitive).
    pub fn from_name(name: &str) -> Option<DiskFormat> {
        match name.to_ascii_lowercase().as_str() {
            "raw" | "img" => Some(DiskFormat::Raw),
            "qcow2" => Some(DiskFormat::Qcow2),
            "vmdk" => Some(DiskFormat::Vmdk),
            "vhd" | "vpc" => Some(DiskFormat::Vhd),
            "vhdx" => Some(DiskFormat::Vhdx),
            _ => None,
        }
    }

    /// The format a file name's extension suggests (`.qcow2`, `.vmdk`, `.vhd`, `.vhdx`,
    /// `.raw`, `.img`), if any.
    pub fn from_extension(path: &Path) -> Option<DiskFormat> {
        path.extension()
            .and_then(|e| e.to_str())
            .and_then(DiskFormat::from_name)
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Bounds applied when opening an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest virtual disk accepted (default 64 TiB).
    pub max_virtual_size: u64,
    /// The most memory one metadata table (L1 table, grain directory, BAT, descriptor…)
    /// may take (default 64 MiB).
    pub max_metadata_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_virtual_size: 64 * TIB,
            max_metadata_bytes: 64 * MIB,
        }
    }
}

/// Read access to the virtual disk of an opened image. Shareable across threads; every
/// method takes `&self` and uses positioned reads.
pub trait DiskReader: Send + Sync {
    /// The image's format.
    fn format(&self) -> DiskFormat;
    /// The virtual disk's size in bytes.
    fn virtual_size(&self) -> u64;
    /// Fills `buf` with the virtual disk's bytes at `offset`. The range must lie inside
    /// the virtual disk.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Whether the metadata alone shows that every byte of `offset..offset+len` reads as
    /// zero (unallocated, a zero cluster, a hole of a raw file). `false` means "maybe
    /// data": read it. The range must lie inside the virtual disk.
    fn range_is_zero(&self, offset: u64, len: u64) -> Result<bool>;
}

/// Recognizes the format of `file` by its magic bytes: qcow2 (`QFI\xfb`), vmdk (`KDMV`),
/// vhdx (`vhdxfile`), vhd (`conectix` at the start or in the last 512 bytes); anything else
/// is raw. Reads at most the first 8 and the last 512 bytes.
pub fn detect(file: &File) -> Result<DiskFormat> {
    let path = Path::new("(file)");
    let len = file
        .metadata()
        .map_err(|e| Error::io(path, "reading metadata", e))?
        .len();
    let mut head = [0u8; 8];
    if len >= 8 {
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(path, "reading the magic", e))?;
        if head[..4] == qcow2::MAGIC {
            return Ok(DiskFormat::Qcow2);
        }
        if head[..4] == vmdk::MAGIC {
            return Ok(DiskFormat::Vmdk);
        }
        if &head == vhdx::FILE_MAGIC {
            return Ok(DiskFormat::Vhdx);
        }
        if &head == vhd::COOKIE {
            return Ok(DiskFormat::Vhd);
        }
    }
    if len >= 512 {
        let mut tail = [0u8; 8];
        file.read_exact_at(&mut tail, len - 512)
            .map_err(|e| Error::io(path, "reading the footer", e))?;
        if &tail == vhd::COOKIE {
            return Ok(DiskFormat::Vhd);
        }
    }
    Ok(DiskFormat::Raw)
}

/// Opens `path`, detects its format and validates its metadata; see [`open_as`].
pub fn open(path: &Path, limits: Limits) -> Result<Box<dyn DiskReader>> {
    open_as(path, None, limits)
}

/// Opens `path` as `format` (or the detected format when `None`) and validates its
/// metadata against `limits`. Hostile or corrupt images fail here, before any data is read.
/// Forcing [`DiskFormat::Raw`] on an image file reads the file's bytes as they are.
pub fn open_as(
    path: &Path,
    format: Option<DiskFormat>,
    limits: Limits,
) -> Result<Box<dyn DiskReader>> {
    let file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let format = match format {
        Some(f) => f,
        None => detect(&file).map_err(|e| e.with_path(path))?,
    };
    let src = src::Src::new(file, path, format)?;
    Ok(match format {
        DiskFormat::Raw => Box::new(raw::RawReader::open(src, limits)?),
        DiskFormat::Qcow2 => Box::new(qcow2::Qcow2Reader::open(src, limits)?),
        DiskFormat::Vmdk => Box::new(vmdk::VmdkReader::open(src, limits)?),
        DiskFormat::Vhd => vhd::open(src, limits)?,
        DiskFormat::Vhdx => Box::new(vhdx::VhdxReader::open(src, limits)?),
    })
}

/// Checks that `offset..offset+len` lies inside a virtual disk of `size` bytes.
pub(crate) fn check_range(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfBounds { offset, len, size }),
    }
}
