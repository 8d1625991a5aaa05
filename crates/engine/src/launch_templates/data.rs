//! Launch template data: the typed, stored form of `RequestLaunchTemplateData` for the
//! fields openami honours, how it fills a RunInstances request (explicit parameters win,
//! field by field; tag specifications are merged), and how GetLaunchTemplateData derives
//! it from an instance.

use serde::{Deserialize, Serialize};

use crate::images::{EbsRequest, MappingRequest};
use crate::instances::credits::CpuCredits;
use crate::instances::{
    InstanceView, MetadataOptionsRequest, NetworkInterfaceRequest, RunInstances,
};
use crate::query::TagSpecification;
use crate::{Ec2Error, Ec2Result};

/// `LaunchTemplateBlockDeviceMapping`: the same fields as RunInstances' mappings.
pub type TemplateMapping = MappingRequest;

/// `LaunchTemplateInstanceNetworkInterfaceSpecification` (the fields openami honours).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInterface {
    /// `DeviceIndex`.
    pub device_index: Option<i64>,
    /// `SubnetId`.
    pub subnet_id: Option<String>,
    /// `Groups` (`SecurityGroupId.N`).
    pub groups: Vec<String>,
    /// `AssociatePublicIpAddress`.
    pub associate_public_ip: Option<bool>,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `DeleteOnTermination`.
    pub delete_on_termination: Option<bool>,
}

/// `LaunchTemplateInstanceMetadataOptions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMetadataOptions {
    /// `HttpTokens`.
    pub http_tokens: Option<String>,
    /// `HttpPutResponseHopLimit`.
    pub http_put_response_hop_limit: Option<i64>,
    /// `HttpEndpoint`.
    pub http_endpoint: Option<String>,
    /// `HttpProtocolIpv6`.
    pub http_protocol_ipv6: Option<String>,
    /// `InstanceMetadataTags`.
    pub instance_metadata_tags: Option<String>,
}

impl TemplateMetadataOptions {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == TemplateMetadataOptions::default()
    }
}

/// `LaunchTemplateTagSpecification`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateTags {
    /// `instance` or `volume`.
    pub resource_type: String,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// The launch parameters a template version holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateData {
    /// `ImageId` (an AMI id or `resolve:ssm:…`, kept as given).
    pub image_id: Option<String>,
    /// `InstanceType`.
    pub instance_type: Option<String>,
    /// `KeyName`.
    pub key_name: Option<String>,
    /// `SecurityGroupId.N`.
    pub security_group_ids: Vec<String>,
    /// `SecurityGroup.N` (names).
    pub security_groups: Vec<String>,
    /// `NetworkInterface.N`.
    pub network_interfaces: Vec<TemplateInterface>,
    /// `Placement.AvailabilityZone`.
    pub availability_zone: Option<String>,
    /// `BlockDeviceMapping.N`.
    pub block_device_mappings: Vec<TemplateMapping>,
    /// `UserData` (base64).
    pub user_data: Option<String>,
    /// `TagSpecification.N` (`instance`, `volume`).
    pub tag_specifications: Vec<TemplateTags>,
    /// `MetadataOptions`.
    pub metadata_options: TemplateMetadataOptions,
    /// `InstanceInitiatedShutdownBehavior`.
    pub shutdown_behavior: Option<String>,
    /// `DisableApiTermination`.
    pub disable_api_termination: Option<bool>,
    /// `DisableApiStop`.
    pub disable_api_stop: Option<bool>,
    /// `EbsOptimized`.
    pub ebs_optimized: Option<bool>,
    /// `CreditSpecification.CpuCredits`.
    pub cpu_credits: Option<String>,
    /// `Monitoring.Enabled` (only false is accepted).
    pub monitoring: Option<bool>,
}

impl From<&NetworkInterfaceRequest> for TemplateInterface {
    fn from(n: &NetworkInterfaceRequest) -> Self {
        TemplateInterface {
            device_index: n.device_index,
            subnet_id: n.subnet_id.clone(),
            groups: n.group_ids.clone(),
            associate_public_ip: n.associate_public_ip,
            private_ip: n.private_ip.clone(),
            delete_on_termination: n.delete_on_termination,
        }
    }
}

impl From<&TemplateInterface> for NetworkInterfaceRequest {
    fn from(n: &TemplateInterface) -> Self {
        NetworkInterfaceRequest {
            device_index: n.device_index,
            network_interface_id: None,
            subnet_id: n.subnet_id.clone(),
            group_ids: n.groups.clone(),
            associate_public_ip: n.associate_public_ip,
            private_ip: n.private_ip.clone(),
            delete_on_termination: n.delete_on_termination,
        }
    }
}

