//! EBS direct APIs: StartSnapshot, PutSnapshotBlock, CompleteSnapshot,
//! ListSnapshotBlocks, ListChangedBlocks, GetSnapshotBlock.
//!
//! An upload is an ordinary snapshot row in state `pending` whose document carries an
//! [`UploadDoc`]. Each acknowledged block is durable before PutSnapshotBlock answers: the
//! block object is stored and its name persisted, then `(snapshot, index, hash)` is
//! committed to the catalog's `upload_blocks` table, which GC treats as roots (see
//! [`Cloud::gc_region`], `gc.rs`).
//!
//! Both steps are group commits, so concurrent requests (coldsnap runs 64) share syncs:
//!
//! ```text
//!  request ─ pin+head ─ checksum check ─ stage ─▶ WriteSession::persist ──────────────▶
//!    (the check hashes a new block; a stored one is compared with its copy: claimed.rs)
//!    (the block store's group commit: one content sync, renames, one name sync for
//!     every waiting request's blocks — see blockstore's store.rs)
//!  ─▶ upload_rows.submit(row) ─ one catalog transaction for every waiting request's row
//!  ─▶ session dropped (unpinned: the row is a GC root now) ─▶ 200
//! ```
//!
//! A request answers only after the commit covering its row has returned, so an
//! acknowledged block survives kill -9 and power loss; a crash before that loses only
//! unacknowledged blocks (coldsnap retries them). CompleteSnapshot checks the count and the LINEAR checksum
//! (SHA-256 over the concatenated 32-byte block digests in index order), writes the
//! manifest — the parent's entries overridden by the uploaded blocks — and the snapshot
//! is `completed`.
//!
//! An upload outlives restarts of the service (crash or clean stop): its row, its
//! recorded blocks and the time of its last write are all in the catalog, and the
//! blocks themselves were durable before they were acknowledged, so startup recovery
//! leaves it `pending` (see `recovery.rs`) and PutSnapshotBlock / CompleteSnapshot carry
//! on. Its Timeout counts from its last acknowledged block, restart or not.
//!
//! Block tokens are `base64(expiry u64 BE ‖ block SHA-256 ‖ HMAC-SHA256(key, snapshot ‖
//! index ‖ hash ‖ expiry))`, keyed by a per-data-directory secret, so GetSnapshotBlock
//! needs no state and a token cannot be forged or moved to another block.
//!
//! This module is the upload side; the read side (listing, changed blocks, GetSnapshotBlock
//! and the tokens) is in `read.rs`.

use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blockstore::{BLOCK_SIZE, BlockHash, Manifest, ResourceId};
use catalog::now_ms;
use serde::{Deserialize, Serialize};

use crate::snapshots::{self, CREATE_VOLUME_PERMISSION, SnapshotDoc};
use crate::{Caller, Cloud, Ec2Error, ids, lock};

/// Largest EBS volume in GiB.
const MAX_VOLUME_GIB: i64 = 65_536;
const GIB: u64 = 1 << 30;

/// What an upload in progress remembers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadDoc {
    /// Snapshot the upload is incremental to.
    pub parent: Option<String>,
    /// Minutes without completion after which the upload fails.
    pub timeout_minutes: i64,
    /// The StartSnapshot idempotency token.
    pub client_token: Option<String>,
}

/// An EBS direct error: the exception name, HTTP status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbsError {
    /// e.g. `ValidationException`.
    pub kind: &'static str,
    /// HTTP status.
    pub status: u16,
    /// The `Reason` enum value, if the exception has one.
    pub reason: Option<&'static str>,
    /// Human message.
    pub message: String,
}

impl EbsError {
    /// `ValidationException` with a reason.
    pub fn validation(reason: &'static str, message: impl Into<String>) -> Self {
        EbsError {
            kind: "ValidationException",
            status: 400,
            reason: Some(reason),
            message: message.into(),
        }
    }

    fn not_found(id: &str) -> Self {
        EbsError {
            kind: "ResourceNotFoundException",
            status: 404,
            reason: Some("SNAPSHOT_NOT_FOUND"),
            message: format!("The snapshot '{id}' does not exist."),
        }
    }
}

