//! Tests of the catalog import: parsing, validation, conversion and catalog writes.

use serde_json::json;

use super::*;
use crate::images::{MappingTarget, ProductCode};
use crate::snapshots::SnapshotDoc;

const AMAZON: &str = "137112412989";
const AL2023_OLD: &str = "ami-0aaaaaaaaaaaaaaa1";
const AL2023_NEW: &str = "ami-0aaaaaaaaaaaaaaa2";

/// An entry as `aws ec2 describe-images --owners amazon` prints it (trimmed), with a
/// field openami does not know.
fn al2023(id: &str, version: &str, created: &str) -> serde_json::Value {
    json!({
        "Architecture": "x86_64",
        "CreationDate": created,
        "ImageId": id,
        "ImageLocation": format!("amazon/al2023-ami-{version}-kernel-6.1-x86_64"),
        "ImageType": "machine",
        "Public": true,
        "OwnerId": AMAZON,
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "State": "available",
        "BlockDeviceMappings": [{
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "DeleteOnTermination": true, "Iops": 3000, "SnapshotId": "snap-0123456789abcdef0",
                "VolumeSize": 8, "VolumeType": "gp3", "Throughput": 125, "Encrypted": false
            }
        }],
        "Description": format!("Amazon Linux 2023 AMI {version} x86_64 HVM kernel-6.1"),
        "EnaSupport": true,
        "Hypervisor": "xen",
        "ImageOwnerAlias": "amazon",
        "Name": format!("al2023-ami-{version}-kernel-6.1-x86_64"),
        "RootDeviceName": "/dev/xvda",
        "RootDeviceType": "ebs",
        "SriovNetSupport": "simple",
        "VirtualizationType": "hvm",
        "BootMode": "uefi-preferred",
        "DeprecationTime": "2027-01-27T23:05:00.000Z",
        "ImdsSupport": "v2.0",
        "SourceInstanceId": "i-0123456789abcdef0"
    })
}

fn marketplace() -> serde_json::Value {
    json!({
        "ImageId": "ami-0bbbbbbbbbbbbbbb1",
        "Name": "vendor-appliance-1.2 (x86)",
        "OwnerId": "679593333241",
        "ImageOwnerAlias": "aws-marketplace",
        "ProductCodes": [{"ProductCodeId": "abcdefghijklmnopqrstu1234", "ProductCodeType": "marketplace"}],
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-0123456789abcdef1", "VolumeSize": 20, "VolumeType": "gp2"}},
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
            {"DeviceName": "/dev/sdc", "NoDevice": ""}
        ],
        "Platform": "windows",
        "Tags": [{"Key": "tier", "Value": "gold"}]
    })
}

fn input(images: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Images": images })).unwrap()
}

fn one(v: serde_json::Value) -> Result<Prepared, Ec2Error> {
    let entry = parse_input(&input(&[v])).unwrap().remove(0);
    prepare(entry.image.unwrap(), &ImportOptions::default(), None)
}

fn error_of(v: serde_json::Value) -> (String, String) {
    let e = one(v).unwrap_err();
    (e.code, e.message)
}

#[test]
fn parses_both_shapes_and_ignores_unknown_fields() {
    let wrapped = parse_input(&input(&[al2023(
        AL2023_OLD,
        "1",
        "2024-01-01T00:00:00.000Z",
    )]));
    let wrapped = wrapped.unwrap();
    assert_eq!(wrapped.len(), 1);
    let image = wrapped[0].image.clone().unwrap();
    assert_eq!(image.owner_id.as_deref(), Some(AMAZON));
    assert_eq!(
        image.block_device_mappings.unwrap()[0]
            .ebs
            .clone()
            .unwrap()
            .iops,
        Some(3000)
    );
    let bare = serde_json::to_vec(&json!([marketplace()])).unwrap();
    assert_eq!(parse_input(&bare).unwrap().len(), 1);
    assert!(matches!(
        parse_input(b"{\"Images\": 3}"),
        Err(ImportError::Shape)
    ));
    assert!(matches!(parse_input(b"\"x\""), Err(ImportError::Shape)));
    assert!(matches!(parse_input(b"{"), Err(ImportError::Json(_))));
    assert!(matches!(
        parse_input(&vec![b' '; MAX_INPUT_BYTES + 1]),
        Err(ImportError::TooLarge(_))
    ));
}

