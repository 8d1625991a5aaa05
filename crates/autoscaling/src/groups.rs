//! The group actions: Create/Update/Delete/DescribeAutoScalingGroups,
//! DescribeAutoScalingInstances, SetDesiredCapacity, TerminateInstanceInAutoScalingGroup,
//! SetInstanceHealth and SetInstanceProtection, with the validation AWS applies.

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use engine::query::{Page, iso8601};

use crate::model::{self, Activity, Attachment, Group, GroupTag, Stored, TemplateSpec};
use crate::{AutoScaling, ec2_error, engine_caller, render};

/// Handles the group actions; `None` if `action` is not one.
pub fn call(
    svc: &AutoScaling,
    caller: &Caller,
    action: &str,
    p: &Params,
) -> QueryResult<Option<Option<String>>> {
    Ok(Some(match action {
        "CreateAutoScalingGroup" => create(svc, caller, p).map(|_| None)?,
        "UpdateAutoScalingGroup" => update(svc, caller, p).map(|_| None)?,
        "DeleteAutoScalingGroup" => delete(svc, caller, p).map(|_| None)?,
        "DescribeAutoScalingGroups" => Some(describe(svc, caller, p)?),
        "DescribeAutoScalingInstances" => Some(describe_instances(svc, caller, p)?),
        "SetDesiredCapacity" => {
            let name = p.required("AutoScalingGroupName")?;
            let desired = p
                .int("DesiredCapacity")?
                .ok_or_else(|| QueryError::missing("DesiredCapacity"))?;
            let honor = p.bool("HonorCooldown")?.unwrap_or(false);
            let cause = format!(
                "At {} a user request explicitly set group desired capacity changing the desired capacity from {} to {desired}.",
                iso8601(catalog::now_ms()),
                svc.find(caller, &name)?.group.desired
            );
            svc.set_desired(caller, &name, desired, honor, &cause)?;
            None
        }
        "TerminateInstanceInAutoScalingGroup" => Some(terminate_instance(svc, caller, p)?),
        "SetInstanceHealth" => set_health(svc, caller, p).map(|_| None)?,
        "SetInstanceProtection" => set_protection(svc, caller, p).map(|_| Some(String::new()))?,
        "CreateLaunchConfiguration"
        | "DescribeLaunchConfigurations"
        | "DeleteLaunchConfiguration" => return Err(launch_configurations()),
        _ => return Ok(None),
    }))
}

/// Launch configurations are not supported.
pub fn launch_configurations() -> QueryError {
    QueryError::validation(
        "Launch configurations are not supported by openami; use launch templates (LaunchTemplate or MixedInstancesPolicy).",
    )
}

/// The EC2 `Describe*` page for "everything".
fn all_page() -> Page {
    Page::default()
}

/// Resolves a template reference to its id, name and (checked) version text.
pub fn resolve_template(
    svc: &AutoScaling,
    caller: &Caller,
    spec: &Params,
) -> QueryResult<TemplateSpec> {
    let id = spec.string("LaunchTemplateId").filter(|s| !s.is_empty());
    let name = spec.string("LaunchTemplateName").filter(|s| !s.is_empty());
    let version = spec
        .string("Version")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "$Default".into());
    let req = engine::launch_templates::DescribeLaunchTemplates {
        ids: id.iter().cloned().collect(),
        names: name.iter().cloned().collect(),
        ..Default::default()
    };
    if id.is_some() == name.is_some() {
        return Err(QueryError::validation(
            "You must specify either launch template ID or launch template name in the request, but not both.",
        ));
    }
    let (found, _) = svc
        .cloud
        .describe_launch_templates(&engine_caller(caller), &req)
        .map_err(|e| {
            QueryError::validation(format!(
                "You must use a valid fully-formed launch template. {}",
                e.message
            ))
        })?;
    let t = found.into_iter().next().ok_or_else(|| {
        QueryError::validation("You must use a valid fully-formed launch template.")
    })?;
    let spec = TemplateSpec {
        id: t.id.clone(),
        name: t.doc.name.clone(),
        version,
    };
    version_number(&t, &spec.version)?;
    Ok(spec)
}

