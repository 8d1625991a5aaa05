//! Images (AMIs): RegisterImage, DescribeImages, DeregisterImage, CopyImage, the image
//! attributes (description, launch permissions, ...), deprecation, deregistration
//! protection, Enable/DisableImage and block public access for AMIs.
//!
//! An image is a catalog row of kind [`KIND`] (`ami-…` ids; operator-imported kernel and
//! ramdisk images use `aki-…` / `ari-…`) whose JSON document is an [`ImageDoc`]. Its data
//! lives in snapshots: an EBS-backed image maps its root device (and any other EBS
//! devices) to snapshots; launch permissions are `launchPermission` grants in the
//! catalog's permission table (an account id or `all`).
//!
//! Choices where AWS leaves room:
//! - RegisterImage creates images `available` at once: their data is already stored as
//!   completed snapshots, there is nothing to copy. CopyImage images are `pending` until
//!   their snapshots are copied, then `available` (or `failed`).
//! - Instance-store images: openami has no S3 bundles, so `ImageLocation` names a snapshot
//!   (`snap-…`) the caller may use. That snapshot is the *template* copied to ephemeral
//!   storage at launch; it is in use by the image like an EBS mapping's snapshot.
//! - Visibility: the owner sees its images in every state; others see an image only while
//!   it is not disabled and they hold a launch permission (their account id or `all`).
//!   Every error about an invisible image is `InvalidAMIID.NotFound`, whoever owns it.
//! - Deregistration protection shows as `disabled`, `enabled-with-cooldown`,
//!   `enabled-without-cooldown` or `disabled-until-<timestamp>` (the 24 h cooldown).
//!
//! Reads go through an in-memory index of each region's images (`index`), refreshed from
//! the catalog after every change, and DescribeImages compiles its filters once per call
//! (`filter`): listing or filtering tens of thousands of images parses nothing. It looks
//! only at the images the index's name, owner and permission sets can match (`narrow`),
//! so a name, a name prefix or an owner alias costs what it finds, not the region's size.
//!
//! Operator catalogs (Quick Start images of `amazon`, marketplace images with product
//! codes) are written straight to the catalog by [`import`], from the JSON
//! `aws ec2 describe-images` prints.

mod allowed;
mod attributes;
mod copy;
mod describe;
mod filter;
pub mod import;
mod index;
mod narrow;
mod register;
pub mod validate;

use std::sync::Mutex;

use catalog::ResourceRow;
use serde::{Deserialize, Serialize};

use crate::query::iso8601;
use crate::snapshots::Grantee;
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, snapshots};

pub use allowed::{AllowedImages, ImageCriterion};
pub use attributes::{AttributeValue, ImageAttributeName, ImageChange, ModifyImageAttribute};
pub use copy::CopyImage;
pub(crate) use copy::recover;
pub use describe::DescribeImages;
pub(crate) use filter::ImageFilters;
pub use import::{ImportError, ImportOptions, ImportReport, import_images};
pub use index::ImageIndex;
pub use register::{EbsRequest, MappingRequest, RegisterImage, SnapshotDeletion};

/// Catalog kind of images.
pub const KIND: &str = "image";
/// The permission attribute that shares an image.
pub const LAUNCH_PERMISSION: &str = "launchPermission";
/// The setting (crate::settings) that holds block public access for AMIs.
const IMAGE_BPA: &str = "image-block-public-access";

/// Serializes writes to image rows: name checks with inserts (two registrations cannot
/// both take a name) and read-modify-write of documents and states (a copy finishing
/// cannot undo a concurrent ModifyImageAttribute). DeleteSnapshot holds it too, so that
/// an image and the deletion of its snapshot cannot both succeed.
static WRITES: Mutex<()> = Mutex::new(());

/// Holds [`WRITES`].
pub(crate) fn writing() -> std::sync::MutexGuard<'static, ()> {
    WRITES.lock().unwrap_or_else(|p| p.into_inner())
}

