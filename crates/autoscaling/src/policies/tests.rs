//! Tests of the operations and the evaluation against an in-memory group core.

use std::cell::RefCell;
use std::collections::HashMap;

use awsquery::{Caller, Params, QueryError, QueryResult};
use catalog::Catalog;
use engine::instances::CpuSample;

use super::tracking::Tuning;
use super::{GroupAccess, GroupState, InstanceState, Policies};

/// A group core in memory: groups, CPU counters and request counters set by the test.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) groups: RefCell<Vec<GroupState>>,
    pub(crate) cpu: RefCell<HashMap<String, CpuSample>>,
    requests: RefCell<HashMap<String, u64>>,
    pub(crate) causes: RefCell<Vec<String>>,
}

pub(crate) fn caller() -> Caller {
    Caller {
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

impl GroupAccess for Fake {
    fn group(&self, _caller: &Caller, name: &str) -> Option<GroupState> {
        self.groups
            .borrow()
            .iter()
            .find(|g| g.name == name)
            .cloned()
    }
    fn all_groups(&self) -> QueryResult<Vec<(Caller, GroupState)>> {
        Ok(self
            .groups
            .borrow()
            .iter()
            .map(|g| (caller(), g.clone()))
            .collect())
    }
    fn set_capacity(
        &self,
        _caller: &Caller,
        name: &str,
        min: Option<i64>,
        max: Option<i64>,
        desired: Option<i64>,
        cause: &str,
    ) -> QueryResult<()> {
        let mut groups = self.groups.borrow_mut();
        let g = groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| QueryError::validation("no group"))?;
        g.min = min.unwrap_or(g.min);
        g.max = max.unwrap_or(g.max);
        g.desired = desired.unwrap_or(g.desired).clamp(g.min, g.max);
        g.last_capacity_change_ms = Some(catalog::now_ms());
        self.causes.borrow_mut().push(cause.to_string());
        Ok(())
    }
    fn instance_cpu(&self, instance_id: &str) -> Option<CpuSample> {
        self.cpu.borrow().get(instance_id).copied()
    }
    fn target_group_requests(&self, _caller: &Caller, tg: &str) -> Option<u64> {
        self.requests.borrow().get(tg).copied()
    }
}

const TG: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";
const LABEL: &str = "app/lb/fedcba9876543210/targetgroup/web/0123456789abcdef";

pub(crate) fn setup(instances: usize) -> (Fake, Catalog, Policies) {
    let fake = Fake::default();
    fake.groups.borrow_mut().push(GroupState {
        name: "g".into(),
        arn: "arn:g".into(),
        min: 1,
        max: 10,
        desired: instances as i64,
        default_cooldown_s: 300,
        default_instance_warmup_s: Some(0),
        target_group_arns: vec![TG.into()],
        instances: (0..instances)
            .map(|i| InstanceState {
                id: format!("i-{i}"),
                lifecycle_state: "InService".into(),
                launched_ms: 0,
                in_service_ms: Some(0),
            })
            .collect(),
        ..GroupState::default()
    });
    let tuning = Tuning {
        period_ms: 10_000,
        out_periods: 2,
        in_periods: 3,
    };
    (fake, Catalog::in_memory().unwrap(), Policies::new(tuning))
}

pub(crate) fn call(
    f: &Fake,
    c: &Catalog,
    p: &Policies,
    action: &str,
    pairs: &[(&str, &str)],
) -> QueryResult<Option<String>> {
    p.call(
        f,
        c,
        &caller(),
        action,
        &Params::from_pairs(pairs.iter().copied()),
    )
    .expect("action handled")
}

#[test]
fn put_describe_delete_round_trip() {
    let (f, c, p) = setup(2);
    let out = call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "cpu"),
            ("PolicyType", "TargetTrackingScaling"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ASGAverageCPUUtilization",
            ),
            ("TargetTrackingConfiguration.TargetValue", "50.0"),
            ("Enabled", "true"),
        ],
    )
    .unwrap()
    .unwrap();
    assert!(
        out.contains(":scalingPolicy:")
            && out.contains(":autoScalingGroupName/g:policyName/cpu</PolicyARN>")
    );
    assert!(out.contains("<AlarmName>TargetTracking-g-AlarmHigh-"));
    assert!(out.contains("<AlarmName>TargetTracking-g-AlarmLow-"));
    assert!(out.contains(
        "<AlarmARN>arn:aws:cloudwatch:us-east-1:123456789012:alarm:TargetTracking-g-AlarmHigh-"
    ));
    let arn = out
        .split("<PolicyARN>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();

    // Replacing keeps the ARN.
    let again = call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "cpu"),
            ("PolicyType", "TargetTrackingScaling"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ASGAverageCPUUtilization",
            ),
            ("TargetTrackingConfiguration.TargetValue", "40"),
            ("TargetTrackingConfiguration.DisableScaleIn", "true"),
            ("Enabled", "false"),
        ],
    )
    .unwrap()
    .unwrap();
    assert!(again.contains(&arn));
    assert!(
        !again.contains("AlarmLow"),
        "no low alarm with DisableScaleIn"
    );

    let d = call(
        &f,
        &c,
        &p,
        "DescribePolicies",
        &[("AutoScalingGroupName", "g")],
    )
    .unwrap()
    .unwrap();
    assert_eq!(d.matches("<member><AutoScalingGroupName>").count(), 1);
    assert!(d.contains("<TargetValue>40</TargetValue><DisableScaleIn>true</DisableScaleIn>"));
    assert!(d.contains("<Enabled>false</Enabled>"));
    assert!(d.contains("<PolicyType>TargetTrackingScaling</PolicyType>"));

    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "up"),
            ("AdjustmentType", "ChangeInCapacity"),
            ("ScalingAdjustment", "2"),
        ],
    )
    .unwrap();
    let page = call(&f, &c, &p, "DescribePolicies", &[("MaxRecords", "1")])
        .unwrap()
        .unwrap();
    assert!(page.contains("<PolicyName>cpu</PolicyName>") && page.contains("<NextToken>"));
    let token = page
        .split("<NextToken>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let page2 = call(
        &f,
        &c,
        &p,
        "DescribePolicies",
        &[("MaxRecords", "1"), ("NextToken", &token)],
    )
    .unwrap()
    .unwrap();
    assert!(page2.contains("<PolicyName>up</PolicyName>") && !page2.contains("<NextToken>"));
    let typed = call(
        &f,
        &c,
        &p,
        "DescribePolicies",
        &[("PolicyTypes.member.1", "SimpleScaling")],
    )
    .unwrap()
    .unwrap();
    assert!(
        typed.contains("<PolicyName>up</PolicyName>")
            && !typed.contains("<PolicyName>cpu</PolicyName>")
    );
    assert_eq!(
        call(&f, &c, &p, "DescribePolicies", &[("NextToken", "bogus")])
            .unwrap_err()
            .code,
        "InvalidNextToken"
    );

    call(
        &f,
        &c,
        &p,
        "DeletePolicy",
        &[("AutoScalingGroupName", "g"), ("PolicyName", "up")],
    )
    .unwrap();
    call(&f, &c, &p, "DeletePolicy", &[("PolicyName", &arn)]).unwrap();
    let e = call(
        &f,
        &c,
        &p,
        "DeletePolicy",
        &[("AutoScalingGroupName", "g"), ("PolicyName", "up")],
    )
    .unwrap_err();
    assert!(e.message.contains("not found"));
    let empty = call(&f, &c, &p, "DescribePolicies", &[]).unwrap().unwrap();
    assert_eq!(empty, "<ScalingPolicies></ScalingPolicies>");
}

