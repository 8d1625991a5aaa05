//! Instances: what the catalog keeps about them, how Describe calls show them, and the
//! instance-type table. The lifecycle (launch, stop, start, terminate, the QEMU machines
//! behind running instances) lives in the submodules.
//!
//! States follow EC2 exactly: `pending` (0) → `running` (16) → `stopping` (64) →
//! `stopped` (80) → `pending` …; `shutting-down` (32) → `terminated` (48). Terminated
//! instances stay visible for [`TERMINATED_VISIBLE_MS`], then their rows are removed.
//!
//! An EBS-backed instance's volumes are ordinary volumes (`in-use`, with an attachment);
//! an instance-store-backed instance's root is a local raw file under the instance's run
//! directory, filled from the image's template snapshot at launch and deleted at
//! termination.

mod attach;
mod attributes;
mod create_image;
pub mod credits;
pub mod elastic_ips;
mod interface;
mod launch;
mod lifecycle;
pub(crate) mod machine;
mod metadata;
mod metrics;
pub mod network;
mod types;
mod uefi;

use catalog::ResourceRow;
use serde::{Deserialize, Serialize};

pub use attach::VolumeAttachment;
pub use attributes::{InstanceAttribute, InstanceAttributeValue, ModifyInstanceAttribute};
pub use create_image::{CreateImage, CreateSnapshots};
pub use interface::{MetadataOptionsRequest, NetworkInterfaceRequest};
pub use launch::{RunInstances, RunMapping};
pub use lifecycle::StateChange;
pub use machine::{Accelerator, ComputeConfig};
pub use metrics::CpuSample;
pub use types::{
    InstanceType, TypeOffering, describe_instance_type_offerings, describe_instance_types,
    instance_type,
};

use crate::images::StateReason;
use crate::query::{Filterable, iso8601};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

/// Catalog kind of instances.
pub const KIND: &str = "instance";

/// How long terminated instances stay visible (one hour, as in EC2).
pub const TERMINATED_VISIBLE_MS: i64 = 60 * 60 * 1000;

/// The EC2 code of an instance state name.
pub fn state_code(state: &str) -> i64 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => -1,
    }
}

/// A volume attached to an instance, as the instance records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceDevice {
    /// e.g. `/dev/xvda`.
    pub device_name: String,
    /// The attached volume.
    pub volume_id: String,
    /// When it was attached.
    pub attach_time_ms: i64,
    /// Delete the volume when the instance terminates.
    pub delete_on_termination: bool,
    /// `attaching`, `attached`, `detaching`.
    pub status: String,
}

/// A local (instance-store) disk of an instance: a raw file in its run directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EphemeralDisk {
    /// e.g. `/dev/xvda` for the root of an instance-store image, `/dev/sdb` for `ephemeral0`.
    pub device_name: String,
    /// `root` or `ephemeralN`.
    pub virtual_name: String,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// What the catalog keeps about an instance.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct InstanceDoc {
    /// The image it was launched from.
    pub image_id: String,
    /// e.g. `t3.micro`.
    pub instance_type: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Reservation (one per RunInstances call).
    pub reservation_id: String,
    /// Index within its reservation.
    pub ami_launch_index: i64,
    /// Last launch (start) time.
    pub launch_time_ms: i64,
    /// From the image.
    pub architecture: String,
    /// `ebs` or `instance-store`.
    pub root_device_type: String,
    /// e.g. `/dev/xvda`.
    pub root_device_name: String,
    /// hvm or paravirtual.
    pub virtualization_type: String,
    /// From the image: legacy-bios, uefi or uefi-preferred (absent: legacy-bios).
    pub boot_mode: Option<String>,
    /// Kernel image.
    pub kernel_id: Option<String>,
    /// Ramdisk image.
    pub ramdisk_id: Option<String>,
    /// `Windows` for Windows images.
    pub platform: Option<String>,
    /// e.g. `Linux/UNIX`.
    pub platform_details: String,
    /// e.g. `RunInstances`.
    pub usage_operation: String,
    /// ENA flag from the image.
    pub ena_support: bool,
    /// EBS volumes, in attachment order (the root first).
    pub block_devices: Vec<InstanceDevice>,
    /// Instance-store disks (the root of an instance-store image, ephemeralN volumes).
    pub ephemeral_disks: Vec<EphemeralDisk>,
    /// UserData, base64 as given.
    pub user_data: Option<String>,
    /// `stop` or `terminate`.
    pub shutdown_behavior: String,
    /// Termination protection.
    pub disable_api_termination: bool,
    /// Stop protection.
    pub disable_api_stop: bool,
    /// EBS optimized flag (recorded).
    pub ebs_optimized: bool,
    /// CPU credit option of a burstable instance, when one was chosen (absent: the
    /// type's default, see `credits::default_cpu_credits`).
    pub cpu_credits: Option<String>,
    /// Key pair name.
    pub key_name: Option<String>,
    /// The key pair's OpenSSH public key at launch (served by the metadata service, as on
    /// EC2, even if the key pair is deleted later).
    pub key_public: Option<String>,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// e.g. `User initiated (2026-11-28 10:00:00 GMT)`.
    pub state_transition_reason: String,
    /// Why the instance is in its state.
    pub state_reason: Option<StateReason>,
    /// Private IPv4 address: from the subnet's CIDR (instances launched before the VPC
    /// layer existed have a made-up 10.0.x.x one and no `network`).
    pub private_ip: String,
    /// The primary network interface (absent for instances from before the VPC layer).
    pub network: Option<crate::network::InstanceNetwork>,
    /// Instance metadata service options.
    pub metadata_options: crate::network::MetadataOptions,
    /// Product codes of the image.
    pub product_codes: Vec<crate::images::ProductCode>,
    /// When it reached `terminated` (for purging).
    pub terminated_ms: Option<i64>,
    /// vCPUs and memory used for the machine.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whether its machine ever reached `running` (a failed first launch terminates it;
    /// a failed later boot leaves it stopped).
    pub has_run: bool,
}

