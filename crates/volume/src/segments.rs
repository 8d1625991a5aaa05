//! The volume's data as a row of segment files, so a volume may exceed the largest file
//! the local filesystem allows (ext4 stops just short of 16 TiB).
//!
//! ```text
//! <dir>/data.0   bytes [0, 1 TiB)
//! <dir>/data.1   bytes [1 TiB, 2 TiB)
//! ...            every segment but the last is exactly 1 TiB; all are sparse
//! ```
//!
//! Segments are a multiple of the block size, so no block straddles two files.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FallocateFlags, fallocate};

use crate::VolumeError;

/// Bytes per segment file: 1 TiB.
pub(crate) const SEGMENT_SIZE: u64 = 1 << 40;

/// See [`SegmentedFile::writer_at`].
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    file: File,
    at: u64,
    path: PathBuf,
}

impl SegmentWriter {
    pub fn write_all(&self, buf: &[u8]) -> Result<(), VolumeError> {
        self.file
            .write_all_at(buf, self.at)
            .map_err(|e| VolumeError::io("write", &self.path, e))
    }
}

#[derive(Debug)]
pub(crate) struct SegmentedFile {
    dir: PathBuf,
    files: Vec<File>,
}

fn segment_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("data.{i}"))
}

impl SegmentedFile {
    /// Opens (or, with `create`, creates) the segments of a `size`-byte volume and sets
    /// their lengths.
    pub fn open(dir: &Path, size: u64, create: bool) -> Result<Self, VolumeError> {
        let mut file = SegmentedFile {
            dir: dir.into(),
            files: Vec::new(),
        };
        file.resize(size, create)?;
        Ok(file)
    }

    fn path(&self, i: usize) -> PathBuf {
        segment_path(&self.dir, i)
    }

    /// Sets the total length to `size`, creating segments as needed.
    pub fn resize(&mut self, size: u64, create: bool) -> Result<(), VolumeError> {
        let count = size.div_ceil(SEGMENT_SIZE).max(1) as usize;
        while self.files.len() < count {
            let i = self.files.len();
            let path = self.path(i);
            // Segments beyond the first are created on demand (grow), also when opening.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create || i > 0)
                .truncate(false)
                .open(&path)
                .map_err(|e| VolumeError::io("open", &path, e))?;
            self.files.push(file);
        }
        for (i, file) in self.files.iter().enumerate() {
            let start = i as u64 * SEGMENT_SIZE;
            let len = size.saturating_sub(start).min(SEGMENT_SIZE);
            file.set_len(len)
                .map_err(|e| VolumeError::io("set length", self.path(i), e))?;
        }
        Ok(())
    }

    /// The segment holding `offset` and the offset within it; `len` must not cross a
    /// segment boundary (callers work block by block).
    fn locate(&self, offset: u64) -> Result<(&File, u64, usize), VolumeError> {
        let i = (offset / SEGMENT_SIZE) as usize;
        let file = self.files.get(i).ok_or_else(|| {
            VolumeError::io(
                "locate",
                self.path(i),
                std::io::Error::other("offset beyond the last segment"),
            )
        })?;
        Ok((file, offset % SEGMENT_SIZE, i))
    }

    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError> {
        let (file, at, i) = self.locate(offset)?;
        file.read_exact_at(buf, at)
            .map_err(|e| VolumeError::io("read", self.path(i), e))
    }

    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), VolumeError> {
        let (file, at, i) = self.locate(offset)?;
        file.write_all_at(buf, at)
            .map_err(|e| VolumeError::io("write", self.path(i), e))
    }

    /// A writer for the block at `offset` that needs no lock on this file (a duplicate
    /// handle of its segment): lets a fill write outside the volume lock.
    pub fn writer_at(&self, offset: u64) -> Result<SegmentWriter, VolumeError> {
        let (file, at, i) = self.locate(offset)?;
        let path = self.path(i);
        let file = file
            .try_clone()
            .map_err(|e| VolumeError::io("duplicate handle of", &path, e))?;
        Ok(SegmentWriter { file, at, path })
    }

    /// Deallocates `[offset, offset+len)`: it reads as zeros afterwards.
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        let (file, at, i) = self.locate(offset)?;
        fallocate(
            file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            at,
            len,
        )
        .map_err(|e| VolumeError::io("punch hole", self.path(i), e.into()))
    }

    /// Makes all written data durable.
    pub fn sync_data(&self) -> Result<(), VolumeError> {
        for (i, file) in self.files.iter().enumerate() {
            file.sync_data()
                .map_err(|e| VolumeError::io("sync", self.path(i), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_on_both_sides_of_a_segment_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let size = SEGMENT_SIZE + 4096;
        let file = SegmentedFile::open(dir.path(), size, true).unwrap();
        file.write_all_at(b"left", SEGMENT_SIZE - 4).unwrap();
        file.write_all_at(b"right", SEGMENT_SIZE).unwrap();
        let mut buf = [0u8; 5];
        file.read_exact_at(&mut buf[..4], SEGMENT_SIZE - 4).unwrap();
        assert_eq!(&buf[..4], b"left");
        file.read_exact_at(&mut buf, SEGMENT_SIZE).unwrap();
        assert_eq!(&buf, b"right");
        assert_eq!(
            std::fs::metadata(dir.path().join("data.1")).unwrap().len(),
            4096
        );
        file.punch_hole(SEGMENT_SIZE, 4096).unwrap();
        file.read_exact_at(&mut buf, SEGMENT_SIZE).unwrap();
        assert_eq!(buf, [0; 5]);
    }
}
