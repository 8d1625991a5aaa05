//! ExportImage: the root volume of an EBS-backed AMI written as a VM disk file (VMDK
//! streamOptimized, RAW, dynamic VHD, or QCOW2) to
//! `<export-dir>/<bucket>/<prefix><export-ami-…>.<format>`.

use std::path::PathBuf;
use std::sync::Arc;

use blockstore::{BLOCK_SIZE, ResourceId};
use catalog::ResourceRow;

use super::source::check_relative;
use super::{EXPORT_IMAGE, TaskDoc, TaskFailure, TaskProgress, TaskView, created_now, doc_of};
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// ExportImage parameters.
#[derive(Clone, Debug, Default)]
pub struct ExportImage {
    /// `ImageId`.
    pub image_id: String,
    /// `DiskImageFormat`: VMDK, RAW, VHD (and QCOW2, beyond EC2).
    pub disk_image_format: String,
    /// `S3ExportLocation.S3Bucket`.
    pub bucket: String,
    /// `S3ExportLocation.S3Prefix`.
    pub prefix: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `RoleName`.
    pub role_name: Option<String>,
    /// `ClientToken`.
    pub client_token: Option<String>,
    /// `TagSpecification.N` (`export-image-task`).
    pub tag_specifications: Vec<crate::query::TagSpecification>,
}

fn format_of(name: &str) -> Option<diskimage::DiskFormat> {
    match name {
        "VMDK" => Some(diskimage::DiskFormat::Vmdk),
        "RAW" => Some(diskimage::DiskFormat::Raw),
        "VHD" => Some(diskimage::DiskFormat::Vhd),
        "QCOW2" => Some(diskimage::DiskFormat::Qcow2),
        _ => None,
    }
}

