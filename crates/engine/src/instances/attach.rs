//! AttachVolume and DetachVolume. A volume attached to a running instance is hot-plugged
//! into its machine (a new NBD export plus a virtio-blk device); detaching unplugs it.
//! The root volume of an instance that is not stopped cannot be detached.

use catalog::now_ms;

use super::launch::check_device_name;
use super::{InstanceDevice, doc_of, encode};
use crate::volumes::{self, AttachmentDoc};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, lock};

/// A volume attachment as AttachVolume and DetachVolume return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeAttachment {
    /// The volume.
    pub volume_id: String,
    /// The instance.
    pub instance_id: String,
    /// Device name.
    pub device: String,
    /// attaching | attached | detaching | detached.
    pub state: String,
    /// When it was attached.
    pub attach_time_ms: i64,
    /// Delete with the instance.
    pub delete_on_termination: bool,
}

impl Cloud {
    /// AttachVolume.
    pub fn attach_volume(
        &self,
        caller: &Caller,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Ec2Result<VolumeAttachment> {
        check_device_name(device)?;
        let _t = super::lifecycle::lock_transitions();
        let vol_row = self.owned_volume(caller, volume_id)?;
        let inst_row = self.owned_instance(caller, instance_id)?;
        let mut vol = self.view_volume(&vol_row, Vec::new())?.doc;
        let mut inst = doc_of(&inst_row)?;
        if vol_row.state != "available" {
            return Err(Ec2Error::client(
                "VolumeInUse",
                format!("{volume_id} is already attached to an instance"),
            ));
        }
        if !matches!(inst_row.state.as_str(), "running" | "stopped") {
            return Err(Ec2Error::client(
                "IncorrectState",
                format!(
                    "Instance '{instance_id}' is not 'running' or 'stopped' (it is {}).",
                    inst_row.state
                ),
            ));
        }
        if vol.availability_zone != inst.availability_zone {
            return Err(Ec2Error::client(
                "InvalidVolume.ZoneMismatch",
                format!(
                    "The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'"
                ),
            ));
        }
        if inst.device_in_use(device) {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid value '{device}' for unixDevice. Attachment point {device} is already in use"
            )));
        }
        if inst.block_devices.len() + inst.ephemeral_disks.len() >= 26 {
            return Err(Ec2Error::client(
                "AttachmentLimitExceeded",
                format!("Instance '{instance_id}' has no free attachment slot"),
            ));
        }
        if inst_row.state == "running" {
            let machine = lock(&self.machines).get(instance_id).cloned();
            if let Some(machine) = machine {
                let handle = self.volume_handle(&vol_row.region, volume_id)?;
                machine.hot_plug(volume_id, handle)?;
            }
        }
        let now = now_ms();
        vol.attachment = Some(AttachmentDoc {
            instance_id: instance_id.to_string(),
            device: device.to_string(),
            attach_time_ms: now,
            delete_on_termination: false,
            state: "attached".into(),
        });
        self.catalog
            .update_resource(volume_id, "in-use", &volumes::encode(&vol)?)?;
        inst.block_devices.push(InstanceDevice {
            device_name: device.to_string(),
            volume_id: volume_id.to_string(),
            attach_time_ms: now,
            delete_on_termination: false,
            status: "attached".into(),
        });
        self.catalog
            .update_resource(instance_id, &inst_row.state, &encode(&inst)?)?;
        Ok(VolumeAttachment {
            volume_id: volume_id.to_string(),
            instance_id: instance_id.to_string(),
            device: device.to_string(),
            state: "attaching".into(),
            attach_time_ms: now,
            delete_on_termination: false,
        })
    }

    /// DetachVolume.
    pub fn detach_volume(
        &self,
        caller: &Caller,
        volume_id: &str,
        instance_id: Option<&str>,
        device: Option<&str>,
        force: bool,
    ) -> Ec2Result<VolumeAttachment> {
        let _t = super::lifecycle::lock_transitions();
        let vol_row = self.owned_volume(caller, volume_id)?;
        let mut vol = self.view_volume(&vol_row, Vec::new())?.doc;
        let Some(attachment) = vol.attachment.clone() else {
            return Err(Ec2Error::client(
                "IncorrectState",
                format!("Volume '{volume_id}' is in the '{}' state.", vol_row.state),
            ));
        };
        if instance_id.is_some_and(|i| i != attachment.instance_id)
            || device.is_some_and(|d| d != attachment.device)
        {
            return Err(Ec2Error::client(
                "InvalidAttachment.NotFound",
                format!(
                    "The volume '{volume_id}' is not attached as given (instance {}, device {})",
                    instance_id.unwrap_or("-"),
                    device.unwrap_or("-")
                ),
            ));
        }
        let inst_row = self.owned_instance(caller, &attachment.instance_id)?;
        let mut inst = doc_of(&inst_row)?;
        let is_root = attachment.device == inst.root_device_name;
        if is_root && inst_row.state != "stopped" {
            return Err(Ec2Error::client(
                "IncorrectInstanceState",
                format!(
                    "Unable to detach root volume '{volume_id}' from instance '{}' as the instance is not in the 'stopped' state.",
                    attachment.instance_id
                ),
            ));
        }
        // Not holding the machines lock while the guest is asked to let go (up to 10 s).
        let machine = lock(&self.machines).get(&attachment.instance_id).cloned();
        if let Some(machine) = machine {
            machine.unplug(volume_id, force)?;
        }
        vol.attachment = None;
        self.catalog
            .update_resource(volume_id, "available", &volumes::encode(&vol)?)?;
        inst.block_devices.retain(|d| d.volume_id != volume_id);
        self.catalog
            .update_resource(&inst_row.id, &inst_row.state, &encode(&inst)?)?;
        Ok(VolumeAttachment {
            volume_id: volume_id.to_string(),
            instance_id: attachment.instance_id,
            device: attachment.device,
            state: "detaching".into(),
            attach_time_ms: attachment.attach_time_ms,
            delete_on_termination: attachment.delete_on_termination,
        })
    }
}
