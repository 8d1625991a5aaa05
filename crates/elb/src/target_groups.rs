//! Target groups: CreateTargetGroup, DescribeTargetGroups, ModifyTargetGroup,
//! DeleteTargetGroup and their attributes, with AWS's health-check defaults per protocol.

use std::collections::{BTreeMap, HashMap};

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};

use crate::Elb;
use crate::attributes;
use crate::load_balancers::{next_marker, page};
use crate::model::{
    self, HealthCheckDoc, LISTENER_KIND, ListenerDoc, RULE_KIND, RuleDoc, Stored, TG_KIND, TgDoc,
    db, lb_not_found, tg_not_found,
};

/// The attribute table of a group's protocol.
pub fn tg_table(doc: &TgDoc) -> &'static [attributes::Spec] {
    if doc.protocol == "TCP" {
        attributes::TG_TCP
    } else {
        attributes::TG_HTTP
    }
}

/// `deregistration_delay.timeout_seconds` of a group.
pub fn deregistration_delay(doc: &TgDoc) -> u64 {
    attributes::value(
        tg_table(doc),
        &doc.attributes,
        "deregistration_delay.timeout_seconds",
    )
    .parse()
    .unwrap_or(300)
}

fn check_protocol(p: &str, what: &str) -> QueryResult<()> {
    match p {
        "HTTP" | "TCP" => Ok(()),
        "HTTPS" | "TLS" | "UDP" | "TCP_UDP" | "GENEVE" | "QUIC" | "TCP_QUIC" => {
            Err(QueryError::new(
                "UnsupportedProtocol",
                format!("{what} protocol '{p}' is not supported by openami (HTTP and TCP are)"),
            ))
        }
        _ => Err(QueryError::validation(format!(
            "{what} protocol '{p}' is not valid"
        ))),
    }
}

/// Applies the HealthCheck* parameters of Create/ModifyTargetGroup over `hc`.
fn apply_health_check(
    hc: &mut HealthCheckDoc,
    p: &Params,
    group_protocol: &str,
) -> QueryResult<()> {
    if let Some(proto) = p.string("HealthCheckProtocol") {
        if proto == "HTTPS" {
            return Err(QueryError::new(
                "UnsupportedProtocol",
                "Health check protocol 'HTTPS' is not supported by openami (HTTP and TCP are)",
            ));
        }
        check_protocol(&proto, "Health check")?;
        if group_protocol == "HTTP" && proto == "TCP" {
            return Err(QueryError::validation(
                "Health check protocol 'TCP' is not supported for target groups with the HTTP protocol",
            ));
        }
        if proto == "HTTP" && hc.protocol != "HTTP" {
            hc.path.get_or_insert_with(|| "/".into());
            hc.matcher.get_or_insert_with(|| "200-399".into());
        }
        if proto == "TCP" {
            hc.path = None;
            hc.matcher = None;
        }
        hc.protocol = proto;
    }
    if let Some(port) = p.string("HealthCheckPort") {
        let ok = port == "traffic-port" || port.parse::<u16>().is_ok_and(|n| n >= 1);
        if !ok {
            return Err(QueryError::validation(format!(
                "Health check port '{port}' must be 'traffic-port' or a port between 1 and 65535"
            )));
        }
        hc.port = port;
    }
    if let Some(e) = p.bool("HealthCheckEnabled")? {
        hc.enabled = e;
    }
    if let Some(path) = p.string("HealthCheckPath") {
        if hc.protocol == "TCP" {
            return Err(QueryError::validation(
                "Health check path cannot be specified with the TCP health check protocol",
            ));
        }
        if !path.starts_with('/') || path.len() > 1024 {
            return Err(QueryError::validation(
                "Health check path must begin with '/' and be at most 1024 characters",
            ));
        }
        hc.path = Some(path);
    }
    if let Some(n) = p.int_in("HealthCheckIntervalSeconds", 5, 300)? {
        hc.interval = n;
    }
    if let Some(n) = p.int_in("HealthCheckTimeoutSeconds", 2, 120)? {
        hc.timeout = n;
    }
    if let Some(n) = p.int_in("HealthyThresholdCount", 2, 10)? {
        hc.healthy = n;
    }
    if let Some(n) = p.int_in("UnhealthyThresholdCount", 2, 10)? {
        hc.unhealthy = n;
    }
    if let Some(code) = p.nested("Matcher").string("HttpCode") {
        if hc.protocol == "TCP" && group_protocol == "TCP" {
            return Err(QueryError::validation(
                "A matcher cannot be specified with the TCP health check protocol",
            ));
        }
        check_matcher(&code)?;
        hc.matcher = Some(code);
    }
    if p.nested("Matcher").has("GrpcCode") {
        return Err(QueryError::new(
            "UnsupportedProtocol",
            "gRPC health checks are not supported by openami",
        ));
    }
    // A default timeout follows a shorter interval; an explicit one must be shorter.
    if hc.timeout >= hc.interval && !p.has("HealthCheckTimeoutSeconds") {
        hc.timeout = (hc.interval - 1).max(2);
    }
    if hc.timeout >= hc.interval {
        return Err(QueryError::validation(format!(
            "Health check timeout '{}' must be smaller than the interval '{}'",
            hc.timeout, hc.interval
        )));
    }
    Ok(())
}

