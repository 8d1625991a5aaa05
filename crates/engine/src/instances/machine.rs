//! The machine behind a running instance: one QEMU process (see the `compute` crate) whose
//! EBS volumes are served by openami over NBD, one unix socket per volume, and whose
//! instance-store disks are raw files in the instance's directory.
//!
//! ```text
//!  <data>/regions/<r>/instances/<i-…>/disks/root.raw       instance-store root (full copy)
//!  <data>/regions/<r>/instances/<i-…>/disks/ephemeralN.raw  instance-store volumes (sparse)
//!  <data>/regions/<r>/instances/<i-…>/console.log           console of the last boot
//!  <runtime>/<i-…>/                                          QEMU run dir (QMP, pid, console)
//!  <runtime>/<i-…>/<vol-…>.sock                             NBD export of one EBS volume
//!  <runtime>/<i-…>/imds.sock                                the instance's metadata service
//!  <runtime>/owner                                          the (canonical) data dir path
//! ```
//!
//! `<runtime>` is a short directory under the system temp dir keyed by the data dir
//! (unix socket paths are limited to 108 bytes); its `owner` file lets any openami that
//! starts on this host end the machines of a data dir that was deleted
//! ([`sweep_orphans`]). When openami stops cleanly it ends its
//! machines (the lifecycle boots them again at the next start). When openami crashes its
//! machines keep running: QEMU holds their disk I/O and keeps reconnecting to the same
//! NBD sockets (`compute::NBD_RECONNECT_DELAY_SECS`); the next start *adopts* each one
//! (pid file, QMP), serves its volumes on the same sockets again, and the guest carries
//! on. A machine that cannot be adopted is ended and booted again.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catalog::ResourceRow;
use nbd::{BlockDevice, NbdServer, ServerHandle};
use volume::Volume;

use super::InstanceDoc;
use crate::{Cloud, Ec2Error, Ec2Result, lock};

/// How openami runs machines.
#[derive(Clone, Debug)]
pub struct ComputeConfig {
    /// Accelerator for QEMU.
    pub accelerator: Accelerator,
    /// Most instances active at once on this host.
    pub max_instances: usize,
    /// Public addresses handed to instances (a loopback CIDR, see `instances::network`).
    pub public_ip_pool: String,
    /// Outbound NAT for guests (off: guests reach only their metadata service).
    pub egress: bool,
    /// The program (and leading arguments) that joins a guest's metadata connection to
    /// the instance's metadata socket, e.g. `["/usr/bin/openami", "imds-relay"]`; the
    /// socket path is appended. `None`: machines get no metadata service.
    pub imds_relay: Option<Vec<String>>,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            accelerator: Accelerator::Auto,
            max_instances: 8,
            public_ip_pool: super::network::DEFAULT_PUBLIC_POOL.into(),
            egress: false,
            imds_relay: None,
        }
    }
}

/// QEMU accelerator choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    /// KVM when it really boots a guest here, else TCG.
    Auto,
    /// KVM.
    Kvm,
    /// TCG (software emulation).
    Tcg,
}

/// Why a machine is being ended, set before it is asked to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intent {
    /// StopInstances.
    Stop,
    /// TerminateInstances.
    Terminate,
    /// openami is shutting down; the instance keeps its state.
    Detach,
}

/// How a machine ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The guest powered itself off.
    GuestPowerOff,
    /// Anything else (killed, crashed, asked to quit), with a description.
    Other(String),
}

/// `nbd::BlockDevice` over a volume.
struct VolumeDevice(Arc<Volume>);

/// A volume error for the NBD server; a full disk keeps its kind, so that the guest sees
/// ENOSPC rather than EIO.
fn io_error(e: volume::VolumeError) -> std::io::Error {
    let kind = if e.is_storage_full() {
        std::io::ErrorKind::StorageFull
    } else {
        std::io::ErrorKind::Other
    };
    std::io::Error::new(kind, e.to_string())
}

impl BlockDevice for VolumeDevice {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_at(buf, offset).map_err(io_error)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_at(data, offset).map_err(io_error)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.write_zeroes(offset, len).map_err(io_error)
    }
    fn trim(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.trim(offset, len).map_err(io_error)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush().map_err(io_error)
    }
}

pub(crate) fn machine_error(context: &str, e: impl std::fmt::Display) -> Ec2Error {
    Ec2Error::internal(context, e)
}

