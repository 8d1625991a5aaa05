//! Scaling policies (simple, step, target tracking) and the periodic evaluation that
//! scales groups on them, above the group core through [`GroupAccess`].
//!
//! API: `PutScalingPolicy`, `DescribePolicies`, `DeletePolicy`, `ExecutePolicy`,
//! `DescribeMetricCollectionTypes`,
//! and the scheduled-action operations of [`crate::scheduled`]
//! (dispatched from [`Policies::call`]). Predictive scaling answers `UnsupportedOperation`.
//! Policies are catalog rows (kind `asg-policy`), so they survive restarts. A policy
//! belongs to its group by name and ARN: when the group is deleted its policies and
//! scheduled actions are gone at once (reads check the group) and their rows are dropped
//! by the next tick; a new group of the same name starts without them. `ExecutePolicy` of
//! a disabled policy answers `ValidationError`.
//!
//! Simple scaling: `ExecutePolicy` applies the adjustment to the desired capacity and
//! clamps the result to [min, max]; with `HonorCooldown` it refuses with
//! `ScalingActivityInProgress` while the policy's `Cooldown` (else the group's
//! `DefaultCooldown`) since the group's last capacity change runs. Step scaling:
//! `ExecutePolicy` with `MetricValue` and `BreachThreshold` picks the step (see
//! [`adjust::select_step`]). There are no CloudWatch alarms to trigger these two types by
//! themselves; only `ExecutePolicy` runs them.
//!
//! Target tracking is evaluated by [`Policies::tick`] (every second, from the controller),
//! deterministically:
//! - Metric periods last `OPENAMI_ASG_METRIC_PERIOD_SECONDS` (default 60, as CloudWatch).
//!   `ASGAverageCPUUtilization` is the mean over the group's InService instances past
//!   their warmup of each instance's vCPU time used in the period divided by wall time ×
//!   vCPUs (the engine's counters; an instance needs a counter reading from at least half
//!   a period earlier to count). `ALBRequestCountPerTarget` is the requests the target
//!   group forwarded in the period, scaled to one minute (the CloudWatch metric is a
//!   per-minute sum), divided by the InService instances past their warmup; a period with
//!   no requests is 0, and with requests but no such instance it has no data.
//!   `ASGAverageNetworkIn/Out` and customized metrics are stored but have no data here.
//! - Warmup: the policy's `EstimatedInstanceWarmup`, else the group's
//!   `DefaultInstanceWarmup`, else its `DefaultCooldown`, counted from InService.
//! - Scale out when the last `OPENAMI_ASG_SCALE_OUT_PERIODS` (3) values exceed the target:
//!   desired becomes `ceil(n × metric / target)` (n = instances measured), at most max,
//!   and only upward (warming instances already in desired are not added again).
//! - Scale in when the last `OPENAMI_ASG_SCALE_IN_PERIODS` (15) values are below
//!   0.9 × target, to the smallest capacity keeping the projected metric ≤ target, never
//!   below min, never with `DisableScaleIn`, and only when no instance is pending or
//!   warming and the last capacity change is older than the warmup.
//! - With several policies: out if any says out (to the largest), in only if all agree.
//! - A period without data breaks a run (no scale-in on missing data), except for
//!   `ALBRequestCountPerTarget` where it counts as 0. After a change the histories restart.
//! - Disabled policies and groups with the `AlarmNotification` process suspended are not
//!   evaluated. Histories live in memory: a restart begins new periods.

mod access;
mod adjust;
mod api;
mod evaluate;
mod model;
mod tracking;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use awsquery::{Caller, Params, QueryError, QueryResult};
use catalog::Catalog;

pub(crate) use access::tick;
pub(crate) use api::iso_seconds;
pub(crate) use model::LiveGroups;
pub(crate) use tracking::Tuning;

