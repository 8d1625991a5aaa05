//! Scheduled actions: `PutScheduledUpdateGroupAction`, `BatchPutScheduledUpdateGroupAction`,
//! `DescribeScheduledActions`, `DeleteScheduledAction`, `BatchDeleteScheduledAction`, and
//! running them when due (from the policies' tick, about every second).
//!
//! Each action is a catalog row (kind `asg-scheduled`, id = its ARN) holding the next time
//! it runs. A one-time action (`StartTime`/`Time`, no `Recurrence`) runs once and is then
//! deleted, as AWS does. A recurring one runs at each match of its cron expression (see
//! [`cron`]) in its `TimeZone` (UTC by default), not before `StartTime` and not after
//! `EndTime`. Putting an action with an existing name updates it: parameters left out keep
//! their values. Running it sets any of MinSize, MaxSize and DesiredCapacity through the
//! group core (which clamps desired into the new bounds), unless the group's
//! `ScheduledActions` process is suspended (the run is then skipped, as on AWS).

pub mod cron;
#[cfg(test)]
mod tests;

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use catalog::{Catalog, ResourceRow};
use serde::{Deserialize, Serialize};

use crate::policies::{GroupAccess, GroupState, LiveGroups, Policies, group_not_found, uuid};

/// Catalog kind of scheduled actions.
pub const SCHEDULED_KIND: &str = "asg-scheduled";

/// A scheduled action.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Scheduled {
    /// `AutoScalingGroupName`.
    pub group: String,
    /// The group's ARN when the action was put.
    pub group_arn: String,
    /// `ScheduledActionName`.
    pub name: String,
    /// `ScheduledActionARN`.
    pub arn: String,
    /// `StartTime` (epoch ms).
    pub start_ms: Option<i64>,
    /// `EndTime` (epoch ms).
    pub end_ms: Option<i64>,
    /// `Recurrence` (cron).
    pub recurrence: Option<String>,
    /// `MinSize`.
    pub min: Option<i64>,
    /// `MaxSize`.
    pub max: Option<i64>,
    /// `DesiredCapacity`.
    pub desired: Option<i64>,
    /// `TimeZone`.
    pub time_zone: Option<String>,
    /// When it runs next (none: never again).
    pub next_ms: Option<i64>,
}

impl Scheduled {
    /// The next run at or after `from` (respecting start and end).
    fn next_run(&self, from: i64) -> Result<Option<i64>, QueryError> {
        let Some(expr) = &self.recurrence else {
            return Ok(self.start_ms.filter(|s| *s >= from));
        };
        let cron = cron::Cron::parse(expr).map_err(|e| QueryError::validation(e.0))?;
        let offset = cron::zone_offset_minutes(self.time_zone.as_deref().unwrap_or("UTC"))
            .map_err(|e| QueryError::validation(e.0))?;
        let next = cron.next_at_or_after(from.max(self.start_ms.unwrap_or(i64::MIN)), offset);
        Ok(next.filter(|n| self.end_ms.is_none_or(|end| *n <= end)))
    }

    fn render(&self, x: &mut Xml) {
        let start = self.next_ms.or(self.start_ms).map(engine::query::iso8601);
        x.text("AutoScalingGroupName", &self.group)
            .text("ScheduledActionName", &self.name)
            .text("ScheduledActionARN", &self.arn)
            .opt("Time", start.clone())
            .opt("StartTime", start)
            .opt("EndTime", self.end_ms.map(engine::query::iso8601))
            .opt("Recurrence", self.recurrence.as_deref())
            .opt("MinSize", self.min)
            .opt("MaxSize", self.max)
            .opt("DesiredCapacity", self.desired)
            .opt("TimeZone", self.time_zone.as_deref());
    }
}

fn internal(e: impl std::fmt::Display) -> QueryError {
    QueryError::internal(e.to_string())
}

/// The caller's actions whose group exists (same name and ARN).
fn actions_of(
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
) -> QueryResult<Vec<Scheduled>> {
    let rows = catalog
        .resources(SCHEDULED_KIND, &caller.region)
        .map_err(internal)?;
    let mut live = LiveGroups::default();
    let mut out: Vec<Scheduled> = rows
        .iter()
        .filter(|r| r.account_id == caller.account_id)
        .filter_map(|r| serde_json::from_str::<Scheduled>(&r.doc).ok())
        .filter(|a| live.exists(access, caller, &a.group, &a.group_arn))
        .collect();
    out.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    Ok(out)
}

