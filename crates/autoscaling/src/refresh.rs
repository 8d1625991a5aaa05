//! Instance refresh: StartInstanceRefresh, DescribeInstanceRefreshes,
//! CancelInstanceRefresh and RollbackInstanceRefresh, and the rolling replacement the
//! controller runs a batch at a time.
//!
//! A batch starts only when every instance is in service, healthy and warmed up and none
//! is terminating. Then, if terminating an old instance keeps at least
//! ceil(desired × MinHealthyPercentage / 100) healthy, old instances are terminated (the
//! controller launches their replacements); otherwise replacements are launched first,
//! up to MaxHealthyPercentage (at least one above the minimum), and old instances
//! terminate once those are warm — so at 100 % traffic never drops. Repeated launch
//! failures end the refresh `Failed` (or roll it back with AutoRollback).

use std::collections::HashMap;

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use engine::instances::InstanceView;
use engine::query::iso8601;

use crate::controller::begin_termination;
use crate::groups::{paginate, resolve_template};
use crate::model::{self, Group, Refresh, refresh_active};
use crate::termination::{current_version, matches_current};
use crate::{AutoScaling, render};

/// Consecutive launch failures that fail a refresh.
const MAX_FAILURES: u32 = 3;

/// How long a batch may take to settle (plus the warmup) before the refresh fails.
const BATCH_TIMEOUT_MS: i64 = 600_000;

/// Handles the refresh actions; `None` if `action` is not one.
pub fn call(
    svc: &AutoScaling,
    caller: &Caller,
    action: &str,
    p: &Params,
) -> QueryResult<Option<Option<String>>> {
    let mut x = Xml::new();
    match action {
        "StartInstanceRefresh" => {
            let id = start(svc, caller, p)?;
            x.text("InstanceRefreshId", &id);
        }
        "CancelInstanceRefresh" | "RollbackInstanceRefresh" => {
            let name = p.required("AutoScalingGroupName")?;
            let id = svc.update(caller, &name, |s| {
                let g = &mut s.group;
                let r = g.active_refresh_mut().ok_or_else(|| {
                    QueryError::new(
                        "ActiveInstanceRefreshNotFound",
                        format!("No in progress or pending Instance Refresh found for Auto Scaling group {name}"),
                    )
                })?;
                if action == "CancelInstanceRefresh" {
                    r.status = "Cancelling".into();
                    r.reason = Some("Cancelling the instance refresh.".into());
                } else {
                    if !rollback_possible(r) {
                        return Err(irreversible());
                    }
                    r.status = "RollbackInProgress".into();
                    r.rollback_reason = Some("Rollback requested by the user.".into());
                }
                Ok(r.id.clone())
            })?;
            x.text("InstanceRefreshId", &id);
        }
        "DescribeInstanceRefreshes" => {
            let name = p.required("AutoScalingGroupName")?;
            let ids = p.strings("InstanceRefreshIds")?;
            let g = svc.find(caller, &name)?.group;
            let list: Vec<Refresh> = g
                .refreshes
                .iter()
                .rev()
                .filter(|r| ids.is_empty() || ids.contains(&r.id))
                .cloned()
                .collect();
            let (page, next) = paginate(&list, p, 50)?;
            x.members("InstanceRefreshes", &page, |x, r| render_refresh(x, &g, r));
            x.opt("NextToken", next);
        }
        _ => return Ok(None),
    }
    Ok(Some(Some(x.finish())))
}

fn irreversible() -> QueryError {
    QueryError::new(
        "IrreversibleInstanceRefresh",
        "The instance refresh cannot be rolled back: it needs a DesiredConfiguration with a launch template version that is neither $Latest nor $Default.",
    )
}

fn rollback_possible(r: &Refresh) -> bool {
    r.desired_template
        .as_ref()
        .is_some_and(|t| t.version != "$Latest" && t.version != "$Default")
        && r.previous_template.is_some()
}