#[test]
fn type_errors_name_the_field() {
    let mut v = al2023(AL2023_OLD, "1", "2024-01-01T00:00:00Z");
    v["EnaSupport"] = json!("yes");
    let entries = parse_input(&input(&[v, json!(7)])).unwrap();
    assert_eq!(entries[0].image_id.as_deref(), Some(AL2023_OLD));
    let message = entries[0].image.clone().unwrap_err();
    assert!(
        message.starts_with("field EnaSupport: invalid type"),
        "{message}"
    );
    assert!(entries[1].image.is_err());
    assert_eq!(entries[1].image_id, None);
}

#[test]
fn converts_quick_start_image() {
    let p = one(al2023(AL2023_NEW, "2023.6.1", "2024-12-12T20:35:27.000Z")).unwrap();
    assert_eq!((p.id.as_str(), p.owner_id.as_str()), (AL2023_NEW, AMAZON));
    assert_eq!((p.state.as_str(), p.public), ("available", true));
    let d = &p.doc;
    assert_eq!(d.name, "al2023-ami-2023.6.1-kernel-6.1-x86_64");
    assert_eq!(d.owner_alias.as_deref(), Some("amazon"));
    assert_eq!(
        (d.image_type.as_str(), d.root_device_type.as_str()),
        ("machine", "ebs")
    );
    assert_eq!(d.creation_ms, 1_734_035_727_000);
    assert_eq!(d.deprecation_ms, Some(1_801_091_100_000));
    assert_eq!(d.boot_mode.as_deref(), Some("uefi-preferred"));
    assert_eq!(
        d.image_location,
        "amazon/al2023-ami-2023.6.1-kernel-6.1-x86_64"
    );
    let ebs = d.block_device_mappings[0].ebs().unwrap();
    assert_eq!(ebs.snapshot_id.as_deref(), Some("snap-0123456789abcdef0"));
    assert_eq!(
        (ebs.volume_size_gib, ebs.iops, ebs.throughput),
        (8, Some(3000), Some(125))
    );
}

#[test]
fn converts_marketplace_image_with_defaults() {
    let p = one(marketplace()).unwrap();
    let d = &p.doc;
    assert_eq!(
        d.product_codes,
        [ProductCode {
            id: "abcdefghijklmnopqrstu1234".into(),
            kind: "marketplace".into()
        }]
    );
    assert_eq!(
        (d.architecture.as_str(), d.virtualization_type.as_str()),
        ("x86_64", "hvm")
    );
    assert_eq!(d.platform.as_deref(), Some("windows"));
    assert_eq!(
        (d.platform_details.as_str(), d.usage_operation.as_str()),
        ("Windows", "RunInstances:0002")
    );
    assert_eq!(
        d.image_location,
        "aws-marketplace/vendor-appliance-1.2 (x86)"
    );
    assert_eq!(
        d.block_device_mappings[1].target,
        MappingTarget::Ephemeral("ephemeral0".into())
    );
    assert_eq!(d.block_device_mappings[2].target, MappingTarget::NoDevice);
    assert_eq!(d.block_device_mappings[0].ebs().unwrap().volume_type, "gp2");
    assert_eq!(p.tags, [("tier".to_string(), "gold".to_string())]);
    assert!(p.public, "Public defaults to true");
}

#[test]
fn kernel_images_and_owner_choices() {
    let kernel = json!({"ImageId": "aki-1234abcd", "Name": "pv-grub-hd0_1.05-x86_64.gz",
        "RootDeviceType": "instance-store", "OwnerId": AMAZON, "Public": false});
    let p = one(kernel.clone()).unwrap();
    assert_eq!((p.doc.image_type.as_str(), p.public), ("kernel", false));
    let mut wrong = kernel.clone();
    wrong["ImageType"] = json!("machine");
    assert!(error_of(wrong).1.contains("does not match"));
    // The flags win over the entry; without a usable OwnerId the flag is required.
    let opts = ImportOptions {
        owner_id: Some("111122223333".into()),
        owner_alias: Some("acme".into()),
        private: true,
        ..ImportOptions::default()
    };
    let mut no_owner = kernel;
    no_owner["OwnerId"] = json!("amazon");
    let entry = parse_input(&input(&[no_owner.clone()])).unwrap().remove(0);
    let p = prepare(entry.image.unwrap(), &opts, None).unwrap();
    assert_eq!(
        (p.owner_id.as_str(), p.doc.owner_alias.as_deref()),
        ("111122223333", Some("acme"))
    );
    assert!(!p.public);
    assert!(error_of(no_owner).1.contains("--owner-id"));
}

