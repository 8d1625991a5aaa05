//! Elastic Load Balancing v2 (query protocol, version 2015-12-01) above the EC2 engine.
//!
//! Load balancers, target groups, listeners and rules live in the catalog as resource rows
//! keyed by ARN ([`model`]); every mutation is persisted before it is answered, so a
//! restart (even `kill -9`) loses nothing. The data plane is the `balancer` crate: a
//! background resync thread ([`dataplane`]) rebuilds its whole configuration from the
//! catalog and the engine's instance addresses every second (and at once after a change)
//! and applies it; target health is read back from it.
//!
//! ```text
//!  API call ─► Elb::call ─► load_balancers / target_groups / targets / listeners / rules
//!                 │ (catalog rows, one Mutex serializes read-modify-write)
//!                 └─ resync (after each change, and every second) ─► balancer::Config ─► Balancer::apply
//! ```

mod attributes;
mod dataplane;
mod listeners;
mod load_balancers;
mod misc;
mod model;
mod rules;
mod target_groups;
mod targets;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use awsquery::{Caller, Params, QueryError, QueryResult};
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
    pool: engine::vpc::Cidr,
    /// Serializes read-modify-write of this service's rows.
    lock: Mutex<()>,
    plane: dataplane::DataPlane,
    /// Dropped to stop the resync thread.
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Elb {
    /// Opens the service: loads load balancers from the catalog and binds their listeners
    /// on `runtime`; a background resync keeps targets' addresses current.
    pub fn open(
        cloud: Arc<Cloud>,
        options: ElbOptions,
        runtime: tokio::runtime::Handle,
    ) -> QueryResult<Arc<Self>> {
        let pool = engine::vpc::Cidr::parse(&options.address_pool, false)
            .filter(|c| {
                engine::vpc::Cidr::parse("127.0.0.0/8", true).is_some_and(|l| l.contains(c))
                    && c.prefix <= 30
                    // 127.0.0.1 is where local services (openami itself by default) listen.
                    && !c.contains_ip(std::net::Ipv4Addr::LOCALHOST)
            })
            .ok_or_else(|| {
                QueryError::internal(format!(
                    "load balancer address pool {}: must be a /8../30 network inside 127.0.0.0/8 without 127.0.0.1",
                    options.address_pool
                ))
            })?;
        let (tx, rx) = mpsc::channel();
        let elb = Arc::new(Elb {
            cloud,
            pool,
            lock: Mutex::new(()),
            plane: dataplane::DataPlane::new(runtime),
            stop: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
        });
        elb.remove_orphans()?;
        // Bind what the catalog holds before serving (failures show in the load
        // balancers' states).
        let _ = elb.resync();
        let weak = Arc::downgrade(&elb);
        let handle = std::thread::Builder::new()
            .name("elb-resync".into())
            .spawn(move || dataplane::resync_loop(weak, rx))
            .map_err(|e| QueryError::internal(format!("starting the ELB resync thread: {e}")))?;
        if let Ok(mut t) = elb.thread.lock() {
            *t = Some(handle);
        }
        Ok(elb)
    }

    /// The engine it runs over.
    pub fn cloud(&self) -> &Arc<Cloud> {
        &self.cloud
    }

    /// Stops listeners and health checks (openami is stopping).
    pub fn shutdown(&self) {
        if let Ok(mut k) = self.stop.lock() {
            k.take();
        }
        if let Ok(mut t) = self.thread.lock()
            && let Some(h) = t.take()
        {
            let _ = h.join();
        }
        self.plane.shutdown();
    }

    /// A target group of the caller's, or `TargetGroupNotFound`.
    pub fn target_group(&self, caller: &Caller, arn: &str) -> QueryResult<TargetGroupSummary> {
        let tg = self.tg(caller, arn)?;
        Ok(TargetGroupSummary {
            arn: arn.to_string(),
            port: tg.doc.port,
            deregistration_delay_seconds: target_groups::deregistration_delay(&tg.doc),
            load_balancer_arns: self.tg_load_balancers(caller, arn)?,
        })
    }

    /// Registers an instance on the group's port (RegisterTargets' rules apply).
    pub fn register_instance(&self, caller: &Caller, tg: &str, id: &str) -> QueryResult<()> {
        self.register(caller, tg, &[(id.to_string(), None, None)])?;
        let _ = self.resync();
        Ok(())
    }

    /// Deregisters an instance: it drains for at most the deregistration delay.
    pub fn deregister_instance(&self, caller: &Caller, tg: &str, id: &str) -> QueryResult<()> {
        self.deregister(caller, tg, &[(id.to_string(), None)])?;
        let _ = self.resync();
        Ok(())
    }

    /// An instance's health in a group (`unused`/`Target.NotRegistered` if not in it).
    pub fn instance_health(
        &self,
        caller: &Caller,
        tg: &str,
        id: &str,
    ) -> QueryResult<InstanceHealth> {
        let all = self.health(caller, tg, Some(&[(id.to_string(), None)]))?;
        let h = all
            .into_iter()
            .next()
            .ok_or_else(|| QueryError::internal("no health for the target"))?;
        Ok(InstanceHealth {
            state: h.state,
            reason: h.reason,
        })
    }

    /// Requests forwarded to the group since openami started (monotonic).
    pub fn request_count(&self, caller: &Caller, tg: &str) -> QueryResult<u64> {
        self.tg(caller, tg)?;
        Ok(self.plane.requests(tg))
    }

    fn catalog(&self) -> &catalog::Catalog {
        self.cloud.catalog()
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
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

    fn call(&self, caller: &Caller, action: &str, p: &Params) -> QueryResult<Option<String>> {
        let out = match action {
            "CreateLoadBalancer" => self.create_load_balancer(caller, p),
            "DescribeLoadBalancers" => self.describe_load_balancers(caller, p),
            "DeleteLoadBalancer" => self.delete_load_balancer(caller, p),
            "DescribeLoadBalancerAttributes" => self.describe_lb_attributes(caller, p),
            "ModifyLoadBalancerAttributes" => self.modify_lb_attributes(caller, p),
            "SetSecurityGroups" => self.set_security_groups(caller, p),
            "SetSubnets" => self.set_subnets(caller, p),
            "SetIpAddressType" => self.set_ip_address_type(caller, p),
            "CreateTargetGroup" => self.create_target_group(caller, p),
            "DescribeTargetGroups" => self.describe_target_groups(caller, p),
            "ModifyTargetGroup" => self.modify_target_group(caller, p),
            "DeleteTargetGroup" => self.delete_target_group(caller, p),
            "DescribeTargetGroupAttributes" => self.describe_tg_attributes(caller, p),
            "ModifyTargetGroupAttributes" => self.modify_tg_attributes(caller, p),
            "RegisterTargets" => self.register_targets(caller, p),
            "DeregisterTargets" => self.deregister_targets(caller, p),
            "DescribeTargetHealth" => self.describe_target_health(caller, p),
            "CreateListener" => self.create_listener(caller, p),
            "DescribeListeners" => self.describe_listeners(caller, p),
            "ModifyListener" => self.modify_listener(caller, p),
            "DeleteListener" => self.delete_listener(caller, p),
            "DescribeListenerAttributes" => self.describe_listener_attributes(caller, p),
            "ModifyListenerAttributes" => self.modify_listener_attributes(caller, p),
            "CreateRule" => self.create_rule(caller, p),
            "DescribeRules" => self.describe_rules(caller, p),
            "ModifyRule" => self.modify_rule(caller, p),
            "DeleteRule" => self.delete_rule(caller, p),
            "SetRulePriorities" => self.set_rule_priorities(caller, p),
            "AddTags" => self.add_tags(caller, p),
            "RemoveTags" => self.remove_tags(caller, p),
            "DescribeTags" => self.describe_tags(caller, p),
            "DescribeCapacityReservation" => self.describe_capacity_reservation(caller, p),
            "DescribeSSLPolicies" => misc::describe_ssl_policies(p),
            "DescribeAccountLimits" => misc::describe_account_limits(p),
            "DescribeListenerCertificates" => self.describe_listener_certificates(caller, p),
            _ if misc::KNOWN_UNSUPPORTED.contains(&action) => Err(misc::unsupported(action)),
            _ => return Err(awsquery::invalid_action(action, "elasticloadbalancing")),
        }?;
        // A change reaches the data plane before the call returns (listeners bound,
        // targets registered or draining), as later Describe calls expect.
        // CreateListener binds its listener itself (and fails if it cannot).
        if !action.starts_with("Describe") && action != "CreateListener" {
            let _ = self.resync();
        }
        Ok(Some(out))
    }
}
