//! The closed set of actions the API accepts, parsed from query parameters into typed
//! requests. This enum is the one boundary between HTTP and the engine.

use engine::images::{CopyImage, DescribeImages, ModifyImageAttribute, RegisterImage};
use engine::query::{Filter, Page, TagSpecification};
use engine::snapshots::Grantee;
use engine::volumes::{CreateVolume, ModifyVolume};
use engine::{Ec2Error, Ec2Result};

use crate::account::AccountAction;
use crate::addresses::AddressAction;
use crate::allowed_images::AllowedImagesAction;
use crate::images::{
    self, BlockPublicAccess, DeregisterImage, DeregistrationProtection, ImageAttributeRequest,
    ImageDeprecation, ImageRequest,
};
use crate::instance_options::InstanceOptionAction;
use crate::instances::InstanceAction;
use crate::keypairs::KeyPairAction;
use crate::launch_templates::LaunchTemplateAction;
use crate::params::Params;
use crate::transfers::TransferAction;
use crate::volume_options::VolumeOptionAction;
use crate::vpc::VpcAction;

/// Every EC2 operation name in botocore's model (2016-11-15), one per line.
const EC2_OPERATIONS: &str = include_str!("ec2_operations.txt");

/// One EC2 request, typed.
#[derive(Debug, Clone)]
pub enum Action {
    /// CreateVolume.
    CreateVolume(CreateVolume),
    /// DescribeVolumes.
    DescribeVolumes {
        /// VolumeId.N
        ids: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// DeleteVolume.
    DeleteVolume {
        /// VolumeId
        id: String,
    },
    /// ModifyVolume.
    ModifyVolume(ModifyVolume),
    /// CreateSnapshot.
    CreateSnapshot {
        /// VolumeId
        volume_id: String,
        /// Description
        description: Option<String>,
        /// TagSpecification.N
        tags: Vec<TagSpecification>,
    },
    /// DescribeSnapshots.
    DescribeSnapshots {
        /// SnapshotId.N
        ids: Vec<String>,
        /// Owner.N
        owners: Vec<String>,
        /// RestorableBy.N
        restorable_by: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// DeleteSnapshot.
    DeleteSnapshot {
        /// SnapshotId
        id: String,
    },
    /// CopySnapshot.
    CopySnapshot {
        /// SourceRegion
        source_region: String,
        /// SourceSnapshotId
        source_id: String,
        /// Description
        description: Option<String>,
        /// TagSpecification.N
        tags: Vec<TagSpecification>,
    },
    /// DescribeSnapshotAttribute (createVolumePermission).
    DescribeSnapshotAttribute {
        /// SnapshotId
        id: String,
    },
    /// ModifySnapshotAttribute (createVolumePermission).
    ModifySnapshotAttribute {
        /// SnapshotId
        id: String,
        /// Grants to add.
        add: Vec<Grantee>,
        /// Grants to remove.
        remove: Vec<Grantee>,
    },
    /// ResetSnapshotAttribute (createVolumePermission).
    ResetSnapshotAttribute {
        /// SnapshotId
        id: String,
    },
    /// CreateTags.
    CreateTags {
        /// ResourceId.N
        resources: Vec<String>,
        /// Tag.N
        tags: Vec<(String, String)>,
    },
    /// DeleteTags.
    DeleteTags {
        /// ResourceId.N
        resources: Vec<String>,
        /// Tag.N (value optional)
        tags: Vec<(String, Option<String>)>,
    },
    /// DescribeTags.
    DescribeTags {
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// DescribeRegions.
    DescribeRegions {
        /// RegionName.N
        names: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
    },
    /// DescribeAvailabilityZones.
    DescribeAvailabilityZones {
        /// ZoneName.N
        names: Vec<String>,
        /// ZoneId.N
        ids: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
    },
    /// RegisterImage.
    RegisterImage(RegisterImage),
    /// DescribeImages.
    DescribeImages(DescribeImages),
    /// DeregisterImage.
    DeregisterImage(DeregisterImage),
    /// DescribeImageAttribute.
    DescribeImageAttribute(ImageAttributeRequest),
    /// ModifyImageAttribute.
    ModifyImageAttribute(ModifyImageAttribute),
    /// ResetImageAttribute (launchPermission).
    ResetImageAttribute(ImageRequest),
    /// CopyImage.
    CopyImage(CopyImage),
    /// EnableImageDeprecation.
    EnableImageDeprecation(ImageDeprecation),
    /// DisableImageDeprecation.
    DisableImageDeprecation(ImageRequest),
    /// EnableImageDeregistrationProtection.
    EnableImageDeregistrationProtection(DeregistrationProtection),
    /// DisableImageDeregistrationProtection.
    DisableImageDeregistrationProtection(ImageRequest),
    /// EnableImage.
    EnableImage(ImageRequest),
    /// DisableImage.
    DisableImage(ImageRequest),
    /// CancelImageLaunchPermission.
    CancelImageLaunchPermission(ImageRequest),
    /// GetImageBlockPublicAccessState.
    GetImageBlockPublicAccessState,
    /// EnableImageBlockPublicAccess.
    EnableImageBlockPublicAccess(BlockPublicAccess),
    /// DisableImageBlockPublicAccess.
    DisableImageBlockPublicAccess,
    /// Instance actions (RunInstances, DescribeInstances, …).
    Instance(InstanceAction),
    /// VM import/export actions (ImportImage, ExportImage, …).
    Transfer(TransferAction),
    /// Key pair actions (CreateKeyPair, DescribeKeyPairs, …).
    KeyPair(KeyPairAction),
    /// Launch template actions (CreateLaunchTemplate, DescribeLaunchTemplateVersions, …).
    LaunchTemplate(LaunchTemplateAction),
    /// Instance options: CPU credits, UEFI data (crate::instance_options).
    InstanceOption(InstanceOptionAction),
    /// VPC layer actions (VPCs, subnets, security groups, …).
    Vpc(VpcAction),
    /// Volume modifications, status and attributes (crate::volume_options).
    VolumeOption(VolumeOptionAction),
    /// Account-wide settings and offerings (crate::account).
    Account(AccountAction),
    /// Elastic IP addresses (crate::addresses).
    Address(AddressAction),
    /// Allowed AMIs settings (crate::allowed_images).
    AllowedImages(AllowedImagesAction),
}

fn snapshot_attribute(p: &Params) -> Ec2Result<()> {
    match p.get("Attribute") {
        Some("createVolumePermission") => Ok(()),
        Some("productCodes") => Err(Ec2Error::client(
            "UnsupportedOperation",
            "The productCodes attribute of snapshots is not supported",
        )),
        Some(other) => Err(Ec2Error::invalid_value(format!(
            "Value ({other}) for parameter attribute is invalid. Unknown attribute."
        ))),
        None => Err(Ec2Error::missing("Attribute")),
    }
}

fn grantees(p: &Params, prefix: &str) -> Ec2Result<Vec<Grantee>> {
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let user = p.string(&format!("{prefix}.{i}.UserId"));
        let group = p.string(&format!("{prefix}.{i}.Group"));
        match (user, group) {
            (None, None) => break,
            (Some(u), _) => out.push(Grantee::User(u)),
            (None, Some(g)) if g == "all" => out.push(Grantee::All),
            (None, Some(g)) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({g}) for parameter Group is invalid. Expected 'all'."
                )));
            }
        }
        i += 1;
        if i > 1000 {
            return Err(Ec2Error::invalid_value("too many permissions"));
        }
    }
    Ok(out)
}

