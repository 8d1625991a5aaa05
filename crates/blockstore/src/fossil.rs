//! Garbage collection of a block store that several nodes share (a node cluster's S3
//! bucket): two-phase *fossil collection* with write leases and a grace period.
//!
//! The single-process GC ([`BlockStore::gc`]) relies on in-memory pins: every writer is in
//! the same process. Writers on other nodes are invisible to it, so a shared store is
//! collected in two phases instead, coordinated through the catalog (the caller's job,
//! see `engine::cluster_gc`), with one more kind of object:
//!
//! ```text
//! blocks/<hh>/<hex>     a block (writers dedup against these, and only these)
//! fossils/<hh>/<hex>    a block phase 1 found unreferenced; readers still find it
//! ```
//!
//! * **Write leases.** A [`WriteSession`](crate::WriteSession) of a store with
//!   [`Leases`] records a lease (a catalog row its node renews) *before* its first
//!   existence check, and drops it when it ends — after its manifest (or EBS direct
//!   catalog row) is durable. A session whose lease may have expired (its node could not
//!   renew it in time) refuses to persist or commit.
//! * **Phase 1, [`BlockStore::fossilize`]** (under the region's GC lock): every block no
//!   manifest, upload root or local pin references is copied to `fossils/` and then
//!   deleted from `blocks/`. Then the caller records the collection with the leases live
//!   *at its end*.
//! * **Phase 2, [`BlockStore::sweep_fossils`]** — only once every lease recorded in
//!   phase 1 has ended or expired, and the grace period has passed: marks again, then each
//!   fossil that a manifest or upload root now references is put back under `blocks/`
//!   (unless a writer already stored it again) and every fossil is deleted.
//!
//! Why nothing referenced is lost: a block a committed manifest references is either
//! never fossilized or, if its manifest was written after phase 1's mark, put back in
//! phase 2 — which sees that manifest, because the session that wrote it held a lease
//! that was live at the end of phase 1 (it started before) or started after phase 1, in
//! which case every existence check it made came after the fossils were moved: it found
//! the block absent and stored its own copy (writers never trust a fossil). Between the
//! phases readers fall back to the fossil ([`BlockStore::get_block`]) and a session that
//! references an inherited block that is only a fossil puts it back first. Both moves
//! copy before they delete, so a reader that tries `blocks/`, then `fossils/`, then
//! `blocks/` again always finds a block that is moved while it reads.
//!
//! Two nodes collecting at once is safe because they do not: the catalog's GC lock lets
//! one node at a time run a phase per region; a holder that dies mid-phase is replaced
//! once its lock expires, and both phases can be redone from any point (phase 1 again
//! with the leases live then; phase 2 is idempotent).

use std::collections::HashSet;
use std::fmt::Debug;

use objstore::ObjectKey;

use crate::store::{BLOCKS_PREFIX, block_key, fanned_key, hash_of_block_key, hash_of_fanned_key};
use crate::{BlockHash, BlockStore, BlockStoreError};

pub(crate) const FOSSILS_PREFIX: &str = "fossils/";

/// Write leases of a shared store, kept by the caller (in a node cluster: catalog rows
/// the node renews with its heartbeat).
pub trait Leases: Send + Sync + Debug {
    /// Records a new live lease, durably, and returns its id.
    fn acquire(&self) -> Result<String, String>;
    /// Ends a lease (errors are the implementor's to log: an unreleased lease expires).
    fn release(&self, id: &str);
    /// True while every node must still consider the lease live (it was renewed in time).
    fn still_held(&self, id: &str) -> bool;
}

/// What phase 1 did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FossilReport {
    /// Retained manifests of deleted snapshots that nothing held any more.
    pub manifests_dropped: usize,
    /// Blocks examined.
    pub blocks_examined: usize,
    /// Blocks moved to `fossils/`.
    pub fossilized: usize,
}

/// What phase 2 did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Fossils examined.
    pub fossils: usize,
    /// Fossils referenced again, put back under `blocks/` (or already stored again).
    pub resurrected: usize,
    /// Fossils deleted for good.
    pub blocks_deleted: usize,
    /// Their stored bytes.
    pub bytes_freed: u64,
}

pub(crate) fn fossil_key(hash: &BlockHash) -> Result<ObjectKey, BlockStoreError> {
    fanned_key(FOSSILS_PREFIX, hash)
}

pub(crate) fn hash_of_fossil_key(key: &ObjectKey) -> Option<BlockHash> {
    hash_of_fanned_key(FOSSILS_PREFIX, key)
}

