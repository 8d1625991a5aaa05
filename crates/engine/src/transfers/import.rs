//! ImportImage and ImportSnapshot: a disk image file becomes a snapshot (and, for
//! ImportImage, an EBS-backed AMI whose root device is that snapshot).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockstore::{BLOCK_SIZE, Manifest, ResourceId};
use catalog::{ResourceRow, now_ms};

use super::source::{self, Source};
use super::{
    DiskDetail, IMPORT_IMAGE, IMPORT_SNAPSHOT, SourceSpec, TaskDoc, TaskFailure, TaskProgress,
    TaskView, created_now, doc_of,
};
use crate::images::validate::{ARCHITECTURES, BOOT_MODES, check_enum, split_tags};
use crate::images::{BlockDeviceMapping, EbsMapping, ImageDoc, MappingTarget, Protection};
use crate::snapshots::{self, SnapshotDoc};
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// One `DiskContainer` of an import request.
#[derive(Clone, Debug, Default)]
pub struct DiskContainer {
    /// `Format`.
    pub format: Option<String>,
    /// `Url`.
    pub url: Option<String>,
    /// `UserBucket.S3Bucket`.
    pub bucket: Option<String>,
    /// `UserBucket.S3Key`.
    pub key: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `DeviceName`.
    pub device_name: Option<String>,
    /// `SnapshotId` (ImportImage: use an existing snapshot as this disk).
    pub snapshot_id: Option<String>,
}

/// ImportImage parameters.
#[derive(Clone, Debug, Default)]
pub struct ImportImage {
    /// `Architecture` (default x86_64).
    pub architecture: Option<String>,
    /// `BootMode`.
    pub boot_mode: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `DiskContainer.N`.
    pub disk_containers: Vec<DiskContainer>,
    /// `Encrypted`.
    pub encrypted: Option<bool>,
    /// `KmsKeyId` (refused).
    pub kms_key_id: Option<String>,
    /// `LicenseType`.
    pub license_type: Option<String>,
    /// `Platform` (Linux or Windows).
    pub platform: Option<String>,
    /// `RoleName`.
    pub role_name: Option<String>,
    /// `ClientToken`.
    pub client_token: Option<String>,
    /// `TagSpecification.N` (`import-image-task`, `image`, `snapshot`).
    pub tag_specifications: Vec<crate::query::TagSpecification>,
}

/// ImportSnapshot parameters.
#[derive(Clone, Debug, Default)]
pub struct ImportSnapshot {
    /// `Description`.
    pub description: Option<String>,
    /// `DiskContainer`.
    pub disk_container: Option<DiskContainer>,
    /// `Encrypted`.
    pub encrypted: Option<bool>,
    /// `KmsKeyId` (refused).
    pub kms_key_id: Option<String>,
    /// `RoleName`.
    pub role_name: Option<String>,
    /// `ClientToken`.
    pub client_token: Option<String>,
    /// `TagSpecification.N` (`import-snapshot-task`, `snapshot`).
    pub tag_specifications: Vec<crate::query::TagSpecification>,
}

pub(super) const FORMATS: &[&str] = &["VMDK", "RAW", "VHD", "VHDX", "QCOW2"];

fn spec_of(c: &DiskContainer) -> SourceSpec {
    SourceSpec {
        format: c.format.clone(),
        url: c.url.clone(),
        bucket: c.bucket.clone(),
        key: c.key.clone(),
        description: c.description.clone(),
        device_name: c.device_name.clone(),
        upload: None,
        upload_name: None,
    }
}

/// How the client named a disk's source: its URL or `s3://bucket/key`.
fn client_name(spec: &SourceSpec) -> String {
    if let Some(name) = &spec.upload_name {
        return format!("the uploaded file {name}");
    }
    match (&spec.bucket, &spec.key, &spec.url) {
        (Some(b), Some(k), _) => format!("s3://{b}/{k}"),
        (_, _, Some(url)) => url.clone(),
        _ => "the disk image".into(),
    }
}

