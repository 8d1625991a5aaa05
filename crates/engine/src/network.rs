//! What an instance's network looks like to the rest of the engine: its primary network
//! interface (VPC, subnet, addresses, MAC, security groups), its instance metadata
//! options, and the flattened ingress rules that decide which of its ports are reachable
//! on its public address.
//!
//! The VPC layer (`vpc`) owns VPCs, subnets and security groups; key pairs live in
//! `keypairs`; the machine layer turns [`IngressRule`]s into host forwards. These types
//! are the contract between them.

use serde::{Deserialize, Serialize};

/// A security group as an instance or interface references it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupRef {
    /// `sg-…`.
    pub id: String,
    /// Its name (`default` for a VPC's default group).
    pub name: String,
}

/// An instance's primary network interface (`eni-…`), as the instance records it. Its
/// private IPv4 address is the instance's `private_ip` (kept across stop/start).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct InstanceNetwork {
    /// `vpc-…`.
    pub vpc_id: String,
    /// `subnet-…`.
    pub subnet_id: String,
    /// The subnet's IPv4 CIDR (e.g. `172.31.0.0/20`).
    pub subnet_cidr: String,
    /// `eni-…`.
    pub interface_id: String,
    /// `eni-attach-…`.
    pub attachment_id: String,
    /// The NIC's MAC address (`02:xx:xx:xx:xx:xx`), the same in QEMU and in IMDS.
    pub mac: String,
    /// Public IPv4 address from the loopback pool while the instance runs (a new one
    /// after each stop/start, as in EC2); `None` when stopped or terminated. With an
    /// Elastic IP associated, that address, kept while the instance is stopped.
    pub public_ip: Option<String>,
    /// The Elastic IP associated with the interface (AssociateAddress), if any.
    pub elastic: Option<ElasticAssociation>,
    /// Whether the interface gets a public address while the instance runs
    /// (`AssociatePublicIpAddress`, else the subnet's `MapPublicIpOnLaunch`).
    pub associate_public_ip: bool,
    /// Security groups of the interface.
    pub groups: Vec<GroupRef>,
    /// Source/destination check flag (recorded).
    pub source_dest_check: bool,
}

/// An Elastic IP's association with an interface. The instance document is the one
/// record of it: DescribeAddresses reads associations from the instances.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ElasticAssociation {
    /// `eipalloc-…`: the address.
    pub allocation_id: String,
    /// `eipassoc-…`.
    pub association_id: String,
}

impl ElasticAssociation {
    /// The owner of a public address as EC2 reports it (`ipOwnerId`): the account for an
    /// Elastic IP, `amazon` for an address from the pool.
    pub fn ip_owner(elastic: Option<&ElasticAssociation>, account_id: &str) -> String {
        match elastic {
            Some(_) => account_id.to_string(),
            None => "amazon".to_string(),
        }
    }
}

/// Instance metadata service options (`MetadataOptions`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MetadataOptions {
    /// `optional` or `required` (IMDSv2 only).
    pub http_tokens: String,
    /// 1–64.
    pub http_put_response_hop_limit: i64,
    /// `enabled` or `disabled`.
    pub http_endpoint: String,
    /// `enabled` or `disabled` (recorded; the IPv6 endpoint is not served).
    pub http_protocol_ipv6: String,
    /// `enabled` or `disabled`: instance tags under `meta-data/tags/instance`.
    pub instance_metadata_tags: String,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            http_tokens: "optional".into(),
            http_put_response_hop_limit: 1,
            http_endpoint: "enabled".into(),
            http_protocol_ipv6: "disabled".into(),
            instance_metadata_tags: "disabled".into(),
        }
    }
}

/// One ingress permission of a security group, flattened: a protocol and port range
/// open to some IPv4 CIDRs and/or members of other groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRule {
    /// The group that has the rule.
    pub group_id: String,
    /// `tcp`, `udp`, `icmp` or `-1` (all), as EC2 normalises `IpProtocol`.
    pub protocol: String,
    /// First port (-1 for all / ICMP type).
    pub from_port: i64,
    /// Last port (-1 for all / ICMP code).
    pub to_port: i64,
    /// IPv4 CIDRs allowed (e.g. `0.0.0.0/0`, `127.0.0.0/8`).
    pub cidrs: Vec<String>,
    /// Groups whose members are allowed.
    pub source_groups: Vec<String>,
}

impl crate::Cloud {
    /// Called by the VPC layer after the rules of `group_ids` changed: the running
    /// instances in those groups get their port forwards re-applied.
    pub(crate) fn security_groups_changed(&self, group_ids: &[String]) {
        self.refresh_forwards_of_groups(group_ids);
    }
}
