//! Startup recovery: makes the catalog and the data plane agree after a crash.
//!
//! Every multi-step operation is ordered so that a crash leaves a state this module can
//! finish or undo:
//!
//! | operation | order | after a crash in between |
//! |---|---|---|
//! | CreateVolume | volume dir → catalog row | dir without row: destroyed |
//! | DeleteVolume | dir destroyed → row deleted | row without dir: row deleted (on a node: marked `error`, its data may be on the node a zone was taken over from) |
//! | CreateSnapshot / CopySnapshot | row `pending` → manifest → row `completed` | manifest present: `completed`; absent: `error` |
//! | DeleteSnapshot | manifest deleted → row deleted | `completed` row without manifest: row deleted |
//! | PutSnapshotBlock | block stored and synced → `upload_blocks` row → 201 | block without row: unacknowledged, collected by GC |
//! | CompleteSnapshot | manifest → row `completed` → `upload_blocks` cleared | manifest present: `completed` |
//!
//! Manifests with no catalog row at all are deleted (their blocks go at the next GC).
//!
//! An EBS direct upload (`pending`, no manifest) is resumed, not failed: it stays
//! `pending` and keeps its acknowledged blocks, which stay GC roots through the
//! catalog. It ends `error` only if its Timeout passed while the service was down, or if
//! a block it acknowledged is missing from the block store (then completing it would
//! produce a corrupt snapshot). Upload blocks left behind by snapshots that are no
//! longer pending are released.
//!
//! **In a node cluster** (`--node-id`, see `crate::nodes`) several processes share the
//! catalog, and each recovers only what it owns, so that a restarting node never fails
//! or deletes another node's work:
//!
//! | resource | recovered by |
//! |---|---|
//! | volume (row without data) | the node owning the volume's zone |
//! | volume data without a row | the node whose disk holds it (data is node-local) |
//! | instance | the node owning the instance's zone |
//! | snapshot (`pending`, or `completed` without manifest) | the node named in its document (`node`); one recorded before nodes: the node owning its volume's zone |
//! | EBS direct upload | any node, as before (uploads are regional) |
//! | manifest without a row | any node, after looking the row up again (rows are written before manifests, so a row missing then is really missing) |
//! | pending image | a node that owns one of its snapshots |
//!
//! Without `--node-id` the process owns everything, as the embedded default always did.

use std::collections::HashSet;

use blockstore::{BlockHash, BlockStore, ResourceId};
use catalog::ResourceRow;
use volume::Volume;

use crate::ebs::EbsError;
use crate::{Cloud, Ec2Error, Ec2Result, ids, snapshots, volumes};

impl Cloud {
    /// Runs every recovery step; errors are logged per item, not fatal.
    pub(crate) fn reconcile(&self) -> Ec2Result<()> {
        self.reconcile_volumes()?;
        self.reconcile_snapshots()?;
        Ok(())
    }

