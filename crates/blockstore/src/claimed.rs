//! Blocks whose SHA-256 an untrusted writer claims (EBS direct `PutSnapshotBlock`: the
//! block comes with `x-amz-Checksum`), verified as cheaply as the store allows.
//!
//! A block new to the store is hashed: its digest is both the check and its address. A
//! block the store holds already (a dedup hit: an image uploaded again, a repeated block)
//! needs no address, only the check, and where reading the stored copy is a local read
//! it is compared byte for byte with that copy instead: equal bytes have equal digests,
//! the copy's digest was checked when it was stored, and reading plus comparing 512 KiB
//! from the page cache costs about a third of hashing it. A copy that is compressed, or
//! that differs (a false claim, or a copy gone bad on disk), falls back to hashing.
//!
//! This trusts the stored copy to still be what its digest names, as every dedup hit
//! does already (a present block is never written again; `openami store scrub` finds
//! copies gone bad).
//!
//! A block claimed again and again (one block repeated all over an image) is checked twice
//! that way, then kept in memory (a few blocks, the oldest evicted first): later claims of
//! it are compared with that copy, without reading the stored one. A claim that differs
//! from the kept copy is not refused on that ground alone: it is checked as above.

use crate::store::block_key;
use crate::{BLOCK_SIZE, BlockHash, BlockStoreError, WriteSession, block};

impl WriteSession {
    /// Stores a full block whose SHA-256 the writer claims is `claimed`, like
    /// [`put_hashed_block`](Self::put_hashed_block) once the claim is checked; `Ok(false)`,
    /// storing nothing, when the claim is false. All-zero blocks are the caller's to skip.
    pub fn put_claimed_block(
        &self,
        claimed: BlockHash,
        data: &[u8],
    ) -> Result<bool, BlockStoreError> {
        if data.len() != BLOCK_SIZE {
            return Err(BlockStoreError::BadBlockLength {
                expected: BLOCK_SIZE,
                actual: data.len(),
            });
        }
        match self.pin_if_absent(claimed)? {
            Some(key) => {
                if BlockHash::of(data) != claimed {
                    self.unpin(&[claimed]);
                    return Ok(false);
                }
                self.stage_pinned(claimed, &key, &block::encode(data).parts())?;
                Ok(true)
            }
            // Present, and pinned by this session until it ends.
            None => {
                let hits = &self.store().claimed_hits;
                if hits.holds(&claimed, data) == Some(true) {
                    return Ok(true);
                }
                let true_claim =
                    self.same_as_stored(&claimed, data) || BlockHash::of(data) == claimed;
                if true_claim {
                    hits.insert_if_seen(claimed, data);
                }
                Ok(true_claim)
            }
        }
    }

