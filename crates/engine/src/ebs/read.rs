//! The read side of the EBS direct APIs: ListSnapshotBlocks, ListChangedBlocks and
//! GetSnapshotBlock, with the block tokens and page tokens they hand out (formats in the
//! parent module's doc).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blockstore::BlockHash;
use ring::hmac;

use super::{BlockPage, ChangedBlock, EbsError, EbsResult, now_secs, rid};
use crate::snapshots;
use crate::{Caller, Cloud};

/// Block tokens stay valid this long (AWS: 7 days).
const TOKEN_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// Page tokens are the last index returned, in base64.
fn decode_page_token(token: Option<&str>) -> EbsResult<Option<u64>> {
    token
        .map(|t| {
            B64.decode(t)
                .ok()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| {
                    EbsError::validation("INVALID_PAGE_TOKEN", "The page token is invalid.")
                })
        })
        .transpose()
}

fn page_token(index: u64) -> String {
    B64.encode(index.to_be_bytes())
}

fn check_max_results(max: Option<i64>) -> EbsResult<usize> {
    match max {
        None => Ok(10_000),
        Some(n) if (100..=10_000).contains(&n) => Ok(n as usize),
        Some(n) => Err(EbsError::validation(
            "INVALID_PARAMETER_VALUE",
            format!("MaxResults {n} is out of range (100-10000)."),
        )),
    }
}

