//! Image (AMI) actions: query parameters → typed requests, and engine results →
//! botocore-shaped XML (`imagesSet`, `blockDeviceMapping`, `launchPermission`, ...).
//!
//! Parameter names are the query-protocol names of botocore's model: flattened lists
//! such as `BlockDeviceMapping.1.Ebs.SnapshotId`, `ImageId.1`, `Owner.1`,
//! `ExecutableBy.1`, `LaunchPermission.Add.1.UserId`, and the older
//! `Attribute`/`OperationType`/`UserId.N`/`UserGroup.N` form of ModifyImageAttribute.

use std::sync::Arc;

use engine::images::validate::{MAX_MAPPINGS, parse_timestamp};
use engine::images::{
    AttributeValue, BlockDeviceMapping, CopyImage, DescribeImages, EbsRequest, ImageAttributeName,
    ImageChange, ImageView, MappingRequest, MappingTarget, ModifyImageAttribute, RegisterImage,
};
use engine::query::iso8601;
use engine::snapshots::Grantee;
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// A request naming one image (`ImageId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRequest {
    /// `ImageId`.
    pub image_id: String,
}

/// DeregisterImage parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeregisterImage {
    /// `ImageId`.
    pub image_id: String,
    /// `DeleteAssociatedSnapshots`.
    pub delete_associated_snapshots: bool,
}

/// DescribeImageAttribute parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageAttributeRequest {
    /// `ImageId`.
    pub image_id: String,
    /// `Attribute`.
    pub attribute: ImageAttributeName,
}

/// EnableImageDeprecation parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDeprecation {
    /// `ImageId`.
    pub image_id: String,
    /// `DeprecateAt`, in ms since the epoch.
    pub deprecate_at_ms: i64,
}

/// EnableImageDeregistrationProtection parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeregistrationProtection {
    /// `ImageId`.
    pub image_id: String,
    /// `WithCooldown`.
    pub with_cooldown: bool,
}

/// EnableImageBlockPublicAccess parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPublicAccess {
    /// `ImageBlockPublicAccessState` (`block-new-sharing`).
    pub state: String,
}

// ---- parsing ----

/// `ImageId`.
pub fn parse_image(p: &Params) -> Ec2Result<ImageRequest> {
    Ok(ImageRequest {
        image_id: p.required("ImageId")?,
    })
}

fn mapping(p: &Params, i: usize) -> Ec2Result<MappingRequest> {
    let key = |k: &str| format!("BlockDeviceMapping.{i}.{k}");
    let ebs = EbsRequest {
        snapshot_id: p.string(&key("Ebs.SnapshotId")),
        volume_size: p.int(&key("Ebs.VolumeSize"))?,
        delete_on_termination: p.bool(&key("Ebs.DeleteOnTermination"))?,
        volume_type: p.string(&key("Ebs.VolumeType")),
        iops: p.int(&key("Ebs.Iops"))?,
        throughput: p.int(&key("Ebs.Throughput"))?,
        encrypted: p.bool(&key("Ebs.Encrypted"))?,
        kms_key_id: p.string(&key("Ebs.KmsKeyId")),
    };
    Ok(MappingRequest {
        device_name: p.string(&key("DeviceName")),
        virtual_name: p.string(&key("VirtualName")),
        no_device: p.string(&key("NoDevice")),
        ebs: (ebs != EbsRequest::default()).then_some(ebs),
    })
}

/// `BlockDeviceMapping.N.*` (indexes 1 to one more than the limit, so that too many is
/// noticed).
pub fn parse_mappings(p: &Params) -> Ec2Result<Vec<MappingRequest>> {
    let mut out = Vec::new();
    for i in 1..=MAX_MAPPINGS + 1 {
        let m = mapping(p, i)?;
        if m != MappingRequest::default() {
            out.push(m);
        }
    }
    Ok(out)
}

