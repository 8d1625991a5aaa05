//! The network side of RunInstances: the `NetworkInterface.N` and `MetadataOptions`
//! requests, which primary interface a call asks for, and the interface a new instance
//! gets (private address, `eni-…`, MAC, public address, groups).

use super::network;
use crate::network::{InstanceNetwork, MetadataOptions};
use crate::vpc::LaunchPlacement;
use crate::{Cloud, Ec2Error, Ec2Result, ids};

use super::launch::RunInstances;

/// One `NetworkInterface.N` of RunInstances.
#[derive(Clone, Debug, Default)]
pub struct NetworkInterfaceRequest {
    /// `DeviceIndex`.
    pub device_index: Option<i64>,
    /// `NetworkInterfaceId` (attaching an existing interface: refused).
    pub network_interface_id: Option<String>,
    /// `SubnetId`.
    pub subnet_id: Option<String>,
    /// `SecurityGroupId.N`.
    pub group_ids: Vec<String>,
    /// `AssociatePublicIpAddress`.
    pub associate_public_ip: Option<bool>,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `DeleteOnTermination` (primary interfaces are always deleted with the instance).
    pub delete_on_termination: Option<bool>,
}

/// `MetadataOptions` of RunInstances and ModifyInstanceMetadataOptions.
#[derive(Clone, Debug, Default)]
pub struct MetadataOptionsRequest {
    /// `HttpTokens`: optional | required.
    pub http_tokens: Option<String>,
    /// `HttpPutResponseHopLimit`: 1–64.
    pub http_put_response_hop_limit: Option<i64>,
    /// `HttpEndpoint`: enabled | disabled.
    pub http_endpoint: Option<String>,
    /// `HttpProtocolIpv6`: enabled | disabled.
    pub http_protocol_ipv6: Option<String>,
    /// `InstanceMetadataTags`: enabled | disabled.
    pub instance_metadata_tags: Option<String>,
}

impl MetadataOptionsRequest {
    /// Applies the given options over `base`, checking each value.
    pub fn apply(&self, base: &MetadataOptions) -> Ec2Result<MetadataOptions> {
        fn one_of(
            name: &str,
            v: &Option<String>,
            allowed: &[&str],
            cur: &str,
        ) -> Ec2Result<String> {
            match v {
                None => Ok(cur.to_string()),
                Some(v) if allowed.contains(&v.as_str()) => Ok(v.clone()),
                Some(v) => Err(Ec2Error::invalid_value(format!(
                    "The {name} value '{v}' is not valid. Valid values: {}.",
                    allowed.join(", ")
                ))),
            }
        }
        let hop = match self.http_put_response_hop_limit {
            None => base.http_put_response_hop_limit,
            Some(h) if (1..=64).contains(&h) => h,
            Some(h) => {
                return Err(Ec2Error::invalid_value(format!(
                    "The HttpPutResponseHopLimit value '{h}' is not valid. It must be between 1 and 64."
                )));
            }
        };
        Ok(MetadataOptions {
            http_tokens: one_of(
                "HttpTokens",
                &self.http_tokens,
                &["optional", "required"],
                &base.http_tokens,
            )?,
            http_put_response_hop_limit: hop,
            http_endpoint: one_of(
                "HttpEndpoint",
                &self.http_endpoint,
                &["enabled", "disabled"],
                &base.http_endpoint,
            )?,
            http_protocol_ipv6: one_of(
                "HttpProtocolIpv6",
                &self.http_protocol_ipv6,
                &["enabled", "disabled"],
                &base.http_protocol_ipv6,
            )?,
            instance_metadata_tags: one_of(
                "InstanceMetadataTags",
                &self.instance_metadata_tags,
                &["enabled", "disabled"],
                &base.instance_metadata_tags,
            )?,
        })
    }
}

