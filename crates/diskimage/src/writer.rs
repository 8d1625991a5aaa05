//! [`DiskWriter`]: streaming writers for raw, qcow2, vmdk (streamOptimized) and vhd
//! (dynamic).
//!
//! Callers write blocks in increasing offset order (any sizes; 512 KiB EBS blocks in
//! practice) and may skip zero ranges; the writer cuts the stream into the format's units
//! (64 KiB qcow2 clusters and vmdk grains, 2 MiB vhd blocks, 64 KiB pieces for raw),
//! drops units that are all zeros, and hands the rest to the format's sink, which appends
//! them to the file and writes its metadata in `finish`. Memory is one unit plus the
//! format's tables (qcow2 L1 and one L2 table, vmdk grain directory and one grain table,
//! vhd BAT).
//!
//! The virtual size of qcow2, vmdk and vhd images is rounded up to a multiple of 512.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::{DiskFormat, Error, GIB, Result};

/// The largest dynamic VHD (the format's CHS limit, as qemu enforces it): 2040 GiB.
pub const VHD_MAX_SIZE: u64 = 2040 * GIB;

/// A format's back end: receives whole, non-zero units in increasing order.
pub(crate) trait Sink: Send {
    fn unit_size(&self) -> u64;
    fn put(&mut self, out: &Out, unit: u64, data: &[u8]) -> Result<()>;
    fn finish(&mut self, out: &Out) -> Result<()>;
}

/// The output file.
#[derive(Debug)]
pub(crate) struct Out {
    pub file: File,
    pub path: PathBuf,
    pub size: u64,
}

impl Out {
    pub fn write(&self, offset: u64, data: &[u8], what: &str) -> Result<()> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::io(&self.path, format!("writing {what} at offset {offset}"), e))
    }

    pub fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io(&self.path, format!("sizing to {len} bytes"), e))
    }
}

/// Writes an image file as a stream of blocks. Create it, call
/// [`write_block`](DiskWriter::write_block) in increasing offset order, then
/// [`finish`](DiskWriter::finish); a writer dropped without `finish` leaves an incomplete
/// file.
pub struct DiskWriter {
    out: Out,
    format: DiskFormat,
    sink: Box<dyn Sink>,
    unit: u64,
    buf: Vec<u8>,
    current: Option<u64>,
    next: u64,
}

impl std::fmt::Debug for DiskWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskWriter")
            .field("path", &self.out.path)
            .field("format", &self.format)
            .field("size", &self.out.size)
            .finish()
    }
}

impl DiskWriter {
    /// Creates (or truncates) `path` for an image of `format` holding a virtual disk of
    /// `virtual_size` bytes. VHD is limited to [`VHD_MAX_SIZE`]; VHDX cannot be written.
    pub fn create(path: &Path, format: DiskFormat, virtual_size: u64) -> Result<DiskWriter> {
        let size = match format {
            DiskFormat::Raw => virtual_size,
            _ => virtual_size.div_ceil(512) * 512,
        };
        let invalid = |what: String| Error::InvalidWrite {
            path: path.to_owned(),
            what,
        };
        let sink: Box<dyn Sink> = match format {
            DiskFormat::Raw => Box::new(RawSink),
            DiskFormat::Qcow2 => Box::new(crate::qcow2::write::Qcow2Sink::new(size)),
            DiskFormat::Vmdk => Box::new(crate::vmdk::write::VmdkSink::new(size, path)),
            DiskFormat::Vhd => {
                if size > VHD_MAX_SIZE {
                    return Err(Error::TooLarge {
                        path: path.to_owned(),
                        format,
                        what: format!(
                            "virtual size {size} bytes exceeds the VHD maximum of 2040 GiB \
                             ({VHD_MAX_SIZE} bytes); use qcow2, vmdk or raw"
                        ),
                    });
                }
                Box::new(crate::vhd::write::VhdSink::new(size))
            }
            DiskFormat::Vhdx => {
                return Err(invalid("writing vhdx is not supported".to_owned()));
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, "creating", e))?;
        let unit = sink.unit_size();
        Ok(DiskWriter {
            out: Out {
                file,
                path: path.to_owned(),
                size,
            },
            format,
            sink,
            unit,
            buf: vec![0u8; unit as usize],
            current: None,
            next: 0,
        })
    }

    /// The format being written.
    pub fn format(&self) -> DiskFormat {
        self.format
    }

    /// The virtual size (rounded up to 512 bytes for formats other than raw).
    pub fn virtual_size(&self) -> u64 {
        self.out.size
    }

    /// Writes `data` at `offset` of the virtual disk. Offsets must not go backwards
    /// (`offset` at or after the end of the previous write); skipped ranges read as zeros.
    pub fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset.checked_add(data.len() as u64);
        if offset < self.next || end.is_none_or(|e| e > self.out.size) {
            return Err(Error::InvalidWrite {
                path: self.out.path.clone(),
                what: format!(
                    "write of {} bytes at offset {offset}: writes must be in increasing order \
                     (next allowed offset {}) and inside the disk ({} bytes)",
                    data.len(),
                    self.next,
                    self.out.size
                ),
            });
        }
        let mut pos = 0usize;
        while pos < data.len() {
            let off = offset + pos as u64;
            let unit = off / self.unit;
            let within = (off % self.unit) as usize;
            let n = (self.unit as usize - within).min(data.len() - pos);
            if self.current != Some(unit) {
                self.flush()?;
                self.current = Some(unit);
            }
            self.buf[within..within + n].copy_from_slice(&data[pos..pos + n]);
            pos += n;
        }
        self.next = offset + data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(unit) = self.current.take() {
            if self.buf.iter().any(|&b| b != 0) {
                self.sink.put(&self.out, unit, &self.buf)?;
            }
            self.buf.fill(0);
        }
        Ok(())
    }

    /// Writes the remaining data and the format's metadata, and syncs the file to disk.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.sink.finish(&self.out)?;
        self.out
            .file
            .sync_all()
            .map_err(|e| Error::io(&self.out.path, "syncing", e))
    }
}

/// Raw: units are written in place; the file is sized to the disk, leaving holes.
struct RawSink;

impl Sink for RawSink {
    fn unit_size(&self) -> u64 {
        64 << 10
    }

    fn put(&mut self, out: &Out, unit: u64, data: &[u8]) -> Result<()> {
        let at = unit * self.unit_size();
        let n = (out.size - at).min(data.len() as u64) as usize;
        out.write(at, &data[..n], "data")
    }

    fn finish(&mut self, out: &Out) -> Result<()> {
        out.set_len(out.size)
    }
}
