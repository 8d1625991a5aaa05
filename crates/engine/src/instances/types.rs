//! The instance types openami offers: vCPUs, memory and instance storage, as EC2 defines
//! them. A machine gets the type's vCPUs and memory (QEMU only touches memory the guest
//! uses).

/// One instance type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceType {
    /// e.g. `t3.micro`.
    pub name: &'static str,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Instance-store volumes: (count, GiB each).
    pub instance_store: Option<(u32, u64)>,
    /// Architecture.
    pub architecture: &'static str,
}

const fn t(name: &'static str, vcpus: u32, memory_mib: u64) -> InstanceType {
    InstanceType {
        name,
        vcpus,
        memory_mib,
        instance_store: None,
        architecture: "x86_64",
    }
}

const fn d(name: &'static str, vcpus: u32, memory_mib: u64, count: u32, gib: u64) -> InstanceType {
    InstanceType {
        name,
        vcpus,
        memory_mib,
        instance_store: Some((count, gib)),
        architecture: "x86_64",
    }
}

/// Every type openami launches.
pub const INSTANCE_TYPES: &[InstanceType] = &[
    t("t2.nano", 1, 512),
    t("t2.micro", 1, 1024),
    t("t2.small", 1, 2048),
    t("t2.medium", 2, 4096),
    t("t2.large", 2, 8192),
    t("t3.nano", 2, 512),
    t("t3.micro", 2, 1024),
    t("t3.small", 2, 2048),
    t("t3.medium", 2, 4096),
    t("t3.large", 2, 8192),
    t("t3.xlarge", 4, 16384),
    t("t3.2xlarge", 8, 32768),
    t("m5.large", 2, 8192),
    t("m5.xlarge", 4, 16384),
    t("m5.2xlarge", 8, 32768),
    t("c5.large", 2, 4096),
    t("c5.xlarge", 4, 8192),
    t("c5.2xlarge", 8, 16384),
    t("r5.large", 2, 16384),
    t("r5.xlarge", 4, 32768),
    d("m5d.large", 2, 8192, 1, 75),
    d("m5d.xlarge", 4, 16384, 1, 150),
    d("c5d.large", 2, 4096, 1, 50),
    d("c5d.xlarge", 4, 8192, 1, 100),
    d("i3.large", 2, 15616, 1, 475),
    d("m1.small", 1, 1740, 1, 160),
    d("m3.medium", 1, 3840, 1, 4),
];

/// The named instance type, or `InvalidParameterValue` as EC2 words it.
pub fn instance_type(name: &str) -> crate::Ec2Result<InstanceType> {
    INSTANCE_TYPES
        .iter()
        .find(|t| t.name == name)
        .copied()
        .ok_or_else(|| {
            crate::Ec2Error::invalid_value(format!("Invalid value '{name}' for InstanceType."))
        })
}

impl InstanceType {
    /// Burstable (T family).
    pub fn burstable(&self) -> bool {
        self.name.starts_with('t')
    }

    /// Current generation (not m1/m3/t1).
    pub fn current_generation(&self) -> bool {
        !(self.name.starts_with("m1.") || self.name.starts_with("m3."))
    }

    /// Free tier eligible (t2.micro, t3.micro).
    pub fn free_tier(&self) -> bool {
        self.name == "t2.micro" || self.name == "t3.micro"
    }

    /// Threads per core as EC2 reports them (1 for one-vCPU types).
    pub fn threads_per_core(&self) -> u32 {
        if self.vcpus > 1 { 2 } else { 1 }
    }
}

impl crate::query::Filterable for InstanceType {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: String| Some(vec![s]);
        let store_gb = self.instance_store.map_or(0, |(n, gib)| u64::from(n) * gib);
        match name {
            "instance-type" => one(self.name.into()),
            "current-generation" => one(self.current_generation().to_string()),
            "free-tier-eligible" => one(self.free_tier().to_string()),
            "burstable-performance-supported" => one(self.burstable().to_string()),
            "bare-metal" => one("false".into()),
            "hypervisor" => one("nitro".into()),
            "vcpu-info.default-vcpus" => one(self.vcpus.to_string()),
            "vcpu-info.default-cores" => {
                one(self.vcpus.div_ceil(self.threads_per_core()).to_string())
            }
            "vcpu-info.default-threads-per-core" => one(self.threads_per_core().to_string()),
            "memory-info.size-in-mib" => one(self.memory_mib.to_string()),
            "instance-storage-supported" => one(self.instance_store.is_some().to_string()),
            "instance-storage-info.total-size-in-gb" => Some(
                self.instance_store
                    .iter()
                    .map(|_| store_gb.to_string())
                    .collect(),
            ),
            "processor-info.supported-architecture" => one(self.architecture.into()),
            "supported-root-device-type" => Some(vec!["ebs".into(), "instance-store".into()]),
            "supported-virtualization-type" => one("hvm".into()),
            "supported-boot-mode" => Some(vec!["legacy-bios".into(), "uefi".into()]),
            "supported-usage-class" => one("on-demand".into()),
            "hibernation-supported" => one("false".into()),
            "auto-recovery-supported" => one("false".into()),
            "dedicated-hosts-supported" => one("false".into()),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &[]
    }
}