/// `200`, `200,202`, `200-299`: codes 200–499.
pub fn check_matcher(code: &str) -> QueryResult<()> {
    let valid = |s: &str| s.parse::<u16>().is_ok_and(|n| (200..=499).contains(&n));
    let ok = !code.is_empty()
        && code.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => valid(a) && valid(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
            None => valid(part),
        });
    if ok {
        Ok(())
    } else {
        Err(QueryError::validation(format!(
            "Matcher HttpCode '{code}' must be codes between 200 and 499, as a list ('200,202') or a range ('200-299')"
        )))
    }
}

fn default_health_check(protocol: &str) -> HealthCheckDoc {
    if protocol == "TCP" {
        HealthCheckDoc {
            enabled: true,
            protocol: "TCP".into(),
            port: "traffic-port".into(),
            path: None,
            interval: 30,
            timeout: 10,
            healthy: 5,
            unhealthy: 2,
            matcher: None,
        }
    } else {
        HealthCheckDoc {
            enabled: true,
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            path: Some("/".into()),
            interval: 30,
            timeout: 5,
            healthy: 5,
            unhealthy: 2,
            matcher: Some("200".into()),
        }
    }
}

impl Elb {
    /// The caller's target group, or `TargetGroupNotFound`.
    pub(crate) fn tg(&self, caller: &Caller, arn: &str) -> QueryResult<Stored<TgDoc>> {
        self.get(caller, TG_KIND, arn)?.ok_or_else(tg_not_found)
    }

