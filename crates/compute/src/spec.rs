//! What a VM is made of: [`VmSpec`] and its disks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Everything needed to launch one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// A name for QEMU's `-name` (e.g. the instance id); shown in `ps`.
    pub name: String,
    /// Number of virtual CPUs (at least 1).
    pub vcpus: u32,
    /// Guest memory in MiB (at least 16).
    pub memory_mib: u64,
    /// Firmware: SeaBIOS or OVMF.
    pub boot_mode: BootMode,
    /// Disks in order; the first is the boot disk (`bootindex=0`), `/dev/vda` in a Linux
    /// guest, the next `/dev/vdb` and so on (hot-plugged disks take the next free letter).
    pub disks: Vec<DiskSpec>,
    /// User data, handed to the guest through fw_cfg as `opt/openami/user-data`.
    /// Not kept in state.json; an adopted VM reads it back from `run_dir/user-data`.
    #[serde(skip)]
    pub user_data: Option<Vec<u8>>,
    /// Which accelerator to use.
    pub accel: Accel,
    /// The VM's run directory (see the crate docs); created if missing. Its path must be
    /// short enough for a unix socket path (`run_dir/qmp.sock` under 108 bytes).
    pub run_dir: PathBuf,
    /// The NIC and its user-mode network; `None`: no NIC.
    #[serde(default)]
    pub network: Option<NetSpec>,
    /// SMBIOS identity (system, baseboard, chassis) the guest reads from DMI.
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// One virtio-net NIC on its own QEMU user-mode (slirp) network. The network is
/// isolated unless `egress` is set (`restrict=on`: the guest reaches only the built-in
/// DHCP server and the [`GuestForward`]s; host ports reach it through [`HostForward`]s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// MAC address, `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// slirp's network (`a.b.c.d/len`, len 4..=32); must contain `host`, `dns`,
    /// `dhcp_start` and every guest forward address.
    pub net: String,
    /// The gateway/host address inside the network.
    pub host: String,
    /// The DNS address inside the network.
    pub dns: String,
    /// The first (and, with one guest, only) address the DHCP server hands out.
    pub dhcp_start: String,
    /// Hostname sent in the DHCP lease.
    pub hostname: Option<String>,
    /// Guest connections to `addr:port` are handed to a command.
    pub guest_forwards: Vec<GuestForward>,
    /// Host ports forwarded into the guest; changed at runtime with
    /// [`crate::Vm::add_host_forward`] / [`crate::Vm::remove_host_forward`].
    pub host_forwards: Vec<HostForward>,
    /// Outbound NAT to anywhere (`restrict=off`). Off by default: an operator choice.
    pub egress: bool,
}

/// `guestfwd=tcp:ADDR:PORT-cmd:COMMAND`: each guest connection to `addr:port` runs
/// `command` with the connection as its stdin and stdout (and stderr).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestForward {
    /// Address inside the network (e.g. 169.254.169.254).
    pub addr: String,
    /// TCP port.
    pub port: u16,
    /// Program and arguments; QEMU splits the command on spaces, so none may contain a
    /// space (or a comma, which the option syntax would need doubled).
    pub command: Vec<String>,
}

/// Transport of a [`HostForward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `hostfwd=PROTO:HOST_ADDR:HOST_PORT-:GUEST_PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostForward {
    /// TCP or UDP.
    pub proto: Proto,
    /// Host address to listen on (e.g. an instance's loopback public address).
    pub host_addr: String,
    /// Host port.
    pub host_port: u16,
    /// Guest port.
    pub guest_port: u16,
}

impl HostForward {
    /// The rule as QEMU writes it: `tcp:127.100.0.7:22-:22`.
    pub fn rule(&self) -> String {
        format!(
            "{}:{}:{}-:{}",
            self.proto.as_str(),
            self.host_addr,
            self.host_port,
            self.guest_port
        )
    }
}

/// SMBIOS values. cloud-init identifies EC2 by a system UUID and serial that start with
/// `ec2` and are equal; the baseboard asset tag is the instance id on EC2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// System and chassis manufacturer (`Amazon EC2`).
    pub manufacturer: String,
    /// System product name (the instance type).
    pub product: String,
    /// System UUID (`ec2xxxxx-…`), also used as the serial number.
    pub uuid: String,
    /// Baseboard asset tag (the instance id).
    pub asset_tag: String,
}

