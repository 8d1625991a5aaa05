//! RunInstances: checks the request against the image (launch permission, state,
//! architecture), merges the requested block device mapping over the image's, creates the
//! EBS volumes in O(1) from their snapshots, records the instances as `pending` and hands
//! them to the machine layer to boot.

use std::sync::Arc;

use catalog::{ResourceRow, now_ms};

use super::interface::{MetadataOptionsRequest, NetworkInterfaceRequest, primary_interface};
use super::types::{InstanceType, instance_type};
use super::{EphemeralDisk, InstanceDevice, InstanceDoc, InstanceView, KIND, encode};
use crate::images::validate::{SnapshotInfo, check_mappings, split_tags, valid_device_name};
use crate::images::{
    BlockDeviceMapping, EbsMapping, EbsRequest, ImageDoc, MappingRequest, MappingTarget,
};
use crate::keypairs::LaunchKey;
use crate::network::{InstanceNetwork, MetadataOptions};
use crate::query::TagSpecification;
use crate::volumes::{AttachmentDoc, VolumeDoc};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, regions, snapshots};

/// One requested `BlockDeviceMapping.N` of RunInstances.
pub type RunMapping = MappingRequest;

/// RunInstances parameters.
#[derive(Clone, Debug, Default)]
pub struct RunInstances {
    /// `ImageId`.
    pub image_id: String,
    /// `MinCount`.
    pub min_count: i64,
    /// `MaxCount`.
    pub max_count: i64,
    /// `InstanceType` (default `m1.small`, as in EC2).
    pub instance_type: Option<String>,
    /// `BlockDeviceMapping.N`, merged over the image's.
    pub block_device_mappings: Vec<RunMapping>,
    /// `UserData` (base64).
    pub user_data: Option<String>,
    /// `ClientToken`.
    pub client_token: Option<String>,
    /// `TagSpecification.N` (`instance` and `volume`).
    pub tag_specifications: Vec<TagSpecification>,
    /// `InstanceInitiatedShutdownBehavior` (default `stop`).
    pub shutdown_behavior: Option<String>,
    /// `DisableApiTermination`.
    pub disable_api_termination: Option<bool>,
    /// `DisableApiStop`.
    pub disable_api_stop: Option<bool>,
    /// `Placement.AvailabilityZone`.
    pub availability_zone: Option<String>,
    /// `EbsOptimized`.
    pub ebs_optimized: Option<bool>,
    /// `CreditSpecification.CpuCredits` (burstable types only).
    pub cpu_credits: Option<super::credits::CpuCredits>,
    /// `KeyName`.
    pub key_name: Option<String>,
    /// `SubnetId`.
    pub subnet_id: Option<String>,
    /// `SecurityGroupId.N`.
    pub security_group_ids: Vec<String>,
    /// `SecurityGroup.N` (names).
    pub security_group_names: Vec<String>,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `NetworkInterface.N` (only the primary interface, device index 0).
    pub network_interfaces: Vec<NetworkInterfaceRequest>,
    /// `MetadataOptions`.
    pub metadata_options: MetadataOptionsRequest,
    /// `KernelId` / `RamdiskId` overrides (refused).
    pub kernel_override: bool,
    /// `LaunchTemplate` (applied by `Cloud::apply_launch_template` before the launch).
    pub launch_template: Option<crate::launch_templates::launch::LaunchTemplateSpecification>,
}

/// Most instances one RunInstances call may launch.
const MAX_PER_CALL: i64 = 20;
/// Largest user data EC2 accepts (16 KiB, before base64).
const MAX_USER_DATA: usize = 16 * 1024;

fn bad_mapping(message: impl Into<String>) -> Ec2Error {
    Ec2Error::client("InvalidBlockDeviceMapping", message)
}

