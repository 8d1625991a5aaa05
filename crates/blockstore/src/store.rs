//! [`BlockStore`]: blocks, manifests, holds and write sessions over an object store.
//!
//! # Why GC never frees a referenced block
//!
//! A block is referenced by a live or retained manifest, or pinned by an open
//! [`WriteSession`]. A writer pins a block's hash *before* it checks whether the block
//! exists (the dedup case) or stores it, and does the pin-and-check under a shared
//! `gc_lock`; GC decides what to delete and deletes it under the exclusive `gc_lock`,
//! after re-listing manifests and reading the pins. So a dedup hit either happens before
//! GC's decision (and GC sees the pin) or after the deletion (and sees the block gone, so
//! it stores it again). A session unpins only after its manifest is durable.
//!
//! # Group commit: how a new block becomes durable
//!
//! A new block is *staged* (written to a temp file, not synced, invisible under its key)
//! while its pin holds. [`WriteSession::persist`] (and `commit`, which calls it) hands
//! the session's staged blocks and dedup hits to the store-wide [`GroupCommit`]; one
//! leader installs every waiting session's blocks at once:
//!
//! ```text
//!  session A: pin+head ─ stage ─ stage ─┐ persist ┐
//!  session B: pin+head ─ stage ─────────┘ persist ┤  leader: objects.install(all)
//!  session C: pin+head (present: a name) ─ persist┘    1. ONE content sync (fdatasyncs
//!                                                          at once, or syncfs if large)
//!                                                       2. rename each to blocks/hh/<hex>
//!                                                       3. fsync each directory once
//!                                                          (or one more syncfs)
//!                                              A, B, C return ─▶ catalog rows / manifest
//! ```
//!
//! The GC argument is unchanged: pins are taken before the head check, and a staged block
//! is pinned until its session ends, which is after its manifest (or, for EBS direct, its
//! catalog row) is durable. A staged block has no name, so no other session can dedup
//! against it (it stages its own copy; the renames of identical content replace each
//! other atomically), and a block is never under its name before its content is durable,
//! so a later dedup hit can trust what it finds. A crash at any point of the install
//! loses only blocks nobody was told are stored (see `objstore::CrashPoint`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use objstore::{ObjectKey, ObjectStore, Staged, StoreError};

use crate::fossil::{Leases, fossil_key};
use crate::group::GroupCommit;
use crate::recent::RecentBlocks;
use crate::{BLOCK_SIZE, BlockHash, BlockStoreError, Manifest, ResourceId, block};

/// Blocks a write session remembers for its identical-block shortcut.
const SESSION_RECENT_BLOCKS: usize = 8;
/// Staged blocks after which a session installs them without waiting for `persist`
/// (bounds the not-yet-durable bytes of one session to 256 MiB).
const MAX_STAGED_BLOCKS: usize = 512;
/// Verified blocks the store keeps for repeated reads (16 MiB).
const READ_CACHE_BLOCKS: usize = 32;

/// Blocks kept to check repeated claims in memory (4 MiB).
const CLAIMED_HITS_BLOCKS: usize = 8;

const LIVE_PREFIX: &str = "snapshots/";
const RETAINED_PREFIX: &str = "retained/";
const HOLDS_PREFIX: &str = "holds/";
pub(crate) const BLOCKS_PREFIX: &str = "blocks/";

fn key(text: String) -> Result<ObjectKey, BlockStoreError> {
    ObjectKey::new(text).map_err(|e| BlockStoreError::Store(StoreError::Key(e)))
}

/// `<prefix><hh>/<hex>`: where a block lives under one of the store's fanned-out prefixes
/// (`blocks/`, and `fossils/` between the two phases of a shared store's GC).
pub(crate) fn fanned_key(prefix: &str, hash: &BlockHash) -> Result<ObjectKey, BlockStoreError> {
    let hex = hash.to_hex();
    key(format!("{prefix}{}/{hex}", &hex[..2]))
}

