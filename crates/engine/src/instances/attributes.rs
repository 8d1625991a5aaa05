//! DescribeInstanceAttribute, ModifyInstanceAttribute and GetConsoleOutput.

use super::types::instance_type;
use super::{InstanceDevice, doc_of, encode};
use crate::images::ProductCode;
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// The attributes DescribeInstanceAttribute knows (botocore's `InstanceAttributeName`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceAttribute {
    /// instanceType
    InstanceType,
    /// kernel
    Kernel,
    /// ramdisk
    Ramdisk,
    /// userData
    UserData,
    /// disableApiTermination
    DisableApiTermination,
    /// instanceInitiatedShutdownBehavior
    InstanceInitiatedShutdownBehavior,
    /// rootDeviceName
    RootDeviceName,
    /// blockDeviceMapping
    BlockDeviceMapping,
    /// productCodes
    ProductCodes,
    /// sourceDestCheck
    SourceDestCheck,
    /// groupSet
    GroupSet,
    /// ebsOptimized
    EbsOptimized,
    /// sriovNetSupport
    SriovNetSupport,
    /// enaSupport
    EnaSupport,
    /// enclaveOptions
    EnclaveOptions,
    /// disableApiStop
    DisableApiStop,
}

const NAMES: &[(&str, InstanceAttribute)] = &[
    ("instanceType", InstanceAttribute::InstanceType),
    ("kernel", InstanceAttribute::Kernel),
    ("ramdisk", InstanceAttribute::Ramdisk),
    ("userData", InstanceAttribute::UserData),
    (
        "disableApiTermination",
        InstanceAttribute::DisableApiTermination,
    ),
    (
        "instanceInitiatedShutdownBehavior",
        InstanceAttribute::InstanceInitiatedShutdownBehavior,
    ),
    ("rootDeviceName", InstanceAttribute::RootDeviceName),
    ("blockDeviceMapping", InstanceAttribute::BlockDeviceMapping),
    ("productCodes", InstanceAttribute::ProductCodes),
    ("sourceDestCheck", InstanceAttribute::SourceDestCheck),
    ("groupSet", InstanceAttribute::GroupSet),
    ("ebsOptimized", InstanceAttribute::EbsOptimized),
    ("sriovNetSupport", InstanceAttribute::SriovNetSupport),
    ("enaSupport", InstanceAttribute::EnaSupport),
    ("enclaveOptions", InstanceAttribute::EnclaveOptions),
    ("disableApiStop", InstanceAttribute::DisableApiStop),
];

impl InstanceAttribute {
    /// Parses botocore's attribute name.
    pub fn parse(name: &str) -> Ec2Result<Self> {
        crate::query::parse_attribute(NAMES, name)
    }

    /// The attribute's name, which is also its XML element.
    pub fn as_str(self) -> &'static str {
        crate::query::attribute_name(NAMES, self)
    }
}

/// The value of one instance attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceAttributeValue {
    /// A string attribute (`<value>`), absent when unset.
    Text(Option<String>),
    /// A boolean attribute.
    Bool(bool),
    /// The EBS block device mapping.
    Devices(Vec<InstanceDevice>),
    /// Product codes.
    ProductCodes(Vec<ProductCode>),
    /// Security groups of the primary interface.
    Groups(Vec<crate::network::GroupRef>),
}

/// ModifyInstanceAttribute parameters (one change per call, as in EC2).
#[derive(Clone, Debug, Default)]
pub struct ModifyInstanceAttribute {
    /// The instance.
    pub instance_id: String,
    /// New instance type (stopped instances only).
    pub instance_type: Option<String>,
    /// New user data, base64 (stopped instances only).
    pub user_data: Option<String>,
    /// Termination protection.
    pub disable_api_termination: Option<bool>,
    /// Stop protection.
    pub disable_api_stop: Option<bool>,
    /// `stop` or `terminate`.
    pub shutdown_behavior: Option<String>,
    /// EBS optimized flag.
    pub ebs_optimized: Option<bool>,
    /// DeleteOnTermination per device name.
    pub delete_on_termination: Vec<(String, bool)>,
    /// New security groups of the primary interface (`GroupId.N`).
    pub groups: Option<Vec<String>>,
    /// Source/destination check flag.
    pub source_dest_check: Option<bool>,
    /// An attribute openami cannot change (sourceDestCheck, groups, kernel…): refused.
    pub unsupported: Option<String>,
}

