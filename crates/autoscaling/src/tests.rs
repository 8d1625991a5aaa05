//! Unit tests of the group model, the termination policies, zone placement and the
//! request helpers (the controller against real instances is tested in
//! tests/integration/test_autoscaling.py).

use awsquery::Params;

use crate::AutoScaling;
use crate::controller::begin_termination;
use crate::groups::{check_sizes, matches_filters, merge_tags, paginate, split_subnets};
use crate::model::{Group, GroupTag, Member, Refresh, TemplateSpec, uuid};
use crate::termination::pick;

fn member(id: &str, zone: &str, version: &str, launched_ms: i64) -> Member {
    Member {
        id: id.into(),
        availability_zone: zone.into(),
        lifecycle: "InService".into(),
        health: "Healthy".into(),
        template: Some(TemplateSpec {
            id: "lt-1".into(),
            name: "web".into(),
            version: version.into(),
        }),
        launched_ms,
        ..Default::default()
    }
}

fn group(members: Vec<Member>) -> Group {
    Group {
        name: "g".into(),
        template: TemplateSpec {
            id: "lt-1".into(),
            name: "web".into(),
            version: "$Latest".into(),
        },
        termination_policies: vec!["Default".into()],
        placements: vec![
            ("subnet-a".into(), "us-east-1a".into()),
            ("subnet-b".into(), "us-east-1b".into()),
        ],
        instances: members,
        ..Default::default()
    }
}

#[test]
fn default_policy_picks_the_fullest_zone_then_the_oldest_version() {
    let g = group(vec![
        member("i-a1", "us-east-1a", "2", 1_000),
        member("i-a2", "us-east-1a", "1", 2_000),
        member("i-b1", "us-east-1b", "1", 500),
    ]);
    // us-east-1a has two instances; of them i-a2 runs the older version.
    assert_eq!(pick(&g, 1, Some(2), 10_000), vec!["i-a2"]);
    // Then the zones are even: the old-version one in us-east-1b goes before i-a1.
    assert_eq!(pick(&g, 2, Some(2), 10_000), vec!["i-a2", "i-b1"]);
}

#[test]
fn protected_instances_are_never_picked_and_unhealthy_ones_go_first() {
    let mut g = group(vec![
        member("i-1", "us-east-1a", "1", 1_000),
        member("i-2", "us-east-1a", "1", 2_000),
        member("i-3", "us-east-1b", "1", 3_000),
    ]);
    g.instances[0].protected = true;
    g.instances[2].health = "Unhealthy".into();
    assert_eq!(pick(&g, 3, Some(1), 10_000), vec!["i-3", "i-2"]);
}

#[test]
fn oldest_and_newest_instance_policies() {
    let mut g = group(vec![
        member("i-old", "us-east-1a", "1", 1_000),
        member("i-new", "us-east-1a", "1", 9_000),
    ]);
    g.termination_policies = vec!["OldestInstance".into()];
    assert_eq!(pick(&g, 1, Some(1), 10_000), vec!["i-old"]);
    g.termination_policies = vec!["NewestInstance".into()];
    assert_eq!(pick(&g, 1, Some(1), 10_000), vec!["i-new"]);
}

#[test]
fn launches_go_to_the_zone_with_the_fewest_instances() {
    let mut g = group(vec![member("i-1", "us-east-1a", "1", 0)]);
    let (subnet, zone) = AutoScaling::placement(&g).expect("a placement");
    assert_eq!((subnet.as_str(), zone.as_str()), ("subnet-b", "us-east-1b"));
    // Instances a refresh is replacing do not count.
    g.instances.push(member("i-2", "us-east-1b", "1", 0));
    g.instances.push(member("i-3", "us-east-1b", "1", 0));
    g.refreshes.push(Refresh {
        status: "InProgress".into(),
        pending: vec!["i-2".into(), "i-3".into()],
        ..Default::default()
    });
    assert_eq!(
        AutoScaling::placement(&g).map(|p| p.1),
        Some("us-east-1b".into())
    );
}

