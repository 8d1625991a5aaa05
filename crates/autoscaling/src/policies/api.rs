//! The scaling-policy operations: `PutScalingPolicy`, `DescribePolicies`, `DeletePolicy`,
//! `ExecutePolicy`, `DescribeMetricCollectionTypes`.

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use catalog::Catalog;

use super::adjust::{self, AdjustmentType, Step};
use super::model::{self, Alarm, Policy, TargetTracking};
use super::{GroupAccess, GroupState, Policies, group_not_found, unsupported, uuid};

const PREDEFINED: [&str; 4] = [
    "ASGAverageCPUUtilization",
    "ASGAverageNetworkIn",
    "ASGAverageNetworkOut",
    "ALBRequestCountPerTarget",
];

fn name_param(p: &Params, name: &str, max: usize) -> QueryResult<String> {
    let v = p.required(name)?;
    if v.chars().count() > max {
        return Err(QueryError::validation(format!(
            "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must have length less than or equal to {max}",
            lower_first(name)
        )));
    }
    Ok(v)
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

fn not_supported_for(field: &str, policy_type: &str) -> QueryError {
    QueryError::validation(format!(
        "{field} is not supported for policy type {policy_type}."
    ))
}

/// Reads the `TargetTrackingConfiguration` and resolves an ALB resource label against
/// the group's target groups.
fn target_tracking(p: &Params, group: &GroupState) -> QueryResult<TargetTracking> {
    let t = p.nested("TargetTrackingConfiguration");
    let target_value = t
        .float("TargetValue")?
        .ok_or_else(|| QueryError::missing("TargetTrackingConfiguration.TargetValue"))?;
    let mut out = TargetTracking {
        target_value,
        disable_scale_in: t.bool("DisableScaleIn")?,
        ..TargetTracking::default()
    };
    let has_predefined = t.has("PredefinedMetricSpecification");
    let has_customized = t.has("CustomizedMetricSpecification");
    if has_predefined == has_customized {
        return Err(QueryError::validation(
            "Exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification must be specified.",
        ));
    }
    if has_customized {
        out.customized = Some(model::params_tree(
            &t.nested("CustomizedMetricSpecification"),
        ));
        return Ok(out);
    }
    let spec = t.nested("PredefinedMetricSpecification");
    let kind = spec.required("PredefinedMetricType")?;
    if !PREDEFINED.contains(&kind.as_str()) {
        return Err(QueryError::validation(format!(
            "1 validation error detected: Value '{kind}' at 'targetTrackingConfiguration.predefinedMetricSpecification.predefinedMetricType' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            PREDEFINED.join(", ")
        )));
    }
    let label = spec.string("ResourceLabel").filter(|l| !l.is_empty());
    if kind == "ALBRequestCountPerTarget" {
        let label = label.ok_or_else(|| {
            QueryError::validation("ResourceLabel is required for the predefined metric type ALBRequestCountPerTarget.")
        })?;
        out.target_group_arn = Some(resolve_label(&label, group)?);
        out.resource_label = Some(label);
    } else if let Some(label) = label {
        return Err(QueryError::validation(format!(
            "ResourceLabel '{label}' is only valid for the predefined metric type ALBRequestCountPerTarget."
        )));
    }
    out.predefined_type = Some(kind);
    Ok(out)
}

/// The attached target group a resource label `app/<lb>/<id>/targetgroup/<tg>/<id>` names.
fn resolve_label(label: &str, group: &GroupState) -> QueryResult<String> {
    let parts: Vec<&str> = label.split('/').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "app"
        && parts[3] == "targetgroup"
        && parts.iter().all(|s| !s.is_empty());
    if !well_formed {
        return Err(QueryError::validation(format!(
            "Invalid ResourceLabel '{label}': expected app/<load-balancer-name>/<load-balancer-id>/targetgroup/<target-group-name>/<target-group-id>."
        )));
    }
    let suffix = format!(":{}", parts[3..].join("/"));
    group
        .target_group_arns
        .iter()
        .find(|arn| arn.ends_with(&suffix))
        .cloned()
        .ok_or_else(|| {
            QueryError::validation(format!(
                "The target group in ResourceLabel '{label}' is not attached to the Auto Scaling group {}.",
                group.name
            ))
        })
}

fn steps(p: &Params) -> QueryResult<Vec<Step>> {
    p.structs("StepAdjustments")?
        .into_iter()
        .map(|s| {
            Ok(Step {
                lower: s.float("MetricIntervalLowerBound")?,
                upper: s.float("MetricIntervalUpperBound")?,
                adjustment: s.int("ScalingAdjustment")?.ok_or_else(|| {
                    QueryError::missing("StepAdjustments.member.N.ScalingAdjustment")
                })?,
            })
        })
        .collect()
}

fn alarm(caller: &Caller, name: String) -> Alarm {
    Alarm {
        arn: format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{name}",
            caller.region, caller.account_id
        ),
        name,
    }
}