impl From<&MetadataOptionsRequest> for TemplateMetadataOptions {
    fn from(m: &MetadataOptionsRequest) -> Self {
        TemplateMetadataOptions {
            http_tokens: m.http_tokens.clone(),
            http_put_response_hop_limit: m.http_put_response_hop_limit,
            http_endpoint: m.http_endpoint.clone(),
            http_protocol_ipv6: m.http_protocol_ipv6.clone(),
            instance_metadata_tags: m.instance_metadata_tags.clone(),
        }
    }
}

impl LaunchTemplateData {
    /// Checks the values a launch template accepts (the rest is checked at launch, as EC2
    /// does).
    pub fn check(&self) -> Ec2Result<()> {
        if self.monitoring == Some(true) {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                "Monitoring.Enabled=true is not supported by openami",
            ));
        }
        if let Some(c) = &self.cpu_credits {
            CpuCredits::parse(c)?;
        }
        if let Some(b) = &self.shutdown_behavior
            && b != "stop"
            && b != "terminate"
        {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({b}) for parameter InstanceInitiatedShutdownBehavior is invalid. Expected 'stop' or 'terminate'."
            )));
        }
        for spec in &self.tag_specifications {
            if spec.resource_type != "instance" && spec.resource_type != "volume" {
                return Err(Ec2Error::invalid_value(format!(
                    "'{}' is not a valid taggable resource type for launch template data.",
                    spec.resource_type
                )));
            }
            for (k, v) in &spec.tags {
                crate::query::check_tag(k, v)?;
            }
        }
        Ok(())
    }

    /// This data with `over`'s fields replacing those `over` sets (CreateLaunchTemplateVersion
    /// with a SourceVersion).
    pub fn overridden_by(&self, over: &LaunchTemplateData) -> LaunchTemplateData {
        fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        fn pick_vec<T: Clone>(over: &[T], base: &[T]) -> Vec<T> {
            if over.is_empty() { base } else { over }.to_vec()
        }
        LaunchTemplateData {
            image_id: pick(&over.image_id, &self.image_id),
            instance_type: pick(&over.instance_type, &self.instance_type),
            key_name: pick(&over.key_name, &self.key_name),
            security_group_ids: pick_vec(&over.security_group_ids, &self.security_group_ids),
            security_groups: pick_vec(&over.security_groups, &self.security_groups),
            network_interfaces: pick_vec(&over.network_interfaces, &self.network_interfaces),
            availability_zone: pick(&over.availability_zone, &self.availability_zone),
            block_device_mappings: pick_vec(
                &over.block_device_mappings,
                &self.block_device_mappings,
            ),
            user_data: pick(&over.user_data, &self.user_data),
            tag_specifications: pick_vec(&over.tag_specifications, &self.tag_specifications),
            metadata_options: if over.metadata_options.is_empty() {
                self.metadata_options.clone()
            } else {
                over.metadata_options.clone()
            },
            shutdown_behavior: pick(&over.shutdown_behavior, &self.shutdown_behavior),
            disable_api_termination: pick(
                &over.disable_api_termination,
                &self.disable_api_termination,
            ),
            disable_api_stop: pick(&over.disable_api_stop, &self.disable_api_stop),
            ebs_optimized: pick(&over.ebs_optimized, &self.ebs_optimized),
            cpu_credits: pick(&over.cpu_credits, &self.cpu_credits),
            monitoring: pick(&over.monitoring, &self.monitoring),
        }
    }

    /// Fills the fields `req` leaves unset from this data; tag specifications are merged
    /// (the request's tags win for the same key). Network placement: the request's own
    /// interfaces replace the template's; otherwise the request's subnet, security group
    /// ids and private address go on the template's primary interface, or (a template
    /// without interfaces) the template's groups apply when the request names none.
    /// Block device mappings given in the request replace the template's.
    pub fn fill(&self, mut req: RunInstances) -> Ec2Result<RunInstances> {
        if req.image_id.is_empty() {
            req.image_id = self.image_id.clone().unwrap_or_default();
        }
        let fill = |slot: &mut Option<String>, from: &Option<String>| {
            if slot.is_none() {
                slot.clone_from(from);
            }
        };
        fill(&mut req.instance_type, &self.instance_type);
        fill(&mut req.key_name, &self.key_name);
        fill(&mut req.user_data, &self.user_data);
        fill(&mut req.shutdown_behavior, &self.shutdown_behavior);
        fill(&mut req.availability_zone, &self.availability_zone);
        req.disable_api_termination = req.disable_api_termination.or(self.disable_api_termination);
        req.disable_api_stop = req.disable_api_stop.or(self.disable_api_stop);
        req.ebs_optimized = req.ebs_optimized.or(self.ebs_optimized);
        if req.cpu_credits.is_none()
            && let Some(c) = &self.cpu_credits
        {
            req.cpu_credits = Some(CpuCredits::parse(c)?);
        }
        if !req.network_interfaces.is_empty() {
            // The request's own interfaces replace the template's network placement.
        } else if !self.network_interfaces.is_empty() {
            // The template's interfaces, with the request's subnet, groups and address
            // put on the primary one.
            let mut nics: Vec<NetworkInterfaceRequest> =
                self.network_interfaces.iter().map(Into::into).collect();
            if let Some(primary) = nics.iter_mut().find(|n| n.device_index.unwrap_or(0) == 0) {
                if let Some(subnet) = req.subnet_id.take() {
                    primary.subnet_id = Some(subnet);
                }
                if !req.security_group_ids.is_empty() {
                    primary.group_ids = std::mem::take(&mut req.security_group_ids);
                }
                if let Some(ip) = req.private_ip.take() {
                    primary.private_ip = Some(ip);
                }
            }
            req.network_interfaces = nics;
        } else if req.security_group_ids.is_empty() && req.security_group_names.is_empty() {
            req.security_group_ids.clone_from(&self.security_group_ids);
            req.security_group_names.clone_from(&self.security_groups);
        }
        if req.block_device_mappings.is_empty() {
            req.block_device_mappings = self.block_device_mappings.clone();
        }
        let m = &mut req.metadata_options;
        let t = &self.metadata_options;
        fill(&mut m.http_tokens, &t.http_tokens);
        fill(&mut m.http_endpoint, &t.http_endpoint);
        fill(&mut m.http_protocol_ipv6, &t.http_protocol_ipv6);
        fill(&mut m.instance_metadata_tags, &t.instance_metadata_tags);
        m.http_put_response_hop_limit = m
            .http_put_response_hop_limit
            .or(t.http_put_response_hop_limit);
        let mut merged: Vec<TagSpecification> = Vec::new();
        for spec in &self.tag_specifications {
            let mut tags = spec.tags.clone();
            for own in req
                .tag_specifications
                .iter()
                .filter(|s| s.resource_type == spec.resource_type)
            {
                tags.retain(|(k, _)| !own.tags.iter().any(|(ok, _)| ok == k));
            }
            merged.push(TagSpecification {
                resource_type: spec.resource_type.clone(),
                tags,
            });
        }
        merged.append(&mut req.tag_specifications);
        req.tag_specifications = merged;
        Ok(req)
    }

    /// GetLaunchTemplateData: the launch parameters of an existing instance.
    pub fn of_instance(v: &InstanceView, volumes: &[(String, i64, String)]) -> Self {
        let d = &v.doc;
        let tags: Vec<(String, String)> = v
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("aws:"))
            .cloned()
            .collect();
        let mut data = LaunchTemplateData {
            image_id: Some(d.image_id.clone()),
            instance_type: Some(d.instance_type.clone()),
            key_name: d.key_name.clone(),
            availability_zone: Some(d.availability_zone.clone()),
            user_data: d.user_data.clone(),
            shutdown_behavior: Some(d.shutdown_behavior.clone()),
            disable_api_termination: Some(d.disable_api_termination),
            disable_api_stop: Some(d.disable_api_stop),
            ebs_optimized: Some(d.ebs_optimized),
            cpu_credits: d.cpu_credits.clone(),
            monitoring: Some(false),
            metadata_options: TemplateMetadataOptions {
                http_tokens: Some(d.metadata_options.http_tokens.clone()),
                http_put_response_hop_limit: Some(d.metadata_options.http_put_response_hop_limit),
                http_endpoint: Some(d.metadata_options.http_endpoint.clone()),
                http_protocol_ipv6: Some(d.metadata_options.http_protocol_ipv6.clone()),
                instance_metadata_tags: Some(d.metadata_options.instance_metadata_tags.clone()),
            },
            ..Default::default()
        };
        if !tags.is_empty() {
            data.tag_specifications.push(TemplateTags {
                resource_type: "instance".into(),
                tags,
            });
        }
        if let Some(net) = &d.network {
            data.network_interfaces.push(TemplateInterface {
                device_index: Some(0),
                subnet_id: Some(net.subnet_id.clone()),
                groups: net.groups.iter().map(|g| g.id.clone()).collect(),
                associate_public_ip: Some(net.associate_public_ip),
                private_ip: Some(d.private_ip.clone()),
                delete_on_termination: Some(true),
            });
        }
        for dev in &d.block_devices {
            let found = volumes.iter().find(|(id, _, _)| *id == dev.volume_id);
            data.block_device_mappings.push(TemplateMapping {
                device_name: Some(dev.device_name.clone()),
                ebs: Some(EbsRequest {
                    delete_on_termination: Some(dev.delete_on_termination),
                    volume_size: found.map(|(_, s, _)| *s),
                    volume_type: found.map(|(_, _, t)| t.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        data
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn template() -> LaunchTemplateData {
        LaunchTemplateData {
            image_id: Some("ami-0123456789abcdef0".into()),
            instance_type: Some("t3.micro".into()),
            key_name: Some("k".into()),
            security_group_ids: vec!["sg-0123456789abcdef0".into()],
            user_data: Some("aGk=".into()),
            tag_specifications: vec![TemplateTags {
                resource_type: "instance".into(),
                tags: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            }],
            metadata_options: TemplateMetadataOptions {
                http_tokens: Some("required".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn request_overrides_template_field_by_field() {
        let req = RunInstances {
            instance_type: Some("t3.small".into()),
            tag_specifications: vec![TagSpecification {
                resource_type: "instance".into(),
                tags: vec![("b".into(), "mine".into())],
            }],
            ..Default::default()
        };
        let out = template().fill(req).unwrap();
        assert_eq!(out.image_id, "ami-0123456789abcdef0");
        assert_eq!(out.instance_type.as_deref(), Some("t3.small"));
        assert_eq!(out.key_name.as_deref(), Some("k"));
        assert_eq!(out.security_group_ids, ["sg-0123456789abcdef0"]);
        assert_eq!(
            out.metadata_options.http_tokens.as_deref(),
            Some("required")
        );
        let tags: Vec<_> = out
            .tag_specifications
            .iter()
            .flat_map(|s| s.tags.clone())
            .collect();
        assert_eq!(
            tags,
            [
                ("a".into(), "1".into()),
                ("b".to_string(), "mine".to_string())
            ]
        );
    }

    #[test]
    fn request_groups_replace_template_groups() {
        let req = RunInstances {
            security_group_names: vec!["web".into()],
            ..Default::default()
        };
        let out = template().fill(req).unwrap();
        assert!(out.security_group_ids.is_empty());
        assert_eq!(out.security_group_names, ["web"]);
    }

    #[test]
    fn request_subnet_keeps_template_groups_and_merges_into_interfaces() {
        let req = RunInstances {
            subnet_id: Some("subnet-1".into()),
            ..Default::default()
        };
        let out = template().fill(req).unwrap();
        assert_eq!(out.security_group_ids, ["sg-0123456789abcdef0"]);
        assert_eq!(out.subnet_id.as_deref(), Some("subnet-1"));

        let mut with_nic = template();
        with_nic.security_group_ids.clear();
        with_nic.network_interfaces = vec![TemplateInterface {
            device_index: Some(0),
            subnet_id: Some("subnet-t".into()),
            groups: vec!["sg-t".into()],
            associate_public_ip: Some(true),
            ..Default::default()
        }];
        let req = RunInstances {
            security_group_ids: vec!["sg-r".into()],
            ..Default::default()
        };
        let out = with_nic.fill(req).unwrap();
        assert!(out.security_group_ids.is_empty());
        let nic = &out.network_interfaces[0];
        assert_eq!(nic.group_ids, ["sg-r"]);
        assert_eq!(nic.subnet_id.as_deref(), Some("subnet-t"));
        assert_eq!(nic.associate_public_ip, Some(true));
    }

    #[test]
    fn version_override_keeps_unset_fields() {
        let over = LaunchTemplateData {
            instance_type: Some("t3.large".into()),
            ..Default::default()
        };
        let out = template().overridden_by(&over);
        assert_eq!(out.instance_type.as_deref(), Some("t3.large"));
        assert_eq!(out.key_name.as_deref(), Some("k"));
    }

    #[test]
    fn check_refuses_monitoring_and_bad_tag_types() {
        let mut d = template();
        d.monitoring = Some(true);
        assert_eq!(d.check().unwrap_err().code, "UnsupportedOperation");
        let mut d = template();
        d.tag_specifications[0].resource_type = "image".into();
        assert!(d.check().is_err());
        template().check().unwrap();
    }
}