impl InstanceDoc {
    /// The EBS device at `device_name`.
    pub fn device(&self, device_name: &str) -> Option<&InstanceDevice> {
        self.block_devices
            .iter()
            .find(|d| d.device_name == device_name)
    }

    /// True if `device_name` is taken by an EBS or instance-store disk.
    pub fn device_in_use(&self, device_name: &str) -> bool {
        let base = |d: &str| d.trim_start_matches("/dev/").replace("xvd", "sd");
        let want = base(device_name);
        self.block_devices
            .iter()
            .map(|d| &d.device_name)
            .chain(self.ephemeral_disks.iter().map(|d| &d.device_name))
            .any(|d| base(d) == want)
    }
}

/// An instance as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// State name.
    pub state: String,
    /// Stored attributes.
    pub doc: InstanceDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// When the guest last used its metadata service (running instances).
    pub last_metadata_request_ms: Option<i64>,
}

impl InstanceView {
    /// `ip-172-31-5-10.ec2.internal`-style private DNS name.
    pub fn private_dns_name(&self, region: &str) -> String {
        crate::vpc::private_dns_name(region, &self.doc.private_ip)
    }

    /// `ec2-127-100-0-7.compute-1.amazonaws.com`-style public DNS name, when the instance
    /// has a public address.
    pub fn public_dns_name(&self, region: &str) -> Option<String> {
        self.public_ip()
            .map(|ip| crate::vpc::public_dns_name(region, ip))
    }

    /// The public address, when it has one.
    pub fn public_ip(&self) -> Option<&str> {
        self.doc
            .network
            .as_ref()
            .and_then(|n| n.public_ip.as_deref())
    }

    /// DescribeInstanceStatus's instance status: `ok` once a running instance with a
    /// network interface has used its metadata service (its guest is up and on its
    /// network), `initializing` before; instances without an interface are `ok` while
    /// running; others `not-applicable`.
    pub fn instance_status(&self) -> &'static str {
        if self.state != "running" {
            "not-applicable"
        } else if self.doc.network.is_none() || self.last_metadata_request_ms.is_some() {
            "ok"
        } else {
            "initializing"
        }
    }

    /// DescribeInstanceStatus's system status: `ok` while the machine runs.
    pub fn system_status(&self) -> &'static str {
        if self.state == "running" {
            "ok"
        } else {
            "not-applicable"
        }
    }
}

/// `passed` for `ok`, `initializing` otherwise (the reachability check's status).
pub fn reachability(status: &str) -> &'static str {
    if status == "ok" {
        "passed"
    } else {
        "initializing"
    }
}

