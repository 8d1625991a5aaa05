//! The metadata tree (drawn in the crate documentation): a path's segments → a listing or
//! a leaf.

use crate::Metadata;
use crate::time::iso8601;

/// The API versions `GET /` lists, oldest first; all serve the same tree.
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "latest",
];

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A listing: one entry a line, subtrees ending in `/`.
    Dir(Vec<String>),
    /// A value.
    Leaf {
        body: Vec<u8>,
        content_type: &'static str,
    },
}

fn dir<I, S>(entries: I) -> Option<Node>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Some(Node::Dir(entries.into_iter().map(Into::into).collect()))
}

fn text(value: impl Into<String>) -> Option<Node> {
    Some(Node::Leaf {
        body: value.into().into_bytes(),
        content_type: "text/plain",
    })
}

fn lines(values: &[String]) -> Option<Node> {
    text(values.join("\n"))
}

/// Resolves the segments below the root (`[]` is the version list).
pub(crate) fn resolve(m: &Metadata, path: &[&str]) -> Option<Node> {
    match path {
        [] => dir(VERSIONS.iter().copied()),
        [version, rest @ ..] if VERSIONS.contains(version) => version_tree(m, rest),
        _ => None,
    }
}

fn version_tree(m: &Metadata, path: &[&str]) -> Option<Node> {
    match path {
        [] => {
            let mut entries = vec!["dynamic", "meta-data"];
            if m.user_data.is_some() {
                entries.push("user-data");
            }
            dir(entries)
        }
        ["user-data"] => m.user_data.as_ref().map(|data| Node::Leaf {
            body: data.clone(),
            content_type: "application/octet-stream",
        }),
        ["dynamic"] => dir(["instance-identity/"]),
        ["dynamic", "instance-identity"] => dir(["document"]),
        ["dynamic", "instance-identity", "document"] => Some(Node::Leaf {
            body: identity_document(m).into_bytes(),
            content_type: "text/plain",
        }),
        ["meta-data", rest @ ..] => meta_data(m, rest),
        _ => None,
    }
}

/// Tag keys that can be addressed as one path segment.
fn addressable_tag(key: &str) -> bool {
    !key.is_empty() && key != "." && key != ".." && !key.contains('/')
}

fn meta_data(m: &Metadata, path: &[&str]) -> Option<Node> {
    match path {
        [] => dir(meta_data_listing(m)),
        ["ami-id"] => text(&m.ami_id),
        ["ami-launch-index"] => text(m.ami_launch_index.to_string()),
        ["ami-manifest-path"] => text("(unknown)"),
        ["block-device-mapping"] => dir(m.block_devices.iter().map(|(name, _)| name.as_str())),
        ["block-device-mapping", name] => m
            .block_devices
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, device)| text(device)),
        ["hostname"] | ["local-hostname"] => text(&m.local_hostname),
        ["instance-action"] => text("none"),
        ["instance-id"] => text(&m.instance_id),
        ["instance-life-cycle"] => text("on-demand"),
        ["instance-type"] => text(&m.instance_type),
        ["kernel-id"] => m.kernel_id.as_ref().and_then(text),
        ["local-ipv4"] => text(&m.local_ipv4),
        ["mac"] => text(&m.mac),
        ["network"] => dir(["interfaces/"]),
        ["network", "interfaces"] => dir(["macs/"]),
        ["network", "interfaces", "macs"] => dir([format!("{}/", m.mac)]),
        ["network", "interfaces", "macs", mac, rest @ ..] if mac.eq_ignore_ascii_case(&m.mac) => {
            interface(m, rest)
        }
        ["placement"] => dir(["availability-zone", "availability-zone-id", "region"]),
        ["placement", "availability-zone"] => text(&m.availability_zone),
        ["placement", "availability-zone-id"] => text(&m.availability_zone_id),
        ["placement", "region"] => text(&m.region),
        ["product-codes"] if !m.product_codes.is_empty() => lines(&m.product_codes),
        ["public-hostname"] => m.public_hostname.as_ref().and_then(text),
        ["public-ipv4"] => m.public_ipv4.as_ref().and_then(text),
        ["public-keys"] if !m.public_keys.is_empty() => dir(m
            .public_keys
            .iter()
            .enumerate()
            .map(|(i, (name, _))| format!("{i}={name}"))),
        ["public-keys", index, rest @ ..] => {
            // `N` only: no sign, no leading zeros, no `N=name` form.
            if index.is_empty()
                || !index.bytes().all(|b| b.is_ascii_digit())
                || (index.len() > 1 && index.starts_with('0'))
            {
                return None;
            }
            let (_, key) = m.public_keys.get(index.parse::<usize>().ok()?)?;
            match rest {
                [] => dir(["openssh-key"]),
                ["openssh-key"] => text(key),
                _ => None,
            }
        }
        ["ramdisk-id"] => m.ramdisk_id.as_ref().and_then(text),
        ["reservation-id"] => text(&m.reservation_id),
        ["security-groups"] => lines(&m.security_groups),
        ["services"] => dir(["domain", "partition"]),
        ["services", "domain"] => text("amazonaws.com"),
        ["services", "partition"] => text("aws"),
        ["tags", rest @ ..] if m.options.tags_enabled => match rest {
            [] => dir(["instance/"]),
            ["instance"] => dir(m
                .tags
                .iter()
                .filter(|(k, _)| addressable_tag(k))
                .map(|(k, _)| k.as_str())),
            ["instance", key] => m
                .tags
                .iter()
                .find(|(k, _)| k == key && addressable_tag(k))
                .and_then(|(_, v)| text(v)),
            _ => None,
        },
        _ => None,
    }
}