fn store(catalog: &Catalog, account: &str, region: &str, a: &Scheduled) -> QueryResult<()> {
    let doc = serde_json::to_string(a).map_err(internal)?;
    if !catalog
        .update_resource(&a.arn, "active", &doc)
        .map_err(internal)?
    {
        catalog
            .insert_resource(&ResourceRow {
                id: a.arn.clone(),
                kind: SCHEDULED_KIND.into(),
                account_id: account.into(),
                region: region.into(),
                state: "active".into(),
                doc,
                created_at_ms: catalog::now_ms(),
            })
            .map_err(internal)?;
    }
    Ok(())
}

fn timestamp(p: &Params, name: &str) -> QueryResult<Option<i64>> {
    match p.get(name) {
        None | Some("") => Ok(None),
        Some(v) => engine::images::validate::parse_timestamp(v)
            .or_else(|| v.parse::<f64>().ok().map(|s| (s * 1000.0) as i64))
            .map(Some)
            .ok_or_else(|| {
                QueryError::validation(format!("Value '{v}' at '{name}' is not a valid timestamp"))
            }),
    }
}

/// Validates and stores one action (`p` holds its fields), merging into an existing one.
fn put_one(
    catalog: &Catalog,
    caller: &Caller,
    group: &GroupState,
    existing: &[Scheduled],
    p: &Params,
    now: i64,
) -> QueryResult<()> {
    let name = p.required("ScheduledActionName")?;
    if name.chars().count() > 255 {
        return Err(QueryError::validation(
            "ScheduledActionName is longer than 255 characters.",
        ));
    }
    let time = timestamp(p, "Time")?;
    let start = timestamp(p, "StartTime")?;
    if let (Some(t), Some(s)) = (time, start)
        && t != s
    {
        return Err(QueryError::validation(
            "Time and StartTime must be the same when both are specified.",
        ));
    }
    let start = start.or(time);
    let end = timestamp(p, "EndTime")?;
    if start.is_some_and(|s| s < now) {
        return Err(QueryError::validation("Given start time is in the past"));
    }
    if end.is_some_and(|e| e < now) {
        return Err(QueryError::validation("Given end time is in the past"));
    }
    let old = existing
        .iter()
        .find(|a| a.group == group.name && a.name == name);
    let mut a = old.cloned().unwrap_or_else(|| Scheduled {
        group: group.name.clone(),
        group_arn: group.arn.clone(),
        name: name.clone(),
        arn: format!(
            "arn:aws:autoscaling:{}:{}:scheduledUpdateGroupAction:{}:autoScalingGroupName/{}:scheduledActionName/{name}",
            caller.region,
            caller.account_id,
            uuid(),
            group.name
        ),
        ..Scheduled::default()
    });
    if start.is_some() {
        a.start_ms = start;
    }
    if end.is_some() {
        a.end_ms = end;
    }
    if let Some(r) = p.string("Recurrence").filter(|r| !r.is_empty()) {
        a.recurrence = Some(r);
    }
    if let Some(z) = p.string("TimeZone").filter(|z| !z.is_empty()) {
        a.time_zone = Some(z);
    }
    for (field, slot) in [
        ("MinSize", &mut a.min),
        ("MaxSize", &mut a.max),
        ("DesiredCapacity", &mut a.desired),
    ] {
        if let Some(v) = p.int(field)? {
            if v < 0 {
                return Err(QueryError::validation(format!(
                    "{field} must not be negative."
                )));
            }
            *slot = Some(v);
        }
    }
    if a.min.is_none() && a.max.is_none() && a.desired.is_none() {
        return Err(QueryError::validation(
            "At least one of MinSize, MaxSize or DesiredCapacity must be specified.",
        ));
    }
    if let (Some(lo), Some(hi)) = (a.min, a.max)
        && lo > hi
    {
        return Err(QueryError::validation(format!(
            "The MinSize ({lo}) must not be greater than the MaxSize ({hi})."
        )));
    }
    if let Some(d) = a.desired
        && (a.min.is_some_and(|lo| d < lo) || a.max.is_some_and(|hi| d > hi))
    {
        return Err(QueryError::validation(
            "DesiredCapacity must be between MinSize and MaxSize.",
        ));
    }
    if let (Some(s), Some(e)) = (a.start_ms, a.end_ms)
        && e <= s
    {
        return Err(QueryError::validation("EndTime must be after StartTime."));
    }
    if a.recurrence.is_none() && a.start_ms.is_none() {
        return Err(QueryError::validation(
            "Either StartTime (or Time) or Recurrence must be specified.",
        ));
    }
    if a.recurrence.is_none() && a.time_zone.is_some() {
        return Err(QueryError::validation("TimeZone requires Recurrence."));
    }
    a.next_ms = a.next_run(now)?;
    if a.next_ms.is_none() {
        return Err(QueryError::validation(
            "The scheduled action would never run: its recurrence has no time between StartTime and EndTime.",
        ));
    }
    store(catalog, &caller.account_id, &caller.region, &a)
}

