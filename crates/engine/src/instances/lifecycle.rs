//! The instance lifecycle: boot, stop, start, reboot, terminate, and what happens when a
//! guest powers itself off or its machine dies.
//!
//! ```text
//!   RunInstances ─▶ pending ──boot──▶ running ──StopInstances──▶ stopping ──▶ stopped
//!                      ▲                │  │                                    │
//!                      └──StartInstances┼──┼────────────────────────────────────┘
//!                                       │  └─guest powers off─▶ stopped | terminated
//!                 TerminateInstances ───┴──▶ shutting-down ──▶ terminated (visible 1 h)
//! ```
//!
//! Every transition is a catalog write under one lock (`transitions`), so an API call and
//! a machine's supervisor never interleave their read-modify-writes. Each booted machine
//! has a supervisor thread that waits for its QEMU process to end and then finishes the
//! transition the ending implies: the one an API call asked for (its *intent*), or the
//! instance-initiated shutdown behaviour when the guest powered itself off.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use catalog::{ResourceRow, now_ms};

use super::machine::{Exit, Intent, Machine};
use super::{InstanceDoc, KIND, doc_of, encode, user_initiated};
use crate::images::StateReason;
use crate::volumes::{self, VolumeDoc};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, lock};

/// Serializes instance state transitions.
static TRANSITIONS: Mutex<()> = Mutex::new(());

fn transitions() -> MutexGuard<'static, ()> {
    TRANSITIONS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds the transition lock (attachments change instance documents too).
pub(crate) fn lock_transitions() -> MutexGuard<'static, ()> {
    transitions()
}

/// How long a stop waits for the guest to power off after the ACPI request before the
/// machine is ended.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The result of a Start/Stop/Terminate call for one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The instance.
    pub instance_id: String,
    /// State before the call.
    pub previous: String,
    /// State after the call.
    pub current: String,
}

fn reason(code: &str, message: &str) -> Option<StateReason> {
    Some(StateReason {
        code: code.into(),
        message: message.into(),
    })
}

/// EC2's state reason after StopInstances / TerminateInstances.
fn user_shutdown() -> Option<StateReason> {
    reason(
        "Client.UserInitiatedShutdown",
        "Client.UserInitiatedShutdown: User initiated shutdown",
    )
}

impl StateChange {
    /// A call that left the instance as it was.
    fn unchanged(instance_id: String, state: String) -> Self {
        StateChange {
            instance_id,
            previous: state.clone(),
            current: state,
        }
    }
}

fn incorrect_state(id: &str, state: &str, action: &str) -> Ec2Error {
    Ec2Error::client(
        "IncorrectInstanceState",
        format!(
            "The instance '{id}' is not in a state from which it can be {action} (it is {state})."
        ),
    )
}

impl Cloud {
    /// Writes a new state (and document) for an instance.
    fn set_instance(&self, id: &str, state: &str, doc: &InstanceDoc) -> Ec2Result<()> {
        self.catalog.update_resource(id, state, &encode(doc)?)?;
        Ok(())
    }

    /// Records a move to `state` an API call asked for (`User initiated (…)`); a start
    /// (`pending`) also clears the reason of the previous stop.
    fn record_user_transition(&self, row: &ResourceRow, state: &str) -> Ec2Result<()> {
        let doc = doc_of(row)?;
        self.record_user_doc(row, state, doc)
    }

    /// [`Cloud::record_user_transition`] with a document already changed by the caller.
    fn record_user_doc(
        &self,
        row: &ResourceRow,
        state: &str,
        mut doc: InstanceDoc,
    ) -> Ec2Result<()> {
        if state == "pending" {
            doc.state_reason = None;
        }
        doc.state_transition_reason = user_initiated(now_ms());
        self.set_instance(&row.id, state, &doc)
    }

    /// Boots the machine of a `pending` instance on a worker thread; the instance becomes
    /// `running` once QEMU runs, and a supervisor follows the machine until it ends.
    pub(crate) fn boot_in_background(self: &Arc<Self>, id: &str, user_data: Option<Vec<u8>>) {
        let cloud = Arc::clone(self);
        let instance = id.to_string();
        self.spawn_worker(format!("boot {id}"), move || {
            cloud.boot_and_supervise(&instance, user_data);
        });
    }

