//! Launch template actions: Create/Describe/Modify/DeleteLaunchTemplate,
//! Create/Describe/DeleteLaunchTemplateVersions and GetLaunchTemplateData, parsed and
//! rendered as botocore's model shapes them (`RequestLaunchTemplateData` in,
//! `ResponseLaunchTemplateData` out), and RunInstances' `LaunchTemplate` parameters.

use std::sync::Arc;

use engine::instances::{InstanceView, RunInstances};
use engine::launch_templates::data::{
    TemplateInterface, TemplateMapping, TemplateMetadataOptions, TemplateTags,
};
use engine::launch_templates::launch::{LaunchTemplateSpecification, LaunchedFrom};
use engine::launch_templates::versions::{
    CreateLaunchTemplateVersion, DeletedVersion, DescribeLaunchTemplateVersions, VersionView,
};
use engine::launch_templates::{
    CreateLaunchTemplate, DescribeLaunchTemplates, LaunchTemplateData, LaunchTemplateView,
    TemplateRef,
};
use engine::query::iso8601;
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::images::parse_mappings;
use crate::params::Params;
use crate::xml::Xml;

/// One launch template request, typed.
#[derive(Debug, Clone)]
pub enum LaunchTemplateAction {
    /// CreateLaunchTemplate.
    Create(CreateLaunchTemplate),
    /// CreateLaunchTemplateVersion.
    CreateVersion(CreateLaunchTemplateVersion),
    /// DescribeLaunchTemplates.
    Describe(DescribeLaunchTemplates),
    /// DescribeLaunchTemplateVersions.
    DescribeVersions(DescribeLaunchTemplateVersions),
    /// ModifyLaunchTemplate.
    Modify {
        /// The template.
        template: TemplateRef,
        /// `SetDefaultVersion`.
        default_version: Option<String>,
    },
    /// DeleteLaunchTemplate.
    Delete(TemplateRef),
    /// DeleteLaunchTemplateVersions.
    DeleteVersions {
        /// The template.
        template: TemplateRef,
        /// `LaunchTemplateVersion.N`.
        versions: Vec<String>,
    },
    /// GetLaunchTemplateData.
    GetData(String),
}

/// Top-level `LaunchTemplateData` members openami honours (exact names).
const SUPPORTED: &[&str] = &[
    "ImageId",
    "InstanceType",
    "KeyName",
    "UserData",
    "InstanceInitiatedShutdownBehavior",
    "DisableApiTermination",
    "DisableApiStop",
    "EbsOptimized",
    "CreditSpecification.CpuCredits",
    "Monitoring.Enabled",
    "Placement.AvailabilityZone",
    "MetadataOptions.HttpTokens",
    "MetadataOptions.HttpPutResponseHopLimit",
    "MetadataOptions.HttpEndpoint",
    "MetadataOptions.HttpProtocolIpv6",
    "MetadataOptions.InstanceMetadataTags",
];
/// Members that are lists (anything below them is parsed by their own code).
const SUPPORTED_LISTS: &[&str] = &[
    "SecurityGroupId.",
    "SecurityGroup.",
    "BlockDeviceMapping.",
    "TagSpecification.",
];
/// What a `NetworkInterface.N` may hold.
const INTERFACE_MEMBERS: &[&str] = &[
    "DeviceIndex",
    "SubnetId",
    "AssociatePublicIpAddress",
    "PrivateIpAddress",
    "DeleteOnTermination",
];

fn unsupported(name: &str) -> Ec2Error {
    Ec2Error::client(
        "UnsupportedOperation",
        format!("LaunchTemplateData.{name} is not supported by openami"),
    )
}

/// Refuses members of the data openami cannot honour (never silently dropped).
fn refuse_unsupported(d: &Params) -> Ec2Result<()> {
    for name in d.names() {
        let ok = SUPPORTED.contains(&name)
            || SUPPORTED_LISTS.iter().any(|l| name.starts_with(l))
            || (name == "Placement.Tenancy" && d.get(name) == Some("default"))
            || name.strip_prefix("NetworkInterface.").is_some_and(|rest| {
                rest.split_once('.').is_some_and(|(n, member)| {
                    n.parse::<usize>().is_ok()
                        && (INTERFACE_MEMBERS.contains(&member)
                            || member.starts_with("SecurityGroupId."))
                })
            });
        if !ok {
            return Err(unsupported(name));
        }
    }
    Ok(())
}

