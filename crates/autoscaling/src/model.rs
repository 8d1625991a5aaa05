//! What the catalog keeps about an Auto Scaling group: one resource row of kind
//! [`GROUP_KIND`] per group whose JSON document holds its configuration, its
//! instances (with their lifecycle state), lifecycle hooks, scaling activities and
//! instance refreshes. One row per group makes a read-modify-write of a group one
//! `update_resource`, serialized by the service's mutex.

use awsquery::{QueryError, QueryResult};
use catalog::{Catalog, ResourceRow};
use serde::{Deserialize, Serialize};

/// Catalog kind of Auto Scaling groups.
pub const GROUP_KIND: &str = "asg-group";

/// How many activities a group keeps (newest first when described).
pub const MAX_ACTIVITIES: usize = 200;

/// A launch template reference as the group (or an instance) names it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TemplateSpec {
    /// `lt-…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `Version` as given (`$Default`, `$Latest` or a number).
    pub version: String,
}

/// A tag of a group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct GroupTag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// `PropagateAtLaunch`.
    pub propagate: bool,
}

/// An attached target group (`TargetGroupARNs` / traffic source of type `elbv2`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Attachment {
    /// Target group ARN.
    pub arn: String,
    /// `Adding`, `Added`, `InService`, `Removing`, `Removed`.
    pub state: String,
    /// Deregistration delay of the target group (bounds draining).
    pub deregistration_delay_seconds: u64,
}

/// A lifecycle hook.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Hook {
    /// `LifecycleHookName`.
    pub name: String,
    /// `autoscaling:EC2_INSTANCE_LAUNCHING` or `…_TERMINATING`.
    pub transition: String,
    /// `NotificationTargetARN`.
    pub notification_target_arn: Option<String>,
    /// `RoleARN`.
    pub role_arn: Option<String>,
    /// `NotificationMetadata`.
    pub notification_metadata: Option<String>,
    /// `HeartbeatTimeout` (seconds).
    pub heartbeat_timeout: i64,
    /// `DefaultResult`: `CONTINUE` or `ABANDON`.
    pub default_result: String,
}

impl Hook {
    /// `GlobalTimeout`: min(48 h, 100 × heartbeat).
    pub fn global_timeout(&self) -> i64 {
        (self.heartbeat_timeout * 100).min(172_800)
    }
}

/// An instance's wait on a lifecycle hook.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct HookWait {
    /// The hook.
    pub hook: String,
    /// `LifecycleActionToken`.
    pub token: String,
    /// When the heartbeat timeout elapses.
    pub deadline_ms: i64,
    /// When the global timeout elapses.
    pub global_deadline_ms: i64,
    /// `CONTINUE`/`ABANDON` once decided.
    pub result: Option<String>,
}

/// An instance of the group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Member {
    /// `i-…`.
    pub id: String,
    /// Zone.
    pub availability_zone: String,
    /// Subnet it was launched into.
    pub subnet_id: String,
    /// `Pending`, `Pending:Wait`, `Pending:Proceed`, `InService`, `Terminating`,
    /// `Terminating:Wait`, `Terminating:Proceed`, `Standby`, `Detaching`, ...
    pub lifecycle: String,
    /// `Healthy` or `Unhealthy`.
    pub health: String,
    /// Why it became unhealthy.
    pub health_reason: Option<String>,
    /// `ProtectedFromScaleIn`.
    pub protected: bool,
    /// The template it was launched from (version as a number), if any.
    pub template: Option<TemplateSpec>,
    /// `InstanceType`.
    pub instance_type: String,
    /// `ImageId`.
    pub image_id: String,
    /// When it was launched (or attached).
    pub launched_ms: i64,
    /// When it went InService.
    pub in_service_ms: Option<i64>,
    /// The activity launching or terminating it.
    pub activity_id: Option<String>,
    /// A lifecycle hook wait.
    pub wait: Option<HookWait>,
    /// Draining in target groups ends at the latest at this time.
    pub drain_until_ms: Option<i64>,
    /// Whether termination should leave the desired capacity alone (false: decrement).
    pub replace: bool,
    /// Registered with the attached target groups.
    pub registered: bool,
    /// Terminate without hooks or draining (ForceDelete).
    pub force: bool,
}

impl Member {
    /// Counted against the desired capacity.
    pub fn counts(&self) -> bool {
        self.lifecycle.starts_with("Pending") || self.lifecycle == "InService"
    }

    /// On its way out.
    pub fn terminating(&self) -> bool {
        self.lifecycle.starts_with("Terminating")
    }
}

/// A scaling activity.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Activity {
    /// `ActivityId` (a UUID).
    pub id: String,
    /// `Description`.
    pub description: String,
    /// `Cause`.
    pub cause: String,
    /// `StartTime`.
    pub start_ms: i64,
    /// `EndTime`.
    pub end_ms: Option<i64>,
    /// `StatusCode`.
    pub status: String,
    /// `StatusMessage`.
    pub message: Option<String>,
    /// `Progress`.
    pub progress: i64,
    /// `Details` (JSON text).
    pub details: String,
}