/// `PutScalingPolicy`: creates or replaces (same group and name, same ARN) a policy.
pub(super) fn put_scaling_policy(
    me: &Policies,
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
    p: &Params,
) -> QueryResult<Option<String>> {
    let group_name = name_param(p, "AutoScalingGroupName", 255)?;
    let name = name_param(p, "PolicyName", 255)?;
    let group = access
        .group(caller, &group_name)
        .ok_or_else(|| group_not_found(&group_name))?;
    let policy_type = p
        .string("PolicyType")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "SimpleScaling".into());
    match policy_type.as_str() {
        "SimpleScaling" | "StepScaling" | "TargetTrackingScaling" => {}
        "PredictiveScaling" => return Err(unsupported("Predictive scaling")),
        other => {
            return Err(QueryError::validation(format!(
                "Invalid policy type '{other}': use SimpleScaling, StepScaling or TargetTrackingScaling."
            )));
        }
    }
    let simple = policy_type == "SimpleScaling";
    let step = policy_type == "StepScaling";
    let mut policy = Policy {
        group: group_name.clone(),
        group_arn: group.arn.clone(),
        name: name.clone(),
        policy_type: policy_type.clone(),
        adjustment_type: p.string("AdjustmentType").filter(|s| !s.is_empty()),
        min_adjustment_step: p.int("MinAdjustmentStep")?,
        min_adjustment_magnitude: p.int("MinAdjustmentMagnitude")?,
        scaling_adjustment: p.int("ScalingAdjustment")?,
        cooldown: p.int_in("Cooldown", 0, i64::from(i32::MAX))?,
        metric_aggregation_type: p.string("MetricAggregationType").filter(|s| !s.is_empty()),
        steps: steps(p)?,
        estimated_instance_warmup: p.int_in("EstimatedInstanceWarmup", 0, i64::from(i32::MAX))?,
        target_tracking: None,
        enabled: p.bool("Enabled")?.unwrap_or(true),
        ..Policy::default()
    };
    if p.has("PredictiveScalingConfiguration") {
        return Err(unsupported("Predictive scaling"));
    }
    // Fields by policy type, as AWS checks them.
    if simple || step {
        let kind = policy.adjustment_type.as_deref().ok_or_else(|| {
            QueryError::validation(format!(
                "AdjustmentType is required for policy type {policy_type}."
            ))
        })?;
        let kind = AdjustmentType::parse(kind).ok_or_else(|| {
            QueryError::validation(format!(
                "Invalid AdjustmentType '{kind}': use ChangeInCapacity, ExactCapacity or PercentChangeInCapacity."
            ))
        })?;
        if policy.magnitude().is_some() && kind != AdjustmentType::PercentChangeInCapacity {
            return Err(QueryError::validation(
                "MinAdjustmentMagnitude is only supported with the adjustment type PercentChangeInCapacity.",
            ));
        }
        if policy.magnitude().is_some_and(|m| m < 1) {
            return Err(QueryError::validation(
                "MinAdjustmentMagnitude must be at least 1.",
            ));
        }
        if p.has("TargetTrackingConfiguration") {
            return Err(not_supported_for(
                "TargetTrackingConfiguration",
                &policy_type,
            ));
        }
    } else {
        for field in [
            "AdjustmentType",
            "ScalingAdjustment",
            "MinAdjustmentMagnitude",
            "MinAdjustmentStep",
        ] {
            if p.get(field).is_some_and(|v| !v.is_empty()) {
                return Err(not_supported_for(field, &policy_type));
            }
        }
        policy.target_tracking = Some(target_tracking(p, &group)?);
    }
    if simple {
        if policy.scaling_adjustment.is_none() {
            return Err(QueryError::validation(
                "ScalingAdjustment is required for policy type SimpleScaling.",
            ));
        }
        for field in [
            "StepAdjustments",
            "MetricAggregationType",
            "EstimatedInstanceWarmup",
        ] {
            if p.has(field) && p.get(field) != Some("") {
                return Err(not_supported_for(field, &policy_type));
            }
        }
    } else {
        // Terraform sends Cooldown=0 as a placeholder for other types.
        if policy.cooldown.is_some_and(|c| c != 0) {
            return Err(not_supported_for("Cooldown", &policy_type));
        }
        policy.cooldown = None;
    }
    if step {
        if policy.scaling_adjustment.is_some() {
            return Err(not_supported_for("ScalingAdjustment", &policy_type));
        }
        adjust::validate_steps(&policy.steps).map_err(QueryError::validation)?;
        let agg = policy
            .metric_aggregation_type
            .get_or_insert_with(|| "Average".into());
        if !["Minimum", "Maximum", "Average"].contains(&agg.as_str()) {
            return Err(QueryError::validation(format!(
                "Invalid MetricAggregationType '{agg}': use Minimum, Maximum or Average."
            )));
        }
    } else if !policy.steps.is_empty() {
        return Err(not_supported_for("StepAdjustments", &policy_type));
    }

    let _g = me.lock();
    let existing = model::policies_of(access, catalog, caller)?
        .into_iter()
        .find(|x| x.group == group_name && x.name == name);
    policy.arn = existing.as_ref().map(|x| x.arn.clone()).unwrap_or_else(|| {
        format!(
            "arn:aws:autoscaling:{}:{}:scalingPolicy:{}:autoScalingGroupName/{group_name}:policyName/{name}",
            caller.region,
            caller.account_id,
            uuid()
        )
    });
    if let Some(t) = &policy.target_tracking {
        // Keep the alarms' id across updates.
        let id = existing
            .as_ref()
            .and_then(|x| x.alarms.first())
            .and_then(|a| {
                a.name
                    .rsplit_once("-AlarmHigh-")
                    .map(|(_, id)| id.to_string())
            })
            .unwrap_or_else(uuid);
        policy.alarms.push(alarm(
            caller,
            format!("TargetTracking-{group_name}-AlarmHigh-{id}"),
        ));
        if t.disable_scale_in != Some(true) {
            policy.alarms.push(alarm(
                caller,
                format!("TargetTracking-{group_name}-AlarmLow-{id}"),
            ));
        }
    }
    model::store(catalog, caller, &policy)?;
    let mut x = Xml::new();
    x.text("PolicyARN", &policy.arn);
    model::render_alarms(&mut x, &policy.alarms);
    Ok(Some(x.finish()))
}

