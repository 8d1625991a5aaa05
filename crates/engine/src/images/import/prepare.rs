//! Checking one entry of a catalog import and turning it into an image document (the
//! rules are in the parent module's docs). Nothing here touches the catalog: the root
//! snapshot, if any, has been loaded by the caller.

use catalog::now_ms;

use crate::query::check_tag;
use crate::{Ec2Error, Ec2Result, ids};

use super::{DescribedImage, DescribedMapping, DescribedProductCode, DescribedTag, ImportOptions};
use crate::images::register::{EbsRequest, MappingRequest};
use crate::images::validate::{
    ARCHITECTURES, BOOT_MODES, SnapshotInfo, VIRTUALIZATION_TYPES, check_description, check_enum,
    check_mappings, check_name, parse_timestamp, valid_device_name,
};
use crate::images::{ImageDoc, ProductCode, is_image_id};

/// An entry ready to be written.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Prepared {
    pub(super) id: String,
    pub(super) owner_id: String,
    pub(super) state: String,
    pub(super) public: bool,
    pub(super) doc: ImageDoc,
    pub(super) tags: Vec<(String, String)>,
}

/// The snapshot of [`ImportOptions::root_snapshot`].
#[derive(Clone, Debug)]
pub(super) struct RootSnapshot {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) grants: Vec<String>,
    pub(super) info: SnapshotInfo,
}

/// `InvalidParameterValue` with a message.
pub(super) fn bad(message: impl Into<String>) -> Ec2Error {
    Ec2Error::invalid_value(message)
}

/// True for owner aliases: 1–64 lowercase letters, digits and inner dashes, not `self`
/// or `all` (which DescribeImages reads otherwise).
pub fn valid_owner_alias(alias: &str) -> bool {
    (1..=64).contains(&alias.len())
        && alias
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !alias.starts_with('-')
        && !alias.ends_with('-')
        && alias != "self"
        && alias != "all"
}

fn check_opt(parameter: &str, value: &Option<String>, allowed: &[&str]) -> Ec2Result<()> {
    value
        .as_deref()
        .map_or(Ok(()), |v| check_enum(parameter, v, allowed))
}

/// Printable text of at most `max` characters.
fn check_text(parameter: &str, value: &str, max: usize) -> Ec2Result<()> {
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(bad(format!(
            "{parameter} must be 1 to {max} printable characters (got {value:?})"
        )));
    }
    Ok(())
}

fn timestamp(parameter: &str, value: &str) -> Ec2Result<i64> {
    parse_timestamp(value).ok_or_else(|| {
        bad(format!(
            "{parameter} {value:?} is not an ISO 8601 timestamp"
        ))
    })
}

fn usage_operation_ok(op: &str) -> bool {
    match op.strip_prefix("RunInstances") {
        Some("") => true,
        Some(rest) => rest.strip_prefix(':').is_some_and(|code| {
            (1..=8).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
        }),
        None => false,
    }
}

fn product_codes(given: Vec<DescribedProductCode>) -> Ec2Result<Vec<ProductCode>> {
    if given.len() > 10 {
        return Err(bad("At most 10 product codes are allowed"));
    }
    given
        .into_iter()
        .map(|p| {
            let id = p
                .product_code_id
                .ok_or_else(|| Ec2Error::missing("ProductCodes.ProductCodeId"))?;
            if !(1..=64).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad(format!(
                    "Invalid product code {id:?}: 1 to 64 letters and digits"
                )));
            }
            let kind = p.product_code_type.unwrap_or_else(|| "marketplace".into());
            check_enum("ProductCodeType", &kind, &["marketplace", "devpay"])?;
            Ok(ProductCode { id, kind })
        })
        .collect()
}

fn tags(given: Vec<DescribedTag>) -> Ec2Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in given {
        let key = t.key.ok_or_else(|| Ec2Error::missing("Tags.Key"))?;
        let value = t.value.unwrap_or_default();
        check_tag(&key, &value)?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(bad(format!("Tag key {key:?} is given more than once")));
        }
        out.push((key, value));
    }
    if out.len() > 50 {
        return Err(Ec2Error::client(
            "TagLimitExceeded",
            "The maximum number of tags is 50",
        ));
    }
    Ok(out)
}

fn mapping_request(m: DescribedMapping) -> MappingRequest {
    MappingRequest {
        device_name: m.device_name,
        virtual_name: m.virtual_name,
        no_device: m.no_device,
        ebs: m.ebs.map(|e| EbsRequest {
            snapshot_id: e.snapshot_id,
            volume_size: e.volume_size,
            delete_on_termination: e.delete_on_termination,
            volume_type: e.volume_type,
            iops: e.iops,
            throughput: e.throughput,
            encrypted: e.encrypted,
            kms_key_id: None,
        }),
    }
}

