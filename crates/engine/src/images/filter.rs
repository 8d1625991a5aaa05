//! DescribeImages filters. Values are visited by reference and patterns are compiled
//! once per call, so that matching a filter against tens of thousands of indexed images
//! allocates nothing for the common filters (`name`, `architecture`, `state`, ...).
//! Semantics are those of [`crate::query::matches`]: filters AND, values OR, `*` and `?`
//! wildcards, unknown names are an error.

use crate::query::{Filter, Filterable, Glob, iso8601};
use crate::{Ec2Error, Ec2Result};

use super::ImageView;

/// Calls `f` on each value until it returns true; returns whether one did.
type Visit<'a> = &'a mut dyn FnMut(&str) -> bool;

/// A filter of images other than the tag filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attr {
    /// `architecture`.
    Architecture,
    /// `block-device-mapping.delete-on-termination`.
    BlockDeviceMappingDeleteOnTermination,
    /// `block-device-mapping.device-name`.
    BlockDeviceMappingDeviceName,
    /// `block-device-mapping.snapshot-id`.
    BlockDeviceMappingSnapshotId,
    /// `block-device-mapping.volume-size`.
    BlockDeviceMappingVolumeSize,
    /// `block-device-mapping.volume-type`.
    BlockDeviceMappingVolumeType,
    /// `block-device-mapping.encrypted`.
    BlockDeviceMappingEncrypted,
    /// `boot-mode`.
    BootMode,
    /// `creation-date`.
    CreationDate,
    /// `deprecation-time`.
    DeprecationTime,
    /// `description`.
    Description,
    /// `ena-support`.
    EnaSupport,
    /// `free-tier-eligible`.
    FreeTierEligible,
    /// `hypervisor`.
    Hypervisor,
    /// `image-id`.
    ImageId,
    /// `image-type`.
    ImageType,
    /// `imds-support`.
    ImdsSupport,
    /// `is-public`.
    IsPublic,
    /// `kernel-id`.
    KernelId,
    /// `manifest-location`.
    ManifestLocation,
    /// `name`.
    Name,
    /// `owner-alias`.
    OwnerAlias,
    /// `owner-id`.
    OwnerId,
    /// `platform`.
    Platform,
    /// `platform-details`.
    PlatformDetails,
    /// `product-code`.
    ProductCode,
    /// `product-code.type`.
    ProductCodeType,
    /// `ramdisk-id`.
    RamdiskId,
    /// `root-device-name`.
    RootDeviceName,
    /// `root-device-type`.
    RootDeviceType,
    /// `source-image-id`.
    SourceImageId,
    /// `source-image-region`.
    SourceImageRegion,
    /// `source-instance-id`.
    SourceInstanceId,
    /// `sriov-net-support`.
    SriovNetSupport,
    /// `state`.
    State,
    /// `state-reason-code`.
    StateReasonCode,
    /// `state-reason-message`.
    StateReasonMessage,
    /// `tpm-support`.
    TpmSupport,
    /// `virtualization-type`.
    VirtualizationType,
}

const ATTRS: &[(&str, Attr)] = &[
    ("architecture", Attr::Architecture),
    (
        "block-device-mapping.delete-on-termination",
        Attr::BlockDeviceMappingDeleteOnTermination,
    ),
    (
        "block-device-mapping.device-name",
        Attr::BlockDeviceMappingDeviceName,
    ),
    (
        "block-device-mapping.snapshot-id",
        Attr::BlockDeviceMappingSnapshotId,
    ),
    (
        "block-device-mapping.volume-size",
        Attr::BlockDeviceMappingVolumeSize,
    ),
    (
        "block-device-mapping.volume-type",
        Attr::BlockDeviceMappingVolumeType,
    ),
    (
        "block-device-mapping.encrypted",
        Attr::BlockDeviceMappingEncrypted,
    ),
    ("boot-mode", Attr::BootMode),
    ("creation-date", Attr::CreationDate),
    ("deprecation-time", Attr::DeprecationTime),
    ("description", Attr::Description),
    ("ena-support", Attr::EnaSupport),
    ("free-tier-eligible", Attr::FreeTierEligible),
    ("hypervisor", Attr::Hypervisor),
    ("image-id", Attr::ImageId),
    ("image-type", Attr::ImageType),
    ("imds-support", Attr::ImdsSupport),
    ("is-public", Attr::IsPublic),
    ("kernel-id", Attr::KernelId),
    ("manifest-location", Attr::ManifestLocation),
    ("name", Attr::Name),
    ("owner-alias", Attr::OwnerAlias),
    ("owner-id", Attr::OwnerId),
    ("platform", Attr::Platform),
    ("platform-details", Attr::PlatformDetails),
    ("product-code", Attr::ProductCode),
    ("product-code.type", Attr::ProductCodeType),
    ("ramdisk-id", Attr::RamdiskId),
    ("root-device-name", Attr::RootDeviceName),
    ("root-device-type", Attr::RootDeviceType),
    ("source-image-id", Attr::SourceImageId),
    ("source-image-region", Attr::SourceImageRegion),
    ("source-instance-id", Attr::SourceInstanceId),
    ("sriov-net-support", Attr::SriovNetSupport),
    ("state", Attr::State),
    ("state-reason-code", Attr::StateReasonCode),
    ("state-reason-message", Attr::StateReasonMessage),
    ("tpm-support", Attr::TpmSupport),
    ("virtualization-type", Attr::VirtualizationType),
];