/// A running instance's machine.
pub(crate) struct Machine {
    instance_id: String,
    vm: Mutex<compute::Vm>,
    runtime_dir: PathBuf,
    console_keep: PathBuf,
    exports: Mutex<HashMap<String, ServerHandle>>,
    intent: Mutex<Option<Intent>>,
    /// The instance's metadata service (absent without a NIC or a relay program).
    imds: Mutex<Option<imds::ImdsHandle>>,
    /// When this openami adopted the machine (its guest was up before a crash of
    /// openami, so it counts as reached even if it never asks its metadata again).
    adopted_ms: Option<i64>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// The instance's directory in the data dir.
pub(crate) fn instance_dir(cloud: &Cloud, region: &str, id: &str) -> PathBuf {
    cloud
        .data_dir()
        .root()
        .join("regions")
        .join(region)
        .join("instances")
        .join(id)
}

/// The short runtime directory of this data dir's machines.
fn runtime_root(cloud: &Cloud) -> PathBuf {
    let key = ring::digest::digest(
        &ring::digest::SHA256,
        cloud.data_dir().root().as_os_str().as_encoded_bytes(),
    );
    std::env::temp_dir().join(format!("openami-{}", hex::encode(&key.as_ref()[..4])))
}

/// The file in a runtime root naming the data dir whose machines live there.
const OWNER_FILE: &str = "owner";

/// Ends machines nobody will ever claim, at start: in this data dir's runtime root, the
/// run directories of instances that are not (or no longer) in the catalog; in the other
/// `openami-*` runtime roots of this host, everything whose data dir is gone (a test
/// harness deleted it, say). Those QEMUs would otherwise run (or sit paused before their
/// first instruction) for good. A root whose owner is not an absolute path, or whose
/// owner's `openami.lock` is held (a live openami), is left alone; a run directory is
/// removed only once its machine is known to be gone.
pub(crate) fn sweep_orphans(cloud: &Cloud) {
    let own = runtime_root(cloud);
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let root = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_root = name.len() == "openami-".len() + 8
            && name
                .strip_prefix("openami-")
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !is_root || !root.is_dir() {
            continue;
        }
        if root == own {
            sweep_unclaimed(cloud, &root);
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(root.join(OWNER_FILE)) else {
            continue;
        };
        let owner = PathBuf::from(owner.trim());
        if owner.is_absolute() && !owner.join("catalog.db").exists() && !owner_is_live(&owner) {
            tracing::info!(root = %root.display(), "ending the machines of a deleted data dir");
            if end_all(&root) {
                let _ = std::fs::remove_dir_all(&root);
            }
        }
    }
}

/// Whether an openami holds the data dir's owner lock.
fn owner_is_live(data_dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(data_dir.join("openami.lock")) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

/// Ends every machine of a runtime root; true when none is left.
fn end_all(root: &Path) -> bool {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return false;
    };
    // Every machine is asked to end, even after one that could not be.
    let failed = dirs
        .flatten()
        .filter(|d| d.path().is_dir())
        .filter(|dir| !end_leftover(&dir.path()))
        .count();
    failed == 0
}

/// Ends the machines of this data dir that no instance claims.
fn sweep_unclaimed(cloud: &Cloud, root: &Path) {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return;
    };
    for dir in dirs.flatten() {
        let id = dir.file_name().to_string_lossy().into_owned();
        if !id.starts_with("i-") {
            continue;
        }
        let claimed = cloud
            .catalog()
            .resource(&id)
            .ok()
            .flatten()
            .is_some_and(|row| row.state != "terminated");
        if !claimed && end_leftover(&dir.path()) {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}

/// Kills the QEMU of a run directory, if one still runs there; true when none runs
/// there any more.
fn end_leftover(run_dir: &Path) -> bool {
    match compute::Vm::adopt(run_dir) {
        Ok(Some(mut vm)) => {
            tracing::info!(run_dir = %run_dir.display(), pid = vm.pid(), "ending an orphaned machine");
            match vm.kill() {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(run_dir = %run_dir.display(), error = %e, "cannot end an orphaned machine");
                    false
                }
            }
        }
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(run_dir = %run_dir.display(), error = %e, "cannot adopt an orphaned machine");
            false
        }
    }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
}

