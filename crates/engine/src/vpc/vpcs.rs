//! VPCs: DescribeVpcs, CreateVpc, CreateDefaultVpc, DeleteVpc, DescribeVpcAttribute and
//! ModifyVpcAttribute.

use crate::query::{Filter, Filterable, Page, TagSpecification, check_filters, matches, tags_for};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

use super::{
    Cidr, GROUP_KIND, GroupDoc, ROUTE_TABLE_KIND, SUBNET_KIND, SubnetDoc, VPC_KIND, VpcDoc, decode,
    encode,
};

/// A VPC as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcView {
    /// `vpc-…`.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// `available`.
    pub state: String,
    /// Stored attributes.
    pub doc: VpcDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for VpcView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        match name {
            "vpc-id" => one(&self.id),
            "cidr" | "cidr-block-association.cidr-block" => one(&self.doc.cidr),
            "cidr-block-association.association-id" => one(&self.doc.cidr_association_id),
            "cidr-block-association.state" => one("associated"),
            "dhcp-options-id" => one(super::DHCP_OPTIONS_ID),
            "is-default" | "isDefault" => one(&self.doc.is_default.to_string()),
            "owner-id" => one(&self.owner_id),
            "state" => one(&self.state),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// A VPC attribute of DescribeVpcAttribute / ModifyVpcAttribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VpcAttribute {
    /// enableDnsSupport.
    EnableDnsSupport,
    /// enableDnsHostnames.
    EnableDnsHostnames,
    /// enableNetworkAddressUsageMetrics.
    EnableNetworkAddressUsageMetrics,
}

/// Wire names of VPC attributes.
pub const VPC_ATTRIBUTES: &[(&str, VpcAttribute)] = &[
    ("enableDnsSupport", VpcAttribute::EnableDnsSupport),
    ("enableDnsHostnames", VpcAttribute::EnableDnsHostnames),
    (
        "enableNetworkAddressUsageMetrics",
        VpcAttribute::EnableNetworkAddressUsageMetrics,
    ),
];

fn attribute_slot(doc: &mut VpcDoc, attribute: VpcAttribute) -> &mut bool {
    match attribute {
        VpcAttribute::EnableDnsSupport => &mut doc.enable_dns_support,
        VpcAttribute::EnableDnsHostnames => &mut doc.enable_dns_hostnames,
        VpcAttribute::EnableNetworkAddressUsageMetrics => {
            &mut doc.enable_network_address_usage_metrics
        }
    }
}

