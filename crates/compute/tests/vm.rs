//! Boots the real test guest (scripts/build-test-guest) under QEMU/TCG: BIOS and UEFI,
//! from a qcow2 overlay, a raw copy and an NBD export (qemu-nbd), hot-plug and unplug,
//! stop of idle and unresponsive guests, guest panic, and re-adoption.
//!
//! The guest comes from `OPENAMI_TEST_GUEST` (a guest.raw) or is built (and cached) in
//! `${OPENAMI_CACHE:-$HOME/.cache/openami-ci}/test-guest`. Without qemu-system-x86_64 the
//! tests are skipped with a message, unless CI=true, where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use compute::{
    Accel, BootMode, DiskFormat, DiskSource, DiskSpec, ExitReason, GuestForward, HostForward,
    Identity, NetSpec, Proto, Vm, VmSpec,
};

/// Byte offset of the guest's scratch area (the disk's last MiB, outside the partition).
const SCRATCH: u64 = 63 * 1024 * 1024;
const SCRATCH_SECTOR: u64 = SCRATCH / 512;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The test guest, or None (skip) when QEMU is missing outside CI.
fn guest() -> Option<PathBuf> {
    static GUEST: OnceLock<Option<PathBuf>> = OnceLock::new();
    GUEST
        .get_or_init(|| {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            if !have("qemu-system-x86_64") {
                assert!(
                    !ci,
                    "qemu-system-x86_64 is missing (CI=true): run scripts/install-vm-deps"
                );
                eprintln!("SKIPPED: qemu-system-x86_64 is not installed (scripts/install-vm-deps)");
                return None;
            }
            if let Some(p) = std::env::var_os("OPENAMI_TEST_GUEST") {
                return Some(PathBuf::from(p));
            }
            let cache = std::env::var_os("OPENAMI_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/openami-ci"))
                })
                .expect("HOME or OPENAMI_CACHE")
                .join("test-guest");
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-guest");
            let status = Command::new("bash")
                .arg(&script)
                .arg(&cache)
                .stdin(Stdio::null())
                .status()
                .expect("running scripts/build-test-guest");
            assert!(
                status.success(),
                "scripts/build-test-guest failed: {status}"
            );
            Some(cache.join("guest.raw"))
        })
        .clone()
}

/// Kills whatever VM still runs in a run dir when a test ends (also on panic).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(Some(mut vm)) = Vm::adopt(&self.0) {
            let _ = vm.kill();
        }
    }
}

fn spec(dir: &Path, boot: DiskSpec, mode: BootMode, user_data: Option<&str>) -> VmSpec {
    VmSpec {
        name: "test".into(),
        vcpus: 1,
        memory_mib: 256,
        boot_mode: mode,
        disks: vec![boot],
        user_data: user_data.map(|s| s.as_bytes().to_vec()),
        accel: Accel::Tcg,
        run_dir: dir.join("run"),
        network: None,
        identity: None,
    }
}

fn file_disk(id: &str, path: &Path, format: DiskFormat) -> DiskSpec {
    DiskSpec {
        id: id.into(),
        source: DiskSource::File {
            path: path.to_path_buf(),
            format,
        },
        read_only: false,
        serial: None,
    }
}