/// The last bytes of a console, as GetConsoleOutput returns them (EC2 keeps 64 KiB).
pub const CONSOLE_BYTES: usize = 64 * 1024;

impl Cloud {
    /// DescribeInstanceAttribute.
    pub fn describe_instance_attribute(
        &self,
        caller: &Caller,
        id: &str,
        attribute: InstanceAttribute,
    ) -> Ec2Result<InstanceAttributeValue> {
        use InstanceAttribute as A;
        use InstanceAttributeValue as V;
        let row = self.owned_instance(caller, id)?;
        let d = doc_of(&row)?;
        Ok(match attribute {
            A::InstanceType => V::Text(Some(d.instance_type)),
            A::Kernel => V::Text(d.kernel_id),
            A::Ramdisk => V::Text(d.ramdisk_id),
            A::UserData => V::Text(d.user_data),
            A::DisableApiTermination => V::Bool(d.disable_api_termination),
            A::DisableApiStop => V::Bool(d.disable_api_stop),
            A::InstanceInitiatedShutdownBehavior => V::Text(Some(d.shutdown_behavior)),
            A::RootDeviceName => V::Text(Some(d.root_device_name)),
            A::BlockDeviceMapping => V::Devices(d.block_devices),
            A::ProductCodes => V::ProductCodes(d.product_codes),
            A::SourceDestCheck => V::Bool(d.network.as_ref().is_none_or(|n| n.source_dest_check)),
            A::GroupSet => V::Groups(d.network.map(|n| n.groups).unwrap_or_default()),
            A::EbsOptimized => V::Bool(d.ebs_optimized),
            A::SriovNetSupport => V::Text(None),
            A::EnaSupport => V::Bool(d.ena_support),
            A::EnclaveOptions => V::Bool(false),
        })
    }