/// `failure` with the server's file `path` named as the client named it.
fn hide_path(failure: TaskFailure, path: &Path, name: &str) -> TaskFailure {
    let text = path.to_string_lossy();
    let fix = |m: String| m.replace(text.as_ref(), name);
    match failure {
        TaskFailure::Client(m) => TaskFailure::Client(fix(m)),
        TaskFailure::Server(m) => TaskFailure::Server(fix(m)),
        TaskFailure::Cancelled => TaskFailure::Cancelled,
    }
}

fn param_error(message: String) -> Ec2Error {
    Ec2Error::client("InvalidParameter", message)
}

impl Cloud {
    fn check_container(&self, caller: &Caller, c: &DiskContainer) -> Ec2Result<DiskDetail> {
        if let Some(f) = &c.format
            && !FORMATS.contains(&f.to_ascii_uppercase().as_str())
        {
            return Err(param_error(format!(
                "Invalid disk format {f}: expected one of VMDK, RAW, VHD, VHDX, QCOW2"
            )));
        }
        if let Some(snap) = &c.snapshot_id {
            snapshots::usable_snapshot(self, caller, snap)?;
            return Ok(DiskDetail {
                source: spec_of(c),
                given_snapshot: Some(snap.clone()),
                status: "completed".into(),
                ..Default::default()
            });
        }
        let spec = spec_of(c);
        let src =
            source::resolve(&spec, self.transfers.import_dir.as_deref()).map_err(param_error)?;
        if let Source::Http(url) = src {
            // Refused at once; the worker checks again (and connects only to what it
            // checked) when it downloads.
            self.transfers.url_policy.check(&url).map_err(param_error)?;
        }
        Ok(DiskDetail {
            source: spec,
            status: "active".into(),
            ..Default::default()
        })
    }

