//! Elastic Load Balancing v2 above the EC2 engine.
//!
//! CONTRACT SKELETON (written by the lead; the ELB implementation replaces the bodies and
//! keeps these signatures, which crates/autoscaling and crates/openami call).

use std::sync::Arc;

use awsquery::{Caller, QueryError, QueryResult};
use engine::Cloud;

/// Options of the ELB service.
#[derive(Clone, Debug)]
pub struct ElbOptions {
    /// The loopback pool load balancers take their addresses from (default
    /// `127.102.0.0/16`; must lie in 127.0.0.0/8 and not overlap the instances' pool).
    pub address_pool: String,
}

impl Default for ElbOptions {
    fn default() -> Self {
        ElbOptions {
            address_pool: DEFAULT_ADDRESS_POOL.to_string(),
        }
    }
}

/// The default pool of load balancer addresses.
pub const DEFAULT_ADDRESS_POOL: &str = "127.102.0.0/16";

/// What Auto Scaling needs to know of a target group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroupSummary {
    /// ARN.
    pub arn: String,
    /// Traffic port (instances are registered on it).
    pub port: u16,
    /// `deregistration_delay.timeout_seconds`.
    pub deregistration_delay_seconds: u64,
    /// Load balancers whose listeners or rules use it.
    pub load_balancer_arns: Vec<String>,
}

/// A target's health as Auto Scaling reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceHealth {
    /// `initial`, `healthy`, `unhealthy`, `unused`, `draining`, `unavailable`.
    pub state: String,
    /// AWS reason code.
    pub reason: Option<String>,
}

/// The ELBv2 service.
#[derive(Debug)]
pub struct Elb {
    cloud: Arc<Cloud>,
}

fn todo_error() -> QueryError {
    QueryError::internal("elb: not implemented yet")
}

impl Elb {
    /// Opens the service: loads load balancers from the catalog and binds their listeners
    /// on `runtime`; a background resync keeps targets' addresses current.
    pub fn open(
        cloud: Arc<Cloud>,
        _options: ElbOptions,
        _runtime: tokio::runtime::Handle,
    ) -> QueryResult<Arc<Self>> {
        Ok(Arc::new(Elb { cloud }))
    }

    /// The engine it runs over.
    pub fn cloud(&self) -> &Arc<Cloud> {
        &self.cloud
    }

    /// Stops listeners and health checks (openami is stopping).
    pub fn shutdown(&self) {}

    /// A target group of the caller's, or `TargetGroupNotFound`.
    pub fn target_group(&self, _caller: &Caller, _arn: &str) -> QueryResult<TargetGroupSummary> {
        Err(todo_error())
    }

    /// Registers an instance on the group's port (RegisterTargets' rules apply).
    pub fn register_instance(&self, _caller: &Caller, _tg: &str, _id: &str) -> QueryResult<()> {
        Err(todo_error())
    }

    /// Deregisters an instance: it drains for at most the deregistration delay.
    pub fn deregister_instance(&self, _caller: &Caller, _tg: &str, _id: &str) -> QueryResult<()> {
        Err(todo_error())
    }

    /// An instance's health in a group (`unused`/`Target.NotRegistered` if not in it).
    pub fn instance_health(
        &self,
        _caller: &Caller,
        _tg: &str,
        _id: &str,
    ) -> QueryResult<InstanceHealth> {
        Err(todo_error())
    }

    /// Requests forwarded to the group since openami started (monotonic).
    pub fn request_count(&self, _caller: &Caller, _tg: &str) -> QueryResult<u64> {
        Err(todo_error())
    }
}

impl awsquery::Service for Elb {
    fn signing_name(&self) -> &'static str {
        "elasticloadbalancing"
    }

    fn version(&self) -> &'static str {
        "2015-12-01"
    }

    fn namespace(&self) -> &'static str {
        "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
    }

    fn call(
        &self,
        _caller: &Caller,
        action: &str,
        _params: &awsquery::Params,
    ) -> QueryResult<Option<String>> {
        Err(awsquery::invalid_action(action, "elasticloadbalancing"))
    }
}