/// An instance of a group, as policies see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InstanceState {
    /// `i-…`.
    pub id: String,
    /// `Pending`, `Pending:Wait`, `InService`, `Terminating`, `Standby`, …
    pub lifecycle_state: String,
    /// When it was launched (epoch ms).
    pub launched_ms: i64,
    /// When it went InService (epoch ms), if it did.
    pub in_service_ms: Option<i64>,
}

/// A group, as policies and scheduled actions see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    /// `AutoScalingGroupName`.
    pub name: String,
    /// `AutoScalingGroupARN`.
    pub arn: String,
    /// `MinSize`.
    pub min: i64,
    /// `MaxSize`.
    pub max: i64,
    /// `DesiredCapacity`.
    pub desired: i64,
    /// `DefaultCooldown` (seconds).
    pub default_cooldown_s: i64,
    /// `DefaultInstanceWarmup` (seconds), if set.
    pub default_instance_warmup_s: Option<i64>,
    /// Attached target group ARNs.
    pub target_group_arns: Vec<String>,
    /// Its instances.
    pub instances: Vec<InstanceState>,
    /// Suspended process names (`AlarmNotification`, `ScheduledActions`, …).
    pub suspended_processes: Vec<String>,
    /// When its desired capacity last changed (by anything), if known: cooldowns count from it.
    pub last_capacity_change_ms: Option<i64>,
}

impl GroupState {
    /// Whether a process is suspended.
    pub fn suspended(&self, process: &str) -> bool {
        self.suspended_processes.iter().any(|p| p == process)
    }
}

/// What policies and scheduled actions need from the group core (implemented by
/// `AutoScaling` in `access.rs`).
pub(crate) trait GroupAccess {
    /// The caller's group, or `None` if it does not exist.
    fn group(&self, caller: &Caller, name: &str) -> Option<GroupState>;
    /// Every group of every account and region, with its owner (an error when they
    /// cannot be read: nothing is evaluated or cleaned up then).
    fn all_groups(&self) -> QueryResult<Vec<(Caller, GroupState)>>;
    /// Sets any of min, max and desired capacity (desired is clamped into the resulting
    /// [min, max], as `UpdateAutoScalingGroup` moves it; `ValidationError` if min > max),
    /// recording `cause` as the Cause of the scaling activity it brings.
    fn set_capacity(
        &self,
        caller: &Caller,
        name: &str,
        min: Option<i64>,
        max: Option<i64>,
        desired: Option<i64>,
        cause: &str,
    ) -> QueryResult<()>;
    /// The cumulative vCPU time of a running instance (`engine::Cloud::instance_cpu`).
    fn instance_cpu(&self, instance_id: &str) -> Option<engine::instances::CpuSample>;
    /// Requests forwarded to a target group so far (monotonic), if it exists.
    fn target_group_requests(&self, caller: &Caller, target_group_arn: &str) -> Option<u64>;
}

/// Key of a group in the in-memory metric state.
type GroupKey = (String, String, String);

/// Scaling policies and scheduled actions: the operations and the periodic evaluation.
#[derive(Debug)]
pub(crate) struct Policies {
    /// Serializes read-modify-write of policy and scheduled-action rows.
    changes: Mutex<()>,
    /// Target-tracking metric state per group.
    metrics: Mutex<HashMap<GroupKey, tracking::GroupMetrics>>,
    tuning: Tuning,
}

impl Default for Policies {
    fn default() -> Self {
        Self::new(Tuning::from_env())
    }
}

/// `NextToken` paging where the token is the ARN of the next page's first item (policies
/// and scheduled actions): the page of at most `max` items and the next token.
pub(crate) fn page_by_arn<T>(
    mut list: Vec<T>,
    token: Option<String>,
    max: usize,
    arn: impl Fn(&T) -> &String,
) -> QueryResult<(Vec<T>, Option<String>)> {
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let at = list.iter().position(|x| *arn(x) == token).ok_or_else(|| {
            QueryError::new(
                "InvalidNextToken",
                format!("The token '{token}' is invalid."),
            )
        })?;
        list.drain(..at);
    }
    let next = list.get(max).map(|x| arn(x).clone());
    list.truncate(max);
    Ok((list, next))
}