/// Checks a VPC CIDR: a valid IPv4 block between /16 and /28.
pub(crate) fn check_vpc_cidr(text: &str) -> Ec2Result<Cidr> {
    let cidr = Cidr::parse(text, false).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Value ({text}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !(16..=28).contains(&cidr.prefix) {
        return Err(Ec2Error::client(
            "InvalidVpc.Range",
            format!("The CIDR '{text}' is invalid."),
        ));
    }
    Ok(cidr)
}

impl Cloud {
    fn view_vpc(
        &self,
        row: &catalog::ResourceRow,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<VpcView> {
        Ok(VpcView {
            id: row.id.clone(),
            owner_id: row.account_id.clone(),
            state: row.state.clone(),
            doc: decode(row)?,
            tags,
        })
    }

    /// DescribeVpcs: the caller's VPCs in its region.
    pub fn describe_vpcs(
        &self,
        caller: &Caller,
        vpc_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<VpcView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !vpc_ids.is_empty())?;
        for id in vpc_ids {
            ids::check("vpc", "InvalidVpcID.Malformed", id)?;
        }
        self.ensure_default_vpc(caller)?;
        let mut out = Vec::new();
        for (row, tags) in self.owned_rows(caller, VPC_KIND)? {
            if !vpc_ids.is_empty() && !vpc_ids.contains(&row.id) {
                continue;
            }
            let view = self.view_vpc(&row, tags)?;
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        for id in vpc_ids {
            if self.owned_row(caller, VPC_KIND, id)?.is_none() {
                return Err(Ec2Error::not_found("InvalidVpcID.NotFound", "vpc ID", id));
            }
        }
        Ok(page.apply(out, |v| &v.id))
    }

    fn vpc_by_id(&self, caller: &Caller, id: &str) -> Ec2Result<VpcView> {
        let row = self
            .owned_row(caller, VPC_KIND, id)?
            .ok_or_else(|| Ec2Error::not_found("InvalidVpcID.NotFound", "vpc ID", id))?;
        self.view_vpc(&row, self.catalog.tags(id)?)
    }

    /// CreateVpc: a VPC with its main route table and default security group.
    pub fn create_vpc(
        &self,
        caller: &Caller,
        cidr_block: &str,
        instance_tenancy: Option<&str>,
        tag_specs: &[TagSpecification],
    ) -> Ec2Result<VpcView> {
        let tags = tags_for(tag_specs, "vpc")?;
        let cidr = check_vpc_cidr(cidr_block)?;
        let tenancy = instance_tenancy.unwrap_or("default");
        if tenancy != "default" && tenancy != "dedicated" {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({tenancy}) for parameter instanceTenancy is invalid."
            )));
        }
        let _guard = self.vpc_guard(caller)?;
        let id = self.create_vpc_locked(caller, &cidr.to_string(), tenancy, false, tags)?;
        self.vpc_by_id(caller, &id)
    }

    /// CreateDefaultVpc: a new default VPC when the caller has none in its region.
    pub fn create_default_vpc(&self, caller: &Caller) -> Ec2Result<VpcView> {
        let _guard = self.vpc_guard(caller)?;
        if let Some((id, _)) = self.default_vpc(caller)? {
            return Err(Ec2Error::client(
                "DefaultVpcAlreadyExists",
                format!("A Default VPC already exists for this account in this region: {id}."),
            ));
        }
        let id =
            self.create_vpc_locked(caller, super::DEFAULT_VPC_CIDR, "default", true, Vec::new())?;
        self.vpc_by_id(caller, &id)
    }

    /// DeleteVpc: refused while subnets, instances or non-default groups remain; deletes
    /// its main route table and default group with it.
    pub fn delete_vpc(&self, caller: &Caller, vpc_id: &str) -> Ec2Result<()> {
        ids::check("vpc", "InvalidVpcID.Malformed", vpc_id)?;
        let _guard = self.vpc_guard(caller)?;
        let (_, doc) = self.owned_vpc(caller, vpc_id)?;
        let dependency = || {
            Ec2Error::client(
                "DependencyViolation",
                format!("The vpc '{vpc_id}' has dependencies and cannot be deleted."),
            )
        };
        for row in self.catalog.resources(SUBNET_KIND, &caller.region)? {
            if decode::<SubnetDoc>(&row)?.vpc_id == vpc_id {
                return Err(dependency());
            }
        }
        for (_, inst) in self.live_instances(&caller.region)? {
            if inst.network.as_ref().is_some_and(|n| n.vpc_id == vpc_id) {
                return Err(dependency());
            }
        }
        let mut own_groups = Vec::new();
        for row in self.catalog.resources(GROUP_KIND, &caller.region)? {
            let group: GroupDoc = decode(&row)?;
            if group.vpc_id == vpc_id {
                if row.id != doc.default_group_id {
                    return Err(dependency());
                }
                own_groups.push((
                    row.id,
                    group.rules.into_iter().map(|r| r.id).collect::<Vec<_>>(),
                ));
            }
        }
        for row in self.catalog.resources(ROUTE_TABLE_KIND, &caller.region)? {
            if decode::<super::RouteTableDoc>(&row)?.vpc_id == vpc_id {
                self.catalog.delete_resource(&row.id)?;
            }
        }
        for (id, rule_ids) in own_groups {
            for rule in rule_ids {
                self.catalog.clear_tags(&rule)?;
            }
            self.catalog.delete_resource(&id)?;
        }
        self.catalog.delete_resource(vpc_id)?;
        Ok(())
    }

    /// DescribeVpcAttribute.
    pub fn describe_vpc_attribute(
        &self,
        caller: &Caller,
        vpc_id: &str,
        attribute: VpcAttribute,
    ) -> Ec2Result<bool> {
        self.ensure_default_vpc(caller)?;
        let (_, mut doc) = self.owned_vpc(caller, vpc_id)?;
        Ok(*attribute_slot(&mut doc, attribute))
    }

    /// ModifyVpcAttribute: one attribute per call, as EC2 requires.
    pub fn modify_vpc_attribute(
        &self,
        caller: &Caller,
        vpc_id: &str,
        attribute: VpcAttribute,
        value: bool,
    ) -> Ec2Result<()> {
        let _guard = self.vpc_guard(caller)?;
        let (row, mut doc) = self.owned_vpc(caller, vpc_id)?;
        *attribute_slot(&mut doc, attribute) = value;
        if doc.enable_dns_hostnames && !doc.enable_dns_support {
            return Err(Ec2Error::client(
                "InvalidParameterValue",
                "DNS hostnames cannot be enabled while DNS support is disabled.",
            ));
        }
        self.catalog
            .update_resource(&row.id, &row.state, &encode(&doc)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpc_cidr_limits() {
        assert!(check_vpc_cidr("10.0.0.0/16").is_ok());
        assert!(check_vpc_cidr("10.0.0.0/28").is_ok());
        assert_eq!(
            check_vpc_cidr("10.0.0.0/8").unwrap_err().code,
            "InvalidVpc.Range"
        );
        assert_eq!(
            check_vpc_cidr("10.0.0.0/29").unwrap_err().code,
            "InvalidVpc.Range"
        );
        assert_eq!(
            check_vpc_cidr("banana").unwrap_err().code,
            "InvalidParameterValue"
        );
    }
}