    fn reconcile_volumes(&self) -> Ec2Result<()> {
        let rows = self.catalog.resources_of_kind(volumes::KIND)?;
        let known: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        for storage in self.regions.values() {
            let entries = match std::fs::read_dir(&storage.volumes_dir) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(dir = %storage.volumes_dir.display(), error = %e, "cannot list volumes");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if ids::is_valid("vol", &name) && !known.contains(name.as_str()) {
                    tracing::warn!(volume = %name, region = %storage.name, "removing a volume the catalog does not know (interrupted CreateVolume)");
                    if let Err(e) = Volume::destroy(&entry.path(), &storage.store) {
                        tracing::error!(volume = %name, error = %e, "cannot remove orphaned volume");
                    }
                }
            }
        }
        for row in rows {
            let Some(storage) = self.regions.get(&row.region) else {
                continue;
            };
            if !self.owns_volume_row(&row)? {
                continue;
            }
            if !storage.volumes_dir.join(&row.id).join("state").exists() {
                if self.node().is_some() {
                    // On a node the data may be on another machine: a zone taken over from
                    // a node that went silent. Never forget a volume for that.
                    if row.state != "error" {
                        tracing::error!(volume = %row.id, "volume data is not on this node (an interrupted DeleteVolume, or a zone taken over from another node): marking the volume error");
                        self.catalog.update_resource(&row.id, "error", &row.doc)?;
                    }
                } else {
                    tracing::warn!(volume = %row.id, "volume data is gone (interrupted DeleteVolume): removing its record");
                    self.catalog.delete_resource(&row.id)?;
                }
            }
        }
        Ok(())
    }

    fn reconcile_snapshots(&self) -> Ec2Result<()> {
        let rows: Vec<ResourceRow> = self.catalog.resources_of_kind(snapshots::KIND)?;
        let known: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        for row in &rows {
            let Some(storage) = self.regions.get(&row.region) else {
                continue;
            };
            let Ok(id) = ResourceId::new(&row.id) else {
                continue;
            };
            let upload = snapshots::doc_of(row)?.upload.is_some();
            if !upload && !self.owns_snapshot_row(row)? {
                continue;
            }
            let stored = storage.store.snapshot_exists(&id)?;
            match (row.state.as_str(), stored) {
                ("pending", true) => {
                    tracing::info!(snapshot = %row.id, "snapshot data was complete before the restart");
                    snapshots::mark_completed(self, row)?;
                    self.catalog.clear_upload(&row.id)?;
                }
                ("pending", false) if upload => {
                    self.resume_upload(row, &storage.store)?;
                }
                ("pending", false) => snapshots::fail_interrupted(self, row)?,
                ("completed", false) if self.owns_snapshot_row(row)? => {
                    tracing::warn!(snapshot = %row.id, "snapshot data is gone (interrupted DeleteSnapshot): removing its record");
                    self.catalog.delete_resource(&row.id)?;
                }
                _ => {}
            }
        }
        self.release_finished_uploads()?;
        for storage in self.regions.values() {
            for id in storage.store.list_snapshots()? {
                // Looked up again: another node may have begun it since `rows` was read
                // (its row was written before its manifest).
                if !known.contains(id.as_str()) && self.catalog.resource(id.as_str())?.is_none() {
                    tracing::warn!(snapshot = %id, region = %storage.name, "deleting snapshot data the catalog does not know");
                    storage.store.delete_snapshot(&id)?;
                }
            }
        }
        Ok(())
    }

    /// Keeps an EBS direct upload that was in progress `pending`, or fails it if it
    /// timed out meanwhile or lost a block it acknowledged.
    fn resume_upload(&self, row: &ResourceRow, store: &BlockStore) -> Ec2Result<()> {
        let doc = snapshots::doc_of(row)?;
        let Some(upload) = &doc.upload else {
            return Ok(());
        };
        let ebs = |e: EbsError| Ec2Error::internal("upload recovery", e.message);
        if self.upload_timed_out(&row.id, &doc, upload).map_err(ebs)? {
            tracing::warn!(snapshot = %row.id, "upload timed out while the service was down");
            return self
                .fail_upload(&row.id, "The upload timed out before CompleteSnapshot")
                .map_err(ebs);
        }
        let blocks = self.catalog.upload_blocks(&row.id)?;
        let mut missing = Vec::new();
        for (index, hex) in &blocks {
            if hex.is_empty() {
                continue;
            }
            let present = match hex.parse::<BlockHash>() {
                Ok(hash) => store.is_readable(&hash)?,
                Err(_) => false,
            };
            if !present {
                missing.push(*index);
            }
        }
        if let Some(first) = missing.first() {
            tracing::error!(snapshot = %row.id, missing = missing.len(), "upload lost acknowledged blocks");
            let reason = format!(
                "The upload could not be resumed after a restart of the service: {} acknowledged block(s) are missing from the block store (first: block index {first})",
                missing.len()
            );
            return self.fail_upload(&row.id, &reason).map_err(ebs);
        }
        tracing::info!(snapshot = %row.id, blocks = blocks.len(), "resuming an upload in progress");
        Ok(())
    }

    /// Releases recorded upload blocks of snapshots that are gone or no longer pending.
    fn release_finished_uploads(&self) -> Ec2Result<()> {
        for id in self.catalog.upload_snapshot_ids()? {
            let pending = self
                .catalog
                .resource(&id)?
                .is_some_and(|row| row.kind == snapshots::KIND && row.state == "pending");
            if !pending {
                tracing::info!(snapshot = %id, "releasing the blocks of a finished upload");
                self.catalog.clear_upload(&id)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