fn overlay(guest: &Path, dir: &Path) -> PathBuf {
    let path = dir.join("root.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(guest)
        .arg(&path)
        .output()
        .expect("qemu-img");
    assert!(out.status.success(), "qemu-img create: {out:?}");
    path
}

/// Reads `len` bytes at `offset` of a qcow2 image (converted to raw by qemu-img).
fn read_qcow2(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let out_file = path.with_extension("converted.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(path)
        .arg(&out_file)
        .output()
        .expect("qemu-img convert");
    assert!(out.status.success(), "qemu-img convert: {out:?}");
    read_raw(&out_file, offset, len)
}

fn read_raw(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    bytes[offset as usize..offset as usize + len].to_vec()
}

fn console(vm_dir: &Path) -> String {
    String::from_utf8_lossy(&Vm::console_output_of(vm_dir).unwrap()).into_owned()
}

/// Waits until the console contains `needle`; returns the time it took.
fn wait_console(vm_dir: &Path, needle: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if console(vm_dir).contains(needle) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "no {needle:?} on the console after {timeout:?}:\n{}",
            console(vm_dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Launches and measures launch → first console byte and → the guest's boot line.
fn launch_timed(spec: VmSpec, label: &str) -> Vm {
    let dir = spec.run_dir.clone();
    let start = Instant::now();
    let vm = Vm::launch(spec).expect("launch");
    let launched = start.elapsed();
    let first = loop {
        if !console(&dir).is_empty() {
            break start.elapsed();
        }
        assert!(start.elapsed() < BOOT_TIMEOUT, "no console output");
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_console(&dir, "openami-guest: booted", BOOT_TIMEOUT);
    eprintln!(
        "[timing] {label}: launch {:.2} s, first console byte {:.2} s, boot line {:.2} s",
        launched.as_secs_f64(),
        first.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    vm
}

fn marker_script(marker: &str) -> String {
    format!(
        "echo 'user-data says hi'\nprintf '{marker}' | dd of=/dev/vda bs=512 seek={SCRATCH_SECTOR} conv=notrunc 2>/dev/null\nsync\necho \"wrote marker to /dev/vda sector {SCRATCH_SECTOR}\"\n"
    )
}

fn assert_guest_ran(dir: &Path) {
    let c = console(dir);
    assert!(c.contains("openami-guest: booted"), "console:\n{c}");
    assert!(c.contains("user-data says hi"), "console:\n{c}");
    assert!(c.contains("wrote marker"), "console:\n{c}");
    assert!(
        c.contains("user data exited with status 0"),
        "console:\n{c}"
    );
}

fn assert_gone(pid: u32) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.is_empty(),
        "QEMU pid {pid} still alive: {}",
        String::from_utf8_lossy(&cmdline)
    );
}

/// A qemu-nbd server for `image` on a unix socket, killed on drop.
struct NbdServer {
    child: Child,
    socket: PathBuf,
}

impl NbdServer {
    fn start(image: &Path, format: &str, export: &str, dir: &Path) -> NbdServer {
        let socket = dir.join(format!("{export}.nbd.sock"));
        let log = std::fs::File::create(dir.join(format!("{export}.nbd.log"))).unwrap();
        let child = Command::new("qemu-nbd")
            .arg(format!("--socket={}", socket.display()))
            .args([
                "--format",
                format,
                "--export-name",
                export,
                "--shared=4",
                "--persistent",
            ])
            .arg(image)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("qemu-nbd");
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "qemu-nbd did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        NbdServer { child, socket }
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bios_boot_of_a_qcow2_overlay_runs_user_data_and_powers_off() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let marker = "openami-bios-marker";
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        Some(&marker_script(marker)),
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "BIOS qcow2");
    assert!(!vm.uses_kvm());
    let start = Instant::now();
    let reason = vm
        .wait_timeout(BOOT_TIMEOUT)
        .unwrap()
        .expect("guest powers off");
    eprintln!(
        "[timing] BIOS qcow2: boot line to exit {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(reason, ExitReason::GuestPoweroff);
    assert_gone(vm.pid());
    assert_guest_ran(&run);
    assert_eq!(read_qcow2(&root, SCRATCH, marker.len()), marker.as_bytes());
    assert_eq!(
        Vm::last_exit(&run).unwrap(),
        Some(ExitReason::GuestPoweroff)
    );
    assert!(
        Vm::adopt(&run).unwrap().is_none(),
        "an ended VM is not adopted"
    );
}

#[test]
fn uefi_boot_of_a_raw_copy_runs_user_data_and_powers_off() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.raw");
    std::fs::copy(&guest, &root).unwrap();
    let marker = "openami-uefi-marker";
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Raw),
        BootMode::Uefi,
        Some(&marker_script(marker)),
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "UEFI raw");
    let reason = vm
        .wait_timeout(BOOT_TIMEOUT)
        .unwrap()
        .expect("guest powers off");
    assert_eq!(reason, ExitReason::GuestPoweroff);
    assert_guest_ran(&run);
    assert!(run.join("OVMF_VARS.fd").is_file());
    assert_eq!(read_raw(&root, SCRATCH, marker.len()), marker.as_bytes());
}

#[test]
fn boots_from_an_nbd_export() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let nbd = NbdServer::start(&root, "qcow2", "root", dir.path());
    let marker = "openami-nbd-marker";
    let boot = DiskSpec {
        id: "root".into(),
        source: DiskSource::Nbd {
            socket: nbd.socket.clone(),
            export: "root".into(),
        },
        read_only: false,
        serial: Some("vol0123456789abcdef0".into()),
    };
    let script = format!(
        "{}echo \"serial=$(cat /sys/block/vda/serial)\"\n",
        marker_script(marker)
    );
    let spec = spec(dir.path(), boot, BootMode::Bios, Some(&script));
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "BIOS NBD");
    let reason = vm
        .wait_timeout(BOOT_TIMEOUT)
        .unwrap()
        .expect("guest powers off");
    assert_eq!(reason, ExitReason::GuestPoweroff);
    assert_guest_ran(&run);
    assert!(console(&run).contains("serial=vol0123456789abcdef0"));
    drop(nbd);
    assert_eq!(read_qcow2(&root, SCRATCH, marker.len()), marker.as_bytes());
}