#[test]
fn rejects_bad_entries() {
    let base = || al2023(AL2023_OLD, "1", "2024-01-01T00:00:00Z");
    let with = |field: &str, value: serde_json::Value| {
        let mut v = base();
        v[field] = value;
        error_of(v)
    };
    assert_eq!(
        with("ImageId", json!("ami-XYZ")).0,
        "InvalidAMIID.Malformed"
    );
    assert_eq!(
        with("ImageId", json!("snap-0123456789abcdef0")).0,
        "InvalidAMIID.Malformed"
    );
    assert_eq!(with("Name", json!("no#pe")).0, "InvalidAMIName.Malformed");
    assert_eq!(
        with("Architecture", json!("sparc")).0,
        "InvalidParameterValue"
    );
    assert_eq!(with("BootMode", json!("bios")).0, "InvalidParameterValue");
    assert!(
        with("CreationDate", json!("yesterday"))
            .1
            .contains("CreationDate")
    );
    assert!(with("State", json!("pending")).1.contains("only available"));
    assert!(
        with("UsageOperation", json!("Free"))
            .1
            .contains("UsageOperation")
    );
    assert!(
        with("KernelId", json!("ami-1234abcd"))
            .1
            .contains("KernelId")
    );
    assert!(
        with("ImageOwnerAlias", json!("Amazon"))
            .1
            .contains("ImageOwnerAlias")
    );
    assert_eq!(
        with("Tags", json!([{"Key": "aws:x", "Value": "1"}])).0,
        "InvalidParameterValue"
    );
    let productless = with("ProductCodes", json!([{"ProductCodeId": "a-b"}]));
    assert!(productless.1.contains("product code"), "{productless:?}");
    let mapping = |ebs: serde_json::Value| {
        with(
            "BlockDeviceMappings",
            json!([{"DeviceName": "/dev/xvda", "Ebs": ebs}]),
        )
    };
    assert!(
        mapping(json!({"SnapshotId": "snap-0123456789abcdef0"}))
            .1
            .contains("VolumeSize")
    );
    assert_eq!(
        mapping(json!({"SnapshotId": "snap-nope", "VolumeSize": 8})).0,
        "InvalidSnapshotID.Malformed"
    );
    assert_eq!(
        mapping(json!({"SnapshotId": "snap-0123456789abcdef0", "VolumeSize": 999_999})).0,
        "InvalidBlockDeviceMapping"
    );
    assert_eq!(
        mapping(json!({"VolumeSize": 8})).0,
        "InvalidBlockDeviceMapping"
    );
    let mut no_root = base();
    no_root.as_object_mut().unwrap().remove("RootDeviceName");
    assert_eq!(error_of(no_root).0, "MissingParameter");
}

fn snapshot(c: &Catalog, id: &str, owner: &str, state: &str) {
    let doc = SnapshotDoc {
        volume_id: "vol-ffffffff".into(),
        volume_size_gib: 2,
        description: String::new(),
        progress: 100,
        start_time_ms: 0,
        completion_time_ms: Some(0),
        state_message: None,
        encrypted: false,
        source: None,
        upload: None,
        node: None,
    };
    c.insert_resource(&ResourceRow {
        id: id.into(),
        kind: snapshots::KIND.into(),
        account_id: owner.into(),
        region: "us-east-1".into(),
        state: state.into(),
        doc: snapshots::encode(&doc).unwrap(),
        created_at_ms: 0,
    })
    .unwrap();
}

