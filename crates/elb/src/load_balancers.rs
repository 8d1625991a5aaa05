//! Load balancers: CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer, their
//! attributes, SetSecurityGroups / SetSubnets / SetIpAddressType, and the address each
//! takes from the pool.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use engine::query::{Filter, Page};

use crate::Elb;
use crate::attributes;
use crate::model::{
    self, LB_KIND, LISTENER_KIND, LbDoc, ListenerDoc, Stored, db, engine_caller, from_ec2,
    lb_not_found,
};

/// CanonicalHostedZoneId of application load balancers (us-east-1's).
const ALB_ZONE: &str = "Z35SXDOTRQ7X7K";
/// CanonicalHostedZoneId of network load balancers (us-east-1's).
const NLB_ZONE: &str = "Z26RNL4JYFTOTI";

/// Marker/PageSize paging over a list: `Marker` is the index of the next item.
pub fn page<T>(items: Vec<T>, p: &Params) -> QueryResult<(Vec<T>, Option<String>)> {
    let size = p.int_in("PageSize", 1, 400)?.unwrap_or(400) as usize;
    let start = match p.string("Marker") {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| QueryError::validation("The marker is not valid"))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + page.len() < total).then(|| (start + page.len()).to_string());
    Ok((page, next))
}

/// `<NextMarker>` if any.
pub fn next_marker(x: &mut Xml, next: Option<String>) {
    x.opt("NextMarker", next);
}

pub(crate) fn check_name(name: &str, what: &str) -> QueryResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(QueryError::validation(format!(
            "{what} name '{name}' cannot be longer than '32' characters, and can contain only alphanumeric characters and hyphens, and cannot begin or end with a hyphen"
        )));
    }
    if what == "Load balancer" && name.starts_with("internal-") {
        return Err(QueryError::validation(format!(
            "Load balancer name '{name}' cannot begin with 'internal-'"
        )));
    }
    Ok(())
}

impl Elb {
    /// The caller's load balancer, or `LoadBalancerNotFound`.
    pub(crate) fn lb(&self, caller: &Caller, arn: &str) -> QueryResult<Stored<LbDoc>> {
        self.get(caller, LB_KIND, arn)?.ok_or_else(lb_not_found)
    }

    /// (subnet, zone) pairs and their VPC, checked as AWS checks them.
    fn resolve_subnets(
        &self,
        caller: &Caller,
        ids: &[String],
        lb_type: &str,
    ) -> QueryResult<(String, Vec<(String, String)>)> {
        if ids.is_empty() {
            return Err(QueryError::validation(
                "At least one subnet must be specified",
            ));
        }
        let ec = engine_caller(caller);
        let mut out: Vec<(String, String)> = Vec::new();
        let mut vpc: Option<String> = None;
        for id in ids {
            let (views, _) = self
                .cloud
                .describe_subnets(&ec, std::slice::from_ref(id), &[], &Page::default())
                .map_err(|_| {
                    QueryError::new(
                        "SubnetNotFound",
                        format!("The subnet ID '{id}' is not valid"),
                    )
                })?;
            let Some(v) = views.into_iter().next() else {
                return Err(QueryError::new(
                    "SubnetNotFound",
                    format!("The subnet ID '{id}' is not valid"),
                ));
            };
            match &vpc {
                Some(x) if *x != v.doc.vpc_id => {
                    return Err(QueryError::new(
                        "InvalidSubnet",
                        "Subnets must all be in the same VPC",
                    ));
                }
                _ => vpc = Some(v.doc.vpc_id.clone()),
            }
            if out.iter().any(|(_, z)| *z == v.doc.availability_zone) {
                return Err(QueryError::new(
                    "InvalidConfigurationRequest",
                    "A load balancer cannot be attached to multiple subnets in the same Availability Zone",
                ));
            }
            out.push((id.clone(), v.doc.availability_zone.clone()));
        }
        if lb_type == "application" && out.len() < 2 {
            return Err(QueryError::validation(
                "At least two subnets in two different Availability Zones must be specified",
            ));
        }
        Ok((vpc.unwrap_or_default(), out))
    }

