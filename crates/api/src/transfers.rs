//! VM import/export actions: ImportImage, ImportSnapshot, ExportImage, the Describe…Tasks
//! calls and CancelImportTask / CancelExportTask, parsed and rendered as botocore's model
//! shapes them.

use std::sync::Arc;

use engine::query::{Filter, Page};
use engine::transfers::{
    DiskContainer, DiskDetail, EXPORT_IMAGE, ExportImage, IMPORT_IMAGE, IMPORT_SNAPSHOT,
    ImportImage, ImportSnapshot, TaskView,
};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One import/export request, typed.
#[derive(Debug, Clone)]
pub enum TransferAction {
    /// ImportImage.
    ImportImage(ImportImage),
    /// ImportSnapshot.
    ImportSnapshot(ImportSnapshot),
    /// ExportImage.
    ExportImage(ExportImage),
    /// DescribeImportImageTasks / DescribeImportSnapshotTasks / DescribeExportImageTasks.
    Describe {
        /// Task kind.
        kind: &'static str,
        /// Task ids.
        ids: Vec<String>,
        /// Filters.
        filters: Vec<Filter>,
        /// Paging.
        page: Page,
    },
    /// CancelImportTask.
    CancelImport(String),
    /// CancelExportTask.
    CancelExport(String),
}

fn container(p: &Params, prefix: &str) -> Ec2Result<Option<DiskContainer>> {
    let key = |k: &str| format!("{prefix}.{k}");
    let c = DiskContainer {
        format: p.string(&key("Format")),
        url: p.string(&key("Url")),
        bucket: p.string(&key("UserBucket.S3Bucket")),
        key: p.string(&key("UserBucket.S3Key")),
        description: p.string(&key("Description")),
        device_name: p.string(&key("DeviceName")),
        snapshot_id: p.string(&key("SnapshotId")),
    };
    let empty = c.format.is_none()
        && c.url.is_none()
        && c.bucket.is_none()
        && c.key.is_none()
        && c.description.is_none()
        && c.device_name.is_none()
        && c.snapshot_id.is_none();
    Ok((!empty).then_some(c))
}