fn interfaces(d: &Params) -> Ec2Result<Vec<TemplateInterface>> {
    d.indexes("NetworkInterface")?
        .into_iter()
        .map(|i| {
            let key = |k: &str| format!("NetworkInterface.{i}.{k}");
            Ok(TemplateInterface {
                device_index: d.int(&key("DeviceIndex"))?,
                subnet_id: d.string(&key("SubnetId")),
                groups: d.list(&key("SecurityGroupId"))?,
                associate_public_ip: d.bool(&key("AssociatePublicIpAddress"))?,
                private_ip: d.string(&key("PrivateIpAddress")),
                delete_on_termination: d.bool(&key("DeleteOnTermination"))?,
            })
        })
        .collect()
}

/// `LaunchTemplateData.*` (RequestLaunchTemplateData).
pub fn parse_data(p: &Params) -> Ec2Result<LaunchTemplateData> {
    let d = p.with_prefix("LaunchTemplateData.");
    refuse_unsupported(&d)?;
    let m = |k: &str| d.string(&format!("MetadataOptions.{k}"));
    Ok(LaunchTemplateData {
        image_id: d.string("ImageId"),
        instance_type: d.string("InstanceType"),
        key_name: d.string("KeyName"),
        security_group_ids: d.list("SecurityGroupId")?,
        security_groups: d.list("SecurityGroup")?,
        network_interfaces: interfaces(&d)?,
        availability_zone: d
            .string("Placement.AvailabilityZone")
            .filter(|z| !z.is_empty()),
        block_device_mappings: parse_mappings(&d)?,
        user_data: d.string("UserData"),
        tag_specifications: d
            .tag_specifications()?
            .into_iter()
            .map(|s| TemplateTags {
                resource_type: s.resource_type,
                tags: s.tags,
            })
            .collect(),
        metadata_options: TemplateMetadataOptions {
            http_tokens: m("HttpTokens"),
            http_put_response_hop_limit: d.int("MetadataOptions.HttpPutResponseHopLimit")?,
            http_endpoint: m("HttpEndpoint"),
            http_protocol_ipv6: m("HttpProtocolIpv6"),
            instance_metadata_tags: m("InstanceMetadataTags"),
        },
        shutdown_behavior: d.string("InstanceInitiatedShutdownBehavior"),
        disable_api_termination: d.bool("DisableApiTermination")?,
        disable_api_stop: d.bool("DisableApiStop")?,
        ebs_optimized: d.bool("EbsOptimized")?,
        cpu_credits: d.string("CreditSpecification.CpuCredits"),
        monitoring: d.bool("Monitoring.Enabled")?,
    })
}

fn template_ref(p: &Params) -> TemplateRef {
    TemplateRef {
        id: p.string("LaunchTemplateId").filter(|s| !s.is_empty()),
        name: p.string("LaunchTemplateName").filter(|s| !s.is_empty()),
    }
}

/// RunInstances' `LaunchTemplate.*`, if given.
pub fn run_spec(p: &Params) -> Ec2Result<Option<LaunchTemplateSpecification>> {
    let lt = p.with_prefix("LaunchTemplate.");
    if lt.names().next().is_none() {
        return Ok(None);
    }
    Ok(Some(LaunchTemplateSpecification {
        template: template_ref(&lt),
        version: lt.string("Version"),
    }))
}

/// RunInstances' `ImageId`: required unless a launch template is given.
pub fn run_image_id(p: &Params) -> Ec2Result<String> {
    if p.with_prefix("LaunchTemplate.").names().next().is_some() {
        Ok(p.string("ImageId").unwrap_or_default())
    } else {
        p.required("ImageId")
    }
}

/// Fills a RunInstances request from its launch template, if it names one (a
/// `resolve:ssm:` image id from the template is resolved here).
pub fn apply(
    cloud: &Cloud,
    caller: &Caller,
    mut req: RunInstances,
) -> Ec2Result<(RunInstances, Option<LaunchedFrom>)> {
    let Some(spec) = req.launch_template.take() else {
        return Ok((req, None));
    };
    let (mut req, from) = cloud.apply_launch_template(caller, req, &spec)?;
    crate::services::resolve_run_image(cloud.catalog(), caller, &mut req)?;
    Ok((req, Some(from)))
}

/// Tags instances launched from a template (see [`apply`]).
pub fn tag_launched(
    cloud: &Cloud,
    views: &mut [InstanceView],
    from: Option<LaunchedFrom>,
) -> Ec2Result<()> {
    match from {
        Some(from) => cloud.tag_launched_from_template(views, &from),
        None => Ok(()),
    }
}