    /// Checks explicit groups (in `vpc`) or finds the VPC's default group.
    fn resolve_groups(
        &self,
        caller: &Caller,
        vpc: &str,
        groups: Option<Vec<String>>,
        lb_type: &str,
    ) -> QueryResult<Vec<String>> {
        let ec = engine_caller(caller);
        match groups {
            Some(g) if !g.is_empty() => {
                let found = self
                    .cloud
                    .describe_security_groups(&ec, &g, &[], &[], &Page::default())
                    .map_err(|_| {
                        QueryError::new(
                            "InvalidSecurityGroup",
                            "One or more security groups are invalid",
                        )
                    })?
                    .0;
                if found.iter().any(|v| v.doc.vpc_id != vpc) {
                    return Err(QueryError::new(
                        "InvalidSecurityGroup",
                        "One or more security groups are not in the load balancer's VPC",
                    ));
                }
                Ok(g)
            }
            Some(g) => Ok(g),
            None if lb_type == "network" => Ok(Vec::new()),
            None => {
                let filters = vec![
                    Filter {
                        name: "vpc-id".into(),
                        values: vec![vpc.to_string()],
                    },
                    Filter {
                        name: "group-name".into(),
                        values: vec!["default".into()],
                    },
                ];
                let found = self
                    .cloud
                    .describe_security_groups(&ec, &[], &[], &filters, &Page::default())
                    .map_err(from_ec2)?
                    .0;
                Ok(found.into_iter().map(|v| v.id).take(1).collect())
            }
        }
    }

    /// A free address of the pool (caller holds the lock).
    fn allocate_address(&self) -> QueryResult<String> {
        let used: Vec<String> = self
            .list_all::<LbDoc>(LB_KIND)?
            .into_iter()
            .map(|s| s.doc.address)
            .collect();
        let size = self.pool.size();
        for n in 1..size.saturating_sub(1).max(2) {
            let ip = self.pool.nth(n).to_string();
            if !used.contains(&ip) {
                return Ok(ip);
            }
        }
        Err(QueryError::new(
            "TooManyLoadBalancers",
            "The load balancer address pool is exhausted",
        ))
    }

    pub(crate) fn create_load_balancer(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let name = p.required("Name")?;
        check_name(&name, "Load balancer")?;
        let lb_type = p.string("Type").unwrap_or_else(|| "application".into());
        if lb_type == "gateway" {
            return Err(QueryError::new(
                "UnsupportedOperation",
                "Gateway load balancers are not supported by openami",
            ));
        }
        if lb_type != "application" && lb_type != "network" {
            return Err(QueryError::validation(format!(
                "Load balancer type '{lb_type}' is not valid"
            )));
        }
        let scheme = p
            .string("Scheme")
            .unwrap_or_else(|| "internet-facing".into());
        if scheme != "internet-facing" && scheme != "internal" {
            return Err(QueryError::validation(format!(
                "Scheme '{scheme}' is not valid"
            )));
        }
        let ip_type = p.string("IpAddressType").unwrap_or_else(|| "ipv4".into());
        if ip_type != "ipv4" {
            return Err(QueryError::new(
                "InvalidConfigurationRequest",
                format!("IP address type '{ip_type}' is not supported by openami (only ipv4)"),
            ));
        }
        let mut subnet_ids = p.strings("Subnets")?;
        for m in p.structs("SubnetMappings")? {
            if m.has("AllocationId") || m.has("PrivateIPv4Address") {
                return Err(QueryError::new(
                    "InvalidConfigurationRequest",
                    "Elastic IP allocations and private IPv4 addresses in subnet mappings are not supported by openami",
                ));
            }
            subnet_ids.push(m.required("SubnetId")?);
        }
        let tags = p.tags("Tags")?;
        crate::misc::check_tags(&tags)?;
        let groups = p.strings_if_sent("SecurityGroups")?;
        let (vpc, subnets) = self.resolve_subnets(caller, &subnet_ids, &lb_type)?;
        let groups = self.resolve_groups(caller, &vpc, groups, &lb_type)?;
        let _g = self.guard();
        if let Some(existing) = self
            .list::<LbDoc>(caller, LB_KIND)?
            .into_iter()
            .find(|s| s.doc.name == name)
        {
            if existing.doc.lb_type == lb_type && existing.doc.scheme == scheme {
                // AWS answers a repeated identical create with the existing one.
                let mut x = Xml::new();
                x.members("LoadBalancers", &[existing], |x, s| lb_xml(x, caller, s));
                return Ok(x.finish());
            }
            return Err(QueryError::new(
                "DuplicateLoadBalancerName",
                format!("A load balancer with the same name '{name}' exists"),
            ));
        }
        let doc = LbDoc {
            name: name.clone(),
            id: model::new_hex_id(),
            lb_type,
            scheme,
            vpc_id: vpc,
            subnets,
            security_groups: groups,
            ip_address_type: ip_type,
            address: self.allocate_address()?,
            attributes: BTreeMap::new(),
            bind_error: None,
        };
        let arn = model::arn(
            caller,
            &format!("loadbalancer/{}/{name}/{}", doc.short_type(), doc.id),
        );
        let row = self.insert(caller, LB_KIND, &arn, "provisioning", &doc)?;
        if !tags.is_empty() {
            self.catalog().set_tags(&arn, &tags).map_err(db)?;
        }
        let mut x = Xml::new();
        x.members("LoadBalancers", &[Stored { row, doc }], |x, s| {
            lb_xml(x, caller, s)
        });
        Ok(x.finish())
    }

