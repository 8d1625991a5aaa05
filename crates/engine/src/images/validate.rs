//! Pure checks of image requests: names, descriptions, enumerations, block device
//! mappings and timestamps. Nothing here touches the catalog; snapshots are resolved
//! through a closure so the rules can be tested alone.

use crate::Ec2Error;
use crate::Ec2Result;
use crate::query::{TagSpecification, tags_for};

use super::register::{EbsRequest, MappingRequest};
use super::{BlockDeviceMapping, EbsMapping, MappingTarget};

/// Architectures an image may have.
pub const ARCHITECTURES: &[&str] = &["i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"];
/// Virtualization types.
pub const VIRTUALIZATION_TYPES: &[&str] = &["hvm", "paravirtual"];
/// Boot modes.
pub const BOOT_MODES: &[&str] = &["legacy-bios", "uefi", "uefi-preferred"];
/// Most devices one image may map.
pub const MAX_MAPPINGS: usize = 128;

/// Checks an AMI name: 3–128 characters of letters, digits, spaces and `( ) [ ] . / - ' @ _`.
pub fn check_name(name: &str) -> Ec2Result<()> {
    let len = name.chars().count();
    let ok = (3..=128).contains(&len)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Ec2Error::client(
            "InvalidAMIName.Malformed",
            format!(
                "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '[', ']', ' ', '.', '/', '-', ''', '@' and '_' (got {name:?})"
            ),
        ))
    }
}

/// Checks an image description (at most 255 characters).
pub fn check_description(description: &str) -> Ec2Result<()> {
    if description.chars().count() > 255 {
        return Err(Ec2Error::invalid_value(
            "Description must be at most 255 characters",
        ));
    }
    Ok(())
}

/// `value` if it is one of `allowed`, else `InvalidParameterValue` naming `parameter`.
pub fn check_enum(parameter: &str, value: &str, allowed: &[&str]) -> Ec2Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Ec2Error::invalid_value(format!(
            "Value ({value}) for parameter {parameter} is invalid. Valid values: {}",
            allowed.join(", ")
        )))
    }
}

/// True for device names such as `/dev/xvda`, `/dev/sda1`, `/dev/nvme1n1` or `xvdb`.
pub fn valid_device_name(name: &str) -> bool {
    let bare = name.strip_prefix("/dev/").unwrap_or(name);
    (2..=16).contains(&bare.len())
        && bare.starts_with(|c: char| c.is_ascii_lowercase())
        && bare
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// True for instance-store names `ephemeral0` … `ephemeral23`.
pub fn valid_virtual_name(name: &str) -> bool {
    name.strip_prefix("ephemeral").is_some_and(|n| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'))
            && n.parse::<u8>().is_ok_and(|v| v <= 23)
    })
}

/// What a mapping needs to know about a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Size of the snapshot's volume in GiB.
    pub volume_size_gib: i64,
    /// Encrypted flag.
    pub encrypted: bool,
}

fn bad_mapping(message: impl Into<String>) -> Ec2Error {
    Ec2Error::client("InvalidBlockDeviceMapping", message)
}

/// Size limits in GiB per volume type.
fn size_limits(volume_type: &str) -> Option<(i64, i64)> {
    Some(match volume_type {
        "gp2" | "gp3" => (1, 16_384),
        "io1" => (4, 16_384),
        "io2" => (4, 65_536),
        "st1" | "sc1" => (125, 16_384),
        "standard" => (1, 1_024),
        _ => return None,
    })
}