#[test]
fn hot_plugs_and_unplugs_an_nbd_disk() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let data = dir.path().join("data.raw");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let nbd = NbdServer::start(&data, "raw", "data", dir.path());
    let script = r#"
i=0
while [ ! -b /dev/vdb ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vdb ] || { echo "no /dev/vdb"; exit 1; }
echo "vdb appeared, $(cat /sys/block/vdb/size) sectors"
printf 'openami-hotplug-marker' | dd of=/dev/vdb bs=512 seek=1 conv=notrunc 2>/dev/null
sync
echo "read back: $(dd if=/dev/vdb bs=512 skip=1 count=1 2>/dev/null | head -c 22)"
i=0
while [ -b /dev/vdb ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vdb ] && { echo "vdb still there"; exit 1; }
echo "vdb gone"
"#;
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        Some(script),
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "BIOS hot-plug");
    wait_console(&run, "running user data", BOOT_TIMEOUT);
    vm.attach_nbd_disk("data", &nbd.socket, "data").unwrap();
    assert_eq!(vm.spec().disks.len(), 2);
    assert!(
        vm.attach_nbd_disk("data", &nbd.socket, "data").is_err(),
        "duplicate id"
    );
    wait_console(&run, "read back: openami-hotplug-marker", BOOT_TIMEOUT);
    assert!(console(&run).contains("vdb appeared, 16384 sectors"));
    vm.detach_disk("data", Duration::from_secs(60)).unwrap();
    assert_eq!(vm.spec().disks.len(), 1);
    let reason = vm
        .wait_timeout(BOOT_TIMEOUT)
        .unwrap()
        .expect("guest powers off");
    assert_eq!(
        reason,
        ExitReason::GuestPoweroff,
        "console:\n{}",
        console(&run)
    );
    assert!(console(&run).contains("vdb gone"));
    assert!(console(&run).contains("user data exited with status 0"));
    drop(nbd);
    assert_eq!(read_raw(&data, 512, 22), b"openami-hotplug-marker");
}

#[test]
fn stop_powers_down_an_idle_guest() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        None,
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "BIOS idle");
    wait_console(&run, "no user data, idle", BOOT_TIMEOUT);
    assert_eq!(vm.query_status().unwrap(), "running");
    assert_eq!(vm.poll_exit().unwrap(), None);
    let start = Instant::now();
    let reason = vm.stop(Duration::from_secs(60)).unwrap();
    eprintln!(
        "[timing] stop via ACPI powerdown {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(reason, ExitReason::HostPowerdown);
    assert!(console(&run).contains("ACPI power button, powering off"));
    assert_gone(vm.pid());
    assert!(!run.join("qmp.sock").exists());
    // Stopping again answers the recorded reason.
    assert_eq!(
        vm.stop(Duration::from_secs(1)).unwrap(),
        ExitReason::HostPowerdown
    );
}