    pub(crate) fn describe_load_balancers(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let arns = p.strings("LoadBalancerArns")?;
        let names = p.strings("Names")?;
        if !arns.is_empty() && !names.is_empty() {
            return Err(QueryError::validation(
                "Load balancer names and load balancer ARNs cannot be specified at the same time",
            ));
        }
        let all = self.list::<LbDoc>(caller, LB_KIND)?;
        let out = crate::model::select(all, &arns, &names, |d| d.name.as_str(), lb_not_found)?;
        let (items, next) = page(out, p)?;
        let mut x = Xml::new();
        x.members("LoadBalancers", &items, |x, s| lb_xml(x, caller, s));
        next_marker(&mut x, next);
        Ok(x.finish())
    }

    pub(crate) fn delete_load_balancer(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("LoadBalancerArn")?;
        let _g = self.guard();
        // Deleting a load balancer that does not exist succeeds, as on AWS.
        let Some(lb) = self.get::<LbDoc>(caller, LB_KIND, &arn)? else {
            return Ok(String::new());
        };
        if attributes::value(
            lb_table(&lb.doc),
            &lb.doc.attributes,
            "deletion_protection.enabled",
        ) == "true"
        {
            return Err(QueryError::new(
                "OperationNotPermitted",
                format!(
                    "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
                ),
            ));
        }
        let listeners: Vec<Stored<ListenerDoc>> = self
            .list::<ListenerDoc>(caller, LISTENER_KIND)?
            .into_iter()
            .filter(|l| l.doc.load_balancer_arn == arn)
            .collect();
        for l in &listeners {
            self.remove_listener(caller, l)?;
        }
        self.remove(&arn)?;
        Ok(String::new())
    }

    pub(crate) fn describe_lb_attributes(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let lb = self.lb(caller, &p.required("LoadBalancerArn")?)?;
        Ok(attributes::xml(&attributes::effective(
            lb_table(&lb.doc),
            &lb.doc.attributes,
        )))
    }

    pub(crate) fn modify_lb_attributes(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("LoadBalancerArn")?;
        let _g = self.guard();
        let mut lb = self.lb(caller, &arn)?;
        let pairs = attributes::parse(p, lb_table(&lb.doc), "Load balancer")?;
        for (k, v) in &pairs {
            lb.doc.attributes.insert(k.clone(), v.clone());
        }
        self.update(&arn, &lb.row.state, &lb.doc)?;
        Ok(attributes::xml(&pairs))
    }

    pub(crate) fn set_security_groups(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("LoadBalancerArn")?;
        let groups = p.strings("SecurityGroups")?;
        let _g = self.guard();
        let mut lb = self.lb(caller, &arn)?;
        if lb.doc.lb_type == "application" && groups.is_empty() {
            return Err(QueryError::validation(
                "An application load balancer must have at least one security group",
            ));
        }
        let groups = self.resolve_groups(caller, &lb.doc.vpc_id, Some(groups), &lb.doc.lb_type)?;
        lb.doc.security_groups = groups.clone();
        self.update(&arn, &lb.row.state, &lb.doc)?;
        let mut x = Xml::new();
        x.strings("SecurityGroupIds", &groups);
        Ok(x.finish())
    }