/// Parses the hash out of a `<prefix><hh>/<hex>` key; any other key (say, objects of
/// another store under a longer prefix of a shared bucket) is none of this store's.
pub(crate) fn hash_of_fanned_key(prefix: &str, key: &ObjectKey) -> Option<BlockHash> {
    let hash: BlockHash = key
        .as_str()
        .strip_prefix(prefix)?
        .split_once('/')
        .and_then(|(dir, hex)| (hex.get(..2) == Some(dir)).then_some(hex))?
        .parse()
        .ok()?;
    (fanned_key(prefix, &hash).ok()?.as_str() == key.as_str()).then_some(hash)
}

pub(crate) fn block_key(hash: &BlockHash) -> Result<ObjectKey, BlockStoreError> {
    fanned_key(BLOCKS_PREFIX, hash)
}

pub(crate) fn live_key(id: &ResourceId) -> Result<ObjectKey, BlockStoreError> {
    key(format!("{LIVE_PREFIX}{id}"))
}

fn retained_key(id: &ResourceId) -> Result<ObjectKey, BlockStoreError> {
    key(format!("{RETAINED_PREFIX}{id}"))
}

fn hold_key(snapshot: &ResourceId, holder: &ResourceId) -> Result<ObjectKey, BlockStoreError> {
    key(format!("{HOLDS_PREFIX}{snapshot}/{holder}"))
}

/// For a live manifest's key, the key its manifest moves to when the snapshot is deleted
/// while held (written before the live one is removed).
pub(crate) fn retained_twin(key: &ObjectKey) -> Option<ObjectKey> {
    let id = ResourceId::new(key.as_str().strip_prefix(LIVE_PREFIX)?).ok()?;
    retained_key(&id).ok()
}

/// The hash of a `blocks/hh/<hex>` key (see [`hash_of_fanned_key`]).
pub(crate) fn hash_of_block_key(key: &ObjectKey) -> Option<BlockHash> {
    hash_of_fanned_key(BLOCKS_PREFIX, key)
}

/// Decodes a block's stored bytes and checks them against its address.
fn decode_verified(hash: &BlockHash, stored: &[u8]) -> Result<Vec<u8>, BlockStoreError> {
    verified(hash, block::decode(stored))
}

/// [`decode_verified`] of a stored block the caller owns (no copy of a raw block).
fn decode_owned_verified(hash: &BlockHash, stored: Vec<u8>) -> Result<Vec<u8>, BlockStoreError> {
    verified(hash, block::decode_owned(stored))
}

fn verified(
    hash: &BlockHash,
    decoded: Result<Vec<u8>, String>,
) -> Result<Vec<u8>, BlockStoreError> {
    let data = decoded.map_err(|reason| BlockStoreError::CorruptBlock {
        hash: *hash,
        reason,
    })?;
    if BlockHash::of(&data) != *hash {
        return Err(BlockStoreError::CorruptBlock {
            hash: *hash,
            reason: "content does not match its SHA-256".into(),
        });
    }
    Ok(data)
}

/// Deduplicated, content-addressed block storage plus snapshot manifests.
#[derive(Debug)]
pub struct BlockStore {
    objects: Arc<dyn ObjectStore>,
    /// Shared by writers for pin-and-check, exclusive for GC's decide-and-delete.
    gc_lock: RwLock<()>,
    /// Serialises manifest deletion, hold changes and retained-manifest cleanup.
    meta_lock: Mutex<()>,
    pins: Mutex<HashMap<u64, HashSet<BlockHash>>>,
    next_session: AtomicU64,
    /// Recently read and verified blocks.
    read_cache: RecentBlocks,
    /// Blocks whose claimed digests (EBS direct) were checked twice lately, so that the
    /// next claim of the same block is checked by comparing it in memory (see
    /// [`crate::claimed`]).
    pub(crate) claimed_hits: RecentBlocks,
    /// Where sessions' staged blocks are installed, many sessions per sync.
    installs: GroupCommit<Pending, StoreError>,
    /// Write leases, for a store other nodes collect too (see [`crate::fossil`]).
    leases: OnceLock<Arc<dyn Leases>>,
}

/// What one session hands to the group commit: blocks it staged and keys it found present.
#[derive(Debug, Default)]
struct Pending {
    staged: Vec<(BlockHash, Staged)>,
    names: Vec<ObjectKey>,
}

