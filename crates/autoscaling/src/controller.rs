//! The group controller: every second, for each group, observe its instances through
//! the engine, move them through their lifecycle (Pending → [Pending:Wait] → InService →
//! Terminating → [draining] → [Terminating:Wait] → terminated), replace unhealthy ones,
//! and launch or terminate until the count of Pending and InService instances equals the
//! desired capacity (plus what an instance refresh adds).

use std::collections::HashMap;

use engine::instances::{InstanceView, RunInstances};
use engine::launch_templates::TemplateRef;
use engine::launch_templates::launch::LaunchTemplateSpecification;
use engine::query::{Page, TagSpecification, iso8601};

use crate::groups::new_activity;
use crate::model::{self, Activity, Group, HookWait, Member, Stored, TemplateSpec};
use crate::{AutoScaling, engine_caller};

/// Launch hook transition.
pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
/// Terminate hook transition.
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
/// The tag every instance of a group carries.
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// Longest wait between launch retries after failures.
const MAX_BACKOFF_MS: i64 = 300_000;

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

/// A just-launched member (Pending).
fn new_member(
    g: &Group,
    view: &InstanceView,
    subnet: String,
    template: TemplateSpec,
    now: i64,
    activity: String,
) -> Member {
    Member {
        id: view.id.clone(),
        availability_zone: view.doc.availability_zone.clone(),
        subnet_id: subnet,
        lifecycle: "Pending".into(),
        health: "Healthy".into(),
        protected: g.new_instances_protected,
        template: Some(template),
        instance_type: view.doc.instance_type.clone(),
        image_id: view.doc.image_id.clone(),
        launched_ms: now,
        activity_id: Some(activity),
        ..Default::default()
    }
}

