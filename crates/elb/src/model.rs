//! What the catalog keeps for ELBv2 resources (serde documents in generic resource rows,
//! keyed by ARN), the ARN formats, and the store helpers and error constructors every
//! operation shares.

use std::collections::BTreeMap;

use awsquery::{Caller, QueryError, QueryResult};
use catalog::ResourceRow;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Elb;

/// Row kind of a load balancer.
pub const LB_KIND: &str = "elb-loadbalancer";
/// Row kind of a target group.
pub const TG_KIND: &str = "elb-targetgroup";
/// Row kind of a listener.
pub const LISTENER_KIND: &str = "elb-listener";
/// Row kind of a (non-default) listener rule.
pub const RULE_KIND: &str = "elb-rule";

/// A load balancer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LbDoc {
    /// Name.
    pub name: String,
    /// The 16-hex id in its ARN.
    pub id: String,
    /// `application` or `network`.
    pub lb_type: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    /// Its VPC.
    pub vpc_id: String,
    /// (subnet, zone) pairs, one per zone.
    pub subnets: Vec<(String, String)>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// `ipv4` or `dualstack`.
    pub ip_address_type: String,
    /// The loopback address its listeners bind.
    pub address: String,
    /// Attributes explicitly set (defaults fill the rest).
    pub attributes: BTreeMap<String, String>,
    /// Why the data plane could not bind a listener, if it could not.
    pub bind_error: Option<String>,
}

impl LbDoc {
    /// `app` or `net`, as in ARNs.
    pub fn short_type(&self) -> &'static str {
        if self.lb_type == "network" {
            "net"
        } else {
            "app"
        }
    }
}

/// A target group's health check.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct HealthCheckDoc {
    /// Enabled.
    pub enabled: bool,
    /// `HTTP`, `HTTPS` or `TCP`.
    pub protocol: String,
    /// `traffic-port` or a number.
    pub port: String,
    /// Path (HTTP checks).
    pub path: Option<String>,
    /// IntervalSeconds.
    pub interval: i64,
    /// TimeoutSeconds.
    pub timeout: i64,
    /// HealthyThresholdCount.
    pub healthy: i64,
    /// UnhealthyThresholdCount.
    pub unhealthy: i64,
    /// Matcher HttpCode (HTTP checks).
    pub matcher: Option<String>,
}

/// A registered target.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TargetDoc {
    /// Instance id or IP.
    pub id: String,
    /// Traffic port.
    pub port: u16,
    /// AvailabilityZone as given (ip targets).
    pub zone: Option<String>,
}

/// A target group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TgDoc {
    /// Name.
    pub name: String,
    /// The 16-hex id in its ARN.
    pub id: String,
    /// `HTTP` or `TCP` (absent for lambda, which is not supported).
    pub protocol: String,
    /// `HTTP1` for HTTP groups.
    pub protocol_version: Option<String>,
    /// Port.
    pub port: u16,
    /// VPC.
    pub vpc_id: String,
    /// `instance` or `ip`.
    pub target_type: String,
    /// `ipv4`.
    pub ip_address_type: String,
    /// Health check.
    pub health_check: HealthCheckDoc,
    /// Attributes explicitly set.
    pub attributes: BTreeMap<String, String>,
    /// Registered targets.
    pub targets: Vec<TargetDoc>,
}

/// A forward action's group list.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ForwardDoc {
    /// (target group ARN, weight).
    pub groups: Vec<(String, i64)>,
    /// Group stickiness enabled.
    pub stickiness: bool,
    /// Group stickiness duration.
    pub stickiness_seconds: Option<i64>,
}

/// A redirect action.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RedirectDoc {
    /// Protocol.
    pub protocol: Option<String>,
    /// Port.
    pub port: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Path.
    pub path: Option<String>,
    /// Query.
    pub query: Option<String>,
    /// `HTTP_301` or `HTTP_302`.
    pub status_code: String,
}

/// A fixed-response action.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FixedDoc {
    /// Body.
    pub message_body: Option<String>,
    /// `2XX`, `4XX` or `5XX` code.
    pub status_code: String,
    /// Content type.
    pub content_type: Option<String>,
}

