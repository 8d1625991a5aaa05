//! CreateImage and CreateSnapshots: snapshots of every EBS volume of an instance, taken
//! at one point in time. For a running instance the machine's vCPUs are paused while the
//! snapshots fix their point in time (microseconds), so no write lands between two of
//! them; CreateImage without `NoReboot` then reboots the machine, as EC2 does.

use std::sync::Arc;

use catalog::now_ms;
use volume::PendingSnapshot;

use super::{InstanceDoc, doc_of};
use crate::images::validate::{check_description, check_mappings, check_name, split_tags};
use crate::images::{
    BlockDeviceMapping, EbsMapping, ImageDoc, MappingRequest, MappingTarget, Protection,
};
use crate::snapshots::SnapshotView;
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock};

/// CreateImage parameters.
#[derive(Clone, Debug, Default)]
pub struct CreateImage {
    /// `InstanceId`.
    pub instance_id: String,
    /// `Name`.
    pub name: String,
    /// `Description`.
    pub description: Option<String>,
    /// `NoReboot`.
    pub no_reboot: bool,
    /// `BlockDeviceMapping.N` overrides.
    pub block_device_mappings: Vec<MappingRequest>,
    /// `TagSpecification.N` (`image`, `snapshot`).
    pub tag_specifications: Vec<crate::query::TagSpecification>,
}

/// CreateSnapshots parameters.
#[derive(Clone, Debug, Default)]
pub struct CreateSnapshots {
    /// `InstanceSpecification.InstanceId`.
    pub instance_id: String,
    /// `InstanceSpecification.ExcludeBootVolume`.
    pub exclude_boot_volume: bool,
    /// `InstanceSpecification.ExcludeDataVolumeId.N`.
    pub exclude_data_volume_ids: Vec<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `TagSpecification.N` (`snapshot`).
    pub tag_specifications: Vec<crate::query::TagSpecification>,
    /// `CopyTagsFromSource` = `volume`.
    pub copy_tags_from_volume: bool,
}