impl Cloud {
    /// The file an export task writes.
    fn export_path(&self, id: &str, doc: &TaskDoc) -> Result<PathBuf, String> {
        let dir = self
            .transfers
            .export_dir
            .clone()
            .ok_or("This openami has no export directory (serve --export-dir)")?;
        let bucket = doc.export_bucket.clone().unwrap_or_default();
        let bucket_path = check_relative("S3 bucket", &bucket)?;
        if bucket_path.components().count() != 1 {
            return Err(format!("Invalid S3 bucket {bucket:?}"));
        }
        let root = dir
            .canonicalize()
            .map_err(|e| format!("The export directory is not usable: {e}"))?;
        let bucket_dir = root.join(&bucket_path);
        let real_bucket = bucket_dir
            .canonicalize()
            .map_err(|_| format!("The S3 bucket {bucket} does not exist"))?;
        if !real_bucket.starts_with(&root) || !real_bucket.is_dir() {
            return Err(format!("The S3 bucket {bucket} does not exist"));
        }
        let ext = doc
            .export_format
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = format!(
            "{}{id}.{ext}",
            doc.export_prefix.clone().unwrap_or_default()
        );
        let relative = check_relative("S3 prefix", &name)?;
        let path = real_bucket.join(relative);
        let parent = path.parent().ok_or("Invalid S3 prefix")?;
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("Cannot create {}: {e}", parent.display()))?;
        let real_parent = parent
            .canonicalize()
            .map_err(|e| format!("Cannot resolve {}: {e}", parent.display()))?;
        if !real_parent.starts_with(&real_bucket) {
            return Err("The S3 prefix leaves its bucket".into());
        }
        Ok(path)
    }

    /// ExportImage.
    pub fn export_image(
        self: &Arc<Self>,
        caller: &Caller,
        req: ExportImage,
    ) -> Ec2Result<TaskView> {
        if let Some(token) = &req.client_token
            && let Some(task) = self.existing_task(caller, EXPORT_IMAGE, token)?
        {
            return Ok(task);
        }
        let format = req.disk_image_format.to_ascii_uppercase();
        if format_of(&format).is_none() {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({}) for parameter DiskImageFormat is invalid. Expected VMDK, RAW, VHD or QCOW2.",
                req.disk_image_format
            )));
        }
        let tags = crate::query::tags_for(&req.tag_specifications, "export-image-task")?;
        let image = self.owned_image(caller, &req.image_id)?;
        let image_doc = crate::images::doc_of(&image)?;
        if image_doc.root_device_type != "ebs" || image.state != "available" {
            return Err(Ec2Error::client(
                "InvalidParameter",
                format!(
                    "Image {} must be an available EBS-backed image to be exported",
                    req.image_id
                ),
            ));
        }
        let doc = TaskDoc {
            description: req.description.clone(),
            status_message: "pending".into(),
            image_id: Some(req.image_id.clone()),
            export_format: Some(format),
            export_bucket: Some(req.bucket.clone()),
            export_prefix: req.prefix.clone(),
            role_name: req.role_name.clone(),
            client_token: req.client_token.clone(),
            created_ms: created_now(),
            ..Default::default()
        };
        // Check the destination now, so that a bad one fails the call.
        self.export_path("export-ami-00000000000000000", &doc)
            .map_err(|m| {
                let m = self.transfers.hide_paths(&m, self.data_dir().root());
                Ec2Error::client("InvalidParameter", m)
            })?;
        self.start_task(caller, EXPORT_IMAGE, doc, &tags)
    }

    /// The worker of an export task.
    pub(crate) fn run_export(
        &self,
        row: &ResourceRow,
        progress: &TaskProgress,
    ) -> Result<TaskDoc, TaskFailure> {
        let mut doc = doc_of(row)?;
        let image_id = doc.image_id.clone().unwrap_or_default();
        let image = self
            .catalog
            .resource(&image_id)?
            .ok_or_else(|| TaskFailure::Client(format!("Image {image_id} no longer exists")))?;
        let image_doc = crate::images::doc_of(&image)?;
        let root = image_doc.root_device_name.clone().unwrap_or_default();
        let snapshot = image_doc
            .block_device_mappings
            .iter()
            .find(|m| m.device_name == root)
            .or(image_doc.block_device_mappings.first())
            .and_then(|m| m.ebs())
            .and_then(|e| e.snapshot_id.clone())
            .ok_or_else(|| TaskFailure::Client(format!("Image {image_id} has no root snapshot")))?;
        let path = self
            .export_path(&row.id, &doc)
            .map_err(TaskFailure::Client)?;
        let format = format_of(doc.export_format.as_deref().unwrap_or_default())
            .ok_or_else(|| TaskFailure::Client("Unknown export format".into()))?;
        self.task_status(&row.id, "converting", 0);
        let storage = self.region(&row.region)?;
        let id = ResourceId::new(&snapshot).map_err(|e| TaskFailure::Server(e.to_string()))?;
        let server = |e: blockstore::BlockStoreError| TaskFailure::Server(e.to_string());
        let manifest = storage.store.read_manifest(&id).map_err(server)?;
        let partial = path.with_extension("partial");
        let write =
            |e: diskimage::Error| TaskFailure::Server(format!("Writing the export failed: {e}"));
        let result = (|| {
            let mut writer = diskimage::DiskWriter::create(&partial, format, manifest.volume_size)
                .map_err(|e| TaskFailure::Client(format!("Cannot export: {e}")))?;
            progress.set_total(manifest.entries().len() as u64);
            for (index, hash) in manifest.entries() {
                if progress.cancelled() {
                    return Err(TaskFailure::Cancelled);
                }
                let data = storage.store.get_block(hash).map_err(server)?;
                writer
                    .write_block(index * BLOCK_SIZE as u64, &data)
                    .map_err(write)?;
                progress.advance(1);
            }
            writer.finish().map_err(write)?;
            std::fs::rename(&partial, &path)
                .map_err(|e| TaskFailure::Server(format!("Finishing the export failed: {e}")))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result?;
        doc.status_message = String::new();
        doc.progress = 100;
        Ok(doc)
    }
}
