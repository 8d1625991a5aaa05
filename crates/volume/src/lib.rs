//! Volumes: block devices backed by a sparse local file, lazily filled from a snapshot.
//!
//! A [`Volume`] lives in its own directory:
//!
//! ```text
//! <dir>/data.N   sparse segment files, 1 TiB each, one byte per volume byte
//! <dir>/state    size, backing snapshot, presence and dirty bitmaps (format in `state`)
//! ```
//!
//! * **Presence** says which 512 KiB blocks live in `data`. A volume created from a
//!   snapshot starts with none present: creation is O(1) in the volume's size, and an
//!   absent block is read from the backing snapshot on first access and kept
//!   (copy-on-read), like EBS lazy loading. Sequential reads fetch the next blocks
//!   ahead on a few worker threads, and concurrent readers of one absent block share
//!   one fetch (the `readahead` module).
//! * **Dirty** says which blocks changed since the backing snapshot. A snapshot reads and
//!   hashes only those; the rest inherit the parent's manifest entries. After a snapshot,
//!   it becomes the volume's backing snapshot and parent of the next one.
//! * **Durability**: [`Volume::flush`] syncs the data file, then replaces the state file.
//!   After a crash (the state file was not marked clean) every present block is treated
//!   as dirty, so the next snapshot re-reads them: slower, never wrong.
//! * **Point in time**: [`Volume::begin_snapshot`] freezes the dirty set; a write to a
//!   frozen block that the snapshot has not read yet first hands the old content to the
//!   snapshot (copy-on-write), so later writes are never in it and never lost.

mod bitmap;
mod error;
mod readahead;
mod segments;
mod snapshot;
mod state;
mod volume;

pub use bitmap::Bitmap;
pub use error::VolumeError;
pub use snapshot::{PendingSnapshot, SnapshotProgress, SnapshotSummary};
pub use volume::{MAX_VOLUME_SIZE, Volume};

/// Decodes a volume state file (the format drawn in the `state` module) and encodes what
/// it decoded again: `Ok` holds the re-encoded bytes, `Err` the decoder's reason. For the
/// fuzz target (`crates/volume/fuzz`) and seed generation; volumes never call it.
#[doc(hidden)]
pub fn state_file_round_trip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    state::VolumeState::decode(bytes).map(|s| s.encode())
}
