//! Changing and listing security group rules: AuthorizeSecurityGroupIngress/Egress,
//! RevokeSecurityGroupIngress/Egress, DescribeSecurityGroupRules and
//! ModifySecurityGroupRules.

use catalog::ResourceRow;

use crate::query::{Filter, Page, TagSpecification, check_filters, matches, tags_for};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

use super::rules::{
    self, IpPermission, PermissionSource, RuleDoc, RuleSource, RuleView, check_description,
    check_ports, check_rule_cidr, check_rule_ipv6, normalize_protocol,
};
use super::{GROUP_KIND, GroupDoc, decode, encode};

/// One `SecurityGroupRule.N` of ModifySecurityGroupRules: the rule's new definition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleUpdate {
    /// `sgr-…`.
    pub rule_id: String,
    /// IpProtocol.
    pub protocol: String,
    /// FromPort.
    pub from_port: Option<i64>,
    /// ToPort.
    pub to_port: Option<i64>,
    /// CidrIpv4.
    pub cidr_ipv4: Option<String>,
    /// CidrIpv6.
    pub cidr_ipv6: Option<String>,
    /// PrefixListId.
    pub prefix_list_id: Option<String>,
    /// ReferencedGroupId.
    pub referenced_group_id: Option<String>,
    /// Description.
    pub description: Option<String>,
}

fn rule_not_found(id: &str) -> Ec2Error {
    Ec2Error::client(
        "InvalidSecurityGroupRuleId.NotFound",
        format!("The security group rule ID '{id}' does not exist"),
    )
}

impl Cloud {
    /// Resolves a requested source into a stored one.
    fn rule_source(
        &self,
        caller: &Caller,
        vpc_id: &str,
        source: &PermissionSource,
    ) -> Ec2Result<RuleSource> {
        Ok(match source {
            PermissionSource::Cidr(c) => RuleSource::Cidr(check_rule_cidr(c)?),
            PermissionSource::Ipv6(c) => RuleSource::Ipv6(check_rule_ipv6(c)?),
            PermissionSource::PrefixList(pl) => {
                ids::check("pl", "InvalidPrefixListID.Malformed", pl)?;
                return Err(Ec2Error::client(
                    "InvalidPrefixListId.NotFound",
                    format!("The prefix list '{pl}' does not exist"),
                ));
            }
            PermissionSource::Group {
                group_id,
                group_name,
                user_id,
            } => {
                let shown = group_id.as_deref().or(group_name.as_deref()).unwrap_or("");
                if let Some(user) = user_id
                    && user != &caller.account_id
                {
                    return Err(super::security_groups::group_not_found(shown));
                }
                let id = match (group_id, group_name) {
                    (Some(id), _) => self.owned_group(caller, id)?.0.id,
                    (None, Some(name)) => {
                        self.group_by_name(caller, vpc_id, name)?
                            .ok_or_else(|| super::security_groups::group_not_found(name))?
                            .0
                            .id
                    }
                    (None, None) => {
                        return Err(Ec2Error::missing("GroupId"));
                    }
                };
                RuleSource::Group {
                    group_id: id,
                    user_id: caller.account_id.clone(),
                }
            }
        })
    }

    /// The rules `perms` stand for, checked and resolved.
    fn expand(
        &self,
        caller: &Caller,
        vpc_id: &str,
        egress: bool,
        perms: &[IpPermission],
    ) -> Ec2Result<Vec<RuleDoc>> {
        if perms.is_empty() {
            return Err(Ec2Error::missing("IpPermissions"));
        }
        let mut out = Vec::new();
        for p in perms {
            let protocol = normalize_protocol(&p.protocol)?;
            let ports = check_ports(&protocol, p.from_port, p.to_port)?;
            if p.sources.is_empty() {
                return Err(Ec2Error::invalid_value(
                    "Each permission must name a source: a CIDR, a prefix list or a security group.",
                ));
            }
            for (source, description) in &p.sources {
                check_description(description)?;
                let source = self.rule_source(caller, vpc_id, source)?;
                out.push(rules::new_rule(
                    egress,
                    &protocol,
                    ports,
                    source,
                    description.clone(),
                ));
            }
        }
        Ok(out)
    }

    fn save_group(&self, row: &ResourceRow, doc: &GroupDoc) -> Ec2Result<()> {
        self.catalog
            .update_resource(&row.id, &row.state, &encode(doc)?)?;
        Ok(())
    }

    fn rule_view(&self, row: &ResourceRow, rule: RuleDoc, tags: Vec<(String, String)>) -> RuleView {
        RuleView {
            arn: super::arn(
                &row.region,
                &row.account_id,
                "security-group-rule",
                &rule.id,
            ),
            group_id: row.id.clone(),
            owner_id: row.account_id.clone(),
            rule,
            tags,
        }
    }

    /// AuthorizeSecurityGroupIngress / AuthorizeSecurityGroupEgress: adds the rules
    /// (all or none: a rule that exists is `InvalidPermission.Duplicate`).
    pub fn authorize_security_group(
        &self,
        caller: &Caller,
        group_id: Option<&str>,
        group_name: Option<&str>,
        egress: bool,
        perms: &[IpPermission],
        tag_specs: &[TagSpecification],
    ) -> Ec2Result<Vec<RuleView>> {
        let tags = tags_for(tag_specs, "security-group-rule")?;
        let guard = self.vpc_guard(caller)?;
        let (row, mut doc) = self.target_group(caller, group_id, group_name)?;
        let new = self.expand(caller, &doc.vpc_id, egress, perms)?;
        rules::add_rules(&mut doc.rules, &new)?;
        self.save_group(&row, &doc)?;
        for rule in &new {
            self.catalog.set_tags(&rule.id, &tags)?;
        }
        drop(guard);
        if !egress {
            self.security_groups_changed(std::slice::from_ref(&row.id));
        }
        Ok(new
            .into_iter()
            .map(|r| self.rule_view(&row, r, tags.clone()))
            .collect())
    }