/// The scheduled-action operations (`None` for any other action).
pub(crate) fn call(
    me: &Policies,
    access: &dyn GroupAccess,
    catalog: &Catalog,
    caller: &Caller,
    action: &str,
    p: &Params,
) -> Option<QueryResult<Option<String>>> {
    let group_of = |p: &Params| -> QueryResult<GroupState> {
        let name = p.required("AutoScalingGroupName")?;
        access
            .group(caller, &name)
            .ok_or_else(|| group_not_found(&name))
    };
    let now = catalog::now_ms();
    let out = match action {
        "PutScheduledUpdateGroupAction" => (|| {
            let group = group_of(p)?;
            let _g = me.lock();
            let existing = actions_of(access, catalog, caller)?;
            put_one(catalog, caller, &group, &existing, p, now)?;
            Ok(None)
        })(),
        "BatchPutScheduledUpdateGroupAction" => (|| {
            let group = group_of(p)?;
            let items = p.structs("ScheduledUpdateGroupActions")?;
            if items.is_empty() {
                return Err(QueryError::missing("ScheduledUpdateGroupActions"));
            }
            let _g = me.lock();
            let mut failed = Vec::new();
            for item in &items {
                let existing = actions_of(access, catalog, caller)?;
                if let Err(e) = put_one(catalog, caller, &group, &existing, item, now) {
                    failed.push((item.string("ScheduledActionName").unwrap_or_default(), e));
                }
            }
            Ok(Some(failures("FailedScheduledUpdateGroupActions", &failed)))
        })(),
        "DescribeScheduledActions" => describe(access, catalog, caller, p),
        "DeleteScheduledAction" => (|| {
            let group = group_of(p)?;
            let name = p.required("ScheduledActionName")?;
            let _g = me.lock();
            let a = actions_of(access, catalog, caller)?
                .into_iter()
                .find(|a| a.group == group.name && a.name == name)
                .ok_or_else(|| not_found(&name))?;
            catalog.delete_resource(&a.arn).map_err(internal)?;
            Ok(None)
        })(),
        "BatchDeleteScheduledAction" => (|| {
            let group = group_of(p)?;
            let names = p.strings("ScheduledActionNames")?;
            if names.is_empty() {
                return Err(QueryError::missing("ScheduledActionNames"));
            }
            let _g = me.lock();
            let all = actions_of(access, catalog, caller)?;
            let mut failed = Vec::new();
            for name in names {
                match all.iter().find(|a| a.group == group.name && a.name == name) {
                    Some(a) => {
                        catalog.delete_resource(&a.arn).map_err(internal)?;
                    }
                    None => {
                        let e = not_found(&name);
                        failed.push((name, e));
                    }
                }
            }
            Ok(Some(failures("FailedScheduledActions", &failed)))
        })(),
        _ => return None,
    };
    Some(out)
}

fn not_found(name: &str) -> QueryError {
    QueryError::validation(format!(
        "Scheduled action name not found - Scheduled action '{name}' not found"
    ))
}

fn failures(element: &str, failed: &[(String, QueryError)]) -> String {
    let mut x = Xml::new();
    x.members(element, failed, |x, (name, e)| {
        x.text("ScheduledActionName", name)
            .text("ErrorCode", &e.code)
            .text("ErrorMessage", &e.message);
    });
    x.finish()
}

