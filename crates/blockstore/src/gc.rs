//! Garbage collection, scrub and statistics over a [`BlockStore`].

use std::collections::{HashMap, HashSet};

use objstore::ObjectKey;

use crate::fossil::{FOSSILS_PREFIX, hash_of_fossil_key};
use crate::store::{BLOCKS_PREFIX, block_key, decode_manifest, hash_of_block_key, retained_twin};
use crate::{BLOCK_SIZE, BlockHash, BlockStore, BlockStoreError, ResourceId, block};

/// What a GC run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Retained manifests of deleted snapshots that nothing held any more.
    pub manifests_dropped: usize,
    /// Blocks examined.
    pub blocks_examined: usize,
    /// Blocks deleted because nothing referenced them.
    pub blocks_deleted: usize,
    /// Stored bytes freed.
    pub bytes_freed: u64,
}

/// What a scrub found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Manifests read.
    pub manifests_checked: usize,
    /// Manifests that failed to decode: (key, reason).
    pub bad_manifests: Vec<(String, String)>,
    /// Blocks read and verified.
    pub blocks_checked: usize,
    /// Blocks whose content does not match their address: (hash, reason).
    pub corrupt_blocks: Vec<(BlockHash, String)>,
    /// Blocks a manifest references that are not stored: (snapshot, hash).
    pub missing_blocks: Vec<(String, BlockHash)>,
    /// Stored blocks no manifest references (GC will free them).
    pub unreferenced_blocks: usize,
    /// Fossils (a shared store between the two GC phases): checked like blocks, and a
    /// referenced block that is only a fossil is not missing (readers find it).
    pub fossils_checked: usize,
}

impl ScrubReport {
    /// True when nothing is corrupt, missing or undecodable.
    pub fn is_clean(&self) -> bool {
        self.bad_manifests.is_empty()
            && self.corrupt_blocks.is_empty()
            && self.missing_blocks.is_empty()
    }
}

/// Space accounting for the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live snapshots.
    pub snapshots: usize,
    /// Deleted snapshots still held by a volume.
    pub retained_snapshots: usize,
    /// Sum of the volume sizes of live snapshots.
    pub provisioned_bytes: u64,
    /// Non-zero data the live and retained snapshots describe (entries × block size).
    pub logical_bytes: u64,
    /// Distinct referenced blocks × block size: the data after deduplication.
    pub unique_bytes: u64,
    /// Bytes stored for referenced blocks, after compression.
    pub stored_bytes: u64,
    /// Stored blocks, referenced or not.
    pub stored_blocks: usize,
    /// Stored blocks nothing references (freed by the next GC) and their bytes.
    pub unreferenced_blocks: usize,
    /// Bytes of unreferenced blocks.
    pub unreferenced_bytes: u64,
    /// Stored blocks no manifest references but the caller's roots hold (e.g. blocks of
    /// EBS direct uploads in progress; kept by GC, see [`BlockStore::gc_with_roots`]).
    pub held_blocks: usize,
    /// Bytes of held blocks.
    pub held_bytes: u64,
    /// Fossils: blocks the first phase of a shared store's GC found unreferenced, deleted
    /// (or put back) by its second phase.
    pub fossil_blocks: usize,
    /// Bytes of fossils.
    pub fossil_bytes: u64,
}

impl StoreStats {
    /// logical / unique: how much deduplication saves.
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.unique_bytes)
    }

    /// unique / stored: how much compression saves.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_bytes, self.stored_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

