//! The launch wizard's form: reading the POSTed fields (URL-encoded, or
//! `multipart/form-data` when a user data file is attached) and turning them into a
//! [`WizardRequest`], checked before anything is created.
//!
//! Field names of the wizard form (`N` of the extra volumes is 1…[`EXTRA_VOLUMES`]):
//!
//! ```text
//! csrf, client_token             the session's CSRF token, RunInstances' ClientToken
//! name, image, type, count       Name tag, ImageId, InstanceType, Min/MaxCount
//! key | new_key + new_key_type   an existing key pair, or a new one (rsa | ed25519)
//! group (repeated)               existing security groups (ids)
//! new_group, new_group_desc      a new group in the default VPC, with inbound TCP rules:
//! port (repeated: 22, 80, 443), custom_port (N or N-M), source_cidr
//! root_size, root_type, root_iops, root_keep   the root volume (keep: not deleted on termination)
//! volN_size, volN_type, volN_iops, volN_dot    extra empty EBS volumes (/dev/sdf, /dev/sdg, …)
//! user_data (text), user_data_file (file; wins over the text when not empty)
//! ```

use base64::Engine as _;
use engine::{Ec2Error, Ec2Result};

/// How many extra volume rows the wizard offers.
pub(crate) const EXTRA_VOLUMES: usize = 3;

/// Volume types the engine accepts.
pub(crate) const VOLUME_TYPES: [&str; 7] = ["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"];

/// Most instances one launch makes (RunInstances' limit per call).
pub(crate) const MAX_COUNT: i64 = 20;

/// Device names of the extra volumes, in order.
const EXTRA_DEVICES: [&str; EXTRA_VOLUMES] = ["/dev/sdf", "/dev/sdg", "/dev/sdh"];

/// Posted form fields, in order; repeated names keep every value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fields {
    values: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
}

/// The longest multipart boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// Where `needle` next occurs in `haystack` from `from` (linear time: the body and the
/// boundary are untrusted).
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(haystack.get(from..)?, needle).map(|p| p + from)
}

fn bad_form(why: &str) -> Ec2Error {
    Ec2Error::client(
        "InvalidRequest",
        format!("The form could not be read: {why}."),
    )
}

/// A parameter of a header value (`boundary=…`, `name="…"`), unquoted.
fn header_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

impl Fields {
    /// Reads a body by its `Content-Type`.
    pub(crate) fn parse(content_type: &str, body: &[u8]) -> Ec2Result<Fields> {
        let kind = content_type.split(';').next().unwrap_or("").trim();
        if kind.eq_ignore_ascii_case("multipart/form-data") {
            let boundary = header_param(content_type, "boundary")
                .filter(|b| !b.is_empty())
                .ok_or_else(|| bad_form("no multipart boundary"))?;
            if boundary.len() > MAX_BOUNDARY {
                return Err(bad_form(
                    "the multipart boundary is longer than 70 characters",
                ));
            }
            Fields::multipart(&boundary, body)
        } else {
            Ok(Fields {
                values: form_urlencoded::parse(body).into_owned().collect(),
                files: Vec::new(),
            })
        }
    }

    /// Reads a `multipart/form-data` body (RFC 7578): parts separated by `--boundary`,
    /// each with a `Content-Disposition: form-data; name="…"[; filename="…"]` header.
    pub(crate) fn multipart(boundary: &str, body: &[u8]) -> Ec2Result<Fields> {
        let delimiter = format!("--{boundary}").into_bytes();
        let next_part = format!("\r\n--{boundary}").into_bytes();
        let mut out = Fields::default();
        let mut at = find(body, &delimiter, 0).ok_or_else(|| bad_form("no first boundary"))?
            + delimiter.len();
        loop {
            if body.get(at..at + 2) == Some(b"--") {
                return Ok(out);
            }
            if body.get(at..at + 2) != Some(b"\r\n") {
                return Err(bad_form("a boundary is not followed by a line end"));
            }
            let head_start = at + 2;
            let head_end = find(body, b"\r\n\r\n", head_start)
                .ok_or_else(|| bad_form("a part has no end of headers"))?;
            let content_start = head_end + 4;
            let content_end = find(body, &next_part, content_start)
                .ok_or_else(|| bad_form("the body ends inside a part"))?;
            let head = String::from_utf8_lossy(&body[head_start..head_end]);
            let disposition = head
                .split("\r\n")
                .find_map(|line| {
                    let (k, v) = line.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-disposition")
                        .then(|| v.trim().to_string())
                })
                .ok_or_else(|| bad_form("a part has no Content-Disposition"))?;
            let name =
                header_param(&disposition, "name").ok_or_else(|| bad_form("a part has no name"))?;
            let content = &body[content_start..content_end];
            if header_param(&disposition, "filename").is_some() {
                out.files.push((name, content.to_vec()));
            } else {
                out.values
                    .push((name, String::from_utf8_lossy(content).into_owned()));
            }
            at = content_end + next_part.len();
        }
    }

