//! Instance actions: parsing their query parameters into engine requests and executing
//! them; the response XML is drawn in `render`.

use std::sync::Arc;

use base64::Engine as _;
use engine::instances::{
    CreateImage, CreateSnapshots, InstanceAttribute, InstanceAttributeValue, InstanceView,
    MetadataOptionsRequest, ModifyInstanceAttribute, NetworkInterfaceRequest, RunInstances,
};
use engine::query::{Filter, Page, iso8601};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::images::parse_mappings;
use crate::params::Params;
use crate::xml::Xml;

mod render;
use render::{
    attachment_xml, changes_xml, device_xml, instance_type_xml, metadata_options_xml,
    reservation_xml, state_xml, status_summary,
};

/// One instance request, typed.
#[derive(Debug, Clone)]
pub enum InstanceAction {
    /// RunInstances.
    Run(Box<RunInstances>),
    /// DescribeInstances.
    Describe {
        /// InstanceId.N
        ids: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// DescribeInstanceStatus.
    Status {
        /// InstanceId.N
        ids: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
        /// IncludeAllInstances
        include_all: bool,
    },
    /// StartInstances.
    Start(Vec<String>),
    /// StopInstances.
    Stop {
        /// InstanceId.N
        ids: Vec<String>,
        /// Force
        force: bool,
    },
    /// RebootInstances.
    Reboot(Vec<String>),
    /// TerminateInstances.
    Terminate(Vec<String>),
    /// GetConsoleOutput.
    ConsoleOutput(String),
    /// DescribeInstanceAttribute.
    DescribeAttribute {
        /// InstanceId
        id: String,
        /// Attribute
        attribute: InstanceAttribute,
    },
    /// ModifyInstanceAttribute.
    ModifyAttribute(ModifyInstanceAttribute),
    /// AttachVolume.
    Attach {
        /// VolumeId
        volume_id: String,
        /// InstanceId
        instance_id: String,
        /// Device
        device: String,
    },
    /// DetachVolume.
    Detach {
        /// VolumeId
        volume_id: String,
        /// InstanceId
        instance_id: Option<String>,
        /// Device
        device: Option<String>,
        /// Force
        force: bool,
    },
    /// CreateImage.
    CreateImage(CreateImage),
    /// CreateSnapshots.
    CreateSnapshots(CreateSnapshots),
    /// ModifyInstanceMetadataOptions.
    ModifyMetadataOptions {
        /// InstanceId
        id: String,
        /// HttpTokens, HttpEndpoint, …
        options: MetadataOptionsRequest,
    },
    /// GetConsoleScreenshot.
    Screenshot(String),
    /// DescribeInstanceTypes.
    Types {
        /// InstanceType.N
        names: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
}

/// `NetworkInterface.N.*` of RunInstances.
fn network_interfaces(p: &Params) -> Ec2Result<Vec<NetworkInterfaceRequest>> {
    let mut out = Vec::new();
    for i in 1..=8 {
        let key = |k: &str| format!("NetworkInterface.{i}.{k}");
        let any = [
            "DeviceIndex",
            "SubnetId",
            "NetworkInterfaceId",
            "AssociatePublicIpAddress",
            "PrivateIpAddress",
            "DeleteOnTermination",
        ]
        .iter()
        .any(|k| p.get(&key(k)).is_some())
            || !p.list(&key("SecurityGroupId"))?.is_empty();
        if !any {
            continue;
        }
        out.push(NetworkInterfaceRequest {
            device_index: p.int(&key("DeviceIndex"))?,
            network_interface_id: p.string(&key("NetworkInterfaceId")),
            subnet_id: p.string(&key("SubnetId")),
            group_ids: p.list(&key("SecurityGroupId"))?,
            associate_public_ip: p.bool(&key("AssociatePublicIpAddress"))?,
            private_ip: p.string(&key("PrivateIpAddress")),
            delete_on_termination: p.bool(&key("DeleteOnTermination"))?,
        });
    }
    Ok(out)
}

/// `MetadataOptions.*` (RunInstances) or the bare names (ModifyInstanceMetadataOptions).
fn metadata_options(p: &Params, prefix: &str) -> Ec2Result<MetadataOptionsRequest> {
    let s = |k: &str| p.string(&format!("{prefix}{k}"));
    Ok(MetadataOptionsRequest {
        http_tokens: s("HttpTokens"),
        http_put_response_hop_limit: p.int(&format!("{prefix}HttpPutResponseHopLimit"))?,
        http_endpoint: s("HttpEndpoint"),
        http_protocol_ipv6: s("HttpProtocolIpv6"),
        instance_metadata_tags: s("InstanceMetadataTags"),
    })
}

fn required_int(p: &Params, name: &str) -> Ec2Result<i64> {
    p.int(name)?.ok_or_else(|| Ec2Error::missing(name))
}

fn modify_attribute(p: &Params) -> Ec2Result<ModifyInstanceAttribute> {
    let mut req = ModifyInstanceAttribute {
        instance_id: p.required("InstanceId")?,
        ..Default::default()
    };
    let value = |name: &str| p.string(&format!("{name}.Value"));
    let flag = |name: &str| p.bool(&format!("{name}.Value"));
    req.instance_type = value("InstanceType");
    req.user_data = value("UserData");
    req.disable_api_termination = flag("DisableApiTermination")?;
    req.disable_api_stop = flag("DisableApiStop")?;
    req.shutdown_behavior = value("InstanceInitiatedShutdownBehavior");
    req.ebs_optimized = flag("EbsOptimized")?;
    for i in 1..=27 {
        let key = |k: &str| format!("BlockDeviceMapping.{i}.{k}");
        let Some(device) = p.string(&key("DeviceName")) else {
            continue;
        };
        let delete = p
            .bool(&key("Ebs.DeleteOnTermination"))?
            .ok_or_else(|| Ec2Error::missing("BlockDeviceMapping.Ebs.DeleteOnTermination"))?;
        req.delete_on_termination.push((device, delete));
    }
    req.source_dest_check = flag("SourceDestCheck")?;
    for unsupported in ["Kernel", "Ramdisk", "SriovNetSupport", "EnaSupport"] {
        if p.get(&format!("{unsupported}.Value")).is_some() {
            req.unsupported = Some(unsupported.to_string());
        }
    }
    let groups = p.list("GroupId")?;
    if !groups.is_empty() {
        req.groups = Some(groups);
    }
    // The `Attribute` + `Value` form.
    if let Some(attr) = p.string("Attribute") {
        let v = p
            .string("Value")
            .ok_or_else(|| Ec2Error::missing("Value"))?;
        let as_bool = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter value is invalid. Expected 'true' or 'false'."
            ))),
        };
        match InstanceAttribute::parse(&attr)? {
            InstanceAttribute::InstanceType => req.instance_type = Some(v),
            InstanceAttribute::UserData => req.user_data = Some(v),
            InstanceAttribute::DisableApiTermination => {
                req.disable_api_termination = Some(as_bool(&v)?)
            }
            InstanceAttribute::DisableApiStop => req.disable_api_stop = Some(as_bool(&v)?),
            InstanceAttribute::InstanceInitiatedShutdownBehavior => req.shutdown_behavior = Some(v),
            InstanceAttribute::EbsOptimized => req.ebs_optimized = Some(as_bool(&v)?),
            InstanceAttribute::SourceDestCheck => req.source_dest_check = Some(as_bool(&v)?),
            other => req.unsupported = Some(other.as_str().to_string()),
        }
    }
    Ok(req)
}

