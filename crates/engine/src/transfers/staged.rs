//! Disk images uploaded through the web console, and snapshots read out whole (the
//! console's download).
//!
//! An upload is streamed by the console into a *staging file* in the data directory; an
//! ImportSnapshot or ImportImage task then takes the file over and imports it exactly like
//! a file of the import directory (same format detection and hostile-image checks, same
//! progress, same Describe…Tasks). The task's disk names the file in
//! [`SourceSpec::upload`](super::SourceSpec) and the browser's file name in
//! `upload_name` (what messages call it):
//!
//! ```text
//! <data-dir>/transfers/uploads/            (mode 0700)
//!     upload-<32 hex>.part                 one uploaded disk image, owned by the
//!                                          import task whose disk names it
//! ```
//!
//! The file is deleted when its task ends (completed, failed or cancelled), when starting
//! the task fails, and, for all of them, when the server starts: a task interrupted by a
//! restart then fails saying that the upload is gone.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use blockstore::{BLOCK_SIZE, BlockStore, Manifest, ResourceId};
use catalog::ResourceRow;

use super::{
    DiskDetail, IMPORT_IMAGE, IMPORT_SNAPSHOT, SourceSpec, TaskDoc, TaskView, created_now, doc_of,
};
use crate::snapshots;
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// The staging directory, under the data directory.
const UPLOADS: &str = "transfers/uploads";

/// An uploaded disk image waiting in a staging file, to be imported.
#[derive(Clone, Debug, Default)]
pub struct StagedUpload {
    /// The staging file's name (from [`Cloud::create_staging_file`]).
    pub staged: String,
    /// The file name the browser sent (for messages only).
    pub file_name: String,
    /// `Format`, when the client named one (checked against the file).
    pub format: Option<String>,
    /// `Description`.
    pub description: Option<String>,
}