    /// The last value of a field, or `""`.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// A non-empty field, trimmed.
    pub(crate) fn opt(&self, name: &str) -> Option<String> {
        let v = self.get(name).trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    /// Every non-empty value of a repeated field, trimmed.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// The content of an attached, non-empty file.
    pub(crate) fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_slice())
    }

    /// A whole number field, if given.
    pub(crate) fn number(&self, name: &str, label: &str) -> Ec2Result<Option<i64>> {
        self.opt(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    Ec2Error::invalid_value(format!(
                        "Value ({v}) for {label} is not a whole number."
                    ))
                })
            })
            .transpose()
    }
}

/// The key pair of a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyChoice {
    /// No key pair.
    None,
    /// An existing key pair, by name.
    Existing(String),
    /// A key pair to create: name and type.
    New(String, String),
}

/// A security group to create for the launch, with its inbound TCP rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewGroup {
    pub(crate) name: String,
    pub(crate) description: String,
    /// Inbound TCP port ranges.
    pub(crate) ports: Vec<(i64, i64)>,
    /// Where they are open from.
    pub(crate) cidr: String,
}

/// One EBS volume setting of the wizard (root or extra).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Disk {
    pub(crate) device: Option<String>,
    pub(crate) size: Option<i64>,
    pub(crate) volume_type: Option<String>,
    pub(crate) iops: Option<i64>,
    pub(crate) delete_on_termination: bool,
}

/// What the wizard asks for, checked as far as it can be without the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WizardRequest {
    pub(crate) image: String,
    pub(crate) name: Option<String>,
    pub(crate) instance_type: Option<String>,
    pub(crate) count: i64,
    pub(crate) key: KeyChoice,
    pub(crate) groups: Vec<String>,
    pub(crate) new_group: Option<NewGroup>,
    /// Root volume changes (device filled in from the image), if any.
    pub(crate) root: Option<Disk>,
    /// Extra empty volumes.
    pub(crate) volumes: Vec<Disk>,
    /// User data, base64.
    pub(crate) user_data: Option<String>,
    pub(crate) client_token: Option<String>,
}

fn volume_type(f: &Fields, field: &str) -> Ec2Result<Option<String>> {
    match f.opt(field) {
        Some(t) if !VOLUME_TYPES.contains(&t.as_str()) => Err(Ec2Error::invalid_value(format!(
            "Value ({t}) for parameter volumeType is invalid. Valid types are: standard, io1, io2, gp2, sc1, st1, gp3."
        ))),
        t => Ok(t),
    }
}