/// The version number a version text names in a template.
pub fn version_number(
    t: &engine::launch_templates::LaunchTemplateView,
    version: &str,
) -> QueryResult<i64> {
    let n = match version {
        "$Default" => t.doc.default_version,
        "$Latest" => t.doc.latest_version(),
        v => v.parse::<i64>().map_err(|_| {
            QueryError::validation(format!(
                "You must use a valid fully-formed launch template. The launch template version '{v}' is not valid."
            ))
        })?,
    };
    if !t.doc.versions.iter().any(|v| v.number == n) {
        return Err(QueryError::validation(format!(
            "You must use a valid fully-formed launch template. The specified launch template, with template ID {}, does not have version {version}.",
            t.id
        )));
    }
    Ok(n)
}

/// The group's template as given in a request: `LaunchTemplate` or
/// `MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification`.
fn requested_template(
    svc: &AutoScaling,
    caller: &Caller,
    p: &Params,
) -> QueryResult<Option<(TemplateSpec, bool)>> {
    if p.has("LaunchTemplate") {
        return Ok(Some((
            resolve_template(svc, caller, &p.nested("LaunchTemplate"))?,
            false,
        )));
    }
    let mixed = p.nested("MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification");
    if !mixed.is_empty() {
        return Ok(Some((resolve_template(svc, caller, &mixed)?, true)));
    }
    Ok(None)
}

/// The subnets and zones a group launches into.
pub fn placements(
    svc: &AutoScaling,
    caller: &Caller,
    subnets: &[String],
    zones: &[String],
) -> QueryResult<Vec<(String, String)>> {
    let ec = engine_caller(caller);
    if !subnets.is_empty() {
        let (views, _) = svc
            .cloud
            .describe_subnets(&ec, subnets, &[], &all_page())
            .map_err(|e| {
                QueryError::validation(format!("The subnet ID is invalid: {}", e.message))
            })?;
        return Ok(subnets
            .iter()
            .filter_map(|s| {
                views
                    .iter()
                    .find(|v| &v.id == s)
                    .map(|v| (v.id.clone(), v.doc.availability_zone.clone()))
            })
            .collect());
    }
    if zones.is_empty() {
        return Err(QueryError::validation(
            "At least one Availability Zone or VPC Subnet is required.",
        ));
    }
    let (views, _) = svc
        .cloud
        .describe_subnets(&ec, &[], &[], &all_page())
        .map_err(ec2_error)?;
    let mut out = Vec::new();
    for z in zones {
        let found = views
            .iter()
            .find(|v| v.doc.default_for_az && &v.doc.availability_zone == z)
            .ok_or_else(|| {
                QueryError::validation(format!(
                    "The availability zone '{z}' is not legal for this call (it has no default subnet)."
                ))
            })?;
        out.push((found.id.clone(), z.clone()));
    }
    Ok(out)
}