/// An EBS volume of a block device mapping.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EbsMapping {
    /// The snapshot the volume is created from (none: an empty volume).
    pub snapshot_id: Option<String>,
    /// Size in GiB.
    pub volume_size_gib: i64,
    /// Delete the volume when the instance terminates.
    pub delete_on_termination: bool,
    /// gp2, gp3, io1, io2, st1, sc1 or standard.
    pub volume_type: String,
    /// Provisioned IOPS.
    pub iops: Option<i64>,
    /// Throughput in MiB/s (gp3).
    pub throughput: Option<i64>,
    /// Encrypted flag.
    pub encrypted: bool,
}

/// What a device of a block device mapping is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MappingTarget {
    /// An EBS volume.
    Ebs(EbsMapping),
    /// An instance-store volume, `ephemeral0` … `ephemeral23`.
    Ephemeral(String),
    /// Suppresses a device the image (or instance type) would otherwise attach.
    NoDevice,
}

/// One entry of an image's block device mapping.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockDeviceMapping {
    /// e.g. `/dev/xvda`.
    pub device_name: String,
    /// What it maps to.
    pub target: MappingTarget,
}

impl BlockDeviceMapping {
    /// The EBS part, if any.
    pub fn ebs(&self) -> Option<&EbsMapping> {
        match &self.target {
            MappingTarget::Ebs(e) => Some(e),
            _ => None,
        }
    }
}

/// Deregistration protection.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// The image may be deregistered.
    #[default]
    Disabled,
    /// The image may not be deregistered; with a cooldown, disabling it keeps the
    /// protection for 24 more hours.
    Enabled {
        /// Whether disabling starts a 24-hour cooldown.
        cooldown: bool,
    },
    /// Disabled with a cooldown that ends at this time (ms since the epoch).
    DisabledUntil(i64),
}

impl Protection {
    /// As DescribeImages shows it.
    pub fn describe(&self, now_ms: i64) -> String {
        match self {
            Protection::Enabled { cooldown: true } => "enabled-with-cooldown".into(),
            Protection::Enabled { cooldown: false } => "enabled-without-cooldown".into(),
            Protection::DisabledUntil(t) if *t > now_ms => {
                format!("disabled-until-{}", iso8601(*t))
            }
            _ => "disabled".into(),
        }
    }

    /// True while the image may not be deregistered.
    pub fn protects(&self, now_ms: i64) -> bool {
        match self {
            Protection::Enabled { .. } => true,
            Protection::DisabledUntil(t) => *t > now_ms,
            Protection::Disabled => false,
        }
    }
}

/// A product code (marketplace or devpay), set by an operator catalog import.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProductCode {
    /// The code.
    pub id: String,
    /// `marketplace` or `devpay`.
    pub kind: String,
}

/// Why an image is in its state (e.g. why a copy failed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateReason {
    /// e.g. `Server.InternalError`.
    pub code: String,
    /// A human message.
    pub message: String,
}

/// What the catalog keeps about an image. Every field has a default so that documents
/// written by an operator catalog import may leave fields out.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ImageDoc {
    /// Name, unique per account and region.
    pub name: String,
    /// Description (absent unless set).
    pub description: Option<String>,
    /// i386, x86_64, arm64, x86_64_mac or arm64_mac.
    pub architecture: String,
    /// machine, kernel or ramdisk.
    pub image_type: String,
    /// hvm or paravirtual.
    pub virtualization_type: String,
    /// Always `xen`, as EC2 reports it.
    pub hypervisor: String,
    /// ebs or instance-store.
    pub root_device_type: String,
    /// e.g. `/dev/xvda`.
    pub root_device_name: Option<String>,
    /// The block device mapping.
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// `<owner>/<name>` for EBS images; the template snapshot for instance-store ones.
    pub image_location: String,
    /// Instance-store images: the snapshot copied to ephemeral storage at launch.
    pub instance_store_template: Option<String>,
    /// Kernel image (`aki-…`).
    pub kernel_id: Option<String>,
    /// Ramdisk image (`ari-…`).
    pub ramdisk_id: Option<String>,
    /// legacy-bios, uefi or uefi-preferred.
    pub boot_mode: Option<String>,
    /// `v2.0` when NitroTPM is supported.
    pub tpm_support: Option<String>,
    /// `v2.0` when instances must use IMDSv2.
    pub imds_support: Option<String>,
    /// UEFI variable store (base64), recorded.
    pub uefi_data: Option<String>,
    /// ENA support flag.
    pub ena_support: Option<bool>,
    /// `simple` when SR-IOV networking is enabled.
    pub sriov_net_support: Option<String>,
    /// `Windows` for Windows images.
    pub platform: Option<String>,
    /// e.g. `Linux/UNIX`.
    pub platform_details: String,
    /// e.g. `RunInstances`.
    pub usage_operation: String,
    /// Product codes.
    pub product_codes: Vec<ProductCode>,
    /// `amazon`, `aws-marketplace`, ... (operator images only).
    pub owner_alias: Option<String>,
    /// When it was registered.
    pub creation_ms: i64,
    /// When it is (or was) deprecated.
    pub deprecation_ms: Option<i64>,
    /// Deregistration protection.
    pub deregistration_protection: Protection,
    /// When an instance was last launched from it.
    pub last_launched_ms: Option<i64>,
    /// For copies: the source image.
    pub source_image_id: Option<String>,
    /// For copies: the source region.
    pub source_image_region: Option<String>,
    /// Why it is in its state.
    pub state_reason: Option<StateReason>,
    /// Idempotency token of the CopyImage call.
    pub client_token: Option<String>,
}