impl Cloud {
    fn token_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.token_secret)
    }

    fn mac(&self, snapshot: &str, index: u64, hash: &BlockHash, expiry: u64) -> hmac::Tag {
        hmac::sign(
            &self.token_key(),
            &token_message(snapshot, index, hash, expiry),
        )
    }

    fn block_token(&self, snapshot: &str, index: u64, hash: &BlockHash, expiry: u64) -> String {
        let mut raw = Vec::with_capacity(72);
        raw.extend_from_slice(&expiry.to_be_bytes());
        raw.extend_from_slice(&hash.0);
        raw.extend_from_slice(self.mac(snapshot, index, hash, expiry).as_ref());
        B64.encode(raw)
    }

    fn verify_token(&self, snapshot: &str, index: u64, token: &str) -> EbsResult<BlockHash> {
        let bad = || EbsError::validation("INVALID_BLOCK_TOKEN", "The block token is invalid.");
        let raw = B64.decode(token).map_err(|_| bad())?;
        if raw.len() != 72 {
            return Err(bad());
        }
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&raw[..8]);
        let expiry = u64::from_be_bytes(expiry);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&raw[8..40]);
        let hash = BlockHash(hash);
        let msg = token_message(snapshot, index, &hash, expiry);
        hmac::verify(&self.token_key(), &msg, &raw[40..]).map_err(|_| bad())?;
        if now_secs() > expiry {
            return Err(EbsError::validation(
                "INVALID_BLOCK_TOKEN",
                "The block token has expired.",
            ));
        }
        Ok(hash)
    }

    /// ListSnapshotBlocks.
    pub fn list_snapshot_blocks(
        &self,
        caller: &Caller,
        id: &str,
        next_token: Option<&str>,
        max_results: Option<i64>,
        starting_index: Option<u64>,
    ) -> EbsResult<BlockPage<(u64, String)>> {
        let (doc, manifest) = self.readable_manifest(caller, id)?;
        let max = check_max_results(max_results)?;
        let after = decode_page_token(next_token)?;
        let expiry = now_secs() + TOKEN_LIFETIME_SECS;
        let mut blocks = Vec::new();
        let mut more = None;
        for (index, hash) in manifest.entries() {
            if starting_index.is_some_and(|s| *index < s) || after.is_some_and(|a| *index <= a) {
                continue;
            }
            if blocks.len() == max {
                more = blocks.last().map(|(i, _): &(u64, String)| page_token(*i));
                break;
            }
            blocks.push((*index, self.block_token(id, *index, hash, expiry)));
        }
        Ok(BlockPage {
            blocks,
            expiry_secs: expiry,
            volume_size: doc.volume_size_gib,
            next_token: more,
        })
    }

    /// ListChangedBlocks between `first` (optional) and `second` of one lineage.
    pub fn list_changed_blocks(
        &self,
        caller: &Caller,
        first: Option<&str>,
        second: &str,
        next_token: Option<&str>,
        max_results: Option<i64>,
        starting_index: Option<u64>,
    ) -> EbsResult<BlockPage<ChangedBlock>> {
        let (doc, second_manifest) = self.readable_manifest(caller, second)?;
        let first_manifest = match first {
            Some(first) => {
                let (_, m) = self.readable_manifest(caller, first)?;
                if !self.same_lineage(caller, first, second)? {
                    return Err(EbsError::validation(
                        "UNRELATED_SNAPSHOTS",
                        format!("The snapshots {first} and {second} are not of the same lineage."),
                    ));
                }
                Some(m)
            }
            None => None,
        };
        let max = check_max_results(max_results)?;
        let after = decode_page_token(next_token)?;
        let expiry = now_secs() + TOKEN_LIFETIME_SECS;
        let mut indexes: Vec<u64> = second_manifest.entries().iter().map(|(i, _)| *i).collect();
        if let Some(m) = &first_manifest {
            indexes.extend(m.entries().iter().map(|(i, _)| *i));
        }
        indexes.sort_unstable();
        indexes.dedup();
        let mut blocks = Vec::new();
        let mut more = None;
        for index in indexes {
            if starting_index.is_some_and(|s| index < s) || after.is_some_and(|a| index <= a) {
                continue;
            }
            let a = first_manifest.as_ref().and_then(|m| m.get(index));
            let b = second_manifest.get(index);
            if a == b {
                continue;
            }
            if blocks.len() == max {
                more = blocks.last().map(|c: &ChangedBlock| page_token(c.index));
                break;
            }
            blocks.push(ChangedBlock {
                index,
                first_token: a
                    .zip(first)
                    .map(|(h, f)| self.block_token(f, index, &h, expiry)),
                second_token: b.map(|h| self.block_token(second, index, &h, expiry)),
            });
        }
        Ok(BlockPage {
            blocks,
            expiry_secs: expiry,
            volume_size: doc.volume_size_gib,
            next_token: more,
        })
    }

    /// True if one snapshot is an ancestor of the other (parent links), or both were
    /// taken from the same volume.
    fn same_lineage(&self, caller: &Caller, a: &str, b: &str) -> EbsResult<bool> {
        let ancestors = |start: &str| -> EbsResult<Vec<String>> {
            let storage = self.region(&caller.region)?;
            let mut chain = vec![start.to_string()];
            let mut current = start.to_string();
            for _ in 0..10_000 {
                let Ok(m) = storage.store.read_manifest(&rid(&current)?) else {
                    break;
                };
                match m.parent_id {
                    Some(p) => {
                        current = p.to_string();
                        chain.push(current.clone());
                    }
                    None => break,
                }
            }
            Ok(chain)
        };
        if ancestors(b)?.iter().any(|x| x == a) || ancestors(a)?.iter().any(|x| x == b) {
            return Ok(true);
        }
        let volume_of = |id: &str| -> EbsResult<Option<String>> {
            Ok(self
                .catalog
                .resource(id)?
                .map(|r| snapshots::doc_of(&r))
                .transpose()?
                .map(|d| d.volume_id))
        };
        let (va, vb) = (volume_of(a)?, volume_of(b)?);
        Ok(va.is_some() && va == vb && va.as_deref() != Some("vol-ffffffff"))
    }

    /// GetSnapshotBlock: (data, base64 checksum).
    pub fn get_snapshot_block(
        &self,
        caller: &Caller,
        id: &str,
        index: u64,
        token: &str,
    ) -> EbsResult<(Vec<u8>, String)> {
        let (_, manifest) = self.readable_manifest(caller, id)?;
        let hash = self.verify_token(id, index, token)?;
        if manifest.get(index) != Some(hash) {
            return Err(EbsError::validation(
                "INVALID_BLOCK_TOKEN",
                "The block token does not belong to this block.",
            ));
        }
        let storage = self.region(&caller.region)?;
        let data = storage.store.get_block(&hash)?;
        Ok((data, B64.encode(hash.0)))
    }
}

/// What a block token's HMAC covers: snapshot ‖ index ‖ block hash ‖ expiry.
fn token_message(snapshot: &str, index: u64, hash: &BlockHash, expiry: u64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(snapshot.len() + 48);
    msg.extend_from_slice(snapshot.as_bytes());
    msg.extend_from_slice(&index.to_be_bytes());
    msg.extend_from_slice(&hash.0);
    msg.extend_from_slice(&expiry.to_be_bytes());
    msg
}