#[test]
fn termination_is_recorded_once_with_an_activity() {
    let mut g = group(vec![member("i-1", "us-east-1a", "1", 0)]);
    let a = begin_termination(&mut g, "i-1", "because", true, 5).expect("terminating");
    assert_eq!(a.description, "Terminating EC2 instance: i-1");
    assert_eq!(
        (a.status.as_str(), a.cause.as_str()),
        ("InProgress", "because")
    );
    assert_eq!(g.instances[0].lifecycle, "Terminating");
    assert_eq!(g.counted(), 0);
    assert!(begin_termination(&mut g, "i-1", "again", true, 6).is_none());
    assert!(begin_termination(&mut g, "i-404", "none", true, 6).is_none());
    assert_eq!(g.activities.len(), 1);
}

#[test]
fn activities_are_capped() {
    let mut g = group(Vec::new());
    for i in 0..(crate::model::MAX_ACTIVITIES + 5) {
        g.add_activity(crate::model::Activity {
            id: format!("a{i}"),
            ..Default::default()
        });
    }
    assert_eq!(g.activities.len(), crate::model::MAX_ACTIVITIES);
    assert_eq!(g.activities[0].id, "a5");
}

#[test]
fn sizes_are_checked_with_aws_messages() {
    assert!(check_sizes(0, 3, 2).is_ok());
    let e = check_sizes(4, 10, 2).expect_err("below min");
    assert_eq!(e.code, "ValidationError");
    assert_eq!(
        e.message,
        "Desired capacity:2 must be between the specified min size:4 and max size:10"
    );
    assert!(check_sizes(3, 2, 2).is_err());
}

#[test]
fn tag_filters_and_merging() {
    let mut g = group(Vec::new());
    merge_tags(
        &mut g.tags,
        vec![
            GroupTag {
                key: "team".into(),
                value: "blue".into(),
                propagate: true,
            },
            GroupTag {
                key: "env".into(),
                value: "prod".into(),
                propagate: false,
            },
        ],
    );
    merge_tags(
        &mut g.tags,
        vec![GroupTag {
            key: "team".into(),
            value: "red".into(),
            propagate: false,
        }],
    );
    assert_eq!(
        g.tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect::<Vec<_>>(),
        vec![("env", "prod"), ("team", "red")]
    );
    let f = |n: &str, v: &str| vec![(n.to_string(), vec![v.to_string()])];
    assert!(matches_filters(&g, &f("tag:team", "red")));
    assert!(!matches_filters(&g, &f("tag:team", "blue")));
    assert!(matches_filters(&g, &f("tag-key", "env")));
    assert!(matches_filters(&g, &f("tag-value", "prod")));
    assert!(!matches_filters(&g, &f("tag-value", "dev")));
}

#[test]
fn paging_with_next_tokens() {
    let items: Vec<i32> = (0..5).collect();
    let p = Params::from_pairs([("MaxRecords", "2")]);
    let (page, next) = paginate(&items, &p, 50).expect("page");
    assert_eq!((page, next.as_deref()), (vec![0, 1], Some("2")));
    let p = Params::from_pairs([("MaxRecords", "2"), ("NextToken", "4")]);
    assert_eq!(paginate(&items, &p, 50).expect("last"), (vec![4], None));
    let p = Params::from_pairs([("NextToken", "x")]);
    assert_eq!(
        paginate(&items, &p, 50).expect_err("bad token").code,
        "InvalidNextToken"
    );
}

#[test]
fn subnets_and_uuids() {
    assert_eq!(
        split_subnets("subnet-a, subnet-b,,"),
        vec!["subnet-a", "subnet-b"]
    );
    let u = uuid();
    assert_eq!(u.len(), 36);
    assert_eq!(u.as_bytes()[14], b'4');
    assert_ne!(uuid(), u);
}