    pub(crate) fn set_subnets(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("LoadBalancerArn")?;
        let mut ids = p.strings("Subnets")?;
        for m in p.structs("SubnetMappings")? {
            ids.push(m.required("SubnetId")?);
        }
        let _g = self.guard();
        let mut lb = self.lb(caller, &arn)?;
        let (vpc, subnets) = self.resolve_subnets(caller, &ids, &lb.doc.lb_type)?;
        if vpc != lb.doc.vpc_id {
            return Err(QueryError::new(
                "InvalidSubnet",
                "The subnets must be in the load balancer's VPC",
            ));
        }
        lb.doc.subnets = subnets;
        self.update(&arn, &lb.row.state, &lb.doc)?;
        let mut x = Xml::new();
        zones_xml(&mut x, &lb.doc);
        x.text("IpAddressType", &lb.doc.ip_address_type);
        Ok(x.finish())
    }

    pub(crate) fn set_ip_address_type(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("LoadBalancerArn")?;
        let t = p.required("IpAddressType")?;
        self.lb(caller, &arn)?;
        if t != "ipv4" {
            return Err(QueryError::new(
                "InvalidConfigurationRequest",
                format!("IP address type '{t}' is not supported by openami (only ipv4)"),
            ));
        }
        let mut x = Xml::new();
        x.text("IpAddressType", &t);
        Ok(x.finish())
    }

    pub(crate) fn describe_capacity_reservation(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let lb = self.lb(caller, &p.required("LoadBalancerArn")?)?;
        let mut x = Xml::new();
        x.text("DecreaseRequestsRemaining", "2");
        x.members(
            "CapacityReservationState",
            &lb.doc.subnets,
            |x, (_, zone)| {
                x.elem("State", |x| {
                    x.text("Code", "provisioned");
                })
                .text("AvailabilityZone", zone);
            },
        );
        Ok(x.finish())
    }
}

/// The attribute table of a load balancer's type.
pub fn lb_table(doc: &LbDoc) -> &'static [attributes::Spec] {
    if doc.lb_type == "network" {
        attributes::NLB
    } else {
        attributes::ALB
    }
}

/// The load balancer's address.
pub fn address(doc: &LbDoc) -> Option<Ipv4Addr> {
    doc.address.parse().ok()
}

fn zones_xml(x: &mut Xml, doc: &LbDoc) {
    x.members("AvailabilityZones", &doc.subnets, |x, (subnet, zone)| {
        x.text("ZoneName", zone).text("SubnetId", subnet);
        x.members("LoadBalancerAddresses", &[&doc.address], |x, a| {
            x.text("IpAddress", a);
        });
    });
}

/// One `LoadBalancer` structure.
pub fn lb_xml(x: &mut Xml, caller: &Caller, s: &Stored<LbDoc>) {
    let d = &s.doc;
    x.text("LoadBalancerArn", &s.row.id)
        .text(
            "DNSName",
            &format!("{}-{}.{}.elb.amazonaws.com", d.name, d.id, caller.region),
        )
        .text(
            "CanonicalHostedZoneId",
            if d.lb_type == "network" {
                NLB_ZONE
            } else {
                ALB_ZONE
            },
        )
        .text("CreatedTime", &engine::query::iso8601(s.row.created_at_ms))
        .text("LoadBalancerName", &d.name)
        .text("Scheme", &d.scheme)
        .text("VpcId", &d.vpc_id)
        .elem("State", |x| {
            x.text("Code", &s.row.state);
            x.opt("Reason", d.bind_error.as_deref());
        })
        .text("Type", &d.lb_type);
    zones_xml(x, d);
    x.strings("SecurityGroups", &d.security_groups)
        .text("IpAddressType", &d.ip_address_type);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paging() {
        assert!(check_name("my-lb-1", "Load balancer").is_ok());
        assert!(check_name("-bad", "Load balancer").is_err());
        assert!(check_name("internal-x", "Load balancer").is_err());
        assert!(check_name(&"a".repeat(33), "Target group").is_err());
        let p = Params::from_pairs([("PageSize", "2")]);
        let (items, next) = page(vec![1, 2, 3], &p).unwrap();
        assert_eq!((items, next.as_deref()), (vec![1, 2], Some("2")));
        let p = Params::from_pairs([("PageSize", "2"), ("Marker", "2")]);
        assert_eq!(page(vec![1, 2, 3], &p).unwrap(), (vec![3], None));
        let p = Params::from_pairs([("Marker", "x")]);
        assert!(page(vec![1], &p).is_err());
    }
}