    /// Target group ARN → load balancers whose listeners or rules forward to it.
    pub(crate) fn usage(&self, caller: &Caller) -> QueryResult<HashMap<String, Vec<String>>> {
        let listeners = self.list::<ListenerDoc>(caller, LISTENER_KIND)?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let mut add = |tg: String, lb: &str| {
            let v = out.entry(tg).or_default();
            if !v.iter().any(|x| x == lb) {
                v.push(lb.to_string());
            }
        };
        let lb_of: BTreeMap<&str, &str> = listeners
            .iter()
            .map(|l| (l.row.id.as_str(), l.doc.load_balancer_arn.as_str()))
            .collect();
        for l in &listeners {
            for a in &l.doc.actions {
                for tg in a.target_groups() {
                    add(tg, &l.doc.load_balancer_arn);
                }
            }
        }
        for r in self.list::<RuleDoc>(caller, RULE_KIND)? {
            if let Some(lb) = lb_of.get(r.doc.listener_arn.as_str()) {
                for a in &r.doc.actions {
                    for tg in a.target_groups() {
                        add(tg, lb);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Load balancers using one target group.
    pub(crate) fn tg_load_balancers(&self, caller: &Caller, arn: &str) -> QueryResult<Vec<String>> {
        Ok(self.usage(caller)?.remove(arn).unwrap_or_default())
    }

    pub(crate) fn create_target_group(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let name = p.required("Name")?;
        crate::load_balancers::check_name(&name, "Target group")?;
        let target_type = p.string("TargetType").unwrap_or_else(|| "instance".into());
        match target_type.as_str() {
            "instance" | "ip" => {}
            "lambda" | "alb" => {
                return Err(QueryError::new(
                    "InvalidConfigurationRequest",
                    format!(
                        "Target type '{target_type}' is not supported by openami (instance and ip are)"
                    ),
                ));
            }
            t => {
                return Err(QueryError::validation(format!(
                    "Target type '{t}' is not valid"
                )));
            }
        }
        let protocol = p.required("Protocol")?;
        check_protocol(&protocol, "Target group")?;
        let port = p
            .int_in("Port", 1, 65535)?
            .ok_or_else(|| QueryError::validation("A port must be specified"))?
            as u16;
        let vpc_id = p
            .string("VpcId")
            .ok_or_else(|| QueryError::validation("A VPC ID must be specified"))?;
        self.cloud
            .vpc_cidr(&vpc_id)
            .map_err(|_| QueryError::validation(format!("The VPC ID '{vpc_id}' is not found")))?;
        let protocol_version = match p.string("ProtocolVersion").as_deref() {
            None | Some("") | Some("HTTP1") if protocol == "HTTP" => Some("HTTP1".to_string()),
            None | Some("") => None,
            Some(v) => {
                return Err(QueryError::new(
                    "UnsupportedProtocol",
                    format!("Protocol version '{v}' is not supported by openami (HTTP1 is)"),
                ));
            }
        };
        let ip_type = p.string("IpAddressType").unwrap_or_else(|| "ipv4".into());
        if ip_type != "ipv4" {
            return Err(QueryError::new(
                "InvalidConfigurationRequest",
                "Only the ipv4 address type is supported by openami",
            ));
        }
        let mut hc = default_health_check(&protocol);
        apply_health_check(&mut hc, p, &protocol)?;
        let tags = p.tags("Tags")?;
        crate::misc::check_tags(&tags)?;
        let _g = self.guard();
        if let Some(existing) = self
            .list::<TgDoc>(caller, TG_KIND)?
            .into_iter()
            .find(|s| s.doc.name == name)
        {
            let same = existing.doc.protocol == protocol
                && existing.doc.port == port
                && existing.doc.vpc_id == vpc_id
                && existing.doc.target_type == target_type;
            if !same {
                return Err(QueryError::new(
                    "DuplicateTargetGroupName",
                    format!(
                        "A target group with the same name '{name}' exists, but with different settings"
                    ),
                ));
            }
            return self.tgs_xml(caller, vec![existing]);
        }
        let doc = TgDoc {
            name: name.clone(),
            id: model::new_hex_id(),
            protocol,
            protocol_version,
            port,
            vpc_id,
            target_type,
            ip_address_type: ip_type,
            health_check: hc,
            attributes: BTreeMap::new(),
            targets: Vec::new(),
        };
        let arn = model::arn(caller, &format!("targetgroup/{name}/{}", doc.id));
        let row = self.insert(caller, TG_KIND, &arn, "active", &doc)?;
        if !tags.is_empty() {
            self.catalog().set_tags(&arn, &tags).map_err(db)?;
        }
        self.tgs_xml(caller, vec![Stored { row, doc }])
    }

    fn tgs_xml(&self, caller: &Caller, items: Vec<Stored<TgDoc>>) -> QueryResult<String> {
        let usage = self.usage(caller)?;
        let mut x = Xml::new();
        x.members("TargetGroups", &items, |x, s| tg_xml(x, s, &usage));
        Ok(x.finish())
    }

    pub(crate) fn describe_target_groups(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let arns = p.strings("TargetGroupArns")?;
        let names = p.strings("Names")?;
        let lb = p.string("LoadBalancerArn");
        let all = self.list::<TgDoc>(caller, TG_KIND)?;
        let usage = self.usage(caller)?;
        let mut out = crate::model::select(all, &arns, &names, |d| d.name.as_str(), tg_not_found)?;
        if let Some(lb) = lb {
            self.lb(caller, &lb).map_err(|_| lb_not_found())?;
            out.retain(|s| usage.get(&s.row.id).is_some_and(|v| v.contains(&lb)));
        }
        let (items, next) = page(out, p)?;
        let mut x = Xml::new();
        x.members("TargetGroups", &items, |x, s| tg_xml(x, s, &usage));
        next_marker(&mut x, next);
        Ok(x.finish())
    }

    pub(crate) fn modify_target_group(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("TargetGroupArn")?;
        let _g = self.guard();
        let mut tg = self.tg(caller, &arn)?;
        let protocol = tg.doc.protocol.clone();
        apply_health_check(&mut tg.doc.health_check, p, &protocol)?;
        self.update(&arn, &tg.row.state, &tg.doc)?;
        self.tgs_xml(caller, vec![tg])
    }

    pub(crate) fn delete_target_group(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("TargetGroupArn")?;
        let _g = self.guard();
        self.tg(caller, &arn)?;
        if !self.tg_load_balancers(caller, &arn)?.is_empty() {
            return Err(QueryError::new(
                "ResourceInUse",
                format!("Target group '{arn}' is currently in use by a listener or a rule"),
            ));
        }
        self.remove(&arn)?;
        Ok(String::new())
    }

    pub(crate) fn describe_tg_attributes(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let tg = self.tg(caller, &p.required("TargetGroupArn")?)?;
        Ok(attributes::xml(&effective_tg(&tg.doc)))
    }

    pub(crate) fn modify_tg_attributes(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("TargetGroupArn")?;
        let _g = self.guard();
        let mut tg = self.tg(caller, &arn)?;
        let pairs = attributes::parse(p, tg_table(&tg.doc), "Target group")?;
        for (k, v) in &pairs {
            if k == "slow_start.duration_seconds" && v.parse::<i64>().is_ok_and(|n| n > 0 && n < 30)
            {
                return Err(QueryError::validation(
                    "Target group attribute 'slow_start.duration_seconds' must be 0 or between 30 and 900",
                ));
            }
            tg.doc.attributes.insert(k.clone(), v.clone());
        }
        self.update(&arn, &tg.row.state, &tg.doc)?;
        Ok(attributes::xml(&effective_tg(&tg.doc)))
    }
}

/// Every attribute of a group with its effective value (`preserve_client_ip.enabled`
/// defaults per target type).
fn effective_tg(doc: &TgDoc) -> Vec<(String, String)> {
    attributes::effective(tg_table(doc), &doc.attributes)
}

/// One `TargetGroup` structure.
pub fn tg_xml(x: &mut Xml, s: &Stored<TgDoc>, usage: &HashMap<String, Vec<String>>) {
    let d = &s.doc;
    let hc = &d.health_check;
    x.text("TargetGroupArn", &s.row.id)
        .text("TargetGroupName", &d.name)
        .text("Protocol", &d.protocol)
        .text("Port", &d.port.to_string())
        .text("VpcId", &d.vpc_id)
        .text("HealthCheckProtocol", &hc.protocol)
        .text("HealthCheckPort", &hc.port)
        .text(
            "HealthCheckEnabled",
            if hc.enabled { "true" } else { "false" },
        )
        .text("HealthCheckIntervalSeconds", &hc.interval.to_string())
        .text("HealthCheckTimeoutSeconds", &hc.timeout.to_string())
        .text("HealthyThresholdCount", &hc.healthy.to_string())
        .text("UnhealthyThresholdCount", &hc.unhealthy.to_string())
        .opt("HealthCheckPath", hc.path.as_deref());
    if let Some(m) = &hc.matcher {
        x.elem("Matcher", |x| {
            x.text("HttpCode", m);
        });
    }
    let empty = Vec::new();
    x.strings("LoadBalancerArns", usage.get(&s.row.id).unwrap_or(&empty))
        .text("TargetType", &d.target_type)
        .opt("ProtocolVersion", d.protocol_version.as_deref())
        .text("IpAddressType", &d.ip_address_type);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_and_health_checks() {
        for ok in ["200", "200,202", "200-299", "404"] {
            check_matcher(ok).unwrap();
        }
        for bad in ["", "100", "299-200", "abc", "200-"] {
            assert!(check_matcher(bad).is_err(), "{bad}");
        }
        let mut hc = default_health_check("HTTP");
        let p = Params::from_pairs([
            ("HealthCheckPath", "/health"),
            ("Matcher.HttpCode", "200-299"),
            ("HealthCheckIntervalSeconds", "10"),
        ]);
        apply_health_check(&mut hc, &p, "HTTP").unwrap();
        assert_eq!(hc.path.as_deref(), Some("/health"));
        assert_eq!(hc.interval, 10);
        let p = Params::from_pairs([("HealthCheckTimeoutSeconds", "10")]);
        assert!(apply_health_check(&mut hc, &p, "HTTP").is_err());
        let mut tcp = default_health_check("TCP");
        let p = Params::from_pairs([("HealthCheckProtocol", "HTTP")]);
        apply_health_check(&mut tcp, &p, "TCP").unwrap();
        assert_eq!(tcp.matcher.as_deref(), Some("200-399"));
    }
}
