//! The group controller: every second, for each group, observe its instances through
//! the engine, move them through their lifecycle (Pending → [Pending:Wait] → InService →
//! Terminating → [draining] → [Terminating:Wait] → terminated), replace unhealthy ones,
//! and launch or terminate until the count of Pending and InService instances equals the
//! desired capacity (plus what an instance refresh adds).

use std::collections::HashMap;

use engine::instances::InstanceView;
use engine::query::{Page, iso8601};

use crate::groups::new_activity;
use crate::model::{self, Activity, Group, HookWait, Member, Stored};
use crate::{AutoScaling, engine_caller};

/// Launch hook transition.
pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
/// Terminate hook transition.
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
/// The tag every instance of a group carries.
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// Starts terminating a member: `Terminating`, with a new activity (returned). `None`
/// if it is not in the group or already on its way out.
pub fn begin_termination(
    g: &mut Group,
    id: &str,
    cause: &str,
    replace: bool,
    now: i64,
) -> Option<Activity> {
    let m = g.instances.iter_mut().find(|m| m.id == id)?;
    if m.terminating() || m.lifecycle == "Terminated" {
        return None;
    }
    let unfinished = m.activity_id.take();
    m.lifecycle = "Terminating".into();
    m.replace = replace;
    m.wait = None;
    let a = new_activity(
        format!("Terminating EC2 instance: {id}"),
        cause.to_string(),
        now,
    );
    m.activity_id = Some(a.id.clone());
    if let Some(prev) = unfinished.as_deref().and_then(|p| g.activity_mut(p))
        && prev.end_ms.is_none()
    {
        prev.status = "Cancelled".into();
        prev.progress = 100;
        prev.end_ms = Some(now);
        prev.message = Some(format!(
            "Instance {id} was terminated before it went in service."
        ));
    }
    g.add_activity(a.clone());
    Some(a)
}

/// Ends an activity.
pub fn finish_activity(g: &mut Group, id: Option<&str>, status: &str, message: Option<String>) {
    let now = catalog::now_ms();
    if let Some(a) = id.and_then(|id| g.activity_mut(id)) {
        a.status = status.to_string();
        a.progress = 100;
        a.end_ms = Some(now);
        if message.is_some() {
            a.message = message;
        }
    }
}

fn set_activity_status(g: &mut Group, id: Option<&str>, status: &str, progress: i64) {
    if let Some(a) = id.and_then(|id| g.activity_mut(id)) {
        a.status = status.to_string();
        a.progress = a.progress.max(progress);
    }
}

/// The hook of a transition, if the group has one.
fn hook_of<'a>(g: &'a Group, transition: &str) -> Option<&'a model::Hook> {
    g.hooks.iter().find(|h| h.transition == transition)
}

fn new_wait(hook: &model::Hook, now: i64) -> HookWait {
    HookWait {
        hook: hook.name.clone(),
        token: model::uuid(),
        deadline_ms: now + hook.heartbeat_timeout * 1000,
        global_deadline_ms: now + hook.global_timeout() * 1000,
        result: None,
    }
}

