//! The input of a catalog import: the JSON `aws ec2 describe-images` prints
//! (`{"Images": [...]}`, or a bare list of images), with the field names AWS uses.
//!
//! Every field is optional here and unknown fields are ignored: the rules about what an
//! imported image needs live in the parent module. Each entry is deserialized on its own,
//! so that one malformed image is reported (naming the field at fault) without failing
//! the others.

use serde::Deserialize;
use serde_json::Value;

use super::{ImportError, MAX_INPUT_BYTES};

/// One image as `aws ec2 describe-images` prints it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribedImage {
    /// `ami-…`, `aki-…` or `ari-…`.
    pub image_id: Option<String>,
    /// The AMI name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// i386, x86_64, arm64, x86_64_mac or arm64_mac.
    pub architecture: Option<String>,
    /// machine, kernel or ramdisk.
    pub image_type: Option<String>,
    /// hvm or paravirtual.
    pub virtualization_type: Option<String>,
    /// xen or ovm.
    pub hypervisor: Option<String>,
    /// ebs or instance-store.
    pub root_device_type: Option<String>,
    /// e.g. `/dev/xvda`.
    pub root_device_name: Option<String>,
    /// The block device mapping.
    pub block_device_mappings: Option<Vec<DescribedMapping>>,
    /// ENA support.
    pub ena_support: Option<bool>,
    /// `simple`.
    pub sriov_net_support: Option<String>,
    /// legacy-bios, uefi or uefi-preferred.
    pub boot_mode: Option<String>,
    /// `v2.0`.
    pub tpm_support: Option<String>,
    /// `v2.0`.
    pub imds_support: Option<String>,
    /// `windows` for Windows images.
    pub platform: Option<String>,
    /// e.g. `Linux/UNIX`.
    pub platform_details: Option<String>,
    /// e.g. `RunInstances`.
    pub usage_operation: Option<String>,
    /// Marketplace or devpay product codes.
    pub product_codes: Option<Vec<DescribedProductCode>>,
    /// ISO 8601 creation time.
    pub creation_date: Option<String>,
    /// ISO 8601 deprecation time.
    pub deprecation_time: Option<String>,
    /// Tags.
    pub tags: Option<Vec<DescribedTag>>,
    /// Public (launch permission for everyone).
    pub public: Option<bool>,
    /// Owner account id.
    pub owner_id: Option<String>,
    /// `amazon`, `aws-marketplace`, ...
    pub image_owner_alias: Option<String>,
    /// Kernel image.
    pub kernel_id: Option<String>,
    /// Ramdisk image.
    pub ramdisk_id: Option<String>,
    /// available, disabled, ...
    pub state: Option<String>,
    /// e.g. `amazon/al2023-ami-…`.
    pub image_location: Option<String>,
}

/// One entry of `BlockDeviceMappings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribedMapping {
    /// e.g. `/dev/xvda`.
    pub device_name: Option<String>,
    /// `ephemeralN`.
    pub virtual_name: Option<String>,
    /// Present (usually empty) to suppress the device.
    pub no_device: Option<String>,
    /// An EBS volume.
    pub ebs: Option<DescribedEbs>,
}

/// The `Ebs` part of a mapping.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribedEbs {
    /// The snapshot (need not exist locally).
    pub snapshot_id: Option<String>,
    /// Size in GiB.
    pub volume_size: Option<i64>,
    /// gp2, gp3, io1, io2, st1, sc1 or standard.
    pub volume_type: Option<String>,
    /// Delete on termination.
    pub delete_on_termination: Option<bool>,
    /// Encrypted.
    pub encrypted: Option<bool>,
    /// Provisioned IOPS.
    pub iops: Option<i64>,
    /// Throughput in MiB/s.
    pub throughput: Option<i64>,
}

/// One entry of `ProductCodes`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribedProductCode {
    /// The code.
    pub product_code_id: Option<String>,
    /// `marketplace` or `devpay`.
    pub product_code_type: Option<String>,
}

/// One entry of `Tags`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribedTag {
    /// Key.
    pub key: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// One entry of the input, deserialized (or not) on its own.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's `ImageId` if it has a string one, for reports.
    pub image_id: Option<String>,
    /// The image, or why it could not be read.
    pub image: Result<DescribedImage, String>,
}

/// Reads one entry. On a type error, finds the top-level field at fault by reading each
/// field alone (every field is optional, so only the bad one fails).
fn entry(value: &Value) -> Entry {
    let image_id = value
        .get("ImageId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Value::Object(fields) = value else {
        return Entry {
            image_id,
            image: Err("an image must be a JSON object".into()),
        };
    };
    let image = DescribedImage::deserialize(value).map_err(|e| {
        fields
            .iter()
            .find_map(|(key, v)| {
                let alone = Value::Object(std::iter::once((key.clone(), v.clone())).collect());
                DescribedImage::deserialize(&alone)
                    .err()
                    .map(|e| format!("field {key}: {e}"))
            })
            .unwrap_or_else(|| e.to_string())
    });
    Entry { image_id, image }
}

/// Parses the input: `{"Images": [...]}` (other top-level fields, such as `NextToken`,
/// are ignored) or a bare list of images, at most [`MAX_INPUT_BYTES`].
pub fn parse_input(input: &[u8]) -> Result<Vec<Entry>, ImportError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(ImportError::TooLarge(input.len()));
    }
    let value: Value = serde_json::from_slice(input).map_err(ImportError::Json)?;
    let list = match value {
        Value::Array(list) => list,
        Value::Object(mut top) => match top.remove("Images") {
            Some(Value::Array(list)) => list,
            _ => return Err(ImportError::Shape),
        },
        _ => return Err(ImportError::Shape),
    };
    Ok(list.iter().map(entry).collect())
}