impl AutoScaling {
    /// One pass of the controller over every group.
    pub(crate) fn tick(&self) {
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
        if ec2_state != Some("running") {
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

    /// Launches whose activity was recorded but whose instance was not (openami stopped
    /// in between): launched again with the same client token, which finds the instance
    /// if the engine had launched it.
    fn recover_launches(&self, s: &mut Stored, caller: &awsquery::Caller) {
        let orphans: Vec<(String, String)> = s
            .group
            .activities
            .iter()
            .filter(|a| a.status == "InProgress" && a.description == "Launching a new EC2 instance")
            .filter(|a| {
                !s.group
                    .instances
                    .iter()
                    .any(|m| m.activity_id.as_deref() == Some(&a.id))
            })
            .map(|a| (a.id.clone(), a.details.clone()))
            .collect();
        for (token, details) in orphans {
            let subnet = s
                .group
                .placements
                .iter()
                .find(|(sn, _)| details.contains(sn.as_str()))
                .map(|(sn, _)| sn.clone());
            let Some(subnet) = subnet else {
                finish_activity(&mut s.group, Some(&token), "Cancelled", None);
                continue;
            };
            let now = catalog::now_ms();
            match self.run_one(caller, &s.group, &subnet, &token) {
                Ok((view, template)) => {
                    let g = &mut s.group;
                    if let Some(a) = g.activity_mut(&token) {
                        a.description = format!("Launching a new EC2 instance: {}", view.id);
                        a.progress = 30;
                    }
                    let m = new_member(g, &view, subnet, template, now, token);
                    g.instances.push(m);
                }
                Err(message) => {
                    finish_activity(&mut s.group, Some(&token), "Failed", Some(message))
                }
            }
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
            for _ in counted..target {
                if !self.launch(s, caller, now) {
                    break;
                }
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
        }
    }

    /// The subnet and zone of the next launch: the enabled zone with the fewest
    /// instances, a random subnet of it.
    fn placement(g: &Group) -> Option<(String, String)> {
        // Instances an instance refresh is replacing do not count: their replacements
        // spread as if they were already gone.
        let leaving: Vec<&String> = g
            .refreshes
            .iter()
            .filter(|r| model::refresh_active(&r.status))
            .flat_map(|r| r.pending.iter())
            .collect();
        let mut zones: Vec<(usize, &String)> = Vec::new();
        for (_, z) in &g.placements {
            if zones.iter().any(|(_, zz)| *zz == z) {
                continue;
            }
            let n = g
                .instances
                .iter()
                .filter(|m| m.counts() && &m.availability_zone == z && !leaving.contains(&&m.id))
                .count();
            zones.push((n, z));
        }
        let (_, zone) = zones.iter().min_by_key(|(n, _)| *n)?;
        let subnets: Vec<&(String, String)> =
            g.placements.iter().filter(|(_, z)| z == *zone).collect();
        let pick = engine::ids::random_bytes::<1>()[0] as usize % subnets.len();
        Some(subnets[pick].clone())
    }

    /// Launches one instance; false if it failed (a Failed activity is recorded and
    /// further launches back off).
    fn launch(&self, s: &mut Stored, caller: &awsquery::Caller, now: i64) -> bool {
        let g = &mut s.group;
        let Some((subnet, zone)) = Self::placement(g) else {
            return false;
        };
        let counted = g.counted();
        let cause = format!(
            "{}  At {} an instance was started in response to a difference between desired and actual capacity, increasing the capacity from {counted} to {}.",
            g.last_cause,
            iso8601(now),
            counted + 1
        );
        let mut activity = new_activity(
            "Launching a new EC2 instance".into(),
            cause.trim().to_string(),
            now,
        );
        activity.details =
            format!("{{\"Subnet ID\":\"{subnet}\",\"Availability Zone\":\"{zone}\"}}");
        // The activity id is the launch's client token: recorded before the call, so a
        // launch interrupted by a crash is found again, not repeated.
        let token = activity.id.clone();
        g.add_activity(activity);
        let _ = model::store(self.cloud.catalog(), s);
        let result = self.run_one(caller, &s.group, &subnet, &token);
        let g = &mut s.group;
        match result {
            Ok((view, template)) => {
                g.launch_failures = 0;
                if let Some(a) = g.activity_mut(&token) {
                    a.description = format!("Launching a new EC2 instance: {}", view.id);
                    a.progress = 30;
                }
                let m = new_member(g, &view, subnet, template, now, token);
                g.instances.push(m);
                true
            }
            Err(message) => {
                g.launch_failures += 1;
                let backoff = (10_000i64 << (g.launch_failures.min(6) - 1)).min(MAX_BACKOFF_MS);
                g.next_launch_ms = now + backoff;
                if let Some(a) = g.activity_mut(&token) {
                    a.description = format!(
                        "Launching a new EC2 instance.  Status Reason: {message}. Launching EC2 instance failed."
                    );
                    a.status = "Failed".into();
                    a.progress = 100;
                    a.end_ms = Some(catalog::now_ms());
                    a.message = Some(format!("{message}. Launching EC2 instance failed."));
                }
                false
            }
        }
    }

    fn run_one(
        &self,
        caller: &awsquery::Caller,
        g: &Group,
        subnet: &str,
        token: &str,
    ) -> Result<(InstanceView, TemplateSpec), String> {
        let ec = engine_caller(caller);
        let mut tags: Vec<(String, String)> = g
            .tags
            .iter()
            .filter(|t| t.propagate)
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        tags.truncate(40);
        let req = RunInstances {
            min_count: 1,
            max_count: 1,
            subnet_id: Some(subnet.to_string()),
            client_token: Some(token.to_string()),
            tag_specifications: if tags.is_empty() {
                Vec::new()
            } else {
                vec![TagSpecification {
                    resource_type: "instance".into(),
                    tags,
                }]
            },
            ..Default::default()
        };
        let spec = LaunchTemplateSpecification {
            template: TemplateRef {
                id: Some(g.template.id.clone()),
                name: None,
            },
            version: Some(g.template.version.clone()),
        };
        let (req, from) = self
            .cloud
            .apply_launch_template(&ec, req, &spec)
            .map_err(|e| e.message)?;
        let mut views = self.cloud.run_instances(&ec, req).map_err(|e| e.message)?;
        self.cloud
            .tag_launched_from_template(&mut views, &from)
            .map_err(|e| e.message)?;
        let view = views
            .into_iter()
            .next()
            .ok_or_else(|| "RunInstances launched nothing".to_string())?;
        self.cloud
            .catalog()
            .set_tags(&view.id, &[(GROUP_TAG.to_string(), g.name.clone())])
            .map_err(|e| e.to_string())?;
        Ok((
            view,
            TemplateSpec {
                id: from.template_id,
                name: g.template.name.clone(),
                version: from.version.to_string(),
            },
        ))
    }
}