impl ImageDoc {
    /// Every snapshot the image uses: EBS mappings and the instance-store template.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .block_device_mappings
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id.clone()))
            .chain(self.instance_store_template.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// True once the deprecation time has passed.
    pub fn deprecated(&self, now_ms: i64) -> bool {
        self.deprecation_ms.is_some_and(|t| t <= now_ms)
    }
}

/// An image as Describe calls return it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageView {
    /// Image id.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// pending | available | failed | disabled.
    pub state: String,
    /// Public (launch permission for `all`).
    pub public: bool,
    /// Stored attributes.
    pub doc: ImageDoc,
    /// Tags (only shown to the owner).
    pub tags: Vec<(String, String)>,
    /// `ImageAllowed` for the caller when its Allowed AMIs setting is on.
    pub allowed: Option<bool>,
}

pub(crate) fn doc_of(row: &ResourceRow) -> Ec2Result<ImageDoc> {
    serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("image document", e))
}

pub(crate) fn encode(doc: &ImageDoc) -> Ec2Result<String> {
    serde_json::to_string(doc).map_err(|e| Ec2Error::internal("image document", e))
}

/// True for `ami-`, `aki-` and `ari-` ids.
pub fn is_image_id(id: &str) -> bool {
    ["ami", "aki", "ari"].iter().any(|p| ids::is_valid(p, id))
}

/// Checks an image id's shape (`InvalidAMIID.Malformed`).
pub fn check_image_id(id: &str) -> Ec2Result<()> {
    if is_image_id(id) {
        Ok(())
    } else {
        Err(Ec2Error::client(
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"ami-...\")"),
        ))
    }
}

/// `InvalidAMIID.NotFound` for an id.
pub fn not_found(id: &str) -> Ec2Error {
    Ec2Error::client(
        "InvalidAMIID.NotFound",
        format!("The image id '[{id}]' does not exist"),
    )
}

/// Can `caller` see (and launch) an image of `owner` in `state` with these grants? The
/// region is the caller's.
pub(crate) fn launchable(caller: &Caller, owner: &str, state: &str, grantees: &[String]) -> bool {
    owner == caller.account_id
        || (state != "disabled"
            && grantees
                .iter()
                .any(|g| g == "all" || *g == caller.account_id))
}

/// Can `caller` see and launch the image in this row?
fn can_launch(caller: &Caller, row: &ResourceRow, grantees: &[String]) -> bool {
    row.kind == KIND
        && row.region == caller.region
        && launchable(caller, &row.account_id, &row.state, grantees)
}

fn grantees_of(stored: &[String]) -> Vec<Grantee> {
    stored
        .iter()
        .map(|g| {
            if g == "all" {
                Grantee::All
            } else {
                Grantee::User(g.clone())
            }
        })
        .collect()
}