/// What [`WriteSession::put_block`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutBlock {
    /// The block's address.
    pub hash: BlockHash,
    /// Bytes written to the object store (0 if the block was already there).
    pub stored_bytes: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic elsewhere does not
    // make it unusable.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlockStore {
    /// A block store over `objects`.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(BlockStore {
            objects,
            gc_lock: RwLock::new(()),
            meta_lock: Mutex::new(()),
            pins: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            read_cache: RecentBlocks::new(READ_CACHE_BLOCKS),
            claimed_hits: RecentBlocks::new(CLAIMED_HITS_BLOCKS),
            installs: GroupCommit::new(),
            leases: OnceLock::new(),
        })
    }

    /// Makes every write session record a lease first: the store is shared with other
    /// nodes, which collect it with [`fossilize`](Self::fossilize) and
    /// [`sweep_fossils`](Self::sweep_fossils). False if leases were set already.
    pub fn set_leases(&self, leases: Arc<dyn Leases>) -> bool {
        self.leases.set(leases).is_ok()
    }

    /// True if write sessions take leases (a shared store).
    pub fn is_shared(&self) -> bool {
        self.leases.get().is_some()
    }

    /// The underlying object store.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    pub(crate) fn gc_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.gc_lock.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn gc_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gc_lock.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn meta(&self) -> MutexGuard<'_, ()> {
        lock(&self.meta_lock)
    }

    pub(crate) fn pinned_hashes(&self) -> HashSet<BlockHash> {
        lock(&self.pins).values().flatten().copied().collect()
    }

    /// Opens a write session; blocks it stores or references stay pinned until it ends.
    pub fn session(self: &Arc<Self>) -> WriteSession {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        lock(&self.pins).insert(id, HashSet::new());
        WriteSession {
            store: Arc::clone(self),
            id,
            recent: RecentBlocks::new(SESSION_RECENT_BLOCKS),
            pending: Mutex::new(Pending::default()),
            lease: Mutex::new(None),
        }
    }

    /// Reads a block and verifies it against its address.
    pub fn get_block(&self, hash: &BlockHash) -> Result<Vec<u8>, BlockStoreError> {
        if let Some(data) = self.read_cache.get(hash) {
            return Ok(data);
        }
        let data = decode_owned_verified(hash, self.read_block_object(hash)?)?;
        // Only a block read before is kept: most reads (a volume filling, an export) read
        // each block once, and copying every one into the cache cost them a copy each.
        self.read_cache.insert_if_seen(*hash, &data);
        Ok(data)
    }

    /// A block's stored bytes: under `blocks/`, else (a shared store between the two GC
    /// phases) its fossil, else `blocks/` again (it may have been put back meanwhile; both
    /// moves copy before they delete).
    pub(crate) fn read_block_object(&self, hash: &BlockHash) -> Result<Vec<u8>, BlockStoreError> {
        let key = block_key(hash)?;
        for k in [&key, &fossil_key(hash)?, &key] {
            match self.objects.get(k) {
                Ok(bytes) => return Ok(bytes),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BlockStoreError::MissingBlock { hash: *hash })
    }

    /// True if the block can be read: stored, or (a shared store between GC's phases) a
    /// fossil.
    pub fn is_readable(&self, hash: &BlockHash) -> Result<bool, BlockStoreError> {
        Ok(self.objects.head(&block_key(hash)?)?.is_some()
            || self.objects.head(&fossil_key(hash)?)?.is_some()
            || self.objects.head(&block_key(hash)?)?.is_some())
    }

    /// True if the block is stored.
    pub fn has_block(&self, hash: &BlockHash) -> Result<bool, BlockStoreError> {
        Ok(self.objects.head(&block_key(hash)?)?.is_some())
    }

    /// Reads a snapshot's manifest, live or retained.
    pub fn read_manifest(&self, id: &ResourceId) -> Result<Manifest, BlockStoreError> {
        for k in [live_key(id)?, retained_key(id)?] {
            match self.objects.get(&k) {
                Ok(bytes) => return decode_manifest(id.as_str(), &bytes),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BlockStoreError::SnapshotNotFound { id: id.clone() })
    }

    /// True if a live (not deleted) snapshot with this id exists.
    pub fn snapshot_exists(&self, id: &ResourceId) -> Result<bool, BlockStoreError> {
        Ok(self.objects.head(&live_key(id)?)?.is_some())
    }

    /// Ids of every live snapshot, sorted.
    pub fn list_snapshots(&self) -> Result<Vec<ResourceId>, BlockStoreError> {
        self.list_ids(LIVE_PREFIX)
    }

    /// Ids of deleted snapshots whose manifests are still held, sorted.
    pub fn list_retained(&self) -> Result<Vec<ResourceId>, BlockStoreError> {
        self.list_ids(RETAINED_PREFIX)
    }

    fn list_ids(&self, prefix: &str) -> Result<Vec<ResourceId>, BlockStoreError> {
        Ok(self
            .objects
            .list(prefix)?
            .into_iter()
            .filter_map(|m| ResourceId::new(&m.key.as_str()[prefix.len()..]).ok())
            .collect())
    }

    /// Records that `holder` (e.g. a volume) needs `snapshot`'s data. Fails if the
    /// snapshot is neither live nor retained.
    pub fn add_hold(
        &self,
        snapshot: &ResourceId,
        holder: &ResourceId,
    ) -> Result<(), BlockStoreError> {
        let _meta = self.meta();
        let exists = || -> Result<bool, BlockStoreError> {
            Ok(self.objects.head(&live_key(snapshot)?)?.is_some()
                || self.objects.head(&retained_key(snapshot)?)?.is_some())
        };
        if !exists()? {
            return Err(BlockStoreError::SnapshotNotFound {
                id: snapshot.clone(),
            });
        }
        let hold = hold_key(snapshot, holder)?;
        self.objects.put(&hold, b"")?;
        // Another node may have deleted the snapshot between the check and the hold (the
        // meta lock is this process's only). Its deletion checks the holders again after
        // removing the live manifest and keeps it retained if it sees this hold; if the
        // manifest is gone for good, the hold is too.
        if !exists()? {
            self.objects.delete(&hold)?;
            return Err(BlockStoreError::SnapshotNotFound {
                id: snapshot.clone(),
            });
        }
        Ok(())
    }

    /// Drops a hold; the snapshot's manifest, if deleted, is freed by the next GC.
    pub fn remove_hold(
        &self,
        snapshot: &ResourceId,
        holder: &ResourceId,
    ) -> Result<(), BlockStoreError> {
        let _meta = self.meta();
        self.objects.delete(&hold_key(snapshot, holder)?)?;
        Ok(())
    }

    /// Holders of a snapshot.
    pub fn holders(&self, snapshot: &ResourceId) -> Result<Vec<ResourceId>, BlockStoreError> {
        self.list_ids(&format!("{HOLDS_PREFIX}{snapshot}/"))
    }

    /// Snapshots `holder` holds.
    pub fn holds_by(&self, holder: &ResourceId) -> Result<Vec<ResourceId>, BlockStoreError> {
        Ok(self
            .objects
            .list(HOLDS_PREFIX)?
            .into_iter()
            .filter_map(|m| {
                let rest = &m.key.as_str()[HOLDS_PREFIX.len()..];
                let (snapshot, who) = rest.split_once('/')?;
                (who == holder.as_str()).then(|| ResourceId::new(snapshot).ok())?
            })
            .collect())
    }

    /// Deletes a snapshot. Its manifest moves to `retained/` while anything holds it;
    /// its blocks are freed by GC once nothing references them.
    pub fn delete_snapshot(&self, id: &ResourceId) -> Result<(), BlockStoreError> {
        let _meta = self.meta();
        let live = live_key(id)?;
        let bytes = match self.objects.get(&live) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => {
                return Err(BlockStoreError::SnapshotNotFound { id: id.clone() });
            }
            Err(e) => return Err(e.into()),
        };
        let held = !self.holders(id)?.is_empty();
        if held {
            self.objects.put(&retained_key(id)?, &bytes)?;
        }
        self.objects.delete(&live)?;
        // A hold another node added meanwhile (see `add_hold`): keep the manifest for it.
        if !held && !self.holders(id)?.is_empty() {
            self.objects.put(&retained_key(id)?, &bytes)?;
        }
        Ok(())
    }

    /// Removes retained manifests nothing holds any more. Returns how many.
    pub(crate) fn drop_unheld_retained(&self) -> Result<usize, BlockStoreError> {
        let _meta = self.meta();
        let mut dropped = 0;
        for id in self.list_retained()? {
            if self.holders(&id)?.is_empty() {
                let key = retained_key(&id)?;
                let bytes = match self.objects.get(&key) {
                    Ok(bytes) => bytes,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                };
                self.objects.delete(&key)?;
                // A hold another node added meanwhile (see `add_hold`): put it back.
                if self.holders(&id)?.is_empty() {
                    dropped += 1;
                } else {
                    self.objects.put(&key, &bytes)?;
                }
            }
        }
        Ok(dropped)
    }

    /// Keys of every manifest object, live and retained.
    pub(crate) fn manifest_keys(&self) -> Result<Vec<ObjectKey>, BlockStoreError> {
        let mut keys: Vec<_> = self
            .objects
            .list(LIVE_PREFIX)?
            .into_iter()
            .map(|m| m.key)
            .collect();
        keys.extend(
            self.objects
                .list(RETAINED_PREFIX)?
                .into_iter()
                .map(|m| m.key),
        );
        Ok(keys)
    }
}

