//! The load balancers' data plane.
//!
//! The control plane (crates/elb) computes the whole desired [`Config`] — every load
//! balancer's address and listeners, every listener's rules, every target group's health
//! check and targets with their host-reachable addresses — and hands it to
//! [`Balancer::apply`] whenever anything changes. The balancer binds and unbinds
//! listeners, routes and proxies requests, runs health checks, drains removed targets and
//! counts requests; the control plane reads health and counts back.
//!
//! ```text
//!  client ─► 127.102.0.5:80 (listener)  ─ rules by priority ─► forward ─► target group
//!                                                            ├► redirect      │ round robin over
//!                                                            └► fixed-response│ healthy targets
//!                                                                             ▼ (all if none healthy)
//!                                                     127.100.0.7:80 (instance public address)
//! ```
//!
//! The configuration types below are the contract with the control plane. The parts:
//! - `balancer`: [`Balancer`] and `apply`'s reconciliation (groups, targets, listeners);
//! - `listener`: binding and accept loops; `proxy`: HTTP rules, actions, forwarding,
//!   `X-Forwarded-*`, Upgrade tunnels; `rules`: condition matching; `tcp`: TCP splicing;
//! - `health`: health-check tasks; `state`: targets' health machines, in-flight counts and
//!   target choice (round robin or least outstanding requests; `AWSALB` cookie stickiness).
//!
//! What AWS does that this does not (yet): HTTPS/TLS listeners, HTTP/2, `app_cookie`
//! stickiness, slow start, `client_keep_alive.seconds`.

mod balancer;
mod health;
mod listener;
mod proxy;
mod rules;
mod state;
mod tcp;

pub use balancer::Balancer;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The whole desired state of the data plane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Every load balancer.
    pub load_balancers: Vec<LoadBalancer>,
    /// Every target group (health checks run only for groups a listener uses).
    pub target_groups: Vec<TargetGroup>,
}

/// One load balancer: an address of its own and its listeners.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadBalancer {
    /// Its ARN.
    pub id: String,
    /// The loopback address its listeners bind.
    pub addr: Ipv4Addr,
    /// Load balancer attributes as the API stores them (keys such as
    /// `idle_timeout.timeout_seconds`, `routing.http.xff_header_processing.mode`,
    /// `routing.http.xff_client_port.enabled`, `routing.http.preserve_host_header.enabled`);
    /// a missing key means AWS's default.
    pub attributes: BTreeMap<String, String>,
    /// Its listeners.
    pub listeners: Vec<Listener>,
}

/// `HTTP` or `TCP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 proxying with rules.
    Http,
    /// Layer-4 splicing.
    Tcp,
}

/// One listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    /// Its ARN.
    pub id: String,
    /// The port it binds on the load balancer's address.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Rules in evaluation order (ascending priority); the last is the default rule,
    /// without conditions. TCP listeners have only the default rule, a forward.
    pub rules: Vec<Rule>,
    /// Listener attributes (`tcp.idle_timeout.seconds`, …); missing means the default.
    pub attributes: BTreeMap<String, String>,
}

/// A rule: all conditions must match (values within one condition are alternatives).
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Its ARN.
    pub id: String,
    /// Conditions (empty for the default rule).
    pub conditions: Vec<Condition>,
    /// What a matching request gets.
    pub action: Action,
}

/// A rule condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Path patterns (`*`, `?`), case-sensitive, path only.
    PathPattern(Vec<String>),
    /// Host patterns, case-insensitive.
    HostHeader(Vec<String>),
    /// A header (name case-insensitive) whose value matches one of the patterns
    /// (case-insensitive).
    HttpHeader {
        /// Header name.
        name: String,
        /// Value patterns.
        values: Vec<String>,
    },
    /// Exact, case-sensitive methods.
    Method(Vec<String>),
    /// Query parameters: (optional key, value pattern) pairs, any one matching.
    QueryString(Vec<(Option<String>, String)>),
    /// Client (TCP peer) CIDRs.
    SourceIp(Vec<String>),
}

/// A rule's terminal action.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// To target groups, by weight (one group: weight ignored).
    Forward(Vec<(String, u32)>),
    /// An HTTP redirect; `None` fields keep the request's (`#{protocol}` … keywords are
    /// expanded in the given ones).
    Redirect {
        /// `HTTP`, `HTTPS` or `#{protocol}`.
        protocol: Option<String>,
        /// Host.
        host: Option<String>,
        /// Port.
        port: Option<String>,
        /// Path (starts with `/`).
        path: Option<String>,
        /// Query (without `?`).
        query: Option<String>,
        /// 301 or 302.
        status: u16,
    },
    /// A fixed response.
    FixedResponse {
        /// Status code.
        status: u16,
        /// Content-Type, if any.
        content_type: Option<String>,
        /// Body.
        body: String,
    },
}

/// A target group.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetGroup {
    /// Its ARN.
    pub id: String,
    /// Traffic protocol (HTTP targets get HTTP/1.1; TCP targets a splice).
    pub protocol: Protocol,
    /// The health check.
    pub health_check: HealthCheck,
    /// How long a removed target drains at most.
    pub deregistration_delay: Duration,
    /// Registered targets.
    pub targets: Vec<Target>,
    /// Target group attributes (`slow_start.duration_seconds`, `stickiness.*`, …).
    pub attributes: BTreeMap<String, String>,
}

/// A health check.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    /// Off: targets are `unavailable` / `Target.HealthCheckDisabled` and get traffic.
    pub enabled: bool,
    /// `Http` (GET path, status in matcher) or `Tcp` (connect).
    pub protocol: Protocol,
    /// `None`: the target's traffic port.
    pub port: Option<u16>,
    /// Path of HTTP checks.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// A check not answered within this fails.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Success codes: `200`, `200,202`, `200-299`.
    pub matcher: String,
}

/// A registered target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Instance id (or IP for `ip` targets).
    pub id: String,
    /// Traffic port.
    pub port: u16,
    /// Where the host reaches it; `None` when it cannot be reached (a stopped instance:
    /// state `unused`, reason `Target.InvalidState`).
    pub addr: Option<Ipv4Addr>,
    /// Why it has no address (`Target is in the stopped state`).
    pub unreachable_reason: Option<String>,
}

/// A target's health state (AWS's `TargetHealthStateEnum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// Registered, not yet decided.
    Initial,
    /// Passing.
    Healthy,
    /// Failing.
    Unhealthy,
    /// Not in use (no listener uses the group, or not reachable).
    Unused,
    /// Removed and finishing in-flight requests.
    Draining,
    /// Health checks disabled.
    Unavailable,
}

impl HealthState {
    /// The API's word.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Initial => "initial",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Unused => "unused",
            HealthState::Draining => "draining",
            HealthState::Unavailable => "unavailable",
        }
    }
}

/// A target's health as DescribeTargetHealth reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetHealth {
    /// Target id.
    pub id: String,
    /// Traffic port.
    pub port: u16,
    /// State.
    pub state: HealthState,
    /// AWS reason code (`Elb.InitialHealthChecking`, `Target.ResponseCodeMismatch`, …).
    pub reason: Option<String>,
    /// Human description.
    pub description: Option<String>,
}

/// A listener that could not be bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("listener {listener} on {addr}: {message}")]
pub struct BindError {
    /// Listener ARN.
    pub listener: String,
    /// The address it wanted.
    pub addr: SocketAddr,
    /// Why not.
    pub message: String,
}