impl From<Ec2Error> for EbsError {
    fn from(e: Ec2Error) -> Self {
        if e.status >= 500 {
            EbsError {
                kind: "InternalServerException",
                status: 500,
                reason: None,
                message: e.message,
            }
        } else {
            EbsError {
                kind: "ValidationException",
                status: 400,
                reason: Some("INVALID_PARAMETER_VALUE"),
                message: e.message,
            }
        }
    }
}

macro_rules! internal {
    ($($t:ty),*) => {$(
        impl From<$t> for EbsError {
            fn from(e: $t) -> Self {
                Ec2Error::from(e).into()
            }
        }
    )*};
}
internal!(catalog::CatalogError, blockstore::BlockStoreError);

/// EBS direct results.
pub type EbsResult<T> = Result<T, EbsError>;

/// StartSnapshot parameters.
#[derive(Clone, Debug, Default)]
pub struct StartSnapshot {
    /// Size in GiB.
    pub volume_size: i64,
    /// Parent for incremental uploads.
    pub parent_snapshot_id: Option<String>,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// Description.
    pub description: Option<String>,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// Encrypted.
    pub encrypted: bool,
    /// Minutes until an uncompleted upload fails (10–4320, default 60).
    pub timeout: Option<i64>,
}

/// What StartSnapshot returns.
#[derive(Clone, Debug)]
pub struct StartedSnapshot {
    /// New snapshot id.
    pub snapshot_id: String,
    /// Owner.
    pub owner_id: String,
    /// Always `pending`.
    pub status: String,
    /// Start time (ms).
    pub start_time_ms: i64,
    /// GiB.
    pub volume_size: i64,
    /// Parent.
    pub parent_snapshot_id: Option<String>,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// One page of blocks: (index, token) or (index, first token, second token).
#[derive(Clone, Debug)]
pub struct BlockPage<T> {
    /// Blocks of this page.
    pub blocks: Vec<T>,
    /// When the tokens expire (seconds since the epoch).
    pub expiry_secs: u64,
    /// Snapshot size in GiB.
    pub volume_size: i64,
    /// Next page.
    pub next_token: Option<String>,
}

/// One PutSnapshotBlock request.
#[derive(Clone, Copy, Debug)]
pub struct BlockWrite<'a> {
    /// Block index.
    pub index: u64,
    /// The block's bytes.
    pub data: &'a [u8],
    /// `x-amz-Data-Length`, if sent.
    pub data_length: Option<u64>,
    /// `x-amz-Checksum`: base64 SHA-256.
    pub checksum: &'a str,
    /// `x-amz-Checksum-Algorithm`.
    pub algorithm: &'a str,
}

/// A changed block between two snapshots.
#[derive(Clone, Debug)]
pub struct ChangedBlock {
    /// Index.
    pub index: u64,
    /// Token in the first snapshot (absent if the block is zero there).
    pub first_token: Option<String>,
    /// Token in the second snapshot (absent if zero there).
    pub second_token: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rid(id: &str) -> EbsResult<ResourceId> {
    ResourceId::new(id).map_err(|_| {
        EbsError::validation("INVALID_SNAPSHOT_ID", format!("Invalid snapshot id: {id}"))
    })
}

fn check_snapshot_id(id: &str) -> EbsResult<()> {
    if ids::is_valid("snap", id) {
        Ok(())
    } else {
        Err(EbsError::validation(
            "INVALID_SNAPSHOT_ID",
            format!("The snapshot ID '{id}' is malformed."),
        ))
    }
}

impl Cloud {
    /// A snapshot the caller may read (own or shared), completed, with its manifest.
    fn readable_manifest(&self, caller: &Caller, id: &str) -> EbsResult<(SnapshotDoc, Manifest)> {
        check_snapshot_id(id)?;
        let row = self.catalog.resource(id)?;
        let grantees = self.catalog.permissions(id, CREATE_VOLUME_PERMISSION)?;
        let row = match row {
            Some(row)
                if snapshots::visible(caller, &row, &self.effective_grantees(&row, &grantees)?) =>
            {
                row
            }
            _ => return Err(EbsError::not_found(id)),
        };
        if row.state != "completed" {
            return Err(EbsError::validation(
                "INVALID_SNAPSHOT_ID",
                format!("The snapshot '{id}' is not completed ({}).", row.state),
            ));
        }
        let doc = snapshots::doc_of(&row)?;
        let storage = self.region(&row.region)?;
        // A DeleteSnapshot between the row read above and here removed the manifest.
        let manifest = storage
            .store
            .read_manifest(&rid(id)?)
            .map_err(|e| match e {
                blockstore::BlockStoreError::SnapshotNotFound { .. } => EbsError::not_found(id),
                other => other.into(),
            })?;
        Ok((doc, manifest))
    }