/// Finds a policy by name (with its group) or by ARN.
fn find(
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
    p: &Params,
) -> QueryResult<Policy> {
    let name = name_param(p, "PolicyName", 1600)?;
    let group = p.string("AutoScalingGroupName").filter(|g| !g.is_empty());
    let all = model::policies_of(access, catalog, caller)?;
    if name.starts_with("arn:") {
        return all
            .into_iter()
            .find(|x| x.arn == name && group.as_ref().is_none_or(|g| *g == x.group))
            .ok_or_else(|| QueryError::validation(format!("Policy not found - {name}")));
    }
    let group = group.ok_or_else(|| QueryError::missing("AutoScalingGroupName"))?;
    if access.group(caller, &group).is_none() {
        return Err(group_not_found(&group));
    }
    all.into_iter()
        .find(|x| x.group == group && x.name == name)
        .ok_or_else(|| {
            QueryError::validation(format!(
                "Policy not found - Scaling policy '{name}' not found for AutoScalingGroup '{group}'"
            ))
        })
}

/// `DeletePolicy`.
pub(super) fn delete_policy(
    me: &Policies,
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
    p: &Params,
) -> QueryResult<Option<String>> {
    let _g = me.lock();
    let policy = find(access, catalog, caller, p)?;
    model::remove(catalog, &policy.arn)?;
    Ok(None)
}

/// `DescribePolicies` (by group, names or ARNs, types; `MaxRecords`/`NextToken`).
pub(super) fn describe_policies(
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
    p: &Params,
) -> QueryResult<Option<String>> {
    let group = p.string("AutoScalingGroupName").filter(|g| !g.is_empty());
    if let Some(g) = &group
        && access.group(caller, g).is_none()
    {
        return Err(group_not_found(g));
    }
    let names = p.strings("PolicyNames")?;
    let types = p.strings("PolicyTypes")?;
    let max = p.int_in("MaxRecords", 1, 100)?.unwrap_or(50) as usize;
    let list: Vec<Policy> = model::policies_of(access, catalog, caller)?
        .into_iter()
        .filter(|x| group.as_ref().is_none_or(|g| *g == x.group))
        .filter(|x| names.is_empty() || names.iter().any(|n| *n == x.name || *n == x.arn))
        .filter(|x| types.is_empty() || types.contains(&x.policy_type))
        .collect();
    let (list, next) = super::page_by_arn(list, p.string("NextToken"), max, |x| &x.arn)?;
    let mut x = Xml::new();
    x.members("ScalingPolicies", &list, |x, pol| pol.render(x));
    x.opt("NextToken", next);
    Ok(Some(x.finish()))
}

