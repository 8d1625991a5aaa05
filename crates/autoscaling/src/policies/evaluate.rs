//! The periodic target-tracking evaluation: samples each group's metrics every tick,
//! closes a period every `period_ms`, records each policy's value and applies the group's
//! decision (rules in the parent module's documentation).

use std::collections::HashMap;

use awsquery::Caller;
use catalog::Catalog;

use super::api::iso_seconds;
use super::model::{self, Policy};
use super::tracking::{self, GroupMetrics, Situation, Vote};
use super::{GroupAccess, GroupState, Policies};

const CPU: &str = "ASGAverageCPUUtilization";
const ALB: &str = "ALBRequestCountPerTarget";

/// Warmup of a policy in ms: its own, else the group's default warmup, else its cooldown.
fn warmup_ms(p: &Policy, g: &GroupState) -> i64 {
    p.estimated_instance_warmup
        .or(g.default_instance_warmup_s)
        .unwrap_or(g.default_cooldown_s)
        .max(0)
        * 1000
}

/// InService instances past a warmup.
fn warm(g: &GroupState, warmup: i64, now: i64) -> Vec<&str> {
    g.instances
        .iter()
        .filter(|i| i.lifecycle_state == "InService")
        .filter(|i| i.in_service_ms.unwrap_or(i.launched_ms) + warmup <= now)
        .map(|i| i.id.as_str())
        .collect()
}

/// One round over every group with enabled target-tracking policies.
pub(super) fn track(
    me: &Policies,
    access: &dyn GroupAccess,
    catalog: &Catalog,
    groups: &[(Caller, GroupState)],
    now: i64,
) {
    let all = match model::all_policies(catalog) {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!("autoscaling policies: cannot read policies: {}", e.message);
            return;
        }
    };
    let mut by_group: HashMap<(String, String, String), Vec<Policy>> = HashMap::new();
    for (account, region, p) in all {
        if p.enabled && p.target_tracking.is_some() {
            by_group
                .entry((account, region, p.group.clone()))
                .or_default()
                .push(p);
        }
    }
    let mut metrics = me
        .metrics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    metrics.retain(|k, _| by_group.contains_key(k));
    for (caller, g) in groups {
        let key = (
            caller.account_id.clone(),
            caller.region.clone(),
            g.name.clone(),
        );
        let Some(policies) = by_group.get(&key) else {
            continue;
        };
        if g.suspended("AlarmNotification") {
            metrics.remove(&key);
            continue;
        }
        let m = metrics.entry(key).or_insert_with(|| GroupMetrics {
            period_start_ms: now,
            ..GroupMetrics::default()
        });
        sample(access, caller, g, policies, m, now);
        if now - m.period_start_ms < me.tuning.period_ms {
            continue;
        }
        close_period(me, access, caller, g, policies, m, now);
    }
}

/// Takes first readings of new instances and target groups; forgets departed instances.
fn sample(
    access: &dyn GroupAccess,
    caller: &Caller,
    g: &GroupState,
    policies: &[Policy],
    m: &mut GroupMetrics,
    now: i64,
) {
    let in_service: Vec<&str> = g
        .instances
        .iter()
        .filter(|i| i.lifecycle_state == "InService")
        .map(|i| i.id.as_str())
        .collect();
    m.cpu.retain(|id, _| in_service.contains(&id.as_str()));
    let wants_cpu = policies.iter().any(|p| kind(p) == Some(CPU));
    if wants_cpu {
        for id in &in_service {
            if !m.cpu.contains_key(*id)
                && let Some(s) = access.instance_cpu(id)
            {
                m.cpu.insert(id.to_string(), (now, s));
            }
        }
    }
    for p in policies {
        if let Some(tg) = p
            .target_tracking
            .as_ref()
            .and_then(|t| t.target_group_arn.as_ref())
            && kind(p) == Some(ALB)
            && !m.requests.contains_key(tg)
            && let Some(n) = access.target_group_requests(caller, tg)
        {
            m.requests.insert(tg.clone(), n);
        }
    }
}

fn kind(p: &Policy) -> Option<&str> {
    p.target_tracking
        .as_ref()
        .and_then(|t| t.predefined_type.as_deref())
}