/// An action of a listener or rule.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ActionDoc {
    /// `forward`, `redirect` or `fixed-response`.
    pub action_type: String,
    /// Order.
    pub order: Option<i64>,
    /// Forward: the single group (TargetGroupArn form).
    pub target_group_arn: Option<String>,
    /// Forward: the groups.
    pub forward: Option<ForwardDoc>,
    /// Redirect.
    pub redirect: Option<RedirectDoc>,
    /// Fixed response.
    pub fixed: Option<FixedDoc>,
}

impl ActionDoc {
    /// Target groups this action forwards to.
    pub fn target_groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self.target_group_arn.iter().cloned().collect();
        if let Some(f) = &self.forward {
            for (arn, _) in &f.groups {
                if !out.contains(arn) {
                    out.push(arn.clone());
                }
            }
        }
        out
    }
}

/// A listener.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ListenerDoc {
    /// Its load balancer's ARN.
    pub load_balancer_arn: String,
    /// Port.
    pub port: u16,
    /// `HTTP` or `TCP`.
    pub protocol: String,
    /// Default actions.
    pub actions: Vec<ActionDoc>,
    /// Attributes explicitly set.
    pub attributes: BTreeMap<String, String>,
    /// ARN of its default rule.
    pub default_rule_arn: String,
}

/// A rule condition.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConditionDoc {
    /// `path-pattern`, `host-header`, `http-header`, `http-request-method`,
    /// `query-string` or `source-ip`.
    pub field: String,
    /// Values (all fields but query-string).
    pub values: Vec<String>,
    /// http-header's name.
    pub header_name: Option<String>,
    /// query-string's (key, value) pairs.
    pub query: Vec<(Option<String>, String)>,
}

/// A non-default rule.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RuleDoc {
    /// Its listener's ARN.
    pub listener_arn: String,
    /// Priority 1–50000.
    pub priority: i64,
    /// Conditions.
    pub conditions: Vec<ConditionDoc>,
    /// Actions.
    pub actions: Vec<ActionDoc>,
}

/// A stored row with its decoded document.
#[derive(Clone, Debug)]
pub struct Stored<T> {
    /// The row (id = ARN).
    pub row: ResourceRow,
    /// The document.
    pub doc: T,
}

/// What a Describe call asks for: the rows named by ARN, else by name, else all of them;
/// a name or ARN that matches nothing is `not_found()`.
pub fn select<T: Clone>(
    all: Vec<Stored<T>>,
    arns: &[String],
    names: &[String],
    name_of: impl Fn(&T) -> &str,
    not_found: fn() -> QueryError,
) -> QueryResult<Vec<Stored<T>>> {
    if !arns.is_empty() {
        arns.iter()
            .map(|a| {
                all.iter()
                    .find(|s| &s.row.id == a)
                    .cloned()
                    .ok_or_else(not_found)
            })
            .collect()
    } else if !names.is_empty() {
        names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|s| name_of(&s.doc) == n)
                    .cloned()
                    .ok_or_else(not_found)
            })
            .collect()
    } else {
        Ok(all)
    }
}

/// 16 random hex digits.
pub fn new_hex_id() -> String {
    hex::encode(engine::ids::random_bytes::<8>())
}

/// `arn:aws:elasticloadbalancing:<region>:<account>:<rest>`.
pub fn arn(caller: &Caller, rest: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{}:{}:{rest}",
        caller.region, caller.account_id
    )
}

/// The engine's view of the caller.
pub fn engine_caller(caller: &Caller) -> engine::Caller {
    engine::Caller {
        account_id: caller.account_id.clone(),
        region: caller.region.clone(),
    }
}

/// An engine error as a query error (same code and message).
pub fn from_ec2(e: engine::Ec2Error) -> QueryError {
    QueryError {
        code: e.code,
        message: e.message,
        status: e.status,
    }
}

/// A catalog failure.
pub fn db(e: catalog::CatalogError) -> QueryError {
    if e.is_unavailable() {
        // The catalog's database is down (PostgreSQL): a retryable 503.
        tracing::warn!(error = %e, "catalog unavailable");
        return QueryError::new(
            "ServiceUnavailable",
            "The service is temporarily unavailable; retry the request.",
        )
        .with_status(503);
    }
    QueryError::internal(format!("catalog: {e}"))
}

