//! Tests of the scheduled-action operations and their runs, against the in-memory group
//! core of the policies' tests.

use engine::instances::CpuSample;

use crate::policies::GroupAccess;
use crate::policies::tests::{call, caller, setup};

#[test]
fn scheduled_actions() {
    let (f, c, p) = setup(1);
    let now = catalog::now_ms();
    let past = engine::query::iso8601(now - 60_000);
    let soon = engine::query::iso8601(now + 2_000);
    let e = call(
        &f,
        &c,
        &p,
        "PutScheduledUpdateGroupAction",
        &[
            ("AutoScalingGroupName", "g"),
            ("ScheduledActionName", "a"),
            ("StartTime", &past),
            ("DesiredCapacity", "2"),
        ],
    )
    .unwrap_err();
    assert_eq!(e.message, "Given start time is in the past");
    assert!(
        call(
            &f,
            &c,
            &p,
            "PutScheduledUpdateGroupAction",
            &[
                ("AutoScalingGroupName", "g"),
                ("ScheduledActionName", "a"),
                ("StartTime", &soon)
            ]
        )
        .is_err(),
        "no sizes"
    );
    assert!(
        call(
            &f,
            &c,
            &p,
            "PutScheduledUpdateGroupAction",
            &[
                ("AutoScalingGroupName", "g"),
                ("ScheduledActionName", "a"),
                ("Recurrence", "* * *"),
                ("MinSize", "1")
            ]
        )
        .is_err()
    );
    assert!(
        call(
            &f,
            &c,
            &p,
            "PutScheduledUpdateGroupAction",
            &[
                ("AutoScalingGroupName", "g"),
                ("ScheduledActionName", "a"),
                ("Recurrence", "0 9 * * *"),
                ("TimeZone", "Europe/Paris"),
                ("MinSize", "1")
            ]
        )
        .unwrap_err()
        .message
        .contains("not supported")
    );
    call(
        &f,
        &c,
        &p,
        "PutScheduledUpdateGroupAction",
        &[
            ("AutoScalingGroupName", "g"),
            ("ScheduledActionName", "once"),
            ("StartTime", &soon),
            ("MinSize", "2"),
            ("DesiredCapacity", "3"),
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
            ("ScheduledActionName", "nightly"),
            ("Recurrence", "0 2 * * *"),
            ("MaxSize", "5"),
        ],
    )
    .unwrap();
    let d = call(
        &f,
        &c,
        &p,
        "DescribeScheduledActions",
        &[("AutoScalingGroupName", "g")],
    )
    .unwrap()
    .unwrap();
    assert!(
        d.contains("<ScheduledActionName>nightly</ScheduledActionName>")
            && d.contains("<Recurrence>0 2 * * *</Recurrence>")
    );
    assert!(d.contains(":scheduledUpdateGroupAction:") && d.contains("T02:00:00.000Z</StartTime>"));
    // Updating keeps unspecified fields.
    call(
        &f,
        &c,
        &p,
        "PutScheduledUpdateGroupAction",
        &[
            ("AutoScalingGroupName", "g"),
            ("ScheduledActionName", "nightly"),
            ("MinSize", "0"),
        ],
    )
    .unwrap();
    let d = call(
        &f,
        &c,
        &p,
        "DescribeScheduledActions",
        &[("ScheduledActionNames.member.1", "nightly")],
    )
    .unwrap()
    .unwrap();
    assert!(d.contains("<MinSize>0</MinSize><MaxSize>5</MaxSize>") && d.contains("<Recurrence>"));

    p.tick(&f, &c, now);
    assert_eq!(f.group(&caller(), "g").unwrap().desired, 1, "not yet due");
    p.tick(&f, &c, now + 2_000);
    let g = f.group(&caller(), "g").unwrap();
    assert_eq!((g.min, g.desired), (2, 3));
    assert!(f.causes.borrow()[0].contains("a scheduled action update of AutoScalingGroup constraints to min: 2, max: 10, desired: 3 changing the desired capacity from 1 to 3."));
    let d = call(&f, &c, &p, "DescribeScheduledActions", &[])
        .unwrap()
        .unwrap();
    assert!(
        !d.contains(">once<"),
        "one-time actions are deleted after running"
    );

    let b = call(
        &f,
        &c,
        &p,
        "BatchDeleteScheduledAction",
        &[
            ("AutoScalingGroupName", "g"),
            ("ScheduledActionNames.member.1", "nightly"),
            ("ScheduledActionNames.member.2", "ghost"),
        ],
    )
    .unwrap()
    .unwrap();
    assert!(
        b.contains(
            "<ScheduledActionName>ghost</ScheduledActionName><ErrorCode>ValidationError</ErrorCode>"
        ) && !b.contains(">nightly<")
    );
    let b = call(
        &f,
        &c,
        &p,
        "BatchPutScheduledUpdateGroupAction",
        &[
            ("AutoScalingGroupName", "g"),
            (
                "ScheduledUpdateGroupActions.member.1.ScheduledActionName",
                "ok",
            ),
            (
                "ScheduledUpdateGroupActions.member.1.Recurrence",
                "*/5 * * * *",
            ),
            ("ScheduledUpdateGroupActions.member.1.DesiredCapacity", "2"),
            (
                "ScheduledUpdateGroupActions.member.2.ScheduledActionName",
                "bad",
            ),
            ("ScheduledUpdateGroupActions.member.2.StartTime", &past),
            ("ScheduledUpdateGroupActions.member.2.DesiredCapacity", "2"),
        ],
    )
    .unwrap()
    .unwrap();
    assert!(b.contains(
        "<FailedScheduledUpdateGroupActions><member><ScheduledActionName>bad</ScheduledActionName>"
    ));
    call(
        &f,
        &c,
        &p,
        "DeleteScheduledAction",
        &[("AutoScalingGroupName", "g"), ("ScheduledActionName", "ok")],
    )
    .unwrap();
    assert!(
        call(
            &f,
            &c,
            &p,
            "DeleteScheduledAction",
            &[("AutoScalingGroupName", "g"), ("ScheduledActionName", "ok")]
        )
        .unwrap_err()
        .message
        .contains("not found")
    );
}