/// Ends a period: each policy's value, the votes, and the change if any.
fn close_period(
    me: &Policies,
    access: &dyn GroupAccess,
    caller: &Caller,
    g: &GroupState,
    policies: &[Policy],
    m: &mut GroupMetrics,
    now: i64,
) {
    let period = me.tuning.period_ms;
    // CPU utilisation per instance over the period, then new baselines.
    let mut cpu: HashMap<String, f64> = HashMap::new();
    let ids: Vec<String> = m.cpu.keys().cloned().collect();
    for id in ids {
        let Some(current) = access.instance_cpu(&id) else {
            m.cpu.remove(&id);
            continue;
        };
        if let Some((at, earlier)) = m.cpu.get(&id).copied()
            && now - at >= period / 2
            && let Some(u) = current.utilization_since(&earlier, (now - at) as f64 / 1000.0)
        {
            cpu.insert(id.clone(), u);
        }
        m.cpu.insert(id, (now, current));
    }
    let elapsed = (now - m.period_start_ms).max(1);
    let mut requests: HashMap<String, u64> = HashMap::new();
    let tgs: Vec<String> = m.requests.keys().cloned().collect();
    for tg in tgs {
        match access.target_group_requests(caller, &tg) {
            Some(n) => {
                let before = m.requests.get(&tg).copied().unwrap_or(n);
                requests.insert(tg.clone(), n.saturating_sub(before));
                m.requests.insert(tg, n);
            }
            // Unreadable now: start over from the next reading rather than span periods.
            None => {
                m.requests.remove(&tg);
            }
        }
    }
    m.period_start_ms = now;

    let keep = me.tuning.keep();
    let mut votes = Vec::new();
    for p in policies {
        let Some(t) = &p.target_tracking else {
            continue;
        };
        let warmup = warmup_ms(p, g);
        let warm_ids = warm(g, warmup, now);
        let (value, measured) = match kind(p) {
            Some(CPU) => {
                let values: Vec<f64> = warm_ids
                    .iter()
                    .filter_map(|id| cpu.get(*id).copied())
                    .collect();
                (tracking::mean(&values), values.len() as i64)
            }
            Some(ALB) => {
                let n = warm_ids.len() as i64;
                let delta = t
                    .target_group_arn
                    .as_ref()
                    .and_then(|tg| requests.get(tg))
                    .copied();
                let value = match delta {
                    Some(0) => Some(0.0),
                    Some(d) if n > 0 => Some(d as f64 * 60_000.0 / elapsed as f64 / n as f64),
                    _ => None,
                };
                (value, n)
            }
            _ => (None, 0),
        };
        m.push(&p.arn, value, keep);
        let pending = g
            .instances
            .iter()
            .any(|i| i.lifecycle_state.starts_with("Pending"));
        let in_service = g
            .instances
            .iter()
            .filter(|i| i.lifecycle_state == "InService")
            .count();
        let settled = g.last_capacity_change_ms.is_none_or(|t| t + warmup <= now);
        let situation = Situation {
            target: t.target_value,
            measured,
            desired: g.desired,
            min: g.min,
            max: g.max,
            disable_scale_in: t.disable_scale_in == Some(true),
            scale_in_allowed: !pending && warm_ids.len() == in_service && settled,
            no_data_is_zero: kind(p) == Some(ALB),
        };
        let history: Vec<Option<f64>> = m
            .history
            .get(&p.arn)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        let v = tracking::vote(&history, &situation, &me.tuning);
        tracing::debug!(group = %g.name, policy = %p.name, ?value, measured, ?v, "target tracking period");
        votes.push((p, v));
    }
    let decision = tracking::combine(&votes.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    let (new, high) = match decision {
        Vote::Out(n) => (n, true),
        Vote::In(n) => (n, false),
        Vote::Hold => return,
    };
    if new == g.desired {
        return;
    }
    // The policy (and its alarm) that decided.
    let deciding = votes
        .iter()
        .find(|(_, v)| *v == decision)
        .or(votes.first())
        .map(|(p, _)| *p);
    let Some(p) = deciding else { return };
    let alarm = p
        .alarms
        .iter()
        .find(|a| {
            a.name
                .contains(if high { "-AlarmHigh-" } else { "-AlarmLow-" })
        })
        .map_or_else(|| p.name.clone(), |a| a.name.clone());
    let cause = format!(
        "At {} a monitor alarm {alarm} in state ALARM triggered policy {} changing the desired capacity from {} to {new}.",
        iso_seconds(now),
        p.name,
        g.desired
    );
    match access.set_capacity(caller, &g.name, None, None, Some(new), &cause) {
        Ok(()) => {
            tracing::info!(group = %g.name, policy = %p.name, from = g.desired, to = new, "target tracking scaled the group");
            m.reset_history();
        }
        Err(e) => tracing::warn!(group = %g.name, "target tracking could not scale: {}", e.message),
    }
}