impl LaunchTemplateAction {
    /// Parses a launch template action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<LaunchTemplateAction>> {
        Ok(Some(match name {
            "CreateLaunchTemplate" => LaunchTemplateAction::Create(CreateLaunchTemplate {
                name: p.required("LaunchTemplateName")?,
                version_description: p.string("VersionDescription"),
                data: parse_data(p)?,
                tag_specifications: p.tag_specifications()?,
                client_token: p.string("ClientToken"),
            }),
            "CreateLaunchTemplateVersion" => {
                LaunchTemplateAction::CreateVersion(CreateLaunchTemplateVersion {
                    template: template_ref(p),
                    source_version: p.string("SourceVersion").filter(|s| !s.is_empty()),
                    version_description: p.string("VersionDescription"),
                    data: parse_data(p)?,
                    client_token: p.string("ClientToken"),
                })
            }
            "DescribeLaunchTemplates" => LaunchTemplateAction::Describe(DescribeLaunchTemplates {
                ids: p.list("LaunchTemplateId")?,
                names: p.list("LaunchTemplateName")?,
                filters: p.filters()?,
                page: p.page()?,
            }),
            "DescribeLaunchTemplateVersions" => {
                LaunchTemplateAction::DescribeVersions(DescribeLaunchTemplateVersions {
                    template: template_ref(p),
                    versions: p.list("LaunchTemplateVersion")?,
                    min_version: p.string("MinVersion"),
                    max_version: p.string("MaxVersion"),
                    filters: p.filters()?,
                    page: p.page()?,
                })
            }
            "ModifyLaunchTemplate" => LaunchTemplateAction::Modify {
                template: template_ref(p),
                default_version: p.string("SetDefaultVersion").filter(|s| !s.is_empty()),
            },
            "DeleteLaunchTemplate" => LaunchTemplateAction::Delete(template_ref(p)),
            "DeleteLaunchTemplateVersions" => LaunchTemplateAction::DeleteVersions {
                template: template_ref(p),
                versions: p.list("LaunchTemplateVersion")?,
            },
            "GetLaunchTemplateData" => LaunchTemplateAction::GetData(p.required("InstanceId")?),
            _ => return Ok(None),
        }))
    }
}

fn strings(x: &mut Xml, name: &str, items: &[String], item: &str) {
    if !items.is_empty() {
        x.elem(name, |x| {
            for i in items {
                x.text(item, i);
            }
        });
    }
}

fn mapping_xml(x: &mut Xml, m: &TemplateMapping) {
    x.opt("deviceName", m.device_name.as_ref())
        .opt("virtualName", m.virtual_name.as_ref());
    if let Some(e) = &m.ebs {
        x.elem("ebs", |x| {
            x.opt("encrypted", e.encrypted)
                .opt("deleteOnTermination", e.delete_on_termination)
                .opt("iops", e.iops)
                .opt("kmsKeyId", e.kms_key_id.as_ref())
                .opt("snapshotId", e.snapshot_id.as_ref())
                .opt("volumeSize", e.volume_size)
                .opt("volumeType", e.volume_type.as_ref())
                .opt("throughput", e.throughput);
        });
    }
    x.opt("noDevice", m.no_device.as_ref());
}

fn interface_xml(x: &mut Xml, n: &TemplateInterface) {
    x.opt("associatePublicIpAddress", n.associate_public_ip)
        .opt("deleteOnTermination", n.delete_on_termination)
        .opt("deviceIndex", n.device_index);
    strings(x, "groupSet", &n.groups, "groupId");
    x.opt("privateIpAddress", n.private_ip.as_ref())
        .opt("subnetId", n.subnet_id.as_ref());
}

