//! Engine-level tests of the VPC layer: default VPC creation under concurrency, the
//! functions the instance layer calls, and what instances change (addresses in use,
//! interfaces, dependencies).

use std::sync::Arc;

use catalog::{ResourceRow, now_ms};

use crate::instances::InstanceDoc;
use crate::network::{GroupRef, InstanceNetwork};
use crate::query::{Filter, Page};
use crate::vpc::{IpPermission, PermissionSource};
use crate::{Caller, Cloud, DataDir};

fn cloud() -> (tempfile::TempDir, Arc<Cloud>, Caller) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(&dir.path().join("data"), true).unwrap();
    let cloud = Cloud::open(data, &["us-east-1".to_string()]).unwrap();
    let (account_id, _, _) = cloud.create_account("t", None, None).unwrap();
    let caller = Caller {
        account_id,
        region: "us-east-1".into(),
    };
    (dir, cloud, caller)
}

fn none() -> (Vec<Filter>, Page) {
    (Vec::new(), Page::default())
}

fn ssh() -> IpPermission {
    IpPermission {
        protocol: "tcp".into(),
        from_port: Some(22),
        to_port: Some(22),
        sources: vec![(PermissionSource::Cidr("0.0.0.0/0".into()), None)],
    }
}

/// Inserts a running instance placed by `launch_placement`.
fn add_instance(cloud: &Cloud, caller: &Caller, subnet: Option<&str>, ip: &str) -> String {
    let placement = cloud
        .launch_placement(caller, subnet, None, &[], &[])
        .unwrap();
    let id = crate::ids::new_id("i");
    let doc = InstanceDoc {
        availability_zone: placement.zone.clone(),
        private_ip: ip.into(),
        network: Some(InstanceNetwork {
            vpc_id: placement.vpc_id,
            subnet_id: placement.subnet_id,
            subnet_cidr: placement.subnet_cidr,
            interface_id: crate::ids::new_id("eni"),
            attachment_id: crate::ids::new_id("eni-attach"),
            mac: "02:00:00:00:00:01".into(),
            public_ip: Some("127.0.0.5".into()),
            elastic: None,
            associate_public_ip: true,
            groups: placement.groups,
            source_dest_check: true,
        }),
        ..InstanceDoc::default()
    };
    cloud
        .catalog
        .insert_resource(&ResourceRow {
            id: id.clone(),
            kind: crate::instances::KIND.into(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            state: "running".into(),
            doc: serde_json::to_string(&doc).unwrap(),
            created_at_ms: now_ms(),
        })
        .unwrap();
    id
}

#[test]
fn concurrent_first_calls_create_one_default_vpc() {
    let (_dir, cloud, caller) = cloud();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let cloud = Arc::clone(&cloud);
            let caller = caller.clone();
            std::thread::spawn(move || {
                let (f, p) = none();
                if i % 2 == 0 {
                    cloud.describe_vpcs(&caller, &[], &f, &p).map(|_| ())
                } else {
                    cloud
                        .launch_placement(&caller, None, None, &[], &[])
                        .map(|_| ())
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let (f, p) = none();
    assert_eq!(
        cloud.describe_vpcs(&caller, &[], &f, &p).unwrap().0.len(),
        1
    );
    assert_eq!(
        cloud
            .describe_subnets(&caller, &[], &f, &p)
            .unwrap()
            .0
            .len(),
        3
    );
    let groups = cloud
        .describe_security_groups(&caller, &[], &[], &f, &p)
        .unwrap()
        .0;
    assert_eq!(groups.len(), 1);
}

#[test]
fn launch_placement_defaults_and_errors() {
    let (_dir, cloud, caller) = cloud();
    let p = cloud
        .launch_placement(&caller, None, None, &[], &[])
        .unwrap();
    assert_eq!(p.zone, "us-east-1a");
    assert_eq!(p.subnet_cidr, "172.31.0.0/20");
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.groups[0].name, "default");
    assert_eq!(cloud.vpc_cidr(&p.vpc_id).unwrap(), "172.31.0.0/16");

    let b = cloud
        .launch_placement(&caller, None, Some("us-east-1b"), &[], &[])
        .unwrap();
    assert_eq!(b.subnet_cidr, "172.31.16.0/20");
    let err = cloud
        .launch_placement(&caller, Some(&p.subnet_id), Some("us-east-1b"), &[], &[])
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameterValue");
    let err = cloud
        .launch_placement(&caller, Some("subnet-0123456789abcdef0"), None, &[], &[])
        .unwrap_err();
    assert_eq!(err.code, "InvalidSubnetID.NotFound");

    let web = cloud
        .create_security_group(&caller, "web", "web", None, &[])
        .unwrap();
    let named = cloud
        .launch_placement(&caller, None, None, &[], &["web".into(), "default".into()])
        .unwrap();
    assert_eq!(
        named
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["web", "default"]
    );
    let by_id = cloud
        .launch_placement(
            &caller,
            None,
            None,
            &[web.id.clone(), web.id.clone()],
            &["web".into()],
        )
        .unwrap();
    assert_eq!(
        by_id.groups,
        [GroupRef {
            id: web.id.clone(),
            name: "web".into()
        }]
    );
    let err = cloud
        .launch_placement(&caller, None, None, &[], &["nope".into()])
        .unwrap_err();
    assert_eq!(err.code, "InvalidGroup.NotFound");
    let err = cloud
        .launch_placement(&caller, None, None, &["sg-0123456789abcdef0".into()], &[])
        .unwrap_err();
    assert_eq!(err.code, "InvalidGroup.NotFound");

    // A group of another VPC, and names with a subnet of a non-default VPC.
    let vpc = cloud.create_vpc(&caller, "10.5.0.0/16", None, &[]).unwrap();
    let subnet = cloud
        .create_subnet(
            &caller,
            crate::vpc::CreateSubnet {
                vpc_id: vpc.id.clone(),
                cidr_block: "10.5.1.0/24".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let err = cloud
        .launch_placement(
            &caller,
            Some(&subnet.id),
            None,
            std::slice::from_ref(&web.id),
            &[],
        )
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameter");
    let err = cloud
        .groups_in_vpc(&caller, &vpc.id, std::slice::from_ref(&web.id))
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameter");
    let err = cloud
        .launch_placement(&caller, Some(&subnet.id), None, &[], &["default".into()])
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameterCombination");
    let own = cloud
        .launch_placement(&caller, Some(&subnet.id), None, &[], &[])
        .unwrap();
    assert_eq!(own.vpc_id, vpc.id);
    assert_eq!(own.groups[0].id, vpc.doc.default_group_id);

    // Another account's subnet and groups are not found.
    let (other, _, _) = cloud.create_account("o", None, None).unwrap();
    let other = Caller {
        account_id: other,
        region: "us-east-1".into(),
    };
    let err = cloud
        .launch_placement(&other, Some(&subnet.id), None, &[], &[])
        .unwrap_err();
    assert_eq!(err.code, "InvalidSubnetID.NotFound");
    let err = cloud.groups_in_vpc(&other, &vpc.id, &[web.id]).unwrap_err();
    assert_eq!(err.code, "InvalidGroup.NotFound");
}

#[test]
fn ingress_rules_follow_authorize_and_revoke() {
    let (_dir, cloud, caller) = cloud();
    let g = cloud
        .create_security_group(&caller, "ssh", "ssh", None, &[])
        .unwrap();
    assert!(
        cloud
            .ingress_rules(std::slice::from_ref(&g.id))
            .unwrap()
            .is_empty()
    );
    cloud
        .authorize_security_group(&caller, Some(&g.id), None, false, &[ssh()], &[])
        .unwrap();
    let rules = cloud.ingress_rules(std::slice::from_ref(&g.id)).unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].protocol, "tcp");
    assert_eq!((rules[0].from_port, rules[0].to_port), (22, 22));
    assert_eq!(rules[0].cidrs, ["0.0.0.0/0"]);
    cloud
        .revoke_security_group(&caller, Some(&g.id), None, false, &[ssh()], &[])
        .unwrap();
    assert!(cloud.ingress_rules(&[g.id]).unwrap().is_empty());
}

#[test]
fn instances_use_addresses_and_block_deletes() {
    let (_dir, cloud, caller) = cloud();
    let instance = add_instance(&cloud, &caller, None, "172.31.0.10");
    let (f, p) = none();
    let subnets = cloud.describe_subnets(&caller, &[], &f, &p).unwrap().0;
    let a = subnets
        .iter()
        .find(|s| s.doc.availability_zone == "us-east-1a")
        .unwrap();
    assert_eq!(a.available_ip_address_count, 4090);
    let err = cloud.delete_subnet(&caller, &a.id).unwrap_err();
    assert_eq!(err.code, "DependencyViolation");

    let enis = cloud
        .describe_network_interfaces(&caller, &[], &f, &p)
        .unwrap()
        .0;
    assert_eq!(enis.len(), 1);
    assert_eq!(enis[0].instance_id, instance);
    assert_eq!(enis[0].private_dns_name, "ip-172-31-0-10.ec2.internal");
    let by_instance = vec![Filter {
        name: "attachment.instance-id".into(),
        values: vec![instance.clone()],
    }];
    assert_eq!(
        cloud
            .describe_network_interfaces(&caller, &[], &by_instance, &p)
            .unwrap()
            .0
            .len(),
        1
    );
    // The interface can be tagged, and DescribeTags shows it.
    cloud
        .create_tags(&caller, &[enis[0].id.clone()], &[("k".into(), "v".into())])
        .unwrap();
    let tags = cloud.describe_tags(&caller, &f, &p).unwrap().0;
    assert!(
        tags.iter()
            .any(|t| t.resource_id == enis[0].id && t.resource_type == "network-interface")
    );

    // The instance's group cannot be deleted.
    let web = cloud
        .create_security_group(&caller, "web", "web", None, &[])
        .unwrap();
    let mut row = cloud.catalog.resource(&instance).unwrap().unwrap();
    let mut doc: InstanceDoc = serde_json::from_str(&row.doc).unwrap();
    if let Some(n) = doc.network.as_mut() {
        n.groups.push(GroupRef {
            id: web.id.clone(),
            name: "web".into(),
        });
    }
    row.doc = serde_json::to_string(&doc).unwrap();
    cloud
        .catalog
        .update_resource(&row.id, &row.state, &row.doc)
        .unwrap();
    let err = cloud
        .delete_security_group(&caller, Some(&web.id), None)
        .unwrap_err();
    assert_eq!(err.code, "DependencyViolation");
    // Once terminated, it no longer counts.
    cloud
        .catalog
        .update_resource(&row.id, "terminated", &row.doc)
        .unwrap();
    cloud
        .delete_security_group(&caller, Some(&web.id), None)
        .unwrap();
    cloud.delete_subnet(&caller, &a.id).unwrap();
}
