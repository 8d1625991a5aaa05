//! A running VM: launch, adopt, control, and learning how it ended.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::qemu::{self, QEMU, RunFiles};
use crate::qmp::Qmp;
use crate::spec::{DiskSource, DiskSpec, VmSpec};

mod cpu;
mod net;

pub use cpu::CpuTime;

/// How much of the console [`Vm::console_output`] returns (as GetConsoleOutput does).
pub const CONSOLE_TAIL: u64 = 64 * 1024;

/// How often [`Vm::stop`] presses the ACPI power button again.
const POWERDOWN_REPEAT: Duration = Duration::from_secs(3);

/// How long QEMU gets to exit after `quit` before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// The guest powered itself off without being asked (e.g. `poweroff` or
    /// `shutdown -h` inside; EC2's instance-initiated shutdown).
    GuestPoweroff,
    /// The guest kernel panicked (pvpanic).
    GuestPanic,
    /// The guest powered off after the host's ACPI power-button press ([`Vm::stop`] or
    /// [`Vm::system_powerdown`]).
    HostPowerdown,
    /// QEMU was told to `quit` ([`Vm::quit`], or [`Vm::stop`] after its timeout).
    HostQuit,
    /// QEMU was SIGKILLed by [`Vm::kill`] (or [`Vm::stop`] as a last resort).
    Killed,
    /// QEMU ended in a way nobody asked for: it crashed, was killed by someone else, was
    /// gone when re-adopted, or the guest hit an emulation error.
    Crashed {
        /// What is known about it.
        detail: String,
    },
}

/// What the host last asked the VM to do; decides how a SHUTDOWN is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum StopRequest {
    Powerdown,
    Quit,
    Kill,
}

/// state.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    spec: VmSpec,
    pid: u32,
    kvm: bool,
    stop_requested: Option<StopRequest>,
    exit: Option<ExitReason>,
}

/// A QEMU process running one VM. Dropping the handle leaves the VM running (see
/// [`Vm::adopt`]); end it with [`Vm::stop`] or [`Vm::kill`].
#[derive(Debug)]
pub struct Vm {
    run_dir: PathBuf,
    files: RunFiles,
    state: State,
    /// Present when this process spawned QEMU (then it can be reaped directly).
    child: Option<Child>,
    qmp: Option<Qmp>,
    /// A shutdown that happened while nobody was connected (seen in query-status).
    missed_shutdown: Option<ExitReason>,
}

impl std::fmt::Debug for RunFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFiles").field("qmp", &self.qmp).finish()
    }
}

impl Vm {
    /// Launches QEMU for `spec` and connects QMP. The VM runs when this returns.
    pub fn launch(spec: VmSpec) -> Result<Vm> {
        spec.validate()?;
        let run_dir = spec.run_dir.clone();
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| Error::io(format!("creating {}", run_dir.display()), e))?;
        let files = RunFiles::new(&run_dir);
        if let Some(state) = read_state(&run_dir)?
            && state.exit.is_none()
            && is_our_qemu(state.pid, &files.pidfile)
        {
            return Err(Error::AlreadyRunning(run_dir));
        }
        for stale in [&files.qmp, &files.pidfile] {
            remove_if_exists(stale)?;
        }
        match &spec.user_data {
            Some(data) => std::fs::write(&files.user_data, data)
                .map_err(|e| Error::io(format!("writing {}", files.user_data.display()), e))?,
            None => remove_if_exists(&files.user_data)?,
        }
        let ovmf_code = if qemu::needs_ovmf(&spec) {
            let (code, vars) = qemu::ovmf()?;
            if !files.ovmf_vars.exists() {
                std::fs::copy(&vars, &files.ovmf_vars).map_err(|e| {
                    Error::io(
                        format!(
                            "copying {} to {}",
                            vars.display(),
                            files.ovmf_vars.display()
                        ),
                        e,
                    )
                })?;
            }
            Some(code)
        } else {
            None
        };
        let kvm = qemu::use_kvm(spec.accel);
        let args = qemu::args(&spec, kvm, &files, ovmf_code.as_deref());

        let log_path = run_dir.join("qemu.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("duplicating the qemu.log handle", e))?;
        tracing::debug!(?args, "spawning {QEMU}");
        let mut child = Command::new(QEMU)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C aimed at openami does not reach the VMs.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Launch {
                message: format!("spawning {QEMU}: {e}"),
            })?;