/// Fills a requested EBS override of an image device with the image's values.
fn inherit(req: &EbsRequest, image: &EbsMapping) -> EbsRequest {
    EbsRequest {
        snapshot_id: req.snapshot_id.clone().or(image.snapshot_id.clone()),
        volume_size: req.volume_size.or(Some(image.volume_size_gib)),
        delete_on_termination: req
            .delete_on_termination
            .or(Some(image.delete_on_termination)),
        volume_type: req.volume_type.clone().or(Some(image.volume_type.clone())),
        iops: req.iops.or(if req.volume_type.is_none() {
            image.iops.filter(|_| image.volume_type != "gp2")
        } else {
            None
        }),
        throughput: req.throughput.or(if req.volume_type.is_none() {
            image.throughput
        } else {
            None
        }),
        encrypted: req.encrypted.or(Some(image.encrypted)),
        kms_key_id: req.kms_key_id.clone(),
    }
}

/// Same device, whether written `/dev/sdf` or `/dev/xvdf`.
fn same_device(a: &str, b: &str) -> bool {
    let base = |d: &str| d.trim_start_matches("/dev/").replacen("xvd", "sd", 1);
    base(a) == base(b)
}

impl Cloud {
    /// The effective block device mapping of a launch: the image's, with the request's
    /// entries replacing, suppressing (`NoDevice`) or adding devices.
    fn merged_mappings(
        &self,
        caller: &Caller,
        image: &ImageDoc,
        requested: &[RunMapping],
    ) -> Ec2Result<Vec<BlockDeviceMapping>> {
        let image_snapshots = image.snapshot_ids();
        let mut filled = Vec::with_capacity(requested.len());
        for m in requested {
            let device = m.device_name.clone().unwrap_or_default();
            let from_image = image
                .block_device_mappings
                .iter()
                .find(|i| same_device(&i.device_name, &device))
                .and_then(|i| i.ebs());
            let mut m = m.clone();
            if let (Some(req), Some(img)) = (&m.ebs, from_image) {
                m.ebs = Some(inherit(req, img));
            }
            filled.push(m);
        }
        let requested = check_mappings(&filled, |snap| {
            if image_snapshots.iter().any(|s| s == snap) {
                // Launch permission on the image covers its snapshots.
                let row = self.catalog.resource(snap)?.ok_or_else(|| {
                    Ec2Error::not_found("InvalidSnapshot.NotFound", "snapshot", snap)
                })?;
                let doc = snapshots::doc_of(&row)?;
                return Ok(SnapshotInfo {
                    volume_size_gib: doc.volume_size_gib,
                    encrypted: doc.encrypted,
                });
            }
            let usable = snapshots::usable_snapshot(self, caller, snap)?;
            Ok(SnapshotInfo {
                volume_size_gib: usable.volume_size_gib,
                encrypted: usable.encrypted,
            })
        })?;
        let root = image.root_device_name.clone().unwrap_or_default();
        let mut out: Vec<BlockDeviceMapping> = image.block_device_mappings.clone();
        for m in requested {
            if matches!(m.target, MappingTarget::NoDevice) && same_device(&m.device_name, &root) {
                return Err(bad_mapping(format!(
                    "The root device {root} cannot be suppressed with NoDevice"
                )));
            }
            if let MappingTarget::Ebs(e) = &m.target
                && e.snapshot_id.is_none()
                && same_device(&m.device_name, &root)
                && image.root_device_type == "ebs"
            {
                return Err(bad_mapping("The root device needs the image's snapshot"));
            }
            out.retain(|o| !same_device(&o.device_name, &m.device_name));
            out.push(m);
        }
        out.retain(|m| !matches!(m.target, MappingTarget::NoDevice));
        // The root device first, then the rest in name order.
        out.sort_by_key(|m| (!same_device(&m.device_name, &root), m.device_name.clone()));
        Ok(out)
    }