impl Machine {
    /// Prepares the disks of an instance and boots its machine.
    pub(crate) fn launch(
        cloud: &Arc<Cloud>,
        row: &ResourceRow,
        doc: &InstanceDoc,
        user_data: Option<Vec<u8>>,
    ) -> Ec2Result<Arc<Machine>> {
        let dir = instance_dir(cloud, &row.region, &row.id);
        let disks_dir = dir.join("disks");
        create_private_dir(&disks_dir).map_err(|e| machine_error("instance dir", e))?;
        let root = runtime_root(cloud);
        let runtime_dir = root.join(&row.id);
        let _ = std::fs::remove_dir_all(&runtime_dir);
        create_private_dir(&runtime_dir).map_err(|e| machine_error("runtime dir", e))?;
        std::fs::write(
            root.join(OWNER_FILE),
            cloud.data_dir().root().as_os_str().as_encoded_bytes(),
        )
        .map_err(|e| machine_error("runtime dir owner", e))?;

        let mut exports = HashMap::new();
        let mut disks = Vec::new();
        // Boot order: the root device first.
        let mut ordered: Vec<(String, DiskKind)> = Vec::new();
        for d in &doc.block_devices {
            ordered.push((d.device_name.clone(), DiskKind::Volume(d.volume_id.clone())));
        }
        for e in &doc.ephemeral_disks {
            ordered.push((e.device_name.clone(), DiskKind::Local(e.clone())));
        }
        ordered.sort_by_key(|(device, _)| (device != &doc.root_device_name, device.clone()));
        for (_, kind) in ordered {
            match kind {
                DiskKind::Volume(volume_id) => {
                    let handle = cloud.volume_handle(&row.region, &volume_id)?;
                    let (server, socket) = serve_volume(&runtime_dir, &volume_id, handle)?;
                    disks.push(compute::DiskSpec {
                        id: volume_id.clone(),
                        source: compute::DiskSource::Nbd {
                            socket,
                            export: volume_id.clone(),
                        },
                        read_only: false,
                        serial: Some(volume_id.replace('-', "")),
                    });
                    exports.insert(volume_id, server);
                }
                DiskKind::Local(disk) => {
                    let path = disks_dir.join(format!("{}.raw", disk.virtual_name));
                    prepare_local_disk(cloud, row, doc, &disk, &path)?;
                    disks.push(compute::DiskSpec {
                        id: disk.virtual_name.clone(),
                        source: compute::DiskSource::File {
                            path,
                            format: compute::DiskFormat::Raw,
                        },
                        read_only: false,
                        serial: None,
                    });
                }
            }
        }
        let spec = compute::VmSpec {
            name: row.id.clone(),
            vcpus: doc.vcpus.max(1),
            memory_mib: doc.memory_mib.max(128),
            boot_mode: match doc.boot_mode.as_deref() {
                Some("uefi") => compute::BootMode::Uefi,
                _ => compute::BootMode::Bios,
            },
            disks,
            user_data,
            accel: match cloud.compute_config().accelerator {
                Accelerator::Auto => compute::Accel::Auto,
                Accelerator::Kvm => compute::Accel::Kvm,
                Accelerator::Tcg => compute::Accel::Tcg,
            },
            run_dir: runtime_dir.clone(),
            network: None,
            identity: Some(super::network::identity(&row.id, &doc.instance_type)),
        };
        let imds = super::metadata::start_imds(cloud, &row.id, &runtime_dir)?;
        let mut spec = spec;
        spec.network = super::network::net_spec(cloud, doc, &runtime_dir, imds.is_some());
        let vm = match compute::Vm::launch(spec) {
            Ok(vm) => vm,
            Err(e) => {
                if let Some(h) = imds {
                    h.shutdown();
                }
                for (_, server) in exports {
                    server.shutdown();
                }
                return Err(machine_error("launching QEMU", e));
            }
        };
        let machine = Arc::new(Machine {
            instance_id: row.id.clone(),
            vm: Mutex::new(vm),
            runtime_dir,
            console_keep: dir.join("console.log"),
            exports: Mutex::new(exports),
            intent: Mutex::new(None),
            imds: Mutex::new(imds),
            adopted_ms: None,
        });
        machine.apply_forwards(cloud);
        Ok(machine)
    }

