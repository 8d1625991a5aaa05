//! A scaling policy as the catalog keeps it (one resource row of kind [`POLICY_KIND`]
//! per policy, id = its ARN) and as `DescribePolicies` writes it.

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use catalog::{Catalog, ResourceRow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::GroupAccess;
use super::adjust::Step;

/// Catalog kind of scaling policies.
pub const POLICY_KIND: &str = "asg-policy";

/// A `TargetTrackingConfiguration`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TargetTracking {
    /// `PredefinedMetricSpecification.PredefinedMetricType`.
    pub predefined_type: Option<String>,
    /// `PredefinedMetricSpecification.ResourceLabel`.
    pub resource_label: Option<String>,
    /// The target group ARN the resource label names (resolved when the policy was put).
    pub target_group_arn: Option<String>,
    /// `CustomizedMetricSpecification` exactly as sent (a tree of the query parameters:
    /// objects, `member` lists as arrays, text leaves). Stored and described; openami has
    /// no CloudWatch, so such a policy never has data and never scales.
    pub customized: Option<Value>,
    /// `TargetValue`.
    pub target_value: f64,
    /// `DisableScaleIn`, if sent.
    pub disable_scale_in: Option<bool>,
}

/// A CloudWatch alarm a policy reports (`Alarms`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Alarm {
    /// `AlarmName`.
    pub name: String,
    /// `AlarmARN`.
    pub arn: String,
}

fn yes() -> bool {
    true
}

/// A scaling policy.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Policy {
    /// `AutoScalingGroupName`.
    pub group: String,
    /// The group's ARN when the policy was put (tells a re-created group of the same name apart).
    pub group_arn: String,
    /// `PolicyName`.
    pub name: String,
    /// `PolicyARN`.
    pub arn: String,
    /// `SimpleScaling`, `StepScaling` or `TargetTrackingScaling`.
    pub policy_type: String,
    /// `AdjustmentType`.
    pub adjustment_type: Option<String>,
    /// `MinAdjustmentStep` (deprecated spelling of the magnitude).
    pub min_adjustment_step: Option<i64>,
    /// `MinAdjustmentMagnitude`.
    pub min_adjustment_magnitude: Option<i64>,
    /// `ScalingAdjustment`.
    pub scaling_adjustment: Option<i64>,
    /// `Cooldown` (seconds).
    pub cooldown: Option<i64>,
    /// `MetricAggregationType`.
    pub metric_aggregation_type: Option<String>,
    /// `StepAdjustments`.
    pub steps: Vec<Step>,
    /// `EstimatedInstanceWarmup` (seconds).
    pub estimated_instance_warmup: Option<i64>,
    /// `TargetTrackingConfiguration`.
    pub target_tracking: Option<TargetTracking>,
    /// `Enabled`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `Alarms`.
    pub alarms: Vec<Alarm>,
}

impl Policy {
    /// The magnitude bound of percentage adjustments (either spelling).
    pub fn magnitude(&self) -> Option<i64> {
        self.min_adjustment_magnitude.or(self.min_adjustment_step)
    }

    /// Writes one `ScalingPolicy` member.
    pub fn render(&self, x: &mut Xml) {
        x.text("AutoScalingGroupName", &self.group)
            .text("PolicyName", &self.name)
            .text("PolicyARN", &self.arn)
            .text("PolicyType", &self.policy_type)
            .opt("AdjustmentType", self.adjustment_type.as_deref())
            .opt("MinAdjustmentStep", self.min_adjustment_step)
            .opt("MinAdjustmentMagnitude", self.min_adjustment_magnitude)
            .opt("ScalingAdjustment", self.scaling_adjustment)
            .opt("Cooldown", self.cooldown);
        if self.policy_type == "StepScaling" {
            x.members("StepAdjustments", &self.steps, |x, s| {
                x.opt("MetricIntervalLowerBound", s.lower)
                    .opt("MetricIntervalUpperBound", s.upper)
                    .text("ScalingAdjustment", &s.adjustment.to_string());
            });
        }
        x.opt(
            "MetricAggregationType",
            self.metric_aggregation_type.as_deref(),
        )
        .opt("EstimatedInstanceWarmup", self.estimated_instance_warmup);
        render_alarms(x, &self.alarms);
        if let Some(t) = &self.target_tracking {
            x.elem("TargetTrackingConfiguration", |x| {
                if let Some(kind) = &t.predefined_type {
                    x.elem("PredefinedMetricSpecification", |x| {
                        x.text("PredefinedMetricType", kind)
                            .opt("ResourceLabel", t.resource_label.as_deref());
                    });
                }
                if let Some(c) = &t.customized {
                    x.elem("CustomizedMetricSpecification", |x| render_tree(x, c));
                }
                x.text("TargetValue", &t.target_value.to_string())
                    .opt("DisableScaleIn", t.disable_scale_in);
            });
        }
        x.text("Enabled", if self.enabled { "true" } else { "false" });
    }
}