    /// RunInstances: launches between `MinCount` and `MaxCount` instances of one image.
    pub fn run_instances(
        self: &Arc<Self>,
        caller: &Caller,
        mut req: RunInstances,
    ) -> Ec2Result<Vec<InstanceView>> {
        // Empty user data is no user data (Terraform's launch templates always send
        // `UserData`, often empty); a guest must not be handed an empty script.
        if req.user_data.as_deref() == Some("") {
            req.user_data = None;
        }
        if let Some(token) = &req.client_token {
            if token.len() > 64 {
                return Err(Ec2Error::invalid_value(
                    "ClientToken must be at most 64 characters",
                ));
            }
            let earlier: Vec<ResourceRow> = self
                .catalog
                .resources(KIND, &caller.region)?
                .into_iter()
                .filter(|r| r.account_id == caller.account_id)
                .collect();
            let mut same = Vec::new();
            for row in earlier {
                if super::doc_of(&row)?.client_token.as_deref() == Some(token) {
                    same.push(self.view_instance(&row, self.catalog.tags(&row.id)?)?);
                }
            }
            if !same.is_empty() {
                if same[0].doc.image_id != req.image_id {
                    return Err(Ec2Error::client(
                        "IdempotentParameterMismatch",
                        "The client token was already used with different parameters",
                    ));
                }
                same.sort_by_key(|v| v.doc.ami_launch_index);
                return Ok(same);
            }
        }
        if req.min_count < 1 {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({}) for parameter minCount is invalid. Expected a positive integer.",
                req.min_count
            )));
        }
        if req.max_count < req.min_count {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({}) for parameter maxCount is invalid. Expected a value at least minCount ({}).",
                req.max_count, req.min_count
            )));
        }
        if req.min_count > MAX_PER_CALL {
            return Err(Ec2Error::client(
                "InstanceLimitExceeded",
                format!(
                    "You have requested more instances ({}) than your current instance limit of {MAX_PER_CALL} allows for the specified instance type.",
                    req.min_count
                ),
            ));
        }
        let key = match &req.key_name {
            Some(name) => Some(self.launch_key(caller, name)?),
            None => None,
        };
        let metadata_options = req.metadata_options.apply(&MetadataOptions::default())?;
        let nic = primary_interface(&req)?;
        if req.kernel_override {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                "KernelId and RamdiskId overrides are not supported by openami",
            ));
        }
        let itype = instance_type(req.instance_type.as_deref().unwrap_or("m1.small"))?;
        super::credits::check_cpu_credits(itype.name, req.cpu_credits)?;
        let shutdown_behavior = req
            .shutdown_behavior
            .clone()
            .unwrap_or_else(|| "stop".into());
        if shutdown_behavior != "stop" && shutdown_behavior != "terminate" {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({shutdown_behavior}) for parameter instanceInitiatedShutdownBehavior is invalid. Expected 'stop' or 'terminate'."
            )));
        }
        let user_data = match &req.user_data {
            Some(b64) => Some(decode_user_data(b64)?),
            None => None,
        };
        if let Some(z) = &req.availability_zone {
            regions::check_zone(&caller.region, z)?;
        }
        let placement = self.launch_placement(
            caller,
            nic.subnet_id.as_deref(),
            req.availability_zone.as_deref(),
            &nic.group_ids,
            &req.security_group_names,
        )?;
        let zone = placement.zone.clone();
        self.check_placement(&zone, crate::nodes::Placing::Instance)?;
        if nic.private_ip.is_some() && req.max_count > 1 {
            return Err(Ec2Error::client(
                "InvalidParameterCombination",
                "Cannot specify a private IP address when launching more than one instance",
            ));
        }
        let mut split = split_tags(&req.tag_specifications, &["instance", "volume"])?;
        let volume_tags = split.pop().unwrap_or_default();
        let instance_tags = split.pop().unwrap_or_default();

        let image_row = self.visible_image(caller, &req.image_id)?;
        // Allowed AMIs (enabled): an image the criteria do not allow is not there.
        if self.allowed_images(caller)?.hides(
            caller,
            &image_row.account_id,
            &crate::images::doc_of(&image_row)?,
            catalog::now_ms(),
        ) {
            return Err(crate::images::not_found(&req.image_id));
        }
        if image_row.state != "available" {
            return Err(Ec2Error::client(
                "InvalidAMIID.Unavailable",
                format!(
                    "Image {} is not available ({})",
                    req.image_id, image_row.state
                ),
            ));
        }
        let image = crate::images::doc_of(&image_row)?;
        if image.image_type != "machine" {
            return Err(Ec2Error::invalid_value(format!(
                "The image '{}' is a {} image; only machine images can be launched",
                req.image_id, image.image_type
            )));
        }
        if image.architecture != itype.architecture {
            return Err(Ec2Error::invalid_value(format!(
                "The architecture '{}' of the specified instance type does not match the architecture '{}' of the specified AMI.",
                itype.architecture, image.architecture
            )));
        }
        let mappings = self.merged_mappings(caller, &image, &req.block_device_mappings)?;
        let root_device = image
            .root_device_name
            .clone()
            .unwrap_or_else(|| "/dev/xvda".into());
        if image.root_device_type == "instance-store" && image.instance_store_template.is_none() {
            return Err(Ec2Error::client(
                "InvalidAMIID.Unavailable",
                format!("Image {} has no instance-store template", req.image_id),
            ));
        }
        let running = self.active_instance_count()?;
        let capacity = self.compute_config().max_instances as i64 - running as i64;
        if capacity < req.min_count {
            return Err(Ec2Error {
                code: "InsufficientInstanceCapacity".into(),
                message: format!(
                    "We currently do not have sufficient {} capacity: {} instances are active on this host.",
                    itype.name, running
                ),
                status: 500,
            });
        }
        let count = req.max_count.min(capacity).min(MAX_PER_CALL);
        let reservation_id = ids::new_id("r");
        let mut views: Vec<InstanceView> = Vec::new();
        // Addresses are chosen and recorded under one lock, so concurrent launches never
        // share one.
        let addresses = super::network::address_lock();
        let mut failure = None;
        for index in 0..count {
            let taken_private: Vec<String> =
                views.iter().map(|v| v.doc.private_ip.clone()).collect();
            let taken_public: Vec<String> = views
                .iter()
                .filter_map(|v| v.doc.network.as_ref().and_then(|n| n.public_ip.clone()))
                .collect();
            let created = self
                .interface_for_launch(&placement, &nic, &taken_private, &taken_public)
                .and_then(|network| {
                    self.create_instance(
                        caller,
                        &req,
                        &image,
                        &mappings,
                        Launch {
                            itype,
                            zone: &zone,
                            root_device: &root_device,
                            reservation_id: &reservation_id,
                            index,
                            shutdown_behavior: &shutdown_behavior,
                            instance_tags: &instance_tags,
                            volume_tags: &volume_tags,
                            network,
                            key: key.as_ref(),
                            metadata_options: &metadata_options,
                        },
                    )
                });
            match created {
                Ok(view) => views.push(view),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // The undo takes the transitions lock, which StartInstances holds while it asks
        // for the address lock: never hold both the other way round.
        drop(addresses);
        if let Some(e) = failure {
            // All or nothing: undo the instances (and volumes) created so far.
            for created in &views {
                self.finish_terminate(&created.id, None);
                let _ = self.catalog.clear_tags(&created.id);
                let _ = self.catalog.delete_resource(&created.id);
            }
            return Err(e);
        }
        self.touch_image_launched(&req.image_id);
        for view in &views {
            self.boot_in_background(&view.id, user_data.clone());
        }
        Ok(views)
    }

    fn create_instance(
        &self,
        caller: &Caller,
        req: &RunInstances,
        image: &ImageDoc,
        mappings: &[BlockDeviceMapping],
        launch: Launch<'_>,
    ) -> Ec2Result<InstanceView> {
        let id = ids::new_id("i");
        let now = now_ms();
        let mut devices: Vec<InstanceDevice> = Vec::new();
        let mut ephemeral = Vec::new();
        let mut ephemeral_index = 0;
        for m in mappings {
            match &m.target {
                MappingTarget::Ebs(e) => {
                    let doc = VolumeDoc {
                        size_gib: e.volume_size_gib,
                        volume_type: e.volume_type.clone(),
                        iops: e.iops,
                        throughput: e.throughput,
                        availability_zone: launch.zone.to_string(),
                        snapshot_id: e.snapshot_id.clone(),
                        encrypted: e.encrypted,
                        multi_attach: false,
                        create_time_ms: now,
                        client_token: None,
                        last_modification: None,
                        auto_enable_io: false,
                        attachment: Some(AttachmentDoc {
                            instance_id: id.clone(),
                            device: m.device_name.clone(),
                            attach_time_ms: now,
                            delete_on_termination: e.delete_on_termination,
                            state: "attached".into(),
                        }),
                    };
                    let volume = match self.materialize_volume(
                        &caller.account_id,
                        &caller.region,
                        doc,
                        launch.volume_tags.to_vec(),
                    ) {
                        Ok(v) => v,
                        Err(e) => {
                            for d in &devices {
                                let _ = self.delete_instance_volume(&caller.region, &d.volume_id);
                            }
                            return Err(e);
                        }
                    };
                    devices.push(InstanceDevice {
                        device_name: m.device_name.clone(),
                        volume_id: volume.id,
                        attach_time_ms: now,
                        delete_on_termination: e.delete_on_termination,
                        status: "attached".into(),
                    });
                }
                MappingTarget::Ephemeral(name) => {
                    let Some((count, gib)) = launch.itype.instance_store else {
                        continue;
                    };
                    if ephemeral_index >= count {
                        continue;
                    }
                    ephemeral_index += 1;
                    ephemeral.push(EphemeralDisk {
                        device_name: m.device_name.clone(),
                        virtual_name: name.clone(),
                        size_bytes: gib << 30,
                    });
                }
                MappingTarget::NoDevice => {}
            }
        }
        if image.root_device_type == "instance-store" {
            let template = image.instance_store_template.clone().unwrap_or_default();
            let size = self.snapshot_size_bytes(&template)?;
            ephemeral.insert(
                0,
                EphemeralDisk {
                    device_name: launch.root_device.to_string(),
                    virtual_name: "root".into(),
                    size_bytes: size,
                },
            );
        }
        let doc = InstanceDoc {
            image_id: req.image_id.clone(),
            instance_type: launch.itype.name.to_string(),
            availability_zone: launch.zone.to_string(),
            reservation_id: launch.reservation_id.to_string(),
            ami_launch_index: launch.index,
            launch_time_ms: now,
            architecture: image.architecture.clone(),
            root_device_type: image.root_device_type.clone(),
            root_device_name: launch.root_device.to_string(),
            virtualization_type: image.virtualization_type.clone(),
            boot_mode: image.boot_mode.clone(),
            kernel_id: image.kernel_id.clone(),
            ramdisk_id: image.ramdisk_id.clone(),
            platform: image.platform.clone(),
            platform_details: image.platform_details.clone(),
            usage_operation: image.usage_operation.clone(),
            ena_support: image.ena_support.unwrap_or(false),
            block_devices: devices,
            ephemeral_disks: ephemeral,
            user_data: req.user_data.clone(),
            shutdown_behavior: launch.shutdown_behavior.to_string(),
            disable_api_termination: req.disable_api_termination.unwrap_or(false),
            disable_api_stop: req.disable_api_stop.unwrap_or(false),
            ebs_optimized: req.ebs_optimized.unwrap_or(false),
            cpu_credits: super::credits::check_cpu_credits(launch.itype.name, req.cpu_credits)?,
            key_name: launch.key.map(|k| k.key_name.clone()),
            key_public: launch.key.map(|k| k.public_key.clone()),
            client_token: req.client_token.clone(),
            state_transition_reason: String::new(),
            state_reason: Some(crate::images::StateReason {
                code: "pending".into(),
                message: "pending".into(),
            }),
            private_ip: launch.network.0.clone(),
            network: Some(launch.network.1.clone()),
            metadata_options: launch.metadata_options.clone(),
            product_codes: image.product_codes.clone(),
            terminated_ms: None,
            vcpus: launch.itype.vcpus,
            memory_mib: launch.itype.memory_mib,
            has_run: false,
        };
        let row = ResourceRow {
            id: id.clone(),
            kind: KIND.into(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            state: "pending".into(),
            doc: encode(&doc)?,
            created_at_ms: now,
        };
        self.catalog
            .insert_resource_with_tags(&row, launch.instance_tags)?;
        Ok(InstanceView {
            id,
            owner_id: caller.account_id.clone(),
            state: "pending".into(),
            doc,
            tags: launch.instance_tags.to_vec(),
            last_metadata_request_ms: None,
        })
    }

    /// Size in bytes of a snapshot's volume.
    pub(crate) fn snapshot_size_bytes(&self, snapshot_id: &str) -> Ec2Result<u64> {
        let row = self.catalog.resource(snapshot_id)?.ok_or_else(|| {
            Ec2Error::not_found("InvalidSnapshot.NotFound", "snapshot", snapshot_id)
        })?;
        Ok(snapshots::doc_of(&row)?.volume_size_gib as u64 * (1 << 30))
    }

    /// Instances that hold a machine or are about to (not stopped or terminated).
    pub(crate) fn active_instance_count(&self) -> Ec2Result<usize> {
        Ok(self
            .catalog
            .resources_of_kind(KIND)?
            .iter()
            .filter(|r| {
                matches!(
                    r.state.as_str(),
                    "pending" | "running" | "stopping" | "shutting-down"
                )
            })
            .count())
    }
}

/// Per-instance launch settings shared by one RunInstances call.
struct Launch<'a> {
    itype: InstanceType,
    zone: &'a str,
    root_device: &'a str,
    reservation_id: &'a str,
    index: i64,
    shutdown_behavior: &'a str,
    instance_tags: &'a [(String, String)],
    volume_tags: &'a [(String, String)],
    /// Private address and primary interface.
    network: (String, InstanceNetwork),
    key: Option<&'a LaunchKey>,
    metadata_options: &'a MetadataOptions,
}