#[test]
fn bad_input_is_refused() {
    let (f, c, p) = setup(1);
    let put = |pairs: &[(&str, &str)]| {
        let mut all = vec![("AutoScalingGroupName", "g"), ("PolicyName", "x")];
        all.extend_from_slice(pairs);
        call(&f, &c, &p, "PutScalingPolicy", &all).unwrap_err()
    };
    let e = call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "nope"),
            ("PolicyName", "x"),
            ("AdjustmentType", "ChangeInCapacity"),
            ("ScalingAdjustment", "1"),
        ],
    )
    .unwrap_err();
    assert_eq!(e.code, "ValidationError");
    assert!(e.message.starts_with("AutoScalingGroup name not found - "));
    assert!(
        put(&[("ScalingAdjustment", "1")])
            .message
            .contains("AdjustmentType is required")
    );
    assert!(
        put(&[("AdjustmentType", "ChangeInCapacity")])
            .message
            .contains("ScalingAdjustment is required")
    );
    assert!(
        put(&[("AdjustmentType", "Bogus"), ("ScalingAdjustment", "1")])
            .message
            .contains("Invalid AdjustmentType")
    );
    assert!(
        put(&[
            ("AdjustmentType", "ChangeInCapacity"),
            ("ScalingAdjustment", "1"),
            ("MinAdjustmentMagnitude", "2")
        ])
        .message
        .contains("PercentChangeInCapacity")
    );
    assert_eq!(
        put(&[("PolicyType", "PredictiveScaling")]).code,
        "UnsupportedOperation"
    );
    assert!(
        put(&[
            ("PolicyType", "StepScaling"),
            ("AdjustmentType", "ChangeInCapacity")
        ])
        .message
        .contains("StepAdjustments is required")
    );
    assert!(
        put(&[
            ("PolicyType", "TargetTrackingScaling"),
            ("TargetTrackingConfiguration.TargetValue", "5")
        ])
        .message
        .contains("Exactly one")
    );
    assert!(
        put(&[
            ("PolicyType", "TargetTrackingScaling"),
            ("TargetTrackingConfiguration.TargetValue", "5"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ALBRequestCountPerTarget"
            )
        ])
        .message
        .contains("ResourceLabel is required")
    );
    assert!(
        put(&[
            ("PolicyType", "TargetTrackingScaling"),
            ("TargetTrackingConfiguration.TargetValue", "5"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ALBRequestCountPerTarget"
            ),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.ResourceLabel",
                "app/lb/1/targetgroup/other/2"
            )
        ])
        .message
        .contains("not attached")
    );
    assert!(
        put(&[
            ("PolicyType", "TargetTrackingScaling"),
            ("Cooldown", "60"),
            ("TargetTrackingConfiguration.TargetValue", "5"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ASGAverageCPUUtilization"
            )
        ])
        .message
        .contains("Cooldown")
    );
    // Nothing was stored by the failures.
    assert_eq!(
        call(&f, &c, &p, "DescribePolicies", &[]).unwrap().unwrap(),
        "<ScalingPolicies></ScalingPolicies>"
    );
    assert_eq!(
        call(&f, &c, &p, "GetPredictiveScalingForecast", &[])
            .unwrap_err()
            .code,
        "UnsupportedOperation"
    );
    assert!(
        p.call(
            &f,
            &c,
            &caller(),
            "CreateAutoScalingGroup",
            &Params::default()
        )
        .is_none()
    );
}

