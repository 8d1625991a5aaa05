//! Runs an [`Action`] against the engine and renders the response body as botocore's
//! model shapes it (element names, `…Set`/`item` lists).

use std::sync::Arc;

use engine::query::iso8601;
use engine::snapshots::{Grantee, SnapshotView};
use engine::volumes::{VolumeDoc, VolumeView};
use engine::{Caller, Cloud, Ec2Result};

use crate::action::Action;
use crate::images;
use crate::xml::Xml;

fn volume_fields(x: &mut Xml, id: &str, state: &str, d: &VolumeDoc, tags: &[(String, String)]) {
    x.text("volumeId", id)
        .text("size", &d.size_gib.to_string())
        .text("snapshotId", d.snapshot_id.as_deref().unwrap_or(""))
        .text("availabilityZone", &d.availability_zone)
        .text("status", state)
        .text("createTime", &iso8601(d.create_time_ms))
        .elem("attachmentSet", |x| {
            if let Some(a) = &d.attachment {
                x.elem("item", |x| {
                    x.text("volumeId", id)
                        .text("instanceId", &a.instance_id)
                        .text("device", &a.device)
                        .text("status", &a.state)
                        .text("attachTime", &iso8601(a.attach_time_ms))
                        .text("deleteOnTermination", &a.delete_on_termination.to_string());
                });
            }
        })
        .text("volumeType", &d.volume_type)
        .opt("iops", d.iops)
        .opt("throughput", d.throughput)
        .text("encrypted", &d.encrypted.to_string())
        .text("multiAttachEnabled", &d.multi_attach.to_string());
    if !tags.is_empty() {
        x.tags(tags);
    }
}

fn volume(x: &mut Xml, v: &VolumeView) {
    volume_fields(x, &v.id, &v.state, &v.doc, &v.tags);
}

fn snapshot(x: &mut Xml, s: &SnapshotView) {
    let d = &s.doc;
    x.text("snapshotId", &s.id)
        .text("volumeId", &d.volume_id)
        .text("status", &s.state)
        .opt("statusMessage", d.state_message.as_ref())
        .text("startTime", &iso8601(d.start_time_ms))
        .text("progress", &format!("{}%", d.progress))
        .text("ownerId", &s.owner_id)
        .text("volumeSize", &d.volume_size_gib.to_string())
        .text("description", &d.description)
        .text("encrypted", &d.encrypted.to_string())
        .text("storageTier", "standard")
        .opt("completionTime", d.completion_time_ms.map(iso8601));
    if !s.tags.is_empty() {
        x.tags(&s.tags);
    }
}

fn next_token(x: &mut Xml, token: Option<String>) {
    x.opt("nextToken", token);
}