/// `ValidationError` for a group that does not exist (the core's wording).
pub(crate) fn group_not_found(name: &str) -> QueryError {
    QueryError::validation(format!(
        "AutoScalingGroup name not found - AutoScalingGroup '{name}' not found"
    ))
}

/// A random (version 4) UUID.
pub(crate) fn uuid() -> String {
    let mut b = engine::ids::random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex_string(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `UnsupportedOperation` for what openami does not do.
pub(crate) fn unsupported(what: &str) -> QueryError {
    QueryError::new(
        "UnsupportedOperation",
        format!("{what} is not supported by openami."),
    )
}

impl Policies {
    /// The service part with the given evaluation windows.
    pub fn new(tuning: Tuning) -> Policies {
        Policies {
            changes: Mutex::new(()),
            metrics: Mutex::new(HashMap::new()),
            tuning,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `action` if it is one of the policy or scheduled-action operations (`None`
    /// otherwise, so the core can try its own).
    pub fn call(
        &self,
        access: &dyn GroupAccess,
        catalog: &Catalog,
        caller: &Caller,
        action: &str,
        p: &Params,
    ) -> Option<QueryResult<Option<String>>> {
        let out = match action {
            "PutScalingPolicy" => api::put_scaling_policy(self, access, catalog, caller, p),
            "DescribePolicies" => api::describe_policies(access, catalog, caller, p),
            "DeletePolicy" => api::delete_policy(self, access, catalog, caller, p),
            "ExecutePolicy" => api::execute_policy(self, access, catalog, caller, p),
            "DescribeMetricCollectionTypes" => Ok(Some(api::metric_collection_types())),
            "GetPredictiveScalingForecast" => Err(unsupported("Predictive scaling")),
            _ => return crate::scheduled::call(self, access, catalog, caller, action, p),
        };
        Some(out)
    }

    /// One evaluation round (the controller calls it about every second): drops the
    /// policies and actions of groups that no longer exist, runs due scheduled actions,
    /// samples metrics and applies target-tracking decisions.
    pub fn tick(&self, access: &dyn GroupAccess, catalog: &Catalog, now_ms: i64) {
        let groups = match access.all_groups() {
            Ok(groups) => groups,
            Err(e) => {
                tracing::warn!("autoscaling policies: cannot read groups: {}", e.message);
                return;
            }
        };
        self.collect_orphans(catalog, &groups);
        crate::scheduled::run_due(self, access, catalog, &groups, now_ms);
        evaluate::track(self, access, catalog, &groups, now_ms);
    }

    /// Deletes policy and scheduled-action rows whose group is gone (matched by owner,
    /// name and the group ARN recorded when they were put: a new group of the same name
    /// does not inherit them).
    fn collect_orphans(&self, catalog: &Catalog, groups: &[(Caller, GroupState)]) {
        let _g = self.lock();
        let exists = |account: &str, region: &str, name: &str, arn: &str| {
            groups.iter().any(|(c, g)| {
                c.account_id == account
                    && c.region == region
                    && g.name == name
                    && (arn.is_empty() || g.arn == arn)
            })
        };
        for kind in [model::POLICY_KIND, crate::scheduled::SCHEDULED_KIND] {
            let Ok(rows) = catalog.resources_of_kind(kind) else {
                return;
            };
            for row in rows {
                let Ok(doc) = serde_json::from_str::<serde_json::Value>(&row.doc) else {
                    continue;
                };
                let field = |k: &str| {
                    doc.get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string()
                };
                if !exists(
                    &row.account_id,
                    &row.region,
                    &field("group"),
                    &field("group_arn"),
                ) {
                    tracing::info!(id = %row.id, "dropping a policy or scheduled action of a deleted group");
                    if let Err(e) = catalog.delete_resource(&row.id) {
                        tracing::warn!(id = %row.id, "cannot drop it: {e}");
                    }
                }
            }
        }
    }
}