pub(crate) fn decode_manifest(id: &str, bytes: &[u8]) -> Result<Manifest, BlockStoreError> {
    Manifest::decode(bytes).map_err(|reason| BlockStoreError::BadManifest {
        id: id.to_string(),
        reason,
    })
}

/// An open write: the blocks it stores or references are pinned against GC until it is
/// committed or dropped.
#[derive(Debug)]
pub struct WriteSession {
    store: Arc<BlockStore>,
    id: u64,
    /// Blocks this session stored recently, to skip re-hashing runs of identical
    /// blocks (a cheap fingerprint, then a full byte comparison).
    recent: RecentBlocks,
    /// Blocks staged (not yet durable nor named) and keys found present whose names may
    /// not be durable yet; installed by `persist`, before the manifest is written.
    pending: Mutex<Pending>,
    /// This session's write lease, once it took one (a shared store).
    lease: Mutex<Option<String>>,
}

impl WriteSession {
    /// The store this session writes to.
    pub fn store(&self) -> &Arc<BlockStore> {
        &self.store
    }

    /// Takes this session's write lease, if the store is shared and it has none yet:
    /// before any existence check, so GC on another node knows to wait for it.
    fn ensure_lease(&self) -> Result<(), BlockStoreError> {
        let Some(leases) = self.store.leases.get() else {
            return Ok(());
        };
        let mut lease = lock(&self.lease);
        if lease.is_none() {
            *lease = Some(leases.acquire().map_err(BlockStoreError::Lease)?);
        }
        Ok(())
    }

