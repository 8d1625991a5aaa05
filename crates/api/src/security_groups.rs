//! Security group actions: parsing `IpPermissions.N` (and the legacy flat form) and
//! rendering groups and rules as botocore's model shapes them (`securityGroupInfo`,
//! `ipPermissions`, `securityGroupRuleSet`, …).

use engine::query::{Filter, Page, TagSpecification};
use engine::vpc::{
    GroupView, IpPermission, PermissionSource, RuleDoc, RuleSource, RuleUpdate, RuleView,
    permission_sets,
};
use engine::{Caller, Cloud, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One security group request, typed.
#[derive(Debug, Clone)]
pub enum GroupAction {
    /// CreateSecurityGroup.
    Create {
        /// GroupName.
        name: String,
        /// GroupDescription.
        description: String,
        /// VpcId.
        vpc_id: Option<String>,
        /// TagSpecification.N.
        tags: Vec<TagSpecification>,
    },
    /// DeleteSecurityGroup.
    Delete {
        /// GroupId.
        id: Option<String>,
        /// GroupName.
        name: Option<String>,
    },
    /// DescribeSecurityGroups.
    Describe {
        /// GroupId.N.
        ids: Vec<String>,
        /// GroupName.N.
        names: Vec<String>,
        /// Filter.N.
        filters: Vec<Filter>,
        /// MaxResults / NextToken.
        page: Page,
    },
    /// AuthorizeSecurityGroupIngress / AuthorizeSecurityGroupEgress.
    Authorize {
        /// GroupId.
        id: Option<String>,
        /// GroupName.
        name: Option<String>,
        /// Egress.
        egress: bool,
        /// IpPermissions.N or the flat form.
        perms: Vec<IpPermission>,
        /// TagSpecification.N.
        tags: Vec<TagSpecification>,
    },
    /// RevokeSecurityGroupIngress / RevokeSecurityGroupEgress.
    Revoke {
        /// GroupId.
        id: Option<String>,
        /// GroupName.
        name: Option<String>,
        /// Egress.
        egress: bool,
        /// IpPermissions.N or the flat form.
        perms: Vec<IpPermission>,
        /// SecurityGroupRuleId.N.
        rule_ids: Vec<String>,
    },
    /// DescribeSecurityGroupRules.
    DescribeRules {
        /// SecurityGroupRuleId.N.
        ids: Vec<String>,
        /// Filter.N.
        filters: Vec<Filter>,
        /// MaxResults / NextToken.
        page: Page,
    },
    /// ModifySecurityGroupRules.
    ModifyRules {
        /// GroupId.
        group_id: String,
        /// SecurityGroupRule.N.
        updates: Vec<RuleUpdate>,
    },
}

/// `IpPermissions.N.…`, then the legacy flat parameters.
fn permissions(p: &Params) -> Ec2Result<Vec<IpPermission>> {
    let mut out = Vec::new();
    for i in p.indexes("IpPermissions")? {
        let k = |s: &str| format!("IpPermissions.{i}.{s}");
        let mut sources = Vec::new();
        for j in p.indexes(&k("IpRanges"))? {
            if let Some(c) = p.string(&k(&format!("IpRanges.{j}.CidrIp"))) {
                sources.push((
                    PermissionSource::Cidr(c),
                    p.string(&k(&format!("IpRanges.{j}.Description"))),
                ));
            }
        }
        for j in p.indexes(&k("Ipv6Ranges"))? {
            if let Some(c) = p.string(&k(&format!("Ipv6Ranges.{j}.CidrIpv6"))) {
                sources.push((
                    PermissionSource::Ipv6(c),
                    p.string(&k(&format!("Ipv6Ranges.{j}.Description"))),
                ));
            }
        }
        for j in p.indexes(&k("PrefixListIds"))? {
            if let Some(c) = p.string(&k(&format!("PrefixListIds.{j}.PrefixListId"))) {
                sources.push((
                    PermissionSource::PrefixList(c),
                    p.string(&k(&format!("PrefixListIds.{j}.Description"))),
                ));
            }
        }
        for list in ["Groups", "UserIdGroupPairs"] {
            for j in p.indexes(&k(list))? {
                let g = |s: &str| p.string(&k(&format!("{list}.{j}.{s}")));
                sources.push((
                    PermissionSource::Group {
                        group_id: g("GroupId"),
                        group_name: g("GroupName"),
                        user_id: g("UserId"),
                    },
                    g("Description"),
                ));
            }
        }
        out.push(IpPermission {
            protocol: p.string(&k("IpProtocol")).unwrap_or_default(),
            from_port: p.int(&k("FromPort"))?,
            to_port: p.int(&k("ToPort"))?,
            sources,
        });
    }
    let cidr = p.string("CidrIp");
    let source_group = p.string("SourceSecurityGroupName");
    if p.get("IpProtocol").is_some() || cidr.is_some() || source_group.is_some() {
        let mut sources = Vec::new();
        if let Some(c) = cidr {
            sources.push((PermissionSource::Cidr(c), None));
        }
        if let Some(name) = source_group.clone() {
            sources.push((
                PermissionSource::Group {
                    group_id: None,
                    group_name: Some(name),
                    user_id: p.string("SourceSecurityGroupOwnerId"),
                },
                None,
            ));
        }
        let protocol = match p.string("IpProtocol") {
            Some(proto) => proto,
            None if source_group.is_some() => "-1".into(),
            None => return Err(engine::Ec2Error::missing("IpProtocol")),
        };
        out.push(IpPermission {
            protocol,
            from_port: p.int("FromPort")?,
            to_port: p.int("ToPort")?,
            sources,
        });
    }
    Ok(out)
}

fn rule_updates(p: &Params) -> Ec2Result<Vec<RuleUpdate>> {
    p.indexes("SecurityGroupRule")?
        .into_iter()
        .map(|i| {
            let k = |s: &str| format!("SecurityGroupRule.{i}.{s}");
            let r = |s: &str| p.string(&k(&format!("SecurityGroupRule.{s}")));
            Ok(RuleUpdate {
                rule_id: p.required(&k("SecurityGroupRuleId"))?,
                protocol: r("IpProtocol").unwrap_or_else(|| "-1".into()),
                from_port: p.int(&k("SecurityGroupRule.FromPort"))?,
                to_port: p.int(&k("SecurityGroupRule.ToPort"))?,
                cidr_ipv4: r("CidrIpv4"),
                cidr_ipv6: r("CidrIpv6"),
                prefix_list_id: r("PrefixListId"),
                referenced_group_id: r("ReferencedGroupId"),
                description: r("Description"),
            })
        })
        .collect()
}

impl GroupAction {
    /// Parses a security group action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<GroupAction>> {
        let egress = name.ends_with("Egress");
        Ok(Some(match name {
            "CreateSecurityGroup" => GroupAction::Create {
                name: p.required("GroupName")?,
                description: p.required("GroupDescription")?,
                vpc_id: p.string("VpcId"),
                tags: p.tag_specifications()?,
            },
            "DeleteSecurityGroup" => GroupAction::Delete {
                id: p.string("GroupId"),
                name: p.string("GroupName"),
            },
            "DescribeSecurityGroups" => GroupAction::Describe {
                ids: p.list("GroupId")?,
                names: p.list("GroupName")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "AuthorizeSecurityGroupIngress" | "AuthorizeSecurityGroupEgress" => {
                GroupAction::Authorize {
                    id: p.string("GroupId"),
                    name: if egress { None } else { p.string("GroupName") },
                    egress,
                    perms: permissions(p)?,
                    tags: p.tag_specifications()?,
                }
            }
            "RevokeSecurityGroupIngress" | "RevokeSecurityGroupEgress" => GroupAction::Revoke {
                id: p.string("GroupId"),
                name: if egress { None } else { p.string("GroupName") },
                egress,
                perms: permissions(p)?,
                rule_ids: p.list("SecurityGroupRuleId")?,
            },
            "DescribeSecurityGroupRules" => GroupAction::DescribeRules {
                ids: p.list("SecurityGroupRuleId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "ModifySecurityGroupRules" => GroupAction::ModifyRules {
                group_id: p.required("GroupId")?,
                updates: rule_updates(p)?,
            },
            _ => return Ok(None),
        }))
    }
}

fn permissions_xml(x: &mut Xml, name: &str, rules: &[RuleDoc], egress: bool) {
    let sets = permission_sets(rules, egress);
    x.list(name, &sets, |x, s| {
        x.text("ipProtocol", &s.protocol);
        if s.protocol != "-1" {
            x.text("fromPort", &s.from_port.to_string())
                .text("toPort", &s.to_port.to_string());
        }
        let groups: Vec<(&String, &String, &Option<String>)> = s
            .sources
            .iter()
            .filter_map(|(src, d)| match src {
                RuleSource::Group { group_id, user_id } => Some((group_id, user_id, d)),
                _ => None,
            })
            .collect();
        x.list("groups", &groups, |x, (group_id, user_id, desc)| {
            x.opt("description", desc.as_ref())
                .text("userId", user_id)
                .text("groupId", group_id);
        });
        // `list` writes one item per element: filter first so no empty items appear.
        let pick = |f: fn(&RuleSource) -> Option<&String>| -> Vec<(String, Option<String>)> {
            s.sources
                .iter()
                .filter_map(|(src, d)| f(src).map(|v| (v.clone(), d.clone())))
                .collect()
        };
        let v4 = pick(|s| match s {
            RuleSource::Cidr(c) => Some(c),
            _ => None,
        });
        let v6 = pick(|s| match s {
            RuleSource::Ipv6(c) => Some(c),
            _ => None,
        });
        let pl = pick(|s| match s {
            RuleSource::PrefixList(c) => Some(c),
            _ => None,
        });
        x.list("ipRanges", &v4, |x, (c, d)| {
            x.opt("description", d.as_ref()).text("cidrIp", c);
        });
        x.list("ipv6Ranges", &v6, |x, (c, d)| {
            x.opt("description", d.as_ref()).text("cidrIpv6", c);
        });
        x.list("prefixListIds", &pl, |x, (c, d)| {
            x.opt("description", d.as_ref()).text("prefixListId", c);
        });
    });
}

fn group_xml(x: &mut Xml, g: &GroupView) {
    x.text("ownerId", &g.owner_id)
        .text("groupId", &g.id)
        .text("groupName", &g.doc.name)
        .text("groupDescription", &g.doc.description)
        .text("vpcId", &g.doc.vpc_id)
        .text("securityGroupArn", &g.arn);
    permissions_xml(x, "ipPermissions", &g.doc.rules, false);
    permissions_xml(x, "ipPermissionsEgress", &g.doc.rules, true);
    if !g.tags.is_empty() {
        x.tags(&g.tags);
    }
}

fn rule_fields(x: &mut Xml, r: &RuleDoc) {
    x.text("isEgress", &r.egress.to_string())
        .text("ipProtocol", &r.protocol)
        .text("fromPort", &r.from_port.to_string())
        .text("toPort", &r.to_port.to_string());
}

fn rule_xml(x: &mut Xml, v: &RuleView) {
    let r = &v.rule;
    x.text("securityGroupRuleId", &r.id)
        .text("groupId", &v.group_id)
        .text("groupOwnerId", &v.owner_id);
    rule_fields(x, r);
    match &r.source {
        RuleSource::Cidr(c) => x.text("cidrIpv4", c),
        RuleSource::Ipv6(c) => x.text("cidrIpv6", c),
        RuleSource::PrefixList(c) => x.text("prefixListId", c),
        RuleSource::Group { group_id, user_id } => x.elem("referencedGroupInfo", |x| {
            x.text("groupId", group_id).text("userId", user_id);
        }),
    };
    x.opt("description", r.description.as_ref());
    x.tags(&v.tags);
    x.text("securityGroupRuleArn", &v.arn);
}

fn revoked_xml(x: &mut Xml, group_id: &str, r: &RuleDoc) {
    x.text("securityGroupRuleId", &r.id)
        .text("groupId", group_id);
    rule_fields(x, r);
    match &r.source {
        RuleSource::Cidr(c) => x.text("cidrIpv4", c),
        RuleSource::Ipv6(c) => x.text("cidrIpv6", c),
        RuleSource::PrefixList(c) => x.text("prefixListId", c),
        RuleSource::Group { group_id, .. } => x.text("referencedGroupId", group_id),
    };
    x.opt("description", r.description.as_ref());
}

/// Runs a security group action.
pub fn execute(x: &mut Xml, cloud: &Cloud, caller: &Caller, action: GroupAction) -> Ec2Result<()> {
    match action {
        GroupAction::Create {
            name,
            description,
            vpc_id,
            tags,
        } => {
            let g = cloud.create_security_group(
                caller,
                &name,
                &description,
                vpc_id.as_deref(),
                &tags,
            )?;
            x.text("return", "true").text("groupId", &g.id);
            if !g.tags.is_empty() {
                x.tags(&g.tags);
            }
            x.text("securityGroupArn", &g.arn);
        }
        GroupAction::Delete { id, name } => {
            let id = cloud.delete_security_group(caller, id.as_deref(), name.as_deref())?;
            x.text("return", "true").text("groupId", &id);
        }
        GroupAction::Describe {
            ids,
            names,
            filters,
            page,
        } => {
            let (items, token) =
                cloud.describe_security_groups(caller, &ids, &names, &filters, &page)?;
            x.list("securityGroupInfo", &items, group_xml);
            x.opt("nextToken", token);
        }
        GroupAction::Authorize {
            id,
            name,
            egress,
            perms,
            tags,
        } => {
            let rules = cloud.authorize_security_group(
                caller,
                id.as_deref(),
                name.as_deref(),
                egress,
                &perms,
                &tags,
            )?;
            x.text("return", "true");
            x.list("securityGroupRuleSet", &rules, rule_xml);
        }
        GroupAction::Revoke {
            id,
            name,
            egress,
            perms,
            rule_ids,
        } => {
            let (group_id, removed) = cloud.revoke_security_group(
                caller,
                id.as_deref(),
                name.as_deref(),
                egress,
                &perms,
                &rule_ids,
            )?;
            x.text("return", "true");
            x.list("revokedSecurityGroupRuleSet", &removed, |x, r| {
                revoked_xml(x, &group_id, r)
            });
        }
        GroupAction::DescribeRules { ids, filters, page } => {
            let (items, token) =
                cloud.describe_security_group_rules(caller, &ids, &filters, &page)?;
            x.list("securityGroupRuleSet", &items, rule_xml);
            x.opt("nextToken", token);
        }
        GroupAction::ModifyRules { group_id, updates } => {
            cloud.modify_security_group_rules(caller, &group_id, &updates)?;
            x.text("return", "true");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_permission_forms() {
        let p = Params::parse(&[b"IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8&IpPermissions.1.IpRanges.1.Description=ssh&IpPermissions.1.Groups.1.GroupId=sg-12345678&IpPermissions.2.IpProtocol=-1&IpPermissions.2.Ipv6Ranges.1.CidrIpv6=::/0"]).unwrap();
        let perms = permissions(&p).unwrap();
        assert_eq!(perms.len(), 2);
        assert_eq!(perms[0].from_port, Some(22));
        assert_eq!(
            perms[0].sources[0],
            (
                PermissionSource::Cidr("10.0.0.0/8".into()),
                Some("ssh".into())
            )
        );
        assert!(matches!(
            &perms[0].sources[1].0,
            PermissionSource::Group { group_id: Some(g), .. } if g == "sg-12345678"
        ));
        assert_eq!(perms[1].sources.len(), 1);

        let flat =
            Params::parse(&[b"GroupId=sg-1&IpProtocol=tcp&FromPort=80&ToPort=81&CidrIp=0.0.0.0/0"])
                .unwrap();
        let perms = permissions(&flat).unwrap();
        assert_eq!(perms.len(), 1);
        assert_eq!(perms[0].protocol, "tcp");
        assert_eq!(perms[0].to_port, Some(81));

        let by_group = Params::parse(&[b"GroupName=web&SourceSecurityGroupName=lb"]).unwrap();
        let perms = permissions(&by_group).unwrap();
        assert_eq!(perms[0].protocol, "-1");

        let none = Params::parse(&[b"GroupId=sg-1"]).unwrap();
        assert!(permissions(&none).unwrap().is_empty());
    }
}