#[test]
fn suspended_processes_hold_actions_and_alarms() {
    let (f, c, p) = setup(2);
    f.groups.borrow_mut()[0].suspended_processes =
        vec!["ScheduledActions".into(), "AlarmNotification".into()];
    let soon = engine::query::iso8601(catalog::now_ms() + 1_000);
    call(
        &f,
        &c,
        &p,
        "PutScheduledUpdateGroupAction",
        &[
            ("AutoScalingGroupName", "g"),
            ("ScheduledActionName", "s"),
            ("StartTime", &soon),
            ("DesiredCapacity", "5"),
        ],
    )
    .unwrap();
    call(
        &f,
        &c,
        &p,
        "PutScalingPolicy",
        &[
            ("AutoScalingGroupName", "g"),
            ("PolicyName", "cpu"),
            ("PolicyType", "TargetTrackingScaling"),
            ("TargetTrackingConfiguration.TargetValue", "10"),
            (
                "TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
                "ASGAverageCPUUtilization",
            ),
        ],
    )
    .unwrap();
    let t0 = catalog::now_ms() + 2_000;
    for k in 0..5 {
        for i in 0..2 {
            f.cpu.borrow_mut().insert(
                format!("i-{i}"),
                CpuSample {
                    busy_seconds: k as f64 * 10.0,
                    vcpus: 1,
                },
            );
        }
        p.tick(&f, &c, t0 + k * 10_000);
    }
    assert_eq!(f.group(&caller(), "g").unwrap().desired, 2, "nothing ran");
    assert!(f.causes.borrow().is_empty());
    // The skipped one-time action is gone, as on AWS.
    let d = call(&f, &c, &p, "DescribeScheduledActions", &[])
        .unwrap()
        .unwrap();
    assert!(!d.contains("<ScheduledActionName>s<"));
    let types = call(&f, &c, &p, "DescribeMetricCollectionTypes", &[])
        .unwrap()
        .unwrap();
    assert!(
        types.contains("<member><Metric>GroupMinSize</Metric></member>")
            && types.contains("<Granularity>1Minute</Granularity>")
    );
}
