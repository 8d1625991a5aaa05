//! Security groups: CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroups,
//! and the functions the instance layer calls to place an instance and check its groups.

use catalog::ResourceRow;

use crate::network::{GroupRef, IngressRule};
use crate::query::{Filter, Filterable, Page, TagSpecification, check_filters, matches, tags_for};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, regions};

use super::rules::{self, RuleSource};
use super::{GROUP_KIND, GroupDoc, decode, encode, new_row};

/// A security group as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// `sg-…`.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// `arn:aws:ec2:…:security-group/sg-…`.
    pub arn: String,
    /// Stored attributes and rules.
    pub doc: GroupDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for GroupView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        if let Some(field) = name.strip_prefix("egress.ip-permission.") {
            return rules::permission_filter_values(&self.doc.rules, true, field);
        }
        if let Some(field) = name.strip_prefix("ip-permission.") {
            return rules::permission_filter_values(&self.doc.rules, false, field);
        }
        match name {
            "group-id" => one(&self.id),
            "group-name" => one(&self.doc.name),
            "vpc-id" => one(&self.doc.vpc_id),
            "description" => one(&self.doc.description),
            "owner-id" => one(&self.owner_id),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// Where an instance goes: zone, VPC, subnet (with its CIDR) and groups, from
/// RunInstances' SubnetId / Placement.AvailabilityZone / SecurityGroupId.N /
/// SecurityGroup.N (names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchPlacement {
    /// Availability zone (the subnet's).
    pub zone: String,
    /// `vpc-…`.
    pub vpc_id: String,
    /// `subnet-…`.
    pub subnet_id: String,
    /// The subnet's IPv4 CIDR.
    pub subnet_cidr: String,
    /// The subnet's `MapPublicIpOnLaunch`.
    pub map_public_ip_on_launch: bool,
    /// Security groups, without repeats.
    pub groups: Vec<GroupRef>,
}

pub(crate) fn group_not_found(id: &str) -> Ec2Error {
    Ec2Error::not_found("InvalidGroup.NotFound", "security group", id)
}

fn check_group_text(what: &str, text: &str) -> Ec2Result<()> {
    if text.is_empty() || text.chars().count() > 255 {
        return Err(Ec2Error::invalid_value(format!(
            "Value for parameter {what} is invalid: it must be 1 to 255 characters."
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c);
    if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({text}) for parameter {what} is invalid. Character sets beyond ASCII are not supported ('{bad}')."
        )));
    }
    Ok(())
}