    fn boot_and_supervise(self: &Arc<Self>, id: &str, user_data: Option<Vec<u8>>) {
        // openami is stopping: the instance stays pending and boots at the next start.
        if self.is_shutting_down() {
            return;
        }
        let Ok(Some(row)) = self.catalog.resource(id) else {
            return;
        };
        let launched = doc_of(&row).and_then(|doc| {
            let user_data = match user_data {
                Some(u) => Some(u),
                None => match &doc.user_data {
                    Some(b64) => Some(super::launch::decode_user_data(b64)?),
                    None => None,
                },
            };
            Machine::launch(self, &row, &doc, user_data)
        });
        let machine = match launched {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(instance = %id, error = %e, "cannot boot instance");
                self.after_failed_boot(id);
                return;
            }
        };
        {
            let _t = transitions();
            let current = self.catalog.resource(id).ok().flatten();
            match current {
                Some(_) if !self.register_machine(id, &machine) => {
                    // openami began to stop while QEMU started: end it; the instance
                    // keeps its state and boots at the next start.
                    machine.set_intent(Intent::Detach);
                    machine.kill();
                }
                Some(row) if row.state == "pending" => {
                    if let Ok(mut doc) = doc_of(&row) {
                        doc.state_reason = None;
                        doc.state_transition_reason = String::new();
                        doc.launch_time_ms = now_ms();
                        doc.has_run = true;
                        if let Err(e) = self.set_instance(id, "running", &doc) {
                            tracing::error!(instance = %id, error = %e, "cannot record running");
                        }
                    }
                }
                other => {
                    // Stopped or terminated while booting (registered above, or gone).
                    let stopping = other.is_some_and(|r| r.state == "stopping");
                    machine.set_intent(if stopping {
                        Intent::Stop
                    } else {
                        Intent::Terminate
                    });
                    lock(&self.machines).insert(id.to_string(), Arc::clone(&machine));
                    machine.kill();
                }
            }
        }
        // Rules may have changed while QEMU started, before security group changes could
        // find the machine: apply what they say now.
        if machine.intent().is_none() {
            machine.apply_forwards(self);
        }
        self.supervise(id, &machine);
    }

    /// Records a booted machine, unless openami has begun to stop (checked under the
    /// same lock [`Cloud::shutdown_machines`] takes, so no machine is missed by both).
    fn register_machine(&self, id: &str, machine: &Arc<Machine>) -> bool {
        let mut machines = lock(&self.machines);
        if self.is_shutting_down() {
            return false;
        }
        machines.insert(id.to_string(), Arc::clone(machine));
        true
    }

    /// Follows a machine until it ends, then finishes the transition its end implies.
    fn supervise(&self, id: &str, machine: &Arc<Machine>) {
        let exit = machine.wait();
        machine.release();
        lock(&self.machines).remove(id);
        self.after_exit(id, machine.intent(), exit);
    }

    /// Adopts the still-running machine of a `running` instance after a crash of
    /// openami; false if there is none to adopt.
    fn adopt_machine(self: &Arc<Self>, row: &ResourceRow) -> bool {
        let adopted = doc_of(row).and_then(|doc| Machine::adopt(self, row, &doc));
        match adopted {
            Ok(Some(machine)) => {
                tracing::info!(instance = %row.id, "adopted a running machine");
                lock(&self.machines).insert(row.id.clone(), Arc::clone(&machine));
                let cloud = Arc::clone(self);
                let id = row.id.clone();
                self.spawn_worker(format!("supervise {id}"), move || {
                    cloud.supervise(&id, &machine);
                });
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(instance = %row.id, error = %e, "cannot adopt the machine; it boots again");
                false
            }
        }
    }

    /// A machine that could not be started: a first launch ends terminated, a start of a
    /// stopped instance leaves it stopped.
    fn after_failed_boot(&self, id: &str) {
        let _t = transitions();
        let Ok(Some(row)) = self.catalog.resource(id) else {
            return;
        };
        let Ok(mut doc) = doc_of(&row) else {
            return;
        };
        doc.state_reason = reason(
            "Server.InternalError",
            "Server.InternalError: Internal error on launch",
        );
        // Only a launch that never ran ends terminated; an instance that ran before (a
        // start, or a boot again after a restart of openami) keeps its volumes, stopped.
        let first_launch = !doc.has_run;
        if first_launch || doc.root_device_type != "ebs" || row.state == "shutting-down" {
            drop(_t);
            self.finish_terminate(id, doc.state_reason.clone());
        } else {
            super::network::release_public_ip(&mut doc);
            if let Err(e) = self.set_instance(id, "stopped", &doc) {
                tracing::error!(instance = %id, error = %e, "cannot record failed start");
            }
        }
    }

    /// Finishes the transition a machine's end implies.
    fn after_exit(&self, id: &str, intent: Option<Intent>, exit: Exit) {
        let Ok(Some(row)) = self.catalog.resource(id) else {
            return;
        };
        let Ok(doc) = doc_of(&row) else {
            return;
        };
        let instance_store = doc.root_device_type != "ebs";
        let (terminate, why) = match (intent, &exit) {
            // openami is shutting down: the instance boots again at the next start.
            (Some(Intent::Detach), _) => return,
            (Some(Intent::Terminate), _) => (true, user_shutdown()),
            (Some(Intent::Stop), _) => (false, user_shutdown()),
            (None, Exit::GuestPowerOff) => (
                instance_store || doc.shutdown_behavior == "terminate",
                reason(
                    "Client.InstanceInitiatedShutdown",
                    "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                ),
            ),
            (None, Exit::Other(detail)) => {
                tracing::warn!(instance = %id, %detail, "machine ended unexpectedly");
                (
                    instance_store,
                    reason(
                        "Server.InternalError",
                        "Server.InternalError: Internal error",
                    ),
                )
            }
        };
        if terminate {
            self.finish_terminate(id, why);
        } else {
            let _t = transitions();
            let Ok(Some(row)) = self.catalog.resource(id) else {
                return;
            };
            let Ok(mut doc) = doc_of(&row) else {
                return;
            };
            if row.state == "shutting-down" || row.state == "terminated" {
                drop(_t);
                self.finish_terminate(id, why);
                return;
            }
            doc.state_reason = why;
            if doc.state_transition_reason.is_empty() || intent.is_none() {
                doc.state_transition_reason = user_initiated(now_ms());
            }
            super::network::release_public_ip(&mut doc);
            if let Err(e) = self.set_instance(id, "stopped", &doc) {
                tracing::error!(instance = %id, error = %e, "cannot record stopped");
            }
        }
    }

    /// Deletes an instance's DeleteOnTermination volumes, detaches the others, frees its
    /// local disks and marks it `terminated`.
    pub(crate) fn finish_terminate(&self, id: &str, why: Option<StateReason>) {
        let _t = transitions();
        let result = (|| -> Ec2Result<()> {
            let Some(row) = self.catalog.resource(id)? else {
                return Ok(());
            };
            if row.state == "terminated" {
                return Ok(());
            }
            let mut doc = doc_of(&row)?;
            for device in std::mem::take(&mut doc.block_devices) {
                self.release_volume(&row.region, &device.volume_id, device.delete_on_termination)?;
            }
            super::machine::destroy_local_disks(self, &row)?;
            doc.state_reason = why;
            doc.terminated_ms = Some(now_ms());
            super::network::release_all_public_addresses(&mut doc);
            if doc.state_transition_reason.is_empty() {
                doc.state_transition_reason = user_initiated(now_ms());
            }
            self.set_instance(id, "terminated", &doc)
        })();
        if let Err(e) = result {
            tracing::error!(instance = %id, error = %e, "cannot finish termination");
        }
    }

    /// Deletes a volume created for an instance (its data, tags and row).
    pub(crate) fn delete_instance_volume(&self, region: &str, volume_id: &str) -> Ec2Result<()> {
        self.release_volume(region, volume_id, true)
    }

    /// Detaches a volume from its (terminating) instance, deleting it if asked.
    fn release_volume(&self, region: &str, volume_id: &str, delete: bool) -> Ec2Result<()> {
        let Some(row) = self.catalog.resource(volume_id)? else {
            return Ok(());
        };
        if delete {
            let storage = self.region(region)?;
            lock(&self.open_volumes).remove(volume_id);
            volume::Volume::destroy(&storage.volumes_dir.join(volume_id), &storage.store)?;
            self.catalog.clear_tags(volume_id)?;
            self.catalog.delete_resource(volume_id)?;
        } else {
            let mut doc: VolumeDoc = serde_json::from_str(&row.doc)
                .map_err(|e| Ec2Error::internal("volume document", e))?;
            doc.attachment = None;
            self.catalog
                .update_resource(volume_id, "available", &volumes::encode(&doc)?)?;
        }
        Ok(())
    }

    /// Rows of the caller's instances named in `ids`, all of which must exist.
    fn instance_rows(&self, caller: &Caller, ids: &[String]) -> Ec2Result<Vec<ResourceRow>> {
        if ids.is_empty() {
            return Err(Ec2Error::missing("InstanceId"));
        }
        ids.iter()
            .map(|id| self.owned_instance(caller, id))
            .collect()
    }

    /// StopInstances.
    pub fn stop_instances(
        self: &Arc<Self>,
        caller: &Caller,
        ids: &[String],
        force: bool,
    ) -> Ec2Result<Vec<StateChange>> {
        let _t = transitions();
        let rows = self.instance_rows(caller, ids)?;
        for row in &rows {
            let doc = doc_of(row)?;
            if doc.root_device_type != "ebs" {
                return Err(Ec2Error::client(
                    "UnsupportedOperation",
                    format!(
                        "The instance '{}' does not have an 'ebs' root device type and cannot be stopped.",
                        row.id
                    ),
                ));
            }
            if doc.disable_api_stop {
                return Err(Ec2Error::client(
                    "OperationNotPermitted",
                    format!(
                        "The instance '{}' may not be stopped. Modify its 'disableApiStop' instance attribute and try again.",
                        row.id
                    ),
                ));
            }
            if matches!(row.state.as_str(), "terminated" | "shutting-down") {
                return Err(incorrect_state(&row.id, &row.state, "stopped"));
            }
        }
        let mut out = Vec::new();
        for row in rows {
            let previous = row.state.clone();
            if previous == "stopped" || previous == "stopping" {
                out.push(StateChange::unchanged(row.id, previous));
                continue;
            }
            self.record_user_transition(&row, "stopping")?;
            let machine = lock(&self.machines).get(&row.id).cloned();
            match machine {
                Some(machine) => {
                    machine.set_intent(Intent::Stop);
                    self.spawn_worker(format!("stop {}", row.id), move || {
                        machine.shut_down(if force { Duration::ZERO } else { STOP_GRACE });
                    });
                }
                None => {
                    // Still booting: the boot thread sees `stopping` and ends the machine.
                }
            }
            out.push(StateChange {
                instance_id: row.id,
                previous,
                current: "stopping".into(),
            });
        }
        Ok(out)
    }

    /// StartInstances.
    pub fn start_instances(
        self: &Arc<Self>,
        caller: &Caller,
        ids: &[String],
    ) -> Ec2Result<Vec<StateChange>> {
        let _t = transitions();
        let rows = self.instance_rows(caller, ids)?;
        for row in &rows {
            if !matches!(row.state.as_str(), "stopped" | "running" | "pending") {
                return Err(incorrect_state(&row.id, &row.state, "started"));
            }
        }
        let capacity = self.compute_config().max_instances;
        let starting = rows.iter().filter(|r| r.state == "stopped").count();
        if self.active_instance_count()? + starting > capacity {
            return Err(Ec2Error {
                code: "InsufficientInstanceCapacity".into(),
                message: "We currently do not have sufficient capacity on this host.".into(),
                status: 500,
            });
        }
        // New public addresses for every instance that starts, chosen before any instance
        // changes state: the call starts all of them or none.
        let addresses = super::network::address_lock();
        let mut taken = Vec::new();
        let mut docs = Vec::new();
        for row in rows.iter().filter(|r| r.state == "stopped") {
            let mut doc = doc_of(row)?;
            if let Some(ip) = self.assign_public_ip(&mut doc, &taken)? {
                taken.push(ip);
            }
            docs.push(doc);
        }
        let mut docs = docs.into_iter();
        let mut out = Vec::new();
        for row in rows {
            let previous = row.state.clone();
            if previous != "stopped" {
                out.push(StateChange::unchanged(row.id, previous));
                continue;
            }
            let doc = docs
                .next()
                .ok_or_else(|| Ec2Error::internal("start", "documents out of step"))?;
            self.record_user_doc(&row, "pending", doc)?;
            self.boot_in_background(&row.id, None);
            out.push(StateChange {
                instance_id: row.id,
                previous,
                current: "pending".into(),
            });
        }
        drop(addresses);
        Ok(out)
    }

    /// RebootInstances: resets running machines.
    pub fn reboot_instances(&self, caller: &Caller, ids: &[String]) -> Ec2Result<()> {
        let rows = self.instance_rows(caller, ids)?;
        for row in &rows {
            if row.state == "terminated" || row.state == "shutting-down" {
                return Err(incorrect_state(&row.id, &row.state, "rebooted"));
            }
        }
        for row in rows {
            let machine = lock(&self.machines).get(&row.id).cloned();
            if let Some(machine) = machine {
                machine.reset()?;
            }
        }
        Ok(())
    }

    /// TerminateInstances.
    pub fn terminate_instances(
        self: &Arc<Self>,
        caller: &Caller,
        ids: &[String],
    ) -> Ec2Result<Vec<StateChange>> {
        let _t = transitions();
        let rows = self.instance_rows(caller, ids)?;
        for row in &rows {
            if doc_of(row)?.disable_api_termination && row.state != "terminated" {
                return Err(Ec2Error::client(
                    "OperationNotPermitted",
                    format!(
                        "The instance '{}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.",
                        row.id
                    ),
                ));
            }
        }
        let mut out = Vec::new();
        for row in rows {
            let previous = row.state.clone();
            if previous == "terminated" || previous == "shutting-down" {
                out.push(StateChange::unchanged(row.id, previous));
                continue;
            }
            self.record_user_transition(&row, "shutting-down")?;
            let machine = lock(&self.machines).get(&row.id).cloned();
            match machine {
                Some(machine) => {
                    machine.set_intent(Intent::Terminate);
                    machine.kill();
                }
                None if previous == "pending" => {
                    // The boot thread sees `shutting-down` and finishes the termination.
                }
                None => {
                    let cloud = Arc::clone(self);
                    let id = row.id.clone();
                    self.spawn_worker(format!("terminate {id}"), move || {
                        cloud.finish_terminate(&id, user_shutdown());
                    });
                }
            }
            out.push(StateChange {
                instance_id: row.id,
                previous,
                current: "shutting-down".into(),
            });
        }
        Ok(out)
    }

    /// After a restart: a running instance whose machine survived (openami crashed) is
    /// adopted; other instances that were running boot again (as after a host reboot),
    /// those stopping are stopped, those shutting down are terminated. Any other
    /// leftover machine is ended.
    pub(crate) fn recover_instances(self: &Arc<Self>) -> Ec2Result<()> {
        for row in self.catalog.resources_of_kind(KIND)? {
            // In a node cluster, other nodes' instances are theirs to recover.
            if !self.owns_instance_row(&row)? {
                continue;
            }
            if row.state == "running" && self.adopt_machine(&row) {
                continue;
            }
            super::machine::reap_leftover(self, &row);
            match row.state.as_str() {
                "pending" | "running" => {
                    let mut doc = doc_of(&row)?;
                    doc.state_reason = None;
                    self.set_instance(&row.id, "pending", &doc)?;
                    self.boot_in_background(&row.id, None);
                }
                "stopping" => {
                    let mut doc = doc_of(&row)?;
                    doc.state_reason = user_shutdown();
                    super::network::release_public_ip(&mut doc);
                    self.set_instance(&row.id, "stopped", &doc)?;
                }
                "shutting-down" => self.finish_terminate(&row.id, user_shutdown()),
                _ => {}
            }
        }
        self.purge_terminated()
    }

    /// True once openami has begun to stop.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops every machine (openami is shutting down): instances stay `running` in the
    /// catalog and boot again at the next start.
    pub fn shutdown_machines(&self) {
        let machines: Vec<Arc<Machine>> = {
            let machines = lock(&self.machines);
            self.shutting_down
                .store(true, std::sync::atomic::Ordering::SeqCst);
            machines.values().cloned().collect()
        };
        for m in machines {
            m.set_intent(Intent::Detach);
            m.kill();
        }
    }
}