/// Decodes base64 user data, enforcing EC2's 16 KiB limit.
pub(crate) fn decode_user_data(b64: &str) -> Ec2Result<Vec<u8>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| Ec2Error::invalid_value("Invalid BASE64 encoding of user data."))?;
    if bytes.len() > MAX_USER_DATA {
        return Err(Ec2Error::invalid_value(format!(
            "User data is limited to {MAX_USER_DATA} bytes"
        )));
    }
    Ok(bytes)
}

/// True for a device name RunInstances and AttachVolume accept.
pub(crate) fn check_device_name(name: &str) -> Ec2Result<()> {
    if valid_device_name(name) {
        Ok(())
    } else {
        Err(Ec2Error::invalid_value(format!(
            "Value ({name}) for parameter device is invalid. {name} is not a valid EBS device name."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_compare_across_naming_schemes() {
        assert!(same_device("/dev/sdf", "/dev/xvdf"));
        assert!(same_device("/dev/xvda", "xvda"));
        assert!(!same_device("/dev/sdf", "/dev/sdg"));
    }

    #[test]
    fn user_data_limits() {
        assert_eq!(decode_user_data("aGVsbG8=").unwrap(), b"hello");
        assert!(decode_user_data("not base64!").is_err());
        use base64::Engine as _;
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_USER_DATA + 1]);
        assert!(decode_user_data(&big).is_err());
    }
}