/// Firmware to boot with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootMode {
    /// SeaBIOS (legacy BIOS).
    Bios,
    /// OVMF (UEFI) with a per-VM variable store.
    Uefi,
}

/// Accelerator choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Accel {
    /// KVM if [`crate::kvm_usable`] says KVM really runs a guest here (probed once per
    /// process), else TCG.
    Auto,
    /// KVM (`-cpu host`), whether or not it works here.
    Kvm,
    /// TCG, QEMU's emulator (`-cpu max`: with a lesser CPU model the guest waits on
    /// entropy).
    Tcg,
}

/// One disk of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Identifier: QEMU device id and (prefixed with `blk-`) block node name. Letters,
    /// digits, `-` and `_`, starting with a letter, at most 32 characters.
    pub id: String,
    /// Where the bytes come from.
    pub source: DiskSource,
    /// Attach read-only.
    pub read_only: bool,
    /// virtio-blk serial number (at most 20 bytes), visible to the guest as
    /// `/sys/block/vdX/serial` and `/dev/disk/by-id/virtio-<serial>`.
    pub serial: Option<String>,
}

/// The backing of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskSource {
    /// An NBD export on a unix socket (openami serves volumes this way).
    Nbd {
        /// The server's unix socket.
        socket: PathBuf,
        /// The export name.
        export: String,
    },
    /// A local image file (instance store, test images).
    File {
        /// The image file.
        path: PathBuf,
        /// Its format.
        format: DiskFormat,
    },
}

/// Image file formats QEMU opens for [`DiskSource::File`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskFormat {
    /// Raw bytes.
    Raw,
    /// qcow2 (e.g. an overlay on a base image).
    Qcow2,
}

impl DiskFormat {
    pub(crate) fn driver(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl DiskSpec {
    /// Checks the id and serial.
    pub fn validate(&self) -> Result<()> {
        valid_id(&self.id)?;
        if let Some(serial) = &self.serial
            && (serial.len() > 20 || serial.contains(','))
        {
            return Err(Error::InvalidSpec(format!(
                "disk {}: serial {serial:?} must be at most 20 bytes without commas",
                self.id
            )));
        }
        if let DiskSource::Nbd { export, .. } = &self.source
            && export.len() > 4096
        {
            return Err(Error::InvalidSpec(format!(
                "disk {}: NBD export name longer than 4096 bytes",
                self.id
            )));
        }
        Ok(())
    }
}

/// Checks a disk id: `[A-Za-z][A-Za-z0-9_-]{0,31}`.
pub(crate) fn valid_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = id.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "disk id {id:?}: use a letter then letters, digits, - or _ (32 at most)"
        )))
    }
}

impl VmSpec {
    /// Checks what QEMU would otherwise reject late or misread.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.contains(',') || self.name.contains('\0') {
            return Err(Error::InvalidSpec(format!(
                "name {:?} must be non-empty, without commas",
                self.name
            )));
        }
        if self.vcpus == 0 || self.vcpus > 255 {
            return Err(Error::InvalidSpec(format!(
                "vcpus {} not in 1..=255",
                self.vcpus
            )));
        }
        if self.memory_mib < 16 {
            return Err(Error::InvalidSpec(format!(
                "memory_mib {} is below 16",
                self.memory_mib
            )));
        }
        if self.disks.is_empty() {
            return Err(Error::InvalidSpec("a VM needs at least a boot disk".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for disk in &self.disks {
            disk.validate()?;
            if !seen.insert(disk.id.as_str()) {
                return Err(Error::InvalidSpec(format!(
                    "disk id {} used twice",
                    disk.id
                )));
            }
        }
        if let Some(net) = &self.network {
            net.validate()?;
        }
        if let Some(id) = &self.identity {
            for v in [&id.manufacturer, &id.product, &id.uuid, &id.asset_tag] {
                if v.contains(',') || v.contains('\0') || v.len() > 64 {
                    return Err(Error::InvalidSpec(format!(
                        "SMBIOS value {v:?} must be at most 64 bytes without commas"
                    )));
                }
            }
        }
        let sock = self.run_dir.join("qmp.sock");
        if sock.as_os_str().len() >= 108 {
            return Err(Error::InvalidSpec(format!(
                "run_dir {} is too long for a unix socket path (qmp.sock would be {} bytes, the limit is 107)",
                self.run_dir.display(),
                sock.as_os_str().len()
            )));
        }
        Ok(())
    }
}

fn check_value(what: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != ',' && c != '"' && c != '\'');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "{what} {v:?}: printable ASCII without spaces, commas or quotes"
        )))
    }
}

