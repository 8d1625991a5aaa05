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
