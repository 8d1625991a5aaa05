//! Instances as QEMU processes.
//!
//! This crate knows nothing of EC2, catalogs or volumes: it launches `qemu-system-x86_64`
//! for a [`VmSpec`], talks QMP to it, hot-plugs NBD disks, stops or kills it, tells how it
//! ended ([`ExitReason`]), re-adopts a VM that outlived the process that launched it, and
//! keeps the serial console for `GetConsoleOutput`.
//!
//! Everything about one VM lives in its *run directory* ([`VmSpec::run_dir`]):
//!
//! ```text
//! <run_dir>/
//!   state.json      the spec (minus user data) and the QEMU pid, so a restarted openami
//!                   can re-adopt (Vm::adopt); also the exit reason once known
//!   qmp.sock        QMP (JSON lines over a unix socket)
//!   qemu.pid        QEMU's -pidfile
//!   console.log     the serial console (ttyS0), appended across launches
//!   qemu.log        QEMU's own stdout/stderr (never inherited pipes)
//!   events.jsonl    QMP events as they arrived while someone was connected
//!   user-data       the user data, handed to the guest through fw_cfg
//!                   (opt/openami/user-data)
//!   OVMF_VARS.fd    per-VM UEFI variable store (UEFI boot mode only)
//! ```
//!
//! QEMU runs with `-no-shutdown`: when the guest powers off, QEMU stays alive in the
//! `shutdown` state until openami has seen it (and then `quit`s it), so a guest poweroff
//! is never mistaken for a crash, even when openami was down when it happened.
//! Guest reboots keep the process (`-action reboot=reset`, QEMU's default).
//!
//! The API is blocking (std threads, no async runtime); call it from
//! `spawn_blocking` in async code.

mod error;
mod qemu;
mod qmp;
mod spec;
mod vm;

pub use error::{Error, Result};
pub use qemu::{NBD_RECONNECT_DELAY_SECS, kvm_usable, probe_kvm};
pub use qmp::{Qmp, QmpEvent};
pub use spec::{
    Accel, BootMode, DiskFormat, DiskSource, DiskSpec, GuestForward, HostForward, Identity,
    NetSpec, Proto, VmSpec,
};
pub use vm::{CpuTime, ExitReason, Vm};