/// The image (if any) that uses a snapshot, as the snapshot's owner may be told: another
/// account's image is not named.
pub(crate) fn image_using_snapshot(cloud: &Cloud, snapshot_id: &str) -> Ec2Result<Option<String>> {
    let Some(snapshot) = cloud
        .catalog
        .resource(snapshot_id)?
        .filter(|r| r.kind == snapshots::KIND)
    else {
        return Ok(None);
    };
    cloud.with_region_images(&snapshot.region, |r| {
        r.images
            .iter()
            .map(|e| &e.0)
            .find(|i| i.view.doc.snapshot_ids().iter().any(|s| s == snapshot_id))
            .map(|i| {
                if i.view.owner_id == snapshot.account_id {
                    i.view.id.clone()
                } else {
                    "an image of another account".to_string()
                }
            })
    })
}

impl Cloud {
    /// Launch permission grants of an image (`all` or account ids).
    pub(crate) fn image_grants(&self, id: &str) -> Ec2Result<Vec<String>> {
        Ok(self.catalog.permissions(id, LAUNCH_PERMISSION)?)
    }

    /// An image `caller` may see, or `InvalidAMIID.NotFound` / `.Malformed`.
    pub(crate) fn visible_image(&self, caller: &Caller, id: &str) -> Ec2Result<ResourceRow> {
        check_image_id(id)?;
        let grants = self.image_grants(id)?;
        match self.catalog.resource(id)? {
            Some(row) if can_launch(caller, &row, &grants) => Ok(row),
            _ => Err(not_found(id)),
        }
    }

    /// An image `caller` owns. One it can merely see is `AuthFailure`; one it cannot see
    /// is `InvalidAMIID.NotFound`.
    pub(crate) fn owned_image(&self, caller: &Caller, id: &str) -> Ec2Result<ResourceRow> {
        let row = self.visible_image(caller, id)?;
        if row.account_id != caller.account_id {
            return Err(Ec2Error::client(
                "AuthFailure",
                format!("Not authorized for image:{id}"),
            ));
        }
        Ok(row)
    }

    /// Replaces the document of an image the caller owns, keeping its state.
    fn update_image_doc(
        &self,
        caller: &Caller,
        id: &str,
        change: impl FnOnce(&mut ImageDoc) -> Ec2Result<()>,
    ) -> Ec2Result<()> {
        let _writing = writing();
        let row = self.owned_image(caller, id)?;
        let mut doc = doc_of(&row)?;
        change(&mut doc)?;
        self.catalog
            .update_resource(&row.id, &row.state, &encode(&doc)?)?;
        self.refresh_image(&row.id)
    }

    /// Records a launch of image `id` (its `LastLaunchedTime`), whoever launched it.
    pub(crate) fn touch_image_launched(&self, id: &str) {
        let result = (|| -> Ec2Result<()> {
            let _writing = writing();
            let Some(row) = self.catalog.resource(id)? else {
                return Ok(());
            };
            let mut doc = doc_of(&row)?;
            doc.last_launched_ms = Some(catalog::now_ms());
            self.catalog
                .update_resource(&row.id, &row.state, &encode(&doc)?)?;
            self.refresh_image(&row.id)
        })();
        if let Err(e) = result {
            tracing::warn!(image = %id, error = %e, "cannot record the launch time");
        }
    }

    /// The id of the caller's image (in its region) named `name`, if any.
    pub(crate) fn image_named(&self, caller: &Caller, name: &str) -> Ec2Result<Option<String>> {
        self.with_region_images(&caller.region, |r| r.named(&caller.account_id, name))
    }