#[test]
fn stop_escalates_to_quit_when_the_guest_ignores_powerdown() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    // Killing the power-button watcher makes the guest deaf to ACPI powerdown.
    let script = "killall dd\necho 'watcher killed'\nsleep 3600\n";
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        Some(script),
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "BIOS deaf");
    wait_console(&run, "watcher killed", BOOT_TIMEOUT);
    let start = Instant::now();
    let reason = vm.stop(Duration::from_secs(3)).unwrap();
    assert_eq!(reason, ExitReason::HostQuit);
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_gone(vm.pid());
}

#[test]
fn kill_and_guest_panic_are_told_apart() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        Some("echo c > /proc/sysrq-trigger\nsleep 3600\n"),
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "BIOS panic");
    let reason = vm
        .wait_timeout(BOOT_TIMEOUT)
        .unwrap()
        .expect("guest panics");
    assert_eq!(
        reason,
        ExitReason::GuestPanic,
        "console:\n{}",
        console(&run)
    );
    assert_gone(vm.pid());

    let dir2 = tempfile::tempdir().unwrap();
    let root2 = overlay(&guest, dir2.path());
    let spec2 = self::spec(
        dir2.path(),
        file_disk("root", &root2, DiskFormat::Qcow2),
        BootMode::Bios,
        None,
    );
    let _cleanup2 = Cleanup(spec2.run_dir.clone());
    let mut vm2 = Vm::launch(spec2).unwrap();
    assert_eq!(vm2.kill().unwrap(), ExitReason::Killed);
    assert_gone(vm2.pid());
}

#[test]
fn adopts_a_running_vm_after_the_handle_is_dropped() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        None,
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let vm = launch_timed(spec.clone(), "BIOS adopt");
    let pid = vm.pid();
    drop(vm);
    assert!(
        matches!(Vm::launch(spec), Err(compute::Error::AlreadyRunning(_))),
        "a second launch in the same run dir is refused"
    );
    let mut vm = Vm::adopt(&run).unwrap().expect("the VM is still running");
    assert_eq!(vm.pid(), pid);
    assert_eq!(vm.query_status().unwrap(), "running");
    assert_eq!(vm.spec().disks[0].id, "root");
    wait_console(&run, "no user data, idle", BOOT_TIMEOUT);
    assert_eq!(
        vm.stop(Duration::from_secs(60)).unwrap(),
        ExitReason::HostPowerdown
    );
    assert_gone(pid);
    assert!(Vm::adopt(&run).unwrap().is_none());
}

#[test]
fn adopt_learns_of_a_guest_poweroff_that_happened_while_nobody_watched() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        Some("echo bye\n"),
    );
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let vm = Vm::launch(spec).unwrap();
    drop(vm);
    wait_console(&run, "Power down", BOOT_TIMEOUT);
    std::thread::sleep(Duration::from_millis(200));
    let mut vm = Vm::adopt(&run)
        .unwrap()
        .expect("QEMU lingers after guest poweroff");
    assert_eq!(vm.query_status().unwrap(), "shutdown");
    assert_eq!(vm.poll_exit().unwrap(), Some(ExitReason::GuestPoweroff));
    assert_gone(vm.pid());
}

