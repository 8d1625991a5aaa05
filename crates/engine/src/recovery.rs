//! Startup recovery: makes the catalog and the data plane agree after a crash.
//!
//! Every multi-step operation is ordered so that a crash leaves a state this module can
//! finish or undo:
//!
//! | operation | order | after a crash in between |
//! |---|---|---|
//! | CreateVolume | volume dir → catalog row | dir without row: destroyed |
//! | DeleteVolume | dir destroyed → row deleted | row without dir: row deleted |
//! | CreateSnapshot / CopySnapshot | row `pending` → manifest → row `completed` | manifest present: `completed`; absent: `error` |
//! | DeleteSnapshot | manifest deleted → row deleted | `completed` row without manifest: row deleted |
//!
//! Manifests with no catalog row at all are deleted (their blocks go at the next GC).

use std::collections::HashSet;

use blockstore::ResourceId;
use catalog::ResourceRow;
use volume::Volume;

use crate::{Cloud, Ec2Result, ids, snapshots, volumes};

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
            if !storage.volumes_dir.join(&row.id).join("state").exists() {
                tracing::warn!(volume = %row.id, "volume data is gone (interrupted DeleteVolume): removing its record");
                self.catalog.delete_resource(&row.id)?;
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
            let stored = storage.store.snapshot_exists(&id)?;
            match (row.state.as_str(), stored) {
                ("pending", true) => {
                    tracing::info!(snapshot = %row.id, "snapshot data was complete before the restart");
                    snapshots::mark_completed(self, row)?;
                }
                ("pending", false) => snapshots::fail_interrupted(self, row)?,
                ("completed", false) => {
                    tracing::warn!(snapshot = %row.id, "snapshot data is gone (interrupted DeleteSnapshot): removing its record");
                    self.catalog.delete_resource(&row.id)?;
                }
                _ => {}
            }
        }
        for storage in self.regions.values() {
            for id in storage.store.list_snapshots()? {
                if !known.contains(id.as_str()) {
                    tracing::warn!(snapshot = %id, region = %storage.name, "deleting snapshot data the catalog does not know");
                    storage.store.delete_snapshot(&id)?;
                }
            }
        }
        Ok(())
    }
}