        let qmp = match connect_new(&mut child, &files, &log_path) {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let state = State {
            spec,
            pid: child.id(),
            kvm,
            stop_requested: None,
            exit: None,
        };
        let mut vm = Vm {
            run_dir,
            files,
            state,
            child: Some(child),
            qmp: Some(qmp),
            missed_shutdown: None,
        };
        let started = vm
            .save()
            .and_then(|()| vm.qmp()?.execute("cont", None).map(drop));
        if let Err(e) = started {
            let _ = vm.kill();
            return Err(e);
        }
        Ok(vm)
    }

    /// Re-attaches to the QEMU of `run_dir` if it is still running: the pid from the
    /// pidfile must be alive and have this run directory's pidfile on its command line
    /// (so a recycled pid is never adopted). `Ok(None)` when nothing runs there; if QEMU
    /// vanished without its end being recorded, that is recorded as
    /// [`ExitReason::Crashed`] (see [`Vm::last_exit`]).
    pub fn adopt(run_dir: &Path) -> Result<Option<Vm>> {
        let Some(mut state) = read_state(run_dir)? else {
            return Ok(None);
        };
        if state.exit.is_some() {
            return Ok(None);
        }
        let files = RunFiles::new(run_dir);
        let pid = read_pidfile(&files.pidfile).unwrap_or(state.pid);
        if !is_our_qemu(pid, &files.pidfile) {
            state.exit = Some(ExitReason::Crashed {
                detail: "QEMU was gone when openami re-adopted the VM".into(),
            });
            write_state(run_dir, &state)?;
            return Ok(None);
        }
        state.pid = pid;
        if state.spec.user_data.is_none() && files.user_data.exists() {
            state.spec.user_data = std::fs::read(&files.user_data).ok();
        }
        let qmp = Qmp::connect(&files.qmp, Some(run_dir.join("events.jsonl")))?;
        let status = qmp.execute("query-status", None)?;
        let status = status["status"].as_str().unwrap_or_default().to_string();
        let mut vm = Vm {
            run_dir: run_dir.to_path_buf(),
            files,
            state,
            child: None,
            qmp: Some(qmp),
            missed_shutdown: None,
        };
        match status.as_str() {
            "shutdown" => {
                vm.missed_shutdown = Some(match vm.state.stop_requested {
                    Some(StopRequest::Powerdown) => ExitReason::HostPowerdown,
                    Some(StopRequest::Quit) => ExitReason::HostQuit,
                    _ => ExitReason::GuestPoweroff,
                })
            }
            "guest-panicked" => vm.missed_shutdown = Some(ExitReason::GuestPanic),
            "internal-error" => {
                vm.missed_shutdown = Some(ExitReason::Crashed {
                    detail: "the accelerator stopped the guest (internal-error)".into(),
                })
            }
            // Spawned paused and the launcher died before continuing it.
            "prelaunch" => {
                vm.qmp()?.execute("cont", None)?;
            }
            _ => {}
        }
        Ok(Some(vm))
    }