    /// Whether the stored block `hash` is a raw copy of exactly `data` (false when it
    /// cannot be read cheaply, is compressed, differs or cannot be read at all).
    fn same_as_stored(&self, hash: &BlockHash, data: &[u8]) -> bool {
        let objects = self.store().objects();
        if !objects.reads_are_local() {
            return false;
        }
        block_key(hash)
            .ok()
            .and_then(|key| objects.get(&key).ok())
            .is_some_and(|stored| block::is_raw_copy_of(&stored, data))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use objstore::{MemoryStore, ObjectKey, ObjectStore};

    use crate::{BLOCK_SIZE, BlockHash, BlockStore, block};

    fn random_block(seed: u64) -> Vec<u8> {
        crate::test_bytes(seed, BLOCK_SIZE)
    }

    fn key_of(hash: &BlockHash) -> ObjectKey {
        crate::store::block_key(hash).unwrap()
    }

    #[test]
    fn true_claims_store_and_false_ones_store_nothing() {
        let objects = Arc::new(MemoryStore::new());
        let store = BlockStore::new(objects.clone());
        let (a, b) = (random_block(1), random_block(2));
        let (ha, hb) = (BlockHash::of(&a), BlockHash::of(&b));

        let session = store.session();
        assert!(
            !session.put_claimed_block(hb, &a).unwrap(),
            "a new block, false claim"
        );
        assert!(
            session.put_claimed_block(ha, &a).unwrap(),
            "a new block, true claim"
        );
        session.persist().unwrap();
        drop(session);
        assert!(objects.head(&key_of(&ha)).unwrap().is_some());
        assert!(
            objects.head(&key_of(&hb)).unwrap().is_none(),
            "nothing under the false claim"
        );
        assert_eq!(store.get_block(&ha).unwrap(), a);

        // Dedup hits: the same bytes again, other bytes under a stored block's digest.
        let session = store.session();
        assert!(session.put_claimed_block(ha, &a).unwrap());
        let mut changed = a.clone();
        changed[BLOCK_SIZE / 2] ^= 1;
        assert!(!session.put_claimed_block(ha, &changed).unwrap());
        assert!(!session.put_claimed_block(ha, &b).unwrap());
        assert!(session.put_claimed_block(hb, &b).unwrap());
    }

    #[test]
    fn a_block_claimed_again_and_again_is_compared_in_memory() {
        let objects = Arc::new(MemoryStore::new());
        let store = BlockStore::new(objects.clone());
        let a = random_block(5);
        let ha = BlockHash::of(&a);
        let session = store.session();
        assert!(session.put_claimed_block(ha, &a).unwrap());
        session.persist().unwrap();
        drop(session);
        let session = store.session();
        assert!(session.put_claimed_block(ha, &a).unwrap());
        assert_eq!(
            store.claimed_hits.holds(&ha, &a),
            None,
            "checked once: not kept"
        );
        assert!(session.put_claimed_block(ha, &a).unwrap());
        assert_eq!(
            store.claimed_hits.holds(&ha, &a),
            Some(true),
            "checked twice: kept"
        );
        for _ in 0..3 {
            assert!(session.put_claimed_block(ha, &a).unwrap());
        }
        // Other bytes under the kept block's digest are still refused.
        let mut changed = a.clone();
        changed[7] ^= 1;
        assert!(!session.put_claimed_block(ha, &changed).unwrap());
        assert_eq!(store.claimed_hits.holds(&ha, &a), Some(true));
        assert_eq!(store.claimed_hits.holds(&ha, &changed), Some(false));
    }

    #[test]
    fn compressed_or_damaged_copies_fall_back_to_hashing() {
        let objects = Arc::new(MemoryStore::new());
        let store = BlockStore::new(objects.clone());
        let text: Vec<u8> = b"a line of log text, compressible\n"
            .iter()
            .copied()
            .cycle()
            .take(BLOCK_SIZE)
            .collect();
        let ht = BlockHash::of(&text);
        let session = store.session();
        assert!(session.put_claimed_block(ht, &text).unwrap());
        session.persist().unwrap();
        drop(session);
        let stored = objects.get(&key_of(&ht)).unwrap();
        assert!(!block::is_raw_copy_of(&stored, &text), "stored compressed");
        let session = store.session();
        assert!(session.put_claimed_block(ht, &text).unwrap());
        drop(session);

        // A raw copy whose bytes went bad on disk: the true bytes differ from it, so
        // they are hashed, and the claim holds.
        let a = random_block(3);
        let ha = BlockHash::of(&a);
        let mut bad = block::encode(&a).parts().concat();
        bad[1000] ^= 0x40;
        objects.put(&key_of(&ha), &bad).unwrap();
        let session = store.session();
        assert!(session.put_claimed_block(ha, &a).unwrap());
        assert!(!session.put_claimed_block(ha, &random_block(4)).unwrap());
        assert!(matches!(
            session.put_claimed_block(ha, &a[1..]),
            Err(crate::BlockStoreError::BadBlockLength { .. })
        ));
    }
}