/// RegisterImage.
pub fn parse_register(p: &Params) -> Ec2Result<RegisterImage> {
    Ok(RegisterImage {
        name: p.required("Name")?,
        description: p.string("Description"),
        image_location: p.string("ImageLocation").filter(|l| !l.is_empty()),
        architecture: p.string("Architecture"),
        virtualization_type: p.string("VirtualizationType"),
        root_device_name: p.string("RootDeviceName"),
        block_device_mappings: parse_mappings(p)?,
        kernel_id: p.string("KernelId"),
        ramdisk_id: p.string("RamdiskId"),
        boot_mode: p.string("BootMode"),
        tpm_support: p.string("TpmSupport"),
        imds_support: p.string("ImdsSupport"),
        uefi_data: p.string("UefiData"),
        ena_support: p.bool("EnaSupport")?,
        sriov_net_support: p.string("SriovNetSupport"),
        billing_products: p.list("BillingProduct")?,
        tag_specifications: p.tag_specifications()?,
    })
}

/// DescribeImages.
pub fn parse_describe(p: &Params) -> Ec2Result<DescribeImages> {
    Ok(DescribeImages {
        image_ids: p.list("ImageId")?,
        owners: p.list("Owner")?,
        executable_by: p.list("ExecutableBy")?,
        filters: p.filters()?,
        include_deprecated: p.bool("IncludeDeprecated")?.unwrap_or(false),
        include_disabled: p.bool("IncludeDisabled")?.unwrap_or(false),
        page: p.page()?,
    })
}

/// DeregisterImage.
pub fn parse_deregister(p: &Params) -> Ec2Result<DeregisterImage> {
    Ok(DeregisterImage {
        image_id: p.required("ImageId")?,
        delete_associated_snapshots: p.bool("DeleteAssociatedSnapshots")?.unwrap_or(false),
    })
}

/// DescribeImageAttribute.
pub fn parse_describe_attribute(p: &Params) -> Ec2Result<ImageAttributeRequest> {
    Ok(ImageAttributeRequest {
        image_id: p.required("ImageId")?,
        attribute: ImageAttributeName::parse(&p.required("Attribute")?)?,
    })
}

/// ResetImageAttribute: only `launchPermission` can be reset.
pub fn parse_reset_attribute(p: &Params) -> Ec2Result<ImageRequest> {
    let attribute = p.required("Attribute")?;
    if attribute != "launchPermission" {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({attribute}) for parameter attribute is invalid. Only launchPermission can be reset."
        )));
    }
    parse_image(p)
}

/// `LaunchPermission.<Add|Remove>.N.UserId|Group`.
fn launch_permissions(p: &Params, prefix: &str) -> Ec2Result<Vec<Grantee>> {
    let mut out = Vec::new();
    for i in 1..=1000 {
        let key = |k: &str| format!("{prefix}.{i}.{k}");
        if p.get(&key("OrganizationArn")).is_some()
            || p.get(&key("OrganizationalUnitArn")).is_some()
        {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                "Sharing with organizations is not supported by openami",
            ));
        }
        match (p.string(&key("UserId")), p.string(&key("Group"))) {
            (None, None) => break,
            (Some(_), Some(_)) => {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    "A launch permission names either a UserId or a Group, not both",
                ));
            }
            (Some(user), None) => out.push(Grantee::User(user)),
            (None, Some(g)) if g == "all" => out.push(Grantee::All),
            (None, Some(g)) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({g}) for parameter Group is invalid. Expected 'all'."
                )));
            }
        }
    }
    Ok(out)
}

