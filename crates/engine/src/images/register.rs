//! RegisterImage and DeregisterImage.

use catalog::now_ms;

use crate::snapshots::{self, UsableSnapshot};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

use super::validate::{
    ARCHITECTURES, BOOT_MODES, SnapshotInfo, VIRTUALIZATION_TYPES, check_description, check_enum,
    check_mappings, check_name, split_tags, valid_device_name,
};
use super::{ImageDoc, MappingTarget, Protection, doc_of, not_found, writing};
use crate::query::TagSpecification;

/// The `Ebs` part of a requested block device mapping (also kept as given in launch
/// templates).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EbsRequest {
    /// `SnapshotId`.
    pub snapshot_id: Option<String>,
    /// `VolumeSize` in GiB.
    pub volume_size: Option<i64>,
    /// `DeleteOnTermination` (default true).
    pub delete_on_termination: Option<bool>,
    /// `VolumeType` (default gp2).
    pub volume_type: Option<String>,
    /// `Iops`.
    pub iops: Option<i64>,
    /// `Throughput`.
    pub throughput: Option<i64>,
    /// `Encrypted`.
    pub encrypted: Option<bool>,
    /// `KmsKeyId` (refused: openami has no KMS).
    pub kms_key_id: Option<String>,
}

/// One requested `BlockDeviceMapping.N` (also a launch template's
/// `LaunchTemplateBlockDeviceMapping`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MappingRequest {
    /// `DeviceName`.
    pub device_name: Option<String>,
    /// `VirtualName` (`ephemeralN`).
    pub virtual_name: Option<String>,
    /// `NoDevice` (present, usually empty).
    pub no_device: Option<String>,
    /// `Ebs`.
    pub ebs: Option<EbsRequest>,
}

/// RegisterImage parameters.
#[derive(Clone, Debug, Default)]
pub struct RegisterImage {
    /// `Name`.
    pub name: String,
    /// `Description`.
    pub description: Option<String>,
    /// `ImageLocation`: for instance-store images, the template snapshot (`snap-…`).
    pub image_location: Option<String>,
    /// `Architecture` (default x86_64).
    pub architecture: Option<String>,
    /// `VirtualizationType` (default hvm).
    pub virtualization_type: Option<String>,
    /// `RootDeviceName`.
    pub root_device_name: Option<String>,
    /// `BlockDeviceMapping.N`.
    pub block_device_mappings: Vec<MappingRequest>,
    /// `KernelId`.
    pub kernel_id: Option<String>,
    /// `RamdiskId`.
    pub ramdisk_id: Option<String>,
    /// `BootMode`.
    pub boot_mode: Option<String>,
    /// `TpmSupport`.
    pub tpm_support: Option<String>,
    /// `ImdsSupport`.
    pub imds_support: Option<String>,
    /// `UefiData`.
    pub uefi_data: Option<String>,
    /// `EnaSupport`.
    pub ena_support: Option<bool>,
    /// `SriovNetSupport`.
    pub sriov_net_support: Option<String>,
    /// `BillingProduct.N` (refused).
    pub billing_products: Vec<String>,
    /// `TagSpecification.N` (resource type `image`).
    pub tag_specifications: Vec<TagSpecification>,
}

/// What DeregisterImage did to one associated snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDeletion {
    /// The snapshot.
    pub snapshot_id: String,
    /// success | skipped | missing-permissions | internal-error | client-error.
    pub return_code: String,
}

fn info(s: &UsableSnapshot) -> SnapshotInfo {
    SnapshotInfo {
        volume_size_gib: s.volume_size_gib,
        encrypted: s.encrypted,
    }
}

