//! Amazon EC2 Auto Scaling (query protocol 2011-01-01) above the EC2 engine and ELBv2.
//!
//! Groups of real instances: each group is one catalog row (`model`), changed by the API
//! (`groups`, `ops`, `hooks`, `refresh`) and by the controller thread (`controller`,
//! `launching`, `termination`),
//! which every second keeps each group's count of Pending and InService instances equal
//! to its desired capacity by launching through the engine (from the group's launch
//! template) and terminating by the group's termination policies, replaces unhealthy
//! instances, registers instances with the attached target groups, holds instances on
//! lifecycle hooks and runs instance refreshes. Scaling policies evaluate in
//! `policies::tick`.
//!
//! Everything lives in the catalog, so a restarted openami (even after kill -9) resumes
//! every group where it was; launches carry a client token recorded before the call, so
//! an interrupted launch is found again rather than repeated.

mod controller;
mod groups;
mod hooks;
mod launching;
mod model;
mod ops;
mod policies;
mod refresh;
mod render;
mod scheduled;
mod termination;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use awsquery::{Caller, Params, QueryError, QueryResult};
use elb::Elb;
use engine::Cloud;

pub(crate) use model::{Group, Stored};

/// The Auto Scaling service.
#[derive(Debug)]
pub struct AutoScaling {
    cloud: Arc<Cloud>,
    elb: Arc<Elb>,
    /// Serializes read-modify-write of group rows (API calls and the controller).
    changes: Mutex<()>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Scaling policies and scheduled actions.
    policies: policies::Policies,
}

/// An engine error as a query error (same code, message and status).
pub(crate) fn ec2_error(e: engine::Ec2Error) -> QueryError {
    QueryError {
        code: e.code,
        message: e.message,
        status: e.status,
    }
}

/// The engine's caller for a query caller.
pub(crate) fn engine_caller(c: &Caller) -> engine::Caller {
    engine::Caller {
        account_id: c.account_id.clone(),
        region: c.region.clone(),
    }
}

/// `ValidationError` for a group that does not exist.
pub(crate) fn group_not_found(name: &str) -> QueryError {
    QueryError::validation(format!(
        "AutoScalingGroup name not found - AutoScalingGroup '{name}' not found"
    ))
}

impl AutoScaling {
    /// Opens the service over the engine and ELBv2 (groups are loaded from the catalog).
    pub fn open(cloud: Arc<Cloud>, elb: Arc<Elb>) -> QueryResult<Arc<Self>> {
        // Fail early on an unreadable catalog rather than in the controller.
        model::all_groups(cloud.catalog())?;
        Ok(Arc::new(AutoScaling {
            cloud,
            elb,
            changes: Mutex::new(()),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
            policies: policies::Policies::default(),
        }))
    }

    /// Starts the group controller on a thread of its own.
    pub fn start(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let stop = Arc::clone(&self.stop);
        let spawned = std::thread::Builder::new()
            .name("autoscaling".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    me.tick();
                    for _ in 0..10 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                if let Ok(mut t) = self.thread.lock() {
                    *t = Some(handle);
                }
            }
            Err(e) => tracing::error!("autoscaling: cannot start the controller: {e}"),
        }
    }

    /// Stops the controller (openami is stopping; instances keep running).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The caller's group of this name (call with the lock held to change it).
    pub(crate) fn find(&self, caller: &Caller, name: &str) -> QueryResult<Stored> {
        model::groups_of(self.cloud.catalog(), &caller.account_id, &caller.region)?
            .into_iter()
            .find(|s| s.group.name == name)
            .ok_or_else(|| group_not_found(name))
    }

    /// Runs `f` on the caller's group under the lock and stores the group if `f` succeeds.
    pub(crate) fn update<T>(
        &self,
        caller: &Caller,
        name: &str,
        f: impl FnOnce(&mut Stored) -> QueryResult<T>,
    ) -> QueryResult<T> {
        let _g = self.lock();
        let mut s = self.find(caller, name)?;
        let out = f(&mut s)?;
        model::store(self.cloud.catalog(), &s)?;
        Ok(out)
    }

    // ---- The API other modules (scaling policies, scheduled actions) build on ----

    /// A snapshot of one of the caller's groups: sizes, instances (lifecycle state,
    /// health, zone, launch time, template version), activities, hooks.
    #[allow(dead_code)]
    pub(crate) fn group(&self, caller: &Caller, name: &str) -> QueryResult<Group> {
        Ok(self.find(caller, name)?.group)
    }

    /// Every group of every account and region, with their owners.
    #[allow(dead_code)]
    pub(crate) fn all_groups(&self) -> QueryResult<Vec<Stored>> {
        model::all_groups(self.cloud.catalog())
    }

    /// Sets a group's desired capacity (must lie within min and max: `ValidationError`
    /// otherwise), recording `cause` as the start of the Cause of the activities it
    /// brings; with `honor_cooldown`, refuses with `ScalingActivityInProgress` while the
    /// group's cooldown runs. The controller launches or terminates on its next tick.
    pub(crate) fn set_desired(
        &self,
        caller: &Caller,
        name: &str,
        desired: i64,
        honor_cooldown: bool,
        cause: &str,
    ) -> QueryResult<()> {
        self.update(caller, name, |s| {
            let g = &mut s.group;
            if desired < g.min || desired > g.max {
                return Err(QueryError::validation(format!(
                    "Desired capacity:{desired} must be between the specified min size:{} and max size:{}",
                    g.min, g.max
                )));
            }
            let now = catalog::now_ms();
            if honor_cooldown && now < g.cooldown_until_ms {
                return Err(QueryError::new(
                    "ScalingActivityInProgress",
                    "You cannot set the desired capacity while a scaling activity is in progress or the cooldown period has not elapsed.",
                ));
            }
            if g.desired != desired {
                g.last_cause = cause.to_string();
                g.desired = desired;
                g.cooldown_until_ms = now + g.default_cooldown * 1000;
            }
            Ok(())
        })
    }
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

    fn call(&self, caller: &Caller, action: &str, p: &Params) -> QueryResult<Option<String>> {
        if let Some(out) = groups::call(self, caller, action, p)? {
            return Ok(out);
        }
        if let Some(out) = ops::call(self, caller, action, p)? {
            return Ok(out);
        }
        if let Some(out) = hooks::call(self, caller, action, p)? {
            return Ok(out);
        }
        if let Some(out) = refresh::call(self, caller, action, p)? {
            return Ok(out);
        }
        if let Some(out) = self
            .policies
            .call(self, self.cloud.catalog(), caller, action, p)
        {
            return out;
        }
        Err(awsquery::invalid_action(action, "autoscaling"))
    }
}
