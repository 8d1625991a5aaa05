//! Attribute tables of load balancers, target groups and listeners: every key AWS knows
//! for the resource's type with its default and the values it accepts. Describe calls list
//! every key (defaults filled in); Modify calls validate key and value and store only what
//! was set.

use std::collections::BTreeMap;

use awsquery::{Params, QueryError, QueryResult, Xml};

/// What a value may be.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// An integer in a range.
    Int(i64, i64),
    /// One of these words.
    Enum(&'static [&'static str]),
    /// Any string.
    Text,
}

/// One attribute: key, default, kind.
pub type Spec = (&'static str, &'static str, Kind);

const ACCESS_LOGS: [Spec; 3] = [
    ("access_logs.s3.enabled", "false", Kind::Bool),
    ("access_logs.s3.bucket", "", Kind::Text),
    ("access_logs.s3.prefix", "", Kind::Text),
];

/// Application load balancers.
pub const ALB: &[Spec] = &[
    ACCESS_LOGS[0],
    ACCESS_LOGS[1],
    ACCESS_LOGS[2],
    ("connection_logs.s3.enabled", "false", Kind::Bool),
    ("connection_logs.s3.bucket", "", Kind::Text),
    ("connection_logs.s3.prefix", "", Kind::Text),
    ("health_check_logs.s3.enabled", "false", Kind::Bool),
    ("health_check_logs.s3.bucket", "", Kind::Text),
    ("health_check_logs.s3.prefix", "", Kind::Text),
    ("client_keep_alive.seconds", "3600", Kind::Int(60, 604800)),
    ("deletion_protection.enabled", "false", Kind::Bool),
    ("idle_timeout.timeout_seconds", "60", Kind::Int(1, 4000)),
    ("load_balancing.cross_zone.enabled", "true", Kind::Bool),
    (
        "routing.http.desync_mitigation_mode",
        "defensive",
        Kind::Enum(&["monitor", "defensive", "strictest"]),
    ),
    (
        "routing.http.drop_invalid_header_fields.enabled",
        "false",
        Kind::Bool,
    ),
    (
        "routing.http.preserve_host_header.enabled",
        "false",
        Kind::Bool,
    ),
    (
        "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
        "false",
        Kind::Bool,
    ),
    ("routing.http.xff_client_port.enabled", "false", Kind::Bool),
    (
        "routing.http.xff_header_processing.mode",
        "append",
        Kind::Enum(&["append", "preserve", "remove"]),
    ),
    ("routing.http2.enabled", "true", Kind::Bool),
    ("waf.fail_open.enabled", "false", Kind::Bool),
    ("zonal_shift.config.enabled", "false", Kind::Bool),
];

/// Network load balancers.
pub const NLB: &[Spec] = &[
    ACCESS_LOGS[0],
    ACCESS_LOGS[1],
    ACCESS_LOGS[2],
    ("deletion_protection.enabled", "false", Kind::Bool),
    ("load_balancing.cross_zone.enabled", "false", Kind::Bool),
    (
        "dns_record.client_routing_policy",
        "any_availability_zone",
        Kind::Enum(&[
            "availability_zone_affinity",
            "partial_availability_zone_affinity",
            "any_availability_zone",
        ]),
    ),
    ("zonal_shift.config.enabled", "false", Kind::Bool),
];

/// HTTP target groups.
pub const TG_HTTP: &[Spec] = &[
    (
        "deregistration_delay.timeout_seconds",
        "300",
        Kind::Int(0, 3600),
    ),
    ("stickiness.enabled", "false", Kind::Bool),
    (
        "stickiness.type",
        "lb_cookie",
        Kind::Enum(&["lb_cookie", "app_cookie"]),
    ),
    (
        "stickiness.lb_cookie.duration_seconds",
        "86400",
        Kind::Int(1, 604800),
    ),
    ("stickiness.app_cookie.cookie_name", "", Kind::Text),
    (
        "stickiness.app_cookie.duration_seconds",
        "86400",
        Kind::Int(1, 604800),
    ),
    ("slow_start.duration_seconds", "0", Kind::Int(0, 900)),
    (
        "load_balancing.algorithm.type",
        "round_robin",
        Kind::Enum(&[
            "round_robin",
            "least_outstanding_requests",
            "weighted_random",
        ]),
    ),
    (
        "load_balancing.algorithm.anomaly_mitigation",
        "off",
        Kind::Enum(&["on", "off"]),
    ),
    (
        "load_balancing.cross_zone.enabled",
        "use_load_balancer_configuration",
        Kind::Enum(&["true", "false", "use_load_balancer_configuration"]),
    ),
    (
        "target_group_health.dns_failover.minimum_healthy_targets.count",
        "1",
        Kind::Text,
    ),
    (
        "target_group_health.dns_failover.minimum_healthy_targets.percentage",
        "off",
        Kind::Text,
    ),
    (
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
        "1",
        Kind::Text,
    ),
    (
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
        "off",
        Kind::Text,
    ),
];

/// TCP target groups.
pub const TG_TCP: &[Spec] = &[
    (
        "deregistration_delay.timeout_seconds",
        "300",
        Kind::Int(0, 3600),
    ),
    (
        "deregistration_delay.connection_termination.enabled",
        "false",
        Kind::Bool,
    ),
    ("stickiness.enabled", "false", Kind::Bool),
    ("stickiness.type", "source_ip", Kind::Enum(&["source_ip"])),
    ("proxy_protocol_v2.enabled", "false", Kind::Bool),
    ("preserve_client_ip.enabled", "true", Kind::Bool),
    (
        "load_balancing.cross_zone.enabled",
        "use_load_balancer_configuration",
        Kind::Enum(&["true", "false", "use_load_balancer_configuration"]),
    ),
    (
        "target_health_state.unhealthy.connection_termination.enabled",
        "true",
        Kind::Bool,
    ),
    (
        "target_health_state.unhealthy.draining_interval_seconds",
        "0",
        Kind::Int(0, 360000),
    ),
    (
        "target_group_health.dns_failover.minimum_healthy_targets.count",
        "1",
        Kind::Text,
    ),
    (
        "target_group_health.dns_failover.minimum_healthy_targets.percentage",
        "off",
        Kind::Text,
    ),
    (
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
        "1",
        Kind::Text,
    ),
    (
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
        "off",
        Kind::Text,
    ),
];

