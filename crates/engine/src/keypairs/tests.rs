//! Key pairs through the engine: names, lookups, filters, tags, deletion, isolation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::*;
use crate::DataDir;
use crate::query::Filter;

const ED_PUB: &str = include_str!("testdata/ed.pub");
const RSA_PUB: &str = include_str!("testdata/rsa.pub");

fn cloud() -> (tempfile::TempDir, Arc<Cloud>) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path(), true).unwrap();
    let cloud = Cloud::open(data, &["us-east-1".to_string(), "eu-west-1".to_string()]).unwrap();
    (dir, cloud)
}

fn caller(account: &str, region: &str) -> Caller {
    Caller {
        account_id: account.into(),
        region: region.into(),
    }
}

fn import(cloud: &Cloud, who: &Caller, name: &str, material: &str) -> Ec2Result<KeyPairView> {
    cloud.import_key_pair(
        who,
        ImportKeyPair {
            key_name: name.into(),
            public_key_material: material.as_bytes().to_vec(),
            tag_specifications: Vec::new(),
        },
    )
}

#[test]
fn import_describe_delete() {
    let (_dir, cloud) = cloud();
    let alice = caller("111111111111", "us-east-1");
    let k = import(&cloud, &alice, "ed", ED_PUB).unwrap();
    assert!(ids::is_valid("key", &k.id), "{}", k.id);
    assert_eq!(k.doc.key_type, "ed25519");
    let dup = import(&cloud, &alice, "ed", RSA_PUB).unwrap_err();
    assert_eq!(dup.code, "InvalidKeyPair.Duplicate");

    import(&cloud, &alice, "rsa", RSA_PUB).unwrap();
    let all = cloud
        .describe_key_pairs(&alice, &DescribeKeyPairs::default())
        .unwrap();
    assert_eq!(all.len(), 2);
    let by_type = cloud
        .describe_key_pairs(
            &alice,
            &DescribeKeyPairs {
                filters: vec![Filter {
                    name: "key-type".into(),
                    values: vec!["rsa".into()],
                }],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(by_type.len(), 1);
    assert_eq!(by_type[0].doc.key_name, "rsa");

    let missing = cloud
        .describe_key_pairs(
            &alice,
            &DescribeKeyPairs {
                key_names: vec!["nope".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(missing.code, "InvalidKeyPair.NotFound");
    assert_eq!(missing.message, "The key pair 'nope' does not exist");

    let launch = cloud.launch_key(&alice, "ed").unwrap();
    let mut fields = ED_PUB.split_whitespace();
    assert_eq!(
        launch.public_key,
        format!("{} {} ed", fields.next().unwrap(), fields.next().unwrap())
    );

    assert_eq!(
        cloud.delete_key_pair(&alice, Some("ed"), None).unwrap(),
        Some(k.id.clone())
    );
    assert_eq!(
        cloud.delete_key_pair(&alice, Some("ed"), None).unwrap(),
        None
    );
    assert_eq!(
        cloud
            .delete_key_pair(&alice, None, Some(&k.id))
            .unwrap_err()
            .code,
        "InvalidKeyPair.NotFound"
    );
    assert_eq!(
        cloud.launch_key(&alice, "ed").unwrap_err().code,
        "InvalidKeyPair.NotFound"
    );
}

#[test]
fn names_are_per_account_and_region() {
    let (_dir, cloud) = cloud();
    let alice = caller("111111111111", "us-east-1");
    let bob = caller("222222222222", "us-east-1");
    let alice_eu = caller("111111111111", "eu-west-1");
    let k = import(&cloud, &alice, "same", ED_PUB).unwrap();
    import(&cloud, &bob, "same", ED_PUB).unwrap();
    import(&cloud, &alice_eu, "same", ED_PUB).unwrap();
    for other in [&bob, &alice_eu] {
        let found = cloud
            .describe_key_pairs(other, &DescribeKeyPairs::default())
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_ne!(found[0].id, k.id);
        let err = cloud
            .describe_key_pairs(
                other,
                &DescribeKeyPairs {
                    key_pair_ids: vec![k.id.clone()],
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.code, "InvalidKeyPair.NotFound");
    }
}

#[test]
fn names_and_material_are_checked() {
    let (_dir, cloud) = cloud();
    let alice = caller("111111111111", "us-east-1");
    assert_eq!(
        import(&cloud, &alice, &"x".repeat(256), ED_PUB)
            .unwrap_err()
            .code,
        "InvalidParameterValue"
    );
    assert_eq!(
        import(&cloud, &alice, "café", ED_PUB).unwrap_err().code,
        "InvalidParameterValue"
    );
    import(&cloud, &alice, &"x".repeat(255), ED_PUB).unwrap();
    let bad = import(&cloud, &alice, "bad", "ssh-rsa notbase64").unwrap_err();
    assert_eq!(bad.code, "InvalidKey.Format");
    assert_eq!(bad.message, "Key is not in valid OpenSSH public key format");
    let tagged = cloud.import_key_pair(
        &alice,
        ImportKeyPair {
            key_name: "tagged".into(),
            public_key_material: ED_PUB.as_bytes().to_vec(),
            tag_specifications: vec![TagSpecification {
                resource_type: "volume".into(),
                tags: vec![("a".into(), "b".into())],
            }],
        },
    );
    assert_eq!(tagged.unwrap_err().code, "InvalidParameterValue");
    assert_eq!(
        cloud
            .describe_key_pairs(&alice, &DescribeKeyPairs::default())
            .unwrap()
            .len(),
        1,
        "failed imports left nothing behind"
    );
}