/// `DescribeScheduledActions` (group, names, a StartTime/EndTime window on the next run,
/// `MaxRecords`/`NextToken`).
fn describe(
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
    let names = p.strings("ScheduledActionNames")?;
    let from = timestamp(p, "StartTime")?;
    let to = timestamp(p, "EndTime")?;
    let max = p.int_in("MaxRecords", 1, 100)?.unwrap_or(50) as usize;
    let list: Vec<Scheduled> = actions_of(access, catalog, caller)?
        .into_iter()
        .filter(|a| group.as_ref().is_none_or(|g| *g == a.group))
        .filter(|a| names.is_empty() || names.contains(&a.name))
        .filter(|a| {
            let at = a.next_ms.or(a.start_ms).unwrap_or(i64::MAX);
            from.is_none_or(|f| at >= f) && to.is_none_or(|t| at <= t)
        })
        .collect();
    let (list, next) = crate::policies::page_by_arn(list, p.string("NextToken"), max, |a| &a.arn)?;
    let mut x = Xml::new();
    x.members("ScheduledUpdateGroupActions", &list, |x, a| a.render(x));
    x.opt("NextToken", next);
    Ok(Some(x.finish()))
}

/// Runs every action whose time has come; reschedules recurring ones, deletes one-time
/// ones (and recurring ones with no run left).
pub(crate) fn run_due(
    me: &Policies,
    access: &dyn GroupAccess,
    catalog: &Catalog,
    groups: &[(Caller, GroupState)],
    now: i64,
) {
    let rows = match catalog.resources_of_kind(SCHEDULED_KIND) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("scheduled actions: cannot read them: {e}");
            return;
        }
    };
    for row in rows {
        let due_before_lock = serde_json::from_str::<Scheduled>(&row.doc)
            .ok()
            .and_then(|a| a.next_ms)
            .is_some_and(|n| n <= now);
        if !due_before_lock {
            continue;
        }
        let _g = me.lock();
        // Re-read under the lock: an API call may have changed or deleted it meanwhile.
        let Ok(Some(current)) = catalog.resource(&row.id) else {
            continue;
        };
        let Ok(mut a) = serde_json::from_str::<Scheduled>(&current.doc) else {
            continue;
        };
        let Some(due) = a.next_ms.filter(|n| *n <= now) else {
            continue;
        };
        let Some((caller, g)) = groups.iter().find(|(c, g)| {
            c.account_id == row.account_id
                && c.region == row.region
                && g.name == a.group
                && (a.group_arn.is_empty() || g.arn == a.group_arn)
        }) else {
            continue;
        };
        if g.suspended("ScheduledActions") {
            tracing::info!(group = %g.name, action = %a.name, "scheduled action skipped: ScheduledActions is suspended");
        } else {
            run(access, caller, g, &a, due);
        }
        a.next_ms = if a.recurrence.is_some() {
            a.next_run(now.max(due) + 60_000 - (now.max(due)).rem_euclid(60_000))
                .ok()
                .flatten()
        } else {
            None
        };
        let done = match a.next_ms {
            Some(_) => store(catalog, &row.account_id, &row.region, &a),
            None => catalog
                .delete_resource(&a.arn)
                .map(|_| ())
                .map_err(internal),
        };
        if let Err(e) = done {
            tracing::warn!(action = %a.name, "scheduled action: cannot store its next run: {}", e.message);
        }
    }
}

/// Applies one action to its group.
fn run(access: &dyn GroupAccess, caller: &Caller, g: &GroupState, a: &Scheduled, due: i64) {
    let min = a.min.unwrap_or(g.min);
    let max = a.max.unwrap_or(g.max).max(min);
    let desired = a.desired.unwrap_or(g.desired).clamp(min, max);
    let cause = format!(
        "At {} a scheduled action update of AutoScalingGroup constraints to min: {min}, max: {max}, desired: {desired} changing the desired capacity from {} to {desired}.",
        crate::policies::iso_seconds(due),
        g.desired
    );
    match access.set_capacity(caller, &g.name, a.min, a.max, a.desired, &cause) {
        Ok(()) => tracing::info!(group = %g.name, action = %a.name, "scheduled action ran"),
        Err(e) => {
            tracing::warn!(group = %g.name, action = %a.name, "scheduled action failed: {}", e.message)
        }
    }
}