fn start(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<String> {
    let name = p.required("AutoScalingGroupName")?;
    let strategy = p.string("Strategy").unwrap_or_else(|| "Rolling".into());
    if strategy != "Rolling" {
        return Err(QueryError::validation(format!(
            "Strategy {strategy} is not supported (only Rolling)."
        )));
    }
    let prefs = p.nested("Preferences");
    let min_healthy = prefs.int_in("MinHealthyPercentage", 0, 100)?.unwrap_or(90);
    let max_healthy = prefs.int_in("MaxHealthyPercentage", 100, 200)?;
    if let Some(max) = max_healthy
        && max - min_healthy > 100
    {
        return Err(QueryError::validation(
            "The difference between MaxHealthyPercentage and MinHealthyPercentage cannot be greater than 100.",
        ));
    }
    let checkpoints: Vec<i64> = prefs
        .strings("CheckpointPercentages")?
        .iter()
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| QueryError::validation(format!("Invalid checkpoint percentage {c}")))
        })
        .collect::<QueryResult<_>>()?;
    if checkpoints.windows(2).any(|w| w[0] >= w[1]) {
        return Err(QueryError::validation(
            "CheckpointPercentages must be in ascending order.",
        ));
    }
    let desired = p.nested("DesiredConfiguration.LaunchTemplate");
    let desired_template = if desired.is_empty() {
        None
    } else {
        Some(resolve_template(svc, caller, &desired)?)
    };
    let now = catalog::now_ms();
    svc.update(caller, &name, |s| {
        let g = &mut s.group;
        if g.refreshes.iter().any(|r| refresh_active(&r.status)) {
            return Err(QueryError::new(
                "InstanceRefreshInProgress",
                "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.",
            ));
        }
        let r = Refresh {
            id: model::uuid(),
            status: "Pending".into(),
            reason: None,
            start_ms: now,
            min_healthy,
            max_healthy,
            warmup: prefs.int("InstanceWarmup")?,
            checkpoints,
            checkpoint_delay: prefs.int("CheckpointDelay")?,
            skip_matching: prefs.bool("SkipMatching")?.unwrap_or(false),
            auto_rollback: prefs.bool("AutoRollback")?.unwrap_or(false),
            scale_in_protected: prefs.string("ScaleInProtectedInstances"),
            standby: prefs.string("StandbyInstances"),
            desired_template: desired_template.clone(),
            previous_template: Some(g.template.clone()),
            ..Default::default()
        };
        if r.auto_rollback && !rollback_possible(&r) {
            return Err(irreversible());
        }
        let id = r.id.clone();
        g.refreshes.push(r);
        if g.refreshes.len() > 50 {
            g.refreshes.remove(0);
        }
        Ok(id)
    })
}

fn render_refresh(x: &mut Xml, g: &Group, r: &Refresh) {
    x.text("InstanceRefreshId", &r.id)
        .text("AutoScalingGroupName", &g.name)
        .text("Status", &r.status)
        .opt("StatusReason", r.reason.as_deref())
        .text("StartTime", &iso8601(r.start_ms))
        .opt("EndTime", r.end_ms.map(iso8601))
        .text("PercentageComplete", &r.percentage.to_string())
        .text("InstancesToUpdate", &r.to_update.to_string())
        .elem("ProgressDetails", |x| {
            x.elem("LivePoolProgress", |x| {
                x.text("PercentageComplete", &r.percentage.to_string())
                    .text("InstancesToUpdate", &r.to_update.to_string());
            });
        })
        .elem("Preferences", |x| {
            x.text("MinHealthyPercentage", &r.min_healthy.to_string())
                .opt("InstanceWarmup", r.warmup);
            let cps: Vec<String> = r.checkpoints.iter().map(|c| c.to_string()).collect();
            if !cps.is_empty() {
                x.strings("CheckpointPercentages", &cps);
            }
            x.opt("CheckpointDelay", r.checkpoint_delay)
                .text("SkipMatching", &r.skip_matching.to_string())
                .text("AutoRollback", &r.auto_rollback.to_string())
                .text(
                    "ScaleInProtectedInstances",
                    r.scale_in_protected.as_deref().unwrap_or("Ignore"),
                )
                .text("StandbyInstances", r.standby.as_deref().unwrap_or("Ignore"))
                .opt("MaxHealthyPercentage", r.max_healthy);
        });
    if let Some(t) = &r.desired_template {
        x.elem("DesiredConfiguration", |x| {
            render::template(x, "LaunchTemplate", t)
        });
    }
    if let Some(reason) = &r.rollback_reason {
        x.elem("RollbackDetails", |x| {
            x.text("RollbackReason", reason)
                .opt("RollbackStartTime", r.rollback_start_ms.map(iso8601));
        });
    }
    x.text("Strategy", "Rolling");
}