/// `<Alarms><member><AlarmName/><AlarmARN/></member>…</Alarms>`.
pub fn render_alarms(x: &mut Xml, alarms: &[Alarm]) {
    x.members("Alarms", alarms, |x, a| {
        x.text("AlarmName", &a.name).text("AlarmARN", &a.arn);
    });
}

/// The query parameters of a structure as a tree: `A.B` nests, `A.member.N` is an array.
pub fn params_tree(p: &Params) -> Value {
    let mut root = Value::Object(Map::new());
    for name in p.names() {
        let Some(value) = p.get(name) else { continue };
        let parts: Vec<&str> = name.split('.').collect();
        insert_path(&mut root, &parts, value);
    }
    sort_arrays(&mut root);
    root
}

/// Inserts a leaf; arrays are first built as objects keyed `#<index>` and sorted after.
fn insert_path(node: &mut Value, parts: &[&str], value: &str) {
    let Value::Object(map) = node else { return };
    match parts {
        [] => {}
        [last] => {
            map.entry(last.to_string())
                .or_insert_with(|| Value::String(value.to_string()));
        }
        [key, "member", index, rest @ ..] => {
            let list = map
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !list.is_object() {
                *list = Value::Object(Map::new());
            }
            let Value::Object(items) = list else { return };
            let item = items.entry(format!("#{index:0>6}")).or_insert_with(|| {
                if rest.is_empty() {
                    Value::String(value.to_string())
                } else {
                    Value::Object(Map::new())
                }
            });
            if !rest.is_empty() {
                insert_path(item, rest, value);
            }
        }
        [key, rest @ ..] => {
            let child = map
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            insert_path(child, rest, value);
        }
    }
}

/// Turns the `#index` objects into arrays (in index order).
fn sort_arrays(node: &mut Value) {
    if let Value::Object(map) = node {
        for v in map.values_mut() {
            sort_arrays(v);
        }
        if !map.is_empty() && map.keys().all(|k| k.starts_with('#')) {
            let items: Vec<Value> = std::mem::take(map).into_iter().map(|(_, v)| v).collect();
            *node = Value::Array(items);
        }
    }
}

/// Writes a tree from [`params_tree`] back as XML (arrays as `<member>` lists).
pub fn render_tree(x: &mut Xml, node: &Value) {
    if let Value::Object(map) = node {
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    x.text(k, s);
                }
                Value::Array(items) => {
                    x.elem(k, |x| {
                        for item in items {
                            x.elem("member", |x| match item {
                                Value::String(s) => {
                                    x.text_only(s);
                                }
                                other => render_tree(x, other),
                            });
                        }
                    });
                }
                other => {
                    x.elem(k, |x| render_tree(x, other));
                }
            }
        }
    }
}

/// Every policy of the caller's account and region whose group exists (the group of the
/// same name and ARN: a policy of a deleted group is gone even before the tick drops it).
pub fn policies_of(
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
) -> QueryResult<Vec<Policy>> {
    let rows = catalog
        .resources(POLICY_KIND, &caller.region)
        .map_err(|e| QueryError::internal(e.to_string()))?;
    let mut live = LiveGroups::default();
    let mut out = Vec::new();
    for row in rows.iter().filter(|r| r.account_id == caller.account_id) {
        match serde_json::from_str::<Policy>(&row.doc) {
            Ok(p) if live.exists(access, caller, &p.group, &p.group_arn) => out.push(p),
            Ok(_) => {}
            Err(e) => tracing::warn!(id = %row.id, "unreadable scaling policy: {e}"),
        }
    }
    out.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    Ok(out)
}