/// True for the names [`Cloud::create_staging_file`] makes: `upload-<32 hex>.part`.
fn valid_name(name: &str) -> bool {
    name.strip_prefix("upload-")
        .and_then(|r| r.strip_suffix(".part"))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Cloud {
    fn staging_dir(&self) -> PathBuf {
        self.data_dir().root().join(UPLOADS)
    }

    /// A new, empty staging file: (its name, the open file).
    pub fn create_staging_file(&self) -> Ec2Result<(String, File)> {
        let dir = self
            .data_dir()
            .private_subdir(UPLOADS)
            .map_err(|e| Ec2Error::internal("upload staging directory", e))?;
        let name = format!(
            "upload-{}.part",
            hex::encode(crate::ids::random_bytes::<16>())
        );
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(dir.join(&name))
            .map_err(|e| Ec2Error::internal("upload staging file", e))?;
        Ok((name, file))
    }

    /// Deletes a staging file (an upload that failed or was refused).
    pub fn discard_staging_file(&self, name: &str) {
        if valid_name(name) {
            let path = self.staging_dir().join(name);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %name, error = %e, "cannot delete an upload staging file");
            }
        }
    }

    /// Starts an ImportSnapshot (or, with `as_image`, an ImportImage with the defaults:
    /// x86_64, Linux) task of the caller that imports the staged upload; the task owns
    /// the file from here on, and on any error the file is deleted.
    pub fn import_staged(
        self: &Arc<Self>,
        caller: &Caller,
        upload: StagedUpload,
        as_image: bool,
    ) -> Ec2Result<TaskView> {
        let started = self.start_staged(caller, &upload, as_image);
        if started.is_err() {
            self.discard_staging_file(&upload.staged);
        }
        started
    }

    fn start_staged(
        self: &Arc<Self>,
        caller: &Caller,
        upload: &StagedUpload,
        as_image: bool,
    ) -> Ec2Result<TaskView> {
        if !valid_name(&upload.staged) || !self.staging_dir().join(&upload.staged).is_file() {
            return Err(Ec2Error::invalid_value(format!(
                "The upload of {} is not on the server",
                upload.file_name
            )));
        }
        if let Some(f) = &upload.format
            && !super::import::FORMATS.contains(&f.to_ascii_uppercase().as_str())
        {
            return Err(Ec2Error::client(
                "InvalidParameter",
                format!("Invalid disk format {f}: expected one of VMDK, RAW, VHD, VHDX, QCOW2"),
            ));
        }
        let disk = DiskDetail {
            source: SourceSpec {
                format: upload.format.clone(),
                description: upload.description.clone(),
                upload: Some(upload.staged.clone()),
                upload_name: Some(upload.file_name.clone()),
                ..Default::default()
            },
            status: "active".into(),
            ..Default::default()
        };
        let mut doc = TaskDoc {
            description: upload.description.clone(),
            status_message: "pending".into(),
            disks: vec![disk],
            created_ms: created_now(),
            ..Default::default()
        };
        let kind = if as_image {
            doc.architecture = Some("x86_64".into());
            doc.platform = Some("Linux".into());
            IMPORT_IMAGE
        } else {
            IMPORT_SNAPSHOT
        };
        self.start_task(caller, kind, doc, &[])
    }

    /// The staging file an import's disk reads, if its source is an upload.
    pub(crate) fn staged_source(&self, spec: &SourceSpec) -> Option<Result<PathBuf, String>> {
        let staged = spec.upload.as_deref()?;
        let name = spec.upload_name.as_deref().unwrap_or("the disk image");
        let path = self.staging_dir().join(staged);
        Some(if valid_name(staged) && path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "The uploaded file {name} is no longer on the server (it restarted); upload it again"
            ))
        })
    }

    /// Deletes the staging files of a task that ended.
    pub(crate) fn remove_staged_of(&self, row: &ResourceRow) {
        if let Ok(doc) = doc_of(row) {
            for d in &doc.disks {
                if let Some(name) = &d.source.upload {
                    self.discard_staging_file(name);
                }
            }
        }
    }

    /// Deletes every staging file (at server start, before tasks resume).
    pub(crate) fn clear_staging(&self) {
        let Ok(entries) = std::fs::read_dir(self.staging_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                tracing::info!(file = %name, "deleting an upload left by the last run");
                self.discard_staging_file(name);
            }
        }
    }

    /// A snapshot the caller may read (own, or shared by create-volume permission) as a
    /// whole disk, to be read block by block.
    pub fn snapshot_image(&self, caller: &Caller, id: &str) -> Ec2Result<SnapshotImage> {
        let usable = snapshots::usable_snapshot(self, caller, id)?;
        let storage = self.region(&caller.region)?;
        let rid = ResourceId::new(&usable.id).map_err(|e| Ec2Error::internal("snapshot id", e))?;
        let manifest = storage.store.read_manifest(&rid).map_err(|e| match e {
            blockstore::BlockStoreError::SnapshotNotFound { .. } => {
                Ec2Error::not_found("InvalidSnapshot.NotFound", "snapshot", id)
            }
            other => other.into(),
        })?;
        Ok(SnapshotImage {
            store: Arc::clone(&storage.store),
            manifest,
        })
    }
}

/// A snapshot's disk, read block by block ([`Cloud::snapshot_image`]).
#[derive(Debug)]
pub struct SnapshotImage {
    store: Arc<BlockStore>,
    manifest: Manifest,
}

impl SnapshotImage {
    /// The disk's size in bytes (the volume size).
    pub fn size(&self) -> u64 {
        self.manifest.volume_size
    }

    /// The block size (the last block may be shorter: see [`SnapshotImage::block`]).
    pub const BLOCK_SIZE: u64 = BLOCK_SIZE as u64;

    /// How many blocks [`SnapshotImage::block`] reads.
    pub fn blocks(&self) -> u64 {
        self.size().div_ceil(Self::BLOCK_SIZE)
    }

    /// Block `index` of the disk (zeros where the snapshot stores none), cut to the
    /// disk's end.
    pub fn block(&self, index: u64) -> Ec2Result<Vec<u8>> {
        let start = index.saturating_mul(Self::BLOCK_SIZE);
        let len = Self::BLOCK_SIZE.min(self.size().saturating_sub(start)) as usize;
        let mut data = match self.manifest.get(index) {
            Some(hash) => self.store.get_block(&hash)?,
            None => vec![0u8; len],
        };
        data.resize(len, 0);
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_made_names_are_staging_files() {
        assert!(valid_name("upload-0123456789abcdef0123456789abcdef.part"));
        for bad in [
            "upload-0123456789abcdef0123456789abcdef",
            "upload-../../etc/passwd.part",
            "../upload-0123456789abcdef0123456789abcdef.part",
            "upload-0123456789abcdef0123456789abcde.part",
            "",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