impl Cloud {
    /// Begins snapshots of `volumes` (device, volume id) at one point in time: a running
    /// machine is paused meanwhile and, if `reboot`, reset before it resumes.
    fn snapshot_volumes_at_once(
        self: &Arc<Self>,
        caller: &Caller,
        instance_id: &str,
        volumes: &[(String, String)],
        reboot: bool,
        description: impl Fn(&str) -> Option<String>,
        tags: impl Fn(&str) -> Ec2Result<Vec<(String, String)>>,
    ) -> Ec2Result<Vec<(String, SnapshotView, PendingSnapshot)>> {
        // A volume takes one snapshot at a time: let earlier ones (an earlier CreateImage,
        // say) finish first, for up to a minute.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline
            && lock(&self.snapshot_progress)
                .values()
                .any(|(v, _)| volumes.iter().any(|(_, id)| id == v))
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let machine = lock(&self.machines).get(instance_id).cloned();
        if let Some(m) = &machine {
            m.pause()?;
        }
        let mut begun = Vec::new();
        let mut failure = None;
        for (device, volume_id) in volumes {
            let result = tags(volume_id).and_then(|t| {
                self.begin_volume_snapshot(caller, volume_id, description(volume_id), t)
            });
            match result {
                Ok((view, pending)) => begun.push((device.clone(), view, pending)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(m) = &machine {
            // Resume whatever happened: a failed reset must not leave the vCPUs paused.
            let reset = if reboot && failure.is_none() {
                m.reset()
            } else {
                Ok(())
            };
            m.resume()?;
            if let Err(e) = reset {
                failure.get_or_insert(e);
            }
        }
        match failure {
            None => Ok(begun),
            Some(e) => {
                // Snapshots begun before the failure still complete; report the error.
                self.store_snapshots_in_background(begun.into_iter().map(|(_, _, p)| p).collect());
                Err(e)
            }
        }
    }

    /// Stores snapshots begun for a request that failed, on a worker: recording their end
    /// may wait for disk space (see [`Cloud::record_until_space`]), a request must not.
    fn store_snapshots_in_background(self: &Arc<Self>, pending: Vec<PendingSnapshot>) {
        if pending.is_empty() {
            return;
        }
        let cloud = Arc::clone(self);
        self.spawn_worker("snapshots of a failed request".into(), move || {
            for p in pending {
                cloud.store_snapshot(p);
            }
        });
    }

    fn instance_for_snapshots(&self, caller: &Caller, id: &str) -> Ec2Result<InstanceDoc> {
        let row = self.owned_instance(caller, id)?;
        if !matches!(row.state.as_str(), "running" | "stopped") {
            return Err(Ec2Error::client(
                "IncorrectInstanceState",
                format!(
                    "The instance '{id}' is not in the 'running' or 'stopped' state (it is {}).",
                    row.state
                ),
            ));
        }
        doc_of(&row)
    }

    /// CreateImage: an EBS-backed image of an instance, `pending` until every snapshot
    /// is stored, then `available` (or `failed`).
    pub fn create_image(self: &Arc<Self>, caller: &Caller, req: CreateImage) -> Ec2Result<String> {
        check_name(&req.name)?;
        if let Some(d) = &req.description {
            check_description(d)?;
        }
        let mut split = split_tags(&req.tag_specifications, &["image", "snapshot"])?;
        let snapshot_tags = split.pop().unwrap_or_default();
        let image_tags = split.pop().unwrap_or_default();
        let inst = self.instance_for_snapshots(caller, &req.instance_id)?;
        if inst.root_device_type != "ebs" {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                format!(
                    "The instance '{}' is instance-store backed; CreateImage needs an EBS-backed instance.",
                    req.instance_id
                ),
            ));
        }
        if let Some(existing) = self.image_named(caller, &req.name)? {
            return Err(Ec2Error::client(
                "InvalidAMIName.Duplicate",
                format!("AMI name {} is already in use by AMI {existing}", req.name),
            ));
        }
        // Overrides: check them like a RegisterImage mapping (sizes, types), by device.
        let overrides = check_mappings(&without_snapshot_devices(&req, &inst), |snap| {
            let usable = crate::snapshots::usable_snapshot(self, caller, snap)?;
            Ok(crate::images::validate::SnapshotInfo {
                volume_size_gib: usable.volume_size_gib,
                encrypted: usable.encrypted,
            })
        })?;
        let suppressed = |device: &str| {
            overrides
                .iter()
                .any(|o| o.device_name == device && o.target == MappingTarget::NoDevice)
        };
        if suppressed(&inst.root_device_name) {
            return Err(Ec2Error::client(
                "InvalidBlockDeviceMapping",
                "The root device cannot be suppressed with NoDevice",
            ));
        }
        let volumes: Vec<(String, String)> = inst
            .block_devices
            .iter()
            .filter(|d| !suppressed(&d.device_name))
            .map(|d| (d.device_name.clone(), d.volume_id.clone()))
            .collect();
        let image_id = ids::new_id("ami");
        let begun = self.snapshot_volumes_at_once(
            caller,
            &req.instance_id,
            &volumes,
            !req.no_reboot,
            |vol| {
                Some(format!(
                    "Created by CreateImage({}) for {image_id} from {vol}",
                    req.instance_id
                ))
            },
            |_| Ok(snapshot_tags.clone()),
        )?;
        let mut mappings: Vec<BlockDeviceMapping> = Vec::new();
        for (device, view, _) in &begun {
            let attached = inst.device(device);
            let over = overrides.iter().find(|o| &o.device_name == device);
            let over_ebs = over.and_then(|o| o.ebs());
            let size = over_ebs
                .map(|e| e.volume_size_gib)
                .unwrap_or(view.doc.volume_size_gib)
                .max(view.doc.volume_size_gib);
            let vol = self.catalog.resource(&view.doc.volume_id)?;
            let vol_doc = match vol {
                Some(row) => Some(self.view_volume(&row, Vec::new())?.doc),
                None => None,
            };
            mappings.push(BlockDeviceMapping {
                device_name: device.clone(),
                target: MappingTarget::Ebs(EbsMapping {
                    snapshot_id: Some(view.id.clone()),
                    volume_size_gib: size,
                    delete_on_termination: over_ebs
                        .map(|e| e.delete_on_termination)
                        .or(attached.map(|a| a.delete_on_termination))
                        .unwrap_or(true),
                    volume_type: over_ebs
                        .map(|e| e.volume_type.clone())
                        .or(vol_doc.as_ref().map(|v| v.volume_type.clone()))
                        .unwrap_or_else(|| "gp2".into()),
                    iops: over_ebs
                        .map(|e| e.iops)
                        .unwrap_or(vol_doc.as_ref().and_then(|v| v.iops))
                        .filter(|_| vol_doc.as_ref().is_some_and(|v| v.volume_type != "gp2")),
                    throughput: over_ebs
                        .map(|e| e.throughput)
                        .unwrap_or(vol_doc.as_ref().and_then(|v| v.throughput)),
                    encrypted: view.doc.encrypted,
                }),
            });
        }
        for o in &overrides {
            let new_device = !mappings.iter().any(|m| m.device_name == o.device_name)
                && !inst.device_in_use(&o.device_name);
            if new_device && o.target != MappingTarget::NoDevice {
                mappings.push(o.clone());
            }
        }
        for e in &inst.ephemeral_disks {
            if e.virtual_name != "root" && !suppressed(&e.device_name) {
                mappings.push(BlockDeviceMapping {
                    device_name: e.device_name.clone(),
                    target: MappingTarget::Ephemeral(e.virtual_name.clone()),
                });
            }
        }
        let source = self
            .catalog
            .resource(&inst.image_id)?
            .and_then(|row| crate::images::doc_of(&row).ok());
        let now = now_ms();
        let doc = ImageDoc {
            name: req.name.clone(),
            description: req.description.clone(),
            architecture: inst.architecture.clone(),
            image_type: "machine".into(),
            virtualization_type: inst.virtualization_type.clone(),
            hypervisor: "xen".into(),
            root_device_type: "ebs".into(),
            root_device_name: Some(inst.root_device_name.clone()),
            block_device_mappings: mappings,
            image_location: format!("{}/{}", caller.account_id, req.name),
            instance_store_template: None,
            kernel_id: inst.kernel_id.clone(),
            ramdisk_id: inst.ramdisk_id.clone(),
            boot_mode: inst.boot_mode.clone(),
            tpm_support: source.as_ref().and_then(|s| s.tpm_support.clone()),
            imds_support: source.as_ref().and_then(|s| s.imds_support.clone()),
            uefi_data: None,
            ena_support: Some(inst.ena_support),
            sriov_net_support: source.as_ref().and_then(|s| s.sriov_net_support.clone()),
            platform: inst.platform.clone(),
            platform_details: inst.platform_details.clone(),
            usage_operation: inst.usage_operation.clone(),
            product_codes: Vec::new(),
            owner_alias: None,
            creation_ms: now,
            deprecation_ms: None,
            deregistration_protection: Protection::Disabled,
            last_launched_ms: None,
            source_image_id: None,
            source_image_region: None,
            state_reason: None,
            client_token: None,
        };
        let pending: Vec<PendingSnapshot> = begun.into_iter().map(|(_, _, p)| p).collect();
        if let Err(e) = self.insert_image(caller, &image_id, "pending", &doc, &image_tags, true) {
            self.store_snapshots_in_background(pending);
            return Err(e);
        }
        let cloud = Arc::clone(self);
        let id = image_id.clone();
        self.spawn_worker(format!("create image {image_id}"), move || {
            let mut failure = None;
            for p in pending {
                let snap = p.snapshot_id().to_string();
                if !cloud.store_snapshot(p) && failure.is_none() {
                    failure = Some(format!("Snapshot {snap} could not be stored"));
                }
            }
            if let Err(e) = cloud.finish_image(&id, failure) {
                tracing::error!(image = %id, error = %e, "cannot record image completion");
            }
        });
        Ok(image_id)
    }

    /// CreateSnapshots: crash-consistent snapshots of an instance's EBS volumes.
    pub fn create_snapshots(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreateSnapshots,
    ) -> Ec2Result<Vec<SnapshotView>> {
        let tags = crate::query::tags_for(&req.tag_specifications, "snapshot")?;
        let inst = self.instance_for_snapshots(caller, &req.instance_id)?;
        for v in &req.exclude_data_volume_ids {
            ids::check("vol", "InvalidVolumeID.Malformed", v)?;
            if inst
                .block_devices
                .iter()
                .any(|d| &d.volume_id == v && d.device_name == inst.root_device_name)
            {
                return Err(Ec2Error::invalid_value(format!(
                    "Volume {v} is the boot volume; use ExcludeBootVolume to exclude it"
                )));
            }
        }
        let volumes: Vec<(String, String)> = inst
            .block_devices
            .iter()
            .filter(|d| !(req.exclude_boot_volume && d.device_name == inst.root_device_name))
            .filter(|d| !req.exclude_data_volume_ids.contains(&d.volume_id))
            .map(|d| (d.device_name.clone(), d.volume_id.clone()))
            .collect();
        if volumes.is_empty() {
            return Err(Ec2Error::invalid_value(
                "No volumes are left to snapshot after the exclusions",
            ));
        }
        let begun = self.snapshot_volumes_at_once(
            caller,
            &req.instance_id,
            &volumes,
            false,
            |_| req.description.clone(),
            |volume_id| {
                let mut t = if req.copy_tags_from_volume {
                    self.catalog.tags(volume_id)?
                } else {
                    Vec::new()
                };
                for (k, v) in &tags {
                    t.retain(|(key, _)| key != k);
                    t.push((k.clone(), v.clone()));
                }
                Ok(t)
            },
        )?;
        let mut views = Vec::new();
        let mut pending = Vec::new();
        for (_, view, p) in begun {
            views.push(view);
            pending.push(p);
        }
        let cloud = Arc::clone(self);
        self.spawn_worker(format!("snapshots of {}", req.instance_id), move || {
            for p in pending {
                cloud.store_snapshot(p);
            }
        });
        Ok(views)
    }
}

/// The requested overrides with the instance's snapshot-less EBS devices filled in, so
/// that `check_mappings` sees complete entries.
fn without_snapshot_devices(req: &CreateImage, inst: &InstanceDoc) -> Vec<MappingRequest> {
    req.block_device_mappings
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let (Some(ebs), Some(device)) = (&mut m.ebs, &m.device_name)
                && inst.device(device).is_some()
                && ebs.volume_size.is_none()
                && ebs.snapshot_id.is_none()
            {
                // Size defaults to the volume's; check_mappings needs one.
                ebs.volume_size = Some(1);
            }
            m
        })
        .collect()
}