/// ModifyImageAttribute, in its structured form (`Description.Value`,
/// `LaunchPermission.Add.N…`, `ImdsSupport.Value`) or the `Attribute` form (`Value`,
/// `OperationType` with `UserId.N` / `UserGroup.N`). One attribute per call.
pub fn parse_modify_attribute(p: &Params) -> Ec2Result<ModifyImageAttribute> {
    let image_id = p.required("ImageId")?;
    let attribute = p.get("Attribute");
    if p.list("ProductCode")?.len()
        + p.list("OrganizationArn")?.len()
        + p.list("OrganizationalUnitArn")?.len()
        > 0
        || attribute == Some("productCodes")
    {
        return Err(Ec2Error::client(
            "UnsupportedOperation",
            "Product codes and sharing with organizations are not supported by openami",
        ));
    }
    if let Some(a) = attribute
        && !["description", "launchPermission", "imdsSupport"].contains(&a)
    {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({a}) for parameter attribute is invalid. Modifiable attributes: description, launchPermission, imdsSupport."
        )));
    }
    let value_for = |name: &str| {
        if attribute == Some(name) {
            p.string("Value")
        } else {
            None
        }
    };
    let mut changes = Vec::new();
    if let Some(d) = p
        .string("Description.Value")
        .or_else(|| value_for("description"))
    {
        changes.push(ImageChange::Description(d));
    }
    if let Some(v) = p
        .string("ImdsSupport.Value")
        .or_else(|| value_for("imdsSupport"))
    {
        changes.push(ImageChange::ImdsSupport(v));
    }
    let mut add = launch_permissions(p, "LaunchPermission.Add")?;
    let mut remove = launch_permissions(p, "LaunchPermission.Remove")?;
    let mut listed: Vec<Grantee> = p.list("UserId")?.into_iter().map(Grantee::User).collect();
    for g in p.list("UserGroup")? {
        if g != "all" {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({g}) for parameter UserGroup is invalid. Expected 'all'."
            )));
        }
        listed.push(Grantee::All);
    }
    if !listed.is_empty() {
        match p.get("OperationType") {
            Some("add") => add.append(&mut listed),
            Some("remove") => remove.append(&mut listed),
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter operationType is invalid. Expected add or remove."
                )));
            }
            None => return Err(Ec2Error::missing("OperationType")),
        }
    }
    if !add.is_empty() || !remove.is_empty() || attribute == Some("launchPermission") {
        changes.push(ImageChange::LaunchPermission { add, remove });
    }
    let change = match changes.len() {
        0 => {
            return Err(Ec2Error::client(
                "InvalidParameterCombination",
                "No attributes specified.",
            ));
        }
        1 => changes.remove(0),
        _ => {
            return Err(Ec2Error::client(
                "InvalidParameterCombination",
                "Only one attribute can be modified at a time.",
            ));
        }
    };
    Ok(ModifyImageAttribute { image_id, change })
}

/// EnableImageDeprecation.
pub fn parse_deprecation(p: &Params) -> Ec2Result<ImageDeprecation> {
    let at = p.required("DeprecateAt")?;
    let deprecate_at_ms = parse_timestamp(&at).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Value ({at}) for parameter DeprecateAt is invalid. Expected an ISO 8601 timestamp."
        ))
    })?;
    Ok(ImageDeprecation {
        image_id: p.required("ImageId")?,
        deprecate_at_ms,
    })
}

/// EnableImageDeregistrationProtection.
pub fn parse_protection(p: &Params) -> Ec2Result<DeregistrationProtection> {
    Ok(DeregistrationProtection {
        image_id: p.required("ImageId")?,
        with_cooldown: p.bool("WithCooldown")?.unwrap_or(false),
    })
}

/// EnableImageBlockPublicAccess.
pub fn parse_block_public_access(p: &Params) -> Ec2Result<BlockPublicAccess> {
    Ok(BlockPublicAccess {
        state: p.required("ImageBlockPublicAccessState")?,
    })
}

/// CopyImage.
pub fn parse_copy(p: &Params) -> Ec2Result<CopyImage> {
    Ok(CopyImage {
        source_region: p.required("SourceRegion")?,
        source_image_id: p.required("SourceImageId")?,
        name: p.required("Name")?,
        description: p.string("Description"),
        copy_image_tags: p.bool("CopyImageTags")?.unwrap_or(false),
        tag_specifications: p.tag_specifications()?,
        client_token: p.string("ClientToken").filter(|t| !t.is_empty()),
        encrypted: p.bool("Encrypted")?,
        kms_key_id: p.string("KmsKeyId"),
        destination_outpost_arn: p.string("DestinationOutpostArn"),
    })
}

// ---- rendering ----

fn mapping_xml(x: &mut Xml, m: &BlockDeviceMapping) {
    x.text("deviceName", &m.device_name);
    match &m.target {
        MappingTarget::Ebs(e) => {
            x.elem("ebs", |x| {
                x.opt("snapshotId", e.snapshot_id.as_ref())
                    .text("volumeSize", &e.volume_size_gib.to_string())
                    .text("deleteOnTermination", &e.delete_on_termination.to_string())
                    .text("volumeType", &e.volume_type)
                    .opt("iops", e.iops)
                    .opt("throughput", e.throughput)
                    .text("encrypted", &e.encrypted.to_string());
            });
        }
        MappingTarget::Ephemeral(v) => {
            x.text("virtualName", v);
        }
        MappingTarget::NoDevice => {
            x.text("noDevice", "");
        }
    }
}