    /// Fails if this session's lease may have expired: GC elsewhere may have stopped
    /// waiting for it, so what it references can no longer be trusted to be stored.
    /// Callers that make their own record durable (an EBS direct catalog row) check it
    /// after that write: a lease still held then was live when the record landed.
    pub fn check_lease(&self) -> Result<(), BlockStoreError> {
        let (Some(leases), Some(id)) = (self.store.leases.get(), lock(&self.lease).clone()) else {
            return Ok(());
        };
        if leases.still_held(&id) {
            Ok(())
        } else {
            Err(BlockStoreError::Lease(format!(
                "write lease {id} was not renewed in time; the write must be redone"
            )))
        }
    }

    fn pin(&self, hashes: impl IntoIterator<Item = BlockHash>) {
        let mut pins = lock(&self.store.pins);
        if let Some(set) = pins.get_mut(&self.id) {
            set.extend(hashes);
        }
    }

    /// Pins one hash; false if this session had already pinned it.
    fn pin_one(&self, hash: BlockHash) -> bool {
        let mut pins = lock(&self.store.pins);
        pins.get_mut(&self.id).is_some_and(|set| set.insert(hash))
    }

    /// Stores a full block (exactly [`BLOCK_SIZE`] bytes), or finds it already stored.
    /// A new block is staged: it is readable and durable once [`persist`](Self::persist)
    /// or [`commit`](Self::commit) returns (they install the blocks of every waiting
    /// session with one sync). Callers skip all-zero blocks.
    pub fn put_block(&self, data: &[u8]) -> Result<PutBlock, BlockStoreError> {
        if data.len() != BLOCK_SIZE {
            return Err(BlockStoreError::BadBlockLength {
                expected: BLOCK_SIZE,
                actual: data.len(),
            });
        }
        // Identical to a block this session stored moments ago? Then it is pinned and
        // stored (or being stored) already: no need to hash 512 KiB again.
        if let Some(hash) = self.recent.find(data) {
            return Ok(PutBlock {
                hash,
                stored_bytes: 0,
            });
        }
        let hash = BlockHash::of(data);
        let put = self.put_hashed_block(hash, data)?;
        self.recent.insert(hash, data);
        Ok(put)
    }