type Roots<'a> = &'a dyn Fn() -> Result<HashSet<BlockHash>, String>;
/// Asked before each move or deletion: false once the caller no longer holds the region's
/// GC lock (or cannot be sure it does), and the phase stops.
type KeepGoing<'a> = &'a dyn Fn() -> bool;

fn lock_lost() -> BlockStoreError {
    BlockStoreError::Lease("the region's GC lock was lost: the phase stopped".into())
}

impl BlockStore {
    /// Everything referenced now: live and retained manifests, `extra_roots` (e.g. blocks
    /// of uploads in progress) and this process's pins.
    fn referenced_now(
        &self,
        extra_roots: Roots<'_>,
    ) -> Result<HashSet<BlockHash>, BlockStoreError> {
        let mut referenced = HashSet::new();
        let keys = self.manifest_keys()?;
        self.mark(&keys, &mut referenced)?;
        referenced.extend(self.pinned_hashes());
        referenced.extend(extra_roots().map_err(BlockStoreError::ExternalRoots)?);
        Ok(referenced)
    }

    /// Phase 1: moves every block nothing references to `fossils/` (copy, then delete).
    /// Call it only while holding the region's GC lock and with no collection pending;
    /// then record the leases live at its end.
    pub fn fossilize(
        &self,
        extra_roots: Roots<'_>,
        keep_going: KeepGoing<'_>,
    ) -> Result<FossilReport, BlockStoreError> {
        let mut report = FossilReport {
            manifests_dropped: self.drop_unheld_retained()?,
            ..FossilReport::default()
        };
        let candidates = self.objects().list(BLOCKS_PREFIX)?;
        report.blocks_examined = candidates.len();
        let referenced = self.referenced_now(extra_roots)?;
        for meta in candidates {
            let Some(hash) = hash_of_block_key(&meta.key) else {
                continue;
            };
            if referenced.contains(&hash) {
                continue;
            }
            if !keep_going() {
                return Err(lock_lost());
            }
            let bytes = match self.objects().get(&meta.key) {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            self.objects().put(&fossil_key(&hash)?, &bytes)?;
            self.objects().delete(&meta.key)?;
            report.fossilized += 1;
        }
        tracing::info!(?report, "gc phase 1: fossils made");
        Ok(report)
    }

    /// Phase 2: puts back every fossil something references again and deletes the rest.
    /// Call it only while holding the region's GC lock, once every lease live at the end
    /// of phase 1 has ended and the grace period has passed.
    pub fn sweep_fossils(
        &self,
        extra_roots: Roots<'_>,
        keep_going: KeepGoing<'_>,
    ) -> Result<SweepReport, BlockStoreError> {
        let fossils = self.objects().list(FOSSILS_PREFIX)?;
        let referenced = self.referenced_now(extra_roots)?;
        let mut report = SweepReport {
            fossils: fossils.len(),
            ..SweepReport::default()
        };
        for meta in fossils {
            let Some(hash) = hash_of_fossil_key(&meta.key) else {
                continue;
            };
            if !keep_going() {
                return Err(lock_lost());
            }
            if referenced.contains(&hash) {
                if !self.resurrect(&hash)? {
                    // Referenced, and neither stored nor a fossil any more: something else
                    // deleted it. Say so, and leave the collection pending.
                    return Err(BlockStoreError::MissingBlock { hash });
                }
                report.resurrected += 1;
            } else {
                report.blocks_deleted += 1;
                report.bytes_freed += meta.size;
            }
            self.objects().delete(&meta.key)?;
        }
        tracing::info!(?report, "gc phase 2: fossils swept");
        Ok(report)
    }

    /// Puts a fossil back under `blocks/` unless the block is stored there already.
    /// False if there is neither.
    pub(crate) fn resurrect(&self, hash: &BlockHash) -> Result<bool, BlockStoreError> {
        let key = block_key(hash)?;
        if self.objects().head(&key)?.is_some() {
            return Ok(true);
        }
        match self.objects().get(&fossil_key(hash)?) {
            Ok(bytes) => {
                self.objects().put(&key, &bytes)?;
                Ok(true)
            }
            Err(e) if e.is_not_found() => Ok(self.objects().head(&key)?.is_some()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every fossil's hash (for scrub, statistics and tests).
    pub fn fossils(&self) -> Result<Vec<BlockHash>, BlockStoreError> {
        Ok(self
            .objects()
            .list(FOSSILS_PREFIX)?
            .iter()
            .filter_map(|m| hash_of_fossil_key(&m.key))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use objstore::{MemoryStore, ObjectStore};

    use super::*;
    use crate::{BLOCK_SIZE, Manifest, ResourceId};

    /// Leases kept in memory, as the catalog would keep them for one node.
    #[derive(Debug, Default)]
    struct Book {
        next: AtomicU64,
        /// id → still held
        live: Mutex<HashMap<String, bool>>,
    }

    impl Book {
        fn live(&self) -> Vec<String> {
            let live = self.live.lock().unwrap();
            live.iter()
                .filter(|(_, h)| **h)
                .map(|(id, _)| id.clone())
                .collect()
        }
        fn expire_all(&self) {
            for held in self.live.lock().unwrap().values_mut() {
                *held = false;
            }
        }
    }

    impl Leases for Book {
        fn acquire(&self) -> Result<String, String> {
            let id = format!("lease-{}", self.next.fetch_add(1, Ordering::Relaxed));
            self.live.lock().unwrap().insert(id.clone(), true);
            Ok(id)
        }
        fn release(&self, id: &str) {
            self.live.lock().unwrap().remove(id);
        }
        fn still_held(&self, id: &str) -> bool {
            self.live.lock().unwrap().get(id).copied().unwrap_or(false)
        }
    }

    fn shared() -> (Arc<BlockStore>, Arc<BlockStore>, Arc<Book>) {
        let objects: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let book = Arc::new(Book::default());
        let a = BlockStore::new(objects.clone());
        let b = BlockStore::new(objects);
        assert!(a.set_leases(book.clone()));
        assert!(b.set_leases(book.clone()));
        (a, b, book)
    }

    fn block(seed: u8) -> Vec<u8> {
        let mut data = vec![seed; BLOCK_SIZE];
        data[0] = 1;
        data
    }

    fn manifest(id: &str, hashes: &[BlockHash]) -> Manifest {
        let entries = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (i as u64, *h))
            .collect();
        Manifest::new(ResourceId::new(id).unwrap(), None, 8 << 20, 0, entries).unwrap()
    }

    fn no_roots() -> Result<HashSet<BlockHash>, String> {
        Ok(HashSet::new())
    }

    #[test]
    fn an_unreferenced_block_is_a_readable_fossil_until_the_sweep() {
        let (a, b, _) = shared();
        let session = a.session();
        let put = session.put_block(&block(7)).unwrap();
        session.persist().unwrap();
        drop(session);
        let report = b.fossilize(&no_roots, &|| true).unwrap();
        assert_eq!(report.fossilized, 1);
        assert!(!a.has_block(&put.hash).unwrap());
        assert_eq!(
            a.get_block(&put.hash).unwrap(),
            block(7),
            "readers find the fossil"
        );
        assert!(a.scrub().unwrap().is_clean());
        let swept = b.sweep_fossils(&no_roots, &|| true).unwrap();
        assert_eq!((swept.blocks_deleted, swept.resurrected), (1, 0));
        assert!(matches!(
            BlockStore::new(a.objects().clone()).get_block(&put.hash),
            Err(BlockStoreError::MissingBlock { .. })
        ));
        assert!(a.objects().list("").unwrap().is_empty());
    }

    #[test]
    fn a_session_live_at_phase_one_keeps_what_it_deduplicated() {
        let (a, b, book) = shared();
        // An old unreferenced block, then a session on node a finds it (a dedup hit)…
        let old = a.session();
        let hash = old.put_block(&block(3)).unwrap().hash;
        old.persist().unwrap();
        drop(old);
        let writer = a.session();
        assert_eq!(writer.put_block(&block(3)).unwrap().stored_bytes, 0);
        // …node b's phase 1 (which cannot see a's pins) moves it to the fossils…
        let fresh = BlockStore::new(b.objects().clone());
        assert_eq!(fresh.fossilize(&no_roots, &|| true).unwrap().fossilized, 1);
        let waits_for = book.live();
        assert_eq!(waits_for.len(), 1, "the writer's lease is recorded");
        // …the writer commits; phase 2 (after its lease ended) puts the block back.
        writer.commit(&manifest("snap-1", &[hash])).unwrap();
        drop(writer);
        assert!(book.live().is_empty());
        let swept = b.sweep_fossils(&no_roots, &|| true).unwrap();
        assert_eq!((swept.resurrected, swept.blocks_deleted), (1, 0));
        assert!(a.has_block(&hash).unwrap());
        assert!(a.fossils().unwrap().is_empty());
        assert!(a.scrub().unwrap().is_clean());
    }

    #[test]
    fn a_session_after_phase_one_stores_its_own_copy_and_resurrects_inherited_blocks() {
        let (a, b, _) = shared();
        let s = a.session();
        let kept = s.put_block(&block(1)).unwrap().hash;
        let dropped = s.put_block(&block(2)).unwrap().hash;
        s.commit(&manifest("snap-parent", &[kept, dropped]))
            .unwrap();
        drop(s);
        a.delete_snapshot(&ResourceId::new("snap-parent").unwrap())
            .unwrap();
        assert_eq!(b.fossilize(&no_roots, &|| true).unwrap().fossilized, 2);
        // A new writer never trusts a fossil: it stores block 2 again…
        let w = a.session();
        assert!(w.put_block(&block(2)).unwrap().stored_bytes > 0);
        // …and an inherited reference to block 1 puts its fossil back.
        w.reference_blocks(&[kept]).unwrap();
        assert!(a.has_block(&kept).unwrap());
        w.commit(&manifest("snap-child", &[kept, dropped])).unwrap();
        drop(w);
        let swept = b.sweep_fossils(&no_roots, &|| true).unwrap();
        assert_eq!(swept.blocks_deleted, 0);
        assert_eq!(
            swept.resurrected, 2,
            "both are referenced again (already stored)"
        );
        assert!(a.fossils().unwrap().is_empty());
        assert!(a.scrub().unwrap().is_clean());
        assert_eq!(a.get_block(&dropped).unwrap(), block(2));
    }

    #[test]
    fn a_session_whose_lease_lapsed_refuses_to_commit() {
        let (a, _, book) = shared();
        let w = a.session();
        let hash = w.put_block(&block(9)).unwrap().hash;
        book.expire_all();
        assert!(matches!(
            w.commit(&manifest("snap-late", &[hash])),
            Err(BlockStoreError::Lease(_))
        ));
        assert!(
            !a.snapshot_exists(&ResourceId::new("snap-late").unwrap())
                .unwrap()
        );
    }

    #[test]
    fn a_phase_stops_when_its_lock_is_lost() {
        let (a, b, _) = shared();
        let s = a.session();
        let hash = s.put_block(&block(6)).unwrap().hash;
        s.persist().unwrap();
        drop(s);
        assert!(matches!(
            b.fossilize(&no_roots, &|| false),
            Err(BlockStoreError::Lease(_))
        ));
        assert!(a.has_block(&hash).unwrap(), "nothing moved");
        assert_eq!(b.fossilize(&no_roots, &|| true).unwrap().fossilized, 1);
        assert!(matches!(
            b.sweep_fossils(&no_roots, &|| false),
            Err(BlockStoreError::Lease(_))
        ));
        assert_eq!(a.fossils().unwrap(), vec![hash], "nothing deleted");
    }

    #[test]
    fn marking_follows_a_snapshot_that_moved_to_retained_while_listed() {
        let (a, _, _) = shared();
        let s = a.session();
        let hash = s.put_block(&block(8)).unwrap().hash;
        s.commit(&manifest("snap-moving", &[hash])).unwrap();
        drop(s);
        let keys = a.manifest_keys().unwrap();
        // Another node deletes it while a volume holds it: snapshots/ → retained/.
        let id = ResourceId::new("snap-moving").unwrap();
        a.add_hold(&id, &ResourceId::new("vol-holder").unwrap())
            .unwrap();
        a.delete_snapshot(&id).unwrap();
        let mut referenced = HashSet::new();
        a.mark(&keys, &mut referenced).unwrap();
        assert!(referenced.contains(&hash));
    }

    #[test]
    fn upload_roots_and_local_pins_are_never_fossilized() {
        let (a, _, _) = shared();
        let s = a.session();
        let pinned = s.put_block(&block(4)).unwrap().hash;
        s.persist().unwrap();
        let other = a.session();
        let rooted = other.put_block(&block(5)).unwrap().hash;
        other.persist().unwrap();
        drop(other);
        let roots = move || Ok(HashSet::from([rooted]));
        assert_eq!(a.fossilize(&roots, &|| true).unwrap().fossilized, 0);
        drop(s);
        assert_eq!(a.fossilize(&roots, &|| true).unwrap().fossilized, 1);
        assert_eq!(a.fossils().unwrap(), vec![pinned]);
    }
}