#[test]
fn imports_into_the_catalog() {
    let c = Catalog::in_memory().unwrap();
    let file = input(&[
        al2023(AL2023_OLD, "2023.5.1", "2024-06-01T00:00:00Z"),
        al2023(AL2023_NEW, "2023.6.1", "2024-12-01T00:00:00Z"),
        marketplace(),
        json!({"ImageId": "ami-0ccccccccccccccc1", "Name": "x"}),
    ]);
    let opts = ImportOptions::default();
    let report = import_images(&c, &file, &opts).unwrap();
    assert_eq!(
        report.imported,
        [AL2023_OLD, AL2023_NEW, "ami-0bbbbbbbbbbbbbbb1"]
    );
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].index, 3);
    assert_eq!(report.errors[0].code, "InvalidAMIName.Malformed");
    let row = c.resource(AL2023_NEW).unwrap().unwrap();
    assert_eq!((row.kind.as_str(), row.account_id.as_str()), (KIND, AMAZON));
    assert_eq!(
        c.permissions(AL2023_NEW, LAUNCH_PERMISSION).unwrap(),
        ["all"]
    );
    assert_eq!(c.tags("ami-0bbbbbbbbbbbbbbb1").unwrap().len(), 1);

    // Again: skipped; with replace (and --private): overwritten.
    let again = import_images(&c, &file, &opts).unwrap();
    assert!(again.imported.is_empty());
    assert_eq!(again.skipped.len(), 3);
    assert!(again.skipped[0].reason.contains("--replace"));
    let replace = ImportOptions {
        replace: true,
        private: true,
        ..ImportOptions::default()
    };
    assert_eq!(
        import_images(&c, &file, &replace).unwrap().imported.len(),
        3
    );
    assert!(
        c.permissions(AL2023_NEW, LAUNCH_PERMISSION)
            .unwrap()
            .is_empty()
    );

    // Same owner and name under another id; the same id twice in one input.
    let mut dup = al2023("ami-0ddddddddddddddd1", "2023.6.1", "2024-12-01T00:00:00Z");
    dup["Public"] = json!(false);
    let twice = al2023("ami-0eeeeeeeeeeeeeee1", "9", "2024-12-01T00:00:00Z");
    let report = import_images(&c, &input(&[dup, twice.clone(), twice]), &opts).unwrap();
    assert_eq!(report.errors[0].code, "InvalidAMIName.Duplicate");
    assert_eq!(report.imported, ["ami-0eeeeeeeeeeeeeee1"]);
    assert!(report.errors[1].message.contains("more than once"));
    // Another owner may use the name.
    let opts_other = ImportOptions {
        owner_id: Some("111122223333".into()),
        ..ImportOptions::default()
    };
    let other = al2023("ami-0fffffffffffffff1", "2023.6.1", "2024-12-01T00:00:00Z");
    assert_eq!(
        import_images(&c, &input(&[other]), &opts_other)
            .unwrap()
            .imported
            .len(),
        1
    );
}

#[test]
fn root_snapshot_rules() {
    let c = Catalog::in_memory().unwrap();
    let alice = "444455556666";
    snapshot(&c, "snap-00000000000000001", alice, "completed");
    snapshot(&c, "snap-00000000000000002", alice, "pending");
    let with = |snap: &str, private: bool| ImportOptions {
        root_snapshot: Some(snap.into()),
        private,
        replace: true,
        ..ImportOptions::default()
    };
    let file = input(&[al2023(AL2023_NEW, "1", "2024-12-01T00:00:00Z")]);
    for bad in ["snap-00000000000000002", "snap-00000000000000003", "nope"] {
        assert!(matches!(
            import_images(&c, &file, &with(bad, false)),
            Err(ImportError::Options(_))
        ));
    }
    // Not public: refused for a public image, and for a private one of another owner.
    let report = import_images(&c, &file, &with("snap-00000000000000001", false)).unwrap();
    assert!(report.errors[0].message.contains("Group=all"), "{report:?}");
    let report = import_images(&c, &file, &with("snap-00000000000000001", true)).unwrap();
    assert_eq!(report.errors[0].code, "InvalidSnapshot.NotFound");
    c.add_permission("snap-00000000000000001", CREATE_VOLUME_PERMISSION, "all")
        .unwrap();
    let report = import_images(&c, &file, &with("snap-00000000000000001", false)).unwrap();
    assert_eq!(report.imported, [AL2023_NEW]);
    let doc = doc_of(&c.resource(AL2023_NEW).unwrap().unwrap()).unwrap();
    let ebs = doc.block_device_mappings[0].ebs().unwrap();
    assert_eq!(ebs.snapshot_id.as_deref(), Some("snap-00000000000000001"));
    assert_eq!(ebs.volume_size_gib, 8);
    // The owner's own snapshot backs its private images.
    let own = ImportOptions {
        owner_id: Some(alice.into()),
        ..with("snap-00000000000000001", true)
    };
    c.remove_permission("snap-00000000000000001", CREATE_VOLUME_PERMISSION, "all")
        .unwrap();
    assert_eq!(
        import_images(&c, &file, &own).unwrap().imported,
        [AL2023_NEW]
    );
}

#[test]
fn option_checks() {
    let c = Catalog::in_memory().unwrap();
    for opts in [
        ImportOptions {
            region: "US East".into(),
            ..ImportOptions::default()
        },
        ImportOptions {
            owner_id: Some("123".into()),
            ..ImportOptions::default()
        },
        ImportOptions {
            owner_alias: Some("self".into()),
            ..ImportOptions::default()
        },
    ] {
        assert!(matches!(
            import_images(&c, b"[]", &opts),
            Err(ImportError::Options(_))
        ));
    }
    assert!(valid_owner_alias("aws-marketplace"));
    assert!(!valid_owner_alias("-x"));
}