    /// The caller's upload in progress, failing it if its timeout passed.
    fn open_upload(
        &self,
        caller: &Caller,
        id: &str,
    ) -> EbsResult<(catalog::ResourceRow, SnapshotDoc, UploadDoc)> {
        check_snapshot_id(id)?;
        let row = self
            .owned_row(caller, snapshots::KIND, id)?
            .ok_or_else(|| EbsError::not_found(id))?;
        let doc = snapshots::doc_of(&row)?;
        let Some(upload) = doc.upload.clone() else {
            return Err(EbsError::validation(
                "INVALID_SNAPSHOT_ID",
                format!("The snapshot '{id}' was not started with StartSnapshot."),
            ));
        };
        if row.state != "pending" {
            return Err(EbsError::validation(
                "INVALID_SNAPSHOT_ID",
                format!("The snapshot '{id}' is {}, not pending.", row.state),
            ));
        }
        if self.upload_timed_out(id, &doc, &upload)? {
            self.fail_upload(&row.id, "The upload timed out before CompleteSnapshot")?;
            return Err(EbsError::validation(
                "INVALID_SNAPSHOT_ID",
                format!("The snapshot '{id}' timed out and is in the error state."),
            ));
        }
        Ok((row, doc, upload))
    }

    /// True once an upload has gone `timeout_minutes` without a block written (counted
    /// from its start when no block was written). The last write is recorded with each
    /// block in the catalog, so the timeout is the same across restarts.
    pub(crate) fn upload_timed_out(
        &self,
        id: &str,
        doc: &SnapshotDoc,
        upload: &UploadDoc,
    ) -> EbsResult<bool> {
        let last = self.upload_last_activity(id, doc)?;
        Ok(now_ms() > last + upload.timeout_minutes * 60_000)
    }

    /// When the upload last made progress: its newest block, else its start. Cached in
    /// memory after the first catalog lookup.
    fn upload_last_activity(&self, id: &str, doc: &SnapshotDoc) -> EbsResult<i64> {
        if let Some(last) = lock(&self.upload_activity).get(id).copied() {
            return Ok(last);
        }
        let last = self
            .catalog
            .upload_last_write(id)?
            .unwrap_or(0)
            .max(doc.start_time_ms);
        Ok(self.note_upload_activity(id, last))
    }

    /// The timeout judged again from the catalog, not this node's memory: in a node
    /// cluster the upload's blocks may be arriving through another node.
    fn upload_idle_in_catalog(
        &self,
        id: &str,
        doc: &SnapshotDoc,
        upload: &UploadDoc,
    ) -> EbsResult<bool> {
        let last = self
            .catalog
            .upload_last_write(id)?
            .unwrap_or(0)
            .max(doc.start_time_ms);
        let last = self.note_upload_activity(id, last);
        Ok(now_ms() > last + upload.timeout_minutes * 60_000)
    }

    /// Records activity at `at` (keeping a later one already noted); returns the latest.
    fn note_upload_activity(&self, id: &str, at: i64) -> i64 {
        let mut activity = lock(&self.upload_activity);
        let last = activity.entry(id.to_string()).or_insert(at);
        *last = (*last).max(at);
        *last
    }

    /// Ends an upload `error` with `reason` and releases its blocks (the next GC frees
    /// them unless something else references them).
    pub(crate) fn fail_upload(&self, id: &str, reason: &str) -> EbsResult<()> {
        if let Some(row) = self.catalog.resource(id)? {
            if row.state != "pending" {
                // Completed (or failed) meanwhile, perhaps through another node.
                lock(&self.upload_activity).remove(id);
                return Ok(());
            }
            let mut doc = snapshots::doc_of(&row)?;
            doc.state_message = Some(reason.into());
            self.catalog
                .update_resource(id, "error", &snapshots::encode(&doc)?)?;
        }
        self.catalog.clear_upload(id)?;
        lock(&self.upload_activity).remove(id);
        Ok(())
    }

