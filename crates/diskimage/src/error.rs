//! The crate's error type: every variant names the file and says what was wrong (and,
//! for corrupt metadata, at which file offset).

use std::path::{Path, PathBuf};

use crate::DiskFormat;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong opening, reading or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error from the operating system.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file's metadata is inconsistent, truncated or fails a checksum.
    #[error("{}: corrupt {format} image at offset {offset}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: DiskFormat,
        /// Where in the file the bad structure is.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// The image uses a feature that is refused for safety (a reference to another file,
    /// encryption, a differencing disk) or that this crate does not implement.
    #[error("{}: refused {format} image: {what}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: DiskFormat,
        /// Which feature, and why.
        what: String,
    },
    /// The image exceeds a [`crate::Limits`] bound or the format's own maximum.
    #[error("{}: {format} image too large: {what}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: DiskFormat,
        /// Which size, and the bound.
        what: String,
    },
    /// A read or query outside the virtual disk.
    #[error("range of {len} bytes at offset {offset} is outside the virtual disk of {size} bytes")]
    OutOfBounds {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
        /// The virtual disk's size.
        size: u64,
    },
    /// A [`crate::DiskWriter`] was used wrongly (writes out of order, past the end, or
    /// a format it cannot write).
    #[error("{}: {what}", path.display())]
    InvalidWrite {
        /// The file being written.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            what: what.into(),
            source,
        }
    }

    /// Replaces the file name in the error (used where it was not known yet).
    pub(crate) fn with_path(self, p: &Path) -> Error {
        match self {
            Error::Io { what, source, .. } => Error::Io {
                path: p.to_owned(),
                what,
                source,
            },
            other => other,
        }
    }
}
