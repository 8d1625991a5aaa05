//! Amazon EC2 Auto Scaling above the EC2 engine and ELBv2.
//!
//! CONTRACT SKELETON (written by the lead; the Auto Scaling implementation fills it and
//! keeps these signatures, which crates/openami calls).

mod policies;
mod scheduled;

use std::sync::Arc;

use awsquery::{Caller, QueryResult};
use elb::Elb;
use engine::Cloud;

/// The Auto Scaling service.
#[derive(Debug)]
pub struct AutoScaling {
    cloud: Arc<Cloud>,
    elb: Arc<Elb>,
}

impl AutoScaling {
    /// Opens the service over the engine and ELBv2 (groups are loaded from the catalog).
    pub fn open(cloud: Arc<Cloud>, elb: Arc<Elb>) -> QueryResult<Arc<Self>> {
        Ok(Arc::new(AutoScaling { cloud, elb }))
    }

    /// Starts the group controller on a thread of its own.
    pub fn start(self: &Arc<Self>) {
        let _ = (&self.cloud, &self.elb);
    }

    /// Stops the controller (openami is stopping; instances keep running).
    pub fn shutdown(&self) {}
}

impl awsquery::Service for AutoScaling {
    fn signing_name(&self) -> &'static str {
        "autoscaling"
    }

    fn version(&self) -> &'static str {
        "2011-01-01"
    }

    fn namespace(&self) -> &'static str {
        "http://autoscaling.amazonaws.com/doc/2011-01-01/"
    }

    fn call(
        &self,
        _caller: &Caller,
        action: &str,
        _params: &awsquery::Params,
    ) -> QueryResult<Option<String>> {
        Err(awsquery::invalid_action(action, "autoscaling"))
    }
}