impl NetSpec {
    /// Checks what QEMU's option syntax would misread.
    pub fn validate(&self) -> Result<()> {
        let mac_ok = self.mac.len() == 17
            && self.mac.split(':').count() == 6
            && self
                .mac
                .split(':')
                .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        if !mac_ok {
            return Err(Error::InvalidSpec(format!("MAC {:?}", self.mac)));
        }
        for (what, v) in [
            ("net", &self.net),
            ("host", &self.host),
            ("dns", &self.dns),
            ("dhcp_start", &self.dhcp_start),
        ] {
            check_value(what, v)?;
        }
        if let Some(h) = &self.hostname {
            check_value("hostname", h)?;
        }
        for f in &self.guest_forwards {
            check_value("guest forward address", &f.addr)?;
            if f.command.is_empty() {
                return Err(Error::InvalidSpec("guest forward without a command".into()));
            }
            for part in &f.command {
                check_value("guest forward command", part)?;
            }
        }
        for f in &self.host_forwards {
            check_value("host forward address", &f.host_addr)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            name: "i-1".into(),
            vcpus: 1,
            memory_mib: 256,
            boot_mode: BootMode::Bios,
            disks: vec![DiskSpec {
                id: "root".into(),
                source: DiskSource::File {
                    path: "/x".into(),
                    format: DiskFormat::Raw,
                },
                read_only: false,
                serial: Some("vol0123456789abcdef0".into()),
            }],
            user_data: None,
            accel: Accel::Tcg,
            run_dir: "/tmp/vm".into(),
            network: None,
            identity: None,
        }
    }

    #[test]
    fn validates_specs() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.disks[0].id = "0bad".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.disks.push(s.disks[0].clone());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.run_dir = PathBuf::from("/").join("a".repeat(120));
        assert!(s.validate().is_err());
        let mut s = spec();
        s.disks[0].serial = Some("x".repeat(21));
        assert!(s.validate().is_err());
        let mut s = spec();
        s.disks.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.name = "a,b".into();
        assert!(s.validate().is_err());
    }

    fn net() -> NetSpec {
        NetSpec {
            mac: "02:00:00:00:00:01".into(),
            net: "168.0.0.0/5".into(),
            host: "172.31.0.1".into(),
            dns: "172.31.0.2".into(),
            dhcp_start: "172.31.0.10".into(),
            hostname: Some("ip-172-31-0-10".into()),
            guest_forwards: vec![GuestForward {
                addr: "169.254.169.254".into(),
                port: 80,
                command: vec!["/bin/relay".into(), "/run/imds.sock".into()],
            }],
            host_forwards: vec![HostForward {
                proto: Proto::Tcp,
                host_addr: "127.100.0.7".into(),
                host_port: 22,
                guest_port: 22,
            }],
            egress: false,
        }
    }

    #[test]
    fn validates_networks() {
        let mut s = spec();
        s.network = Some(net());
        assert!(s.validate().is_ok());
        assert_eq!(net().host_forwards[0].rule(), "tcp:127.100.0.7:22-:22");
        let mut n = net();
        n.mac = "02:00:00:00:00".into();
        assert!(n.validate().is_err());
        let mut n = net();
        n.guest_forwards[0].command[0] = "/path with space".into();
        assert!(n.validate().is_err());
        let mut n = net();
        n.hostname = Some("a,b".into());
        assert!(n.validate().is_err());
        let mut n = net();
        n.guest_forwards[0].command.clear();
        assert!(n.validate().is_err());
    }

    #[test]
    fn state_json_round_trip_drops_user_data() {
        let mut s = spec();
        s.user_data = Some(b"echo hi".to_vec());
        let json = serde_json::to_string(&s).unwrap();
        let back: VmSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.user_data, None);
        assert_eq!(back.disks, s.disks);
    }
}