    /// RevokeSecurityGroupIngress / RevokeSecurityGroupEgress: removes the rules named by
    /// permission or by `SecurityGroupRuleId.N` (all or none). Returns the group's id
    /// and the removed rules.
    pub fn revoke_security_group(
        &self,
        caller: &Caller,
        group_id: Option<&str>,
        group_name: Option<&str>,
        egress: bool,
        perms: &[IpPermission],
        rule_ids: &[String],
    ) -> Ec2Result<(String, Vec<RuleDoc>)> {
        for id in rule_ids {
            ids::check("sgr", "InvalidSecurityGroupRuleId.Malformed", id)?;
        }
        let guard = self.vpc_guard(caller)?;
        let (row, mut doc) = self.target_group(caller, group_id, group_name)?;
        let mut removed = Vec::new();
        if !perms.is_empty() || rule_ids.is_empty() {
            let wanted = self.expand(caller, &doc.vpc_id, egress, perms)?;
            removed = rules::remove_rules(&mut doc.rules, &wanted)?;
        }
        for id in rule_ids {
            let pos = doc
                .rules
                .iter()
                .position(|r| &r.id == id && r.egress == egress)
                .ok_or_else(|| rule_not_found(id))?;
            removed.push(doc.rules.remove(pos));
        }
        self.save_group(&row, &doc)?;
        for rule in &removed {
            self.catalog.clear_tags(&rule.id)?;
        }
        drop(guard);
        if !egress {
            self.security_groups_changed(std::slice::from_ref(&row.id));
        }
        Ok((row.id, removed))
    }

    /// DescribeSecurityGroupRules: the rules of the caller's groups.
    pub fn describe_security_group_rules(
        &self,
        caller: &Caller,
        rule_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<RuleView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !rule_ids.is_empty())?;
        for id in rule_ids {
            ids::check("sgr", "InvalidSecurityGroupRuleId.Malformed", id)?;
        }
        self.ensure_default_vpc(caller)?;
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (row, _) in self.owned_rows(caller, GROUP_KIND)? {
            let doc: GroupDoc = decode(&row)?;
            for rule in doc.rules {
                if !rule_ids.is_empty() && !rule_ids.contains(&rule.id) {
                    continue;
                }
                seen.push(rule.id.clone());
                let tags = all_tags.get(&rule.id).cloned().unwrap_or_default();
                let view = self.rule_view(&row, rule, tags);
                if matches(&view, filters)? {
                    out.push(view);
                }
            }
        }
        if let Some(missing) = rule_ids.iter().find(|id| !seen.contains(id)) {
            return Err(rule_not_found(missing));
        }
        out.sort_by(|a, b| a.rule.id.cmp(&b.rule.id));
        Ok(page.apply(out, |v| &v.rule.id))
    }

    /// ModifySecurityGroupRules: replaces the definition of rules of one group (all or
    /// none), keeping their ids.
    pub fn modify_security_group_rules(
        &self,
        caller: &Caller,
        group_id: &str,
        updates: &[RuleUpdate],
    ) -> Ec2Result<()> {
        if updates.is_empty() {
            return Err(Ec2Error::missing("SecurityGroupRule"));
        }
        let guard = self.vpc_guard(caller)?;
        let (row, mut doc) = self.owned_group(caller, group_id)?;
        let mut changed_ingress = false;
        for u in updates {
            let pos = doc
                .rules
                .iter()
                .position(|r| r.id == u.rule_id)
                .ok_or_else(|| rule_not_found(&u.rule_id))?;
            let source = match (
                &u.cidr_ipv4,
                &u.cidr_ipv6,
                &u.prefix_list_id,
                &u.referenced_group_id,
            ) {
                (Some(c), None, None, None) => PermissionSource::Cidr(c.clone()),
                (None, Some(c), None, None) => PermissionSource::Ipv6(c.clone()),
                (None, None, Some(p), None) => PermissionSource::PrefixList(p.clone()),
                (None, None, None, Some(g)) => PermissionSource::Group {
                    group_id: Some(g.clone()),
                    group_name: None,
                    user_id: None,
                },
                _ => {
                    return Err(Ec2Error::invalid_value(
                        "Exactly one of CidrIpv4, CidrIpv6, PrefixListId and ReferencedGroupId must be given.",
                    ));
                }
            };
            let old = &doc.rules[pos];
            let perm = IpPermission {
                protocol: u.protocol.clone(),
                from_port: u.from_port,
                to_port: u.to_port,
                sources: vec![(source, u.description.clone())],
            };
            let mut new = self.expand(caller, &doc.vpc_id, old.egress, &[perm])?;
            let mut rule = new
                .pop()
                .ok_or_else(|| Ec2Error::internal("modify rule", "no rule"))?;
            rule.id = old.id.clone();
            changed_ingress |= !rule.egress;
            if doc
                .rules
                .iter()
                .any(|r| r.id != rule.id && r.same_as(&rule))
            {
                return Err(rules::duplicate(&rule));
            }
            doc.rules[pos] = rule;
        }
        self.save_group(&row, &doc)?;
        drop(guard);
        if changed_ingress {
            self.security_groups_changed(std::slice::from_ref(&row.id));
        }
        Ok(())
    }
}