impl Cloud {
    pub(crate) fn view_group(
        &self,
        row: &ResourceRow,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<GroupView> {
        Ok(GroupView {
            arn: super::arn(&row.region, &row.account_id, "security-group", &row.id),
            id: row.id.clone(),
            owner_id: row.account_id.clone(),
            doc: decode(row)?,
            tags,
        })
    }

    /// The caller's group `id`, or `InvalidGroup.NotFound`.
    pub(crate) fn owned_group(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Ec2Result<(ResourceRow, GroupDoc)> {
        ids::check("sg", "InvalidGroupId.Malformed", id)?;
        let row = self
            .owned_row(caller, GROUP_KIND, id)?
            .ok_or_else(|| group_not_found(id))?;
        let doc = decode(&row)?;
        Ok((row, doc))
    }

    /// The caller's group named `name` in VPC `vpc_id`.
    pub(crate) fn group_by_name(
        &self,
        caller: &Caller,
        vpc_id: &str,
        name: &str,
    ) -> Ec2Result<Option<(ResourceRow, GroupDoc)>> {
        for (row, _) in self.owned_rows(caller, GROUP_KIND)? {
            let doc: GroupDoc = decode(&row)?;
            if doc.vpc_id == vpc_id && doc.name == name {
                return Ok(Some((row, doc)));
            }
        }
        Ok(None)
    }

    /// The group a call names by GroupId, or by GroupName in the default VPC.
    pub(crate) fn target_group(
        &self,
        caller: &Caller,
        group_id: Option<&str>,
        group_name: Option<&str>,
    ) -> Ec2Result<(ResourceRow, GroupDoc)> {
        match (group_id, group_name) {
            (Some(id), _) => self.owned_group(caller, id),
            (None, Some(name)) => {
                let (vpc_id, _) = self.default_vpc(caller)?.ok_or_else(no_default_vpc)?;
                self.group_by_name(caller, &vpc_id, name)?.ok_or_else(|| {
                    Ec2Error::client(
                        "InvalidGroup.NotFound",
                        format!(
                            "The security group '{name}' does not exist in default VPC '{vpc_id}'"
                        ),
                    )
                })
            }
            (None, None) => Err(Ec2Error::client(
                "MissingParameter",
                "Either GroupId or GroupName must be specified",
            )),
        }
    }

    /// CreateSecurityGroup: in `vpc_id`, or the default VPC. Returns the new group.
    pub fn create_security_group(
        &self,
        caller: &Caller,
        name: &str,
        description: &str,
        vpc_id: Option<&str>,
        tag_specs: &[TagSpecification],
    ) -> Ec2Result<GroupView> {
        let tags = tags_for(tag_specs, "security-group")?;
        check_group_text("GroupName", name)?;
        check_group_text("GroupDescription", description)?;
        if name.to_ascii_lowercase().starts_with("sg-") {
            return Err(Ec2Error::invalid_value(
                "Group names may not be in the format sg-*.",
            ));
        }
        let _guard = self.vpc_guard(caller)?;
        let vpc_id = match vpc_id {
            Some(id) => {
                self.owned_vpc(caller, id)?;
                id.to_string()
            }
            None => self.default_vpc(caller)?.ok_or_else(no_default_vpc)?.0,
        };
        if self.group_by_name(caller, &vpc_id, name)?.is_some() {
            return Err(Ec2Error::client(
                "InvalidGroup.Duplicate",
                format!("The security group '{name}' already exists for VPC '{vpc_id}'"),
            ));
        }
        let doc = GroupDoc {
            name: name.to_string(),
            description: description.to_string(),
            vpc_id,
            rules: vec![rules::new_rule(
                true,
                "-1",
                (-1, -1),
                RuleSource::Cidr("0.0.0.0/0".into()),
                None,
            )],
        };
        let id = ids::new_id("sg");
        let row = new_row(caller, &id, GROUP_KIND, "available", encode(&doc)?);
        self.catalog.insert_resource_with_tags(&row, &tags)?;
        self.view_group(&row, tags)
    }

    /// DeleteSecurityGroup by id, or by name in the default VPC; returns its id.
    pub fn delete_security_group(
        &self,
        caller: &Caller,
        group_id: Option<&str>,
        group_name: Option<&str>,
    ) -> Ec2Result<String> {
        let _guard = self.vpc_guard(caller)?;
        let (row, doc) = self.target_group(caller, group_id, group_name)?;
        let id = row.id.clone();
        if doc.name == super::DEFAULT_GROUP_NAME {
            return Err(Ec2Error::client(
                "CannotDelete",
                format!(
                    "the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"
                ),
            ));
        }
        let in_use = || {
            Ec2Error::client(
                "DependencyViolation",
                format!("resource {id} has a dependent object"),
            )
        };
        for (_, inst) in self.live_instances(&caller.region)? {
            if inst
                .network
                .as_ref()
                .is_some_and(|n| n.groups.iter().any(|g| g.id == id))
            {
                return Err(in_use());
            }
        }
        for other in self.catalog.resources(GROUP_KIND, &caller.region)? {
            if other.id == id {
                continue;
            }
            let other_doc: GroupDoc = decode(&other)?;
            if other_doc
                .rules
                .iter()
                .any(|r| matches!(&r.source, RuleSource::Group { group_id, .. } if *group_id == id))
            {
                return Err(in_use());
            }
        }
        for rule in &doc.rules {
            self.catalog.clear_tags(&rule.id)?;
        }
        self.catalog.delete_resource(&id)?;
        Ok(id)
    }

    /// DescribeSecurityGroups: the caller's groups in its region (GroupName.N names
    /// groups of the default VPC).
    pub fn describe_security_groups(
        &self,
        caller: &Caller,
        group_ids: &[String],
        group_names: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<GroupView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !group_ids.is_empty() || !group_names.is_empty())?;
        for id in group_ids {
            ids::check("sg", "InvalidGroupId.Malformed", id)?;
        }
        self.ensure_default_vpc(caller)?;
        let mut wanted: Vec<String> = group_ids.to_vec();
        for name in group_names {
            wanted.push(self.target_group(caller, None, Some(name))?.0.id);
        }
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (row, tags) in self.owned_rows(caller, GROUP_KIND)? {
            if !wanted.is_empty() && !wanted.contains(&row.id) {
                continue;
            }
            seen.push(row.id.clone());
            let view = self.view_group(&row, tags)?;
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        if let Some(missing) = group_ids.iter().find(|id| !seen.contains(id)) {
            return Err(group_not_found(missing));
        }
        Ok(page.apply(out, |v| &v.id))
    }

    /// Where an instance goes. No subnet: the default subnet of `zone` (default
    /// `<region>a`, or this node's first zone of the region) in the default VPC (created on first use). No groups: the VPC's
    /// default group. A subnet in another zone than an explicit `zone` is
    /// `InvalidParameterValue`; group names are looked up in the subnet's VPC, and are
    /// refused with a subnet of a non-default VPC (`InvalidParameterCombination`, as EC2
    /// does); groups of another VPC are `InvalidParameter`; missing ones are
    /// `InvalidGroup.NotFound` / `InvalidSubnetID.NotFound`.
    pub(crate) fn launch_placement(
        &self,
        caller: &Caller,
        subnet_id: Option<&str>,
        zone: Option<&str>,
        group_ids: &[String],
        group_names: &[String],
    ) -> Ec2Result<LaunchPlacement> {
        let _guard = self.vpc_guard(caller)?;
        if let Some(z) = zone {
            regions::check_zone(&caller.region, z)?;
        }
        let (subnet_id, subnet) = match subnet_id {
            Some(id) => {
                let subnet = self.owned_subnet(caller, id)?;
                if let Some(z) = zone
                    && z != subnet.availability_zone
                {
                    return Err(Ec2Error::invalid_value(format!(
                        "The specified Availability Zone ({z}) does not match the Availability Zone of subnet {id} ({}).",
                        subnet.availability_zone
                    )));
                }
                (id.to_string(), subnet)
            }
            None => {
                let (vpc_id, _) = self.default_vpc(caller)?.ok_or_else(no_default_vpc)?;
                let zone = zone.map_or_else(|| self.default_zone(&caller.region), str::to_string);
                self.subnet_docs(caller)?
                    .into_iter()
                    .find(|(_, s)| {
                        s.vpc_id == vpc_id && s.default_for_az && s.availability_zone == zone
                    })
                    .ok_or_else(|| {
                        Ec2Error::client(
                            "InvalidInput",
                            format!("No default subnet for availability zone: '{zone}'."),
                        )
                    })?
            }
        };
        let (_, vpc) = self.owned_vpc(caller, &subnet.vpc_id)?;
        let mut groups = self.groups_in_vpc(caller, &subnet.vpc_id, group_ids)?;
        if !group_names.is_empty() && !vpc.is_default {
            return Err(Ec2Error::client(
                "InvalidParameterCombination",
                "The parameter groupName cannot be used with the parameter subnet",
            ));
        }
        for name in group_names {
            let (row, _) = self
                .group_by_name(caller, &subnet.vpc_id, name)?
                .ok_or_else(|| {
                    Ec2Error::client(
                        "InvalidGroup.NotFound",
                        format!(
                            "The security group '{name}' does not exist in VPC '{}'",
                            subnet.vpc_id
                        ),
                    )
                })?;
            groups.push(GroupRef {
                id: row.id,
                name: name.clone(),
            });
        }
        if groups.is_empty() {
            let (row, doc) = self.owned_group(caller, &vpc.default_group_id)?;
            groups.push(GroupRef {
                id: row.id,
                name: doc.name,
            });
        }
        let mut unique: Vec<GroupRef> = Vec::new();
        for g in groups {
            if !unique.iter().any(|u| u.id == g.id) {
                unique.push(g);
            }
        }
        check_groups_per_interface(unique.len())?;
        Ok(LaunchPlacement {
            zone: subnet.availability_zone,
            vpc_id: subnet.vpc_id,
            subnet_id,
            subnet_cidr: subnet.cidr,
            map_public_ip_on_launch: subnet.map_public_ip_on_launch,
            groups: unique,
        })
    }

    /// The caller's groups `group_ids`, all of VPC `vpc_id`, at most
    /// [`MAX_GROUPS_PER_INTERFACE`] (for RunInstances,
    /// ModifyInstanceAttribute groupSet, ModifyNetworkInterfaceAttribute). A group of
    /// another VPC is `InvalidParameter`; an unknown one `InvalidGroup.NotFound`.
    pub(crate) fn groups_in_vpc(
        &self,
        caller: &Caller,
        vpc_id: &str,
        group_ids: &[String],
    ) -> Ec2Result<Vec<GroupRef>> {
        let mut out: Vec<GroupRef> = Vec::new();
        for id in group_ids {
            let (row, doc) = self.owned_group(caller, id)?;
            if doc.vpc_id != vpc_id {
                return Err(Ec2Error::client(
                    "InvalidParameter",
                    format!("Security group {id} and subnet belong to different networks."),
                ));
            }
            if !out.iter().any(|g| g.id == row.id) {
                out.push(GroupRef {
                    id: row.id,
                    name: doc.name,
                });
            }
        }
        check_groups_per_interface(out.len())?;
        Ok(out)
    }

    /// The flattened ingress rules of `group_ids` (any account: the caller already owns
    /// them). Groups that no longer exist contribute nothing.
    pub(crate) fn ingress_rules(&self, group_ids: &[String]) -> Ec2Result<Vec<IngressRule>> {
        let mut out = Vec::new();
        for id in group_ids {
            if let Some(row) = self.catalog.resource(id)?
                && row.kind == GROUP_KIND
            {
                let doc: GroupDoc = decode(&row)?;
                out.extend(rules::ingress_of(id, &doc.rules));
            }
        }
        Ok(out)
    }
}

/// EC2's error when a call needs the default VPC and the account has none.
pub(crate) fn no_default_vpc() -> Ec2Error {
    Ec2Error::client(
        "VPCIdNotSpecified",
        "No default VPC for this user. GroupName is only supported for EC2-Classic and default VPC.",
    )
}

/// Security groups one network interface may have (EC2's default quota; DescribeAccountAttributes
/// reports it as `vpc-max-security-groups-per-interface`).
pub const MAX_GROUPS_PER_INTERFACE: usize = 5;

fn check_groups_per_interface(count: usize) -> Ec2Result<()> {
    if count > MAX_GROUPS_PER_INTERFACE {
        return Err(Ec2Error::client(
            "SecurityGroupsPerInterfaceLimitExceeded",
            "You have exceeded the maximum number of security groups allowed per network interface.",
        ));
    }
    Ok(())
}