/// Ends the refresh with a final status.
fn finish(r: &mut Refresh, status: &str, reason: impl Into<String>, now: i64) {
    r.status = status.into();
    r.reason = Some(reason.into());
    r.end_ms = Some(now);
    r.extra = 0;
}

/// Which instances a refresh (or its rollback) replaces.
fn to_replace(svc: &AutoScaling, caller: &Caller, g: &Group, r: &Refresh) -> Vec<String> {
    let current = current_version(svc, caller, g);
    let protected_ok = r.scale_in_protected.as_deref() == Some("Refresh");
    g.instances
        .iter()
        .filter(|m| m.counts())
        .filter(|m| protected_ok || !m.protected)
        .filter(|m| {
            !(r.skip_matching || r.status == "RollbackInProgress")
                || !matches_current(g, m, current)
        })
        .map(|m| m.id.clone())
        .collect()
}

/// Why the refresh cannot start its next batch yet: an instance launching, warming up,
/// not yet healthy in an attached target group, or terminating.
fn busy(
    svc: &AutoScaling,
    caller: &Caller,
    g: &Group,
    r: &Refresh,
    warmup: i64,
    now: i64,
) -> Option<String> {
    for m in &g.instances {
        if m.terminating() {
            return Some(format!("Waiting for instance {} to terminate.", m.id));
        }
        if m.lifecycle.starts_with("Pending") {
            return Some(format!(
                "Waiting for instances to warm up before continuing. For example: {} is launching.",
                m.id
            ));
        }
        if m.lifecycle != "InService" || r.pending.contains(&m.id) {
            continue;
        }
        if m.in_service_ms.is_some_and(|t| now < t + warmup) {
            return Some(format!(
                "Waiting for instances to warm up before continuing. For example: {} is warming up.",
                m.id
            ));
        }
        for a in &g.target_groups {
            if a.state == "Removing" || g.suspended("AddToLoadBalancer") {
                continue;
            }
            let healthy = svc
                .elb
                .instance_health(caller, &a.arn, &m.id)
                .is_ok_and(|h| h.state == "healthy");
            if !healthy {
                return Some(format!(
                    "Waiting for instances to pass the target group health checks. For example: {} is not healthy yet.",
                    m.id
                ));
            }
        }
    }
    None
}

/// Advances the group's active refresh; returns how many instances above the desired
/// capacity the controller should keep.
pub fn tick(
    svc: &AutoScaling,
    caller: &Caller,
    g: &mut Group,
    _views: &HashMap<String, InstanceView>,
    now: i64,
) -> i64 {
    let Some(idx) = g.refreshes.iter().rposition(|r| refresh_active(&r.status)) else {
        return 0;
    };
    let mut r = g.refreshes[idx].clone();
    step(svc, caller, g, &mut r, now);
    let extra = r.extra;
    g.refreshes[idx] = r;
    extra
}

