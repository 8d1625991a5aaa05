//! Runtime state of target groups and their targets: health, in-flight counts, draining,
//! round robin, request counters; and [`Cancel`], the cancellation signal every task uses.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::{HealthCheck, HealthState, TargetHealth};

/// A one-shot cancellation signal that many tasks can wait for.
#[derive(Clone, Debug)]
pub(crate) struct Cancel(Arc<watch::Sender<bool>>);

impl Cancel {
    pub(crate) fn new() -> Self {
        Cancel(Arc::new(watch::channel(false).0))
    }

    pub(crate) fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Completes once cancelled.
    pub(crate) async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so `wait_for` only returns once the value is true.
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a target group's settings are now (replaced live by `apply`).
#[derive(Clone, Debug)]
pub(crate) struct GroupSettings {
    pub(crate) health_check: HealthCheck,
    pub(crate) deregistration_delay: Duration,
    pub(crate) algorithm: Algorithm,
    /// `stickiness.enabled` with `stickiness.type` `lb_cookie`: the cookie's lifetime.
    pub(crate) sticky: Option<Duration>,
    /// `proxy_protocol_v2.enabled`: TCP connections to targets start with a PROXY v2 header.
    pub(crate) proxy_protocol: bool,
}

impl GroupSettings {
    /// The settings of a configured group (attributes with AWS's defaults).
    pub(crate) fn new(tg: &crate::TargetGroup) -> Self {
        let attr = |k: &str| tg.attributes.get(k).map(|v| v.trim().to_ascii_lowercase());
        let algorithm = match attr("load_balancing.algorithm.type").as_deref() {
            Some("least_outstanding_requests") => Algorithm::LeastOutstanding,
            _ => Algorithm::RoundRobin,
        };
        let sticky = (attr("stickiness.enabled").as_deref() == Some("true")
            && attr("stickiness.type")
                .as_deref()
                .is_none_or(|t| t == "lb_cookie"))
        .then(|| {
            let secs = attr("stickiness.lb_cookie.duration_seconds").and_then(|v| v.parse().ok());
            Duration::from_secs(secs.unwrap_or(86_400))
        });
        GroupSettings {
            health_check: tg.health_check.clone(),
            deregistration_delay: tg.deregistration_delay,
            algorithm,
            sticky,
            proxy_protocol: attr("proxy_protocol_v2.enabled").as_deref() == Some("true"),
        }
    }
}

/// A target group at runtime.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) settings: RwLock<GroupSettings>,
    pub(crate) targets: Mutex<Targets>,
    /// A listener forwards to it (health checks run only then).
    pub(crate) in_use: AtomicBool,
    /// Gone from the configuration; kept while targets drain.
    pub(crate) removed: AtomicBool,
    rr: AtomicUsize,
    /// Requests forwarded to the group (shared with the balancer's counter map, which outlives
    /// the group).
    pub(crate) requests: Arc<AtomicU64>,
}

/// A group's registered and draining targets.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    pub(crate) registered: Vec<Arc<TargetState>>,
    pub(crate) draining: Vec<Arc<TargetState>>,
}

impl Group {
    pub(crate) fn new(settings: GroupSettings, requests: Arc<AtomicU64>) -> Self {
        Group {
            settings: RwLock::new(settings),
            targets: Mutex::new(Targets::default()),
            in_use: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            rr: AtomicUsize::new(0),
            requests,
        }
    }