impl Filterable for InstanceView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let d = &self.doc;
        let one = |s: String| Some(vec![s]);
        let devices = |f: &dyn Fn(&InstanceDevice) -> String| {
            Some(d.block_devices.iter().map(f).collect::<Vec<_>>())
        };
        let net = |f: &dyn Fn(&crate::network::InstanceNetwork) -> Vec<String>| {
            Some(d.network.as_ref().map(f).unwrap_or_default())
        };
        match name {
            "instance-id" => one(self.id.clone()),
            "image-id" => one(d.image_id.clone()),
            "instance-state-name" => one(self.state.clone()),
            "instance-state-code" => one(state_code(&self.state).to_string()),
            "instance-type" => one(d.instance_type.clone()),
            "availability-zone" => one(d.availability_zone.clone()),
            "architecture" => one(d.architecture.clone()),
            "root-device-type" => one(d.root_device_type.clone()),
            "root-device-name" => one(d.root_device_name.clone()),
            "virtualization-type" => one(d.virtualization_type.clone()),
            "hypervisor" => one("xen".into()),
            "reservation-id" => one(d.reservation_id.clone()),
            "owner-id" => one(self.owner_id.clone()),
            "launch-index" => one(d.ami_launch_index.to_string()),
            "launch-time" => one(iso8601(d.launch_time_ms)),
            "client-token" => Some(d.client_token.iter().cloned().collect()),
            "key-name" => Some(d.key_name.iter().cloned().collect()),
            "kernel-id" => Some(d.kernel_id.iter().cloned().collect()),
            "ramdisk-id" => Some(d.ramdisk_id.iter().cloned().collect()),
            "platform" => Some(d.platform.iter().map(|p| p.to_lowercase()).collect()),
            "platform-details" => one(d.platform_details.clone()),
            "usage-operation" => one(d.usage_operation.clone()),
            "boot-mode" => Some(d.boot_mode.iter().cloned().collect()),
            "private-ip-address" | "network-interface.addresses.private-ip-address" => {
                one(d.private_ip.clone())
            }
            "private-dns-name" => one(crate::vpc::private_dns_name(
                d.availability_zone.trim_end_matches(char::is_alphabetic),
                &d.private_ip,
            )),
            "ip-address" | "network-interface.addresses.association.public-ip" => {
                Some(self.public_ip().into_iter().map(str::to_string).collect())
            }
            "vpc-id" | "network-interface.vpc-id" => net(&|n| vec![n.vpc_id.clone()]),
            "subnet-id" | "network-interface.subnet-id" => net(&|n| vec![n.subnet_id.clone()]),
            "network-interface.network-interface-id" => net(&|n| vec![n.interface_id.clone()]),
            "network-interface.mac-address" => net(&|n| vec![n.mac.clone()]),
            "instance.group-id" | "network-interface.group-id" => {
                net(&|n| n.groups.iter().map(|g| g.id.clone()).collect())
            }
            "instance.group-name" | "network-interface.group-name" => {
                net(&|n| n.groups.iter().map(|g| g.name.clone()).collect())
            }
            "metadata-options.http-tokens" => one(d.metadata_options.http_tokens.clone()),
            "metadata-options.http-endpoint" => one(d.metadata_options.http_endpoint.clone()),
            "metadata-options.instance-metadata-tags" => {
                one(d.metadata_options.instance_metadata_tags.clone())
            }
            "metadata-options.http-put-response-hop-limit" => {
                one(d.metadata_options.http_put_response_hop_limit.to_string())
            }
            "reason" => one(d.state_transition_reason.clone()),
            "state-reason-code" => Some(d.state_reason.iter().map(|r| r.code.clone()).collect()),
            "state-reason-message" => {
                Some(d.state_reason.iter().map(|r| r.message.clone()).collect())
            }
            "ebs-optimized" => one(d.ebs_optimized.to_string()),
            "ena-support" => one(d.ena_support.to_string()),
            "tenancy" | "placement-tenancy" => one("default".into()),
            "monitoring-state" => one("disabled".into()),
            "block-device-mapping.device-name" => devices(&|b| b.device_name.clone()),
            "block-device-mapping.volume-id" => devices(&|b| b.volume_id.clone()),
            "block-device-mapping.status" => devices(&|b| b.status.clone()),
            "block-device-mapping.attach-time" => devices(&|b| iso8601(b.attach_time_ms)),
            "block-device-mapping.delete-on-termination" => {
                devices(&|b| b.delete_on_termination.to_string())
            }
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// The filters of DescribeInstanceStatus.
struct StatusView<'a>(&'a InstanceView);

impl Filterable for StatusView<'_> {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let v = self.0;
        let instance = v.instance_status();
        let system = v.system_status();
        match name {
            "availability-zone" | "instance-state-name" | "instance-state-code" => {
                v.filter_values(name)
            }
            "instance-status.status" => Some(vec![instance.into()]),
            "system-status.status" => Some(vec![system.into()]),
            "instance-status.reachability" => Some(
                (instance != "not-applicable")
                    .then(|| reachability(instance).to_string())
                    .into_iter()
                    .collect(),
            ),
            "system-status.reachability" => Some(
                (system != "not-applicable")
                    .then(|| reachability(system).to_string())
                    .into_iter()
                    .collect(),
            ),
            "event.code" | "event.description" | "event.not-after" | "event.not-before" => {
                Some(Vec::new())
            }
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &[]
    }
}