/// HTTP listeners.
pub const LISTENER_HTTP: &[Spec] = &[
    ("routing.http.response.server.enabled", "true", Kind::Bool),
    (
        "routing.http.response.strict_transport_security.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.access_control_allow_origin.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.access_control_allow_methods.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.access_control_allow_headers.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.access_control_allow_credentials.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.access_control_expose_headers.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.access_control_max_age.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.content_security_policy.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.x_content_type_options.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.response.x_frame_options.header_value",
        "",
        Kind::Text,
    ),
    (
        "routing.http.request.x_amzn_tls_version.header_name",
        "X-Amzn-Tls-Version",
        Kind::Text,
    ),
    (
        "routing.http.request.x_amzn_tls_cipher_suite.header_name",
        "X-Amzn-Tls-Cipher-Suite",
        Kind::Text,
    ),
];

/// TCP listeners.
pub const LISTENER_TCP: &[Spec] = &[("tcp.idle_timeout.seconds", "350", Kind::Int(60, 6000))];

/// Every key with its effective value: the stored ones over the defaults.
pub fn effective(table: &[Spec], stored: &BTreeMap<String, String>) -> Vec<(String, String)> {
    table
        .iter()
        .map(|(k, d, _)| {
            let v = stored.get(*k).cloned().unwrap_or_else(|| d.to_string());
            (k.to_string(), v)
        })
        .collect()
}

/// One effective value.
pub fn value(table: &[Spec], stored: &BTreeMap<String, String>, key: &str) -> String {
    stored.get(key).cloned().unwrap_or_else(|| {
        table
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, d, _)| d.to_string())
            .unwrap_or_default()
    })
}

/// Reads `Attributes.member.N.Key/Value`, validates each against `table` and returns the
/// pairs (`what`: "Load balancer", "Target group", "Listener" for messages).
pub fn parse(params: &Params, table: &[Spec], what: &str) -> QueryResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in params.structs("Attributes")? {
        let key = a.string("Key").unwrap_or_default();
        let value = a.string("Value").unwrap_or_default();
        let Some((_, _, kind)) = table.iter().find(|(k, _, _)| *k == key) else {
            return Err(QueryError::validation(format!(
                "{what} attribute key '{key}' is not recognized"
            )));
        };
        check(&key, &value, *kind, what)?;
        out.push((key, value));
    }
    if out.is_empty() {
        return Err(QueryError::missing("Attributes"));
    }
    Ok(out)
}

fn check(key: &str, value: &str, kind: Kind, what: &str) -> QueryResult<()> {
    let bad = || {
        QueryError::validation(format!(
            "{what} attribute '{key}' value '{value}' is not valid"
        ))
    };
    match kind {
        Kind::Bool if value != "true" && value != "false" => Err(bad()),
        Kind::Int(min, max) => match value.parse::<i64>() {
            Ok(n) if n >= min && n <= max => Ok(()),
            _ => Err(QueryError::validation(format!(
                "{what} attribute '{key}' must be an integer between {min} and {max}"
            ))),
        },
        Kind::Enum(words) if !words.contains(&value) => Err(QueryError::validation(format!(
            "{what} attribute '{key}' value '{value}' is not valid; valid values are {}",
            words.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// `<Attributes><member><Key/><Value/></member>…</Attributes>`.
pub fn xml(pairs: &[(String, String)]) -> String {
    let mut x = Xml::new();
    x.members("Attributes", pairs, |x, (k, v)| {
        x.text("Key", k).text("Value", v);
    });
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_unknown_keys() {
        let mut stored = BTreeMap::new();
        stored.insert("idle_timeout.timeout_seconds".to_string(), "30".to_string());
        let all = effective(ALB, &stored);
        assert!(all.contains(&("idle_timeout.timeout_seconds".into(), "30".into())));
        assert!(all.contains(&("routing.http2.enabled".into(), "true".into())));
        assert_eq!(
            value(
                TG_HTTP,
                &BTreeMap::new(),
                "deregistration_delay.timeout_seconds"
            ),
            "300"
        );

        let p = Params::from_pairs([
            ("Attributes.member.1.Key", "nope"),
            ("Attributes.member.1.Value", "1"),
        ]);
        let e = parse(&p, ALB, "Load balancer").unwrap_err();
        assert_eq!(
            e.message,
            "Load balancer attribute key 'nope' is not recognized"
        );
        let p = Params::from_pairs([
            ("Attributes.member.1.Key", "idle_timeout.timeout_seconds"),
            ("Attributes.member.1.Value", "0"),
        ]);
        assert!(parse(&p, ALB, "Load balancer").is_err());
        let p = Params::from_pairs([
            ("Attributes.member.1.Key", "deletion_protection.enabled"),
            ("Attributes.member.1.Value", "true"),
        ]);
        assert_eq!(parse(&p, NLB, "Load balancer").unwrap().len(), 1);
        // Every table's defaults pass its own validation.
        for table in [ALB, NLB, TG_HTTP, TG_TCP, LISTENER_HTTP, LISTENER_TCP] {
            for (k, d, kind) in table {
                check(k, d, *kind, "x").unwrap();
            }
        }
    }
}