/// Executes `action` for `caller`; returns the inner XML of the `<ActionResponse>`.
pub fn execute(
    cloud: &Arc<Cloud>,
    caller: &Caller,
    endpoint: &str,
    action: Action,
) -> Ec2Result<String> {
    let mut x = Xml::new();
    match action {
        Action::CreateVolume(req) => volume(&mut x, &cloud.create_volume(caller, req)?),
        Action::DescribeVolumes { ids, filters, page } => {
            let (items, token) = cloud.describe_volumes(caller, &ids, &filters, &page)?;
            x.list("volumeSet", &items, volume);
            next_token(&mut x, token);
        }
        Action::DeleteVolume { id } => {
            cloud.delete_volume(caller, &id)?;
            x.text("return", "true");
        }
        Action::ModifyVolume(req) => {
            let m = cloud.modify_volume(caller, req)?;
            x.elem("volumeModification", |x| {
                crate::volume_options::modification(x, &m)
            });
        }
        Action::CreateSnapshot {
            volume_id,
            description,
            tags,
        } => {
            snapshot(
                &mut x,
                &cloud.create_snapshot(caller, &volume_id, description, &tags)?,
            );
        }
        Action::DescribeSnapshots {
            ids,
            owners,
            restorable_by,
            filters,
            page,
        } => {
            let (items, token) =
                cloud.describe_snapshots(caller, &ids, &owners, &restorable_by, &filters, &page)?;
            x.list("snapshotSet", &items, snapshot);
            next_token(&mut x, token);
        }
        Action::DeleteSnapshot { id } => {
            cloud.delete_snapshot(caller, &id)?;
            x.text("return", "true");
        }
        Action::CopySnapshot {
            source_region,
            source_id,
            description,
            tags,
        } => {
            let (id, tags) =
                cloud.copy_snapshot(caller, &source_region, &source_id, description, &tags)?;
            x.text("snapshotId", &id);
            if !tags.is_empty() {
                x.tags(&tags);
            }
        }
        Action::DescribeSnapshotAttribute { id } => {
            let grants = cloud.snapshot_permissions(caller, &id)?;
            x.text("snapshotId", &id);
            x.list("createVolumePermission", &grants, |x, g| match g {
                Grantee::User(u) => {
                    x.text("userId", u);
                }
                Grantee::All => {
                    x.text("group", "all");
                }
            });
        }
        Action::ModifySnapshotAttribute { id, add, remove } => {
            cloud.modify_snapshot_permissions(caller, &id, &add, &remove)?;
            x.text("return", "true");
        }
        Action::ResetSnapshotAttribute { id } => {
            cloud.reset_snapshot_permissions(caller, &id)?;
            x.text("return", "true");
        }
        Action::CreateTags { resources, tags } => {
            cloud.create_tags(caller, &resources, &tags)?;
            x.text("return", "true");
        }
        Action::DeleteTags { resources, tags } => {
            cloud.delete_tags(caller, &resources, &tags)?;
            x.text("return", "true");
        }
        Action::DescribeTags { filters, page } => {
            let (items, token) = cloud.describe_tags(caller, &filters, &page)?;
            x.list("tagSet", &items, |x, t| {
                x.text("resourceId", &t.resource_id)
                    .text("resourceType", &t.resource_type)
                    .text("key", &t.key)
                    .text("value", &t.value);
            });
            next_token(&mut x, token);
        }
        Action::DescribeRegions { names, filters } => {
            let items = cloud.describe_regions(endpoint, &names, &filters)?;
            x.list("regionInfo", &items, |x, r| {
                x.text("regionName", &r.name)
                    .text("regionEndpoint", &r.endpoint)
                    .text("optInStatus", "opt-in-not-required");
            });
        }
        Action::DescribeAvailabilityZones {
            names,
            ids,
            filters,
        } => {
            let items = cloud.describe_zones(caller, &names, &ids, &filters)?;
            x.list("availabilityZoneInfo", &items, |x, z| {
                x.text("zoneName", &z.name)
                    .text("zoneId", &z.id)
                    .text("zoneState", z.state.as_str())
                    .text("regionName", &z.region)
                    .text("groupName", &z.region)
                    .text("networkBorderGroup", &z.region)
                    .text("zoneType", "availability-zone")
                    .text("optInStatus", "opt-in-not-required")
                    .list("messageSet", z.message.as_slice(), |x, m| {
                        x.text("message", m);
                    });
            });
        }
        Action::RegisterImage(req) => images::register_image(&mut x, cloud, caller, req)?,
        Action::DescribeImages(req) => images::describe_images(&mut x, cloud, caller, &req)?,
        Action::DeregisterImage(req) => images::deregister_image(&mut x, cloud, caller, req)?,
        Action::DescribeImageAttribute(req) => {
            images::describe_image_attribute(&mut x, cloud, caller, req)?
        }
        Action::ModifyImageAttribute(req) => {
            images::modify_image_attribute(&mut x, cloud, caller, req)?
        }
        Action::ResetImageAttribute(req) => {
            images::reset_image_attribute(&mut x, cloud, caller, req)?
        }
        Action::CopyImage(req) => images::copy_image(&mut x, cloud, caller, req)?,
        Action::EnableImageDeprecation(req) => {
            images::enable_image_deprecation(&mut x, cloud, caller, req)?
        }
        Action::DisableImageDeprecation(req) => {
            images::disable_image_deprecation(&mut x, cloud, caller, req)?
        }
        Action::EnableImageDeregistrationProtection(req) => {
            images::enable_deregistration_protection(&mut x, cloud, caller, req)?
        }
        Action::DisableImageDeregistrationProtection(req) => {
            images::disable_deregistration_protection(&mut x, cloud, caller, req)?
        }
        Action::EnableImage(req) => images::set_image_enabled(&mut x, cloud, caller, req, true)?,
        Action::DisableImage(req) => images::set_image_enabled(&mut x, cloud, caller, req, false)?,
        Action::CancelImageLaunchPermission(req) => {
            images::cancel_launch_permission(&mut x, cloud, caller, req)?
        }
        Action::GetImageBlockPublicAccessState => {
            images::get_block_public_access(&mut x, cloud, caller)?
        }
        Action::EnableImageBlockPublicAccess(req) => {
            images::set_block_public_access(&mut x, cloud, caller, Some(req))?
        }
        Action::Instance(action) => crate::instances::execute(&mut x, cloud, caller, action)?,
        Action::Transfer(action) => crate::transfers::execute(&mut x, cloud, caller, action)?,
        Action::KeyPair(action) => crate::keypairs::execute(&mut x, cloud, caller, action)?,
        Action::LaunchTemplate(action) => {
            crate::launch_templates::execute(&mut x, cloud, caller, action)?
        }
        Action::InstanceOption(action) => {
            crate::instance_options::execute(&mut x, cloud, caller, action)?
        }
        Action::Vpc(action) => crate::vpc::execute(&mut x, cloud, caller, action)?,
        Action::VolumeOption(action) => {
            crate::volume_options::execute(&mut x, cloud, caller, action)?
        }
        Action::Account(action) => crate::account::execute(&mut x, cloud, caller, action)?,
        Action::Address(action) => crate::addresses::execute(&mut x, cloud, caller, action)?,
        Action::AllowedImages(action) => {
            crate::allowed_images::execute(&mut x, cloud, caller, action)?
        }
        Action::DisableImageBlockPublicAccess => {
            images::set_block_public_access(&mut x, cloud, caller, None)?
        }
    }
    Ok(x.finish())
}