/// `ExecutePolicy`: runs a simple or step policy now.
pub(super) fn execute_policy(
    me: &Policies,
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
    p: &Params,
) -> QueryResult<Option<String>> {
    // One policy execution at a time: each computes from the desired capacity it reads.
    let _g = me.lock();
    let policy = find(access, catalog, caller, p)?;
    let group = access
        .group(caller, &policy.group)
        .ok_or_else(|| group_not_found(&policy.group))?;
    if !policy.enabled {
        return Err(QueryError::validation(format!(
            "The scaling policy {} is disabled.",
            policy.name
        )));
    }
    let kind = policy
        .adjustment_type
        .as_deref()
        .and_then(AdjustmentType::parse);
    let now = catalog::now_ms();
    let new = match (policy.policy_type.as_str(), kind) {
        ("SimpleScaling", Some(kind)) => {
            if p.bool("HonorCooldown")?.unwrap_or(false) {
                let cooldown = policy.cooldown.unwrap_or(group.default_cooldown_s);
                if group
                    .last_capacity_change_ms
                    .is_some_and(|t| now < t + cooldown * 1000)
                {
                    return Err(QueryError::new(
                        "ScalingActivityInProgress",
                        format!(
                            "The cooldown period of the AutoScalingGroup {} has not elapsed; the scaling policy {} was not executed.",
                            group.name, policy.name
                        ),
                    ));
                }
            }
            adjust::adjusted(
                group.desired,
                kind,
                policy.scaling_adjustment.unwrap_or(0),
                policy.magnitude(),
            )
        }
        ("StepScaling", Some(kind)) => {
            let metric = p.float("MetricValue")?.ok_or_else(|| {
                QueryError::validation("MetricValue is required for step scaling policies.")
            })?;
            let threshold = p.float("BreachThreshold")?.ok_or_else(|| {
                QueryError::validation("BreachThreshold is required for step scaling policies.")
            })?;
            let step = adjust::select_step(&policy.steps, metric, threshold).ok_or_else(|| {
                QueryError::validation(format!(
                    "The metric value {metric} (breach threshold {threshold}) is not within any step adjustment range of policy {}.",
                    policy.name
                ))
            })?;
            adjust::adjusted(group.desired, kind, step.adjustment, policy.magnitude())
        }
        _ => {
            return Err(QueryError::validation(format!(
                "ExecutePolicy is supported only for SimpleScaling and StepScaling policies; {} is a {} policy.",
                policy.name, policy.policy_type
            )));
        }
    };
    let new = adjust::clamp(new, group.min, group.max);
    if new != group.desired {
        let cause = format!(
            "At {} a user request executed policy {} changing the desired capacity from {} to {}.",
            iso_seconds(now),
            policy.name,
            group.desired,
            new
        );
        access.set_capacity(caller, &group.name, None, None, Some(new), &cause)?;
    }
    Ok(None)
}

/// ISO 8601 to the second, as activity causes print times.
pub(crate) fn iso_seconds(ms: i64) -> String {
    let full = engine::query::iso8601(ms);
    match full.split_once('.') {
        Some((s, _)) => format!("{s}Z"),
        None => full,
    }
}

/// The group metrics `EnableMetricsCollection` accepts, as AWS lists them.
const GROUP_METRICS: [&str; 20] = [
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupStandbyInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
    "GroupInServiceCapacity",
    "GroupPendingCapacity",
    "GroupStandbyCapacity",
    "GroupTerminatingCapacity",
    "GroupTotalCapacity",
    "WarmPoolDesiredCapacity",
    "WarmPoolWarmedCapacity",
    "WarmPoolPendingCapacity",
    "WarmPoolTerminatingCapacity",
    "WarmPoolTotalCapacity",
    "GroupAndWarmPoolDesiredCapacity",
    "GroupAndWarmPoolTotalCapacity",
];

/// `DescribeMetricCollectionTypes`.
pub(super) fn metric_collection_types() -> String {
    let mut x = Xml::new();
    x.members("Metrics", &GROUP_METRICS, |x, m| {
        x.text("Metric", m);
    });
    x.members("Granularities", &["1Minute"], |x, g| {
        x.text("Granularity", g);
    });
    x.finish()
}
