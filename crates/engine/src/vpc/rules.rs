//! Security group rules: protocol and port normalisation, the rule documents kept in a
//! group, their grouping into `IpPermissions`, and matching for duplicates and revokes.

use serde::{Deserialize, Serialize};

use crate::network::IngressRule;
use crate::query::Filterable;
use crate::{Ec2Error, Ec2Result, ids};

use super::Cidr;
use super::cidr::is_ipv6_cidr;

/// Who a rule allows (ingress) or lets be reached (egress).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// An IPv4 CIDR.
    Cidr(String),
    /// An IPv6 CIDR.
    Ipv6(String),
    /// A prefix list (`pl-…`).
    PrefixList(String),
    /// Members of a security group.
    Group {
        /// `sg-…`.
        group_id: String,
        /// Its owner.
        user_id: String,
    },
}

/// One rule of a group, as stored: one protocol/port range and one source.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleDoc {
    /// `sgr-…`.
    pub id: String,
    /// Egress rather than ingress.
    pub egress: bool,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1` or another protocol number.
    pub protocol: String,
    /// First port or ICMP type (-1: all).
    pub from_port: i64,
    /// Last port or ICMP code (-1: all).
    pub to_port: i64,
    /// Peer.
    pub source: RuleSource,
    /// Description.
    pub description: Option<String>,
}

impl RuleDoc {
    /// True if `other` is the same rule (description aside).
    pub fn same_as(&self, other: &RuleDoc) -> bool {
        self.egress == other.egress
            && self.protocol == other.protocol
            && self.from_port == other.from_port
            && self.to_port == other.to_port
            && self.source == other.source
    }
}

/// A source of a requested permission, before group names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermissionSource {
    /// `IpRanges.N.CidrIp` / `CidrIp`.
    Cidr(String),
    /// `Ipv6Ranges.N.CidrIpv6`.
    Ipv6(String),
    /// `PrefixListIds.N.PrefixListId`.
    PrefixList(String),
    /// `Groups.N` / `SourceSecurityGroupName`.
    Group {
        /// GroupId.
        group_id: Option<String>,
        /// GroupName.
        group_name: Option<String>,
        /// UserId.
        user_id: Option<String>,
    },
}

/// One requested `IpPermissions.N` (or the legacy flat parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpPermission {
    /// IpProtocol as given.
    pub protocol: String,
    /// FromPort.
    pub from_port: Option<i64>,
    /// ToPort.
    pub to_port: Option<i64>,
    /// Sources with their descriptions.
    pub sources: Vec<(PermissionSource, Option<String>)>,
}

/// Rules of one protocol and port range, as `ipPermissions` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionSet {
    /// Protocol.
    pub protocol: String,
    /// First port.
    pub from_port: i64,
    /// Last port.
    pub to_port: i64,
    /// Sources with descriptions.
    pub sources: Vec<(RuleSource, Option<String>)>,
}

/// A rule as DescribeSecurityGroupRules returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleView {
    /// The group that has the rule.
    pub group_id: String,
    /// The group's owner.
    pub owner_id: String,
    /// The rule.
    pub rule: RuleDoc,
    /// `arn:aws:ec2:…:security-group-rule/sgr-…`.
    pub arn: String,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for RuleView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "group-id" => Some(vec![self.group_id.clone()]),
            "security-group-rule-id" => Some(vec![self.rule.id.clone()]),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// EC2's name of an `IpProtocol`: `tcp`, `udp`, `icmp`, `icmpv6`, `-1` (all) or the
/// protocol number (0–255).
pub fn normalize_protocol(raw: &str) -> Ec2Result<String> {
    let lower = raw.trim().to_ascii_lowercase();
    let number =
        if !lower.is_empty() && lower.len() <= 3 && lower.bytes().all(|b| b.is_ascii_digit()) {
            match lower.parse::<u16>() {
                Ok(v) if v <= 255 => Some(v),
                _ => return Err(unknown_protocol(raw)),
            }
        } else {
            None
        };
    Ok(match (lower.as_str(), number) {
        ("tcp", _) | (_, Some(6)) => "tcp".into(),
        ("udp", _) | (_, Some(17)) => "udp".into(),
        ("icmp", _) | (_, Some(1)) => "icmp".into(),
        ("icmpv6", _) | (_, Some(58)) => "icmpv6".into(),
        ("-1" | "all", _) => "-1".into(),
        (_, Some(n)) => n.to_string(),
        _ => return Err(unknown_protocol(raw)),
    })
}

fn unknown_protocol(raw: &str) -> Ec2Error {
    Ec2Error::invalid_value(format!(
        "Invalid value '{raw}' for IP protocol. Unknown protocol."
    ))
}

/// The port range of a rule for `protocol` (normalised), checked as EC2 does.
pub fn check_ports(protocol: &str, from: Option<i64>, to: Option<i64>) -> Ec2Result<(i64, i64)> {
    match protocol {
        "tcp" | "udp" => {
            let (Some(from), Some(to)) = (from, to) else {
                return Err(Ec2Error::invalid_value(
                    "Invalid value 'null' for portRange. Must specify both from and to ports with TCP/UDP.",
                ));
            };
            if !(0..=65535).contains(&from) || !(0..=65535).contains(&to) || from > to {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid TCP/UDP port range: from port {from} to port {to}."
                )));
            }
            Ok((from, to))
        }
        "icmp" | "icmpv6" => {
            let (t, c) = (from.unwrap_or(-1), to.unwrap_or(-1));
            if !(-1..=255).contains(&t) || !(-1..=255).contains(&c) {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid value '{t}' for ICMP type or '{c}' for ICMP code."
                )));
            }
            Ok((t, c))
        }
        _ => Ok((-1, -1)),
    }
}

/// Checks an IPv4 CIDR of a rule.
pub fn check_rule_cidr(text: &str) -> Ec2Result<String> {
    Cidr::parse(text, true)
        .map(|c| c.to_string())
        .ok_or_else(|| Ec2Error::invalid_value(format!("CIDR block {text} is malformed")))
}

/// Checks an IPv6 CIDR of a rule.
pub fn check_rule_ipv6(text: &str) -> Ec2Result<String> {
    if is_ipv6_cidr(text) {
        Ok(text.to_string())
    } else {
        Err(Ec2Error::invalid_value(format!(
            "CIDR block {text} is malformed"
        )))
    }
}

/// Checks a rule description (at most 255 characters).
pub fn check_description(text: &Option<String>) -> Ec2Result<()> {
    if let Some(d) = text
        && d.chars().count() > 255
    {
        return Err(Ec2Error::invalid_value(
            "Rule descriptions must be at most 255 characters",
        ));
    }
    Ok(())
}

/// A new rule with a fresh id.
pub fn new_rule(
    egress: bool,
    protocol: &str,
    ports: (i64, i64),
    source: RuleSource,
    description: Option<String>,
) -> RuleDoc {
    RuleDoc {
        id: ids::new_id("sgr"),
        egress,
        protocol: protocol.to_string(),
        from_port: ports.0,
        to_port: ports.1,
        source,
        description,
    }
}

/// The rules of a VPC's default group: all traffic from the group, all traffic out.
pub fn default_rules(group_id: &str, account_id: &str) -> Vec<RuleDoc> {
    vec![
        new_rule(
            false,
            "-1",
            (-1, -1),
            RuleSource::Group {
                group_id: group_id.to_string(),
                user_id: account_id.to_string(),
            },
            None,
        ),
        new_rule(
            true,
            "-1",
            (-1, -1),
            RuleSource::Cidr("0.0.0.0/0".into()),
            None,
        ),
    ]
}

/// The rules of one direction grouped by protocol and port range, in order.
pub fn permission_sets(rules: &[RuleDoc], egress: bool) -> Vec<PermissionSet> {
    let mut out: Vec<PermissionSet> = Vec::new();
    for r in rules.iter().filter(|r| r.egress == egress) {
        let entry = (r.source.clone(), r.description.clone());
        match out.iter_mut().find(|p| {
            p.protocol == r.protocol && p.from_port == r.from_port && p.to_port == r.to_port
        }) {
            Some(p) => p.sources.push(entry),
            None => out.push(PermissionSet {
                protocol: r.protocol.clone(),
                from_port: r.from_port,
                to_port: r.to_port,
                sources: vec![entry],
            }),
        }
    }
    out
}

/// The ingress rules of a group, flattened for the machine layer.
pub(crate) fn ingress_of(group_id: &str, rules: &[RuleDoc]) -> Vec<IngressRule> {
    permission_sets(rules, false)
        .into_iter()
        .map(|p| IngressRule {
            group_id: group_id.to_string(),
            protocol: p.protocol,
            from_port: p.from_port,
            to_port: p.to_port,
            cidrs: p
                .sources
                .iter()
                .filter_map(|(s, _)| match s {
                    RuleSource::Cidr(c) => Some(c.clone()),
                    _ => None,
                })
                .collect(),
            source_groups: p
                .sources
                .iter()
                .filter_map(|(s, _)| match s {
                    RuleSource::Group { group_id, .. } => Some(group_id.clone()),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}

/// Values of the `ip-permission.*` (or `egress.ip-permission.*`) filters.
pub fn permission_filter_values(
    rules: &[RuleDoc],
    egress: bool,
    field: &str,
) -> Option<Vec<String>> {
    let of = |f: &dyn Fn(&RuleDoc) -> Option<String>| {
        Some(
            rules
                .iter()
                .filter(|r| r.egress == egress)
                .filter_map(f)
                .collect::<Vec<_>>(),
        )
    };
    match field {
        "protocol" => of(&|r| Some(r.protocol.clone())),
        "from-port" => of(&|r| Some(r.from_port.to_string())),
        "to-port" => of(&|r| Some(r.to_port.to_string())),
        "cidr" => of(&|r| match &r.source {
            RuleSource::Cidr(c) => Some(c.clone()),
            _ => None,
        }),
        "ipv6-cidr" => of(&|r| match &r.source {
            RuleSource::Ipv6(c) => Some(c.clone()),
            _ => None,
        }),
        "prefix-list-id" => of(&|r| match &r.source {
            RuleSource::PrefixList(c) => Some(c.clone()),
            _ => None,
        }),
        "group-id" => of(&|r| match &r.source {
            RuleSource::Group { group_id, .. } => Some(group_id.clone()),
            _ => None,
        }),
        "user-id" => of(&|r| match &r.source {
            RuleSource::Group { user_id, .. } => Some(user_id.clone()),
            _ => None,
        }),
        _ => None,
    }
}

/// Adds `new` rules to `existing`, failing with `InvalidPermission.Duplicate` if one
/// is already there (or given twice).
pub fn add_rules(existing: &mut Vec<RuleDoc>, new: &[RuleDoc]) -> Ec2Result<()> {
    for (i, rule) in new.iter().enumerate() {
        if existing.iter().chain(&new[..i]).any(|r| r.same_as(rule)) {
            return Err(duplicate(rule));
        }
    }
    existing.extend(new.iter().cloned());
    Ok(())
}

/// `InvalidPermission.Duplicate` for `rule`, worded as EC2 does.
pub fn duplicate(rule: &RuleDoc) -> Ec2Error {
    Ec2Error::client(
        "InvalidPermission.Duplicate",
        format!(
            "the specified rule \"peer: {}, {}, from port: {}, to port: {}, ALLOW\" already exists",
            describe_source(&rule.source),
            rule.protocol.to_uppercase(),
            rule.from_port,
            rule.to_port
        ),
    )
}

/// Removes the rules matching `wanted` from `existing` and returns them; fails with
/// `InvalidPermission.NotFound` (nothing removed) if one does not exist.
pub fn remove_rules(existing: &mut Vec<RuleDoc>, wanted: &[RuleDoc]) -> Ec2Result<Vec<RuleDoc>> {
    let mut removed = Vec::new();
    for w in wanted {
        match existing.iter().find(|r| r.same_as(w)) {
            Some(r) if !removed.iter().any(|x: &RuleDoc| x.id == r.id) => removed.push(r.clone()),
            _ => {
                return Err(Ec2Error::client(
                    "InvalidPermission.NotFound",
                    "The specified rule does not exist in this security group.",
                ));
            }
        }
    }
    existing.retain(|r| !removed.iter().any(|x| x.id == r.id));
    Ok(removed)
}

fn describe_source(s: &RuleSource) -> String {
    match s {
        RuleSource::Cidr(c) | RuleSource::Ipv6(c) | RuleSource::PrefixList(c) => c.clone(),
        RuleSource::Group { group_id, .. } => group_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_normalise() {
        assert_eq!(normalize_protocol("TCP").unwrap(), "tcp");
        assert_eq!(normalize_protocol("6").unwrap(), "tcp");
        assert_eq!(normalize_protocol("17").unwrap(), "udp");
        assert_eq!(normalize_protocol("1").unwrap(), "icmp");
        assert_eq!(normalize_protocol("all").unwrap(), "-1");
        assert_eq!(normalize_protocol("-1").unwrap(), "-1");
        assert_eq!(normalize_protocol("50").unwrap(), "50");
        assert_eq!(normalize_protocol("058").unwrap(), "icmpv6");
        assert!(normalize_protocol("256").is_err());
        assert!(normalize_protocol("banana").is_err());
        assert!(normalize_protocol("").is_err());
    }

    #[test]
    fn ports_checked() {
        assert_eq!(check_ports("tcp", Some(22), Some(22)).unwrap(), (22, 22));
        assert!(check_ports("tcp", Some(22), None).is_err());
        assert!(check_ports("udp", Some(10), Some(5)).is_err());
        assert!(check_ports("tcp", Some(0), Some(65536)).is_err());
        assert_eq!(check_ports("icmp", None, None).unwrap(), (-1, -1));
        assert_eq!(check_ports("icmp", Some(8), Some(0)).unwrap(), (8, 0));
        assert_eq!(check_ports("-1", Some(1), Some(2)).unwrap(), (-1, -1));
        assert!(check_rule_cidr("0.0.0.0/0").is_ok());
        assert!(check_rule_cidr("10.0.0.1/8").is_err());
        assert!(check_rule_ipv6("::/0").is_ok());
    }

    #[test]
    fn duplicates_and_revokes() {
        let ssh = || {
            new_rule(
                false,
                "tcp",
                (22, 22),
                RuleSource::Cidr("0.0.0.0/0".into()),
                None,
            )
        };
        let mut rules = default_rules("sg-12345678", "111122223333");
        add_rules(&mut rules, &[ssh()]).unwrap();
        assert_eq!(rules.len(), 3);
        let dup = add_rules(&mut rules, &[ssh()]).unwrap_err();
        assert_eq!(dup.code, "InvalidPermission.Duplicate");
        let twice = add_rules(
            &mut rules,
            &[
                new_rule(
                    false,
                    "udp",
                    (53, 53),
                    RuleSource::Cidr("10.0.0.0/8".into()),
                    None,
                ),
                new_rule(
                    false,
                    "udp",
                    (53, 53),
                    RuleSource::Cidr("10.0.0.0/8".into()),
                    None,
                ),
            ],
        )
        .unwrap_err();
        assert_eq!(twice.code, "InvalidPermission.Duplicate");
        assert_eq!(rules.len(), 3, "a failed authorize adds nothing");
        // A description does not make a rule different.
        let described = new_rule(
            false,
            "tcp",
            (22, 22),
            RuleSource::Cidr("0.0.0.0/0".into()),
            Some("ssh".into()),
        );
        assert!(described.same_as(&ssh()));
        let other_port = new_rule(
            false,
            "tcp",
            (23, 23),
            RuleSource::Cidr("0.0.0.0/0".into()),
            None,
        );
        let missing = remove_rules(&mut rules, &[ssh(), other_port]).unwrap_err();
        assert_eq!(missing.code, "InvalidPermission.NotFound");
        assert_eq!(rules.len(), 3, "a failed revoke removes nothing");
        let removed = remove_rules(&mut rules, &[described]).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(rules.len(), 2);
    }

    #[test]
    fn grouping_and_flattening() {
        let mut rules = default_rules("sg-12345678", "111122223333");
        for cidr in ["10.0.0.0/8", "192.168.0.0/16"] {
            rules.push(new_rule(
                false,
                "tcp",
                (80, 80),
                RuleSource::Cidr(cidr.into()),
                None,
            ));
        }
        let sets = permission_sets(&rules, false);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[1].sources.len(), 2);
        let flat = ingress_of("sg-12345678", &rules);
        assert_eq!(flat[0].source_groups, ["sg-12345678"]);
        assert_eq!(flat[1].cidrs, ["10.0.0.0/8", "192.168.0.0/16"]);
        assert_eq!(
            permission_filter_values(&rules, true, "cidr").unwrap(),
            ["0.0.0.0/0"]
        );
    }
}