    /// Like [`put_block`](Self::put_block) for a caller that already hashed the data.
    /// The hash is trusted here; use `put_block` for untrusted input.
    pub fn put_hashed_block(
        &self,
        hash: BlockHash,
        data: &[u8],
    ) -> Result<PutBlock, BlockStoreError> {
        let Some(key) = self.pin_if_absent(hash)? else {
            return Ok(PutBlock {
                hash,
                stored_bytes: 0,
            });
        };
        // Pinned and absent: GC cannot delete what we are about to write.
        let encoded = block::encode(data);
        self.stage_pinned(hash, &key, &encoded.parts())?;
        Ok(PutBlock {
            hash,
            stored_bytes: encoded.len() as u64,
        })
    }

    /// Copies block `hash` from another store (e.g. another region's) into this session,
    /// unless this store has it already: the stored (compressed) bytes are fetched, checked
    /// against the hash and staged as they are — one existence check, one read, one write,
    /// no recompression. Returns the bytes written (0 if it was present).
    pub fn copy_block_from(
        &self,
        src: &BlockStore,
        hash: BlockHash,
    ) -> Result<u64, BlockStoreError> {
        let Some(key) = self.pin_if_absent(hash)? else {
            return Ok(0);
        };
        let checked = src
            .read_block_object(&hash)
            .and_then(|stored| decode_verified(&hash, &stored).map(|_| stored));
        let stored = match checked {
            Ok(stored) => stored,
            Err(e) => {
                // Unpinned, so a retry in this session stores it instead of trusting the pin.
                self.unpin(&[hash]);
                return Err(e);
            }
        };
        self.stage_pinned(hash, &key, &[&stored])?;
        Ok(stored.len() as u64)
    }

    /// Takes the session's lease and pins `hash`, then checks whether it is stored: its
    /// key if this session must store it, `None` if it is present or this session has it
    /// already (a dedup hit; the name joins the session's persist).
    pub(crate) fn pin_if_absent(
        &self,
        hash: BlockHash,
    ) -> Result<Option<ObjectKey>, BlockStoreError> {
        let key = block_key(&hash)?;
        self.ensure_lease()?;
        let _shared = self.store.gc_shared();
        if !self.pin_one(hash) {
            // Stored (or being stored) by this session already; the session only commits
            // after every one of its puts has returned.
            return Ok(None);
        }
        if self.store.objects.head(&key)?.is_some() {
            // Present (its content durable: nothing is named before that), but perhaps only
            // just renamed by another session's install that has not synced its directory
            // yet: this session's persist syncs it too.
            lock(&self.pending).names.push(key);
            return Ok(None);
        }
        Ok(Some(key))
    }

    /// Stages a pinned block's encoded bytes for the session's next persist (persisting at
    /// once when the session holds [`MAX_STAGED_BLOCKS`]).
    pub(crate) fn stage_pinned(
        &self,
        hash: BlockHash,
        key: &ObjectKey,
        encoded: &[&[u8]],
    ) -> Result<(), BlockStoreError> {
        let staged = match self.store.objects.stage(key, encoded) {
            Ok(staged) => staged,
            Err(e) => {
                // Unpin so a retry in this session stores it instead of trusting the pin.
                self.unpin(&[hash]);
                return Err(e.into());
            }
        };
        let full = {
            let mut pending = lock(&self.pending);
            pending.staged.push((hash, staged));
            pending.staged.len() >= MAX_STAGED_BLOCKS
        };
        if full {
            self.persist()?;
        }
        Ok(())
    }

