//! Image attributes and lifecycle switches: Describe/Modify/ResetImageAttribute,
//! Enable/DisableImageDeprecation, Enable/DisableImageDeregistrationProtection,
//! Enable/DisableImage and CancelImageLaunchPermission.

use catalog::now_ms;

use crate::query::iso8601;
use crate::snapshots::Grantee;
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

use super::validate::check_description;
use super::{
    BlockDeviceMapping, IMAGE_BPA, LAUNCH_PERMISSION, ProductCode, Protection, doc_of, grantees_of,
    writing,
};

/// Longest a deprecation may be scheduled ahead: 10 years.
const MAX_DEPRECATION_MS: i64 = 10 * 366 * 86_400_000;
/// The cooldown of deregistration protection: 24 hours.
const COOLDOWN_MS: i64 = 86_400_000;

/// The attributes DescribeImageAttribute knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageAttributeName {
    /// `description`.
    Description,
    /// `kernel`.
    Kernel,
    /// `ramdisk`.
    Ramdisk,
    /// `launchPermission`.
    LaunchPermission,
    /// `productCodes`.
    ProductCodes,
    /// `blockDeviceMapping`.
    BlockDeviceMapping,
    /// `sriovNetSupport`.
    SriovNetSupport,
    /// `bootMode`.
    BootMode,
    /// `tpmSupport`.
    TpmSupport,
    /// `uefiData`.
    UefiData,
    /// `lastLaunchedTime`.
    LastLaunchedTime,
    /// `imdsSupport`.
    ImdsSupport,
    /// `deregistrationProtection`.
    DeregistrationProtection,
}

const NAMES: &[(&str, ImageAttributeName)] = &[
    ("description", ImageAttributeName::Description),
    ("kernel", ImageAttributeName::Kernel),
    ("ramdisk", ImageAttributeName::Ramdisk),
    ("launchPermission", ImageAttributeName::LaunchPermission),
    ("productCodes", ImageAttributeName::ProductCodes),
    ("blockDeviceMapping", ImageAttributeName::BlockDeviceMapping),
    ("sriovNetSupport", ImageAttributeName::SriovNetSupport),
    ("bootMode", ImageAttributeName::BootMode),
    ("tpmSupport", ImageAttributeName::TpmSupport),
    ("uefiData", ImageAttributeName::UefiData),
    ("lastLaunchedTime", ImageAttributeName::LastLaunchedTime),
    ("imdsSupport", ImageAttributeName::ImdsSupport),
    (
        "deregistrationProtection",
        ImageAttributeName::DeregistrationProtection,
    ),
];

impl ImageAttributeName {
    /// Parses the `Attribute` parameter.
    pub fn parse(name: &str) -> Ec2Result<Self> {
        crate::query::parse_attribute(NAMES, name)
    }

    /// The wire name, which is also the response element's name.
    pub fn as_str(self) -> &'static str {
        crate::query::attribute_name(NAMES, self)
    }
}

/// The value of one image attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeValue {
    /// A single value (`<name><value>…</value></name>`), absent when unset.
    Text(Option<String>),
    /// Launch permissions.
    LaunchPermissions(Vec<Grantee>),
    /// Product codes.
    ProductCodes(Vec<ProductCode>),
    /// The block device mapping.
    BlockDeviceMappings(Vec<BlockDeviceMapping>),
}

/// One change ModifyImageAttribute can make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageChange {
    /// A new description.
    Description(String),
    /// Launch permission grants to add and remove.
    LaunchPermission {
        /// Grants to add.
        add: Vec<Grantee>,
        /// Grants to remove.
        remove: Vec<Grantee>,
    },
    /// `ImdsSupport` (only `v2.0`; it cannot be undone).
    ImdsSupport(String),
}

/// ModifyImageAttribute parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModifyImageAttribute {
    /// `ImageId`.
    pub image_id: String,
    /// The change.
    pub change: ImageChange,
}

fn check_grantees(grantees: &[Grantee]) -> Ec2Result<()> {
    for g in grantees {
        if let Grantee::User(user) = g
            && !ids::is_account_id(user)
        {
            return Err(Ec2Error::client(
                "InvalidAMIAttributeItemValue",
                format!("Invalid attribute item value \"{user}\" for userId item type."),
            ));
        }
    }
    Ok(())
}

fn grantee_str(g: &Grantee) -> &str {
    match g {
        Grantee::User(u) => u,
        Grantee::All => "all",
    }
}