    pub(crate) fn settings(&self) -> GroupSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The next target among the healthy ones — all reachable registered targets when none is
    /// healthy (fail open) or health checks are off — by the group's algorithm, or the one a
    /// stickiness cookie names if it is among them. `None`: no target at all. The target's
    /// in-flight count is taken under the group's lock, so a target being moved to draining at
    /// the same time still counts this request.
    pub(crate) fn pick(&self, sticky: Option<&str>) -> Option<(InFlight, SocketAddr)> {
        let (checks, algorithm) = {
            let s = self.settings.read().unwrap_or_else(|e| e.into_inner());
            (s.health_check.enabled, s.algorithm)
        };
        let targets = lock(&self.targets);
        let reachable: Vec<(&Arc<TargetState>, SocketAddr, bool)> = targets
            .registered
            .iter()
            .filter_map(|t| {
                let inner = lock(&t.inner);
                let addr = inner.addr?;
                let healthy = inner.machine.state == HealthState::Healthy || !checks;
                Some((t, SocketAddr::from((addr, t.port)), healthy))
            })
            .collect();
        let healthy: Vec<_> = reachable.iter().filter(|(_, _, h)| *h).collect();
        let eligible: Vec<_> = if healthy.is_empty() {
            reachable.iter().collect()
        } else {
            healthy
        };
        if eligible.is_empty() {
            return None;
        }
        if let Some((t, a, _)) =
            sticky.and_then(|k| eligible.iter().find(|(t, _, _)| t.sticky_key() == k))
        {
            return Some((t.begin(), *a));
        }
        let n = self.rr.fetch_add(1, Ordering::Relaxed);
        let (t, a, _) = match algorithm {
            Algorithm::RoundRobin => eligible[n % eligible.len()],
            // Fewest in flight; ties go round robin.
            Algorithm::LeastOutstanding => (0..eligible.len())
                .map(|i| eligible[(n + i) % eligible.len()])
                .min_by_key(|(t, _, _)| t.in_flight())
                .unwrap_or(eligible[0]),
        };
        Some((t.begin(), *a))
    }
}

/// `load_balancing.algorithm.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// `round_robin` (the default).
    RoundRobin,
    /// `least_outstanding_requests`.
    LeastOutstanding,
}

/// One registered (or draining) target.
#[derive(Debug)]
pub(crate) struct TargetState {
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) inner: Mutex<TargetInner>,
    inflight: AtomicUsize,
    /// Woken when `inflight` drops to zero.
    pub(crate) idle: Notify,
    /// Fired when draining ends with requests still in flight: they are cut.
    pub(crate) closed: Cancel,
    /// The health-check task, while one runs.
    pub(crate) checker: Mutex<Option<JoinHandle<()>>>,
}

/// The mutable part of a target.
#[derive(Debug)]
pub(crate) struct TargetInner {
    pub(crate) addr: Option<Ipv4Addr>,
    pub(crate) unreachable_reason: Option<String>,
    pub(crate) machine: Machine,
}

impl TargetState {
    pub(crate) fn new(
        id: String,
        port: u16,
        addr: Option<Ipv4Addr>,
        reason: Option<String>,
    ) -> Self {
        TargetState {
            id,
            port,
            inner: Mutex::new(TargetInner {
                addr,
                unreachable_reason: reason,
                machine: Machine::new(),
            }),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            closed: Cancel::new(),
            checker: Mutex::new(None),
        }
    }

    /// Counts a request or connection in flight until the guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    /// What a stickiness cookie holds to name this target: `id:port`, hex-encoded.
    pub(crate) fn sticky_key(&self) -> String {
        format!("{}:{}", self.id, self.port)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Stops the health-check task, if any.
    pub(crate) fn stop_checks(&self) {
        if let Some(task) = lock(&self.checker).take() {
            task.abort();
        }
    }

    /// The health DescribeTargetHealth reports for a registered target.
    pub(crate) fn health(&self, in_use: bool, checks: bool) -> TargetHealth {
        let inner = lock(&self.inner);
        let (state, reason, description) = if inner.addr.is_none() {
            let why = inner
                .unreachable_reason
                .clone()
                .unwrap_or_else(|| "Target is in the stopped state".into());
            (
                HealthState::Unused,
                Some("Target.InvalidState".to_owned()),
                Some(why),
            )
        } else if !in_use {
            (
                HealthState::Unused,
                Some("Target.NotInUse".to_owned()),
                Some(
                    "Target group is not configured to receive traffic from the load balancer"
                        .to_owned(),
                ),
            )
        } else if !checks {
            (
                HealthState::Unavailable,
                Some("Target.HealthCheckDisabled".to_owned()),
                Some("Health checks are disabled".to_owned()),
            )
        } else {
            let m = &inner.machine;
            (m.state, m.reason.map(str::to_owned), m.description.clone())
        };
        TargetHealth {
            id: self.id.clone(),
            port: self.port,
            state,
            reason,
            description,
        }
    }

    /// The health of a draining target.
    pub(crate) fn draining_health(&self) -> TargetHealth {
        TargetHealth {
            id: self.id.clone(),
            port: self.port,
            state: HealthState::Draining,
            reason: Some("Target.DeregistrationInProgress".into()),
            description: Some("Target deregistration is in progress".into()),
        }
    }
}

/// A request or connection in flight to a target.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<TargetState>);

impl InFlight {
    pub(crate) fn target(&self) -> &Arc<TargetState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The outcome of one health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Answered with a matching code (or connected, for TCP).
    Pass,
    /// Answered with a code outside the matcher.
    Code(u16),
    /// Not answered in time.
    Timeout,
    /// Refused, reset, garbled.
    Failed,
}

/// The health-check state machine of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Machine {
    pub(crate) state: HealthState,
    pub(crate) reason: Option<&'static str>,
    pub(crate) description: Option<String>,
    successes: u32,
    failures: u32,
}

