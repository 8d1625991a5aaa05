//! Helpers shared by the volume integration tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use blockstore::{BLOCK_SIZE, BlockStore, ResourceId};
use objstore::LocalFsStore;

pub const BS: usize = BLOCK_SIZE;

pub fn id(s: &str) -> ResourceId {
    ResourceId::new(s).unwrap()
}

pub fn open_store(dir: &Path) -> Arc<BlockStore> {
    BlockStore::new(Arc::new(LocalFsStore::open(dir.join("objects")).unwrap()))
}

/// A tiny deterministic PRNG (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Reconstructs a snapshot's full content from its manifest and blocks.
pub fn snapshot_content(store: &BlockStore, snapshot: &ResourceId) -> Vec<u8> {
    let manifest = store.read_manifest(snapshot).unwrap();
    let mut out = vec![0u8; manifest.volume_size as usize];
    for (index, hash) in manifest.entries() {
        let block = store.get_block(hash).unwrap();
        let start = *index as usize * BS;
        let end = (start + BS).min(out.len());
        out[start..end].copy_from_slice(&block[..end - start]);
    }
    out
}

pub fn volume_content(volume: &volume::Volume) -> Vec<u8> {
    let mut out = vec![0u8; volume.size() as usize];
    volume.read_at(&mut out, 0).unwrap();
    out
}