/// Group lookups memoized for one request.
#[derive(Default)]
pub struct LiveGroups(std::collections::HashMap<String, Option<String>>);

impl LiveGroups {
    /// Whether the caller's group `name` exists with ARN `arn` (any ARN if `arn` is empty).
    pub fn exists(
        &mut self,
        access: &dyn GroupAccess,
        caller: &Caller,
        name: &str,
        arn: &str,
    ) -> bool {
        let current = self
            .0
            .entry(name.to_string())
            .or_insert_with(|| access.group(caller, name).map(|g| g.arn));
        current
            .as_deref()
            .is_some_and(|a| arn.is_empty() || a == arn)
    }
}

/// Every policy of every account and region, with its owner's account id and region.
pub fn all_policies(catalog: &Catalog) -> QueryResult<Vec<(String, String, Policy)>> {
    let rows = catalog
        .resources_of_kind(POLICY_KIND)
        .map_err(|e| QueryError::internal(e.to_string()))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            serde_json::from_str::<Policy>(&row.doc)
                .ok()
                .map(|p| (row.account_id, row.region, p))
        })
        .collect())
}

/// Stores a policy (insert or replace its row).
pub fn store(catalog: &Catalog, caller: &Caller, p: &Policy) -> QueryResult<()> {
    let doc = serde_json::to_string(p).map_err(|e| QueryError::internal(e.to_string()))?;
    let state = if p.enabled { "enabled" } else { "disabled" };
    let updated = catalog
        .update_resource(&p.arn, state, &doc)
        .map_err(|e| QueryError::internal(e.to_string()))?;
    if !updated {
        catalog
            .insert_resource(&ResourceRow {
                id: p.arn.clone(),
                kind: POLICY_KIND.into(),
                account_id: caller.account_id.clone(),
                region: caller.region.clone(),
                state: state.into(),
                doc,
                created_at_ms: catalog::now_ms(),
            })
            .map_err(|e| QueryError::internal(e.to_string()))?;
    }
    Ok(())
}

/// Deletes a policy's row.
pub fn remove(catalog: &Catalog, arn: &str) -> QueryResult<()> {
    catalog
        .delete_resource(arn)
        .map(|_| ())
        .map_err(|e| QueryError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_round_trip() {
        let p = Params::from_pairs([
            ("MetricName", "Queue"),
            ("Namespace", "App"),
            ("Dimensions.member.2.Name", "b"),
            ("Dimensions.member.2.Value", "2"),
            ("Dimensions.member.1.Name", "a"),
            ("Dimensions.member.1.Value", "1"),
            ("Metrics.member.1.MetricStat.Metric.MetricName", "m"),
            ("Metrics.member.1.Id", "q1"),
            ("Tags", ""),
        ]);
        let tree = params_tree(&p);
        assert_eq!(tree["Dimensions"][0]["Name"], "a");
        assert_eq!(tree["Dimensions"][1]["Value"], "2");
        assert_eq!(
            tree["Metrics"][0]["MetricStat"]["Metric"]["MetricName"],
            "m"
        );
        let mut x = Xml::new();
        render_tree(&mut x, &tree);
        let xml = x.finish();
        assert!(xml.contains(
            "<Dimensions><member><Name>a</Name><Value>1</Value></member><member><Name>b</Name>"
        ));
        assert!(xml.contains("<Metrics><member><Id>q1</Id><MetricStat><Metric><MetricName>m</MetricName></Metric></MetricStat></member></Metrics>"));
        assert!(xml.contains("<MetricName>Queue</MetricName>"));
        assert!(xml.contains("<Tags></Tags>"));
    }

    #[test]
    fn policy_docs_default_enabled() {
        let p: Policy = serde_json::from_str(r#"{"name":"p"}"#).unwrap();
        assert!(p.enabled);
        let mut x = Xml::new();
        Policy {
            policy_type: "SimpleScaling".into(),
            enabled: false,
            ..p
        }
        .render(&mut x);
        let xml = x.finish();
        assert!(xml.contains("<Enabled>false</Enabled>"));
        assert!(xml.contains("<Alarms></Alarms>"));
        assert!(!xml.contains("StepAdjustments"));
    }
}