/// One `Image` (an `imagesSet` item).
pub fn image_xml(x: &mut Xml, i: &ImageView) {
    let d = &i.doc;
    x.text("imageId", &i.id)
        .text("imageLocation", &d.image_location)
        .text("imageState", &i.state)
        .text("imageOwnerId", &i.owner_id)
        .text("creationDate", &iso8601(d.creation_ms))
        .text("isPublic", &i.public.to_string());
    if !d.product_codes.is_empty() {
        x.list("productCodes", &d.product_codes, |x, c| {
            x.text("productCode", &c.id).text("type", &c.kind);
        });
    }
    x.text("architecture", &d.architecture)
        .text("imageType", &d.image_type)
        .opt("kernelId", d.kernel_id.as_ref())
        .opt("ramdiskId", d.ramdisk_id.as_ref())
        .opt("platform", d.platform.as_ref())
        .text("platformDetails", &d.platform_details)
        .text("usageOperation", &d.usage_operation);
    if let Some(r) = &d.state_reason {
        x.elem("stateReason", |x| {
            x.text("code", &r.code).text("message", &r.message);
        });
    }
    x.opt("imageOwnerAlias", d.owner_alias.as_ref())
        .text("name", &d.name)
        .opt("description", d.description.as_ref())
        .text("rootDeviceType", &d.root_device_type)
        .opt("rootDeviceName", d.root_device_name.as_ref())
        .list("blockDeviceMapping", &d.block_device_mappings, mapping_xml)
        .text("virtualizationType", &d.virtualization_type);
    if !i.tags.is_empty() {
        x.tags(&i.tags);
    }
    x.text("hypervisor", &d.hypervisor)
        .opt("enaSupport", d.ena_support)
        .opt("sriovNetSupport", d.sriov_net_support.as_ref())
        .opt("bootMode", d.boot_mode.as_ref())
        .opt("tpmSupport", d.tpm_support.as_ref())
        .opt("deprecationTime", d.deprecation_ms.map(iso8601))
        .opt("imdsSupport", d.imds_support.as_ref())
        .opt("sourceImageId", d.source_image_id.as_ref())
        .opt("sourceImageRegion", d.source_image_region.as_ref())
        .text(
            "deregistrationProtection",
            &d.deregistration_protection.describe(now_ms()),
        )
        .opt("lastLaunchedTime", d.last_launched_ms.map(iso8601))
        .opt("imageAllowed", i.allowed);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ok(x: &mut Xml) {
    x.text("return", "true");
}

// ---- execution ----

/// RegisterImage → `imageId`.
pub fn register_image(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: RegisterImage,
) -> Ec2Result<()> {
    x.text("imageId", &cloud.register_image(caller, req)?);
    Ok(())
}

/// DescribeImages → `imagesSet`, `nextToken`.
pub fn describe_images(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: &DescribeImages,
) -> Ec2Result<()> {
    let (items, token) = cloud.describe_images(caller, req)?;
    x.list("imagesSet", &items, image_xml)
        .opt("nextToken", token);
    Ok(())
}

/// DeregisterImage → `return` (and `deleteSnapshotResultSet` when asked to delete).
pub fn deregister_image(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: DeregisterImage,
) -> Ec2Result<()> {
    let deleted = cloud.deregister_image(caller, &req.image_id, req.delete_associated_snapshots)?;
    ok(x);
    if req.delete_associated_snapshots {
        x.list("deleteSnapshotResultSet", &deleted, |x, d| {
            x.text("snapshotId", &d.snapshot_id)
                .text("returnCode", &d.return_code);
        });
    }
    Ok(())
}

/// DescribeImageAttribute → `imageId` and the attribute's element.
pub fn describe_image_attribute(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ImageAttributeRequest,
) -> Ec2Result<()> {
    let value = cloud.describe_image_attribute(caller, &req.image_id, req.attribute)?;
    x.text("imageId", &req.image_id);
    let name = req.attribute.as_str();
    match value {
        AttributeValue::Text(v) => {
            x.elem(name, |x| {
                x.opt("value", v);
            });
        }
        AttributeValue::LaunchPermissions(grants) => {
            x.list(name, &grants, |x, g| match g {
                Grantee::User(u) => {
                    x.text("userId", u);
                }
                Grantee::All => {
                    x.text("group", "all");
                }
            });
        }
        AttributeValue::ProductCodes(codes) => {
            x.list(name, &codes, |x, c| {
                x.text("productCode", &c.id).text("type", &c.kind);
            });
        }
        AttributeValue::BlockDeviceMappings(mappings) => {
            x.list(name, &mappings, mapping_xml);
        }
    }
    Ok(())
}

/// ModifyImageAttribute → nothing (the output shape is empty).
pub fn modify_image_attribute(
    _x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ModifyImageAttribute,
) -> Ec2Result<()> {
    cloud.modify_image_attribute(caller, req)
}

/// ResetImageAttribute(launchPermission) → nothing.
pub fn reset_image_attribute(
    _x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ImageRequest,
) -> Ec2Result<()> {
    cloud.reset_image_launch_permission(caller, &req.image_id)
}

/// CopyImage → `imageId`.
pub fn copy_image(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    req: CopyImage,
) -> Ec2Result<()> {
    x.text("imageId", &cloud.copy_image(caller, req)?);
    Ok(())
}

/// EnableImageDeprecation → `return`.
pub fn enable_image_deprecation(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ImageDeprecation,
) -> Ec2Result<()> {
    cloud.enable_image_deprecation(caller, &req.image_id, req.deprecate_at_ms)?;
    ok(x);
    Ok(())
}

/// DisableImageDeprecation → `return`.
pub fn disable_image_deprecation(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ImageRequest,
) -> Ec2Result<()> {
    cloud.disable_image_deprecation(caller, &req.image_id)?;
    ok(x);
    Ok(())
}

/// EnableImageDeregistrationProtection → `return`.
pub fn enable_deregistration_protection(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: DeregistrationProtection,
) -> Ec2Result<()> {
    cloud.enable_image_deregistration_protection(caller, &req.image_id, req.with_cooldown)?;
    ok(x);
    Ok(())
}

/// DisableImageDeregistrationProtection → `return`.
pub fn disable_deregistration_protection(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ImageRequest,
) -> Ec2Result<()> {
    cloud.disable_image_deregistration_protection(caller, &req.image_id)?;
    ok(x);
    Ok(())
}

/// EnableImage / DisableImage → `return`.
pub fn set_image_enabled(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ImageRequest,
    enabled: bool,
) -> Ec2Result<()> {
    cloud.set_image_enabled(caller, &req.image_id, enabled)?;
    ok(x);
    Ok(())
}

/// CancelImageLaunchPermission → `return`.
pub fn cancel_launch_permission(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    req: ImageRequest,
) -> Ec2Result<()> {
    cloud.cancel_image_launch_permission(caller, &req.image_id)?;
    ok(x);
    Ok(())
}

/// GetImageBlockPublicAccessState → `imageBlockPublicAccessState`, `managedBy`.
pub fn get_block_public_access(x: &mut Xml, cloud: &Cloud, caller: &Caller) -> Ec2Result<()> {
    let state = cloud.image_block_public_access_state(caller)?;
    x.text("imageBlockPublicAccessState", &state)
        .text("managedBy", "account");
    Ok(())
}

/// Enable/DisableImageBlockPublicAccess → `imageBlockPublicAccessState`.
pub fn set_block_public_access(
    x: &mut Xml,
    cloud: &Cloud,
    caller: &Caller,
    enable: Option<BlockPublicAccess>,
) -> Ec2Result<()> {
    let state = match enable {
        Some(req) => cloud.enable_image_block_public_access(caller, &req.state)?,
        None => cloud.disable_image_block_public_access(caller)?,
    };
    x.text("imageBlockPublicAccessState", &state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(&[q.as_bytes()]).unwrap()
    }

    #[test]
    fn register_mappings() {
        let p = params(
            "Name=n1&RootDeviceName=/dev/xvda&BlockDeviceMapping.1.DeviceName=/dev/xvda&BlockDeviceMapping.1.Ebs.SnapshotId=snap-1&BlockDeviceMapping.1.Ebs.VolumeSize=10&BlockDeviceMapping.1.Ebs.DeleteOnTermination=false&BlockDeviceMapping.2.DeviceName=/dev/sdb&BlockDeviceMapping.2.VirtualName=ephemeral0&BlockDeviceMapping.3.DeviceName=/dev/sdc&BlockDeviceMapping.3.NoDevice=&EnaSupport=true",
        );
        let r = parse_register(&p).unwrap();
        assert_eq!(r.block_device_mappings.len(), 3);
        let ebs = r.block_device_mappings[0].ebs.as_ref().unwrap();
        assert_eq!(ebs.snapshot_id.as_deref(), Some("snap-1"));
        assert_eq!(ebs.volume_size, Some(10));
        assert_eq!(ebs.delete_on_termination, Some(false));
        assert_eq!(
            r.block_device_mappings[1].virtual_name.as_deref(),
            Some("ephemeral0")
        );
        assert!(r.block_device_mappings[1].ebs.is_none());
        assert_eq!(r.block_device_mappings[2].no_device.as_deref(), Some(""));
        assert_eq!(r.ena_support, Some(true));
        assert!(parse_register(&params("RootDeviceName=/dev/xvda")).is_err());
    }

    #[test]
    fn modify_forms() {
        let m = parse_modify_attribute(&params(
            "ImageId=ami-1&LaunchPermission.Add.1.UserId=111111111111&LaunchPermission.Add.2.Group=all&LaunchPermission.Remove.1.UserId=222222222222",
        ))
        .unwrap();
        assert_eq!(
            m.change,
            ImageChange::LaunchPermission {
                add: vec![Grantee::User("111111111111".into()), Grantee::All],
                remove: vec![Grantee::User("222222222222".into())],
            }
        );
        let m = parse_modify_attribute(&params(
            "ImageId=ami-1&Attribute=launchPermission&OperationType=remove&UserId.1=111111111111&UserGroup.1=all",
        ))
        .unwrap();
        assert_eq!(
            m.change,
            ImageChange::LaunchPermission {
                add: vec![],
                remove: vec![Grantee::User("111111111111".into()), Grantee::All],
            }
        );
        let m = parse_modify_attribute(&params("ImageId=ami-1&Attribute=description&Value=hello"))
            .unwrap();
        assert_eq!(m.change, ImageChange::Description("hello".into()));
        let m = parse_modify_attribute(&params("ImageId=ami-1&Description.Value=x")).unwrap();
        assert_eq!(m.change, ImageChange::Description("x".into()));
        let err = |q: &str| parse_modify_attribute(&params(q)).unwrap_err().code;
        assert_eq!(err("ImageId=ami-1"), "InvalidParameterCombination");
        assert_eq!(
            err("ImageId=ami-1&Description.Value=x&ImdsSupport.Value=v2.0"),
            "InvalidParameterCombination"
        );
        assert_eq!(
            err("ImageId=ami-1&UserId.1=111111111111"),
            "MissingParameter"
        );
        assert_eq!(
            err("ImageId=ami-1&LaunchPermission.Add.1.Group=everyone"),
            "InvalidParameterValue"
        );
        assert_eq!(
            err("ImageId=ami-1&Attribute=bootMode&Value=uefi"),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn timestamps_and_attributes() {
        let d =
            parse_deprecation(&params("ImageId=ami-1&DeprecateAt=2030-01-01T00:00:00Z")).unwrap();
        assert_eq!(d.deprecate_at_ms, 1_893_456_000_000);
        assert!(parse_deprecation(&params("ImageId=ami-1&DeprecateAt=tomorrow")).is_err());
        assert!(parse_describe_attribute(&params("ImageId=ami-1&Attribute=nope")).is_err());
        assert!(parse_reset_attribute(&params("ImageId=ami-1&Attribute=description")).is_err());
    }
}