/// DescribeInstanceTypes: the named types (all when none), filtered and paged by name.
pub fn describe_instance_types(
    names: &[String],
    filters: &[crate::query::Filter],
    page: &crate::query::Page,
) -> crate::Ec2Result<(Vec<InstanceType>, Option<String>)> {
    crate::query::check_filters(filters)?;
    let mut page = page.clone();
    page.check(5, 100, false)?;
    for n in names {
        if !INSTANCE_TYPES.iter().any(|t| t.name == n) {
            return Err(crate::Ec2Error::client(
                "InvalidInstanceType",
                format!("The following supplied instance types do not exist: [{n}]"),
            ));
        }
    }
    let mut out = Vec::new();
    for t in INSTANCE_TYPES {
        if (names.is_empty() || names.iter().any(|n| n == t.name))
            && crate::query::matches(t, filters)?
        {
            out.push(*t);
        }
    }
    out.sort_by_key(|t| t.name);
    Ok(page.apply(out, |t| t.name))
}

/// One item of DescribeInstanceTypeOfferings: a type offered at a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeOffering {
    /// The type.
    pub instance_type: &'static str,
    /// `region`, `availability-zone` or `availability-zone-id`.
    pub location_type: &'static str,
    /// The region, zone name or zone id.
    pub location: String,
}

impl crate::query::Filterable for TypeOffering {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "instance-type" => Some(vec![self.instance_type.into()]),
            "location" => Some(vec![self.location.clone()]),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &[]
    }
}

/// DescribeInstanceTypeOfferings: every type is offered in the region and each of its
/// zones (`location_type` defaults to `region`; there are no Outposts, so `outpost`
/// offers nothing). Paged by (location, type).
pub fn describe_instance_type_offerings(
    region: &str,
    location_type: Option<&str>,
    filters: &[crate::query::Filter],
    page: &crate::query::Page,
) -> crate::Ec2Result<(Vec<TypeOffering>, Option<String>)> {
    crate::query::check_filters(filters)?;
    let mut page = page.clone();
    page.check(5, 1000, false)?;
    let location_type = location_type.unwrap_or("region");
    let (location_type, locations): (&'static str, Vec<String>) = match location_type {
        "region" => ("region", vec![region.to_string()]),
        "availability-zone" => (
            "availability-zone",
            crate::regions::zones(region)
                .into_iter()
                .map(|z| z.name)
                .collect(),
        ),
        "availability-zone-id" => (
            "availability-zone-id",
            crate::regions::zones(region)
                .into_iter()
                .map(|z| z.id)
                .collect(),
        ),
        "outpost" => ("outpost", Vec::new()),
        other => {
            return Err(crate::Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter locationType is invalid. Valid values: region, availability-zone, availability-zone-id, outpost"
            )));
        }
    };
    let mut out = Vec::new();
    for location in &locations {
        let mut types: Vec<&InstanceType> = INSTANCE_TYPES.iter().collect();
        types.sort_by_key(|t| t.name);
        for t in types {
            let offering = TypeOffering {
                instance_type: t.name,
                location_type,
                location: location.clone(),
            };
            if crate::query::matches(&offering, filters)? {
                out.push(offering);
            }
        }
    }
    let keyed: Vec<(String, TypeOffering)> = out
        .into_iter()
        .map(|o| (format!("{}/{}", o.location, o.instance_type), o))
        .collect();
    let (page_items, token) = page.apply(keyed, |(key, _)| key);
    Ok((page_items.into_iter().map(|(_, o)| o).collect(), token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offerings_per_location_type() {
        let page = crate::query::Page::default();
        let (all, _) = describe_instance_type_offerings("us-east-1", None, &[], &page).unwrap();
        assert_eq!(all.len(), INSTANCE_TYPES.len());
        assert!(
            all.iter()
                .all(|o| o.location == "us-east-1" && o.location_type == "region")
        );
        let (zones, _) =
            describe_instance_type_offerings("us-east-1", Some("availability-zone"), &[], &page)
                .unwrap();
        assert_eq!(zones.len(), 3 * INSTANCE_TYPES.len());
        let (ids, _) =
            describe_instance_type_offerings("us-east-1", Some("availability-zone-id"), &[], &page)
                .unwrap();
        assert!(ids.iter().any(|o| o.location == "use1-az1"));
        let err =
            describe_instance_type_offerings("us-east-1", Some("planet"), &[], &page).unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
    }

    #[test]
    fn known_and_unknown_types() {
        let micro = instance_type("t3.micro").unwrap();
        assert_eq!((micro.vcpus, micro.memory_mib), (2, 1024));
        assert_eq!(
            instance_type("m5d.large").unwrap().instance_store,
            Some((1, 75))
        );
        assert_eq!(
            instance_type("x9.huge").unwrap_err().code,
            "InvalidParameterValue"
        );
    }
}
