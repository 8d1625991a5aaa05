//! The QEMU command line for a [`VmSpec`], OVMF lookup and the KVM probe.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::spec::{Accel, BootMode, DiskSource, DiskSpec, NetSpec, VmSpec};

/// The QEMU binary (on `PATH`).
pub(crate) const QEMU: &str = "qemu-system-x86_64";

/// Where OVMF may live: (code, vars template) pairs, preferred first.
const OVMF_CANDIDATES: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
];

/// Finds the OVMF code and variable-store template.
pub(crate) fn ovmf() -> Result<(PathBuf, PathBuf)> {
    OVMF_CANDIDATES
        .iter()
        .map(|(c, v)| (PathBuf::from(c), PathBuf::from(v)))
        .find(|(c, v)| c.is_file() && v.is_file())
        .ok_or_else(|| {
            Error::FirmwareNotFound(
                OVMF_CANDIDATES
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// Escapes a value for QEMU's `key=value,...` option syntax (commas are doubled).
fn opt(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// The `-blockdev` JSON for a disk.
/// How long QEMU holds a disk's I/O when its NBD server goes away (a crashed openami being
/// restarted) before failing requests; it keeps reconnecting to the same socket after
/// that, and paused requests are replayed once it is back.
pub const NBD_RECONNECT_DELAY_SECS: u64 = 120;

pub(crate) fn blockdev(disk: &DiskSpec) -> Value {
    let node = node_name(&disk.id);
    match &disk.source {
        DiskSource::Nbd { socket, export } => json!({
            "driver": "nbd",
            "node-name": node,
            "server": { "type": "unix", "path": socket.to_string_lossy() },
            "export": export,
            "read-only": disk.read_only,
            "reconnect-delay": NBD_RECONNECT_DELAY_SECS,
        }),
        DiskSource::File { path, format } => json!({
            "driver": format.driver(),
            "node-name": node,
            "read-only": disk.read_only,
            "file": {
                "driver": "file",
                "filename": path.to_string_lossy(),
                "read-only": disk.read_only,
            },
        }),
    }
}

/// The `-device` / `device_add` JSON for a disk.
pub(crate) fn device(disk: &DiskSpec, boot: bool) -> Value {
    let mut dev = json!({
        "driver": "virtio-blk-pci",
        "id": disk.id,
        "drive": node_name(&disk.id),
    });
    if boot {
        dev["bootindex"] = json!(0);
    }
    if let Some(serial) = &disk.serial {
        dev["serial"] = json!(serial);
    }
    dev
}

/// The block node name for a disk id.
pub(crate) fn node_name(id: &str) -> String {
    format!("blk-{id}")
}

/// Files of a run directory.
pub(crate) struct RunFiles {
    pub qmp: PathBuf,
    pub pidfile: PathBuf,
    pub console: PathBuf,
    pub user_data: PathBuf,
    pub ovmf_vars: PathBuf,
}

impl RunFiles {
    pub fn new(run_dir: &Path) -> RunFiles {
        RunFiles {
            qmp: run_dir.join("qmp.sock"),
            pidfile: run_dir.join("qemu.pid"),
            console: run_dir.join("console.log"),
            user_data: run_dir.join("user-data"),
            ovmf_vars: run_dir.join("OVMF_VARS.fd"),
        }
    }
}

/// Builds QEMU's arguments. The VM starts paused (`-S`); the launcher continues it once
/// QMP is connected, so no event is missed.
pub(crate) fn args(
    spec: &VmSpec,
    kvm: bool,
    files: &RunFiles,
    ovmf_code: Option<&Path>,
) -> Vec<OsString> {
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("guest={},debug-threads=on", spec.name),
        "-machine".into(),
        "pc".into(),
        "-accel".into(),
        if kvm { "kvm" } else { "tcg" }.into(),
        "-cpu".into(),
        if kvm { "host" } else { "max" }.into(),
        "-smp".into(),
        spec.vcpus.to_string(),
        "-m".into(),
        format!("{}M", spec.memory_mib),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-S".into(),
        "-no-shutdown".into(),
        "-chardev".into(),
        format!("socket,id=qmp,path={},server=on,wait=off", opt(&files.qmp)),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
        "-chardev".into(),
        format!("file,id=serial0,path={},append=on", opt(&files.console)),
        "-serial".into(),
        "chardev:serial0".into(),
        "-pidfile".into(),
        files.pidfile.to_string_lossy().into_owned(),
        // Guest panics end the VM as a SHUTDOWN with reason guest-panic.
        "-device".into(),
        "pvpanic".into(),
        // A screen for GetConsoleScreenshot (QMP screendump); nothing displays it.
        "-device".into(),
        "VGA".into(),
    ];
    if let Some(code) = ovmf_code {
        a.push("-drive".into());
        a.push(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            opt(code)
        ));
        a.push("-drive".into());
        a.push(format!(
            "if=pflash,format=raw,unit=1,file={}",
            opt(&files.ovmf_vars)
        ));
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        a.push("-blockdev".into());
        a.push(blockdev(disk).to_string());
        a.push("-device".into());
        a.push(device(disk, i == 0).to_string());
    }
    if let Some(id) = &spec.identity {
        a.push("-smbios".into());
        a.push(format!(
            "type=1,manufacturer={},product={},version=1.0,serial={},uuid={}",
            id.manufacturer, id.product, id.uuid, id.uuid
        ));
        a.push("-smbios".into());
        a.push(format!(
            "type=2,manufacturer={},product=Not Specified,asset={}",
            id.manufacturer, id.asset_tag
        ));
        a.push("-smbios".into());
        a.push(format!(
            "type=3,manufacturer={},asset={}",
            id.manufacturer, id.manufacturer
        ));
    }
    if let Some(net) = &spec.network {
        a.push("-netdev".into());
        a.push(netdev(net));
        a.push("-device".into());
        a.push(format!("virtio-net-pci,netdev={NETDEV},mac={}", net.mac));
    }
    if spec.user_data.is_some() {
        a.push("-fw_cfg".into());
        a.push(format!(
            "name=opt/openami/user-data,file={}",
            opt(&files.user_data)
        ));
    }
    // The run dir in the command line lets adopt() tell our QEMU from a recycled pid.
    a.into_iter().map(OsString::from).collect()
}

/// The id of the user-mode network backend (QMP `hostfwd_add` names it).
pub(crate) const NETDEV: &str = "net0";

/// The `-netdev user,…` option for a NIC.
pub(crate) fn netdev(net: &NetSpec) -> String {
    let mut o = format!(
        "user,id={NETDEV},ipv6=off,restrict={},net={},host={},dns={},dhcpstart={}",
        if net.egress { "off" } else { "on" },
        net.net,
        net.host,
        net.dns,
        net.dhcp_start
    );
    if let Some(h) = &net.hostname {
        o.push_str(&format!(",hostname={h}"));
    }
    for f in &net.host_forwards {
        o.push_str(&format!(",hostfwd={}", f.rule()));
    }
    for f in &net.guest_forwards {
        o.push_str(&format!(
            ",guestfwd=tcp:{}:{}-cmd:{}",
            f.addr,
            f.port,
            f.command.join(" ")
        ));
    }
    o
}

/// Whether UEFI firmware is needed.
pub(crate) fn needs_ovmf(spec: &VmSpec) -> bool {
    spec.boot_mode == BootMode::Uefi
}

static KVM_USABLE: OnceLock<bool> = OnceLock::new();

/// Whether KVM really runs a guest on this machine: [`probe_kvm`] once per process,
/// cached. [`Accel::Auto`] uses KVM only when this is true.
pub fn kvm_usable() -> bool {
    *KVM_USABLE.get_or_init(|| match probe_kvm(Duration::from_secs(5)) {
        Ok(ok) => {
            tracing::info!(kvm = ok, "KVM probe");
            ok
        }
        Err(e) => {
            tracing::info!("KVM probe failed: {e}; using TCG");
            false
        }
    })
}

/// Probes whether KVM executes a guest. On x86 the CPU must first offer hardware
/// virtualization (`vmx` or `svm` among `/proc/cpuinfo`'s flags): a `/dev/kvm` without it
/// is a paravirtual KVM such as PVM (`kvm_pvm`), which runs only guest kernels built for
/// it; it gets through SeaBIOS but stops an ordinary guest's boot loader at an internal
/// error. Then it boots QEMU with `-accel kvm` and no disk, and waits for SeaBIOS to get
/// through its power-on self test to its boot attempts (its debug console, port 0x402,
/// says `Booting from` / `No bootable device`). That runs real-mode and 32-bit firmware
/// code under KVM; on machines where `/dev/kvm` exists but cannot run guests, KVM stops
/// with an internal error long before. `Ok(false)` when `/dev/kvm` is missing, the CPU
/// lacks hardware virtualization, or the firmware does not get there within `timeout`.
pub fn probe_kvm(timeout: Duration) -> Result<bool> {
    if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
            .map_err(|e| Error::io("reading /proc/cpuinfo", e))?;
        if !has_hardware_virtualization(&cpuinfo) {
            tracing::info!("the CPU offers no vmx/svm: KVM cannot run ordinary guests here");
            return Ok(false);
        }
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Ok(false);
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "openami-kvm-probe-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let debugcon = dir.join("debugcon.log");
    let result = run_probe(&debugcon, timeout);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_probe(debugcon: &Path, timeout: Duration) -> Result<bool> {
    let mut child = Command::new(QEMU)
        .args([
            "-machine", "pc", "-accel", "kvm", "-cpu", "host", "-m", "64",
        ])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-chardev")
        .arg(format!("file,id=dc,path={}", opt(debugcon)))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dc"])
        .args(["-boot", "reboot-timeout=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io(format!("spawning {QEMU} for the KVM probe"), e))?;
    let deadline = Instant::now() + timeout;
    let ok = loop {
        let text = std::fs::read(debugcon).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        if text.contains("Booting from") || text.contains("No bootable device") {
            break true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(ok)
}

/// Whether an x86 `/proc/cpuinfo` lists `vmx` (Intel VT-x) or `svm` (AMD-V) among the
/// flags of its first processor.
fn has_hardware_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "flags").then_some(value)
        })
        .is_some_and(|flags| flags.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Resolves [`Accel`] to "use KVM?".
pub(crate) fn use_kvm(accel: Accel) -> bool {
    match accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => kvm_usable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DiskFormat, DiskSpec};

    #[test]
    fn hardware_virtualization_is_read_from_the_cpu_flags() {
        let intel = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de vmx sse2\n\nprocessor\t: 1\nflags\t\t: fpu\n";
        let amd = "processor\t: 0\nflags\t\t: fpu svm lm\nbugs\t\t: sysret_ss_attrs\n";
        let pvm = "processor\t: 0\nflags\t\t: fpu vme hypervisor lm\nvmx flags\t: none\n";
        assert!(has_hardware_virtualization(intel));
        assert!(has_hardware_virtualization(amd));
        assert!(!has_hardware_virtualization(pvm));
        assert!(!has_hardware_virtualization("flags\t: fpu vmxe svmx\n"));
        assert!(!has_hardware_virtualization(""));
    }

    #[test]
    fn command_line_has_the_essentials() {
        let spec = VmSpec {
            name: "i-1".into(),
            vcpus: 2,
            memory_mib: 512,
            boot_mode: BootMode::Bios,
            disks: vec![
                DiskSpec {
                    id: "root".into(),
                    source: DiskSource::File {
                        path: "/img,1.qcow2".into(),
                        format: DiskFormat::Qcow2,
                    },
                    read_only: false,
                    serial: None,
                },
                DiskSpec {
                    id: "data".into(),
                    source: DiskSource::Nbd {
                        socket: "/run/nbd.sock".into(),
                        export: "vol-1".into(),
                    },
                    read_only: true,
                    serial: Some("vol1".into()),
                },
            ],
            user_data: Some(b"x".to_vec()),
            accel: Accel::Tcg,
            run_dir: "/run/vm,a".into(),
            network: Some(crate::spec::NetSpec {
                mac: "02:00:00:00:00:01".into(),
                net: "168.0.0.0/5".into(),
                host: "172.31.0.1".into(),
                dns: "172.31.0.2".into(),
                dhcp_start: "172.31.0.10".into(),
                hostname: None,
                guest_forwards: vec![crate::spec::GuestForward {
                    addr: "169.254.169.254".into(),
                    port: 80,
                    command: vec!["/bin/openami".into(), "imds-relay".into(), "/s".into()],
                }],
                host_forwards: vec![],
                egress: false,
            }),
            identity: Some(crate::spec::Identity {
                manufacturer: "Amazon EC2".into(),
                product: "t3.micro".into(),
                uuid: "ec2e1916-0000-0000-0000-000000000000".into(),
                asset_tag: "i-1".into(),
            }),
        };
        let files = RunFiles::new(&spec.run_dir);
        let a: Vec<String> = args(&spec, false, &files, None)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = a.join(" ");
        assert!(joined.contains("-accel tcg -cpu max"));
        assert!(joined.contains("-no-shutdown"));
        assert!(joined.contains("path=/run/vm,,a/qmp.sock"));
        assert!(joined.contains("name=opt/openami/user-data,file=/run/vm,,a/user-data"));
        assert!(joined.contains(
            "user,id=net0,ipv6=off,restrict=on,net=168.0.0.0/5,host=172.31.0.1,dns=172.31.0.2,dhcpstart=172.31.0.10,guestfwd=tcp:169.254.169.254:80-cmd:/bin/openami imds-relay /s"
        ));
        assert!(joined.contains("virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01"));
        assert!(joined.contains("serial=ec2e1916-0000-0000-0000-000000000000,uuid=ec2e1916"));
        assert!(joined.contains("type=2,manufacturer=Amazon EC2,product=Not Specified,asset=i-1"));
        let devs: Vec<Value> = a
            .windows(2)
            .filter(|w| w[0] == "-device" && w[1].starts_with('{'))
            .map(|w| serde_json::from_str(&w[1]).unwrap())
            .collect();
        assert_eq!(devs[0]["bootindex"], 0);
        assert!(devs[1].get("bootindex").is_none());
        assert_eq!(devs[1]["serial"], "vol1");
        let blk: Vec<Value> = a
            .windows(2)
            .filter(|w| w[0] == "-blockdev")
            .map(|w| serde_json::from_str(&w[1]).unwrap())
            .collect();
        assert_eq!(blk[0]["file"]["filename"], "/img,1.qcow2");
        assert_eq!(blk[1]["server"]["path"], "/run/nbd.sock");
        assert_eq!(blk[1]["read-only"], true);
    }
}
