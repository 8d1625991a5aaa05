//! The VPC layer: VPCs, subnets, route tables, security groups and their rules, and the
//! network interfaces of instances (synthesized from each instance's
//! [`InstanceNetwork`](crate::network::InstanceNetwork)).
//!
//! Every account gets, per region and on first use of this layer, a default VPC as EC2
//! creates one: `172.31.0.0/16`, one default `/20` subnet per zone, a main route table
//! and the VPC's `default` security group. Creation happens under the cloud's VPC lock,
//! so concurrent first calls create exactly one. A marker row remembers that the default
//! VPC was made, so deleting it (allowed, as on AWS) does not bring it back;
//! CreateDefaultVpc does.
//!
//! VPCs, subnets, route tables and groups are catalog rows with JSON documents; rules
//! live inside their group's document, each with its own `sgr-…` id.

mod cidr;
mod interfaces;
mod permissions;
mod route_tables;
mod rules;
mod security_groups;
mod subnets;
mod vpcs;

use std::sync::MutexGuard;

use catalog::{ResourceRow, now_ms};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use cidr::Cidr;
pub use interfaces::{InterfaceView, private_dns_name, public_dns_name};
pub use permissions::RuleUpdate;
pub use route_tables::RouteTableView;
pub use rules::{
    IpPermission, PermissionSet, PermissionSource, RuleDoc, RuleSource, RuleView,
    normalize_protocol, permission_sets,
};
pub use security_groups::MAX_GROUPS_PER_INTERFACE;
pub use security_groups::{GroupView, LaunchPlacement};
pub use subnets::{CreateSubnet, SubnetView};
pub use vpcs::{VPC_ATTRIBUTES, VpcAttribute, VpcView};

use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock, regions};

/// A catalog row with its tags.
pub(crate) type TaggedRow = (ResourceRow, Vec<(String, String)>);

/// Catalog kind of VPCs.
pub const VPC_KIND: &str = "vpc";
/// Catalog kind of subnets.
pub const SUBNET_KIND: &str = "subnet";
/// Catalog kind of route tables.
pub const ROUTE_TABLE_KIND: &str = "route-table";
/// Catalog kind of security groups.
pub const GROUP_KIND: &str = "security-group";
/// Catalog kind of the marker saying an account's default VPC was created in a region.
const DEFAULT_MARKER_KIND: &str = "default-vpc-marker";

/// CIDR of default VPCs.
pub const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";
/// The DHCP options set every VPC uses.
pub const DHCP_OPTIONS_ID: &str = "dopt-0a1b2c3d4e5f60718";
/// Name of a VPC's default security group.
pub const DEFAULT_GROUP_NAME: &str = "default";

/// What the catalog keeps about a VPC.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct VpcDoc {
    /// IPv4 CIDR.
    pub cidr: String,
    /// The account's default VPC of the region.
    pub is_default: bool,
    /// `default` or `dedicated` (recorded).
    pub instance_tenancy: String,
    /// `vpc-cidr-assoc-…`.
    pub cidr_association_id: String,
    /// enableDnsSupport.
    pub enable_dns_support: bool,
    /// enableDnsHostnames.
    pub enable_dns_hostnames: bool,
    /// enableNetworkAddressUsageMetrics.
    pub enable_network_address_usage_metrics: bool,
    /// Its main route table.
    pub main_route_table_id: String,
    /// Its default security group.
    pub default_group_id: String,
    /// Creation time.
    pub create_time_ms: i64,
}

/// What the catalog keeps about a subnet.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SubnetDoc {
    /// Its VPC.
    pub vpc_id: String,
    /// IPv4 CIDR.
    pub cidr: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Default subnet of its zone (default VPC only).
    pub default_for_az: bool,
    /// Public IPv4 addresses on launch.
    pub map_public_ip_on_launch: bool,
}

/// What the catalog keeps about a route table.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouteTableDoc {
    /// Its VPC.
    pub vpc_id: String,
    /// The VPC's main table.
    pub main: bool,
    /// `rtbassoc-…` of the main association.
    pub main_association_id: String,
    /// Routes: (destination CIDR, gateway id such as `local`).
    pub routes: Vec<(String, String)>,
}

