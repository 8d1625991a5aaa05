//! XML of Auto Scaling's output shapes (botocore's `AutoScalingGroup`, `Instance`,
//! `AutoScalingInstanceDetails`, `Activity`, `TagDescription`), as `<member>` lists.

use awsquery::Xml;
use engine::query::iso8601;

use crate::model::{Activity, Group, GroupTag, Member, TemplateSpec};

/// `LaunchTemplateSpecification`.
pub fn template(x: &mut Xml, name: &str, t: &TemplateSpec) {
    x.elem(name, |x| {
        x.text("LaunchTemplateId", &t.id)
            .text("LaunchTemplateName", &t.name)
            .text("Version", &t.version);
    });
}

/// The group's `LaunchTemplate` or `MixedInstancesPolicy`.
pub fn group_template(x: &mut Xml, g: &Group) {
    if g.mixed_instances {
        x.elem("MixedInstancesPolicy", |x| {
            x.elem("LaunchTemplate", |x| {
                template(x, "LaunchTemplateSpecification", &g.template);
                x.elem("Overrides", |_| {});
            });
        });
    } else {
        template(x, "LaunchTemplate", &g.template);
    }
}

/// One `TagDescription`.
pub fn tag(x: &mut Xml, group: &str, t: &GroupTag) {
    x.text("ResourceId", group)
        .text("ResourceType", "auto-scaling-group")
        .text("Key", &t.key)
        .text("Value", &t.value)
        .text("PropagateAtLaunch", &t.propagate.to_string());
}

fn member_common(x: &mut Xml, m: &Member) {
    x.text("InstanceId", &m.id)
        .text("InstanceType", &m.instance_type)
        .text("AvailabilityZone", &m.availability_zone);
}

fn member_tail(x: &mut Xml, m: &Member) {
    if let Some(t) = &m.template {
        template(x, "LaunchTemplate", t);
    }
    if !m.image_id.is_empty() {
        x.text("ImageId", &m.image_id);
    }
    x.text("ProtectedFromScaleIn", &m.protected.to_string());
}

/// One `Instance` of a group.
pub fn instance(x: &mut Xml, m: &Member) {
    member_common(x, m);
    x.text("LifecycleState", &m.lifecycle)
        .text("HealthStatus", &m.health);
    member_tail(x, m);
}

/// One `AutoScalingInstanceDetails` (health in capitals, as AWS writes it there).
pub fn instance_details(x: &mut Xml, group: &str, m: &Member) {
    member_common(x, m);
    x.text("AutoScalingGroupName", group)
        .text("LifecycleState", &m.lifecycle)
        .text("HealthStatus", &m.health.to_uppercase());
    member_tail(x, m);
}

/// One `Activity`.
pub fn activity(x: &mut Xml, g: &Group, a: &Activity) {
    x.text("ActivityId", &a.id)
        .text("AutoScalingGroupName", &g.name)
        .text("Description", &a.description)
        .text("Cause", &a.cause)
        .text("StartTime", &iso8601(a.start_ms))
        .opt("EndTime", a.end_ms.map(iso8601))
        .text("StatusCode", &a.status)
        .opt("StatusMessage", a.message.as_deref())
        .text("Progress", &a.progress.to_string())
        .text("Details", &a.details)
        .text("AutoScalingGroupARN", &g.arn);
}

/// One `AutoScalingGroup`.
pub fn group(x: &mut Xml, g: &Group, include_instances: bool) {
    x.text("AutoScalingGroupName", &g.name)
        .text("AutoScalingGroupARN", &g.arn);
    group_template(x, g);
    x.text("MinSize", &g.min.to_string())
        .text("MaxSize", &g.max.to_string())
        .text("DesiredCapacity", &g.desired.to_string())
        .text("DefaultCooldown", &g.default_cooldown.to_string())
        .strings("AvailabilityZones", &g.availability_zones)
        .elem("LoadBalancerNames", |_| {});
    let tgs: Vec<String> = g
        .target_groups
        .iter()
        .filter(|a| a.state != "Removing" && a.state != "Removed")
        .map(|a| a.arn.clone())
        .collect();
    x.strings("TargetGroupARNs", &tgs)
        .text("HealthCheckType", &g.health_check_type)
        .text("HealthCheckGracePeriod", &g.grace_period.to_string());
    if include_instances {
        let live: Vec<&Member> = g.instances.iter().collect();
        x.members("Instances", &live, |x, m| instance(x, m));
    }
    x.text("CreatedTime", &iso8601(g.created_ms))
        .members("SuspendedProcesses", &g.suspended, |x, (p, r)| {
            x.text("ProcessName", p).text("SuspensionReason", r);
        })
        .opt("PlacementGroup", g.placement_group.as_deref());
    if !g.subnets.is_empty() {
        x.text("VPCZoneIdentifier", &g.subnets.join(","));
    }
    x.members("EnabledMetrics", &g.enabled_metrics, |x, (m, gr)| {
        x.text("Metric", m).text("Granularity", gr);
    });
    if g.deleting {
        x.text("Status", "Delete in progress");
    }
    x.members("Tags", &g.tags, |x, t| tag(x, &g.name, t))
        .strings("TerminationPolicies", &g.termination_policies)
        .text(
            "NewInstancesProtectedFromScaleIn",
            &g.new_instances_protected.to_string(),
        )
        .opt("ServiceLinkedRoleARN", g.service_linked_role_arn.as_deref())
        .opt("MaxInstanceLifetime", g.max_instance_lifetime)
        .text("CapacityRebalance", &g.capacity_rebalance.to_string())
        .opt("Context", g.context.as_deref())
        .opt("DesiredCapacityType", g.desired_capacity_type.as_deref())
        .opt("DefaultInstanceWarmup", g.default_instance_warmup)
        .members("TrafficSources", &tgs, |x, arn| {
            x.text("Identifier", arn).text("Type", "elbv2");
        })
        .opt("DeletionProtection", g.deletion_protection.as_deref());
}