/// `launchTemplateData` (ResponseLaunchTemplateData).
pub fn data_xml(x: &mut Xml, d: &LaunchTemplateData) {
    x.elem("launchTemplateData", |x| {
        x.opt("ebsOptimized", d.ebs_optimized);
        if !d.block_device_mappings.is_empty() {
            x.list(
                "blockDeviceMappingSet",
                &d.block_device_mappings,
                mapping_xml,
            );
        }
        if !d.network_interfaces.is_empty() {
            x.list("networkInterfaceSet", &d.network_interfaces, interface_xml);
        }
        x.opt("imageId", d.image_id.as_ref())
            .opt("instanceType", d.instance_type.as_ref())
            .opt("keyName", d.key_name.as_ref());
        if let Some(m) = d.monitoring {
            x.elem("monitoring", |x| {
                x.text("enabled", &m.to_string());
            });
        }
        if let Some(z) = &d.availability_zone {
            x.elem("placement", |x| {
                x.text("availabilityZone", z);
            });
        }
        x.opt("disableApiTermination", d.disable_api_termination)
            .opt(
                "instanceInitiatedShutdownBehavior",
                d.shutdown_behavior.as_ref(),
            )
            .opt("userData", d.user_data.as_ref());
        if !d.tag_specifications.is_empty() {
            x.list("tagSpecificationSet", &d.tag_specifications, |x, s| {
                x.text("resourceType", &s.resource_type).tags(&s.tags);
            });
        }
        strings(x, "securityGroupIdSet", &d.security_group_ids, "item");
        strings(x, "securityGroupSet", &d.security_groups, "item");
        if let Some(c) = &d.cpu_credits {
            x.elem("creditSpecification", |x| {
                x.text("cpuCredits", c);
            });
        }
        let m = &d.metadata_options;
        if !m.is_empty() {
            x.elem("metadataOptions", |x| {
                x.text("state", "applied")
                    .opt("httpTokens", m.http_tokens.as_ref())
                    .opt("httpPutResponseHopLimit", m.http_put_response_hop_limit)
                    .opt("httpEndpoint", m.http_endpoint.as_ref())
                    .opt("httpProtocolIpv6", m.http_protocol_ipv6.as_ref())
                    .opt("instanceMetadataTags", m.instance_metadata_tags.as_ref());
            });
        }
        x.opt("disableApiStop", d.disable_api_stop);
    });
}

fn template_xml(x: &mut Xml, t: &LaunchTemplateView) {
    x.text("launchTemplateId", &t.id)
        .text("launchTemplateName", &t.doc.name)
        .text("createTime", &iso8601(t.doc.create_time_ms))
        .text("createdBy", &t.doc.created_by)
        .text("defaultVersionNumber", &t.doc.default_version.to_string())
        .text("latestVersionNumber", &t.doc.latest_version().to_string());
    if !t.tags.is_empty() {
        x.tags(&t.tags);
    }
}

fn version_xml(x: &mut Xml, v: &VersionView) {
    x.text("launchTemplateId", &v.template_id)
        .text("launchTemplateName", &v.template_name)
        .text("versionNumber", &v.version.number.to_string())
        .opt("versionDescription", v.version.description.as_ref())
        .text("createTime", &iso8601(v.version.create_time_ms))
        .text("createdBy", &v.created_by)
        .text("defaultVersion", &v.default_version.to_string());
    data_xml(x, &v.version.data);
}

fn deleted_xml(x: &mut Xml, d: &DeletedVersion) {
    x.text("launchTemplateId", &d.template_id)
        .text("launchTemplateName", &d.template_name)
        .text("versionNumber", &d.number.to_string());
    if let Some((code, message)) = &d.error {
        x.elem("responseError", |x| {
            x.text("code", code).text("message", message);
        });
    }
}