impl AutoScaling {
    /// One pass of the controller over every group.
    pub(crate) fn tick(&self) {
        // In a node cluster one node (the leader) runs every group.
        if !self.cloud.leads() {
            return;
        }
        let rows = match model::all_groups(self.cloud.catalog()) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("autoscaling: reading groups: {e}");
                return;
            }
        };
        for row in rows {
            let _g = self.lock();
            // Re-read under the lock: an API call may have changed or deleted it.
            let current = match self.cloud.catalog().resource(&row.row_id) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("autoscaling: reading group {}: {e}", row.group.name);
                    continue;
                }
            };
            let mut s = match model::decode(&current) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("autoscaling: group {}: {e}", row.group.name);
                    continue;
                }
            };
            let before = s.group.clone();
            let result = self.process(&mut s);
            let outcome = if s.group.deleting && s.group.instances.is_empty() {
                model::remove(self.cloud.catalog(), &s.row_id)
            } else if s.group != before {
                model::store(self.cloud.catalog(), &s)
            } else {
                Ok(())
            };
            if let Err(e) = result.and(outcome) {
                tracing::warn!("autoscaling: group {}: {e}", s.group.name);
            }
        }
        crate::policies::tick(self);
    }

    fn views(&self, s: &Stored) -> awsquery::QueryResult<HashMap<String, InstanceView>> {
        let caller = engine::Caller {
            account_id: s.account_id.clone(),
            region: s.region.clone(),
        };
        let (views, _) = self
            .cloud
            .describe_instances(&caller, &[], &[], &Page::default())
            .map_err(crate::ec2_error)?;
        Ok(views.into_iter().map(|v| (v.id.clone(), v)).collect())
    }

    fn process(&self, s: &mut Stored) -> awsquery::QueryResult<()> {
        let now = catalog::now_ms();
        let views = self.views(s)?;
        let caller = awsquery::Caller {
            account_id: s.account_id.clone(),
            region: s.region.clone(),
        };
        self.attachments(&caller, &mut s.group);
        let ids: Vec<String> = s.group.instances.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let state = views.get(&id).map(|v| v.state.clone());
            self.advance(&caller, &mut s.group, &id, state.as_deref(), now);
        }
        s.group.instances.retain(|m| m.lifecycle != "Terminated");
        if s.group.deleting {
            // ForceDelete: every instance goes, protected or in standby alike.
            let ids: Vec<String> = s.group.instances.iter().map(|m| m.id.clone()).collect();
            let cause = format!(
                "At {} an instance was taken out of service because its group is being deleted.",
                iso8601(now)
            );
            for id in ids {
                begin_termination(&mut s.group, &id, &cause, false, now);
            }
            return Ok(());
        }
        self.expire_lifetimes(&mut s.group, now);
        self.recover_launches(s, &caller);
        let extra = crate::refresh::tick(self, &caller, &mut s.group, &views, now);
        let extra = extra + self.rebalance(&mut s.group, extra, now);
        self.capacity(s, &caller, extra, now);
        Ok(())
    }

    /// Target group attachments: register instances with new ones, deregister from
    /// removed ones.
    fn attachments(&self, caller: &awsquery::Caller, g: &mut Group) {
        let in_service: Vec<String> = g
            .instances
            .iter()
            .filter(|m| m.lifecycle == "InService")
            .map(|m| m.id.clone())
            .collect();
        let suspended = g.suspended("AddToLoadBalancer");
        for a in &mut g.target_groups {
            match a.state.as_str() {
                "Adding" if !suspended => {
                    for id in &in_service {
                        if let Err(e) = self.elb.register_instance(caller, &a.arn, id) {
                            tracing::warn!("autoscaling: registering {id} with {}: {e}", a.arn);
                        }
                    }
                    a.state = "Added".into();
                }
                "Added" => a.state = "InService".into(),
                "Removing" => {
                    for id in &in_service {
                        let _ = self.elb.deregister_instance(caller, &a.arn, id);
                    }
                    a.state = "Removed".into();
                }
                _ => {}
            }
        }
        g.target_groups.retain(|a| a.state != "Removed");
    }

    fn live_target_groups(g: &Group) -> Vec<(String, u64)> {
        g.target_groups
            .iter()
            .filter(|a| a.state != "Removing" && a.state != "Removed")
            .map(|a| (a.arn.clone(), a.deregistration_delay_seconds))
            .collect()
    }

    fn to_in_service(&self, caller: &awsquery::Caller, g: &mut Group, id: &str, now: i64) {
        let tgs = Self::live_target_groups(g);
        let add = !g.suspended("AddToLoadBalancer");
        let mut problem = None;
        if add {
            for (tg, _) in &tgs {
                if let Err(e) = self.elb.register_instance(caller, tg, id) {
                    tracing::warn!("autoscaling: registering {id} with {tg}: {e}");
                    problem = Some(format!("Registering with {tg} failed: {}", e.message));
                }
            }
        }
        let Some(m) = g.member_mut(id) else { return };
        m.lifecycle = "InService".into();
        m.in_service_ms = Some(now);
        m.registered = add && !tgs.is_empty();
        m.wait = None;
        let activity = m.activity_id.take();
        finish_activity(g, activity.as_deref(), "Successful", problem);
    }

    /// Moves one member along its lifecycle.
    fn advance(
        &self,
        caller: &awsquery::Caller,
        g: &mut Group,
        id: &str,
        ec2_state: Option<&str>,
        now: i64,
    ) {
        let Some(m) = g.instances.iter().find(|m| m.id == id).cloned() else {
            return;
        };
        let gone = matches!(
            ec2_state,
            None | Some("terminated") | Some("shutting-down") | Some("stopped") | Some("stopping")
        );
        match m.lifecycle.as_str() {
            "Pending" if ec2_state == Some("running") => match hook_of(g, LAUNCHING).cloned() {
                Some(hook) if !m.force => {
                    let act = m.activity_id.clone();
                    if let Some(mm) = g.member_mut(id) {
                        mm.lifecycle = "Pending:Wait".into();
                        mm.wait = Some(new_wait(&hook, now));
                    }
                    set_activity_status(g, act.as_deref(), "MidLifecycleAction", 40);
                }
                _ => self.to_in_service(caller, g, id, now),
            },
            "Pending" | "Pending:Wait" | "Pending:Proceed" if gone => {
                let act = m.activity_id.clone();
                finish_activity(
                    g,
                    act.as_deref(),
                    "Failed",
                    Some(format!(
                        "Instance {id} became {} before it went in service.",
                        ec2_state.unwrap_or("terminated")
                    )),
                );
                self.mark_unhealthy(
                    g,
                    id,
                    "an instance was taken out of service in response to an EC2 instance status check",
                );
                let cause = format!(
                    "At {} an instance was taken out of service in response to an EC2 instance status check",
                    iso8601(now)
                );
                begin_termination(g, id, &cause, true, now);
            }
            "Pending:Wait" => {
                let Some(w) = m.wait.clone() else {
                    self.to_in_service(caller, g, id, now);
                    return;
                };
                let result = w.result.clone().or_else(|| {
                    (now >= w.deadline_ms || now >= w.global_deadline_ms).then(|| {
                        hook_of(g, LAUNCHING)
                            .map(|h| h.default_result.clone())
                            .unwrap_or_else(|| "CONTINUE".into())
                    })
                });
                match result.as_deref() {
                    Some("CONTINUE") => self.to_in_service(caller, g, id, now),
                    Some(_) => {
                        let act = m.activity_id.clone();
                        finish_activity(
                            g,
                            act.as_deref(),
                            "Cancelled",
                            Some(format!(
                                "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token {} was abandoned: Lifecycle Action Completed with ABANDON Result",
                                w.token
                            )),
                        );
                        let cause = format!(
                            "At {} an instance was taken out of service in response to a launch lifecycle action that was abandoned.",
                            iso8601(now)
                        );
                        begin_termination(g, id, &cause, true, now);
                    }
                    None => {}
                }
            }
            "InService" => self.check_health(caller, g, &m, ec2_state, now),
            "Terminating" | "Terminating:Proceed" => self.terminating(caller, g, &m, now),
            "Terminating:Wait" => {
                let Some(w) = m.wait.clone() else {
                    self.terminate_now(caller, g, id);
                    return;
                };
                let done =
                    w.result.is_some() || now >= w.deadline_ms || now >= w.global_deadline_ms;
                if done {
                    if let Some(mm) = g.member_mut(id) {
                        mm.lifecycle = "Terminating:Proceed".into();
                    }
                    self.terminate_now(caller, g, id);
                }
            }
            _ => {}
        }
        // An unhealthy member is replaced (unless the processes are suspended).
        if let Some(mm) = g.instances.iter().find(|m| m.id == id)
            && mm.health == "Unhealthy"
            && mm.counts()
            && mm.lifecycle != "Pending:Wait"
            && !g.suspended("ReplaceUnhealthy")
        {
            let reason = mm.health_reason.clone().unwrap_or_else(|| {
                "an instance was taken out of service in response to a health check.".into()
            });
            let cause = format!("At {} {reason}", iso8601(now));
            begin_termination(g, id, &cause, true, now);
        }
    }

    fn mark_unhealthy(&self, g: &mut Group, id: &str, reason: &str) {
        if let Some(m) = g.member_mut(id)
            && m.health != "Unhealthy"
        {
            m.health = "Unhealthy".into();
            m.health_reason = Some(reason.to_string());
        }
    }

    fn check_health(
        &self,
        caller: &awsquery::Caller,
        g: &mut Group,
        m: &Member,
        ec2_state: Option<&str>,
        now: i64,
    ) {
        if g.suspended("HealthCheck") || m.health == "Unhealthy" {
            return;
        }
        // `pending` is not a failure: an instance openami boots again after its own
        // restart passes through it.
        if ec2_state != Some("running") && ec2_state != Some("pending") {
            self.mark_unhealthy(
                g,
                &m.id,
                "an instance was taken out of service in response to an EC2 instance status check",
            );
            return;
        }
        if g.health_check_type == "ELB" && now >= m.launched_ms + g.grace_period * 1000 {
            for (tg, _) in Self::live_target_groups(g) {
                if let Ok(h) = self.elb.instance_health(caller, &tg, &m.id)
                    && h.state == "unhealthy"
                {
                    self.mark_unhealthy(
                        g,
                        &m.id,
                        "an instance was taken out of service in response to an ELB system health check failure.",
                    );
                    return;
                }
            }
        }
    }

    /// `Terminating`: deregister and drain, then the terminate hook, then terminate.
    fn terminating(&self, caller: &awsquery::Caller, g: &mut Group, m: &Member, now: i64) {
        if m.force {
            self.terminate_now(caller, g, &m.id);
            return;
        }
        let tgs = Self::live_target_groups(g);
        if m.registered && !tgs.is_empty() {
            for (tg, _) in &tgs {
                if let Err(e) = self.elb.deregister_instance(caller, tg, &m.id) {
                    tracing::warn!("autoscaling: deregistering {} from {tg}: {e}", m.id);
                }
            }
            let delay = tgs.iter().map(|(_, d)| *d).max().unwrap_or(0) as i64;
            let act = m.activity_id.clone();
            if let Some(mm) = g.member_mut(&m.id) {
                mm.registered = false;
                mm.drain_until_ms = Some(now + delay * 1000);
            }
            set_activity_status(g, act.as_deref(), "WaitingForELBConnectionDraining", 20);
            return;
        }
        if let Some(until) = m.drain_until_ms {
            let draining = now < until
                && tgs.iter().any(|(tg, _)| {
                    self.elb
                        .instance_health(caller, tg, &m.id)
                        .is_ok_and(|h| h.state == "draining")
                });
            if draining {
                return;
            }
            let act = m.activity_id.clone();
            if let Some(mm) = g.member_mut(&m.id) {
                mm.drain_until_ms = None;
            }
            set_activity_status(g, act.as_deref(), "InProgress", 50);
        }
        if m.lifecycle == "Terminating"
            && let Some(hook) = hook_of(g, TERMINATING).cloned()
        {
            let act = m.activity_id.clone();
            if let Some(mm) = g.member_mut(&m.id) {
                mm.lifecycle = "Terminating:Wait".into();
                mm.wait = Some(new_wait(&hook, now));
            }
            set_activity_status(g, act.as_deref(), "MidLifecycleAction", 60);
            return;
        }
        self.terminate_now(caller, g, &m.id);
    }

    fn terminate_now(&self, caller: &awsquery::Caller, g: &mut Group, id: &str) {
        let ec = engine_caller(caller);
        let message = match self.cloud.terminate_instances(&ec, &[id.to_string()]) {
            Ok(_) => None,
            Err(e) if e.code == "InvalidInstanceID.NotFound" => None,
            Err(e) => {
                tracing::warn!("autoscaling: terminating {id}: {}", e.message);
                Some(e.message)
            }
        };
        if let Some(msg) = message {
            // Try again on the next tick.
            let act = g.member_mut(id).and_then(|m| m.activity_id.clone());
            if let Some(a) = act.as_deref().and_then(|a| g.activity_mut(a)) {
                a.message = Some(msg);
            }
            return;
        }
        let act = g.member_mut(id).and_then(|m| {
            m.lifecycle = "Terminated".into();
            m.activity_id.take()
        });
        finish_activity(g, act.as_deref(), "Successful", None);
    }

    /// AZRebalance: when the zones differ by more than one instance and the group is
    /// otherwise settled, one instance is launched in the emptiest zone above the desired
    /// capacity; once it is in service the controller scales in from the fullest zone.
    /// Returns the extra capacity it wants.
    fn rebalance(&self, g: &mut Group, refresh_extra: i64, now: i64) -> i64 {
        let settled = !g
            .instances
            .iter()
            .any(|m| m.lifecycle.starts_with("Pending") || m.terminating());
        if g.rebalancing {
            if settled && g.counted() > g.desired {
                g.rebalancing = false;
            }
            return i64::from(g.rebalancing);
        }
        if !settled
            || refresh_extra != 0
            || g.counted() != g.desired
            || ["AZRebalance", "Launch", "Terminate"]
                .iter()
                .any(|p| g.suspended(p))
        {
            return 0;
        }
        let mut zones: Vec<&String> = g.placements.iter().map(|(_, z)| z).collect();
        zones.sort();
        zones.dedup();
        let per_zone: Vec<usize> = zones
            .iter()
            .map(|z| {
                g.instances
                    .iter()
                    .filter(|m| m.counts() && &&m.availability_zone == z)
                    .count()
            })
            .collect();
        let (Some(most), Some(least)) = (per_zone.iter().max(), per_zone.iter().min()) else {
            return 0;
        };
        // Only worth it if the fullest zone has an instance scale-in may take.
        let fullest = zones[per_zone.iter().position(|n| n == most).unwrap_or(0)];
        let movable = g
            .instances
            .iter()
            .any(|m| m.counts() && !m.protected && &m.availability_zone == fullest);
        if most - least > 1 && movable {
            g.rebalancing = true;
            g.last_cause = format!(
                "At {} an instance was launched to rebalance the Availability Zones ({} instances in {fullest}, {least} in the emptiest).",
                iso8601(now),
                most
            );
            return 1;
        }
        0
    }

    /// MaxInstanceLifetime: one instance past it at a time is replaced (when nothing
    /// else is terminating).
    fn expire_lifetimes(&self, g: &mut Group, now: i64) {
        let Some(lifetime) = g.max_instance_lifetime.filter(|l| *l > 0) else {
            return;
        };
        if g.instances.iter().any(|m| m.terminating()) || g.suspended("ReplaceUnhealthy") {
            return;
        }
        let expired = g
            .instances
            .iter()
            .filter(|m| m.lifecycle == "InService" && now >= m.launched_ms + lifetime * 1000)
            .min_by_key(|m| m.launched_ms)
            .map(|m| m.id.clone());
        if let Some(id) = expired {
            let cause = format!(
                "At {} an instance was taken out of service in response to the maximum instance lifetime of {lifetime} seconds.",
                iso8601(now)
            );
            begin_termination(g, &id, &cause, true, now);
        }
    }

    /// Launches or terminates toward the desired capacity (+ `extra` for a refresh).
    fn capacity(&self, s: &mut Stored, caller: &awsquery::Caller, extra: i64, now: i64) {
        let target = s.group.desired + extra;
        let counted = s.group.counted();
        if counted < target && !s.group.deleting {
            if s.group.suspended("Launch") || now < s.group.next_launch_ms {
                return;
            }
            let mut all = true;
            for _ in counted..target {
                if !self.launch(s, caller, now) {
                    all = false;
                    break;
                }
            }
            if all {
                // The change of desired capacity is answered: later launches (replacements)
                // have causes of their own.
                s.group.last_cause.clear();
            }
        } else if counted > target && !s.group.suspended("Terminate") {
            let victims = crate::termination::choose_victims(
                self,
                caller,
                &s.group,
                (counted - target) as usize,
            );
            for (i, id) in victims.iter().enumerate() {
                let n = counted - i as i64;
                let cause = format!(
                    "{}  At {} an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from {n} to {}.",
                    s.group.last_cause,
                    iso8601(now),
                    n - 1
                );
                begin_termination(&mut s.group, id, cause.trim(), false, now);
            }
            if victims.len() as i64 == counted - target {
                s.group.last_cause.clear();
            }
        }
    }
}