    /// The exit reason recorded in `run_dir/state.json`, if the VM there has ended and
    /// openami saw it (or found it gone on adopt).
    pub fn last_exit(run_dir: &Path) -> Result<Option<ExitReason>> {
        Ok(read_state(run_dir)?.and_then(|s| s.exit))
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The spec (with hot-plugged disks added and detached ones removed).
    pub fn spec(&self) -> &VmSpec {
        &self.state.spec
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// Whether the VM runs under KVM (else TCG).
    pub fn uses_kvm(&self) -> bool {
        self.state.kvm
    }

    /// The QMP connection, for commands this type does not wrap.
    pub fn qmp(&self) -> Result<&Qmp> {
        self.qmp.as_ref().ok_or(Error::NotRunning)
    }

    /// QEMU's run state (`running`, `paused`, `shutdown`, `internal-error`, ...).
    pub fn query_status(&self) -> Result<String> {
        let st = self.qmp()?.execute("query-status", None)?;
        Ok(st["status"].as_str().unwrap_or_default().to_string())
    }

    /// Presses the ACPI power button. A guest that reacts powers off; the VM then ends
    /// with [`ExitReason::HostPowerdown`].
    pub fn system_powerdown(&mut self) -> Result<()> {
        self.request(StopRequest::Powerdown)?;
        self.qmp()?.execute("system_powerdown", None).map(drop)
    }

    /// Resets the VM (hard reboot); the process keeps running.
    pub fn system_reset(&self) -> Result<()> {
        self.qmp()?.execute("system_reset", None).map(drop)
    }

    /// Tells QEMU to exit now (no guest shutdown) and waits for it.
    pub fn quit(&mut self) -> Result<ExitReason> {
        self.request(StopRequest::Quit)?;
        if let Ok(q) = self.qmp() {
            // QEMU may close the socket before answering; the wait below decides.
            let _ = q.execute_timeout("quit", None, QUIT_GRACE);
        }
        if self.wait_process_end(QUIT_GRACE)? {
            self.wait()
        } else {
            self.kill()
        }
    }

    /// Stops the VM: ACPI power button (pressed again every 3 s), up to `timeout` for the
    /// guest to power off, then `quit`, then SIGKILL. Returns how it ended (if it had already ended, that).
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitReason> {
        if let Some(r) = self.poll_exit()? {
            return Ok(r);
        }
        // The button is pressed again every few seconds: a guest still booting (or whose
        // ACPI handling was not ready yet) misses a press, and an extra press does no harm.
        let deadline = Instant::now() + timeout;
        loop {
            if let Err(e) = self.system_powerdown() {
                tracing::warn!(run_dir = %self.run_dir.display(), "system_powerdown: {e}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(r) = self.wait_timeout(left.min(POWERDOWN_REPEAT))? {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        tracing::info!(run_dir = %self.run_dir.display(), "guest ignored ACPI powerdown; quitting");
        self.quit()
    }

    /// SIGKILLs QEMU and waits for it to be gone.
    pub fn kill(&mut self) -> Result<ExitReason> {
        if let Some(r) = self.state.exit.clone() {
            return Ok(r);
        }
        self.request(StopRequest::Kill)?;
        if let Some(pid) = rustix::process::Pid::from_raw(self.state.pid as i32)
            && is_our_qemu(self.state.pid, &self.files.pidfile)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        if !self.wait_process_end(Duration::from_secs(10))? {
            return Err(Error::Timeout {
                what: format!("QEMU pid {} to die after SIGKILL", self.state.pid),
                seconds: 10.0,
            });
        }
        self.wait()
    }

    /// Waits until the VM has ended.
    pub fn wait(&mut self) -> Result<ExitReason> {
        loop {
            if let Some(r) = self.wait_timeout(Duration::from_secs(3600))? {
                return Ok(r);
            }
        }
    }

    /// Waits up to `timeout` for the VM to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitReason>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.poll_exit()? {
                return Ok(Some(r));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Non-blocking: how the VM ended, or `None` while it runs. When the guest has shut
    /// down (QEMU lingers because of `-no-shutdown`), this quits QEMU, reaps it and
    /// records the reason in state.json.
    pub fn poll_exit(&mut self) -> Result<Option<ExitReason>> {
        if let Some(r) = &self.state.exit {
            return Ok(Some(r.clone()));
        }
        let ended = self.process_end()?;
        let mut shutdown = self.shutdown_reason();
        if ended.is_none() && shutdown.is_none() {
            shutdown = self.emulation_stopped();
        }
        let reason = match (ended, shutdown) {
            (None, None) => return Ok(None),
            (None, Some(reason)) => {
                // Guest is down, QEMU waits for us: let it go.
                if let Ok(q) = self.qmp() {
                    let _ = q.execute_timeout("quit", None, QUIT_GRACE);
                }
                if !self.wait_process_end(QUIT_GRACE)? {
                    self.sigkill();
                    self.wait_process_end(Duration::from_secs(10))?;
                }
                reason
            }
            (Some(_), Some(reason)) => reason,
            (Some(detail), None) => match self.state.stop_requested {
                Some(StopRequest::Kill) => ExitReason::Killed,
                _ => ExitReason::Crashed { detail },
            },
        };
        self.state.exit = Some(reason.clone());
        self.qmp = None;
        self.save()?;
        let _ = std::fs::remove_file(&self.files.qmp);
        let _ = std::fs::remove_file(&self.files.pidfile);
        Ok(Some(reason))
    }

    /// Hot-plugs an NBD export (unix socket) as a virtio-blk disk with device id `id`.
    pub fn attach_nbd_disk(&mut self, id: &str, socket: &Path, export: &str) -> Result<()> {
        self.attach_disk(DiskSpec {
            id: id.to_string(),
            source: DiskSource::Nbd {
                socket: socket.to_path_buf(),
                export: export.to_string(),
            },
            read_only: false,
            serial: None,
        })
    }

    /// Hot-plugs a disk (`blockdev-add`, then `device_add virtio-blk-pci`).
    pub fn attach_disk(&mut self, disk: DiskSpec) -> Result<()> {
        disk.validate()?;
        if self.state.spec.disks.iter().any(|d| d.id == disk.id) {
            return Err(Error::InvalidSpec(format!(
                "disk id {} already attached",
                disk.id
            )));
        }
        let qmp = self.qmp()?;
        qmp.execute("blockdev-add", Some(qemu::blockdev(&disk)))?;
        if let Err(e) = qmp.execute("device_add", Some(qemu::device(&disk, false))) {
            let _ = qmp.execute(
                "blockdev-del",
                Some(json!({ "node-name": qemu::node_name(&disk.id) })),
            );
            return Err(e);
        }
        self.state.spec.disks.push(disk);
        self.save()
    }

    /// Hot-unplugs disk `id`: `device_del`, waits up to `timeout` for the guest to let go
    /// (DEVICE_DELETED), then `blockdev-del`. A guest that ignores the ACPI eject request
    /// keeps the disk and this times out.
    pub fn detach_disk(&mut self, id: &str, timeout: Duration) -> Result<()> {
        let qmp = self.qmp()?;
        let from = qmp.event_count();
        qmp.execute("device_del", Some(json!({ "id": id })))?;
        let deleted = qmp.wait_event(from, timeout, |e| {
            e.name == "DEVICE_DELETED" && e.data["device"].as_str() == Some(id)
        });
        if deleted.is_none() {
            return Err(Error::Timeout {
                what: format!("the guest to release disk {id} (DEVICE_DELETED)"),
                seconds: timeout.as_secs_f64(),
            });
        }
        qmp.execute(
            "blockdev-del",
            Some(json!({ "node-name": qemu::node_name(id) })),
        )?;
        self.state.spec.disks.retain(|d| d.id != id);
        self.save()
    }

    /// The last 64 KiB of the serial console.
    pub fn console_output(&self) -> Result<Vec<u8>> {
        console_tail(&self.files.console, CONSOLE_TAIL)
    }

    /// The last 64 KiB of the serial console of the VM in `run_dir` (running or not).
    pub fn console_output_of(run_dir: &Path) -> Result<Vec<u8>> {
        console_tail(&RunFiles::new(run_dir).console, CONSOLE_TAIL)
    }

    fn request(&mut self, req: StopRequest) -> Result<()> {
        // A stronger request is never downgraded (kill > quit > powerdown).
        let rank = |r: Option<StopRequest>| match r {
            None => 0,
            Some(StopRequest::Powerdown) => 1,
            Some(StopRequest::Quit) => 2,
            Some(StopRequest::Kill) => 3,
        };
        if rank(Some(req)) > rank(self.state.stop_requested) {
            self.state.stop_requested = Some(req);
            self.save()?;
        }
        Ok(())
    }

    fn sigkill(&self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.state.pid as i32)
            && is_our_qemu(self.state.pid, &self.files.pidfile)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }

    /// The end of the run as QMP told it: the first SHUTDOWN event (with -no-shutdown it
    /// ends the run; later ones come from our own `quit`), a panic, or a shutdown that
    /// happened while nobody was connected.
    fn shutdown_reason(&self) -> Option<ExitReason> {
        if let Some(r) = &self.missed_shutdown {
            return Some(r.clone());
        }
        let qmp = self.qmp.as_ref()?;
        let events = qmp.events();
        let ev = events
            .iter()
            .find(|e| e.name == "SHUTDOWN" || e.name == "GUEST_PANICKED")?;
        if ev.name == "GUEST_PANICKED" {
            return Some(ExitReason::GuestPanic);
        }
        let reason = ev.data["reason"].as_str().unwrap_or_default();
        Some(match reason {
            "guest-shutdown" => match self.state.stop_requested {
                Some(StopRequest::Powerdown) => ExitReason::HostPowerdown,
                _ => ExitReason::GuestPoweroff,
            },
            "guest-panic" => ExitReason::GuestPanic,
            "host-qmp-quit" => ExitReason::HostQuit,
            other => ExitReason::Crashed {
                detail: format!("QEMU shut down with reason {other}"),
            },
        })
    }

    /// A guest stopped by the accelerator (e.g. a KVM internal error) never shuts down;
    /// when the last event is STOP, ask QEMU why.
    fn emulation_stopped(&self) -> Option<ExitReason> {
        let qmp = self.qmp.as_ref()?;
        let last = qmp
            .events()
            .into_iter()
            .rev()
            .find(|e| e.name == "STOP" || e.name == "RESUME")?;
        if last.name != "STOP" {
            return None;
        }
        let status = qmp.execute("query-status", None).ok()?;
        match status["status"].as_str()? {
            "internal-error" => Some(ExitReason::Crashed {
                detail: "the accelerator stopped the guest (internal-error)".into(),
            }),
            "guest-panicked" => Some(ExitReason::GuestPanic),
            _ => None,
        }
    }

    /// `Some(description)` once the QEMU process is gone (reaped when it is our child).
    fn process_end(&mut self) -> Result<Option<String>> {
        if let Some(child) = self.child.as_mut() {
            return match child.try_wait() {
                Ok(Some(status)) => Ok(Some(format!("QEMU exited: {status}"))),
                Ok(None) => Ok(None),
                Err(e) => Err(Error::io(
                    format!("waiting for QEMU pid {}", self.state.pid),
                    e,
                )),
            };
        }
        // Not spawned by this handle: reap it if it happens to be our child (adopted in
        // the process that launched it), then look at /proc.
        if let Some(pid) = rustix::process::Pid::from_raw(self.state.pid as i32) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
        }
        if is_our_qemu(self.state.pid, &self.files.pidfile) {
            Ok(None)
        } else {
            Ok(Some(format!("QEMU pid {} is gone", self.state.pid)))
        }
    }

    /// Waits up to `timeout` for the process to end; true if it did.
    fn wait_process_end(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.process_end()?.is_some() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn save(&self) -> Result<()> {
        write_state(&self.run_dir, &self.state)
    }
}

/// Whether `pid` is a live (non-zombie) QEMU whose command line names `pidfile`.
fn is_our_qemu(pid: u32, pidfile: &Path) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = pidfile.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == want)
}

fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

fn read_state(run_dir: &Path) -> Result<Option<State>> {
    let path = run_dir.join("state.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::State {
            path,
            message: e.to_string(),
        })
}

/// Writes state.json atomically (temp file, fsync, rename).
fn write_state(run_dir: &Path, state: &State) -> Result<()> {
    let path = run_dir.join("state.json");
    let tmp = run_dir.join("state.json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::State {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut f =
        File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("renaming {} to state.json", tmp.display()), e))
}