/// Executes a launch template action, writing the response body into `x`.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: LaunchTemplateAction,
) -> Ec2Result<()> {
    match action {
        LaunchTemplateAction::Create(req) => {
            let t = cloud.create_launch_template(caller, req)?;
            x.elem("launchTemplate", |x| template_xml(x, &t));
        }
        LaunchTemplateAction::CreateVersion(req) => {
            let v = cloud.create_launch_template_version(caller, req)?;
            x.elem("launchTemplateVersion", |x| version_xml(x, &v));
        }
        LaunchTemplateAction::Describe(req) => {
            let (templates, token) = cloud.describe_launch_templates(caller, &req)?;
            x.list("launchTemplates", &templates, template_xml)
                .opt("nextToken", token);
        }
        LaunchTemplateAction::DescribeVersions(req) => {
            let (versions, token) = cloud.describe_launch_template_versions(caller, &req)?;
            x.list("launchTemplateVersionSet", &versions, version_xml)
                .opt("nextToken", token);
        }
        LaunchTemplateAction::Modify {
            template,
            default_version,
        } => {
            let t = cloud.modify_launch_template(caller, &template, default_version.as_deref())?;
            x.elem("launchTemplate", |x| template_xml(x, &t));
        }
        LaunchTemplateAction::Delete(template) => {
            let t = cloud.delete_launch_template(caller, &template)?;
            x.elem("launchTemplate", |x| template_xml(x, &t));
        }
        LaunchTemplateAction::DeleteVersions { template, versions } => {
            let results = cloud.delete_launch_template_versions(caller, &template, &versions)?;
            let (ok, failed): (Vec<_>, Vec<_>) =
                results.into_iter().partition(|d| d.error.is_none());
            x.list(
                "successfullyDeletedLaunchTemplateVersionSet",
                &ok,
                deleted_xml,
            )
            .list(
                "unsuccessfullyDeletedLaunchTemplateVersionSet",
                &failed,
                deleted_xml,
            );
        }
        LaunchTemplateAction::GetData(instance_id) => {
            let data = cloud.get_launch_template_data(caller, &instance_id)?;
            data_xml(x, &data);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_request_data() {
        let p = Params::parse(&[b"LaunchTemplateName=web\
&LaunchTemplateData.ImageId=resolve:ssm:/openami/x\
&LaunchTemplateData.InstanceType=t3.micro\
&LaunchTemplateData.SecurityGroupId.1=sg-0123456789abcdef0\
&LaunchTemplateData.NetworkInterface.1.DeviceIndex=0\
&LaunchTemplateData.NetworkInterface.1.SecurityGroupId.1=sg-1\
&LaunchTemplateData.BlockDeviceMapping.1.DeviceName=/dev/sdf\
&LaunchTemplateData.BlockDeviceMapping.1.Ebs.VolumeSize=2\
&LaunchTemplateData.TagSpecification.1.ResourceType=instance\
&LaunchTemplateData.TagSpecification.1.Tag.1.Key=a\
&LaunchTemplateData.TagSpecification.1.Tag.1.Value=b\
&LaunchTemplateData.MetadataOptions.HttpTokens=required"])
        .unwrap();
        let LaunchTemplateAction::Create(c) =
            LaunchTemplateAction::parse("CreateLaunchTemplate", &p)
                .unwrap()
                .unwrap()
        else {
            panic!("not a create");
        };
        assert_eq!(c.name, "web");
        let d = c.data;
        assert_eq!(d.image_id.as_deref(), Some("resolve:ssm:/openami/x"));
        assert_eq!(d.security_group_ids, ["sg-0123456789abcdef0"]);
        assert_eq!(d.network_interfaces[0].groups, ["sg-1"]);
        assert_eq!(
            d.block_device_mappings[0].ebs.as_ref().unwrap().volume_size,
            Some(2)
        );
        assert_eq!(d.tag_specifications[0].tags, [("a".into(), "b".into())]);
        assert_eq!(d.metadata_options.http_tokens.as_deref(), Some("required"));
    }

    #[test]
    fn unsupported_members_are_named() {
        for bad in [
            &b"LaunchTemplateData.IamInstanceProfile.Arn=x"[..],
            b"LaunchTemplateData.NetworkInterface.1.Ipv6AddressCount=1",
            b"LaunchTemplateData.Placement.Tenancy=dedicated",
            b"LaunchTemplateData.InstanceMarketOptions.MarketType=spot",
        ] {
            let p = Params::parse(&[bad]).unwrap();
            let e = parse_data(&p).unwrap_err();
            assert_eq!(e.code, "UnsupportedOperation");
            assert!(e.message.contains("LaunchTemplateData."), "{}", e.message);
        }
    }

    #[test]
    fn run_spec_and_image_id() {
        let p = Params::parse(&[b"LaunchTemplate.LaunchTemplateName=web&LaunchTemplate.Version=2"])
            .unwrap();
        let s = run_spec(&p).unwrap().unwrap();
        assert_eq!(s.template.name.as_deref(), Some("web"));
        assert_eq!(s.version.as_deref(), Some("2"));
        assert_eq!(run_image_id(&p).unwrap(), "");
        let p = Params::parse(&[b"MinCount=1"]).unwrap();
        assert!(run_spec(&p).unwrap().is_none());
        assert_eq!(run_image_id(&p).unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn response_data_uses_response_names() {
        let mut x = Xml::new();
        data_xml(
            &mut x,
            &LaunchTemplateData {
                security_group_ids: vec!["sg-1".into()],
                network_interfaces: vec![TemplateInterface {
                    device_index: Some(0),
                    groups: vec!["sg-2".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let s = x.finish();
        assert!(s.contains("<networkInterfaceSet><item><deviceIndex>0</deviceIndex><groupSet><groupId>sg-2</groupId></groupSet></item></networkInterfaceSet>"), "{s}");
        assert!(
            s.contains("<securityGroupIdSet><item>sg-1</item></securityGroupIdSet>"),
            "{s}"
        );
    }
}
