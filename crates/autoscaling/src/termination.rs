//! Which instances a scale-in terminates: never protected ones; unhealthy ones first;
//! then, one at a time, the zone with the most instances, and in it the group's
//! termination policies in order (`Default`: an instance on another template or the
//! oldest version of the current one, then the one closest to its next billing hour).

use awsquery::Caller;

use crate::model::{Group, Member};
use crate::{AutoScaling, engine_caller};

/// The current version number of the group's template (`$Latest`/`$Default` resolved).
pub fn current_version(svc: &AutoScaling, caller: &Caller, g: &Group) -> Option<i64> {
    let req = engine::launch_templates::DescribeLaunchTemplates {
        ids: vec![g.template.id.clone()],
        ..Default::default()
    };
    let (found, _) = svc
        .cloud
        .describe_launch_templates(&engine_caller(caller), &req)
        .ok()?;
    let t = found.into_iter().next()?;
    crate::groups::version_number(&t, &g.template.version).ok()
}

/// Whether a member runs the group's current template version.
pub fn matches_current(g: &Group, m: &Member, current: Option<i64>) -> bool {
    match (&m.template, current) {
        (Some(t), Some(v)) => t.id == g.template.id && t.version == v.to_string(),
        _ => false,
    }
}

/// Ordering key: smaller = terminate first, for one policy.
fn policy_key(policy: &str, g: &Group, m: &Member, current: Option<i64>, now: i64) -> Vec<i64> {
    let version = |m: &Member| -> i64 {
        match &m.template {
            Some(t) if t.id == g.template.id => t.version.parse().unwrap_or(0),
            _ => i64::MIN,
        }
    };
    let to_hour = |m: &Member| -> i64 {
        let age = ((now - m.launched_ms) / 1000).max(0);
        3600 - age % 3600
    };
    match policy {
        "OldestInstance" => vec![m.launched_ms],
        "NewestInstance" => vec![-m.launched_ms],
        "OldestLaunchTemplate" | "OldestLaunchConfiguration" => {
            vec![i64::from(matches_current(g, m, current)), version(m)]
        }
        "ClosestToNextInstanceHour" => vec![to_hour(m)],
        // Default (and AllocationStrategy, for a single template).
        _ => vec![
            i64::from(matches_current(g, m, current)),
            version(m),
            to_hour(m),
        ],
    }
}

/// Picks `n` instances to terminate by the group's policies.
pub fn choose_victims(svc: &AutoScaling, caller: &Caller, g: &Group, n: usize) -> Vec<String> {
    let current = current_version(svc, caller, g);
    let now = catalog::now_ms();
    let mut chosen: Vec<String> = Vec::new();
    for _ in 0..n {
        let candidates: Vec<&Member> = g
            .instances
            .iter()
            .filter(|m| m.counts() && !m.protected && !chosen.contains(&m.id))
            .collect();
        if candidates.is_empty() {
            break;
        }
        if let Some(m) = candidates.iter().find(|m| m.health == "Unhealthy") {
            chosen.push(m.id.clone());
            continue;
        }
        // The zone with the most instances that has a candidate.
        let count_in = |z: &str| {
            g.instances
                .iter()
                .filter(|m| m.counts() && m.availability_zone == z && !chosen.contains(&m.id))
                .count()
        };
        let zone = candidates
            .iter()
            .map(|m| m.availability_zone.clone())
            .max_by_key(|z| count_in(z))
            .unwrap_or_default();
        let mut in_zone: Vec<&Member> = candidates
            .into_iter()
            .filter(|m| m.availability_zone == zone)
            .collect();
        in_zone.sort_by_key(|m| {
            let mut key: Vec<i64> = g
                .termination_policies
                .iter()
                .flat_map(|p| policy_key(p, g, m, current, now))
                .collect();
            key.push(m.launched_ms);
            key
        });
        if let Some(m) = in_zone.first() {
            chosen.push(m.id.clone());
        }
    }
    chosen
}