#[test]
fn execute_simple_and_step_policies() {
    let (f, c, p) = setup(2);
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "pct"),
            ("AdjustmentType", "PercentChangeInCapacity"),
            ("ScalingAdjustment", "10"),
            ("Cooldown", "600"),
        ],
    )
    .unwrap();
    call(
        &f,
        &c,
        &p,
        "ExecutePolicy",
        &[("AutoScalingGroupName", "g"), ("PolicyName", "pct")],
    )
    .unwrap();
    assert_eq!(
        f.group(&caller(), "g").unwrap().desired,
        3,
        "10% of 2 rounds up to 1"
    );
    assert!(
        f.causes.borrow()[0].contains(
            "a user request executed policy pct changing the desired capacity from 2 to 3."
        )
    );
    let e = call(
        &f,
        &c,
        &p,
        "ExecutePolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "pct"),
            ("HonorCooldown", "true"),
        ],
    )
    .unwrap_err();
    assert_eq!(e.code, "ScalingActivityInProgress");
    // Without HonorCooldown it runs; and stops at max.
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "big"),
            ("AdjustmentType", "ExactCapacity"),
            ("ScalingAdjustment", "50"),
        ],
    )
    .unwrap();
    call(
        &f,
        &c,
        &p,
        "ExecutePolicy",
        &[("AutoScalingGroupName", "g"), ("PolicyName", "big")],
    )
    .unwrap();
    assert_eq!(f.group(&caller(), "g").unwrap().desired, 10);

    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "step"),
            ("PolicyType", "StepScaling"),
            ("AdjustmentType", "ChangeInCapacity"),
            ("StepAdjustments.member.1.MetricIntervalUpperBound", "0"),
            ("StepAdjustments.member.1.ScalingAdjustment", "-1"),
            ("StepAdjustments.member.2.MetricIntervalLowerBound", "0"),
            ("StepAdjustments.member.2.MetricIntervalUpperBound", "20"),
            ("StepAdjustments.member.2.ScalingAdjustment", "1"),
            ("StepAdjustments.member.3.MetricIntervalLowerBound", "20"),
            ("StepAdjustments.member.3.ScalingAdjustment", "3"),
        ],
    )
    .unwrap();
    let d = call(
        &f,
        &c,
        &p,
        "DescribePolicies",
        &[("PolicyNames.member.1", "step")],
    )
    .unwrap()
    .unwrap();
    assert!(d.contains("<StepAdjustments><member><MetricIntervalUpperBound>0</MetricIntervalUpperBound><ScalingAdjustment>-1</ScalingAdjustment></member>"));
    assert!(d.contains("<MetricAggregationType>Average</MetricAggregationType>"));
    assert!(
        call(
            &f,
            &c,
            &p,
            "ExecutePolicy",
            &[("AutoScalingGroupName", "g"), ("PolicyName", "step")]
        )
        .unwrap_err()
        .message
        .contains("MetricValue")
    );
    call(
        &f,
        &c,
        &p,
        "ExecutePolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "step"),
            ("MetricValue", "40"),
            ("BreachThreshold", "50"),
        ],
    )
    .unwrap();
    assert_eq!(f.group(&caller(), "g").unwrap().desired, 9);
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "tt"),
            ("PolicyType", "TargetTrackingScaling"),
            ("TargetTrackingConfiguration.TargetValue", "5"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ASGAverageCPUUtilization",
            ),
        ],
    )
    .unwrap();
    assert!(
        call(
            &f,
            &c,
            &p,
            "ExecutePolicy",
            &[("AutoScalingGroupName", "g"), ("PolicyName", "tt")]
        )
        .unwrap_err()
        .message
        .contains("SimpleScaling and StepScaling")
    );
}