/// An instance refresh.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Refresh {
    /// `InstanceRefreshId`.
    pub id: String,
    /// `Status`.
    pub status: String,
    /// `StatusReason`.
    pub reason: Option<String>,
    /// `StartTime`.
    pub start_ms: i64,
    /// `EndTime`.
    pub end_ms: Option<i64>,
    /// `PercentageComplete`.
    pub percentage: i64,
    /// `InstancesToUpdate`.
    pub to_update: i64,
    /// `MinHealthyPercentage`.
    pub min_healthy: i64,
    /// `MaxHealthyPercentage`.
    pub max_healthy: Option<i64>,
    /// `InstanceWarmup` (seconds).
    pub warmup: Option<i64>,
    /// `CheckpointPercentages`.
    pub checkpoints: Vec<i64>,
    /// `CheckpointDelay` (seconds).
    pub checkpoint_delay: Option<i64>,
    /// `SkipMatching`.
    pub skip_matching: bool,
    /// `AutoRollback`.
    pub auto_rollback: bool,
    /// `ScaleInProtectedInstances`.
    pub scale_in_protected: Option<String>,
    /// `StandbyInstances`.
    pub standby: Option<String>,
    /// `DesiredConfiguration.LaunchTemplate`.
    pub desired_template: Option<TemplateSpec>,
    /// The group's template before the refresh (for rollback).
    pub previous_template: Option<TemplateSpec>,
    /// Instances still to replace.
    pub pending: Vec<String>,
    /// How many instances the refresh had to replace when it started.
    pub total: i64,
    /// Instances above the desired capacity the refresh has the controller keep
    /// (replacements launched before old instances terminate).
    pub extra: i64,
    /// When the current batch started (replacements launched or old instances
    /// terminated); a batch that does not settle in time fails the refresh.
    pub batch_since_ms: Option<i64>,
    /// Paused at a checkpoint until this time.
    pub checkpoint_until_ms: Option<i64>,
    /// Checkpoints already passed.
    pub checkpoints_done: usize,
    /// Consecutive failed replacements.
    pub failures: i64,
    /// Rollback reason, if rolling back.
    pub rollback_reason: Option<String>,
    /// When the rollback started.
    pub rollback_start_ms: Option<i64>,
}

/// One Auto Scaling group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Group {
    /// `AutoScalingGroupName`.
    pub name: String,
    /// `AutoScalingGroupARN`.
    pub arn: String,
    /// `LaunchTemplate` (or `MixedInstancesPolicy.LaunchTemplate…`).
    pub template: TemplateSpec,
    /// Whether it was given as a MixedInstancesPolicy.
    pub mixed_instances: bool,
    /// `MinSize`.
    pub min: i64,
    /// `MaxSize`.
    pub max: i64,
    /// `DesiredCapacity`.
    pub desired: i64,
    /// `DefaultCooldown`.
    pub default_cooldown: i64,
    /// Zones in use.
    pub availability_zones: Vec<String>,
    /// `VPCZoneIdentifier` subnets (empty when created with AvailabilityZones).
    pub subnets: Vec<String>,
    /// Subnets to launch into with their zones: (subnet, zone).
    pub placements: Vec<(String, String)>,
    /// Attached target groups.
    pub target_groups: Vec<Attachment>,
    /// `HealthCheckType`.
    pub health_check_type: String,
    /// `HealthCheckGracePeriod`.
    pub grace_period: i64,
    /// `CreatedTime`.
    pub created_ms: i64,
    /// Suspended processes: (name, reason).
    pub suspended: Vec<(String, String)>,
    /// `TerminationPolicies`.
    pub termination_policies: Vec<String>,
    /// `NewInstancesProtectedFromScaleIn`.
    pub new_instances_protected: bool,
    /// `Tags`.
    pub tags: Vec<GroupTag>,
    /// `DefaultInstanceWarmup`.
    pub default_instance_warmup: Option<i64>,
    /// `MaxInstanceLifetime`.
    pub max_instance_lifetime: Option<i64>,
    /// `CapacityRebalance`.
    pub capacity_rebalance: bool,
    /// `DesiredCapacityType`.
    pub desired_capacity_type: Option<String>,
    /// `Context`.
    pub context: Option<String>,
    /// `DeletionProtection`.
    pub deletion_protection: Option<String>,
    /// `ServiceLinkedRoleARN`.
    pub service_linked_role_arn: Option<String>,
    /// `PlacementGroup`.
    pub placement_group: Option<String>,
    /// Metrics enabled by EnableMetricsCollection: (metric, granularity).
    pub enabled_metrics: Vec<(String, String)>,
    /// Lifecycle hooks.
    pub hooks: Vec<Hook>,
    /// Instances.
    pub instances: Vec<Member>,
    /// Scaling activities, oldest first.
    pub activities: Vec<Activity>,
    /// Instance refreshes, oldest first.
    pub refreshes: Vec<Refresh>,
    /// Being deleted (ForceDelete): `Status` "Delete in progress".
    pub deleting: bool,
    /// End of the cooldown of the last scaling activity.
    pub cooldown_until_ms: i64,
    /// Why the desired capacity last changed (the start of the next activities' Cause).
    pub last_cause: String,
    /// Consecutive failed launches (for backoff).
    pub launch_failures: u32,
    /// No launch before this time (backoff after failures).
    pub next_launch_ms: i64,
}

