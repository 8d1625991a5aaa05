//! A small, bounded set of recently seen blocks keyed by hash and by a cheap fingerprint.
//!
//! Used four times: a write session skips re-hashing a block identical to one it just stored
//! (fingerprint match, then a full byte comparison — never the fingerprint alone); the
//! store skips re-reading and re-verifying a block it read lately more than once (a block
//! read once is not copied in: most reads read each block once); the store checks a claimed
//! block (EBS direct) that it checked twice lately by comparing it in memory; and
//! `openami snapshot upload` skips re-hashing a block it hashed twice lately.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::BlockHash;

/// Bytes sampled from each end of a block for the fingerprint.
const SAMPLE: usize = 4096;

#[derive(Debug)]
struct Entry {
    hash: BlockHash,
    fingerprint: u64,
    data: Arc<Vec<u8>>,
}

/// At most `capacity` blocks; the oldest is evicted first.
#[derive(Debug)]
pub struct RecentBlocks {
    capacity: usize,
    entries: Mutex<VecDeque<Entry>>,
    /// Hashes offered to [`insert_if_seen`](Self::insert_if_seen) lately (at most
    /// [`SEEN_PER_BLOCK`] × `capacity`), without their data.
    seen: Mutex<VecDeque<BlockHash>>,
}

/// Hashes remembered per cached block by [`RecentBlocks::insert_if_seen`].
const SEEN_PER_BLOCK: usize = 16;

fn fingerprint(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.len().hash(&mut h);
    data[..SAMPLE.min(data.len())].hash(&mut h);
    data[data.len().saturating_sub(SAMPLE)..].hash(&mut h);
    h.finish()
}

impl RecentBlocks {
    /// Remembers at most `capacity` blocks (0: none).
    pub fn new(capacity: usize) -> Self {
        RecentBlocks {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
            seen: Mutex::new(VecDeque::new()),
        }
    }

    /// The SHA-256 of `data`, found without hashing when it equals a block remembered
    /// here (a full byte comparison); a block hashed twice lately is remembered.
    pub fn hash(&self, data: &[u8]) -> BlockHash {
        if let Some(hash) = self.find(data) {
            return hash;
        }
        let hash = BlockHash::of(data);
        self.insert_if_seen(hash, data);
        hash
    }

    /// Remembers the block if its hash was offered here lately: a block read once is not
    /// copied in, a block read again is.
    pub fn insert_if_seen(&self, hash: BlockHash, data: &[u8]) {
        let again = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let again = seen.contains(&hash);
            if !again {
                if seen.len() >= self.capacity * SEEN_PER_BLOCK {
                    seen.pop_front();
                }
                seen.push_back(hash);
            }
            again
        };
        if again {
            self.insert(hash, data);
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a block whose content is known to hash to `hash`.
    pub fn insert(&self, hash: BlockHash, data: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        if entries.iter().any(|e| e.hash == hash) {
            return;
        }
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(Entry {
            hash,
            fingerprint: fingerprint(data),
            data: Arc::new(data.to_vec()),
        });
    }

    /// The hash of a remembered block with exactly this content.
    pub fn find(&self, data: &[u8]) -> Option<BlockHash> {
        let fp = fingerprint(data);
        let candidates: Vec<(BlockHash, Arc<Vec<u8>>)> = self
            .entries()
            .iter()
            .filter(|e| e.fingerprint == fp)
            .map(|e| (e.hash, Arc::clone(&e.data)))
            .collect();
        candidates
            .into_iter()
            .find(|(_, known)| known.as_slice() == data)
            .map(|(hash, _)| hash)
    }

    /// Whether the remembered block `hash` is exactly `data`; `None` if no block `hash` is
    /// remembered.
    pub fn holds(&self, hash: &BlockHash, data: &[u8]) -> Option<bool> {
        let known = self
            .entries()
            .iter()
            .find(|e| e.hash == *hash)
            .map(|e| Arc::clone(&e.data))?;
        Some(known.as_slice() == data)
    }

    /// A copy of a remembered block.
    pub fn get(&self, hash: &BlockHash) -> Option<Vec<u8>> {
        let data = self
            .entries()
            .iter()
            .find(|e| e.hash == *hash)
            .map(|e| Arc::clone(&e.data))?;
        Some(data.as_slice().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_identical_content_and_evicts_oldest() {
        let recent = RecentBlocks::new(2);
        let a = vec![1u8; 10_000];
        let mut a_middle = a.clone();
        a_middle[5000] = 2; // same fingerprint (ends unchanged), different content
        recent.insert(BlockHash::of(&a), &a);
        assert_eq!(recent.find(&a), Some(BlockHash::of(&a)));
        assert_eq!(recent.find(&a_middle), None);
        let (b, c) = (vec![3u8; 100], vec![4u8; 100]);
        recent.insert(BlockHash::of(&b), &b);
        recent.insert(BlockHash::of(&c), &c);
        assert_eq!(recent.find(&a), None, "oldest evicted");
        assert_eq!(recent.get(&BlockHash::of(&c)), Some(c.clone()));
        assert_eq!(recent.holds(&BlockHash::of(&c), &c), Some(true));
        assert_eq!(recent.holds(&BlockHash::of(&c), &b), Some(false));
        assert_eq!(recent.holds(&BlockHash::of(&a), &a), None, "evicted");
    }

    #[test]
    fn insert_if_seen_keeps_a_block_from_its_second_offer() {
        let recent = RecentBlocks::new(2);
        let (a, b) = (vec![1u8; 100], vec![2u8; 100]);
        let (ha, hb) = (BlockHash::of(&a), BlockHash::of(&b));
        recent.insert_if_seen(ha, &a);
        recent.insert_if_seen(hb, &b);
        assert_eq!(recent.get(&ha), None, "offered once: not kept");
        recent.insert_if_seen(ha, &a);
        assert_eq!(recent.get(&ha), Some(a));
        assert_eq!(recent.get(&hb), None);
        // The seen list is bounded: offers of many other blocks push `b` out of it.
        for i in 0..2 * SEEN_PER_BLOCK as u32 {
            recent.insert_if_seen(BlockHash::of(&i.to_le_bytes()), b"x");
        }
        recent.insert_if_seen(hb, &b);
        assert_eq!(
            recent.get(&hb),
            None,
            "forgotten, so this is a first offer again"
        );
    }

    #[test]
    fn hash_is_sha256_whether_or_not_it_hashed() {
        let recent = RecentBlocks::new(2);
        let a = vec![5u8; 10_000];
        let mut a_middle = a.clone();
        a_middle[5000] = 6; // same fingerprint, other bytes
        for _ in 0..4 {
            assert_eq!(recent.hash(&a), BlockHash::of(&a));
            assert_eq!(recent.hash(&a_middle), BlockHash::of(&a_middle));
        }
        assert_eq!(
            recent.find(&a),
            Some(BlockHash::of(&a)),
            "hashed twice: remembered"
        );
    }
}