#[test]
fn a_kvm_that_cannot_run_the_guest_is_reported_as_a_crash() {
    let Some(guest) = guest() else { return };
    if !Path::new("/dev/kvm").exists() || compute::kvm_usable() {
        eprintln!(
            "SKIPPED: needs a /dev/kvm that fails the probe (this machine's KVM works or is absent)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    let mut spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        None,
    );
    spec.accel = Accel::Kvm;
    let _cleanup = Cleanup(spec.run_dir.clone());
    let start = Instant::now();
    // Depending on the host, a broken KVM either makes QEMU abort at once (e.g. it cannot
    // set an MSR) — a launch error — or runs the firmware into an internal error later.
    let mut vm = match Vm::launch(spec) {
        Ok(vm) => vm,
        Err(compute::Error::Launch { message }) => {
            eprintln!(
                "[timing] KVM refused at launch after {:.2} s: {message}",
                start.elapsed().as_secs_f64()
            );
            assert!(message.contains("exited at once"), "{message}");
            return;
        }
        Err(e) => panic!("expected a launch error or a crash, got {e}"),
    };
    assert!(vm.uses_kvm());
    // Broken KVM spins in the firmware for a while (~30 s here) before its internal error.
    let reason = vm.wait_timeout(Duration::from_secs(180)).unwrap();
    eprintln!(
        "[timing] KVM failure detected after {:.2} s: {reason:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        matches!(reason, Some(ExitReason::Crashed { .. })),
        "expected a crash, got {reason:?}"
    );
    assert_gone(vm.pid());
}

#[test]
fn kvm_probe_answers() {
    if guest().is_none() {
        return;
    }
    let start = Instant::now();
    let kvm = compute::probe_kvm(Duration::from_secs(5)).unwrap();
    eprintln!(
        "KVM usable here: {kvm} (probe took {:.2} s)",
        start.elapsed().as_secs_f64()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET http://addr:port/ with a short timeout; the body, or None when refused.
fn http_get(addr: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((addr, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[test]
fn nic_with_private_address_guest_forward_and_live_host_forwards() {
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = overlay(&guest, dir.path());
    // The "metadata service": every guest connection to 169.254.169.254:80 runs this
    // script, which answers any request with the same body.
    let responder = dir.path().join("respond.sh");
    std::fs::write(
        &responder,
        "#!/bin/sh\nwhile read -r line; do [ \"$(printf %s \"$line\" | tr -d '\\r')\" = \"\" ] && break; done\nprintf 'HTTP/1.0 200 OK\\r\\nContent-Length: 12\\r\\n\\r\\ni-0feedc0de\\n'\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&responder)
        .status()
        .unwrap();
    let mut spec = spec(
        dir.path(),
        file_disk("root", &root, DiskFormat::Qcow2),
        BootMode::Bios,
        None,
    );
    spec.network = Some(NetSpec {
        mac: "02:00:5e:10:00:01".into(),
        net: "168.0.0.0/5".into(),
        host: "172.31.0.1".into(),
        dns: "172.31.0.2".into(),
        dhcp_start: "172.31.7.9".into(),
        hostname: Some("ip-172-31-7-9".into()),
        guest_forwards: vec![GuestForward {
            addr: "169.254.169.254".into(),
            port: 80,
            command: vec![responder.to_string_lossy().into_owned()],
        }],
        host_forwards: vec![],
        egress: false,
    });
    spec.identity = Some(Identity {
        manufacturer: "Amazon EC2".into(),
        product: "t3.micro".into(),
        uuid: "ec2e1916-1111-2222-3333-444455556666".into(),
        asset_tag: "i-0feedc0de".into(),
    });
    let run = spec.run_dir.clone();
    let _cleanup = Cleanup(run.clone());
    let mut vm = launch_timed(spec, "BIOS with NIC");
    wait_console(&run, "eth0 172.31.7.9", BOOT_TIMEOUT);
    wait_console(&run, "metadata instance-id i-0feedc0de", BOOT_TIMEOUT);
    let port = free_port();
    let fwd = HostForward {
        proto: Proto::Tcp,
        host_addr: "127.0.0.1".into(),
        host_port: port,
        guest_port: 80,
    };
    assert_eq!(http_get("127.0.0.1", port), None, "no forward yet");
    vm.add_host_forward(fwd.clone()).unwrap();
    assert_eq!(
        http_get("127.0.0.1", port).as_deref(),
        Some("i-0feedc0de\n")
    );
    vm.remove_host_forward(&fwd).unwrap();
    assert_eq!(http_get("127.0.0.1", port), None, "forward removed");
    // A forward the host cannot listen on is an error, not a silent no-op.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = HostForward {
        host_port: taken.local_addr().unwrap().port(),
        ..fwd.clone()
    };
    assert!(vm.add_host_forward(busy).is_err());
    let png = vm.screenshot().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    vm.kill().unwrap();
}