impl Group {
    /// Whether `process` is suspended.
    pub fn suspended(&self, process: &str) -> bool {
        self.suspended.iter().any(|(p, _)| p == process)
    }

    /// The member with this instance id.
    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.instances.iter_mut().find(|m| m.id == id)
    }

    /// Instances counted against desired capacity.
    pub fn counted(&self) -> i64 {
        self.instances.iter().filter(|m| m.counts()).count() as i64
    }

    /// The activity with this id.
    pub fn activity_mut(&mut self, id: &str) -> Option<&mut Activity> {
        self.activities.iter_mut().find(|a| a.id == id)
    }

    /// Records an activity (dropping the oldest beyond [`MAX_ACTIVITIES`]); returns its id.
    pub fn add_activity(&mut self, a: Activity) -> String {
        let id = a.id.clone();
        self.activities.push(a);
        if self.activities.len() > MAX_ACTIVITIES {
            let extra = self.activities.len() - MAX_ACTIVITIES;
            self.activities.drain(..extra);
        }
        id
    }

    /// The active instance refresh, if any.
    pub fn active_refresh_mut(&mut self) -> Option<&mut Refresh> {
        self.refreshes
            .iter_mut()
            .rev()
            .find(|r| refresh_active(&r.status))
    }
}

/// Whether a refresh status is not final.
pub fn refresh_active(status: &str) -> bool {
    matches!(
        status,
        "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress" | "Baking"
    )
}

/// A group with its catalog row's identity.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Row id.
    pub row_id: String,
    /// Owner.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// The group.
    pub group: Group,
}

fn internal(what: &str, e: impl std::fmt::Display) -> QueryError {
    QueryError::internal(format!("{what}: {e}"))
}

/// Decodes a row.
pub fn decode(row: &ResourceRow) -> QueryResult<Stored> {
    let group: Group =
        serde_json::from_str(&row.doc).map_err(|e| internal("Auto Scaling group document", e))?;
    Ok(Stored {
        row_id: row.id.clone(),
        account_id: row.account_id.clone(),
        region: row.region.clone(),
        group,
    })
}

/// Every group of every account and region.
pub fn all_groups(catalog: &Catalog) -> QueryResult<Vec<Stored>> {
    catalog
        .resources_of_kind(GROUP_KIND)
        .map_err(|e| internal("catalog", e))?
        .iter()
        .map(decode)
        .collect()
}

/// The groups of one account in one region, by name.
pub fn groups_of(catalog: &Catalog, account_id: &str, region: &str) -> QueryResult<Vec<Stored>> {
    let mut out: Vec<Stored> = catalog
        .resources(GROUP_KIND, region)
        .map_err(|e| internal("catalog", e))?
        .iter()
        .filter(|r| r.account_id == account_id)
        .map(decode)
        .collect::<QueryResult<_>>()?;
    out.sort_by(|a, b| a.group.name.cmp(&b.group.name));
    Ok(out)
}

/// Writes a group back.
pub fn store(catalog: &Catalog, s: &Stored) -> QueryResult<()> {
    let doc = serde_json::to_string(&s.group).map_err(|e| internal("encoding a group", e))?;
    let state = if s.group.deleting {
        "deleting"
    } else {
        "active"
    };
    catalog
        .update_resource(&s.row_id, state, &doc)
        .map_err(|e| internal("catalog", e))?;
    Ok(())
}

/// Inserts a new group.
pub fn insert(catalog: &Catalog, s: &Stored) -> QueryResult<()> {
    let doc = serde_json::to_string(&s.group).map_err(|e| internal("encoding a group", e))?;
    catalog
        .insert_resource(&ResourceRow {
            id: s.row_id.clone(),
            kind: GROUP_KIND.to_string(),
            account_id: s.account_id.clone(),
            region: s.region.clone(),
            state: "active".into(),
            doc,
            created_at_ms: s.group.created_ms,
        })
        .map_err(|e| internal("catalog", e))
}

/// Removes a group.
pub fn remove(catalog: &Catalog, row_id: &str) -> QueryResult<()> {
    catalog
        .delete_resource(row_id)
        .map_err(|e| internal("catalog", e))?;
    Ok(())
}

/// A random UUID (version 4 layout).
pub fn uuid() -> String {
    let mut b = engine::ids::random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