    pub(crate) fn unpin(&self, hashes: &[BlockHash]) {
        if let Some(set) = lock(&self.store.pins).get_mut(&self.id) {
            for hash in hashes {
                set.remove(hash);
            }
        }
    }

    /// Pins blocks this session will reference without storing them (e.g. entries
    /// inherited from a parent). Fails if any of them is not stored.
    /// In a shared store, a block that is only a fossil (GC phase 1 found it unreferenced)
    /// is put back under `blocks/` first.
    pub fn reference_blocks(&self, hashes: &[BlockHash]) -> Result<(), BlockStoreError> {
        self.ensure_lease()?;
        let _shared = self.store.gc_shared();
        self.pin(hashes.iter().copied());
        let shared = self.store.is_shared();
        for hash in hashes {
            let stored = self.store.has_block(hash)? || (shared && self.store.resurrect(hash)?);
            if !stored {
                return Err(BlockStoreError::MissingBlock { hash: *hash });
            }
        }
        Ok(())
    }

    /// Makes every block this session stored survive a crash: its staged blocks and
    /// dedup hits join the store's group commit (one content sync and one sync per
    /// directory for every session waiting) and this returns once that install has.
    /// If it fails, the staged blocks are gone and unpinned (a retry stores them again).
    pub fn persist(&self) -> Result<(), BlockStoreError> {
        self.check_lease()?;
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.staged.is_empty() && pending.names.is_empty() {
            return Ok(());
        }
        let hashes: Vec<BlockHash> = pending.staged.iter().map(|(h, _)| *h).collect();
        let names = pending.names.clone();
        let objects = &self.store.objects;
        let outcome = self.store.installs.submit(
            pending,
            |batch| {
                let mut staged = Vec::new();
                let mut names = Vec::new();
                for p in batch {
                    staged.extend(p.staged.into_iter().map(|(_, s)| s));
                    names.extend(p.names);
                }
                objects.install(staged, &names)
            },
            StoreError::replicate,
            || StoreError::Io {
                op: "install",
                what: "blocks".into(),
                source: std::io::Error::other("the install of this batch panicked"),
            },
        );
        if let Err(e) = outcome {
            self.unpin(&hashes);
            lock(&self.pending).names.extend(names);
            return Err(e.into());
        }
        Ok(())
    }

    /// Durably writes the manifest as a live snapshot. Pins last until the session drops.
    /// Every block the manifest lists must have been stored or referenced through this
    /// session, or be held by a live/retained manifest.
    pub fn commit(&self, manifest: &Manifest) -> Result<(), BlockStoreError> {
        let key = live_key(&manifest.snapshot_id)?;
        self.persist()?;
        self.check_lease()?;
        {
            let _meta = self.store.meta();
            if self.store.objects.head(&key)?.is_some() {
                return Err(BlockStoreError::SnapshotExists {
                    id: manifest.snapshot_id.clone(),
                });
            }
            self.store.objects.put(&key, &manifest.encode())?;
        }
        // Still held after the manifest is durable: any GC that stopped waiting for this
        // session started after, and sees the manifest. If not, take it back.
        if let Err(e) = self.check_lease() {
            let _meta = self.store.meta();
            self.store.objects.delete(&key)?;
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for WriteSession {
    fn drop(&mut self) {
        lock(&self.store.pins).remove(&self.id);
        if let (Some(leases), Some(id)) = (self.store.leases.get(), lock(&self.lease).take()) {
            leases.release(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_this_stores_block_keys_name_blocks() {
        let hash = BlockHash::of(b"block");
        let hex = hash.to_hex();
        let own = block_key(&hash).unwrap();
        assert_eq!(hash_of_block_key(&own), Some(hash));
        for other in [
            // Another store's blocks under a longer prefix of a shared bucket.
            format!("blocks/regions/us-east-1/blocks/{}/{hex}", &hex[..2]),
            format!("blocks/x/{hex}"),
            format!("blocks/{hex}"),
            format!("blocks/{}/{hex}/y", &hex[..2]),
            format!("snapshots/{}/{hex}", &hex[..2]),
        ] {
            let key = ObjectKey::new(other.clone()).unwrap();
            assert_eq!(hash_of_block_key(&key), None, "{other}");
        }
    }
}