    /// Inserts a new image row with its tags, refusing a name already in use. With
    /// `snapshots_exist` (the image's snapshots were created before it, not by a copy
    /// still to come), refuses snapshots a concurrent DeleteSnapshot removed.
    pub(crate) fn insert_image(
        &self,
        caller: &Caller,
        id: &str,
        state: &str,
        doc: &ImageDoc,
        tags: &[(String, String)],
        snapshots_exist: bool,
    ) -> Ec2Result<()> {
        let _writing = writing();
        let snapshots = if snapshots_exist {
            doc.snapshot_ids()
        } else {
            Vec::new()
        };
        for snapshot in &snapshots {
            if self.catalog.resource(snapshot)?.is_none() {
                return Err(Ec2Error::not_found(
                    "InvalidSnapshot.NotFound",
                    "snapshot",
                    snapshot,
                ));
            }
        }
        if let Some(existing) = self.image_named(caller, &doc.name)? {
            return Err(Ec2Error::client(
                "InvalidAMIName.Duplicate",
                format!("AMI name {} is already in use by AMI {existing}", doc.name),
            ));
        }
        self.catalog.insert_resource_with_tags(
            &ResourceRow {
                id: id.to_string(),
                kind: KIND.into(),
                account_id: caller.account_id.clone(),
                region: caller.region.clone(),
                state: state.into(),
                doc: encode(doc)?,
                created_at_ms: doc.creation_ms,
            },
            tags,
        )?;
        self.refresh_image(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ImageView {
        ImageView {
            id: "ami-0123456789abcdef0".into(),
            owner_id: "111111111111".into(),
            state: "available".into(),
            public: true,
            doc: ImageDoc {
                name: "web (v1)".into(),
                architecture: "arm64".into(),
                image_type: "machine".into(),
                virtualization_type: "hvm".into(),
                hypervisor: "xen".into(),
                root_device_type: "ebs".into(),
                root_device_name: Some("/dev/xvda".into()),
                block_device_mappings: vec![
                    BlockDeviceMapping {
                        device_name: "/dev/xvda".into(),
                        target: MappingTarget::Ebs(EbsMapping {
                            snapshot_id: Some("snap-0123456789abcdef0".into()),
                            volume_size_gib: 8,
                            delete_on_termination: true,
                            volume_type: "gp3".into(),
                            iops: Some(3000),
                            throughput: Some(125),
                            encrypted: false,
                        }),
                    },
                    BlockDeviceMapping {
                        device_name: "/dev/sdb".into(),
                        target: MappingTarget::Ephemeral("ephemeral0".into()),
                    },
                ],
                platform: Some("Windows".into()),
                creation_ms: 0,
                ..ImageDoc::default()
            },
            tags: vec![("team".into(), "web".into())],
            allowed: None,
        }
    }

    #[test]
    fn filter_values() {
        let v = view();
        let f = |n: &str| v.values(n).unwrap();
        assert_eq!(f("architecture"), ["arm64"]);
        assert_eq!(
            f("block-device-mapping.device-name"),
            ["/dev/xvda", "/dev/sdb"]
        );
        assert_eq!(f("block-device-mapping.volume-size"), ["8"]);
        assert_eq!(f("block-device-mapping.delete-on-termination"), ["true"]);
        assert_eq!(
            f("block-device-mapping.snapshot-id"),
            ["snap-0123456789abcdef0"]
        );
        assert_eq!(f("is-public"), ["true"]);
        assert_eq!(f("platform"), ["windows"]);
        assert_eq!(f("creation-date"), ["1970-01-01T00:00:00.000Z"]);
        assert!(f("kernel-id").is_empty());
        assert!(f("description").is_empty());
        assert!(v.values("no-such-filter").is_none());
        let filter = |name: &str, value: &str| crate::query::Filter {
            name: name.into(),
            values: vec![value.into()],
        };
        assert!(crate::query::matches(&v, &[filter("name", "web (*")]).unwrap());
        assert!(crate::query::matches(&v, &[filter("tag:team", "w?b")]).unwrap());
        assert!(
            !crate::query::matches(&v, &[filter("root-device-type", "instance-store")]).unwrap()
        );
        assert!(crate::query::matches(&v, &[filter("bogus", "x")]).is_err());
    }

    #[test]
    fn protection_states() {
        assert_eq!(Protection::Disabled.describe(0), "disabled");
        assert!(Protection::Enabled { cooldown: false }.protects(0));
        let p = Protection::DisabledUntil(1000);
        assert!(p.protects(999));
        assert!(!p.protects(1000));
        assert_eq!(p.describe(0), "disabled-until-1970-01-01T00:00:01.000Z");
        assert_eq!(p.describe(2000), "disabled");
    }

    #[test]
    fn snapshots_and_ids() {
        let mut d = view().doc;
        d.instance_store_template = Some("snap-0123456789abcdef0".into());
        assert_eq!(d.snapshot_ids(), ["snap-0123456789abcdef0"]);
        assert!(is_image_id("aki-0123456789abcdef0"));
        assert!(!is_image_id("snap-0123456789abcdef0"));
        assert_eq!(
            check_image_id("ami-xyz").unwrap_err().code,
            "InvalidAMIID.Malformed"
        );
    }
}