impl Attr {
    fn parse(name: &str) -> Option<Self> {
        ATTRS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }
}

impl ImageView {
    /// Visits the values of the named filter (tag filters aside) until `f` returns true.
    /// Returns `None` if the name is not a filter of images, else whether `f` accepted
    /// a value.
    pub fn visit(&self, name: &str, f: Visit<'_>) -> Option<bool> {
        Attr::parse(name).map(|a| self.visit_attr(a, f))
    }

    fn visit_attr(&self, attr: Attr, f: Visit<'_>) -> bool {
        let d = &self.doc;
        let opt = |s: &Option<String>, f: Visit<'_>| s.as_deref().is_some_and(f);
        let ebs = || d.block_device_mappings.iter().filter_map(|m| m.ebs());
        match attr {
            Attr::Architecture => f(&d.architecture),
            Attr::BlockDeviceMappingDeleteOnTermination => ebs().any(|e| {
                f(if e.delete_on_termination {
                    "true"
                } else {
                    "false"
                })
            }),
            Attr::BlockDeviceMappingDeviceName => {
                d.block_device_mappings.iter().any(|m| f(&m.device_name))
            }
            Attr::BlockDeviceMappingSnapshotId => {
                ebs().any(|e| e.snapshot_id.as_deref().is_some_and(&mut *f))
            }
            Attr::BlockDeviceMappingVolumeSize => ebs().any(|e| f(&e.volume_size_gib.to_string())),
            Attr::BlockDeviceMappingVolumeType => ebs().any(|e| f(&e.volume_type)),
            Attr::BlockDeviceMappingEncrypted => {
                ebs().any(|e| f(if e.encrypted { "true" } else { "false" }))
            }
            Attr::BootMode => opt(&d.boot_mode, f),
            Attr::CreationDate => f(&iso8601(d.creation_ms)),
            Attr::DeprecationTime => d.deprecation_ms.is_some_and(|t| f(&iso8601(t))),
            Attr::Description => opt(&d.description, f),
            Attr::EnaSupport => d
                .ena_support
                .is_some_and(|b| f(if b { "true" } else { "false" })),
            Attr::FreeTierEligible => f("false"),
            Attr::Hypervisor => f(&d.hypervisor),
            Attr::ImageId => f(&self.id),
            Attr::ImageType => f(&d.image_type),
            Attr::ImdsSupport => opt(&d.imds_support, f),
            Attr::IsPublic => f(if self.public { "true" } else { "false" }),
            Attr::KernelId => opt(&d.kernel_id, f),
            Attr::ManifestLocation => f(&d.image_location),
            Attr::Name => f(&d.name),
            Attr::OwnerAlias => opt(&d.owner_alias, f),
            Attr::OwnerId => f(&self.owner_id),
            // The filter takes `windows`; the attribute says `Windows`.
            Attr::Platform => d.platform.as_deref().is_some_and(|p| f(&p.to_lowercase())),
            Attr::PlatformDetails => f(&d.platform_details),
            Attr::ProductCode => d.product_codes.iter().any(|p| f(&p.id)),
            Attr::ProductCodeType => d.product_codes.iter().any(|p| f(&p.kind)),
            Attr::RamdiskId => opt(&d.ramdisk_id, f),
            Attr::RootDeviceName => opt(&d.root_device_name, f),
            Attr::RootDeviceType => f(&d.root_device_type),
            Attr::SourceImageId => opt(&d.source_image_id, f),
            Attr::SourceImageRegion => opt(&d.source_image_region, f),
            Attr::SourceInstanceId => false,
            Attr::SriovNetSupport => opt(&d.sriov_net_support, f),
            Attr::State => f(&self.state),
            Attr::StateReasonCode => d.state_reason.as_ref().is_some_and(|r| f(&r.code)),
            Attr::StateReasonMessage => d.state_reason.as_ref().is_some_and(|r| f(&r.message)),
            Attr::TpmSupport => opt(&d.tpm_support, f),
            Attr::VirtualizationType => f(&d.virtualization_type),
        }
    }