impl InstanceAction {
    /// Parses an instance action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<InstanceAction>> {
        Ok(Some(match name {
            "RunInstances" => InstanceAction::Run(Box::new(RunInstances {
                image_id: crate::launch_templates::run_image_id(p)?,
                min_count: required_int(p, "MinCount")?,
                max_count: required_int(p, "MaxCount")?,
                instance_type: p.string("InstanceType"),
                block_device_mappings: parse_mappings(p)?,
                user_data: p.string("UserData"),
                client_token: p.string("ClientToken"),
                tag_specifications: p.tag_specifications()?,
                shutdown_behavior: p.string("InstanceInitiatedShutdownBehavior"),
                disable_api_termination: p.bool("DisableApiTermination")?,
                disable_api_stop: p.bool("DisableApiStop")?,
                // An empty zone (the Terraform AWS provider sends one) means no preference.
                availability_zone: p
                    .string("Placement.AvailabilityZone")
                    .filter(|z| !z.is_empty()),
                ebs_optimized: p.bool("EbsOptimized")?,
                cpu_credits: p
                    .get("CreditSpecification.CpuCredits")
                    .map(engine::instances::credits::CpuCredits::parse)
                    .transpose()?,
                key_name: p.string("KeyName"),
                subnet_id: p.string("SubnetId"),
                security_group_ids: p.list("SecurityGroupId")?,
                security_group_names: p.list("SecurityGroup")?,
                private_ip: p.string("PrivateIpAddress"),
                network_interfaces: network_interfaces(p)?,
                metadata_options: metadata_options(p, "MetadataOptions.")?,
                kernel_override: p.get("KernelId").is_some() || p.get("RamdiskId").is_some(),
                launch_template: crate::launch_templates::run_spec(p)?,
            })),
            "DescribeInstances" => InstanceAction::Describe {
                ids: p.list("InstanceId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "DescribeInstanceStatus" => InstanceAction::Status {
                ids: p.list("InstanceId")?,
                filters: p.filters()?,
                page: p.page()?,
                include_all: p.bool("IncludeAllInstances")?.unwrap_or(false),
            },
            "StartInstances" => InstanceAction::Start(p.list("InstanceId")?),
            "StopInstances" => InstanceAction::Stop {
                ids: p.list("InstanceId")?,
                force: p.bool("Force")?.unwrap_or(false),
            },
            "RebootInstances" => InstanceAction::Reboot(p.list("InstanceId")?),
            "TerminateInstances" => InstanceAction::Terminate(p.list("InstanceId")?),
            "GetConsoleOutput" => InstanceAction::ConsoleOutput(p.required("InstanceId")?),
            "DescribeInstanceAttribute" => InstanceAction::DescribeAttribute {
                id: p.required("InstanceId")?,
                attribute: InstanceAttribute::parse(&p.required("Attribute")?)?,
            },
            "ModifyInstanceAttribute" => InstanceAction::ModifyAttribute(modify_attribute(p)?),
            "AttachVolume" => InstanceAction::Attach {
                volume_id: p.required("VolumeId")?,
                instance_id: p.required("InstanceId")?,
                device: p.required("Device")?,
            },
            "DetachVolume" => InstanceAction::Detach {
                volume_id: p.required("VolumeId")?,
                instance_id: p.string("InstanceId"),
                device: p.string("Device"),
                force: p.bool("Force")?.unwrap_or(false),
            },
            "CreateImage" => InstanceAction::CreateImage(CreateImage {
                instance_id: p.required("InstanceId")?,
                name: p.required("Name")?,
                description: p.string("Description"),
                no_reboot: p.bool("NoReboot")?.unwrap_or(false),
                block_device_mappings: parse_mappings(p)?,
                tag_specifications: p.tag_specifications()?,
            }),
            "CreateSnapshots" => InstanceAction::CreateSnapshots(CreateSnapshots {
                instance_id: p.required("InstanceSpecification.InstanceId")?,
                exclude_boot_volume: p
                    .bool("InstanceSpecification.ExcludeBootVolume")?
                    .unwrap_or(false),
                exclude_data_volume_ids: p.list("InstanceSpecification.ExcludeDataVolumeId")?,
                description: p.string("Description"),
                tag_specifications: p.tag_specifications()?,
                copy_tags_from_volume: match p.get("CopyTagsFromSource") {
                    None => false,
                    Some("volume") => true,
                    Some(other) => {
                        return Err(Ec2Error::invalid_value(format!(
                            "Value ({other}) for parameter CopyTagsFromSource is invalid. Expected 'volume'."
                        )));
                    }
                },
            }),
            "ModifyInstanceMetadataOptions" => InstanceAction::ModifyMetadataOptions {
                id: p.required("InstanceId")?,
                options: metadata_options(p, "")?,
            },
            "GetConsoleScreenshot" => InstanceAction::Screenshot(p.required("InstanceId")?),
            "DescribeInstanceTypes" => InstanceAction::Types {
                names: p.list("InstanceType")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            _ => return Ok(None),
        }))
    }
}

/// Executes an instance action; the inner XML of its response.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: InstanceAction,
) -> Ec2Result<()> {
    let region = caller.region.clone();
    match action {
        InstanceAction::Run(req) => {
            let (req, from) = crate::launch_templates::apply(cloud, caller, *req)?;
            let mut views = cloud.run_instances(caller, req)?;
            crate::launch_templates::tag_launched(cloud, &mut views, from)?;
            let reservation = views
                .first()
                .map(|v| v.doc.reservation_id.clone())
                .unwrap_or_default();
            let refs: Vec<&InstanceView> = views.iter().collect();
            reservation_xml(x, &reservation, &caller.account_id, &refs, &region);
        }
        InstanceAction::Describe { ids, filters, page } => {
            let (views, token) = cloud.describe_instances(caller, &ids, &filters, &page)?;
            let mut reservations: Vec<(String, Vec<&InstanceView>)> = Vec::new();
            for v in &views {
                match reservations
                    .iter_mut()
                    .find(|(r, _)| *r == v.doc.reservation_id)
                {
                    Some((_, list)) => list.push(v),
                    None => reservations.push((v.doc.reservation_id.clone(), vec![v])),
                }
            }
            x.elem("reservationSet", |x| {
                for (r, list) in &reservations {
                    x.elem("item", |x| {
                        reservation_xml(x, r, &caller.account_id, list, &region)
                    });
                }
            });
            x.opt("nextToken", token);
        }
        InstanceAction::Status {
            ids,
            filters,
            page,
            include_all,
        } => {
            let (views, token) =
                cloud.describe_instance_status(caller, &ids, &filters, &page, include_all)?;
            x.list("instanceStatusSet", &views, |x, v| {
                x.text("instanceId", &v.id)
                    .text("availabilityZone", &v.doc.availability_zone);
                state_xml(x, "instanceState", &v.state);
                status_summary(x, "systemStatus", v.system_status());
                status_summary(x, "instanceStatus", v.instance_status());
                x.elem("eventsSet", |_| {});
            });
            x.opt("nextToken", token);
        }
        InstanceAction::Start(ids) => changes_xml(x, &cloud.start_instances(caller, &ids)?),
        InstanceAction::Stop { ids, force } => {
            changes_xml(x, &cloud.stop_instances(caller, &ids, force)?)
        }
        InstanceAction::Reboot(ids) => {
            cloud.reboot_instances(caller, &ids)?;
            x.text("return", "true");
        }
        InstanceAction::Terminate(ids) => changes_xml(x, &cloud.terminate_instances(caller, &ids)?),
        InstanceAction::ConsoleOutput(id) => {
            let bytes = cloud.console_output(caller, &id)?;
            x.text("instanceId", &id)
                .text("timestamp", &iso8601(now_ms()))
                .text(
                    "output",
                    &base64::engine::general_purpose::STANDARD.encode(bytes),
                );
        }
        InstanceAction::DescribeAttribute { id, attribute } => {
            let value = cloud.describe_instance_attribute(caller, &id, attribute)?;
            x.text("instanceId", &id);
            let name = attribute.as_str();
            match value {
                InstanceAttributeValue::Text(v) => {
                    x.elem(name, |x| {
                        x.opt("value", v);
                    });
                }
                InstanceAttributeValue::Bool(b) => {
                    x.elem(name, |x| {
                        x.text("value", &b.to_string());
                    });
                }
                InstanceAttributeValue::Devices(devices) => {
                    x.list(name, &devices, device_xml);
                }
                InstanceAttributeValue::ProductCodes(codes) => {
                    x.list(name, &codes, |x, c| {
                        x.text("productCode", &c.id).text("type", &c.kind);
                    });
                }
                InstanceAttributeValue::Groups(groups) => {
                    x.list(name, &groups, |x, g| {
                        x.text("groupId", &g.id);
                    });
                }
            }
        }
        InstanceAction::ModifyAttribute(req) => {
            cloud.modify_instance_attribute(caller, req)?;
            x.text("return", "true");
        }
        InstanceAction::Attach {
            volume_id,
            instance_id,
            device,
        } => attachment_xml(
            x,
            &cloud.attach_volume(caller, &volume_id, &instance_id, &device)?,
        ),
        InstanceAction::Detach {
            volume_id,
            instance_id,
            device,
            force,
        } => attachment_xml(
            x,
            &cloud.detach_volume(
                caller,
                &volume_id,
                instance_id.as_deref(),
                device.as_deref(),
                force,
            )?,
        ),
        InstanceAction::CreateImage(req) => {
            x.text("imageId", &cloud.create_image(caller, req)?);
        }
        InstanceAction::ModifyMetadataOptions { id, options } => {
            let o = cloud.modify_instance_metadata_options(caller, &id, &options)?;
            x.text("instanceId", &id)
                .elem("instanceMetadataOptions", |x| {
                    metadata_options_xml(x, &o, false);
                });
        }
        InstanceAction::Screenshot(id) => {
            let png = cloud.console_screenshot(caller, &id)?;
            x.text("instanceId", &id).text(
                "imageData",
                &base64::engine::general_purpose::STANDARD.encode(png),
            );
        }
        InstanceAction::Types {
            names,
            filters,
            page,
        } => {
            let (types, token) =
                engine::instances::describe_instance_types(&names, &filters, &page)?;
            x.list("instanceTypeSet", &types, instance_type_xml);
            x.opt("nextToken", token);
        }
        InstanceAction::CreateSnapshots(req) => {
            let views = cloud.create_snapshots(caller, req)?;
            x.list("snapshotSet", &views, |x, s| {
                x.text("description", &s.doc.description);
                if !s.tags.is_empty() {
                    x.tags(&s.tags);
                }
                x.text("encrypted", &s.doc.encrypted.to_string())
                    .text("volumeId", &s.doc.volume_id)
                    .text("state", &s.state)
                    .text("volumeSize", &s.doc.volume_size_gib.to_string())
                    .text("startTime", &iso8601(s.doc.start_time_ms))
                    .text("progress", &format!("{}%", s.doc.progress))
                    .text("ownerId", &s.owner_id)
                    .text("snapshotId", &s.id);
            });
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