    /// Makes the machine's host forwards what its security groups ask for now: adds the
    /// missing ones, removes the others. The instance and its groups' rules are read
    /// while the machine is held, so concurrent refreshes cannot apply an older set last.
    /// A port the host cannot listen on is logged and left closed.
    pub(crate) fn apply_forwards(&self, cloud: &Cloud) {
        let mut vm = self.vm();
        if vm.spec().network.is_none() {
            return;
        }
        let doc = match cloud.catalog().resource(&self.instance_id) {
            Ok(Some(row)) => match super::doc_of(&row) {
                Ok(doc) => doc,
                Err(_) => return,
            },
            _ => return,
        };
        let wanted = cloud.wanted_forwards(&doc);
        let current: Vec<compute::HostForward> = vm
            .spec()
            .network
            .as_ref()
            .map(|n| n.host_forwards.clone())
            .unwrap_or_default();
        for old in current.iter().filter(|f| !wanted.contains(f)) {
            if let Err(e) = vm.remove_host_forward(old) {
                tracing::warn!(instance = %self.instance_id, rule = %old.rule(), error = %e, "cannot remove a port forward");
            }
        }
        for new in wanted.into_iter().filter(|f| !current.contains(f)) {
            let rule = new.rule();
            if let Err(e) = vm.add_host_forward(new) {
                tracing::warn!(instance = %self.instance_id, %rule, error = %e, "cannot open a port forward");
            }
        }
    }

    /// When the guest last asked its metadata service something (ms since the epoch).
    pub(crate) fn last_metadata_request_ms(&self) -> Option<i64> {
        lock(&self.imds)
            .as_ref()
            .and_then(|h| h.last_request_ms())
            .or(self.adopted_ms)
    }

    /// A PNG of the machine's screen.
    pub(crate) fn screenshot(&self) -> Ec2Result<Vec<u8>> {
        self.vm()
            .screenshot()
            .map_err(|e| machine_error("screenshot", e))
    }

    /// Re-attaches to the machine a previous openami process left running for this
    /// instance, serving its EBS volumes on the same sockets again. `None` if there is
    /// no such machine (or it has ended).
    pub(crate) fn adopt(
        cloud: &Arc<Cloud>,
        row: &ResourceRow,
        doc: &InstanceDoc,
    ) -> Ec2Result<Option<Arc<Machine>>> {
        let runtime_dir = runtime_root(cloud).join(&row.id);
        if !runtime_dir.exists() {
            return Ok(None);
        }
        let Some(vm) =
            compute::Vm::adopt(&runtime_dir).map_err(|e| machine_error("adopting QEMU", e))?
        else {
            return Ok(None);
        };
        let mut exports = HashMap::new();
        for d in &doc.block_devices {
            let handle = cloud.volume_handle(&row.region, &d.volume_id)?;
            let (server, _) = serve_volume(&runtime_dir, &d.volume_id, handle)?;
            exports.insert(d.volume_id.clone(), server);
        }
        let imds = if vm.spec().network.is_some() {
            super::metadata::start_imds(cloud, &row.id, &runtime_dir)?
        } else {
            None
        };
        let machine = Arc::new(Machine {
            instance_id: row.id.clone(),
            vm: Mutex::new(vm),
            runtime_dir,
            console_keep: instance_dir(cloud, &row.region, &row.id).join("console.log"),
            exports: Mutex::new(exports),
            intent: Mutex::new(None),
            imds: Mutex::new(imds),
            adopted_ms: Some(catalog::now_ms()),
        });
        machine.apply_forwards(cloud);
        Ok(Some(machine))
    }

    pub(crate) fn set_intent(&self, intent: Intent) {
        let mut current = lock(&self.intent);
        // Terminate wins over stop; detach (openami shutting down) wins over nothing.
        if *current != Some(Intent::Terminate) {
            *current = Some(intent);
        }
    }

    pub(crate) fn intent(&self) -> Option<Intent> {
        *lock(&self.intent)
    }