pub(crate) fn doc_of(row: &ResourceRow) -> Ec2Result<InstanceDoc> {
    serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("instance document", e))
}

pub(crate) fn encode(doc: &InstanceDoc) -> Ec2Result<String> {
    serde_json::to_string(doc).map_err(|e| Ec2Error::internal("instance document", e))
}

/// `User initiated (2026-11-28 10:00:00 GMT)`, EC2's transition reason.
pub(crate) fn user_initiated(now_ms: i64) -> String {
    let iso = iso8601(now_ms);
    let (date, time) = iso.split_once('T').unwrap_or((&iso, ""));
    format!(
        "User initiated ({date} {} GMT)",
        time.get(..8).unwrap_or("")
    )
}

impl Cloud {
    pub(crate) fn view_instance(
        &self,
        row: &ResourceRow,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<InstanceView> {
        Ok(InstanceView {
            id: row.id.clone(),
            owner_id: row.account_id.clone(),
            state: row.state.clone(),
            doc: doc_of(row)?,
            tags,
            last_metadata_request_ms: self.last_metadata_request_ms(&row.id),
        })
    }

    /// An instance the caller owns in its region, or `InvalidInstanceID.NotFound`.
    pub(crate) fn owned_instance(&self, caller: &Caller, id: &str) -> Ec2Result<ResourceRow> {
        ids::check("i", "InvalidInstanceID.Malformed", id)?;
        self.owned_row(caller, KIND, id)?.ok_or_else(|| {
            Ec2Error::client(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{id}' does not exist"),
            )
        })
    }

    /// DescribeInstances: the caller's instances in its region, grouped by reservation
    /// by the API layer.
    pub fn describe_instances(
        &self,
        caller: &Caller,
        instance_ids: &[String],
        filters: &[crate::query::Filter],
        page: &crate::query::Page,
    ) -> Ec2Result<(Vec<InstanceView>, Option<String>)> {
        crate::query::check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !instance_ids.is_empty())?;
        for id in instance_ids {
            ids::check("i", "InvalidInstanceID.Malformed", id)?;
        }
        let now = catalog::now_ms();
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for row in self.catalog.resources(KIND, &caller.region)? {
            if self.purge_if_expired(&row, now)? {
                continue;
            }
            if row.account_id != caller.account_id
                || (!instance_ids.is_empty() && !instance_ids.contains(&row.id))
            {
                continue;
            }
            let view =
                self.view_instance(&row, all_tags.get(&row.id).cloned().unwrap_or_default())?;
            if crate::query::matches(&view, filters)? {
                out.push(view);
            }
        }
        let missing: Vec<&String> = instance_ids
            .iter()
            .filter(|id| !out.iter().any(|v| &v.id == *id))
            .filter(|id| self.owned_instance(caller, id).is_err())
            .collect();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(Ec2Error::client(
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", list.join(", ")),
            ));
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(page.apply(out, |v| &v.id))
    }

    /// DescribeInstanceStatus: running instances, or all with `include_all`.
    pub fn describe_instance_status(
        &self,
        caller: &Caller,
        instance_ids: &[String],
        filters: &[crate::query::Filter],
        page: &crate::query::Page,
        include_all: bool,
    ) -> Ec2Result<(Vec<InstanceView>, Option<String>)> {
        let (views, _) =
            self.describe_instances(caller, instance_ids, &[], &crate::query::Page::default())?;
        let mut page = page.clone();
        page.check(5, 1000, !instance_ids.is_empty())?;
        let mut out = Vec::new();
        for v in views {
            if !include_all && v.state != "running" {
                continue;
            }
            if crate::query::matches(&StatusView(&v), filters)? {
                out.push(v);
            }
        }
        Ok(page.apply(out, |v| &v.id))
    }

    /// Removes terminated instances older than [`TERMINATED_VISIBLE_MS`].
    pub(crate) fn purge_terminated(&self) -> Ec2Result<()> {
        let now = catalog::now_ms();
        for row in self.catalog.resources_of_kind(KIND)? {
            self.purge_if_expired(&row, now)?;
        }
        Ok(())
    }

    /// Removes `row` if it is an instance terminated more than
    /// [`TERMINATED_VISIBLE_MS`] before `now`; true if it did.
    fn purge_if_expired(&self, row: &ResourceRow, now: i64) -> Ec2Result<bool> {
        let expired = row.state == "terminated"
            && doc_of(row)?
                .terminated_ms
                .is_some_and(|t| now - t > TERMINATED_VISIBLE_MS);
        if !expired {
            return Ok(false);
        }
        self.catalog.clear_tags(&row.id)?;
        self.catalog.delete_resource(&row.id)?;
        Ok(true)
    }
}