fn check_ebs(
    device: &str,
    ebs: &EbsRequest,
    snapshot: Option<&SnapshotInfo>,
) -> Ec2Result<EbsMapping> {
    if ebs.kms_key_id.is_some() {
        return Err(Ec2Error::client(
            "UnsupportedOperation",
            "KMS keys are not supported by openami",
        ));
    }
    let volume_type = ebs.volume_type.clone().unwrap_or_else(|| "gp2".into());
    let (min, max) = size_limits(&volume_type).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Value ({volume_type}) for parameter volumeType is invalid. Valid types are: standard, io1, io2, gp2, sc1, st1, gp3."
        ))
    })?;
    let size = match (ebs.volume_size, snapshot) {
        (Some(size), Some(snap)) if size < snap.volume_size_gib => {
            return Err(bad_mapping(format!(
                "Volume of size {size}GiB is smaller than snapshot '{}', expect size >= {}GiB",
                ebs.snapshot_id.as_deref().unwrap_or_default(),
                snap.volume_size_gib
            )));
        }
        (Some(size), _) => size,
        (None, Some(snap)) => snap.volume_size_gib,
        (None, None) => {
            return Err(bad_mapping(format!(
                "snapshotId or volumeSize must be given for device {device}"
            )));
        }
    };
    if !(min..=max).contains(&size) {
        return Err(bad_mapping(format!(
            "Volume size {size}GiB of device {device} is invalid for {volume_type} volumes ({min}-{max}GiB)"
        )));
    }
    let iops = match volume_type.as_str() {
        "io1" | "io2" => {
            let limit = if volume_type == "io1" {
                64_000
            } else {
                256_000
            };
            let iops = ebs.iops.ok_or_else(|| {
                bad_mapping(format!("iops is required for {volume_type} volumes"))
            })?;
            if !(100..=limit).contains(&iops) {
                return Err(bad_mapping(format!(
                    "Value ({iops}) for iops is invalid. Expected a value between 100 and {limit}."
                )));
            }
            Some(iops)
        }
        "gp3" => {
            let iops = ebs.iops.unwrap_or(3000);
            if !(3000..=16_000).contains(&iops) {
                return Err(bad_mapping(format!(
                    "Value ({iops}) for iops is invalid. Expected a value between 3000 and 16000."
                )));
            }
            Some(iops)
        }
        other => {
            if ebs.iops.is_some() {
                return Err(bad_mapping(format!(
                    "iops is not supported for {other} volumes"
                )));
            }
            None
        }
    };
    let throughput = match (volume_type.as_str(), ebs.throughput) {
        ("gp3", t) => {
            let t = t.unwrap_or(125);
            if !(125..=1000).contains(&t) {
                return Err(bad_mapping(format!(
                    "Value ({t}) for throughput is invalid. Expected a value between 125 and 1000."
                )));
            }
            Some(t)
        }
        (other, Some(_)) => {
            return Err(bad_mapping(format!(
                "throughput is not supported for {other} volumes"
            )));
        }
        (_, None) => None,
    };
    let encrypted = snapshot.is_some_and(|s| s.encrypted) || ebs.encrypted == Some(true);
    Ok(EbsMapping {
        snapshot_id: ebs.snapshot_id.clone(),
        volume_size_gib: size,
        delete_on_termination: ebs.delete_on_termination.unwrap_or(true),
        volume_type,
        iops,
        throughput,
        encrypted,
    })
}

/// Validates a requested block device mapping. `snapshot` resolves a snapshot id the
/// caller may use (its errors are returned as they are).
pub fn check_mappings(
    requested: &[MappingRequest],
    mut snapshot: impl FnMut(&str) -> Ec2Result<SnapshotInfo>,
) -> Ec2Result<Vec<BlockDeviceMapping>> {
    if requested.len() > MAX_MAPPINGS {
        return Err(bad_mapping(format!(
            "At most {MAX_MAPPINGS} block device mappings are allowed"
        )));
    }
    let mut out: Vec<BlockDeviceMapping> = Vec::new();
    for m in requested {
        let device = m
            .device_name
            .clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| bad_mapping("Each block device mapping needs a device name"))?;
        if !valid_device_name(&device) {
            return Err(bad_mapping(format!("Invalid device name {device}")));
        }
        if out.iter().any(|o| o.device_name == device) {
            return Err(bad_mapping(format!(
                "The device name {device} is mapped more than once"
            )));
        }
        let kinds = usize::from(m.ebs.is_some())
            + usize::from(m.virtual_name.is_some())
            + usize::from(m.no_device.is_some());
        if kinds != 1 {
            return Err(bad_mapping(format!(
                "Device {device} must have exactly one of Ebs, VirtualName or NoDevice"
            )));
        }
        let target = if let Some(ebs) = &m.ebs {
            let info = match &ebs.snapshot_id {
                Some(id) => Some(snapshot(id)?),
                None => None,
            };
            MappingTarget::Ebs(check_ebs(&device, ebs, info.as_ref())?)
        } else if let Some(v) = &m.virtual_name {
            if !valid_virtual_name(v) {
                return Err(bad_mapping(format!(
                    "Invalid virtual name {v} for device {device}: expected ephemeral0 to ephemeral23"
                )));
            }
            MappingTarget::Ephemeral(v.clone())
        } else {
            MappingTarget::NoDevice
        };
        out.push(BlockDeviceMapping {
            device_name: device,
            target,
        });
    }
    Ok(out)
}