/// What the catalog keeps about a security group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct GroupDoc {
    /// Name, unique in its VPC.
    pub name: String,
    /// Description.
    pub description: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Ingress and egress rules.
    pub rules: Vec<rules::RuleDoc>,
}

pub(crate) fn decode<T: DeserializeOwned>(row: &ResourceRow) -> Ec2Result<T> {
    serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("vpc layer document", e))
}

pub(crate) fn encode<T: Serialize>(doc: &T) -> Ec2Result<String> {
    serde_json::to_string(doc).map_err(|e| Ec2Error::internal("vpc layer document", e))
}

fn new_row(caller: &Caller, id: &str, kind: &str, state: &str, doc: String) -> ResourceRow {
    ResourceRow {
        id: id.to_string(),
        kind: kind.to_string(),
        account_id: caller.account_id.clone(),
        region: caller.region.clone(),
        state: state.to_string(),
        doc,
        created_at_ms: now_ms(),
    }
}

fn marker_id(caller: &Caller) -> String {
    format!("default-vpc-marker:{}:{}", caller.account_id, caller.region)
}

/// `arn:aws:ec2:<region>:<account>:<type>/<id>`.
pub fn arn(caller_region: &str, account_id: &str, kind: &str, id: &str) -> String {
    format!("arn:aws:ec2:{caller_region}:{account_id}:{kind}/{id}")
}

/// The default subnets' CIDRs, one per zone (`a`, `b`, `c`).
fn default_subnet_cidr(index: usize) -> String {
    format!("172.31.{}.0/20", index * 16)
}