/// `meta-data/`, alphabetical like AWS's.
fn meta_data_listing(m: &Metadata) -> Vec<&'static str> {
    let mut l = vec![
        "ami-id",
        "ami-launch-index",
        "ami-manifest-path",
        "block-device-mapping/",
        "hostname",
        "instance-action",
        "instance-id",
        "instance-life-cycle",
        "instance-type",
    ];
    if m.kernel_id.is_some() {
        l.push("kernel-id");
    }
    l.extend([
        "local-hostname",
        "local-ipv4",
        "mac",
        "network/",
        "placement/",
    ]);
    if !m.product_codes.is_empty() {
        l.push("product-codes");
    }
    if m.public_hostname.is_some() {
        l.push("public-hostname");
    }
    if m.public_ipv4.is_some() {
        l.push("public-ipv4");
    }
    if !m.public_keys.is_empty() {
        l.push("public-keys/");
    }
    if m.ramdisk_id.is_some() {
        l.push("ramdisk-id");
    }
    l.extend(["reservation-id", "security-groups", "services/"]);
    if m.options.tags_enabled {
        l.push("tags/");
    }
    l
}

/// `network/interfaces/macs/<mac>/…`.
fn interface(m: &Metadata, path: &[&str]) -> Option<Node> {
    match path {
        [] => {
            let mut l = vec!["device-number", "interface-id"];
            if m.public_ipv4.is_some() {
                l.push("ipv4-associations/");
            }
            l.extend(["local-hostname", "local-ipv4s", "mac", "owner-id"]);
            if m.public_hostname.is_some() {
                l.push("public-hostname");
            }
            if m.public_ipv4.is_some() {
                l.push("public-ipv4s");
            }
            l.extend([
                "security-group-ids",
                "security-groups",
                "subnet-id",
                "subnet-ipv4-cidr-block",
                "vpc-id",
                "vpc-ipv4-cidr-block",
                "vpc-ipv4-cidr-blocks",
            ]);
            dir(l)
        }
        ["device-number"] => text("0"),
        ["interface-id"] => text(&m.interface_id),
        ["ipv4-associations"] => m.public_ipv4.as_ref().and_then(|ip| dir([ip.as_str()])),
        ["ipv4-associations", ip] if m.public_ipv4.as_deref() == Some(*ip) => text(&m.local_ipv4),
        ["local-hostname"] => text(&m.local_hostname),
        ["local-ipv4s"] => text(&m.local_ipv4),
        ["mac"] => text(&m.mac),
        ["owner-id"] => text(&m.account_id),
        ["public-hostname"] => m.public_hostname.as_ref().and_then(text),
        ["public-ipv4s"] => m.public_ipv4.as_ref().and_then(text),
        ["security-group-ids"] => lines(&m.security_group_ids),
        ["security-groups"] => lines(&m.security_groups),
        ["subnet-id"] => text(&m.subnet_id),
        ["subnet-ipv4-cidr-block"] => text(&m.subnet_cidr),
        ["vpc-id"] => text(&m.vpc_id),
        ["vpc-ipv4-cidr-block"] | ["vpc-ipv4-cidr-blocks"] => text(&m.vpc_cidr),
        _ => None,
    }
}

/// The instance identity document, keys in AWS's order, pretty-printed like AWS's.
pub(crate) fn identity_document(m: &Metadata) -> String {
    use serde_json::Value;
    let opt = |v: &Option<String>| v.as_ref().map_or(Value::Null, |s| Value::from(s.as_str()));
    let marketplace = if m.product_codes.is_empty() {
        Value::Null
    } else {
        Value::from(m.product_codes.clone())
    };
    let fields: [(&str, Value); 15] = [
        ("accountId", Value::from(m.account_id.as_str())),
        ("architecture", Value::from(m.architecture.as_str())),
        (
            "availabilityZone",
            Value::from(m.availability_zone.as_str()),
        ),
        ("billingProducts", Value::Null),
        ("devpayProductCodes", Value::Null),
        ("marketplaceProductCodes", marketplace),
        ("imageId", Value::from(m.ami_id.as_str())),
        ("instanceId", Value::from(m.instance_id.as_str())),
        ("instanceType", Value::from(m.instance_type.as_str())),
        ("kernelId", opt(&m.kernel_id)),
        ("pendingTime", Value::from(iso8601(m.pending_time_ms))),
        ("privateIp", Value::from(m.local_ipv4.as_str())),
        ("ramdiskId", opt(&m.ramdisk_id)),
        ("region", Value::from(m.region.as_str())),
        ("version", Value::from("2017-09-30")),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  \"{k}\" : {v}"))
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}