fn group_list(p: &Params, name: &str) -> Ec2Result<Vec<Grantee>> {
    p.list(name)?
        .into_iter()
        .map(|g| {
            if g == "all" {
                Ok(Grantee::All)
            } else {
                Err(Ec2Error::invalid_value(format!(
                    "Value ({g}) for parameter UserGroup is invalid. Expected 'all'."
                )))
            }
        })
        .collect()
}

/// Why an action name could not be turned into an [`Action`].
pub fn unknown_action(name: &str) -> Ec2Error {
    if EC2_OPERATIONS.lines().any(|op| op == name) {
        Ec2Error::client(
            "UnsupportedOperation",
            format!("The action {name} is not implemented by openami yet."),
        )
    } else {
        Ec2Error::client(
            "InvalidAction",
            format!("The action {name} is not valid for this web service."),
        )
    }
}

impl Action {
    /// Parses the parameters of action `name`.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Action> {
        Ok(match name {
            "CreateVolume" => Action::CreateVolume(CreateVolume {
                size: p.int("Size")?,
                snapshot_id: p.string("SnapshotId"),
                volume_type: p.string("VolumeType"),
                iops: p.int("Iops")?,
                throughput: p.int("Throughput")?,
                availability_zone: p.string("AvailabilityZone"),
                availability_zone_id: p.string("AvailabilityZoneId"),
                encrypted: p.bool("Encrypted")?,
                multi_attach: p.bool("MultiAttachEnabled")?,
                tag_specifications: p.tag_specifications()?,
                client_token: p.string("ClientToken"),
            }),
            "DescribeVolumes" => Action::DescribeVolumes {
                ids: p.list("VolumeId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "DeleteVolume" => Action::DeleteVolume {
                id: p.required("VolumeId")?,
            },
            "ModifyVolume" => Action::ModifyVolume(ModifyVolume {
                volume_id: p.required("VolumeId")?,
                size: p.int("Size")?,
                volume_type: p.string("VolumeType"),
                iops: p.int("Iops")?,
                throughput: p.int("Throughput")?,
                multi_attach: p.bool("MultiAttachEnabled")?,
            }),
            "CreateSnapshot" => Action::CreateSnapshot {
                volume_id: p.required("VolumeId")?,
                description: p.string("Description"),
                tags: p.tag_specifications()?,
            },
            "DescribeSnapshots" => Action::DescribeSnapshots {
                ids: p.list("SnapshotId")?,
                owners: p.list("Owner")?,
                restorable_by: p.list("RestorableBy")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "DeleteSnapshot" => Action::DeleteSnapshot {
                id: p.required("SnapshotId")?,
            },
            "CopySnapshot" => Action::CopySnapshot {
                source_region: p.required("SourceRegion")?,
                source_id: p.required("SourceSnapshotId")?,
                description: p.string("Description"),
                tags: p.tag_specifications()?,
            },
            "DescribeSnapshotAttribute" => {
                snapshot_attribute(p)?;
                Action::DescribeSnapshotAttribute {
                    id: p.required("SnapshotId")?,
                }
            }
            "ModifySnapshotAttribute" => {
                let mut add = grantees(p, "CreateVolumePermission.Add")?;
                let mut remove = grantees(p, "CreateVolumePermission.Remove")?;
                let users: Vec<Grantee> =
                    p.list("UserId")?.into_iter().map(Grantee::User).collect();
                let groups = group_list(p, "UserGroup")?;
                if !users.is_empty() || !groups.is_empty() {
                    if p.get("Attribute").is_some() {
                        snapshot_attribute(p)?;
                    }
                    match p.get("OperationType") {
                        Some("add") => add.extend(users.into_iter().chain(groups)),
                        Some("remove") => remove.extend(users.into_iter().chain(groups)),
                        Some(other) => {
                            return Err(Ec2Error::invalid_value(format!(
                                "Value ({other}) for parameter operationType is invalid"
                            )));
                        }
                        None => return Err(Ec2Error::missing("OperationType")),
                    }
                }
                if add.is_empty() && remove.is_empty() {
                    return Err(Ec2Error::missing("CreateVolumePermission"));
                }
                Action::ModifySnapshotAttribute {
                    id: p.required("SnapshotId")?,
                    add,
                    remove,
                }
            }
            "ResetSnapshotAttribute" => {
                snapshot_attribute(p)?;
                Action::ResetSnapshotAttribute {
                    id: p.required("SnapshotId")?,
                }
            }
            "CreateTags" => Action::CreateTags {
                resources: p.list("ResourceId")?,
                tags: p.tags("Tag")?,
            },
            "DeleteTags" => Action::DeleteTags {
                resources: p.list("ResourceId")?,
                tags: p.optional_value_tags("Tag")?,
            },
            "DescribeTags" => Action::DescribeTags {
                filters: p.filters()?,
                page: p.page()?,
            },
            "DescribeRegions" => Action::DescribeRegions {
                names: p.list("RegionName")?,
                filters: p.filters()?,
            },
            "DescribeAvailabilityZones" => Action::DescribeAvailabilityZones {
                names: p.list("ZoneName")?,
                ids: p.list("ZoneId")?,
                filters: p.filters()?,
            },
            "RegisterImage" => Action::RegisterImage(images::parse_register(p)?),
            "DescribeImages" => Action::DescribeImages(images::parse_describe(p)?),
            "DeregisterImage" => Action::DeregisterImage(images::parse_deregister(p)?),
            "DescribeImageAttribute" => {
                Action::DescribeImageAttribute(images::parse_describe_attribute(p)?)
            }
            "ModifyImageAttribute" => {
                Action::ModifyImageAttribute(images::parse_modify_attribute(p)?)
            }
            "ResetImageAttribute" => Action::ResetImageAttribute(images::parse_reset_attribute(p)?),
            "CopyImage" => Action::CopyImage(images::parse_copy(p)?),
            "EnableImageDeprecation" => {
                Action::EnableImageDeprecation(images::parse_deprecation(p)?)
            }
            "DisableImageDeprecation" => Action::DisableImageDeprecation(images::parse_image(p)?),
            "EnableImageDeregistrationProtection" => {
                Action::EnableImageDeregistrationProtection(images::parse_protection(p)?)
            }
            "DisableImageDeregistrationProtection" => {
                Action::DisableImageDeregistrationProtection(images::parse_image(p)?)
            }
            "EnableImage" => Action::EnableImage(images::parse_image(p)?),
            "DisableImage" => Action::DisableImage(images::parse_image(p)?),
            "CancelImageLaunchPermission" => {
                Action::CancelImageLaunchPermission(images::parse_image(p)?)
            }
            "GetImageBlockPublicAccessState" => Action::GetImageBlockPublicAccessState,
            "EnableImageBlockPublicAccess" => {
                Action::EnableImageBlockPublicAccess(images::parse_block_public_access(p)?)
            }
            "DisableImageBlockPublicAccess" => Action::DisableImageBlockPublicAccess,
            other => {
                if other == "RunInstances" {
                    crate::run_options::refuse_unsupported(p)?;
                }
                if let Some(action) = InstanceAction::parse(other, p)? {
                    Action::Instance(action)
                } else if let Some(action) = TransferAction::parse(other, p)? {
                    Action::Transfer(action)
                } else if let Some(action) = KeyPairAction::parse(other, p)? {
                    Action::KeyPair(action)
                } else if let Some(action) = LaunchTemplateAction::parse(other, p)? {
                    Action::LaunchTemplate(action)
                } else if let Some(action) = VpcAction::parse(other, p)? {
                    Action::Vpc(action)
                } else if let Some(action) = InstanceOptionAction::parse(other, p)? {
                    Action::InstanceOption(action)
                } else if let Some(action) = VolumeOptionAction::parse(other, p)? {
                    Action::VolumeOption(action)
                } else if let Some(action) = AccountAction::parse(other, p)? {
                    Action::Account(action)
                } else if let Some(action) = AddressAction::parse(other, p)? {
                    Action::Address(action)
                } else if let Some(action) = AllowedImagesAction::parse(other, p)? {
                    Action::AllowedImages(action)
                } else {
                    return Err(unknown_action(other));
                }
            }
        })
    }
}