impl Cloud {
    /// DescribeImageAttribute. Launch permissions are the owner's business; the other
    /// attributes can be read by anyone who can see the image.
    pub fn describe_image_attribute(
        &self,
        caller: &Caller,
        id: &str,
        attribute: ImageAttributeName,
    ) -> Ec2Result<AttributeValue> {
        use ImageAttributeName as A;
        let row = if attribute == A::LaunchPermission {
            self.owned_image(caller, id)?
        } else {
            self.visible_image(caller, id)?
        };
        let d = doc_of(&row)?;
        Ok(match attribute {
            A::Description => AttributeValue::Text(d.description),
            A::Kernel => AttributeValue::Text(d.kernel_id),
            A::Ramdisk => AttributeValue::Text(d.ramdisk_id),
            A::LaunchPermission => {
                AttributeValue::LaunchPermissions(grantees_of(&self.image_grants(id)?))
            }
            A::ProductCodes => AttributeValue::ProductCodes(d.product_codes),
            A::BlockDeviceMapping => AttributeValue::BlockDeviceMappings(d.block_device_mappings),
            A::SriovNetSupport => AttributeValue::Text(d.sriov_net_support),
            A::BootMode => AttributeValue::Text(d.boot_mode),
            A::TpmSupport => AttributeValue::Text(d.tpm_support),
            A::UefiData => AttributeValue::Text(d.uefi_data),
            A::LastLaunchedTime => AttributeValue::Text(d.last_launched_ms.map(iso8601)),
            A::ImdsSupport => AttributeValue::Text(d.imds_support),
            A::DeregistrationProtection => {
                AttributeValue::Text(Some(d.deregistration_protection.describe(now_ms())))
            }
        })
    }

    /// ModifyImageAttribute: description, launch permissions or IMDS support. Making an
    /// image public is refused while block public access for AMIs is on.
    pub fn modify_image_attribute(
        &self,
        caller: &Caller,
        req: ModifyImageAttribute,
    ) -> Ec2Result<()> {
        let id = req.image_id.as_str();
        match req.change {
            ImageChange::Description(text) => {
                check_description(&text)?;
                self.update_image_doc(caller, id, |d| {
                    d.description = Some(text);
                    Ok(())
                })
            }
            ImageChange::ImdsSupport(value) => {
                if value != "v2.0" {
                    return Err(Ec2Error::invalid_value(format!(
                        "Value ({value}) for parameter ImdsSupport is invalid. Expected 'v2.0'."
                    )));
                }
                self.update_image_doc(caller, id, |d| {
                    d.imds_support = Some(value);
                    Ok(())
                })
            }
            ImageChange::LaunchPermission { add, remove } => {
                self.owned_image(caller, id)?;
                if add.is_empty() && remove.is_empty() {
                    return Err(Ec2Error::client(
                        "InvalidParameterCombination",
                        "No attributes specified.",
                    ));
                }
                check_grantees(&add)?;
                check_grantees(&remove)?;
                if add.contains(&Grantee::All)
                    && self.image_block_public_access_state(caller)? == "block-new-sharing"
                {
                    return Err(Ec2Error::client(
                        "OperationNotPermitted",
                        "You can't publicly share this image because block public access for AMIs is enabled for this account. To publicly share the image, you must call the DisableImageBlockPublicAccess API.",
                    ));
                }
                for g in &add {
                    self.catalog
                        .add_permission(id, LAUNCH_PERMISSION, grantee_str(g))?;
                }
                for g in &remove {
                    self.catalog
                        .remove_permission(id, LAUNCH_PERMISSION, grantee_str(g))?;
                }
                self.refresh_image(id)
            }
        }
    }

    /// ResetImageAttribute(launchPermission): the image becomes private.
    pub fn reset_image_launch_permission(&self, caller: &Caller, id: &str) -> Ec2Result<()> {
        self.owned_image(caller, id)?;
        self.catalog.clear_permissions(id, LAUNCH_PERMISSION)?;
        self.refresh_image(id)
    }

    /// CancelImageLaunchPermission: the caller gives up the launch permission another
    /// account granted it.
    pub fn cancel_image_launch_permission(&self, caller: &Caller, id: &str) -> Ec2Result<()> {
        let row = self.visible_image(caller, id)?;
        if row.account_id == caller.account_id {
            return Err(Ec2Error::invalid_value(
                "You cannot cancel launch permissions for an image you own; use ModifyImageAttribute",
            ));
        }
        self.catalog
            .remove_permission(id, LAUNCH_PERMISSION, &caller.account_id)?;
        self.refresh_image(id)
    }