/// `LoadBalancerNotFound`.
pub fn lb_not_found() -> QueryError {
    QueryError::new(
        "LoadBalancerNotFound",
        "One or more load balancers not found",
    )
}

/// `TargetGroupNotFound`.
pub fn tg_not_found() -> QueryError {
    QueryError::new("TargetGroupNotFound", "One or more target groups not found")
}

/// `ListenerNotFound`.
pub fn listener_not_found() -> QueryError {
    QueryError::new("ListenerNotFound", "One or more listeners not found")
}

/// `RuleNotFound`.
pub fn rule_not_found() -> QueryError {
    QueryError::new("RuleNotFound", "One or more rules not found")
}

/// Decodes a row's document.
pub fn decode<T: DeserializeOwned>(row: &ResourceRow) -> QueryResult<T> {
    serde_json::from_str(&row.doc)
        .map_err(|e| QueryError::internal(format!("elb document {}: {e}", row.id)))
}

/// Encodes a document.
pub fn encode<T: Serialize>(doc: &T) -> QueryResult<String> {
    serde_json::to_string(doc).map_err(|e| QueryError::internal(format!("elb document: {e}")))
}

impl Elb {
    /// The caller's rows of `kind` in its region, oldest first.
    pub(crate) fn list<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        kind: &str,
    ) -> QueryResult<Vec<Stored<T>>> {
        let mut rows: Vec<ResourceRow> = self
            .catalog()
            .resources(kind, &caller.region)
            .map_err(db)?
            .into_iter()
            .filter(|r| r.account_id == caller.account_id)
            .collect();
        rows.sort_by(|a, b| {
            (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str()))
        });
        rows.into_iter()
            .map(|row| {
                Ok(Stored {
                    doc: decode(&row)?,
                    row,
                })
            })
            .collect()
    }

    /// Every row of `kind` (all accounts and regions).
    pub(crate) fn list_all<T: DeserializeOwned>(&self, kind: &str) -> QueryResult<Vec<Stored<T>>> {
        let mut rows = self.catalog().resources_of_kind(kind).map_err(db)?;
        rows.sort_by(|a, b| {
            (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str()))
        });
        rows.into_iter()
            .map(|row| {
                Ok(Stored {
                    doc: decode(&row)?,
                    row,
                })
            })
            .collect()
    }

    /// One of the caller's rows of `kind`, or `None`.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        kind: &str,
        arn: &str,
    ) -> QueryResult<Option<Stored<T>>> {
        match self.catalog().resource(arn).map_err(db)? {
            Some(row)
                if row.kind == kind
                    && row.account_id == caller.account_id
                    && row.region == caller.region =>
            {
                Ok(Some(Stored {
                    doc: decode(&row)?,
                    row,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Inserts a new row.
    pub(crate) fn insert<T: Serialize>(
        &self,
        caller: &Caller,
        kind: &str,
        arn: &str,
        state: &str,
        doc: &T,
    ) -> QueryResult<ResourceRow> {
        let row = ResourceRow {
            id: arn.to_string(),
            kind: kind.to_string(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            state: state.to_string(),
            doc: encode(doc)?,
            created_at_ms: catalog::now_ms(),
        };
        self.catalog().insert_resource(&row).map_err(db)?;
        Ok(row)
    }

    /// Rewrites a row's state and document.
    pub(crate) fn update<T: Serialize>(&self, arn: &str, state: &str, doc: &T) -> QueryResult<()> {
        self.catalog()
            .update_resource(arn, state, &encode(doc)?)
            .map_err(db)?;
        Ok(())
    }

    /// Deletes a row and its tags.
    pub(crate) fn remove(&self, arn: &str) -> QueryResult<()> {
        self.catalog().clear_tags(arn).map_err(db)?;
        self.catalog().delete_resource(arn).map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_ids() {
        let c = Caller {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
        };
        let id = new_hex_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_eq!(
            arn(&c, "targetgroup/tg/0123"),
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/0123"
        );
        let a = ActionDoc {
            action_type: "forward".into(),
            target_group_arn: Some("a".into()),
            forward: Some(ForwardDoc {
                groups: vec![("a".into(), 1), ("b".into(), 2)],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(a.target_groups(), vec!["a".to_string(), "b".to_string()]);
    }
}
