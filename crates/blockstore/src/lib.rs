//! The block store: openami's deduplicated, content-addressed storage of volume data.
//!
//! * A **block** is 512 KiB (the EBS block size, so EBS direct block indexes map 1:1),
//!   addressed by the SHA-256 of its uncompressed content — the same checksum the EBS
//!   direct APIs carry. All-zero blocks are never stored. See [`block`].
//! * A **snapshot manifest** records a volume's size, its parent snapshot and the sorted
//!   map of block index → block hash for every non-zero block. See [`manifest`].
//! * **Holds** keep a deleted snapshot's manifest (and so its blocks) alive while a volume
//!   still reads from it; **write sessions** pin the blocks of a snapshot being written.
//!   Garbage collection frees only blocks that nothing references. See [`BlockStore`].
//!
//! Everything lives in an [`objstore::ObjectStore`], so the object store alone is enough
//! to rebuild what snapshots exist:
//!
//! ```text
//! blocks/<hh>/<sha256-hex>        one block (hh = first two hex digits)
//! snapshots/<snapshot-id>         manifest of a live snapshot
//! retained/<snapshot-id>          manifest of a deleted snapshot that is still held
//! holds/<snapshot-id>/<holder-id> empty marker: <holder> needs <snapshot-id>'s data
//! fossils/<hh>/<sha256-hex>       a block GC found unreferenced, between the two phases
//!                                 of collecting a store nodes share (see [`fossil`])
//! ```

pub mod block;
mod claimed;
mod error;
pub mod fossil;
mod gc;
mod group;
mod hash;
mod ids;
pub mod manifest;
mod recent;
mod store;

pub use block::BLOCK_SIZE;
pub use error::BlockStoreError;
pub use fossil::{FossilReport, Leases, SweepReport};
pub use gc::{GcReport, ScrubReport, StoreStats};
pub use group::GroupCommit;
pub use hash::{BlockHash, sha256};
pub use ids::{IdError, ResourceId};
pub use manifest::Manifest;
pub use recent::RecentBlocks;
pub use store::{BlockStore, PutBlock, WriteSession};

/// Deterministic pseudo-random bytes (xorshift) for tests: incompressible, other bytes
/// for every seed.
#[cfg(test)]
pub(crate) fn test_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