/// A port or a range `N-M`, each 0-65535.
fn port_range(text: &str) -> Ec2Result<(i64, i64)> {
    let bad = || {
        Ec2Error::invalid_value(format!(
            "Value ({text}) for a port is invalid. Expected a port (0-65535) or a range such as 8000-8100."
        ))
    };
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: i64 = a.trim().parse().map_err(|_| bad())?;
    let b: i64 = b.trim().parse().map_err(|_| bad())?;
    if !(0..=65535).contains(&a) || !(0..=65535).contains(&b) || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

impl WizardRequest {
    /// Reads and checks the wizard's fields.
    pub(crate) fn from_fields(f: &Fields) -> Ec2Result<WizardRequest> {
        let image = f.opt("image").ok_or_else(|| Ec2Error::missing("ImageId"))?;
        let count = f.number("count", "the number of instances")?.unwrap_or(1);
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(Ec2Error::invalid_value(format!(
                "Launch between 1 and {MAX_COUNT} instances."
            )));
        }
        let key = match (f.opt("new_key"), f.opt("key")) {
            (Some(_), Some(_)) => {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    "Choose an existing key pair or name a new one, not both.",
                ));
            }
            (Some(name), None) => KeyChoice::New(
                name,
                f.opt("new_key_type").unwrap_or_else(|| "ed25519".into()),
            ),
            (None, Some(name)) => KeyChoice::Existing(name),
            (None, None) => KeyChoice::None,
        };
        let mut ports = Vec::new();
        for p in f.all("port").iter().chain(f.opt("custom_port").iter()) {
            let range = port_range(p)?;
            if !ports.contains(&range) {
                ports.push(range);
            }
        }
        let new_group = match f.opt("new_group") {
            Some(name) => Some(NewGroup {
                description: f
                    .opt("new_group_desc")
                    .unwrap_or_else(|| format!("{name}, made by the launch wizard")),
                name,
                ports,
                cidr: f.opt("source_cidr").unwrap_or_else(|| "0.0.0.0/0".into()),
            }),
            None if !ports.is_empty() => {
                return Err(Ec2Error::missing(
                    "new security group name (the ports you ticked go into a new group)",
                ));
            }
            None => None,
        };
        let root = Disk {
            device: None,
            size: f.number("root_size", "the root volume size")?,
            volume_type: volume_type(f, "root_type")?,
            iops: f.number("root_iops", "the root volume IOPS")?,
            delete_on_termination: f.get("root_keep") != "yes",
        };
        let root = (root.size.is_some()
            || root.volume_type.is_some()
            || root.iops.is_some()
            || !root.delete_on_termination)
            .then_some(root);
        let mut volumes = Vec::new();
        for (i, device) in EXTRA_DEVICES.iter().enumerate() {
            let n = i + 1;
            let size = f.number(&format!("vol{n}_size"), &format!("the size of volume {n}"))?;
            let Some(size) = size else { continue };
            volumes.push(Disk {
                device: Some((*device).to_string()),
                size: Some(size),
                volume_type: volume_type(f, &format!("vol{n}_type"))?,
                iops: f.number(&format!("vol{n}_iops"), &format!("the IOPS of volume {n}"))?,
                delete_on_termination: f.get(&format!("vol{n}_dot")) == "yes",
            });
        }
        let b64 = &base64::engine::general_purpose::STANDARD;
        let user_data = match f.file("user_data_file") {
            Some(bytes) => Some(b64.encode(bytes)),
            // As typed (not trimmed: a script's last line end is part of it).
            None => Some(f.get("user_data"))
                .filter(|text| !text.trim().is_empty())
                .map(|text| b64.encode(text.replace("\r\n", "\n"))),
        };
        Ok(WizardRequest {
            image,
            name: f.opt("name"),
            instance_type: f.opt("type"),
            count,
            key,
            groups: f.all("group"),
            new_group,
            root,
            volumes,
            user_data,
            client_token: f.opt("client_token"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn urlencoded(body: &str) -> Fields {
        Fields::parse("application/x-www-form-urlencoded", body.as_bytes()).unwrap()
    }

    #[test]
    fn multipart_fields_files_and_repeats() {
        let body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nami-0123\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"group\"\r\n\r\nsg-1\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"group\"\r\n\r\nsg-2\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"user_data_file\"; filename=\"u.sh\"\r\nContent-Type: text/x-sh\r\n\r\n#!/bin/sh\r\n\r\necho --XyZ-not\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"empty\"; filename=\"\"\r\n\r\n\r\n\
            --XyZ--\r\n";
        let f = Fields::parse("multipart/form-data; boundary=\"XyZ\"", body.as_bytes()).unwrap();
        assert_eq!(f.get("image"), "ami-0123");
        assert_eq!(f.all("group"), ["sg-1", "sg-2"]);
        assert_eq!(f.get("group"), "sg-2");
        assert_eq!(
            f.file("user_data_file").unwrap(),
            b"#!/bin/sh\r\n\r\necho --XyZ-not"
        );
        assert!(f.file("empty").is_none());
        assert!(f.file("missing").is_none());
        assert_eq!(f.get("missing"), "");
    }

    #[test]
    fn broken_multipart_is_an_error_not_a_panic() {
        for body in [
            "",
            "--b",
            "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
            "--b\r\nno headers end",
            "--b\r\nX-Other: 1\r\n\r\nv\r\n--b--",
            "--bjunk",
        ] {
            let e = Fields::parse("multipart/form-data; boundary=b", body.as_bytes()).unwrap_err();
            assert_eq!(e.code, "InvalidRequest", "{body:?}");
        }
        assert!(Fields::parse("multipart/form-data", b"").is_err());
    }

    #[test]
    fn a_full_wizard_form() {
        let f = urlencoded(
            "image=ami-1&name=web&type=t3.small&count=2&new_key=k1&new_key_type=rsa\
             &group=sg-a&group=sg-b&new_group=web&port=22&port=80&custom_port=8000-8100&source_cidr=10.0.0.0/8\
             &root_size=4&root_type=gp3&root_keep=yes&vol1_size=2&vol1_type=io1&vol1_iops=200&vol1_dot=yes\
             &vol2_size=&vol3_size=3&user_data=%23!%2Fbin%2Fsh%0D%0Aecho+hi%0D%0A&client_token=t",
        );
        let w = WizardRequest::from_fields(&f).unwrap();
        assert_eq!(w.image, "ami-1");
        assert_eq!(w.count, 2);
        assert_eq!(w.key, KeyChoice::New("k1".into(), "rsa".into()));
        assert_eq!(w.groups, ["sg-a", "sg-b"]);
        let g = w.new_group.unwrap();
        assert_eq!((g.name.as_str(), g.cidr.as_str()), ("web", "10.0.0.0/8"));
        assert_eq!(g.ports, [(22, 22), (80, 80), (8000, 8100)]);
        let root = w.root.unwrap();
        assert_eq!(
            (root.size, root.volume_type.as_deref()),
            (Some(4), Some("gp3"))
        );
        assert!(!root.delete_on_termination);
        assert_eq!(w.volumes.len(), 2);
        assert_eq!(w.volumes[0].device.as_deref(), Some("/dev/sdf"));
        assert_eq!(
            (w.volumes[0].iops, w.volumes[0].delete_on_termination),
            (Some(200), true)
        );
        assert_eq!(
            (w.volumes[1].device.as_deref(), w.volumes[1].size),
            (Some("/dev/sdh"), Some(3))
        );
        assert!(!w.volumes[1].delete_on_termination);
        let ud = base64::engine::general_purpose::STANDARD
            .decode(w.user_data.unwrap())
            .unwrap();
        assert_eq!(ud, b"#!/bin/sh\necho hi\n");
        assert_eq!(w.client_token.as_deref(), Some("t"));
    }

    #[test]
    fn a_minimal_form_changes_nothing_it_was_not_asked() {
        let w =
            WizardRequest::from_fields(&urlencoded("image=ami-1&key=old&count=&user_data=+%0D%0A"))
                .unwrap();
        assert_eq!(w.count, 1);
        assert_eq!(w.key, KeyChoice::Existing("old".into()));
        assert!(w.root.is_none() && w.volumes.is_empty() && w.new_group.is_none());
        assert!(w.user_data.is_none() && w.groups.is_empty());
    }

    #[test]
    fn a_user_data_file_wins_over_the_text() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nami-1\r\n\
            --b\r\nContent-Disposition: form-data; name=\"user_data\"\r\n\r\ntext\r\n\
            --b\r\nContent-Disposition: form-data; name=\"user_data_file\"; filename=\"x.gz\"\r\n\r\n\x1f\x8b\x00\r\n--b--";
        let f = Fields::parse("multipart/form-data; boundary=b", body).unwrap();
        let w = WizardRequest::from_fields(&f).unwrap();
        assert_eq!(w.user_data.as_deref(), Some("H4sA"));
    }

    #[test]
    fn bad_values_are_refused_in_words() {
        for (body, code, needle) in [
            ("", "MissingParameter", "ImageId"),
            (
                "image=ami-1&count=0",
                "InvalidParameterValue",
                "between 1 and",
            ),
            ("image=ami-1&count=two", "InvalidParameterValue", "(two)"),
            (
                "image=ami-1&key=a&new_key=b",
                "InvalidParameterCombination",
                "not both",
            ),
            (
                "image=ami-1&port=22",
                "MissingParameter",
                "security group name",
            ),
            (
                "image=ami-1&new_group=g&custom_port=70000",
                "InvalidParameterValue",
                "(70000)",
            ),
            (
                "image=ami-1&new_group=g&custom_port=90-80",
                "InvalidParameterValue",
                "(90-80)",
            ),
            ("image=ami-1&root_type=gp9", "InvalidParameterValue", "gp9"),
            (
                "image=ami-1&vol1_size=x",
                "InvalidParameterValue",
                "volume 1",
            ),
        ] {
            let e = WizardRequest::from_fields(&urlencoded(body)).unwrap_err();
            assert_eq!(e.code, code, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }
}
