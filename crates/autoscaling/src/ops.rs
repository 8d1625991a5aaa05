//! The other group actions: tags, suspended processes, scaling activities, target group
//! and traffic source attachments, standby, attaching and detaching instances, metrics
//! collection and the static Describe* lists.

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use engine::query::iso8601;

use crate::controller::{GROUP_TAG, finish_activity};
use crate::groups::{
    attachments, group_of_instance, merge_tags, new_activity, paginate, parse_filters, parse_tags,
};
use crate::model::{self, Activity, Attachment, Group, GroupTag, Member};
use crate::{AutoScaling, ec2_error, engine_caller, render};

/// Every scaling process.
const PROCESSES: [&str; 9] = [
    "AZRebalance",
    "AddToLoadBalancer",
    "AlarmNotification",
    "HealthCheck",
    "InstanceRefresh",
    "Launch",
    "ReplaceUnhealthy",
    "ScheduledActions",
    "Terminate",
];

/// Handles these actions; `None` if `action` is not one of them.
pub fn call(
    svc: &AutoScaling,
    caller: &Caller,
    action: &str,
    p: &Params,
) -> QueryResult<Option<Option<String>>> {
    let mut x = Xml::new();
    match action {
        "CreateOrUpdateTags" => {
            tags_change(svc, caller, p, true)?;
            return Ok(Some(None));
        }
        "DeleteTags" => {
            tags_change(svc, caller, p, false)?;
            return Ok(Some(None));
        }
        "DescribeTags" => return describe_tags(svc, caller, p).map(|x| Some(Some(x))),
        "SuspendProcesses" | "ResumeProcesses" => {
            processes(svc, caller, p, action == "SuspendProcesses")?;
            return Ok(Some(None));
        }
        "DescribeScalingActivities" => return activities(svc, caller, p).map(|x| Some(Some(x))),
        "AttachLoadBalancerTargetGroups" => {
            attach(svc, caller, p, &p.strings("TargetGroupARNs")?)?;
        }
        "AttachTrafficSources" => {
            attach(svc, caller, p, &traffic_sources(p)?)?;
        }
        "DetachLoadBalancerTargetGroups" => {
            detach(svc, caller, p, &p.strings("TargetGroupARNs")?)?;
        }
        "DetachTrafficSources" => {
            detach(svc, caller, p, &traffic_sources(p)?)?;
        }
        "DescribeLoadBalancerTargetGroups" => {
            let g = svc
                .find(caller, &p.required("AutoScalingGroupName")?)?
                .group;
            let (page, next) = paginate(&g.target_groups, p, 100)?;
            x.members("LoadBalancerTargetGroups", &page, |x, a| {
                x.text("LoadBalancerTargetGroupARN", &a.arn)
                    .text("State", &a.state);
            });
            x.opt("NextToken", next);
        }
        "DescribeTrafficSources" => {
            let g = svc
                .find(caller, &p.required("AutoScalingGroupName")?)?
                .group;
            let kind = p.string("TrafficSourceType").filter(|t| !t.is_empty());
            let list: Vec<Attachment> = if kind.as_deref().is_none_or(|k| k == "elbv2") {
                g.target_groups.clone()
            } else {
                Vec::new()
            };
            let (page, next) = paginate(&list, p, 50)?;
            x.members("TrafficSources", &page, |x, a| {
                x.text("TrafficSource", &a.arn)
                    .text("State", &a.state)
                    .text("Identifier", &a.arn)
                    .text("Type", "elbv2");
            });
            x.opt("NextToken", next);
        }
        "EnterStandby" | "ExitStandby" | "DetachInstances" => {
            let acts = standby_or_detach(svc, caller, p, action)?;
            let g = svc.find(caller, &p.required("AutoScalingGroupName")?);
            let g = g.map(|s| s.group).unwrap_or_default();
            x.members("Activities", &acts, |x, a| render::activity(x, &g, a));
        }
        "AttachInstances" => {
            attach_instances(svc, caller, p)?;
            return Ok(Some(None));
        }
        "EnableMetricsCollection" | "DisableMetricsCollection" => {
            metrics(svc, caller, p, action == "EnableMetricsCollection")?;
            return Ok(Some(None));
        }
        "DescribeAdjustmentTypes" => {
            let types = [
                "ChangeInCapacity",
                "ExactCapacity",
                "PercentChangeInCapacity",
            ];
            x.members("AdjustmentTypes", &types, |x, t| {
                x.text("AdjustmentType", t);
            });
        }
        "DescribeTerminationPolicyTypes" => {
            let types: Vec<String> = [
                "AllocationStrategy",
                "ClosestToNextInstanceHour",
                "Default",
                "NewestInstance",
                "OldestInstance",
                "OldestLaunchConfiguration",
                "OldestLaunchTemplate",
            ]
            .map(String::from)
            .to_vec();
            x.strings("TerminationPolicyTypes", &types);
        }
        "DescribeScalingProcessTypes" => {
            x.members("Processes", &PROCESSES, |x, p| {
                x.text("ProcessName", p);
            });
        }
        "DescribeLifecycleHookTypes" => {
            x.strings(
                "LifecycleHookTypes",
                &[
                    crate::controller::LAUNCHING.to_string(),
                    crate::controller::TERMINATING.to_string(),
                ],
            );
        }
        "DescribeAutoScalingNotificationTypes" => {
            let types: Vec<String> = [
                "autoscaling:EC2_INSTANCE_LAUNCH",
                "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
                "autoscaling:EC2_INSTANCE_TERMINATE",
                "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
                "autoscaling:TEST_NOTIFICATION",
            ]
            .map(String::from)
            .to_vec();
            x.strings("AutoScalingNotificationTypes", &types);
        }
        "DescribeAccountLimits" => {
            let n =
                model::groups_of(svc.cloud.catalog(), &caller.account_id, &caller.region)?.len();
            x.text("MaxNumberOfAutoScalingGroups", "200")
                .text("MaxNumberOfLaunchConfigurations", "200")
                .text("NumberOfAutoScalingGroups", &n.to_string())
                .text("NumberOfLaunchConfigurations", "0");
        }
        _ => return Ok(None),
    }
    Ok(Some(Some(x.finish())))
}