/// Splits tag specifications by resource type; types other than `allowed` are an error.
pub fn split_tags(
    specs: &[TagSpecification],
    allowed: &[&str],
) -> Ec2Result<Vec<Vec<(String, String)>>> {
    if let Some(bad) = specs
        .iter()
        .find(|s| !allowed.contains(&s.resource_type.as_str()))
    {
        // tags_for words the error as EC2 does.
        tags_for(
            std::slice::from_ref(bad),
            allowed.first().copied().unwrap_or(""),
        )?;
    }
    allowed
        .iter()
        .map(|rt| {
            let mine: Vec<TagSpecification> = specs
                .iter()
                .filter(|s| s.resource_type == *rt)
                .cloned()
                .collect();
            tags_for(&mine, rt)
        })
        .collect()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an ISO 8601 timestamp (`2026-01-31T10:00:00Z`, optional fraction, `Z` or
/// `±hh:mm`; none means UTC) to milliseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = ms.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        "" | "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let h: i64 = tz[1..3].parse().ok()?;
            let m: i64 = tz[4..6].parse().ok()?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::iso8601;

    #[test]
    fn names() {
        assert!(check_name("my-ami_1.0 (test) [x] o'neil@home/2").is_ok());
        assert!(check_name("abc").is_ok());
        assert!(check_name(&"a".repeat(128)).is_ok());
        for bad in ["ab", "", "bad#name", "tab\there", "ünï", &"a".repeat(129)] {
            assert_eq!(
                check_name(bad).unwrap_err().code,
                "InvalidAMIName.Malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn devices_and_virtual_names() {
        for ok in ["/dev/xvda", "/dev/sda1", "xvdb", "/dev/nvme1n1", "sdf"] {
            assert!(valid_device_name(ok), "{ok}");
        }
        for bad in ["", "/dev/", "/dev/A", "/dev/../x", "/dev/1a", "x"] {
            assert!(!valid_device_name(bad), "{bad}");
        }
        assert!(valid_virtual_name("ephemeral0"));
        assert!(valid_virtual_name("ephemeral23"));
        for bad in [
            "ephemeral24",
            "ephemeral",
            "ephemeral01",
            "ephemeral-1",
            "swap",
        ] {
            assert!(!valid_virtual_name(bad), "{bad}");
        }
    }

    fn ebs(snapshot: Option<&str>, size: Option<i64>) -> MappingRequest {
        MappingRequest {
            device_name: Some("/dev/xvda".into()),
            ebs: Some(EbsRequest {
                snapshot_id: snapshot.map(str::to_string),
                volume_size: size,
                ..EbsRequest::default()
            }),
            ..MappingRequest::default()
        }
    }

    fn snaps(id: &str) -> Ec2Result<SnapshotInfo> {
        match id {
            "snap-8" => Ok(SnapshotInfo {
                volume_size_gib: 8,
                encrypted: true,
            }),
            other => Err(Ec2Error::client("InvalidSnapshot.NotFound", other)),
        }
    }

    #[test]
    fn mappings() {
        let m = check_mappings(&[ebs(Some("snap-8"), None)], snaps).unwrap();
        let e = m[0].ebs().unwrap();
        assert_eq!(
            (e.volume_size_gib, e.delete_on_termination, e.encrypted),
            (8, true, true)
        );
        assert_eq!(e.volume_type, "gp2");
        assert_eq!(
            check_mappings(&[ebs(Some("snap-8"), Some(4))], snaps)
                .unwrap_err()
                .code,
            "InvalidBlockDeviceMapping"
        );
        assert_eq!(
            check_mappings(&[ebs(Some("snap-x"), None)], snaps)
                .unwrap_err()
                .code,
            "InvalidSnapshot.NotFound"
        );
        assert_eq!(
            check_mappings(&[ebs(None, None)], snaps).unwrap_err().code,
            "InvalidBlockDeviceMapping"
        );
        let empty = check_mappings(&[ebs(None, Some(20))], snaps).unwrap();
        assert_eq!(empty[0].ebs().unwrap().snapshot_id, None);
        // Duplicates, two targets at once, bad names.
        let dup = [ebs(Some("snap-8"), None), ebs(None, Some(1))];
        assert!(check_mappings(&dup, snaps).is_err());
        let mut both = ebs(None, Some(1));
        both.no_device = Some(String::new());
        assert!(check_mappings(&[both], snaps).is_err());
        let eph = MappingRequest {
            device_name: Some("/dev/sdb".into()),
            virtual_name: Some("ephemeral1".into()),
            ..MappingRequest::default()
        };
        let none = MappingRequest {
            device_name: Some("/dev/sdc".into()),
            no_device: Some(String::new()),
            ..MappingRequest::default()
        };
        let m = check_mappings(&[eph, none], snaps).unwrap();
        assert_eq!(m[0].target, MappingTarget::Ephemeral("ephemeral1".into()));
        assert_eq!(m[1].target, MappingTarget::NoDevice);
        // Volume types and performance.
        let mut io = ebs(None, Some(10));
        if let Some(e) = io.ebs.as_mut() {
            e.volume_type = Some("io2".into());
        }
        assert!(check_mappings(std::slice::from_ref(&io), snaps).is_err());
        if let Some(e) = io.ebs.as_mut() {
            e.iops = Some(1000);
        }
        assert_eq!(
            check_mappings(&[io], snaps).unwrap()[0].ebs().unwrap().iops,
            Some(1000)
        );
        let mut bad_type = ebs(None, Some(10));
        if let Some(e) = bad_type.ebs.as_mut() {
            e.volume_type = Some("gp9".into());
        }
        assert_eq!(
            check_mappings(&[bad_type], snaps).unwrap_err().code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn timestamps() {
        for ms in [0, 1_764_322_800_123, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_timestamp(&iso8601(ms)), Some(ms));
        }
        assert_eq!(
            parse_timestamp("2025-11-28T09:40:00Z"),
            Some(1_764_322_800_000)
        );
        assert_eq!(
            parse_timestamp("2025-11-28T09:40:00.123456Z"),
            Some(1_764_322_800_123)
        );
        assert_eq!(
            parse_timestamp("2025-11-28T10:40:00+01:00"),
            Some(1_764_322_800_000)
        );
        assert_eq!(
            parse_timestamp("2025-11-28T09:40:00"),
            Some(1_764_322_800_000)
        );
        for bad in [
            "",
            "2025-11-28",
            "2025-13-01T00:00:00Z",
            "2025-11-28T09:40:00.Z",
            "soon",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn tag_split() {
        let spec = |rt: &str, k: &str| TagSpecification {
            resource_type: rt.into(),
            tags: vec![(k.into(), "v".into())],
        };
        let split = split_tags(
            &[spec("image", "a"), spec("snapshot", "b")],
            &["image", "snapshot"],
        )
        .unwrap();
        assert_eq!(split[0], [("a".to_string(), "v".to_string())]);
        assert_eq!(split[1], [("b".to_string(), "v".to_string())]);
        assert!(split_tags(&[spec("volume", "a")], &["image"]).is_err());
    }
}