    /// Fails every upload whose timeout has passed (called periodically).
    pub fn expire_uploads(&self) -> EbsResult<usize> {
        let mut expired = 0;
        for row in self.catalog.resources_of_kind(snapshots::KIND)? {
            if row.state != "pending" {
                continue;
            }
            let doc = snapshots::doc_of(&row)?;
            if let Some(upload) = &doc.upload
                && self.upload_timed_out(&row.id, &doc, upload)?
                && self.upload_idle_in_catalog(&row.id, &doc, upload)?
            {
                self.fail_upload(&row.id, "The upload timed out before CompleteSnapshot")?;
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// StartSnapshot.
    pub fn start_snapshot(
        &self,
        caller: &Caller,
        req: StartSnapshot,
    ) -> EbsResult<StartedSnapshot> {
        if req.volume_size < 1 || req.volume_size > MAX_VOLUME_GIB {
            return Err(EbsError::validation(
                "INVALID_VOLUME_SIZE",
                format!(
                    "Volume size {} GiB is out of range (1-{MAX_VOLUME_GIB}).",
                    req.volume_size
                ),
            ));
        }
        let timeout = req.timeout.unwrap_or(60);
        if !(10..=4320).contains(&timeout) {
            return Err(EbsError::validation(
                "INVALID_PARAMETER_VALUE",
                format!("Timeout {timeout} is out of range (10-4320 minutes)."),
            ));
        }
        for (k, v) in &req.tags {
            crate::query::check_tag(k, v)
                .map_err(|e| EbsError::validation("INVALID_TAG", e.message))?;
        }
        let description = req.description.clone().unwrap_or_default();
        if description.len() > 255 {
            return Err(EbsError::validation(
                "INVALID_PARAMETER_VALUE",
                "Description must be at most 255 characters.",
            ));
        }
        if let Some(token) = &req.client_token {
            for row in self.catalog.resources(snapshots::KIND, &caller.region)? {
                if row.account_id != caller.account_id {
                    continue;
                }
                let doc = snapshots::doc_of(&row)?;
                if doc.upload.as_ref().and_then(|u| u.client_token.as_ref()) == Some(token) {
                    return Ok(self.started(
                        &row.id,
                        caller,
                        &doc,
                        &row.state,
                        self.catalog.tags(&row.id)?,
                    ));
                }
            }
        }
        if let Some(parent) = &req.parent_snapshot_id {
            let (parent_doc, _) = self.readable_manifest(caller, parent)?;
            if parent_doc.volume_size_gib > req.volume_size {
                return Err(EbsError::validation(
                    "INVALID_VOLUME_SIZE",
                    format!(
                        "Volume size {} GiB is smaller than the parent snapshot's {} GiB.",
                        req.volume_size, parent_doc.volume_size_gib
                    ),
                ));
            }
        }
        let id = ids::new_id("snap");
        let doc = SnapshotDoc {
            volume_id: "vol-ffffffff".into(),
            volume_size_gib: req.volume_size,
            description,
            progress: 0,
            start_time_ms: now_ms(),
            completion_time_ms: None,
            state_message: None,
            encrypted: req.encrypted,
            source: None,
            upload: Some(UploadDoc {
                parent: req.parent_snapshot_id.clone(),
                timeout_minutes: timeout,
                client_token: req.client_token.clone(),
            }),
            node: None,
        };
        self.insert_snapshot(caller, &id, &doc, &req.tags)?;
        Ok(self.started(&id, caller, &doc, "pending", req.tags))
    }

    fn started(
        &self,
        id: &str,
        caller: &Caller,
        doc: &SnapshotDoc,
        state: &str,
        tags: Vec<(String, String)>,
    ) -> StartedSnapshot {
        StartedSnapshot {
            snapshot_id: id.to_string(),
            owner_id: caller.account_id.clone(),
            status: state.to_string(),
            start_time_ms: doc.start_time_ms,
            volume_size: doc.volume_size_gib,
            parent_snapshot_id: doc.upload.as_ref().and_then(|u| u.parent.clone()),
            description: doc.description.clone(),
            tags,
        }
    }

    /// PutSnapshotBlock: `block.checksum` is the base64 SHA-256 of the data. Returns it.
    pub fn put_snapshot_block(
        &self,
        caller: &Caller,
        id: &str,
        block: BlockWrite<'_>,
    ) -> EbsResult<String> {
        let BlockWrite {
            index,
            data,
            data_length,
            checksum,
            algorithm,
        } = block;
        let (row, doc, _) = self.open_upload(caller, id)?;
        if algorithm != "SHA256" {
            return Err(EbsError::validation(
                "INVALID_PARAMETER_VALUE",
                format!("Checksum algorithm {algorithm} is not supported; use SHA256."),
            ));
        }
        let blocks = (doc.volume_size_gib as u64 * GIB).div_ceil(BLOCK_SIZE as u64);
        if index >= blocks {
            return Err(EbsError::validation(
                "INVALID_BLOCK",
                format!("Block index {index} is beyond the volume's {blocks} blocks."),
            ));
        }
        if data.len() != BLOCK_SIZE || data_length.is_some_and(|l| l != BLOCK_SIZE as u64) {
            return Err(EbsError::validation(
                "INVALID_BLOCK",
                format!("Block data must be exactly {BLOCK_SIZE} bytes."),
            ));
        }
        // The claimed digest is checked where the block is stored: a block the store has
        // already is compared with its copy rather than hashed (see blockstore's claimed.rs).
        let mismatch = || {
            EbsError::validation(
                "INVALID_BLOCK",
                "The checksum does not match the block data.",
            )
        };
        let claimed = B64
            .decode(checksum)
            .ok()
            .and_then(|d| <[u8; 32]>::try_from(d).ok())
            .map(BlockHash)
            .ok_or_else(mismatch)?;
        let storage = self.region(&row.region)?;
        let recorded = if blockstore::block::is_zero(data) {
            if claimed != blockstore::block::zero_block_hash() {
                return Err(mismatch());
            }
            String::new()
        } else {
            let session = storage.store.session();
            if !session.put_claimed_block(claimed, data)? {
                return Err(mismatch());
            }
            session.persist()?;
            // Recorded while the session still pins the block: GC sees one or the other.
            let hex = claimed.to_hex();
            self.record_upload_block(id, index, &hex)?;
            // The row is durable; if the session's lease (a node cluster) lapsed before
            // that, GC elsewhere may not have waited for it: not acknowledged, so the client
            // stores the block again (its retry takes a new lease).
            session.check_lease()?;
            drop(session);
            hex
        };
        if recorded.is_empty() {
            self.record_upload_block(id, index, "")?;
        }
        self.note_upload_activity(id, now_ms());
        Ok(B64.encode(claimed.0))
    }

    /// Commits one `upload_blocks` row in a catalog transaction shared with every other
    /// request waiting (group commit); returns once it is durable.
    fn record_upload_block(&self, id: &str, index: u64, hex: &str) -> EbsResult<()> {
        self.upload_rows.submit(
            (id.to_string(), index, hex.to_string()),
            |rows| Ok(self.catalog.put_upload_blocks(&rows)?),
            Clone::clone,
            || Ec2Error::internal("upload block rows", "the batch's commit panicked"),
        )?;
        Ok(())
    }

    /// CompleteSnapshot: verifies the count (and the LINEAR checksum if given) and
    /// commits the manifest.
    pub fn complete_snapshot(
        &self,
        caller: &Caller,
        id: &str,
        changed_blocks_count: u64,
        checksum: Option<&str>,
        algorithm: Option<&str>,
        aggregation: Option<&str>,
    ) -> EbsResult<String> {
        let (row, doc, upload) = self.open_upload(caller, id)?;
        let written = self.catalog.upload_blocks(id)?;
        if written.len() as u64 != changed_blocks_count {
            return Err(EbsError::validation(
                "INVALID_PARAMETER_VALUE",
                format!(
                    "ChangedBlocksCount {changed_blocks_count} does not match the {} blocks written.",
                    written.len()
                ),
            ));
        }
        if let Some(expected) = checksum {
            if algorithm.unwrap_or("SHA256") != "SHA256"
                || aggregation.unwrap_or("LINEAR") != "LINEAR"
            {
                return Err(EbsError::validation(
                    "INVALID_PARAMETER_VALUE",
                    "Only SHA256 with LINEAR aggregation is supported.",
                ));
            }
            let mut digests = Vec::with_capacity(written.len() * 32);
            for (_, hex) in &written {
                let hash = if hex.is_empty() {
                    BlockHash::of(&vec![0u8; BLOCK_SIZE])
                } else {
                    parse_hash(hex)?
                };
                digests.extend_from_slice(&hash.0);
            }
            if B64.encode(blockstore::sha256(&digests)) != expected {
                self.fail_upload(
                    id,
                    "The aggregate checksum did not match the blocks written",
                )?;
                return Err(EbsError::validation(
                    "INVALID_PARAMETER_VALUE",
                    "The aggregate checksum does not match the blocks written; the snapshot failed.",
                ));
            }
        }
        let storage = self.region(&row.region)?;
        let volume_size = doc.volume_size_gib as u64 * GIB;
        let mut entries: BTreeMap<u64, BlockHash> = BTreeMap::new();
        if let Some(parent) = &upload.parent {
            let manifest = match self.readable_manifest(caller, parent) {
                Ok((_, manifest)) => manifest,
                Err(e) if e.kind == "ResourceNotFoundException" => {
                    // Deleted since StartSnapshot: this upload can never complete.
                    self.fail_upload(
                        id,
                        "The parent snapshot was deleted before CompleteSnapshot",
                    )?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            entries.extend(manifest.entries().iter().copied());
        }
        for (index, hex) in &written {
            if hex.is_empty() {
                entries.remove(index);
            } else {
                entries.insert(*index, parse_hash(hex)?);
            }
        }
        let session = storage.store.session();
        let hashes: Vec<BlockHash> = entries
            .values()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if let Err(e) = session.reference_blocks(&hashes) {
            // The parent's blocks are pinned only now: if the parent was deleted (and its
            // blocks collected) since its manifest was read above, this upload can never
            // complete — the same answer as when the deletion came earlier.
            if matches!(e, blockstore::BlockStoreError::MissingBlock { .. })
                && let Some(parent) = &upload.parent
                && let Err(gone) = self.readable_manifest(caller, parent)
                && gone.kind == "ResourceNotFoundException"
            {
                self.fail_upload(
                    id,
                    "The parent snapshot was deleted before CompleteSnapshot",
                )?;
                return Err(gone);
            }
            return Err(e.into());
        }
        let manifest = Manifest::new(
            rid(id)?,
            upload.parent.as_deref().map(rid).transpose()?,
            volume_size,
            now_ms() as u64,
            entries.into_iter().collect(),
        )
        .map_err(|e| EbsError::from(Ec2Error::internal("manifest", e)))?;
        session.commit(&manifest)?;
        let mut done = doc.clone();
        done.progress = 100;
        done.completion_time_ms = Some(now_ms());
        let recorded = snapshots::encode(&done)
            .and_then(|d| Ok(self.catalog.update_resource(id, "completed", &d)?));
        if let Err(e) = recorded {
            // E.g. the catalog cannot grow: take the manifest back, so that the upload
            // stays `pending` without one and CompleteSnapshot can be retried.
            if let Err(undo) = storage.store.delete_snapshot(&manifest.snapshot_id) {
                tracing::error!(snapshot = %id, error = %undo, "cannot take back the manifest of an upload");
            }
            return Err(e.into());
        }
        // The snapshot is complete; upload rows left behind are released at the next start.
        if let Err(e) = self.catalog.clear_upload(id) {
            tracing::warn!(snapshot = %id, error = %e, "cannot clear the blocks of a completed upload");
        }
        lock(&self.upload_activity).remove(id);
        Ok("completed".into())
    }
}

fn parse_hash(hex: &str) -> EbsResult<BlockHash> {
    hex.parse()
        .map_err(|_| EbsError::from(Ec2Error::internal("upload block hash", hex)))
}

mod read;

#[cfg(test)]
mod tests;