fn split_subnets(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn zones_of(placements: &[(String, String)]) -> Vec<String> {
    let mut z: Vec<String> = placements.iter().map(|(_, z)| z.clone()).collect();
    z.sort();
    z.dedup();
    z
}

/// `Tags.member.N` of CreateAutoScalingGroup / CreateOrUpdateTags.
pub fn parse_tags(p: &Params, name: &str) -> QueryResult<Vec<(Option<String>, GroupTag)>> {
    p.structs(name)?
        .into_iter()
        .map(|t| {
            let key = t.required("Key")?;
            if key.starts_with("aws:") {
                return Err(QueryError::validation(
                    "Tag keys starting with 'aws:' are reserved for internal use",
                ));
            }
            Ok((
                t.string("ResourceId"),
                GroupTag {
                    key,
                    value: t.string("Value").unwrap_or_default(),
                    propagate: t.bool("PropagateAtLaunch")?.unwrap_or(false),
                },
            ))
        })
        .collect()
}

/// Adds or replaces tags by key.
pub fn merge_tags(tags: &mut Vec<GroupTag>, new: Vec<GroupTag>) {
    for t in new {
        match tags.iter_mut().find(|o| o.key == t.key) {
            Some(o) => *o = t,
            None => tags.push(t),
        }
    }
    tags.sort_by(|a, b| a.key.cmp(&b.key));
}

fn check_health_type(t: &str) -> QueryResult<()> {
    if matches!(t, "EC2" | "ELB" | "VPC_LATTICE" | "EBS") {
        Ok(())
    } else {
        Err(QueryError::validation(format!(
            "Value '{t}' at 'healthCheckType' failed to satisfy constraint: Member must be one of EC2, ELB, VPC_LATTICE, EBS"
        )))
    }
}

fn check_termination_policies(ps: &[String]) -> QueryResult<()> {
    for p in ps {
        if !matches!(
            p.as_str(),
            "Default"
                | "OldestInstance"
                | "NewestInstance"
                | "OldestLaunchConfiguration"
                | "OldestLaunchTemplate"
                | "ClosestToNextInstanceHour"
                | "AllocationStrategy"
        ) {
            return Err(QueryError::validation(format!(
                "Termination policy '{p}' is not valid."
            )));
        }
    }
    Ok(())
}

fn check_sizes(min: i64, max: i64, desired: i64) -> QueryResult<()> {
    if min < 0 || max < 0 {
        return Err(QueryError::validation(
            "MinSize and MaxSize must be non-negative.",
        ));
    }
    if min > max {
        return Err(QueryError::validation(format!(
            "Max bound, {max}, must be greater than or equal to min bound, {min}"
        )));
    }
    if desired < min || desired > max {
        return Err(QueryError::validation(format!(
            "Desired capacity:{desired} must be between the specified min size:{min} and max size:{max}"
        )));
    }
    Ok(())
}

/// The target groups a request attaches, validated through ELBv2.
pub fn attachments(
    svc: &AutoScaling,
    caller: &Caller,
    arns: &[String],
) -> QueryResult<Vec<Attachment>> {
    arns.iter()
        .map(|arn| {
            let tg = svc.elb.target_group(caller, arn)?;
            Ok(Attachment {
                arn: tg.arn,
                state: "Adding".into(),
                deregistration_delay_seconds: tg.deregistration_delay_seconds,
            })
        })
        .collect()
}

fn create(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    if name.is_empty() || name.len() > 255 {
        return Err(QueryError::validation(
            "AutoScalingGroupName must be 1 to 255 characters.",
        ));
    }
    if p.has("LaunchConfigurationName") || p.has("InstanceId") {
        return Err(launch_configurations());
    }
    let min = p
        .int("MinSize")?
        .ok_or_else(|| QueryError::missing("MinSize"))?;
    let max = p
        .int("MaxSize")?
        .ok_or_else(|| QueryError::missing("MaxSize"))?;
    let desired = p.int("DesiredCapacity")?.unwrap_or(min);
    check_sizes(min, max, desired)?;
    let (template, mixed) = requested_template(svc, caller, p)?.ok_or_else(|| {
        QueryError::validation(
            "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.",
        )
    })?;
    let subnets = split_subnets(&p.string("VPCZoneIdentifier").unwrap_or_default());
    let zones = p.strings("AvailabilityZones")?;
    let placements = placements(svc, caller, &subnets, &zones)?;
    let health_check_type = p.string("HealthCheckType").unwrap_or_else(|| "EC2".into());
    check_health_type(&health_check_type)?;
    let mut termination_policies = p.strings("TerminationPolicies")?;
    if termination_policies.is_empty() {
        termination_policies.push("Default".into());
    }
    check_termination_policies(&termination_policies)?;
    let mut tags = Vec::new();
    merge_tags(
        &mut tags,
        parse_tags(p, "Tags")?.into_iter().map(|(_, t)| t).collect(),
    );
    let hooks = p
        .structs("LifecycleHookSpecificationList")?
        .iter()
        .map(crate::hooks::parse_hook)
        .collect::<QueryResult<Vec<_>>>()?;
    let mut tg_arns = p.strings("TargetGroupARNs")?;
    for ts in p.structs("TrafficSources")? {
        tg_arns.push(ts.required("Identifier")?);
    }
    let target_groups = attachments(svc, caller, &tg_arns)?;
    let now = catalog::now_ms();
    let _g = svc.lock();
    let existing = model::groups_of(svc.cloud.catalog(), &caller.account_id, &caller.region)?;
    if existing.iter().any(|s| s.group.name == name) {
        return Err(QueryError::new(
            "AlreadyExists",
            format!(
                "AutoScalingGroup by this name already exists - A group with the name {name} already exists"
            ),
        ));
    }
    let id = model::uuid();
    let group = Group {
        arn: format!(
            "arn:aws:autoscaling:{}:{}:autoScalingGroup:{id}:autoScalingGroupName/{name}",
            caller.region, caller.account_id
        ),
        template,
        mixed_instances: mixed,
        min,
        max,
        desired,
        default_cooldown: p.int("DefaultCooldown")?.unwrap_or(300),
        availability_zones: zones_of(&placements),
        placements,
        subnets,
        target_groups,
        health_check_type,
        grace_period: p.int("HealthCheckGracePeriod")?.unwrap_or(0),
        created_ms: now,
        termination_policies,
        new_instances_protected: p.bool("NewInstancesProtectedFromScaleIn")?.unwrap_or(false),
        tags,
        default_instance_warmup: p.int("DefaultInstanceWarmup")?,
        max_instance_lifetime: p.int("MaxInstanceLifetime")?,
        capacity_rebalance: p.bool("CapacityRebalance")?.unwrap_or(false),
        desired_capacity_type: p.string("DesiredCapacityType"),
        context: p.string("Context"),
        deletion_protection: p.string("DeletionProtection"),
        service_linked_role_arn: Some(p.string("ServiceLinkedRoleARN").unwrap_or_else(|| {
            format!(
                "arn:aws:iam::{}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                caller.account_id
            )
        })),
        placement_group: p.string("PlacementGroup"),
        hooks,
        last_cause: format!(
            "At {} a user request created an AutoScalingGroup changing the desired capacity from 0 to {desired}.",
            iso8601(now)
        ),
        name,
        ..Default::default()
    };
    model::insert(
        svc.cloud.catalog(),
        &Stored {
            row_id: format!("asg-{id}"),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            group,
        },
    )
}

fn update(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    if p.has("LaunchConfigurationName") {
        return Err(launch_configurations());
    }
    let template = requested_template(svc, caller, p)?;
    let subnets = p.string("VPCZoneIdentifier").map(|s| split_subnets(&s));
    let zones = p.strings_if_sent("AvailabilityZones")?;
    let new_placements = match (&subnets, &zones) {
        (Some(s), _) if !s.is_empty() => Some(placements(svc, caller, s, &[])?),
        (_, Some(z)) if !z.is_empty() => Some(placements(svc, caller, &[], z)?),
        _ => None,
    };
    if let Some(t) = p.string("HealthCheckType") {
        check_health_type(&t)?;
    }
    let policies = p.strings_if_sent("TerminationPolicies")?;
    if let Some(ps) = &policies {
        check_termination_policies(ps)?;
    }
    svc.update(caller, &name, |s| {
        let g = &mut s.group;
        let min = p.int("MinSize")?.unwrap_or(g.min);
        let max = p.int("MaxSize")?.unwrap_or(g.max);
        let old_desired = g.desired;
        let desired = match p.int("DesiredCapacity")? {
            Some(d) => d,
            None => g.desired.max(min).min(max),
        };
        check_sizes(min, max, desired)?;
        if desired != old_desired {
            g.last_cause = format!(
                "At {} a user request update of AutoScalingGroup constraints to min: {min}, max: {max}, desired: {desired} changing the desired capacity from {old_desired} to {desired}.",
                iso8601(catalog::now_ms())
            );
        }
        g.min = min;
        g.max = max;
        g.desired = desired;
        if let Some((t, mixed)) = template {
            g.template = t;
            g.mixed_instances = mixed;
        }
        if let Some(pl) = new_placements {
            g.availability_zones = zones_of(&pl);
            g.placements = pl;
            g.subnets = subnets.clone().unwrap_or_default();
        }
        if let Some(t) = p.string("HealthCheckType") {
            g.health_check_type = t;
        }
        if let Some(v) = p.int("HealthCheckGracePeriod")? {
            g.grace_period = v;
        }
        if let Some(v) = p.int("DefaultCooldown")? {
            g.default_cooldown = v;
        }
        if let Some(ps) = policies {
            g.termination_policies = if ps.is_empty() {
                vec!["Default".into()]
            } else {
                ps
            };
        }
        if let Some(v) = p.bool("NewInstancesProtectedFromScaleIn")? {
            g.new_instances_protected = v;
        }
        if let Some(v) = p.int("DefaultInstanceWarmup")? {
            g.default_instance_warmup = Some(v);
        }
        if let Some(v) = p.int("MaxInstanceLifetime")? {
            g.max_instance_lifetime = (v > 0).then_some(v);
        }
        if let Some(v) = p.bool("CapacityRebalance")? {
            g.capacity_rebalance = v;
        }
        if let Some(v) = p.string("DesiredCapacityType") {
            g.desired_capacity_type = Some(v);
        }
        if let Some(v) = p.string("Context") {
            g.context = Some(v);
        }
        if let Some(v) = p.string("DeletionProtection") {
            g.deletion_protection = Some(v);
        }
        if let Some(v) = p.string("PlacementGroup") {
            g.placement_group = Some(v);
        }
        Ok(())
    })
}

fn delete(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let force = p.bool("ForceDelete")?.unwrap_or(false);
    let _g = svc.lock();
    let mut s = svc.find(caller, &name)?;
    let protection = s.group.deletion_protection.as_deref().unwrap_or("none");
    if protection == "prevent-all-deletion" || (force && protection == "prevent-force-deletion") {
        return Err(QueryError::validation(format!(
            "You cannot delete AutoScalingGroup {name} because its DeletionProtection is {protection}."
        )));
    }
    let has_instances = s
        .group
        .instances
        .iter()
        .any(|m| m.lifecycle != "Terminated");
    if !has_instances {
        return model::remove(svc.cloud.catalog(), &s.row_id);
    }
    if !force {
        return Err(QueryError::new(
            "ResourceInUse",
            "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.",
        ));
    }
    let g = &mut s.group;
    g.deleting = true;
    g.min = 0;
    g.max = 0;
    g.desired = 0;
    g.last_cause = format!(
        "At {} a user request deleted the AutoScalingGroup changing the desired capacity.",
        iso8601(catalog::now_ms())
    );
    for m in &mut g.instances {
        m.force = true;
    }
    model::store(svc.cloud.catalog(), &s)
}

/// Whether a group matches DescribeAutoScalingGroups' `Filters`.
fn matches_filters(g: &Group, filters: &[(String, Vec<String>)]) -> bool {
    filters.iter().all(|(name, values)| {
        g.tags.iter().any(|t| match name.as_str() {
            "tag-key" => values.contains(&t.key),
            "tag-value" => values.contains(&t.value),
            n => n
                .strip_prefix("tag:")
                .is_some_and(|k| k == t.key && values.contains(&t.value)),
        })
    })
}

/// `Filters.member.N.Name` / `.Values.member.N`.
pub fn parse_filters(p: &Params) -> QueryResult<Vec<(String, Vec<String>)>> {
    p.structs("Filters")?
        .into_iter()
        .map(|f| Ok((f.required("Name")?, f.strings("Values")?)))
        .collect()
}

/// MaxRecords / NextToken paging over an already ordered list.
pub fn paginate<T: Clone>(
    items: &[T],
    p: &Params,
    default_max: i64,
) -> QueryResult<(Vec<T>, Option<String>)> {
    let max = p.int_in("MaxRecords", 1, 100)?.unwrap_or(default_max) as usize;
    let start = match p.string("NextToken").filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| QueryError::new("InvalidNextToken", "The token is invalid."))?,
        None => 0,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}