    fn vm(&self) -> std::sync::MutexGuard<'_, compute::Vm> {
        lock(&self.vm)
    }

    /// The vCPU time of the machine so far.
    pub(crate) fn cpu_time(&self) -> compute::Result<compute::CpuTime> {
        self.vm().cpu_time()
    }

    /// Ends the machine at once.
    pub(crate) fn kill(&self) {
        if let Err(e) = self.vm().kill() {
            tracing::warn!(instance = %self.instance_id, error = %e, "cannot kill machine");
        }
    }

    /// ACPI power button; if the guest has not powered off after `grace`, QEMU quits.
    pub(crate) fn shut_down(&self, grace: Duration) {
        if !grace.is_zero()
            && let Err(e) = self.vm().system_powerdown()
        {
            tracing::warn!(instance = %self.instance_id, error = %e, "ACPI powerdown failed");
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if matches!(self.vm().poll_exit(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = self.vm().quit() {
            tracing::warn!(instance = %self.instance_id, error = %e, "quit failed; killing");
            self.kill();
        }
    }

    fn qmp(&self, command: &str) -> Ec2Result<()> {
        let vm = self.vm();
        let qmp = vm.qmp().map_err(|e| machine_error(command, e))?;
        qmp.execute(command, None)
            .map(drop)
            .map_err(|e| machine_error(command, e))
    }

    /// Hardware reset (RebootInstances).
    pub(crate) fn reset(&self) -> Ec2Result<()> {
        self.qmp("system_reset")
    }

    /// Pauses the vCPUs.
    pub(crate) fn pause(&self) -> Ec2Result<()> {
        self.qmp("stop")
    }

    /// Resumes the vCPUs.
    pub(crate) fn resume(&self) -> Ec2Result<()> {
        self.qmp("cont")
    }

    /// Serves a volume and plugs it into the running machine.
    pub(crate) fn hot_plug(&self, volume_id: &str, handle: Arc<Volume>) -> Ec2Result<()> {
        let (server, socket) = serve_volume(&self.runtime_dir, volume_id, handle)?;
        let plugged = self.vm().attach_disk(compute::DiskSpec {
            id: volume_id.to_string(),
            source: compute::DiskSource::Nbd {
                socket,
                export: volume_id.to_string(),
            },
            read_only: false,
            serial: Some(volume_id.replace('-', "")),
        });
        if let Err(e) = plugged {
            server.shutdown();
            return Err(Ec2Error::client(
                "IncorrectState",
                format!("The volume could not be attached to the running instance: {e}"),
            ));
        }
        lock(&self.exports).insert(volume_id.to_string(), server);
        Ok(())
    }

    /// Unplugs a volume from the running machine and stops serving it. Without `force`,
    /// a guest that does not release the disk within the timeout keeps it.
    pub(crate) fn unplug(&self, volume_id: &str, force: bool) -> Ec2Result<()> {
        let result = self.vm().detach_disk(volume_id, UNPLUG_TIMEOUT);
        if let Err(e) = &result
            && !force
        {
            return Err(Ec2Error::client(
                "IncorrectState",
                format!("The volume could not be detached from the running instance: {e}"),
            ));
        }
        if let Some(server) = lock(&self.exports).remove(volume_id) {
            server.shutdown();
        }
        Ok(())
    }

    /// Blocks until the machine has ended.
    pub(crate) fn wait(&self) -> Exit {
        loop {
            let polled = self.vm().poll_exit();
            match polled {
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Ok(Some(compute::ExitReason::GuestPoweroff)) => return Exit::GuestPowerOff,
                Ok(Some(other)) => return Exit::Other(format!("{other:?}")),
                Err(e) => return Exit::Other(e.to_string()),
            }
        }
    }

    /// After the end: stops the NBD exports and the metadata service and keeps the
    /// console.
    pub(crate) fn release(&self) {
        if let Some(h) = lock(&self.imds).take() {
            h.shutdown();
        }
        for (_, server) in lock(&self.exports).drain() {
            server.shutdown();
        }
        match self.vm().console_output() {
            Ok(console) => {
                if let Err(e) = std::fs::write(&self.console_keep, console) {
                    tracing::warn!(instance = %self.instance_id, error = %e, "cannot keep the console");
                }
            }
            Err(e) => {
                tracing::warn!(instance = %self.instance_id, error = %e, "cannot read the console")
            }
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
        // The per-data-dir runtime root goes once its last machine is gone.
        if let Some(root) = self.runtime_dir.parent() {
            let only_owner = std::fs::read_dir(root)
                .map(|entries| entries.flatten().all(|e| e.file_name() == OWNER_FILE))
                .unwrap_or(false);
            if only_owner {
                let _ = std::fs::remove_file(root.join(OWNER_FILE));
                let _ = std::fs::remove_dir(root);
            }
        }
    }

    fn console(&self) -> Ec2Result<Vec<u8>> {
        self.vm()
            .console_output()
            .map_err(|e| machine_error("console", e))
    }
}

/// How long DetachVolume waits for a guest to release a hot-plugged disk.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(10);

enum DiskKind {
    Volume(String),
    Local(super::EphemeralDisk),
}

fn serve_volume(
    runtime_dir: &Path,
    volume_id: &str,
    handle: Arc<Volume>,
) -> Ec2Result<(ServerHandle, PathBuf)> {
    let socket = runtime_dir.join(format!("{volume_id}.sock"));
    let device: Arc<dyn BlockDevice> = Arc::new(VolumeDevice(handle));
    let server = NbdServer::bind_unix(&socket, [(volume_id.to_string(), device)])
        .map_err(|e| machine_error("serving a volume over NBD", e))?;
    Ok((server, socket))
}

/// Creates an instance-store disk if it does not exist: the root of an instance-store
/// image is a full copy of its template snapshot, other disks start empty (sparse).
fn prepare_local_disk(
    cloud: &Cloud,
    row: &ResourceRow,
    doc: &InstanceDoc,
    disk: &super::EphemeralDisk,
    path: &Path,
) -> Ec2Result<()> {
    if path.exists() {
        return Ok(());
    }
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial).map_err(|e| machine_error("local disk", e))?;
    file.set_len(disk.size_bytes)
        .map_err(|e| machine_error("local disk", e))?;
    if disk.virtual_name == "root" {
        let image = cloud
            .catalog()
            .resource(&doc.image_id)?
            .ok_or_else(|| crate::images::not_found(&doc.image_id))?;
        let template = crate::images::doc_of(&image)?
            .instance_store_template
            .ok_or_else(|| crate::images::not_found(&doc.image_id))?;
        let storage = cloud.region(&row.region)?;
        let manifest = storage.store.read_manifest(
            &blockstore::ResourceId::new(&template).map_err(|e| machine_error("template id", e))?,
        )?;
        let block = blockstore::BLOCK_SIZE as u64;
        for (index, hash) in manifest.entries() {
            let data = storage.store.get_block(hash)?;
            std::os::unix::fs::FileExt::write_all_at(&file, &data, index * block)
                .map_err(|e| machine_error("copying the instance-store root", e))?;
        }
    }
    file.sync_all()
        .map_err(|e| machine_error("local disk", e))?;
    std::fs::rename(&partial, path).map_err(|e| machine_error("local disk", e))?;
    Ok(())
}

/// Deletes an instance's local disks, console and runtime directory (termination).
pub(crate) fn destroy_local_disks(cloud: &Cloud, row: &ResourceRow) -> Ec2Result<()> {
    let dir = instance_dir(cloud, &row.region, &row.id);
    match std::fs::remove_dir_all(dir.join("disks")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(machine_error("deleting instance-store disks", e)),
    }
    let _ = std::fs::remove_dir_all(runtime_root(cloud).join(&row.id));
    Ok(())
}

/// Kills a QEMU process left by a previous run of openami for this instance, if any.
pub(crate) fn reap_leftover(cloud: &Cloud, row: &ResourceRow) {
    let run_dir = runtime_root(cloud).join(&row.id);
    if run_dir.exists() && end_leftover(&run_dir) {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
}

/// The last `limit` bytes of the instance's console: live for a running machine, else
/// what its last boot printed.
pub(crate) fn console_tail(cloud: &Cloud, row: &ResourceRow, limit: usize) -> Ec2Result<Vec<u8>> {
    if let Some(m) = lock(&cloud.machines).get(&row.id).cloned() {
        let all = m.console()?;
        return Ok(all[all.len().saturating_sub(limit)..].to_vec());
    }
    let path = instance_dir(cloud, &row.region, &row.id).join("console.log");
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(machine_error("console", e)),
    };
    let len = file
        .metadata()
        .map_err(|e| machine_error("console", e))?
        .len();
    file.seek(SeekFrom::Start(len.saturating_sub(limit as u64)))
        .map_err(|e| machine_error("console", e))?;
    let mut out = Vec::new();
    file.read_to_end(&mut out)
        .map_err(|e| machine_error("console", e))?;
    Ok(out)
}