impl Cloud {
    /// Takes the VPC lock and makes sure the caller's default VPC exists (creating it on
    /// first use). Every call of this layer starts here.
    pub(crate) fn vpc_guard(&self, caller: &Caller) -> Ec2Result<MutexGuard<'_, ()>> {
        self.region(&caller.region)?;
        let guard = lock(&self.vpc_lock);
        if self.catalog.resource(&marker_id(caller))?.is_none() {
            // A default VPC without a marker is one whose creation was interrupted.
            if self.default_vpc(caller)?.is_none() {
                self.create_vpc_locked(caller, DEFAULT_VPC_CIDR, "default", true, Vec::new())?;
            }
            let marker = new_row(
                caller,
                &marker_id(caller),
                DEFAULT_MARKER_KIND,
                "done",
                "{}".into(),
            );
            self.catalog.insert_resource(&marker)?;
        }
        Ok(guard)
    }

    /// Makes sure the caller's default VPC exists, for calls that only read (the lock is
    /// taken only when it may have to be created).
    pub(crate) fn ensure_default_vpc(&self, caller: &Caller) -> Ec2Result<()> {
        self.region(&caller.region)?;
        if self.catalog.resource(&marker_id(caller))?.is_none() {
            drop(self.vpc_guard(caller)?);
        }
        Ok(())
    }

    /// Creates a VPC with its main route table and default group (and, for the default
    /// VPC, its default subnets). The VPC lock is held.
    fn create_vpc_locked(
        &self,
        caller: &Caller,
        cidr: &str,
        tenancy: &str,
        is_default: bool,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<String> {
        let vpc_id = ids::new_id("vpc");
        let rtb_id = ids::new_id("rtb");
        let sg_id = ids::new_id("sg");
        let doc = VpcDoc {
            cidr: cidr.to_string(),
            is_default,
            instance_tenancy: tenancy.to_string(),
            cidr_association_id: ids::new_id("vpc-cidr-assoc"),
            enable_dns_support: true,
            enable_dns_hostnames: is_default,
            enable_network_address_usage_metrics: false,
            main_route_table_id: rtb_id.clone(),
            default_group_id: sg_id.clone(),
            create_time_ms: now_ms(),
        };
        self.catalog.insert_resource_with_tags(
            &new_row(caller, &vpc_id, VPC_KIND, "available", encode(&doc)?),
            &tags,
        )?;
        let rtb = RouteTableDoc {
            vpc_id: vpc_id.clone(),
            main: true,
            main_association_id: ids::new_id("rtbassoc"),
            routes: vec![(cidr.to_string(), "local".into())],
        };
        self.catalog.insert_resource(&new_row(
            caller,
            &rtb_id,
            ROUTE_TABLE_KIND,
            "available",
            encode(&rtb)?,
        ))?;
        let group = GroupDoc {
            name: DEFAULT_GROUP_NAME.into(),
            description: "default VPC security group".into(),
            vpc_id: vpc_id.clone(),
            rules: rules::default_rules(&sg_id, &caller.account_id),
        };
        self.catalog.insert_resource(&new_row(
            caller,
            &sg_id,
            GROUP_KIND,
            "available",
            encode(&group)?,
        ))?;
        if is_default {
            for (i, zone) in regions::zones(&caller.region).iter().enumerate() {
                let subnet = SubnetDoc {
                    vpc_id: vpc_id.clone(),
                    cidr: default_subnet_cidr(i),
                    availability_zone: zone.name.clone(),
                    default_for_az: true,
                    map_public_ip_on_launch: true,
                };
                let id = ids::new_id("subnet");
                self.catalog.insert_resource(&new_row(
                    caller,
                    &id,
                    SUBNET_KIND,
                    "available",
                    encode(&subnet)?,
                ))?;
            }
        }
        Ok(vpc_id)
    }

    /// The caller's rows of `kind` in its region, with their tags.
    pub(crate) fn owned_rows(&self, caller: &Caller, kind: &str) -> Ec2Result<Vec<TaggedRow>> {
        let all_tags = self.catalog.all_tags()?;
        Ok(self
            .owned_resources(caller, kind)?
            .into_iter()
            .map(|r| {
                let tags = all_tags.get(&r.id).cloned().unwrap_or_default();
                (r, tags)
            })
            .collect())
    }

    /// The caller's VPC `id`, or `InvalidVpcID.NotFound`.
    pub(crate) fn owned_vpc(&self, caller: &Caller, id: &str) -> Ec2Result<(ResourceRow, VpcDoc)> {
        ids::check("vpc", "InvalidVpcID.Malformed", id)?;
        let row = self
            .owned_row(caller, VPC_KIND, id)?
            .ok_or_else(|| Ec2Error::not_found("InvalidVpcID.NotFound", "vpc ID", id))?;
        let doc = decode(&row)?;
        Ok((row, doc))
    }

    /// The caller's default VPC in its region, if it has one.
    pub(crate) fn default_vpc(&self, caller: &Caller) -> Ec2Result<Option<(String, VpcDoc)>> {
        for row in self.owned_resources(caller, VPC_KIND)? {
            let doc: VpcDoc = decode(&row)?;
            if doc.is_default {
                return Ok(Some((row.id, doc)));
            }
        }
        Ok(None)
    }

    /// The non-terminated instances of the caller's region (any account) with their
    /// documents.
    pub(crate) fn live_instances(
        &self,
        region: &str,
    ) -> Ec2Result<Vec<(ResourceRow, crate::instances::InstanceDoc)>> {
        let mut out = Vec::new();
        for row in self.catalog.resources(crate::instances::KIND, region)? {
            if row.state == "terminated" {
                continue;
            }
            let doc: crate::instances::InstanceDoc = decode(&row)?;
            out.push((row, doc));
        }
        Ok(out)
    }

    /// The CIDR of VPC `vpc_id` (any account).
    pub fn vpc_cidr(&self, vpc_id: &str) -> Ec2Result<String> {
        match self.catalog.resource(vpc_id)? {
            Some(row) if row.kind == VPC_KIND => Ok(decode::<VpcDoc>(&row)?.cidr),
            _ => Err(Ec2Error::not_found(
                "InvalidVpcID.NotFound",
                "vpc ID",
                vpc_id,
            )),
        }
    }
}

#[cfg(test)]
mod tests;