/// The primary interface a RunInstances call asks for: `NetworkInterface.1` (device
/// index 0) or the instance-level SubnetId / SecurityGroupId.N / PrivateIpAddress, never
/// both.
pub(super) fn primary_interface(req: &RunInstances) -> Ec2Result<NetworkInterfaceRequest> {
    let combination = |what: &str| {
        Ec2Error::client(
            "InvalidParameterCombination",
            format!(
                "Network interfaces and an instance-level {what} may not be specified on the same request"
            ),
        )
    };
    match req.network_interfaces.as_slice() {
        [] => Ok(NetworkInterfaceRequest {
            device_index: Some(0),
            subnet_id: req.subnet_id.clone(),
            group_ids: req.security_group_ids.clone(),
            private_ip: req.private_ip.clone(),
            ..Default::default()
        }),
        [one] => {
            if req.subnet_id.is_some() {
                return Err(combination("subnet ID"));
            }
            if !req.security_group_ids.is_empty() || !req.security_group_names.is_empty() {
                return Err(combination("security groups"));
            }
            if req.private_ip.is_some() {
                return Err(combination("private IP address"));
            }
            if one.device_index.unwrap_or(0) != 0 {
                return Err(Ec2Error::client(
                    "InvalidParameterValue",
                    "The primary network interface must have device index 0",
                ));
            }
            if one.network_interface_id.is_some() {
                return Err(Ec2Error::client(
                    "UnsupportedOperation",
                    "Launching with an existing network interface is not supported by openami",
                ));
            }
            Ok(one.clone())
        }
        _ => Err(Ec2Error::client(
            "UnsupportedOperation",
            "openami instances have one network interface; more are not supported yet",
        )),
    }
}

impl Cloud {
    /// The primary interface of a new instance: its private address (requested or the
    /// subnet's lowest free one), a new `eni-…` with a MAC, and a public address when the
    /// request or the subnet asks for one.
    pub(super) fn interface_for_launch(
        &self,
        placement: &LaunchPlacement,
        nic: &NetworkInterfaceRequest,
        taken_private: &[String],
        taken_public: &[String],
    ) -> Ec2Result<(String, InstanceNetwork)> {
        let private_ip = match &nic.private_ip {
            Some(ip) => {
                let cidr = network::Cidr::parse(&placement.subnet_cidr, false)
                    .ok_or_else(|| Ec2Error::internal("subnet CIDR", &placement.subnet_cidr))?;
                let addr: std::net::Ipv4Addr = ip.parse().map_err(|_| {
                    Ec2Error::invalid_value(format!("Invalid value '{ip}' for PrivateIpAddress"))
                })?;
                let n = u64::from(u32::from(addr).wrapping_sub(cidr.addr));
                if !cidr.contains_ip(addr) || n < 4 || n + 1 >= cidr.size() {
                    return Err(Ec2Error::client(
                        "InvalidParameterValue",
                        format!("Address {ip} does not fall within the subnet's address range"),
                    ));
                }
                if self.private_ip_in_use(&placement.subnet_id, ip)? {
                    return Err(Ec2Error::client(
                        "InvalidIPAddress.InUse",
                        format!("Address {ip} is in use."),
                    ));
                }
                ip.clone()
            }
            None => self.allocate_private_ip(
                &placement.subnet_id,
                &placement.subnet_cidr,
                taken_private,
            )?,
        };
        let associate = nic
            .associate_public_ip
            .unwrap_or(placement.map_public_ip_on_launch);
        let public_ip = if associate {
            Some(self.allocate_public_ip(taken_public)?)
        } else {
            None
        };
        Ok((
            private_ip,
            InstanceNetwork {
                vpc_id: placement.vpc_id.clone(),
                subnet_id: placement.subnet_id.clone(),
                subnet_cidr: placement.subnet_cidr.clone(),
                interface_id: ids::new_id("eni"),
                attachment_id: ids::new_id("eni-attach"),
                mac: network::new_mac(),
                public_ip,
                elastic: None,
                associate_public_ip: associate,
                groups: placement.groups.clone(),
                source_dest_check: true,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_options_are_checked() {
        let base = MetadataOptions::default();
        let req = MetadataOptionsRequest {
            http_tokens: Some("required".into()),
            http_put_response_hop_limit: Some(2),
            ..Default::default()
        };
        let o = req.apply(&base).unwrap();
        assert_eq!(o.http_tokens, "required");
        assert_eq!(o.http_put_response_hop_limit, 2);
        assert_eq!(o.http_endpoint, "enabled");
        let bad = MetadataOptionsRequest {
            http_tokens: Some("maybe".into()),
            ..Default::default()
        };
        assert!(bad.apply(&base).is_err());
        let bad = MetadataOptionsRequest {
            http_put_response_hop_limit: Some(65),
            ..Default::default()
        };
        assert!(bad.apply(&base).is_err());
    }
}
