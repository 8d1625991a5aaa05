//! What the host measures of a running instance for services above EC2 (Auto Scaling's
//! target tracking on `ASGAverageCPUUtilization`, as CloudWatch's `CPUUtilization` would).

use super::machine::Machine;
use crate::Cloud;

/// Cumulative CPU time of a running instance's virtual CPUs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuSample {
    /// Seconds of host CPU its vCPU threads have used since it booted.
    pub busy_seconds: f64,
    /// Its number of vCPUs.
    pub vcpus: u32,
}

impl CpuSample {
    /// Utilization in percent between an earlier sample and this one, `wall_seconds`
    /// apart (`None` if no time passed or the machine changed under them).
    pub fn utilization_since(&self, earlier: &CpuSample, wall_seconds: f64) -> Option<f64> {
        if wall_seconds <= 0.0 || self.busy_seconds < earlier.busy_seconds {
            return None;
        }
        let used = (self.busy_seconds - earlier.busy_seconds) / wall_seconds;
        Some((used / f64::from(self.vcpus.max(1)) * 100.0).clamp(0.0, 100.0))
    }
}

impl Machine {
    /// The machine's vCPU time so far.
    pub(crate) fn cpu_sample(&self) -> Option<CpuSample> {
        match self.cpu_time() {
            Ok(t) => Some(CpuSample {
                busy_seconds: t.busy.as_secs_f64(),
                vcpus: t.vcpus,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "cannot sample vCPU time");
                None
            }
        }
    }
}

impl Cloud {
    /// The vCPU time of a running instance's machine (`None` when it has none running).
    /// The caller is a service acting for the instance's owner; it checked ownership.
    pub fn instance_cpu(&self, instance_id: &str) -> Option<CpuSample> {
        let machine = crate::lock(&self.machines).get(instance_id).cloned();
        machine.and_then(|m| m.cpu_sample())
    }
}

#[cfg(test)]
mod tests {
    use super::CpuSample;

    #[test]
    fn utilization_is_busy_time_over_wall_time_per_vcpu() {
        let a = CpuSample {
            busy_seconds: 10.0,
            vcpus: 2,
        };
        let b = CpuSample {
            busy_seconds: 13.0,
            vcpus: 2,
        };
        assert_eq!(b.utilization_since(&a, 3.0), Some(50.0));
        assert_eq!(a.utilization_since(&b, 3.0), None);
        assert_eq!(b.utilization_since(&a, 0.0), None);
    }
}