fn tags_change(svc: &AutoScaling, caller: &Caller, p: &Params, set: bool) -> QueryResult<()> {
    let tags = parse_tags(p, "Tags")?;
    let mut by_group: Vec<(String, Vec<GroupTag>)> = Vec::new();
    for (rid, t) in tags {
        let rid = rid.ok_or_else(|| QueryError::missing("ResourceId"))?;
        match by_group.iter_mut().find(|(g, _)| *g == rid) {
            Some((_, v)) => v.push(t),
            None => by_group.push((rid, vec![t])),
        }
    }
    for (name, tags) in by_group {
        svc.update(caller, &name, |s| {
            if set {
                if s.group.tags.len() + tags.len() > 50 {
                    return Err(QueryError::new(
                        "LimitExceeded",
                        "The quota for tags per Auto Scaling group (50) has been reached.",
                    ));
                }
                merge_tags(&mut s.group.tags, tags);
            } else {
                s.group
                    .tags
                    .retain(|t| !tags.iter().any(|d| d.key == t.key));
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn describe_tags(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<String> {
    let filters = parse_filters(p)?;
    let mut rows: Vec<(String, GroupTag)> = Vec::new();
    for s in model::groups_of(svc.cloud.catalog(), &caller.account_id, &caller.region)? {
        for t in &s.group.tags {
            let ok = filters.iter().all(|(name, values)| match name.as_str() {
                "auto-scaling-group" => values.contains(&s.group.name),
                "key" => values.contains(&t.key),
                "value" => values.contains(&t.value),
                "propagate-at-launch" => values.contains(&t.propagate.to_string()),
                _ => false,
            });
            if ok {
                rows.push((s.group.name.clone(), t.clone()));
            }
        }
    }
    let (page, next) = paginate(&rows, p, 50)?;
    let mut x = Xml::new();
    x.members("Tags", &page, |x, (g, t)| render::tag(x, g, t));
    x.opt("NextToken", next);
    Ok(x.finish())
}

fn processes(svc: &AutoScaling, caller: &Caller, p: &Params, suspend: bool) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let mut names = p.strings("ScalingProcesses")?;
    for n in &names {
        if !PROCESSES.contains(&n.as_str()) {
            return Err(QueryError::validation(format!(
                "Process '{n}' is not a valid scaling process."
            )));
        }
    }
    if names.is_empty() {
        names = PROCESSES.map(String::from).to_vec();
    }
    let reason = format!("User suspended at {}", iso8601(catalog::now_ms()));
    svc.update(caller, &name, |s| {
        for n in names {
            if suspend {
                if !s.group.suspended(&n) {
                    s.group.suspended.push((n, reason.clone()));
                }
            } else {
                s.group.suspended.retain(|(p, _)| *p != n);
            }
        }
        s.group.suspended.sort();
        Ok(())
    })
}

fn activities(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<String> {
    let ids = p.strings("ActivityIds")?;
    let name = p.string("AutoScalingGroupName").filter(|s| !s.is_empty());
    let groups = model::groups_of(svc.cloud.catalog(), &caller.account_id, &caller.region)?;
    let mut rows: Vec<(usize, Activity)> = Vec::new();
    for (i, s) in groups.iter().enumerate() {
        if name.as_deref().is_some_and(|n| n != s.group.name) {
            continue;
        }
        for a in &s.group.activities {
            if ids.is_empty() || ids.contains(&a.id) {
                rows.push((i, a.clone()));
            }
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.start_ms));
    let (page, next) = paginate(&rows, p, 100)?;
    let mut x = Xml::new();
    x.members("Activities", &page, |x, (i, a)| {
        render::activity(x, &groups[*i].group, a)
    });
    x.opt("NextToken", next);
    Ok(x.finish())
}

/// `TrafficSources.member.N` (only `elbv2` target groups).
fn traffic_sources(p: &Params) -> QueryResult<Vec<String>> {
    p.structs("TrafficSources")?
        .into_iter()
        .map(|t| {
            let kind = t.string("Type").unwrap_or_else(|| "elbv2".into());
            if kind != "elbv2" {
                return Err(QueryError::validation(format!(
                    "Traffic source type '{kind}' is not supported by openami (only elbv2)."
                )));
            }
            t.required("Identifier")
        })
        .collect()
}

fn attach(svc: &AutoScaling, caller: &Caller, p: &Params, arns: &[String]) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let new = attachments(svc, caller, arns)?;
    svc.update(caller, &name, |s| {
        for a in new {
            match s.group.target_groups.iter_mut().find(|o| o.arn == a.arn) {
                Some(o) if o.state == "Removing" => o.state = "Adding".into(),
                Some(_) => {}
                None => s.group.target_groups.push(a),
            }
        }
        Ok(())
    })
}

fn detach(svc: &AutoScaling, caller: &Caller, p: &Params, arns: &[String]) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    svc.update(caller, &name, |s| {
        for arn in arns {
            if let Some(a) = s.group.target_groups.iter_mut().find(|a| &a.arn == arn) {
                a.state = "Removing".into();
            }
        }
        Ok(())
    })
}

fn deregister_all(svc: &AutoScaling, caller: &Caller, g: &Group, id: &str) {
    for a in &g.target_groups {
        let _ = svc.elb.deregister_instance(caller, &a.arn, id);
    }
}

fn standby_or_detach(
    svc: &AutoScaling,
    caller: &Caller,
    p: &Params,
    action: &str,
) -> QueryResult<Vec<Activity>> {
    let name = p.required("AutoScalingGroupName")?;
    let ids = p.strings("InstanceIds")?;
    let decrement = if action == "ExitStandby" {
        false
    } else {
        p.bool("ShouldDecrementDesiredCapacity")?
            .ok_or_else(|| QueryError::missing("ShouldDecrementDesiredCapacity"))?
    };
    svc.update(caller, &name, |s| {
        let now = catalog::now_ms();
        let g = &mut s.group;
        let mut out = Vec::new();
        for id in &ids {
            let m = g.instances.iter().find(|m| &m.id == id).cloned().ok_or_else(|| {
                QueryError::validation(format!(
                    "The instance {id} is not part of Auto Scaling group {name}."
                ))
            })?;
            let (description, cause);
            match action {
                "EnterStandby" => {
                    if m.lifecycle != "InService" {
                        return Err(QueryError::validation(format!(
                            "The instance {id} is not in InService."
                        )));
                    }
                    if decrement {
                        if g.desired - 1 < g.min {
                            return Err(QueryError::validation(format!(
                                "The instance {id} cannot enter standby: the desired capacity would fall below the min size {}.",
                                g.min
                            )));
                        }
                        g.desired -= 1;
                    }
                    deregister_all(svc, caller, g, id);
                    if let Some(mm) = g.member_mut(id) {
                        mm.lifecycle = "Standby".into();
                        mm.registered = false;
                    }
                    description = format!("Moving EC2 instance to Standby: {id}");
                    cause = format!(
                        "At {} instance {id} was moved to standby in response to a user request.",
                        iso8601(now)
                    );
                }
                "ExitStandby" => {
                    if m.lifecycle != "Standby" {
                        return Err(QueryError::validation(format!(
                            "The instance {id} is not in Standby."
                        )));
                    }
                    if g.desired + 1 > g.max {
                        return Err(QueryError::validation(format!(
                            "The instance {id} cannot leave standby: the desired capacity would exceed the max size {}.",
                            g.max
                        )));
                    }
                    g.desired += 1;
                    description = format!("Moving EC2 instance out of Standby: {id}");
                    cause = format!(
                        "At {} instance {id} was moved out of standby in response to a user request.",
                        iso8601(now)
                    );
                }
                _ => {
                    if decrement && m.counts() {
                        if g.desired - 1 < g.min {
                            return Err(QueryError::validation(format!(
                                "The instance {id} cannot be detached: the desired capacity would fall below the min size {}.",
                                g.min
                            )));
                        }
                        g.desired -= 1;
                    }
                    deregister_all(svc, caller, g, id);
                    let _ = svc
                        .cloud
                        .catalog()
                        .delete_tags(id, &[(GROUP_TAG.to_string(), None)]);
                    g.instances.retain(|mm| &mm.id != id);
                    description = format!("Detaching EC2 instance: {id}");
                    cause = format!(
                        "At {} instance {id} was detached in response to a user request.",
                        iso8601(now)
                    );
                }
            }
            let mut a = new_activity(description, cause, now);
            if action == "ExitStandby" {
                // Pending again: the controller puts it back in service (and in its
                // target groups) and ends this activity.
                a.progress = 30;
                if let Some(mm) = g.member_mut(id) {
                    mm.lifecycle = "Pending".into();
                    mm.activity_id = Some(a.id.clone());
                }
                g.add_activity(a.clone());
                out.push(a);
            } else {
                let aid = g.add_activity(a);
                finish_activity(g, Some(&aid), "Successful", None);
                out.extend(g.activities.iter().find(|x| x.id == aid).cloned());
            }
        }
        Ok(out)
    })
}

fn attach_instances(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let ids = p.strings("InstanceIds")?;
    if ids.is_empty() {
        return Ok(());
    }
    for id in &ids {
        if group_of_instance(svc, caller, id).is_ok() {
            return Err(QueryError::validation(format!(
                "The instance {id} is already part of an Auto Scaling group."
            )));
        }
    }
    let (views, _) = svc
        .cloud
        .describe_instances(&engine_caller(caller), &ids, &[], &Default::default())
        .map_err(ec2_error)?;
    svc.update(caller, &name, |s| {
        let now = catalog::now_ms();
        let g = &mut s.group;
        if g.desired + ids.len() as i64 > g.max {
            return Err(QueryError::validation(format!(
                "Attaching {} instance(s) would exceed the max size {} of the group.",
                ids.len(),
                g.max
            )));
        }
        for v in &views {
            if v.state != "running" {
                return Err(QueryError::validation(format!(
                    "Instance {} is not in running state.",
                    v.id
                )));
            }
            if !g.availability_zones.contains(&v.doc.availability_zone) {
                return Err(QueryError::validation(format!(
                    "Instance {} is in zone {}, which the group does not use.",
                    v.id, v.doc.availability_zone
                )));
            }
        }
        for v in &views {
            let a = new_activity(
                format!("Attaching an existing EC2 instance: {}", v.id),
                format!(
                    "At {} a user request AttachInstances added instance {} to the group, increasing the capacity from {} to {}.",
                    iso8601(now),
                    v.id,
                    g.desired,
                    g.desired + 1
                ),
                now,
            );
            let aid = g.add_activity(a);
            g.desired += 1;
            let template = {
                let tag = |k: &str| v.tags.iter().find(|(kk, _)| kk == k).map(|(_, x)| x.clone());
                match (
                    tag(engine::launch_templates::launch::ID_TAG),
                    tag(engine::launch_templates::launch::VERSION_TAG),
                ) {
                    (Some(id), Some(version)) => Some(model::TemplateSpec {
                        name: if id == g.template.id {
                            g.template.name.clone()
                        } else {
                            String::new()
                        },
                        id,
                        version,
                    }),
                    _ => None,
                }
            };
            g.instances.push(Member {
                id: v.id.clone(),
                availability_zone: v.doc.availability_zone.clone(),
                subnet_id: v
                    .doc
                    .network
                    .as_ref()
                    .map(|n| n.subnet_id.clone())
                    .unwrap_or_default(),
                lifecycle: "Pending".into(),
                health: "Healthy".into(),
                template,
                instance_type: v.doc.instance_type.clone(),
                image_id: v.doc.image_id.clone(),
                launched_ms: v.doc.launch_time_ms,
                activity_id: Some(aid),
                ..Default::default()
            });
            let _ = svc
                .cloud
                .catalog()
                .set_tags(&v.id, &[(GROUP_TAG.to_string(), g.name.clone())]);
        }
        Ok(())
    })
}

fn metrics(svc: &AutoScaling, caller: &Caller, p: &Params, enable: bool) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let mut list = p.strings("Metrics")?;
    if list.is_empty() {
        list = [
            "GroupMinSize",
            "GroupMaxSize",
            "GroupDesiredCapacity",
            "GroupInServiceInstances",
            "GroupPendingInstances",
            "GroupStandbyInstances",
            "GroupTerminatingInstances",
            "GroupTotalInstances",
        ]
        .map(String::from)
        .to_vec();
    }
    let granularity = p.string("Granularity").unwrap_or_else(|| "1Minute".into());
    svc.update(caller, &name, |s| {
        s.group.enabled_metrics.retain(|(m, _)| !list.contains(m));
        if enable {
            for m in list {
                s.group.enabled_metrics.push((m, granularity.clone()));
            }
        }
        s.group.enabled_metrics.sort();
        Ok(())
    })
}