/// Checks that everyone who may launch the image can use the local root snapshot.
fn check_root_usable(local: &RootSnapshot, id: &str, owner: &str, public: bool) -> Ec2Result<()> {
    let shared = |who: &str| local.grants.iter().any(|g| g == who);
    if shared("all") || (!public && (local.owner == owner || shared(owner))) {
        return Ok(());
    }
    let who = if public {
        "everyone: share it with all (modify-snapshot-attribute --create-volume-permission Add=[{Group=all}])"
    } else {
        "its owner: use a snapshot of that account or one shared with it"
    };
    Err(Ec2Error::client(
        "InvalidSnapshot.NotFound",
        format!(
            "Root snapshot {} cannot back image {id}: it must be usable by {who}",
            local.id
        ),
    ))
}

/// Validates one entry and turns it into an image document.
pub(super) fn prepare(
    raw: DescribedImage,
    opts: &ImportOptions,
    root: Option<&RootSnapshot>,
) -> Ec2Result<Prepared> {
    let id = raw.image_id.ok_or_else(|| Ec2Error::missing("ImageId"))?;
    if !is_image_id(&id) {
        return Err(Ec2Error::client(
            "InvalidAMIID.Malformed",
            format!(
                "Invalid id: {id:?} (expecting ami-, aki- or ari- and 8 or 17 lowercase hex digits)"
            ),
        ));
    }
    let image_type = match id.get(..4) {
        Some("aki-") => "kernel",
        Some("ari-") => "ramdisk",
        _ => "machine",
    };
    if let Some(given) = raw.image_type.as_deref()
        && given != image_type
    {
        return Err(bad(format!(
            "ImageType {given} does not match the id {id} (a {image_type} image)"
        )));
    }
    let name = raw.name.ok_or_else(|| Ec2Error::missing("Name"))?;
    check_name(&name)?;
    if let Some(d) = &raw.description {
        check_description(d)?;
    }
    let owner_id = match (&opts.owner_id, raw.owner_id) {
        (Some(flag), _) => flag.clone(),
        (None, Some(json)) if ids::is_account_id(&json) => json,
        (None, Some(json)) => {
            return Err(bad(format!(
                "OwnerId {json:?} is not a 12-digit account id; give one with --owner-id"
            )));
        }
        (None, None) => return Err(bad("No OwnerId; give one with --owner-id")),
    };
    let owner_alias = opts.owner_alias.clone().or(raw.image_owner_alias);
    if let Some(alias) = owner_alias.as_deref()
        && !valid_owner_alias(alias)
    {
        return Err(bad(format!("Invalid ImageOwnerAlias {alias:?}")));
    }
    let architecture = raw.architecture.unwrap_or_else(|| "x86_64".into());
    check_enum("Architecture", &architecture, ARCHITECTURES)?;
    let virtualization_type = raw.virtualization_type.unwrap_or_else(|| "hvm".into());
    check_enum(
        "VirtualizationType",
        &virtualization_type,
        VIRTUALIZATION_TYPES,
    )?;
    let hypervisor = raw.hypervisor.unwrap_or_else(|| "xen".into());
    check_enum("Hypervisor", &hypervisor, &["xen", "ovm"])?;
    let root_device_type = raw.root_device_type.unwrap_or_else(|| "ebs".into());
    check_enum(
        "RootDeviceType",
        &root_device_type,
        &["ebs", "instance-store"],
    )?;
    check_opt("BootMode", &raw.boot_mode, BOOT_MODES)?;
    check_opt("TpmSupport", &raw.tpm_support, &["v2.0"])?;
    check_opt("ImdsSupport", &raw.imds_support, &["v2.0"])?;
    check_opt("SriovNetSupport", &raw.sriov_net_support, &["simple"])?;
    for (what, prefix, value) in [
        ("KernelId", "aki", &raw.kernel_id),
        ("RamdiskId", "ari", &raw.ramdisk_id),
    ] {
        if let Some(v) = value
            && !ids::is_valid(prefix, v)
        {
            return Err(bad(format!(
                "Invalid {what} {v:?} (expecting {prefix}-...)"
            )));
        }
    }
    let windows = match raw.platform.as_deref() {
        None => false,
        Some(p) if p.eq_ignore_ascii_case("windows") => true,
        Some(p) => return Err(bad(format!("Invalid Platform {p:?}: only windows"))),
    };
    let platform_details = raw
        .platform_details
        .unwrap_or_else(|| if windows { "Windows" } else { "Linux/UNIX" }.into());
    check_text("PlatformDetails", &platform_details, 255)?;
    let usage_operation = raw.usage_operation.unwrap_or_else(|| {
        if windows {
            "RunInstances:0002"
        } else {
            "RunInstances"
        }
        .into()
    });
    if !usage_operation_ok(&usage_operation) {
        return Err(bad(format!(
            "Invalid UsageOperation {usage_operation:?} (expecting RunInstances or RunInstances:<code>)"
        )));
    }
    let product_codes = product_codes(raw.product_codes.unwrap_or_default())?;
    let creation_ms = match raw.creation_date.as_deref() {
        Some(d) => timestamp("CreationDate", d)?,
        None => now_ms(),
    };
    let deprecation_ms = raw
        .deprecation_time
        .as_deref()
        .map(|d| timestamp("DeprecationTime", d))
        .transpose()?;
    let state = raw.state.unwrap_or_else(|| "available".into());
    if state != "available" && state != "disabled" {
        return Err(bad(format!(
            "Image {id} is {state}: only available or disabled images can be imported"
        )));
    }
    let public = raw.public.unwrap_or(true) && !opts.private;
    let tags = tags(raw.tags.unwrap_or_default())?;

    let root_name = raw.root_device_name;
    if let Some(r) = root_name.as_deref()
        && !valid_device_name(r)
    {
        return Err(bad(format!("Invalid RootDeviceName {r:?}")));
    }
    let mut requests: Vec<MappingRequest> = raw
        .block_device_mappings
        .unwrap_or_default()
        .into_iter()
        .map(mapping_request)
        .collect();
    if let Some(local) = root {
        let root_ebs = root_name
            .as_deref()
            .filter(|_| root_device_type == "ebs")
            .and_then(|r| {
                requests
                    .iter_mut()
                    .find(|m| m.device_name.as_deref() == Some(r))
            })
            .and_then(|m| m.ebs.as_mut())
            .ok_or_else(|| {
                Ec2Error::client(
                    "InvalidBlockDeviceMapping",
                    format!("Image {id} has no EBS mapping of its root device for --root-snapshot"),
                )
            })?;
        check_root_usable(local, &id, &owner_id, public)?;
        root_ebs.snapshot_id = Some(local.id.clone());
    }
    let local_id = root.map(|r| r.id.as_str());
    for m in &requests {
        if let Some(e) = &m.ebs
            && e.snapshot_id.is_some()
            && e.snapshot_id.as_deref() != local_id
            && e.volume_size.is_none()
        {
            return Err(Ec2Error::client(
                "InvalidBlockDeviceMapping",
                format!(
                    "The EBS mapping of {} needs a VolumeSize: its snapshot is not stored here",
                    m.device_name.as_deref().unwrap_or("?")
                ),
            ));
        }
    }
    let block_device_mappings = check_mappings(&requests, |snap| match root {
        Some(local) if local.id == snap => Ok(local.info.clone()),
        // Not stored here: kept as given, its VolumeSize taken on trust.
        _ => ids::check("snap", "InvalidSnapshotID.Malformed", snap).map(|()| SnapshotInfo {
            volume_size_gib: 1,
            encrypted: false,
        }),
    })?;
    if root_device_type == "ebs" {
        let root = root_name
            .as_deref()
            .ok_or_else(|| Ec2Error::missing("RootDeviceName"))?;
        let has_snapshot = block_device_mappings
            .iter()
            .find(|m| m.device_name == root)
            .and_then(|m| m.ebs())
            .is_some_and(|e| e.snapshot_id.is_some());
        if !has_snapshot {
            return Err(Ec2Error::client(
                "InvalidBlockDeviceMapping",
                format!("The root device {root} must be mapped to an EBS snapshot"),
            ));
        }
    }
    let image_location = raw
        .image_location
        .unwrap_or_else(|| format!("{}/{name}", owner_alias.as_deref().unwrap_or(&owner_id)));
    check_text("ImageLocation", &image_location, 1024)?;
    let doc = ImageDoc {
        name,
        description: raw.description,
        architecture,
        image_type: image_type.into(),
        virtualization_type,
        hypervisor,
        root_device_type,
        root_device_name: root_name,
        block_device_mappings,
        image_location,
        kernel_id: raw.kernel_id,
        ramdisk_id: raw.ramdisk_id,
        boot_mode: raw.boot_mode,
        tpm_support: raw.tpm_support,
        imds_support: raw.imds_support,
        ena_support: raw.ena_support,
        sriov_net_support: raw.sriov_net_support,
        platform: windows.then(|| "windows".to_string()),
        platform_details,
        usage_operation,
        product_codes,
        owner_alias,
        creation_ms,
        deprecation_ms,
        ..ImageDoc::default()
    };
    Ok(Prepared {
        id,
        owner_id,
        state,
        public,
        doc,
        tags,
    })
}