#[test]
fn target_tracking_scales_out_on_cpu() {
    let (f, c, p) = setup(2);
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "cpu"),
            ("PolicyType", "TargetTrackingScaling"),
            ("TargetTrackingConfiguration.TargetValue", "40"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ASGAverageCPUUtilization",
            ),
        ],
    )
    .unwrap();
    let busy = |secs: f64| {
        for i in 0..2 {
            f.cpu.borrow_mut().insert(
                format!("i-{i}"),
                CpuSample {
                    busy_seconds: secs,
                    vcpus: 1,
                },
            );
        }
    };
    let t0 = 1_000_000;
    busy(0.0);
    p.tick(&f, &c, t0);
    // 80% busy: 8 s of CPU per 10 s period.
    busy(8.0);
    p.tick(&f, &c, t0 + 10_000);
    assert_eq!(
        f.group(&caller(), "g").unwrap().desired,
        2,
        "one period is not enough"
    );
    busy(16.0);
    p.tick(&f, &c, t0 + 20_000);
    // ceil(2 × 80 / 40) = 4.
    assert_eq!(f.group(&caller(), "g").unwrap().desired, 4);
    let cause = f.causes.borrow()[0].clone();
    assert!(
        cause.contains("a monitor alarm TargetTracking-g-AlarmHigh-"),
        "{cause}"
    );
    assert!(
        cause.ends_with("triggered policy cpu changing the desired capacity from 2 to 4."),
        "{cause}"
    );
}

#[test]
fn target_tracking_scales_in_on_idle_alb() {
    let (f, c, p) = setup(4);
    f.requests.borrow_mut().insert(TG.into(), 0);
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "rps"),
            ("PolicyType", "TargetTrackingScaling"),
            ("TargetTrackingConfiguration.TargetValue", "100"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ALBRequestCountPerTarget",
            ),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.ResourceLabel",
                LABEL,
            ),
        ],
    )
    .unwrap();
    let t0 = 1_000_000;
    p.tick(&f, &c, t0);
    for k in 1..=2 {
        p.tick(&f, &c, t0 + k * 10_000);
        assert_eq!(f.group(&caller(), "g").unwrap().desired, 4);
    }
    p.tick(&f, &c, t0 + 30_000);
    assert_eq!(
        f.group(&caller(), "g").unwrap().desired,
        1,
        "idle: down to min after 3 periods"
    );
    // Load: 50 requests per 10 s = 300/min over 1 instance → ceil(1 × 300 / 100) = 3.
    f.groups.borrow_mut()[0].instances.truncate(1);
    let mut n = 0;
    for k in 4..=5 {
        n += 50;
        f.requests.borrow_mut().insert(TG.into(), n);
        p.tick(&f, &c, t0 + k * 10_000);
    }
    assert_eq!(f.group(&caller(), "g").unwrap().desired, 3);
}

#[test]
fn deleting_a_group_drops_its_policies_and_actions() {
    let (f, c, p) = setup(1);
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "up"),
            ("AdjustmentType", "ChangeInCapacity"),
            ("ScalingAdjustment", "1"),
        ],
    )
    .unwrap();
    call(
        &f,
        &c,
        &p,
        "PutScheduledUpdateGroupAction",
        &[
            ("AutoScalingGroupName", "g"),
            ("ScheduledActionName", "n"),
            ("Recurrence", "0 2 * * *"),
            ("MaxSize", "5"),
        ],
    )
    .unwrap();
    // A group of the same name but another ARN does not inherit them.
    f.groups.borrow_mut()[0].arn = "arn:other".into();
    p.tick(&f, &c, catalog::now_ms());
    assert!(
        c.resources_of_kind(super::model::POLICY_KIND)
            .unwrap()
            .is_empty()
    );
    assert!(
        c.resources_of_kind(crate::scheduled::SCHEDULED_KIND)
            .unwrap()
            .is_empty()
    );
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "up"),
            ("AdjustmentType", "ChangeInCapacity"),
            ("ScalingAdjustment", "1"),
        ],
    )
    .unwrap();
    p.tick(&f, &c, catalog::now_ms());
    assert_eq!(
        c.resources_of_kind(super::model::POLICY_KIND)
            .unwrap()
            .len(),
        1,
        "kept while its group exists"
    );
    f.groups.borrow_mut().clear();
    p.tick(&f, &c, catalog::now_ms());
    assert!(
        c.resources_of_kind(super::model::POLICY_KIND)
            .unwrap()
            .is_empty()
    );
}
