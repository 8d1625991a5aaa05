//! The group core as policies see it: [`GroupAccess`] implemented by [`AutoScaling`]
//! over its group rows, the engine (CPU counters) and ELBv2 (request counters), and
//! [`tick`], the controller's entry point.

use awsquery::{Caller, QueryError, QueryResult};

use super::{GroupAccess, GroupState, InstanceState};
use crate::{AutoScaling, Group};

fn state_of(g: &Group) -> GroupState {
    GroupState {
        name: g.name.clone(),
        arn: g.arn.clone(),
        min: g.min,
        max: g.max,
        desired: g.desired,
        default_cooldown_s: g.default_cooldown,
        default_instance_warmup_s: g.default_instance_warmup,
        target_group_arns: g
            .target_groups
            .iter()
            .filter(|a| !matches!(a.state.as_str(), "Removing" | "Removed"))
            .map(|a| a.arn.clone())
            .collect(),
        instances: g
            .instances
            .iter()
            .map(|m| InstanceState {
                id: m.id.clone(),
                lifecycle_state: m.lifecycle.clone(),
                launched_ms: m.launched_ms,
                in_service_ms: m.in_service_ms,
            })
            .collect(),
        suspended_processes: g.suspended.iter().map(|(p, _)| p.clone()).collect(),
        // The core starts a cooldown of DefaultCooldown at each capacity change.
        last_capacity_change_ms: (g.cooldown_until_ms > 0)
            .then(|| g.cooldown_until_ms - g.default_cooldown * 1000),
    }
}

impl GroupAccess for AutoScaling {
    fn group(&self, caller: &Caller, name: &str) -> Option<GroupState> {
        self.find(caller, name).ok().map(|s| state_of(&s.group))
    }

    fn all_groups(&self) -> QueryResult<Vec<(Caller, GroupState)>> {
        Ok(AutoScaling::all_groups(self)?
            .into_iter()
            .filter(|s| !s.group.deleting)
            .map(|s| {
                (
                    Caller {
                        account_id: s.account_id.clone(),
                        region: s.region.clone(),
                    },
                    state_of(&s.group),
                )
            })
            .collect())
    }

    fn set_capacity(
        &self,
        caller: &Caller,
        name: &str,
        min: Option<i64>,
        max: Option<i64>,
        desired: Option<i64>,
        cause: &str,
    ) -> QueryResult<()> {
        self.update(caller, name, |s| {
            let g = &mut s.group;
            let min = min.unwrap_or(g.min);
            let max = max.unwrap_or(g.max);
            let desired = desired.unwrap_or(g.desired).max(min).min(max);
            if min > max {
                return Err(QueryError::validation(format!(
                    "The MinSize ({min}) must not be greater than the MaxSize ({max})."
                )));
            }
            g.min = min;
            g.max = max;
            if desired != g.desired {
                let now = catalog::now_ms();
                g.last_cause = cause.to_string();
                g.desired = desired;
                g.cooldown_until_ms = now + g.default_cooldown * 1000;
            }
            Ok(())
        })
    }

    fn instance_cpu(&self, instance_id: &str) -> Option<engine::instances::CpuSample> {
        self.cloud.instance_cpu(instance_id)
    }

    fn target_group_requests(&self, caller: &Caller, target_group_arn: &str) -> Option<u64> {
        self.elb.request_count(caller, target_group_arn).ok()
    }
}

/// The controller's call, once a second after it processed the groups.
pub(crate) fn tick(svc: &AutoScaling) {
    svc.policies
        .tick(svc, svc.cloud.catalog(), catalog::now_ms());
}