    /// EnableImageDeprecation: the image becomes deprecated at `at_ms`, which must be in
    /// the future (and at most 10 years ahead). Seconds are kept, not rounded.
    pub fn enable_image_deprecation(&self, caller: &Caller, id: &str, at_ms: i64) -> Ec2Result<()> {
        let now = now_ms();
        if at_ms < now {
            return Err(Ec2Error::invalid_value(format!(
                "The deprecation time {} is in the past",
                iso8601(at_ms)
            )));
        }
        if at_ms > now + MAX_DEPRECATION_MS {
            return Err(Ec2Error::invalid_value(
                "The deprecation time can be at most 10 years from now",
            ));
        }
        self.update_image_doc(caller, id, |d| {
            d.deprecation_ms = Some(at_ms);
            Ok(())
        })
    }

    /// DisableImageDeprecation.
    pub fn disable_image_deprecation(&self, caller: &Caller, id: &str) -> Ec2Result<()> {
        self.update_image_doc(caller, id, |d| {
            d.deprecation_ms = None;
            Ok(())
        })
    }

    /// EnableImageDeregistrationProtection.
    pub fn enable_image_deregistration_protection(
        &self,
        caller: &Caller,
        id: &str,
        with_cooldown: bool,
    ) -> Ec2Result<()> {
        self.update_image_doc(caller, id, |d| {
            d.deregistration_protection = Protection::Enabled {
                cooldown: with_cooldown,
            };
            Ok(())
        })
    }

    /// DisableImageDeregistrationProtection: with a cooldown, protection lasts 24 more
    /// hours.
    pub fn disable_image_deregistration_protection(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Ec2Result<()> {
        self.update_image_doc(caller, id, |d| {
            d.deregistration_protection = match d.deregistration_protection {
                Protection::Enabled { cooldown: true } => {
                    Protection::DisabledUntil(now_ms() + COOLDOWN_MS)
                }
                Protection::DisabledUntil(t) => Protection::DisabledUntil(t),
                _ => Protection::Disabled,
            };
            Ok(())
        })
    }

    /// EnableImage (`disabled` → `available`) and DisableImage (`available` →
    /// `disabled`). A disabled image is hidden from everyone but its owner; its launch
    /// permissions are kept and apply again once it is enabled.
    pub fn set_image_enabled(&self, caller: &Caller, id: &str, enabled: bool) -> Ec2Result<()> {
        let _writing = writing();
        let row = self.owned_image(caller, id)?;
        let (from, to) = if enabled {
            ("disabled", "available")
        } else {
            ("available", "disabled")
        };
        if row.state == to {
            return Ok(());
        }
        if row.state != from {
            return Err(Ec2Error::client(
                "IncorrectState",
                format!("Image {id} is {}; it must be {from}", row.state),
            ));
        }
        self.catalog.update_resource(id, to, &row.doc)?;
        self.refresh_image(id)
    }
}

/// Block public access for AMIs, a per-account, per-region setting (crate::settings).
impl Cloud {
    /// GetImageBlockPublicAccessState: `block-new-sharing` or `unblocked` (the default).
    pub fn image_block_public_access_state(&self, caller: &Caller) -> Ec2Result<String> {
        Ok(self
            .account_setting(IMAGE_BPA, &caller.account_id, &caller.region)?
            .unwrap_or_else(|| "unblocked".to_string()))
    }

    fn set_image_block_public_access(&self, caller: &Caller, state: &str) -> Ec2Result<String> {
        self.set_account_setting(caller, IMAGE_BPA, state)?;
        Ok(state.to_string())
    }

    /// EnableImageBlockPublicAccess: `state` must be `block-new-sharing`.
    pub fn enable_image_block_public_access(
        &self,
        caller: &Caller,
        state: &str,
    ) -> Ec2Result<String> {
        if state != "block-new-sharing" {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({state}) for parameter ImageBlockPublicAccessState is invalid. Expected 'block-new-sharing'."
            )));
        }
        self.set_image_block_public_access(caller, state)
    }

    /// DisableImageBlockPublicAccess: back to `unblocked`.
    pub fn disable_image_block_public_access(&self, caller: &Caller) -> Ec2Result<String> {
        self.set_image_block_public_access(caller, "unblocked")
    }
}