impl Machine {
    /// Registered, no check yet.
    pub(crate) fn new() -> Self {
        Machine {
            state: HealthState::Initial,
            reason: Some("Elb.RegistrationInProgress"),
            description: Some("Target registration is in progress".into()),
            successes: 0,
            failures: 0,
        }
    }

    /// Feeds one check result.
    pub(crate) fn record(&mut self, probe: &Probe, check: &HealthCheck) {
        if *probe == Probe::Pass {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.state != HealthState::Healthy && self.successes >= check.healthy_threshold {
                self.state = HealthState::Healthy;
                self.reason = None;
                self.description = None;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.state == HealthState::Unhealthy || self.failures >= check.unhealthy_threshold {
                self.state = HealthState::Unhealthy;
                let (reason, description) = match probe {
                    Probe::Code(c) => (
                        "Target.ResponseCodeMismatch",
                        format!("Health checks failed with these codes: [{c}]"),
                    ),
                    Probe::Timeout => ("Target.Timeout", "Request timed out".to_owned()),
                    _ => (
                        "Target.FailedHealthChecks",
                        "Health checks failed".to_owned(),
                    ),
                };
                self.reason = Some(reason);
                self.description = Some(description);
            }
        }
        if self.state == HealthState::Initial {
            self.reason = Some("Elb.InitialHealthChecking");
            self.description = Some("Initial health checks in progress".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            enabled: true,
            protocol: Protocol::Http,
            port: None,
            path: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            matcher: "200".into(),
        }
    }

    #[test]
    fn thresholds() {
        let c = check(3, 2);
        let mut m = Machine::new();
        assert_eq!(m.reason, Some("Elb.RegistrationInProgress"));
        m.record(&Probe::Pass, &c);
        m.record(&Probe::Pass, &c);
        assert_eq!(
            (m.state, m.reason),
            (HealthState::Initial, Some("Elb.InitialHealthChecking"))
        );
        m.record(&Probe::Pass, &c);
        assert_eq!(
            (m.state, m.reason, m.description.clone()),
            (HealthState::Healthy, None, None)
        );
        m.record(&Probe::Code(500), &c);
        assert_eq!(m.state, HealthState::Healthy);
        m.record(&Probe::Code(500), &c);
        assert_eq!(m.state, HealthState::Unhealthy);
        assert_eq!(m.reason, Some("Target.ResponseCodeMismatch"));
        assert_eq!(
            m.description.as_deref(),
            Some("Health checks failed with these codes: [500]")
        );
        m.record(&Probe::Timeout, &c);
        assert_eq!(
            (m.reason, m.description.as_deref()),
            (Some("Target.Timeout"), Some("Request timed out"))
        );
        m.record(&Probe::Pass, &c);
        m.record(&Probe::Failed, &c);
        assert_eq!(m.reason, Some("Target.FailedHealthChecks"));
        for _ in 0..3 {
            assert_eq!(m.state, HealthState::Unhealthy);
            m.record(&Probe::Pass, &c);
        }
        assert_eq!(m.state, HealthState::Healthy);
    }

    #[test]
    fn initial_to_unhealthy() {
        let c = check(5, 2);
        let mut m = Machine::new();
        m.record(&Probe::Failed, &c);
        assert_eq!(m.state, HealthState::Initial);
        m.record(&Probe::Failed, &c);
        assert_eq!(m.state, HealthState::Unhealthy);
    }
}