    /// ImportImage.
    pub fn import_image(
        self: &Arc<Self>,
        caller: &Caller,
        req: ImportImage,
    ) -> Ec2Result<TaskView> {
        if let Some(token) = &req.client_token
            && let Some(task) = self.existing_task(caller, IMPORT_IMAGE, token)?
        {
            return Ok(task);
        }
        if req.kms_key_id.is_some() {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                "KMS keys are not supported by openami",
            ));
        }
        let architecture = req.architecture.clone().unwrap_or_else(|| "x86_64".into());
        check_enum("Architecture", &architecture, ARCHITECTURES)?;
        if let Some(b) = &req.boot_mode {
            check_enum("BootMode", b, BOOT_MODES)?;
        }
        if let Some(p) = &req.platform
            && p != "Linux"
            && p != "Windows"
        {
            return Err(param_error(format!(
                "Invalid platform {p}: expected Linux or Windows"
            )));
        }
        if req.disk_containers.is_empty() {
            return Err(Ec2Error::missing("DiskContainer"));
        }
        if req.disk_containers.len() > 21 {
            return Err(param_error("At most 21 disk containers are allowed".into()));
        }
        let mut split = split_tags(
            &req.tag_specifications,
            &["import-image-task", "image", "snapshot"],
        )?;
        let _snapshot_tags = split.pop();
        let _image_tags = split.pop();
        let task_tags = split.pop().unwrap_or_default();
        let disks = req
            .disk_containers
            .iter()
            .map(|c| self.check_container(caller, c))
            .collect::<Ec2Result<Vec<_>>>()?;
        let doc = TaskDoc {
            description: req.description.clone(),
            status_message: "pending".into(),
            disks,
            architecture: Some(architecture),
            platform: Some(req.platform.clone().unwrap_or_else(|| "Linux".into())),
            boot_mode: req.boot_mode.clone(),
            license_type: req.license_type.clone(),
            encrypted: req.encrypted.unwrap_or(false),
            role_name: req.role_name.clone(),
            client_token: req.client_token.clone(),
            created_ms: created_now(),
            ..Default::default()
        };
        self.start_task(caller, IMPORT_IMAGE, doc, &task_tags)
    }

    /// ImportSnapshot.
    pub fn import_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        req: ImportSnapshot,
    ) -> Ec2Result<TaskView> {
        if let Some(token) = &req.client_token
            && let Some(task) = self.existing_task(caller, IMPORT_SNAPSHOT, token)?
        {
            return Ok(task);
        }
        if req.kms_key_id.is_some() {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                "KMS keys are not supported by openami",
            ));
        }
        let container = req
            .disk_container
            .clone()
            .ok_or_else(|| Ec2Error::missing("DiskContainer"))?;
        if container.snapshot_id.is_some() || container.device_name.is_some() {
            return Err(param_error(
                "ImportSnapshot takes a Url or a UserBucket".into(),
            ));
        }
        let tags = crate::query::tags_for(&req.tag_specifications, "import-snapshot-task")?;
        let disk = self.check_container(caller, &container)?;
        let doc = TaskDoc {
            description: req.description.clone(),
            status_message: "pending".into(),
            disks: vec![disk],
            encrypted: req.encrypted.unwrap_or(false),
            role_name: req.role_name.clone(),
            client_token: req.client_token.clone(),
            created_ms: created_now(),
            ..Default::default()
        };
        self.start_task(caller, IMPORT_SNAPSHOT, doc, &tags)
    }

    /// The worker of an import task.
    pub(crate) fn run_import(
        &self,
        row: &ResourceRow,
        progress: &TaskProgress,
    ) -> Result<TaskDoc, TaskFailure> {
        let owner = Caller {
            account_id: row.account_id.clone(),
            region: row.region.clone(),
        };
        let mut doc = doc_of(row)?;
        let mut total = 0;
        for d in &doc.disks {
            if d.given_snapshot.is_none() {
                total += 1;
            }
        }
        let total = total.max(1);
        for n in 0..doc.disks.len() {
            if doc.disks[n].given_snapshot.is_some() || doc.disks[n].status == "completed" {
                continue;
            }
            self.task_status(&row.id, "converting", (n * 100 / total) as u8);
            let detail = self.import_disk(&owner, row, n, &doc, progress)?;
            doc.disks[n] = detail;
            self.catalog
                .update_resource(&row.id, "active", &super::encode(&doc)?)
                .map_err(Ec2Error::from)?;
        }
        if row.kind == IMPORT_IMAGE {
            self.task_status(&row.id, "preparing ami", 99);
            doc.image_id = Some(self.register_imported(&owner, row, &doc)?);
        }
        doc.status_message = String::new();
        doc.progress = 100;
        Ok(doc)
    }

    /// Converts disk `n` of a task into a snapshot.
    fn import_disk(
        &self,
        owner: &Caller,
        row: &ResourceRow,
        n: usize,
        doc: &TaskDoc,
        progress: &TaskProgress,
    ) -> Result<DiskDetail, TaskFailure> {
        let mut detail = doc.disks[n].clone();
        // A snapshot left by an interrupted earlier attempt is discarded.
        if let Some(old) = detail.snapshot_id.take() {
            self.discard_snapshot(&row.region, &old);
        }
        let src = match self.staged_source(&detail.source) {
            Some(staged) => Source::Local(staged.map_err(TaskFailure::Client)?),
            None => source::resolve(&detail.source, self.transfers.import_dir.as_deref())
                .map_err(TaskFailure::Client)?,
        };
        let download = self
            .data_dir()
            .root()
            .join("transfers")
            .join(format!("{}-{n}.download", row.id));
        let name = client_name(&detail.source);
        let path: PathBuf = match src {
            Source::Local(p) => p,
            Source::Http(url) => {
                std::fs::create_dir_all(download.parent().unwrap_or(Path::new(".")))
                    .map_err(|e| TaskFailure::Server(format!("download dir: {e}")))?;
                self.task_status(&row.id, "downloading", 0);
                let result = source::download(
                    &url,
                    &self.transfers.url_policy,
                    &download,
                    diskimage::TIB * 64,
                    &|| progress.cancelled(),
                );
                if let Err(e) = result {
                    let _ = std::fs::remove_file(&download);
                    return Err(e);
                }
                download.clone()
            }
        };
        let result = self.convert(owner, row, &path, &mut detail, progress);
        let _ = std::fs::remove_file(&download);
        result.map_err(|f| hide_path(f, &path, &name))?;
        detail.status = "completed".into();
        Ok(detail)
    }

    fn convert(
        &self,
        owner: &Caller,
        row: &ResourceRow,
        path: &Path,
        detail: &mut DiskDetail,
        progress: &TaskProgress,
    ) -> Result<(), TaskFailure> {
        let wanted = match detail.source.format.as_deref().map(str::to_ascii_lowercase) {
            Some(f) => Some(
                diskimage::DiskFormat::from_name(&f)
                    .ok_or_else(|| TaskFailure::Client(format!("Unknown disk format {f}")))?,
            ),
            None => None,
        };
        let reader = diskimage::open(path, diskimage::Limits::default())
            .map_err(|e| TaskFailure::Client(format!("The disk image was refused: {e}")))?;
        if let Some(w) = wanted
            && w != reader.format()
        {
            return Err(TaskFailure::Client(format!(
                "The disk image is {}, not {} as the request says",
                reader.format(),
                w
            )));
        }
        detail.detected_format = Some(reader.format().name().to_ascii_uppercase());
        detail.disk_image_size = std::fs::metadata(path).ok().map(|m| m.len());
        let size = reader.virtual_size();
        let gib = size.div_ceil(diskimage::GIB).max(1);
        if gib > 16_384 {
            return Err(TaskFailure::Client(format!(
                "The disk is {gib} GiB; volumes are at most 16384 GiB"
            )));
        }
        let snap_id = crate::ids::new_id("snap");
        detail.snapshot_id = Some(snap_id.clone());
        let snap_doc = SnapshotDoc {
            volume_id: "vol-ffffffff".into(),
            volume_size_gib: gib as i64,
            description: format!("Created by AWS-VMImport service for {}", row.id),
            progress: 0,
            start_time_ms: now_ms(),
            completion_time_ms: None,
            state_message: None,
            encrypted: false,
            source: None,
            upload: None,
            node: None,
        };
        self.insert_snapshot(owner, &snap_id, &snap_doc, &[])?;
        let stored = self.store_image_blocks(&row.region, &snap_id, reader.as_ref(), gib, progress);
        match stored {
            Ok(()) => {
                self.finish_snapshot(&snap_id, Ok(()));
                Ok(())
            }
            Err(e) => {
                self.discard_snapshot(&row.region, &snap_id);
                Err(e)
            }
        }
    }

    /// Reads the virtual disk block by block into the region's block store and commits
    /// the manifest of snapshot `snap_id`.
    fn store_image_blocks(
        &self,
        region: &str,
        snap_id: &str,
        reader: &dyn diskimage::DiskReader,
        gib: u64,
        progress: &TaskProgress,
    ) -> Result<(), TaskFailure> {
        let storage = self.region(region)?;
        let session = storage.store.session();
        let size = reader.virtual_size();
        let bs = BLOCK_SIZE as u64;
        progress.set_total(size);
        let mut buf = vec![0u8; BLOCK_SIZE];
        let mut entries = Vec::new();
        let server = TaskFailure::from;
        let corrupt = |e: diskimage::Error| {
            TaskFailure::Client(format!("Reading the disk image failed: {e}"))
        };
        for index in 0..size.div_ceil(bs) {
            if progress.cancelled() {
                return Err(TaskFailure::Cancelled);
            }
            let offset = index * bs;
            let len = bs.min(size - offset) as usize;
            progress.advance(len as u64);
            if reader.range_is_zero(offset, len as u64).map_err(corrupt)? {
                continue;
            }
            buf.fill(0);
            reader.read_at(offset, &mut buf[..len]).map_err(corrupt)?;
            if buf.iter().all(|b| *b == 0) {
                continue;
            }
            let put = session.put_block(&buf).map_err(server)?;
            entries.push((index, put.hash));
        }
        let id = ResourceId::new(snap_id).map_err(|e| TaskFailure::Server(e.to_string()))?;
        let manifest = Manifest::new(id, None, gib * diskimage::GIB, now_ms() as u64, entries)
            .map_err(TaskFailure::Server)?;
        session.commit(&manifest).map_err(server)?;
        Ok(())
    }

    /// Removes a snapshot an import created but will not use.
    fn discard_snapshot(&self, region: &str, snap_id: &str) {
        if let Ok(storage) = self.region(region)
            && let Ok(id) = ResourceId::new(snap_id)
            && let Err(e) = storage.store.delete_snapshot(&id)
        {
            tracing::warn!(snapshot = %snap_id, error = %e, "cannot delete a discarded import snapshot");
        }
        // Retried while the catalog is full: a row left behind would stay `pending`.
        let removed = self.record_until_space("discarded import snapshot", || {
            self.catalog.clear_tags(snap_id)?;
            self.catalog.delete_resource(snap_id)?;
            Ok(())
        });
        if let Err(e) = removed {
            tracing::warn!(snapshot = %snap_id, error = %e, "cannot remove a discarded import snapshot");
        }
    }

    /// Registers the AMI of a finished ImportImage task.
    fn register_imported(
        &self,
        owner: &Caller,
        row: &ResourceRow,
        doc: &TaskDoc,
    ) -> Ec2Result<String> {
        let letters = "abcdefghijklmnopqrstuvwxyz";
        let mut mappings = Vec::new();
        for (n, d) in doc.disks.iter().enumerate() {
            let snap = d
                .given_snapshot
                .clone()
                .or(d.snapshot_id.clone())
                .ok_or_else(|| Ec2Error::internal("import", "a disk has no snapshot"))?;
            let snap_row = self.catalog.resource(&snap)?.ok_or_else(|| {
                Ec2Error::not_found("InvalidSnapshot.NotFound", "snapshot", &snap)
            })?;
            let snap_doc = snapshots::doc_of(&snap_row)?;
            let device = d.source.device_name.clone().unwrap_or_else(|| {
                if n == 0 {
                    "/dev/sda1".into()
                } else {
                    format!("/dev/sd{}", &letters[n..=n])
                }
            });
            mappings.push(BlockDeviceMapping {
                device_name: device,
                target: MappingTarget::Ebs(EbsMapping {
                    snapshot_id: Some(snap),
                    volume_size_gib: snap_doc.volume_size_gib,
                    delete_on_termination: true,
                    volume_type: "gp2".into(),
                    iops: None,
                    throughput: None,
                    encrypted: snap_doc.encrypted,
                }),
            });
        }
        let root = mappings
            .first()
            .map(|m| m.device_name.clone())
            .unwrap_or_else(|| "/dev/sda1".into());
        let platform = doc.platform.clone().unwrap_or_else(|| "Linux".into());
        let image_id = crate::ids::new_id("ami");
        let image = ImageDoc {
            name: row.id.clone(),
            description: doc
                .description
                .clone()
                .or(Some(format!("AMI imported by {}", row.id))),
            architecture: doc.architecture.clone().unwrap_or_else(|| "x86_64".into()),
            image_type: "machine".into(),
            virtualization_type: "hvm".into(),
            hypervisor: "xen".into(),
            root_device_type: "ebs".into(),
            root_device_name: Some(root),
            block_device_mappings: mappings,
            image_location: format!("{}/{}", owner.account_id, row.id),
            boot_mode: doc.boot_mode.clone(),
            ena_support: Some(true),
            platform: (platform == "Windows").then(|| "Windows".into()),
            platform_details: if platform == "Windows" {
                "Windows".into()
            } else {
                "Linux/UNIX".into()
            },
            usage_operation: if platform == "Windows" {
                "RunInstances:0002".into()
            } else {
                "RunInstances".into()
            },
            creation_ms: now_ms(),
            deregistration_protection: Protection::Disabled,
            ..Default::default()
        };
        self.insert_image(owner, &image_id, "available", &image, &[], true)?;
        Ok(image_id)
    }
}