impl TransferAction {
    /// Parses an import/export action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<TransferAction>> {
        Ok(Some(match name {
            "ImportImage" => {
                let mut disks = Vec::new();
                for i in 1..=22 {
                    if let Some(c) = container(p, &format!("DiskContainer.{i}"))? {
                        disks.push(c);
                    }
                }
                TransferAction::ImportImage(ImportImage {
                    architecture: p.string("Architecture"),
                    boot_mode: p.string("BootMode"),
                    description: p.string("Description"),
                    disk_containers: disks,
                    encrypted: p.bool("Encrypted")?,
                    kms_key_id: p.string("KmsKeyId"),
                    license_type: p.string("LicenseType"),
                    platform: p.string("Platform"),
                    role_name: p.string("RoleName"),
                    client_token: p.string("ClientToken"),
                    tag_specifications: p.tag_specifications()?,
                })
            }
            "ImportSnapshot" => TransferAction::ImportSnapshot(ImportSnapshot {
                description: p.string("Description"),
                disk_container: container(p, "DiskContainer")?,
                encrypted: p.bool("Encrypted")?,
                kms_key_id: p.string("KmsKeyId"),
                role_name: p.string("RoleName"),
                client_token: p.string("ClientToken"),
                tag_specifications: p.tag_specifications()?,
            }),
            "ExportImage" => TransferAction::ExportImage(ExportImage {
                image_id: p.required("ImageId")?,
                disk_image_format: p.required("DiskImageFormat")?,
                bucket: p.required("S3ExportLocation.S3Bucket")?,
                prefix: p.string("S3ExportLocation.S3Prefix"),
                description: p.string("Description"),
                role_name: p.string("RoleName"),
                client_token: p.string("ClientToken"),
                tag_specifications: p.tag_specifications()?,
            }),
            "DescribeImportImageTasks" => TransferAction::Describe {
                kind: IMPORT_IMAGE,
                ids: p.list("ImportTaskId")?,
                filters: p.filters_named("Filters")?,
                page: p.page()?,
            },
            "DescribeImportSnapshotTasks" => TransferAction::Describe {
                kind: IMPORT_SNAPSHOT,
                ids: p.list("ImportTaskId")?,
                filters: p.filters_named("Filters")?,
                page: p.page()?,
            },
            "DescribeExportImageTasks" => TransferAction::Describe {
                kind: EXPORT_IMAGE,
                ids: p.list("ExportImageTaskId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "CancelImportTask" => TransferAction::CancelImport(p.required("ImportTaskId")?),
            "CancelExportTask" => TransferAction::CancelExport(p.required("ExportTaskId")?),
            _ => return Ok(None),
        }))
    }
}

fn disk_xml(x: &mut Xml, d: &DiskDetail, task: &TaskView) {
    let s = &d.source;
    x.opt("description", s.description.as_ref())
        .opt("deviceName", s.device_name.as_ref())
        .opt("diskImageSize", d.disk_image_size.map(|n| format!("{n}.0")))
        .opt(
            "format",
            d.detected_format
                .clone()
                .or(s.format.as_ref().map(|f| f.to_ascii_uppercase())),
        );
    if d.status != "completed" && task.status == "active" {
        x.text("progress", &task.doc.progress.to_string());
    }
    x.opt(
        "snapshotId",
        d.given_snapshot.as_ref().or(d.snapshot_id.as_ref()),
    )
    .text(
        "status",
        if d.status == "completed" {
            "completed"
        } else {
            &task.status
        },
    );
    if d.status != "completed" && !task.doc.status_message.is_empty() {
        x.text("statusMessage", &task.doc.status_message);
    }
    x.opt("url", s.url.as_ref());
    if s.bucket.is_some() || s.key.is_some() {
        x.elem("userBucket", |x| {
            x.opt("s3Bucket", s.bucket.as_ref())
                .opt("s3Key", s.key.as_ref());
        });
    }
}

fn status_xml(x: &mut Xml, t: &TaskView) {
    if t.status == "active" {
        x.text("progress", &t.doc.progress.to_string());
    }
    x.text("status", &t.status);
    if !t.doc.status_message.is_empty() {
        x.text("statusMessage", &t.doc.status_message);
    }
}

fn import_image_xml(x: &mut Xml, t: &TaskView) {
    let d = &t.doc;
    x.opt("architecture", d.architecture.as_ref())
        .opt("description", d.description.as_ref())
        .text("encrypted", &d.encrypted.to_string())
        .opt("imageId", d.image_id.as_ref())
        .text("importTaskId", &t.id)
        .opt("licenseType", d.license_type.as_ref())
        .opt("platform", d.platform.as_ref())
        .list("snapshotDetailSet", &d.disks, |x, disk| {
            disk_xml(x, disk, t)
        });
    status_xml(x, t);
    if !t.tags.is_empty() {
        x.tags(&t.tags);
    }
    x.opt("bootMode", d.boot_mode.as_ref());
}

fn import_snapshot_xml(x: &mut Xml, t: &TaskView) {
    let d = &t.doc;
    x.opt("description", d.description.as_ref())
        .text("importTaskId", &t.id);
    if let Some(disk) = d.disks.first() {
        x.elem("snapshotTaskDetail", |x| {
            let s = &disk.source;
            x.opt("description", s.description.as_ref())
                .opt(
                    "diskImageSize",
                    disk.disk_image_size.map(|n| format!("{n}.0")),
                )
                .text("encrypted", &d.encrypted.to_string())
                .opt(
                    "format",
                    disk.detected_format
                        .clone()
                        .or(s.format.as_ref().map(|f| f.to_ascii_uppercase())),
                )
                .opt(
                    "snapshotId",
                    disk.snapshot_id
                        .as_ref()
                        .filter(|_| t.status == "completed"),
                );
            status_xml(x, t);
            x.opt("url", s.url.as_ref());
            if s.bucket.is_some() || s.key.is_some() {
                x.elem("userBucket", |x| {
                    x.opt("s3Bucket", s.bucket.as_ref())
                        .opt("s3Key", s.key.as_ref());
                });
            }
        });
    }
    if !t.tags.is_empty() {
        x.tags(&t.tags);
    }
}

fn export_xml(x: &mut Xml, t: &TaskView) {
    let d = &t.doc;
    x.opt("description", d.description.as_ref())
        .opt("diskImageFormat", d.export_format.as_ref())
        .text("exportImageTaskId", &t.id)
        .opt("imageId", d.image_id.as_ref())
        .opt("roleName", d.role_name.as_ref())
        .elem("s3ExportLocation", |x| {
            x.opt("s3Bucket", d.export_bucket.as_ref())
                .opt("s3Prefix", d.export_prefix.as_ref());
        });
    status_xml(x, t);
    if !t.tags.is_empty() {
        x.tags(&t.tags);
    }
}

/// Executes an import/export action; the inner XML of its response.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: TransferAction,
) -> Ec2Result<()> {
    match action {
        TransferAction::ImportImage(req) => import_image_xml(x, &cloud.import_image(caller, req)?),
        TransferAction::ImportSnapshot(req) => {
            let t = cloud.import_snapshot(caller, req)?;
            import_snapshot_xml(x, &t);
        }
        TransferAction::ExportImage(req) => export_xml(x, &cloud.export_image(caller, req)?),
        TransferAction::Describe {
            kind,
            ids,
            filters,
            page,
        } => {
            let (tasks, token) = cloud.describe_tasks(caller, kind, &ids, &filters, &page)?;
            let (set, render): (&str, fn(&mut Xml, &TaskView)) = match kind {
                IMPORT_IMAGE => ("importImageTaskSet", import_image_xml),
                IMPORT_SNAPSHOT => ("importSnapshotTaskSet", import_snapshot_xml),
                _ => ("exportImageTaskSet", export_xml),
            };
            x.list(set, &tasks, render);
            x.opt("nextToken", token);
        }
        TransferAction::CancelImport(id) => {
            if id.starts_with("export-") {
                return Err(Ec2Error::client(
                    "InvalidConversionTaskId.NotFound",
                    format!("The task ID '{id}' does not exist"),
                ));
            }
            let (id, previous, state) = cloud.cancel_task(caller, &id)?;
            x.text("importTaskId", &id)
                .text("previousState", &previous)
                .text("state", &state);
        }
        TransferAction::CancelExport(id) => {
            if !id.starts_with("export-ami-") {
                return Err(Ec2Error::client(
                    "InvalidExportTaskID.NotFound",
                    format!("The export task ID '{id}' does not exist"),
                ));
            }
            cloud.cancel_task(caller, &id)?;
        }
    }
    Ok(())
}