    /// The values of the named filter (tag filters aside); `None` if the name is not a
    /// filter of images.
    pub fn values(&self, name: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        self.visit(name, &mut |v| {
            out.push(v.to_string());
            false
        })?;
        Some(out)
    }
}

impl Filterable for ImageView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        self.values(name)
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// One filter value, compiled.
#[derive(Debug)]
enum Pattern {
    /// No wildcard: plain equality.
    Exact(String),
    /// `*` / `?` wildcards, compiled.
    Wild(Glob),
}

impl Pattern {
    fn new(p: &str) -> Self {
        if p.contains(['*', '?']) {
            Pattern::Wild(Glob::new(p))
        } else {
            Pattern::Exact(p.to_string())
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == text,
            Pattern::Wild(g) => g.matches(text),
        }
    }
}

/// What a filter looks at.
#[derive(Debug)]
enum Field {
    /// `tag:<key>`: the values of that tag.
    Tag(String),
    /// `tag-key`.
    TagKey,
    /// `tag-value`.
    TagValue,
    /// Any other filter of images.
    Attribute(Attr),
}

/// The filters of one DescribeImages call, checked and compiled.
#[derive(Debug)]
pub(crate) struct ImageFilters {
    filters: Vec<(Field, Vec<Pattern>)>,
}

impl ImageFilters {
    /// Compiles filters; an unknown filter name is `InvalidParameterValue`.
    pub fn new(filters: &[Filter]) -> Ec2Result<Self> {
        let mut out = Vec::new();
        for filter in filters {
            let name = filter.name.as_str();
            let field = if let Some(key) = name.strip_prefix("tag:") {
                Field::Tag(key.to_string())
            } else if name == "tag-key" {
                Field::TagKey
            } else if name == "tag-value" {
                Field::TagValue
            } else if let Some(attr) = Attr::parse(name) {
                Field::Attribute(attr)
            } else {
                return Err(Ec2Error::invalid_value(format!(
                    "The filter '{name}' is invalid"
                )));
            };
            out.push((
                field,
                filter.values.iter().map(|v| Pattern::new(v)).collect(),
            ));
        }
        Ok(ImageFilters { filters: out })
    }

    /// True if `image` passes every filter. Tags are only matched when `own_tags` (the
    /// caller owns the image): other accounts' tags are not theirs to see.
    pub fn matches(&self, image: &ImageView, own_tags: bool) -> bool {
        let tags: &[(String, String)] = if own_tags { &image.tags } else { &[] };
        self.filters.iter().all(|(field, patterns)| {
            let mut hit = |v: &str| patterns.iter().any(|p| p.matches(v));
            match field {
                Field::Tag(key) => tags.iter().any(|(k, v)| k == key && hit(v)),
                Field::TagKey => tags.iter().any(|(k, _)| hit(k)),
                Field::TagValue => tags.iter().any(|(_, v)| hit(v)),
                Field::Attribute(attr) => image.visit_attr(*attr, &mut hit),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::wildcard_match;

    #[test]
    fn byte_wildcards_agree_with_char_wildcards() {
        let cases = [
            ("*", ""),
            ("ubuntu-*-amd64", "ubuntu-22.04-amd64"),
            ("a?c", "abc"),
            ("a?c", "ac"),
            ("*x*y", "aaxbby"),
            ("abc", "abcd"),
            ("caf*", "café au lait"),
            ("*é*", "café"),
            ("caf?", "café"),
            ("caf??", "café"),
        ];
        for (p, t) in cases {
            assert_eq!(Pattern::new(p).matches(t), wildcard_match(p, t), "{p} {t}");
        }
    }

    #[test]
    fn compiled_filters() {
        let mut image = ImageView {
            id: "ami-0123456789abcdef0".into(),
            owner_id: "111111111111".into(),
            state: "available".into(),
            tags: vec![("os".into(), "debian".into())],
            ..ImageView::default()
        };
        image.doc.name = "web-1".into();
        let f = |name: &str, values: &[&str]| Filter {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let compiled =
            ImageFilters::new(&[f("name", &["x", "web-*"]), f("state", &["available"])]).unwrap();
        assert!(compiled.matches(&image, false));
        let by_tag = ImageFilters::new(&[f("tag:os", &["deb*"])]).unwrap();
        assert!(by_tag.matches(&image, true));
        assert!(!by_tag.matches(&image, false));
        assert!(
            !ImageFilters::new(&[f("tag-key", &["nope"])])
                .unwrap()
                .matches(&image, true)
        );
        assert!(
            ImageFilters::new(&[f("kernel-id", &["*"])])
                .unwrap()
                .filters
                .len()
                == 1
        );
        assert!(
            !ImageFilters::new(&[f("kernel-id", &["*"])])
                .unwrap()
                .matches(&image, true)
        );
        assert_eq!(
            ImageFilters::new(&[f("colour", &["red"])])
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
    }
}