impl BlockStore {
    /// Reads every manifest in `keys`, adding their blocks to `referenced`.
    /// Manifests that vanish while we read are skipped (they were deleted).
    pub(crate) fn mark(
        &self,
        keys: &[ObjectKey],
        referenced: &mut HashSet<BlockHash>,
    ) -> Result<(), BlockStoreError> {
        for key in keys {
            let bytes = match self.objects().get(key) {
                Ok(bytes) => bytes,
                // Deleted since it was listed — or moved to retained/ because a volume
                // holds it (the retained copy is written before the live one goes).
                Err(e) if e.is_not_found() => match retained_twin(key) {
                    Some(twin) => match self.objects().get(&twin) {
                        Ok(bytes) => bytes,
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e.into()),
                    },
                    None => continue,
                },
                Err(e) => return Err(e.into()),
            };
            let manifest = decode_manifest(key.as_str(), &bytes)?;
            referenced.extend(manifest.entries().iter().map(|(_, h)| *h));
        }
        Ok(())
    }

    /// Frees every block that no live or retained manifest references and no open write
    /// session pins; first drops retained manifests nothing holds.
    ///
    /// A manifest that fails to decode aborts GC (it might reference anything).
    pub fn gc(&self) -> Result<GcReport, BlockStoreError> {
        self.gc_with_roots(&|| Ok(HashSet::new()))
    }

    /// [`gc`](Self::gc) that also keeps the blocks `extra_roots` returns — references
    /// the caller keeps outside the store, e.g. blocks of uploads in progress recorded
    /// in the catalog. It is called under the exclusive GC lock, after every writer that
    /// could add to it has either finished or is still pinning its blocks.
    pub fn gc_with_roots(
        &self,
        extra_roots: &dyn Fn() -> Result<HashSet<BlockHash>, String>,
    ) -> Result<GcReport, BlockStoreError> {
        let mut report = GcReport {
            manifests_dropped: self.drop_unheld_retained()?,
            ..GcReport::default()
        };
        // Blocks listed now are the only deletion candidates: anything stored later is
        // either pinned or referenced by a manifest we will see below.
        let candidates = self.objects().list(BLOCKS_PREFIX)?;
        report.blocks_examined = candidates.len();
        let mut referenced = HashSet::new();
        let first_keys = self.manifest_keys()?;
        self.mark(&first_keys, &mut referenced)?;

        let _exclusive = self.gc_exclusive();
        let seen: HashSet<_> = first_keys.into_iter().collect();
        let new_keys: Vec<_> = self
            .manifest_keys()?
            .into_iter()
            .filter(|k| !seen.contains(k))
            .collect();
        self.mark(&new_keys, &mut referenced)?;
        referenced.extend(self.pinned_hashes());
        referenced.extend(extra_roots().map_err(BlockStoreError::ExternalRoots)?);
        for meta in candidates {
            let Some(hash) = hash_of_block_key(&meta.key) else {
                continue;
            };
            if !referenced.contains(&hash) {
                self.objects().delete(&meta.key)?;
                report.blocks_deleted += 1;
                report.bytes_freed += meta.size;
            }
        }
        tracing::info!(?report, "gc finished");
        Ok(report)
    }

    /// Verifies every stored block against its hash and every manifest's references.
    pub fn scrub(&self) -> Result<ScrubReport, BlockStoreError> {
        let mut report = ScrubReport::default();
        let mut referenced: HashMap<BlockHash, String> = HashMap::new();
        for key in self.manifest_keys()? {
            let bytes = match self.objects().get(&key) {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            report.manifests_checked += 1;
            match decode_manifest(key.as_str(), &bytes) {
                Ok(m) => {
                    for (_, hash) in m.entries() {
                        referenced
                            .entry(*hash)
                            .or_insert_with(|| m.snapshot_id.to_string());
                    }
                }
                Err(e) => report.bad_manifests.push((key.to_string(), e.to_string())),
            }
        }
        let mut stored = HashSet::new();
        let blocks = self
            .objects()
            .list(BLOCKS_PREFIX)?
            .into_iter()
            .map(|m| (m, false));
        let fossils = self
            .objects()
            .list(FOSSILS_PREFIX)?
            .into_iter()
            .map(|m| (m, true));
        for (meta, fossil) in blocks.chain(fossils) {
            let hash = if fossil {
                hash_of_fossil_key(&meta.key)
            } else {
                hash_of_block_key(&meta.key)
            };
            let Some(hash) = hash else {
                continue;
            };
            if fossil {
                report.fossils_checked += 1;
            } else {
                report.blocks_checked += 1;
                if !referenced.contains_key(&hash) {
                    report.unreferenced_blocks += 1;
                }
            }
            stored.insert(hash);
            let verdict = self
                .objects()
                .get(&meta.key)
                .map_err(|e| e.to_string())
                .and_then(|bytes| block::decode(&bytes))
                .and_then(|data| {
                    if BlockHash::of(&data) == hash {
                        Ok(())
                    } else {
                        Err("content does not match its SHA-256".into())
                    }
                });
            if let Err(reason) = verdict {
                report.corrupt_blocks.push((hash, reason));
            }
        }
        let mut missing: Vec<_> = referenced
            .into_iter()
            .filter(|(hash, _)| !stored.contains(hash))
            .map(|(hash, snap)| (snap, hash))
            .collect();
        missing.sort();
        report.missing_blocks = missing;
        Ok(report)
    }

    /// Space accounting: logical vs unique vs stored bytes.
    pub fn stats(&self) -> Result<StoreStats, BlockStoreError> {
        self.stats_with_roots(&HashSet::new())
    }

    /// [`stats`](Self::stats) where the blocks in `roots` that no manifest references
    /// count as held (what [`gc_with_roots`](Self::gc_with_roots) keeps), not unreferenced.
    pub fn stats_with_roots(
        &self,
        roots: &HashSet<BlockHash>,
    ) -> Result<StoreStats, BlockStoreError> {
        let mut stats = StoreStats::default();
        let mut referenced = HashSet::new();
        for (prefix_is_live, ids) in [
            (true, self.list_snapshots()?),
            (false, self.list_retained()?),
        ] {
            for id in ids {
                let manifest = match self.read_manifest(&id) {
                    Ok(m) => m,
                    Err(BlockStoreError::SnapshotNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                if prefix_is_live {
                    stats.snapshots += 1;
                    stats.provisioned_bytes += manifest.volume_size;
                } else {
                    stats.retained_snapshots += 1;
                }
                stats.logical_bytes += manifest.entries().len() as u64 * BLOCK_SIZE as u64;
                referenced.extend(manifest.entries().iter().map(|(_, h)| *h));
            }
        }
        for meta in self.objects().list(BLOCKS_PREFIX)? {
            let Some(hash) = hash_of_block_key(&meta.key) else {
                continue;
            };
            stats.stored_blocks += 1;
            if referenced.contains(&hash) {
                stats.unique_bytes += BLOCK_SIZE as u64;
                stats.stored_bytes += meta.size;
            } else if roots.contains(&hash) {
                stats.held_blocks += 1;
                stats.held_bytes += meta.size;
            } else {
                stats.unreferenced_blocks += 1;
                stats.unreferenced_bytes += meta.size;
            }
        }
        for meta in self.objects().list(FOSSILS_PREFIX)? {
            stats.fossil_blocks += 1;
            stats.fossil_bytes += meta.size;
        }
        Ok(stats)
    }

    /// Every block hash that a snapshot references (for tests and tools).
    pub fn referenced_by(&self, id: &ResourceId) -> Result<Vec<BlockHash>, BlockStoreError> {
        Ok(self
            .read_manifest(id)?
            .entries()
            .iter()
            .map(|(_, h)| *h)
            .collect())
    }

    /// Every stored block hash.
    pub fn stored_blocks(&self) -> Result<Vec<BlockHash>, BlockStoreError> {
        Ok(self
            .objects()
            .list(BLOCKS_PREFIX)?
            .iter()
            .filter_map(|m| hash_of_block_key(&m.key))
            .collect())
    }

    /// Deletes one stored block outright (for corruption tests and repair tools).
    pub fn remove_block_unchecked(&self, hash: &BlockHash) -> Result<(), BlockStoreError> {
        Ok(self.objects().delete(&block_key(hash)?)?)
    }
}