fn step(svc: &AutoScaling, caller: &Caller, g: &mut Group, r: &mut Refresh, now: i64) {
    match r.status.as_str() {
        "Pending" => {
            if let Some(t) = &r.desired_template {
                g.template = t.clone();
            }
            r.status = "InProgress".into();
            r.pending = to_replace(svc, caller, g, r);
            r.total = r.pending.len() as i64;
            r.to_update = r.total;
            g.launch_failures = 0;
            return;
        }
        "Cancelling" => {
            if let Some(t) = &r.previous_template
                && r.desired_template.is_some()
            {
                g.template = t.clone();
            }
            finish(r, "Cancelled", "The instance refresh was cancelled.", now);
            return;
        }
        "RollbackInProgress" if r.rollback_start_ms.is_none() => {
            r.rollback_start_ms = Some(now);
            if let Some(t) = &r.previous_template {
                g.template = t.clone();
            }
            r.pending = to_replace(svc, caller, g, r);
            r.total = r.pending.len() as i64;
            r.to_update = r.total;
            r.checkpoints.clear();
            r.extra = 0;
            g.launch_failures = 0;
            return;
        }
        _ => {}
    }
    let rolling_back = r.status == "RollbackInProgress";
    if g.launch_failures >= MAX_FAILURES {
        let why = g
            .activities
            .iter()
            .rev()
            .find(|a| a.status == "Failed")
            .and_then(|a| a.message.clone())
            .unwrap_or_else(|| "Launching replacement instances failed.".into());
        if rolling_back {
            finish(
                r,
                "RollbackFailed",
                format!("The rollback failed: {why}"),
                now,
            );
        } else if r.auto_rollback && rollback_possible(r) {
            r.status = "RollbackInProgress".into();
            r.rollback_reason = Some(format!("The instance refresh failed: {why}"));
        } else {
            if let Some(t) = &r.previous_template
                && r.desired_template.is_some()
            {
                g.template = t.clone();
            }
            finish(
                r,
                "Failed",
                format!("The instance refresh failed: {why}"),
                now,
            );
        }
        return;
    }
    if let Some(until) = r.checkpoint_until_ms {
        if now < until {
            r.reason = Some(format!(
                "Waiting at a checkpoint ({}% complete) until {}.",
                r.percentage,
                iso8601(until)
            ));
            return;
        }
        r.checkpoint_until_ms = None;
    }
    r.pending
        .retain(|id| g.instances.iter().any(|m| &m.id == id && m.counts()));
    let warmup = r
        .warmup
        .or(g.default_instance_warmup)
        .unwrap_or(g.grace_period)
        * 1000;
    if let Some(why) = busy(svc, caller, g, r, warmup, now) {
        let since = *r.batch_since_ms.get_or_insert(now);
        if now - since > BATCH_TIMEOUT_MS + warmup {
            let reason = format!(
                "The instance refresh failed: instances did not become healthy in time ({why})"
            );
            if rolling_back {
                finish(r, "RollbackFailed", reason, now);
            } else if r.auto_rollback && rollback_possible(r) {
                r.status = "RollbackInProgress".into();
                r.rollback_reason = Some(reason);
                r.batch_since_ms = None;
            } else {
                if let Some(t) = &r.previous_template
                    && r.desired_template.is_some()
                {
                    g.template = t.clone();
                }
                finish(r, "Failed", reason, now);
            }
            return;
        }
        r.reason = Some(why);
        return;
    }
    r.batch_since_ms = None;
    let remaining = r.pending.len() as i64;
    r.to_update = remaining;
    r.percentage = if r.total == 0 {
        100
    } else {
        (r.total - remaining) * 100 / r.total
    };
    if remaining == 0 {
        let (status, why) = if rolling_back {
            ("RollbackSuccessful", "The rollback completed successfully.")
        } else {
            ("Successful", "The instance refresh completed successfully.")
        };
        r.percentage = 100;
        finish(r, status, why, now);
        return;
    }
    if let Some(&cp) = r.checkpoints.get(r.checkpoints_done)
        && r.percentage >= cp
    {
        r.checkpoints_done += 1;
        r.checkpoint_until_ms = Some(now + r.checkpoint_delay.unwrap_or(3600) * 1000);
        return;
    }
    let desired = g.desired;
    let counted = g.counted();
    let healthy = g
        .instances
        .iter()
        .filter(|m| m.lifecycle == "InService" && m.health == "Healthy")
        .count() as i64;
    let min_count = (desired * r.min_healthy + 99) / 100;
    let mut max_count = r.max_healthy.map_or(desired, |m| desired * m / 100);
    if max_count <= min_count {
        max_count = min_count + 1;
    }
    let can_terminate = (healthy - min_count).min(remaining).max(0);
    r.batch_since_ms = Some(now);
    if can_terminate > 0 {
        // Old instances from the zones with the most instances first (the replacements
        // went to the zones with the fewest), so the zones stay balanced.
        let in_zone = |z: &str| {
            g.instances
                .iter()
                .filter(|m| m.counts() && m.availability_zone == z)
                .count()
        };
        let mut order: Vec<(usize, usize, String)> = r
            .pending
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let m = g.instances.iter().find(|m| &m.id == id)?;
                Some((usize::MAX - in_zone(&m.availability_zone), i, id.clone()))
            })
            .collect();
        order.sort();
        let victims: Vec<String> = order
            .into_iter()
            .take(can_terminate as usize)
            .map(|(_, _, id)| id)
            .collect();
        for id in victims {
            let cause = format!(
                "At {} an instance was taken out of service in response to an instance refresh.",
                iso8601(now)
            );
            begin_termination(g, &id, &cause, true, now);
        }
        r.extra = 0;
        r.reason = None;
    } else {
        let launch = (max_count - counted).min(remaining).max(1);
        r.extra = counted + launch - desired;
        r.reason = Some(format!(
            "Launching {launch} replacement instance(s) before terminating old ones (at least {min_count} healthy instances are kept)."
        ));
    }
}