fn describe(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<String> {
    let names = p.strings("AutoScalingGroupNames")?;
    let filters = parse_filters(p)?;
    let include = p.bool("IncludeInstances")?.unwrap_or(true);
    let groups: Vec<Group> =
        model::groups_of(svc.cloud.catalog(), &caller.account_id, &caller.region)?
            .into_iter()
            .map(|s| s.group)
            .filter(|g| names.is_empty() || names.contains(&g.name))
            .filter(|g| matches_filters(g, &filters))
            .collect();
    let (page, next) = paginate(&groups, p, 50)?;
    let mut x = Xml::new();
    x.members("AutoScalingGroups", &page, |x, g| {
        render::group(x, g, include)
    });
    x.opt("NextToken", next);
    Ok(x.finish())
}

fn describe_instances(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<String> {
    let ids = p.strings("InstanceIds")?;
    let mut rows = Vec::new();
    for s in model::groups_of(svc.cloud.catalog(), &caller.account_id, &caller.region)? {
        for m in &s.group.instances {
            if ids.is_empty() || ids.contains(&m.id) {
                rows.push((s.group.name.clone(), m.clone()));
            }
        }
    }
    let (page, next) = paginate(&rows, p, 50)?;
    let mut x = Xml::new();
    x.members("AutoScalingInstances", &page, |x, (g, m)| {
        render::instance_details(x, g, m)
    });
    x.opt("NextToken", next);
    Ok(x.finish())
}

/// The caller's group holding an instance (`ValidationError` if none does).
pub fn group_of_instance(svc: &AutoScaling, caller: &Caller, id: &str) -> QueryResult<Stored> {
    model::groups_of(svc.cloud.catalog(), &caller.account_id, &caller.region)?
        .into_iter()
        .find(|s| s.group.instances.iter().any(|m| m.id == id))
        .ok_or_else(|| {
            QueryError::validation(format!(
                "Instance Id not found - No managed instance found for instance ID: {id}"
            ))
        })
}

fn terminate_instance(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<String> {
    let id = p.required("InstanceId")?;
    let decrement = p
        .bool("ShouldDecrementDesiredCapacity")?
        .ok_or_else(|| QueryError::missing("ShouldDecrementDesiredCapacity"))?;
    let name = group_of_instance(svc, caller, &id)?.group.name;
    let activity = svc.update(caller, &name, |s| {
        let g = &mut s.group;
        let now = catalog::now_ms();
        let counted = g.counted();
        let member_counts = g.instances.iter().any(|m| m.id == id && m.counts());
        let new_desired = if decrement && member_counts {
            if g.desired - 1 < g.min {
                return Err(QueryError::validation(format!(
                    "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.",
                    g.min
                )));
            }
            g.desired - 1
        } else {
            g.desired
        };
        let cause = if decrement {
            format!(
                "At {} instance {id} was taken out of service in response to a user request, shrinking the capacity from {counted} to {new_desired}.",
                iso8601(now)
            )
        } else {
            format!(
                "At {} instance {id} was taken out of service in response to a user request.",
                iso8601(now)
            )
        };
        g.desired = new_desired;
        let a = crate::controller::begin_termination(g, &id, &cause, !decrement, now)
            .ok_or_else(|| {
                QueryError::validation(format!(
                    "The instance {id} is already terminating."
                ))
            })?;
        Ok(a)
    })?;
    let g = svc.find(caller, &name)?.group;
    let mut x = Xml::new();
    x.elem("Activity", |x| render::activity(x, &g, &activity));
    Ok(x.finish())
}

fn set_health(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<()> {
    let id = p.required("InstanceId")?;
    let status = p.required("HealthStatus")?;
    if status != "Healthy" && status != "Unhealthy" {
        return Err(QueryError::validation(format!(
            "Health status {status} is invalid. Valid values are Healthy and Unhealthy."
        )));
    }
    let respect = p.bool("ShouldRespectGracePeriod")?.unwrap_or(true);
    let name = group_of_instance(svc, caller, &id)?.group.name;
    svc.update(caller, &name, |s| {
        let grace = s.group.grace_period;
        let now = catalog::now_ms();
        let Some(m) = s.group.member_mut(&id) else {
            return Ok(());
        };
        if status == "Unhealthy" && respect && m.launched_ms + grace * 1000 > now {
            // Inside the grace period the call is accepted and ignored, as on AWS.
            return Ok(());
        }
        m.health = status.clone();
        m.health_reason = (status == "Unhealthy").then(|| {
            "an instance was taken out of service in response to a user health-check.".into()
        });
        Ok(())
    })
}

fn set_protection(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let ids = p.strings("InstanceIds")?;
    let protect = p
        .bool("ProtectedFromScaleIn")?
        .ok_or_else(|| QueryError::missing("ProtectedFromScaleIn"))?;
    svc.update(caller, &name, |s| {
        for id in &ids {
            let m = s.group.member_mut(id).ok_or_else(|| {
                QueryError::validation(format!(
                    "The instance {id} is not part of Auto Scaling group {name}."
                ))
            })?;
            m.protected = protect;
        }
        Ok(())
    })
}

/// A new activity (InProgress, Progress 0 or as given).
pub fn new_activity(description: String, cause: String, now: i64) -> Activity {
    Activity {
        id: model::uuid(),
        description,
        cause,
        start_ms: now,
        status: "InProgress".into(),
        progress: 0,
        details: "{}".into(),
        ..Default::default()
    }
}