impl Cloud {
    /// A kernel (`aki-`) or ramdisk (`ari-`) image the caller may use.
    fn check_boot_image(&self, caller: &Caller, id: &str, kernel: bool) -> Ec2Result<()> {
        let (prefix, code, image_type) = if kernel {
            ("aki", "InvalidKernelId.Malformed", "kernel")
        } else {
            ("ari", "InvalidRamDiskId.Malformed", "ramdisk")
        };
        if !ids::is_valid(prefix, id) {
            return Err(Ec2Error::client(
                code,
                format!("Invalid id: \"{id}\" (expecting \"{prefix}-...\")"),
            ));
        }
        let row = self.visible_image(caller, id)?;
        if doc_of(&row)?.image_type != image_type || row.state != "available" {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// RegisterImage: an EBS-backed image from snapshots, or an instance-store image
    /// whose `ImageLocation` is a template snapshot. Returns the new image id.
    ///
    /// The image is `available` at once: its data is already stored in completed
    /// snapshots, so there is nothing left to do in the background.
    pub fn register_image(&self, caller: &Caller, req: RegisterImage) -> Ec2Result<String> {
        check_name(&req.name)?;
        if let Some(d) = &req.description {
            check_description(d)?;
        }
        let image_tags = split_tags(&req.tag_specifications, &["image"])?
            .pop()
            .unwrap_or_default();
        if !req.billing_products.is_empty() {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                "Billing products are not supported by openami",
            ));
        }
        let architecture = req.architecture.unwrap_or_else(|| "x86_64".into());
        check_enum("architecture", &architecture, ARCHITECTURES)?;
        let virtualization_type = req.virtualization_type.unwrap_or_else(|| "hvm".into());
        check_enum(
            "virtualizationType",
            &virtualization_type,
            VIRTUALIZATION_TYPES,
        )?;
        if let Some(mode) = &req.boot_mode {
            check_enum("BootMode", mode, BOOT_MODES)?;
        }
        if let Some(tpm) = &req.tpm_support {
            check_enum("TpmSupport", tpm, &["v2.0"])?;
            if req.boot_mode.as_deref() != Some("uefi") {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    "TpmSupport requires the uefi boot mode",
                ));
            }
        }
        if let Some(imds) = &req.imds_support {
            check_enum("ImdsSupport", imds, &["v2.0"])?;
        }
        if let Some(sriov) = &req.sriov_net_support {
            check_enum("SriovNetSupport", sriov, &["simple"])?;
        }
        if req.uefi_data.as_ref().is_some_and(|u| u.len() > 64_000) {
            return Err(Ec2Error::invalid_value(
                "UefiData must be at most 64000 characters",
            ));
        }
        if let Some(k) = &req.kernel_id {
            self.check_boot_image(caller, k, true)?;
        }
        if let Some(r) = &req.ramdisk_id {
            self.check_boot_image(caller, r, false)?;
        }
        let mappings = check_mappings(&req.block_device_mappings, |snap| {
            snapshots::usable_snapshot(self, caller, snap).map(|s| info(&s))
        })?;
        if let Some(root) = &req.root_device_name
            && !valid_device_name(root)
        {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid root device name {root}"
            )));
        }
        let root_mapping = |root: &str| mappings.iter().find(|m| m.device_name == root);
        let (root_device_type, root_device_name, template) = match &req.image_location {
            Some(location) => {
                if !ids::is_valid("snap", location) {
                    return Err(Ec2Error::invalid_value(format!(
                        "openami registers instance-store images from a template snapshot: ImageLocation must be a snapshot id (snap-...), not {location:?}"
                    )));
                }
                snapshots::usable_snapshot(self, caller, location)?;
                let root = req
                    .root_device_name
                    .clone()
                    .unwrap_or_else(|| "/dev/sda1".into());
                if root_mapping(&root)
                    .is_some_and(|m| !matches!(m.target, MappingTarget::Ephemeral(_)))
                {
                    return Err(Ec2Error::client(
                        "InvalidBlockDeviceMapping",
                        format!(
                            "The root device {root} of an instance-store image cannot be mapped to an EBS volume or NoDevice"
                        ),
                    ));
                }
                ("instance-store", root, Some(location.clone()))
            }
            None => {
                if mappings.is_empty() {
                    return Err(Ec2Error::client(
                        "MissingParameter",
                        "The request must contain the parameter ImageLocation or BlockDeviceMapping",
                    ));
                }
                let root = req
                    .root_device_name
                    .clone()
                    .ok_or_else(|| Ec2Error::missing("RootDeviceName"))?;
                let root_snapshot = root_mapping(&root)
                    .and_then(|m| m.ebs())
                    .and_then(|e| e.snapshot_id.as_ref());
                if root_snapshot.is_none() {
                    return Err(Ec2Error::client(
                        "InvalidBlockDeviceMapping",
                        format!("The root device {root} must be mapped to an EBS snapshot"),
                    ));
                }
                ("ebs", root, None)
            }
        };
        let id = ids::new_id("ami");
        let doc = ImageDoc {
            image_location: match &template {
                Some(snap) => snap.clone(),
                None => format!("{}/{}", caller.account_id, req.name),
            },
            name: req.name,
            description: req.description,
            architecture,
            image_type: "machine".into(),
            virtualization_type,
            hypervisor: "xen".into(),
            root_device_type: root_device_type.into(),
            root_device_name: Some(root_device_name),
            block_device_mappings: mappings,
            instance_store_template: template,
            kernel_id: req.kernel_id,
            ramdisk_id: req.ramdisk_id,
            boot_mode: req.boot_mode,
            tpm_support: req.tpm_support,
            imds_support: req.imds_support,
            uefi_data: req.uefi_data,
            ena_support: req.ena_support,
            sriov_net_support: req.sriov_net_support,
            platform: None,
            platform_details: "Linux/UNIX".into(),
            usage_operation: "RunInstances".into(),
            creation_ms: now_ms(),
            deregistration_protection: Protection::Disabled,
            ..ImageDoc::default()
        };
        self.insert_image(caller, &id, "available", &doc, &image_tags, true)?;
        Ok(id)
    }

    /// DeregisterImage. With `delete_snapshots`, the caller's snapshots that no other
    /// image uses are deleted too, and the outcome for each is returned.
    pub fn deregister_image(
        &self,
        caller: &Caller,
        id: &str,
        delete_snapshots: bool,
    ) -> Ec2Result<Vec<SnapshotDeletion>> {
        let writing = writing();
        let row = self.owned_image(caller, id)?;
        let doc = doc_of(&row)?;
        if doc.deregistration_protection.protects(now_ms()) {
            return Err(Ec2Error::client(
                "OperationNotPermitted",
                format!(
                    "Image {id} has deregistration protection enabled; disable it (DisableImageDeregistrationProtection) and try again"
                ),
            ));
        }
        self.catalog.delete_resource(&row.id)?;
        self.refresh_image(&row.id)?;
        drop(writing);
        if !delete_snapshots {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for snap in doc.snapshot_ids() {
            let owned = self
                .catalog
                .resource(&snap)?
                .is_some_and(|r| r.kind == snapshots::KIND && r.account_id == caller.account_id);
            let return_code = if !owned {
                "missing-permissions"
            } else {
                match self.delete_snapshot(caller, &snap) {
                    Ok(()) => "success",
                    Err(e) if e.code == "InvalidSnapshot.InUse" => "skipped",
                    Err(e) if e.status >= 500 => "internal-error",
                    Err(_) => "client-error",
                }
            };
            out.push(SnapshotDeletion {
                snapshot_id: snap,
                return_code: return_code.into(),
            });
        }
        Ok(out)
    }
}