    /// ModifyInstanceAttribute.
    pub fn modify_instance_attribute(
        &self,
        caller: &Caller,
        req: ModifyInstanceAttribute,
    ) -> Ec2Result<()> {
        if let Some(what) = &req.unsupported {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                format!("Modifying the {what} attribute is not supported by openami"),
            ));
        }
        let _t = super::lifecycle::lock_transitions();
        let row = self.owned_instance(caller, &req.instance_id)?;
        let mut d = doc_of(&row)?;
        if row.state == "terminated" || row.state == "shutting-down" {
            return Err(Ec2Error::client(
                "IncorrectInstanceState",
                format!("The instance '{}' is {}.", row.id, row.state),
            ));
        }
        let must_be_stopped = |what: &str| -> Ec2Result<()> {
            if row.state == "stopped" {
                Ok(())
            } else {
                Err(Ec2Error::client(
                    "IncorrectInstanceState",
                    format!(
                        "The instance '{}' is not in the 'stopped' state; {what} can only be changed while it is stopped.",
                        row.id
                    ),
                ))
            }
        };
        let mut changed = false;
        if let Some(t) = &req.instance_type {
            must_be_stopped("the instance type")?;
            let itype = instance_type(t)?;
            if itype.architecture != d.architecture {
                return Err(Ec2Error::invalid_value(format!(
                    "The instance type '{t}' does not support the architecture '{}'",
                    d.architecture
                )));
            }
            d.instance_type = itype.name.to_string();
            d.vcpus = itype.vcpus;
            d.memory_mib = itype.memory_mib;
            changed = true;
        }
        if let Some(u) = &req.user_data {
            must_be_stopped("user data")?;
            super::launch::decode_user_data(u)?;
            d.user_data = (!u.is_empty()).then(|| u.clone());
            changed = true;
        }
        if let Some(v) = req.disable_api_termination {
            d.disable_api_termination = v;
            changed = true;
        }
        if let Some(v) = req.disable_api_stop {
            d.disable_api_stop = v;
            changed = true;
        }
        if let Some(b) = &req.shutdown_behavior {
            if b != "stop" && b != "terminate" {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({b}) for parameter instanceInitiatedShutdownBehavior is invalid. Expected 'stop' or 'terminate'."
                )));
            }
            if b == "stop" && d.root_device_type != "ebs" {
                return Err(Ec2Error::client(
                    "UnsupportedInstanceAttribute",
                    "Instance-store backed instances can only terminate on shutdown",
                ));
            }
            d.shutdown_behavior = b.clone();
            changed = true;
        }
        if let Some(v) = req.ebs_optimized {
            d.ebs_optimized = v;
            changed = true;
        }
        for (device, delete) in &req.delete_on_termination {
            let Some(dev) = d
                .block_devices
                .iter_mut()
                .find(|b| &b.device_name == device)
            else {
                return Err(Ec2Error::client(
                    "InvalidInstanceAttributeValue",
                    format!("No device named {device} is mapped to the instance"),
                ));
            };
            dev.delete_on_termination = *delete;
            self.set_volume_delete_on_termination(&dev.volume_id, *delete)?;
            changed = true;
        }
        let mut groups_changed = Vec::new();
        if let Some(ids) = &req.groups {
            let Some(net) = d.network.as_mut() else {
                return Err(Ec2Error::client(
                    "UnsupportedOperation",
                    "The instance has no network interface (it was launched before openami had a VPC layer)",
                ));
            };
            if ids.is_empty() {
                return Err(Ec2Error::missing("GroupId"));
            }
            let groups = self.groups_in_vpc(caller, &net.vpc_id, ids)?;
            groups_changed.extend(net.groups.iter().map(|g| g.id.clone()));
            groups_changed.extend(groups.iter().map(|g| g.id.clone()));
            net.groups = groups;
            changed = true;
        }
        if let Some(v) = req.source_dest_check {
            if let Some(net) = d.network.as_mut() {
                net.source_dest_check = v;
            }
            changed = true;
        }
        if !changed {
            return Err(Ec2Error::missing("Attribute"));
        }
        self.catalog
            .update_resource(&row.id, &row.state, &encode(&d)?)?;
        if !groups_changed.is_empty() {
            self.refresh_forwards_of_groups(&groups_changed);
        }
        Ok(())
    }

    /// ModifyInstanceMetadataOptions: the new options (applied at once: the metadata
    /// service reads them on every request).
    pub fn modify_instance_metadata_options(
        &self,
        caller: &Caller,
        id: &str,
        req: &super::MetadataOptionsRequest,
    ) -> Ec2Result<crate::network::MetadataOptions> {
        let _t = super::lifecycle::lock_transitions();
        let row = self.owned_instance(caller, id)?;
        if row.state == "terminated" || row.state == "shutting-down" {
            return Err(Ec2Error::client(
                "IncorrectInstanceState",
                format!("The instance '{}' is {}.", row.id, row.state),
            ));
        }
        let mut d = doc_of(&row)?;
        d.metadata_options = req.apply(&d.metadata_options)?;
        self.catalog
            .update_resource(&row.id, &row.state, &encode(&d)?)?;
        Ok(d.metadata_options)
    }

    /// GetConsoleScreenshot: a PNG of a running instance's screen.
    pub fn console_screenshot(&self, caller: &Caller, id: &str) -> Ec2Result<Vec<u8>> {
        let row = self.owned_instance(caller, id)?;
        let machine = crate::lock(&self.machines).get(&row.id).cloned();
        match machine {
            Some(m) if row.state == "running" => m.screenshot(),
            _ => Err(Ec2Error::client(
                "IncorrectInstanceState",
                format!(
                    "The instance '{}' is not in the 'running' state; a screenshot needs a running instance.",
                    row.id
                ),
            )),
        }
    }

    /// When the instance's guest last used its metadata service (its reachability).
    pub(crate) fn last_metadata_request_ms(&self, id: &str) -> Option<i64> {
        crate::lock(&self.machines)
            .get(id)
            .and_then(|m| m.last_metadata_request_ms())
    }

    fn set_volume_delete_on_termination(&self, volume_id: &str, delete: bool) -> Ec2Result<()> {
        let Some(row) = self.catalog.resource(volume_id)? else {
            return Ok(());
        };
        let mut doc = self.view_volume(&row, Vec::new())?.doc;
        if let Some(a) = doc.attachment.as_mut() {
            a.delete_on_termination = delete;
        }
        self.catalog
            .update_resource(volume_id, &row.state, &crate::volumes::encode(&doc)?)?;
        Ok(())
    }

    /// GetConsoleOutput: the last [`CONSOLE_BYTES`] of the instance's serial console.
    pub fn console_output(&self, caller: &Caller, id: &str) -> Ec2Result<Vec<u8>> {
        let row = self.owned_instance(caller, id)?;
        super::machine::console_tail(self, &row, CONSOLE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_round_trip() {
        for (name, attr) in NAMES {
            assert_eq!(InstanceAttribute::parse(name).unwrap(), *attr);
            assert_eq!(attr.as_str(), *name);
        }
        assert!(InstanceAttribute::parse("nope").is_err());
    }
}
