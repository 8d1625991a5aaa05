//! How much host CPU a running VM's virtual CPUs have used: QMP `query-cpus-fast` gives
//! the host thread of each vCPU (under KVM, and under TCG with one thread per vCPU), and
//! `/proc/<pid>/task/<tid>/stat` gives each thread's user and system time. (`query-stats`
//! would be the native source, but it is empty under TCG.)
//!
//! ```text
//!   /proc/<qemu pid>/task/<vcpu tid>/stat:  tid (comm) state … utime(14) stime(15) …
//!                                           (clock ticks; comm may hold spaces and ')')
//! ```

use std::time::Duration;

use super::Vm;
use crate::error::{Error, Result};

/// Cumulative CPU time of a VM's vCPU threads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuTime {
    /// User + system time of all vCPU threads.
    pub busy: Duration,
    /// Number of vCPUs.
    pub vcpus: u32,
}

/// utime + stime (clock ticks) from the text of a `stat` file.
fn busy_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may contain anything: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

impl Vm {
    /// The CPU time the guest's vCPUs have used so far. Sample twice and divide the
    /// difference by the elapsed wall time × `vcpus` for a utilization.
    pub fn cpu_time(&self) -> Result<CpuTime> {
        let cpus = self.qmp()?.execute("query-cpus-fast", None)?;
        let list = cpus
            .as_array()
            .ok_or_else(|| Error::QmpProtocol("query-cpus-fast did not return a list".into()))?;
        let mut threads: Vec<u64> = list
            .iter()
            .filter_map(|c| c.get("thread-id").and_then(serde_json::Value::as_u64))
            .collect();
        let vcpus = u32::try_from(list.len()).unwrap_or(u32::MAX).max(1);
        // Single-threaded TCG reports one thread for every vCPU.
        threads.sort_unstable();
        threads.dedup();
        let ticks_per_second = rustix::param::clock_ticks_per_second().max(1);
        let mut ticks = 0u64;
        for tid in threads {
            let path = format!("/proc/{}/task/{tid}/stat", self.pid());
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            ticks += busy_ticks(&text)
                .ok_or_else(|| Error::QmpProtocol(format!("cannot read CPU times from {path}")))?;
        }
        Ok(CpuTime {
            busy: Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64),
            vcpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::busy_ticks;

    #[test]
    fn reads_utime_and_stime_after_the_command_name() {
        let stat = "4242 (CPU 0/TCG) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0 100 0 0";
        assert_eq!(busy_ticks(stat), Some(175));
        let odd = "7 (a) b) R 1 2 3 4 5 6 7 8 9 10 3 4 0";
        assert_eq!(busy_ticks(odd), Some(7));
        assert_eq!(busy_ticks("garbage"), None);
    }
}
