//! Launching for a group: the zone with the fewest instances, the group's launch
//! template (with its propagated tags and the `aws:autoscaling:groupName` tag), the
//! activity recorded before the call (its id is the launch's client token, so a launch
//! interrupted by a crash is found again, not repeated), and backoff after failures.

use engine::instances::{InstanceView, RunInstances};
use engine::launch_templates::TemplateRef;
use engine::launch_templates::launch::LaunchTemplateSpecification;
use engine::query::{TagSpecification, iso8601};

use crate::controller::{GROUP_TAG, finish_activity};
use crate::groups::new_activity;
use crate::model::{self, Group, Member, Stored, TemplateSpec};
use crate::{AutoScaling, engine_caller};

/// Longest wait between launch retries after failures.
const MAX_BACKOFF_MS: i64 = 300_000;

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
    /// Launches whose activity was recorded but whose instance was not (openami stopped
    /// in between): launched again with the same client token, which finds the instance
    /// if the engine had launched it.
    pub(crate) fn recover_launches(&self, s: &mut Stored, caller: &awsquery::Caller) {
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

    /// The subnet and zone of the next launch: the enabled zone with the fewest
    /// instances, a random subnet of it.
    pub(crate) fn placement(g: &Group) -> Option<(String, String)> {
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
    pub(crate) fn launch(&self, s: &mut Stored, caller: &awsquery::Caller, now: i64) -> bool {
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

    pub(crate) fn run_one(
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