/// Waits for QEMU's QMP socket and connects; on failure reports qemu.log's tail.
fn connect_new(child: &mut Child, files: &RunFiles, log_path: &Path) -> Result<Qmp> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = files.qmp.parent().map(|d| d.join("events.jsonl"));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = console_tail(log_path, 2048).unwrap_or_default();
            return Err(Error::Launch {
                message: format!(
                    "{QEMU} exited at once ({status}): {}",
                    String::from_utf8_lossy(&tail).trim()
                ),
            });
        }
        if files.qmp.exists() {
            match Qmp::connect(&files.qmp, events.clone()) {
                Ok(q) => return Ok(q),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Launch {
                message: format!("no QMP socket at {} after 20 s", files.qmp.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `max` bytes of a file (empty if it does not exist).
fn console_tail(path: &Path, max: u64) -> Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let len = f
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))
        .map_err(|e| Error::io(format!("seeking {}", path.display()), e))?;
    let mut buf = Vec::with_capacity(max.min(len) as usize);
    f.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_tail_returns_the_last_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        assert!(console_tail(&p, 10).unwrap().is_empty());
        std::fs::write(&p, b"0123456789abcdef").unwrap();
        assert_eq!(console_tail(&p, 4).unwrap(), b"cdef");
        assert_eq!(console_tail(&p, 100).unwrap(), b"0123456789abcdef");
    }

    #[test]
    fn recycled_pids_are_not_ours() {
        // Our own pid is alive but its command line does not name that pidfile.
        assert!(!is_our_qemu(
            std::process::id(),
            Path::new("/nonexistent/qemu.pid")
        ));
        assert!(!is_our_qemu(0, Path::new("/x")));
    }

    #[test]
    fn adopt_of_an_empty_dir_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Vm::adopt(dir.path()).unwrap().is_none());
        assert!(Vm::last_exit(dir.path()).unwrap().is_none());
    }
}
