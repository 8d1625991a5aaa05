//! Handing a request to the node that owns its work, in a node cluster (`openami serve
//! --node-id … --zone …`). Any node answers any call; a call whose work runs on another
//! node's zone (see `engine::handoff` for which) is queued for that node in the catalog
//! and answered with that node's response:
//!
//! ```text
//!  receiving node                        catalog                       owning node
//!  run: parse, authorise,
//!       route → Node(n) ──enqueue──► node_requests(id, n, ──claim(n)──► worker thread:
//!                                      queued → running)                run here (same code,
//!       wait for `done` ◄──notify──── response ◄──────complete────────  same caller)
//!       answer the client with it
//! ```
//!
//! * **Envelope** (the request column): JSON `{"v":1,"action","params":[[name,value]…],
//!   "account_id","region","from"}` — the request's parameters as received, and the
//!   caller the receiving node authenticated (nodes trust each other through the shared
//!   catalog; the owning node does not verify the signature again).
//! * **Outcome** (the response column): `{"ok":"<inner XML>"}` or
//!   `{"error":{"code","message","status"}}`; the receiving node wraps it exactly as if it
//!   had run the call itself (its own request id).
//! * **Durability.** The row is committed before the receiving node waits: if that node
//!   dies (kill -9), the owner still runs the request and stores its answer; nobody
//!   reads it, and it is purged after [`KEEP_ANSWERED`]. If the owner is down the request
//!   stays queued; the waiter gives up after [`QUEUED_WAIT`] and cancels it (only a request
//!   still `queued` can be cancelled, so it never runs later) and answers
//!   `ServiceUnavailable`. A request the owner already runs is awaited up to
//!   [`RUNNING_WAIT`], or until the owner stops heartbeating (`ServiceUnavailable`: it
//!   may or may not have taken effect).
//! * **Owner restarts.** Requests it had claimed but not answered when it stopped are
//!   answered `InternalError` at its next start (the work may or may not have happened:
//!   the engine's own recovery finished or undid it). A request the owner claims only
//!   after [`QUEUED_WAIT`] (its waiter has given up, or died) is answered
//!   `ServiceUnavailable` and not run: the client may have asked again meanwhile.
//! * A forwarded request is executed where it arrives, never forwarded again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use catalog::node_requests::state;
use catalog::now_ms;
use engine::handoff::{Route, WorkTarget};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use serde::{Deserialize, Serialize};

use crate::ApiState;
use crate::action::Action;
use crate::addresses::AddressAction;
use crate::instance_options::InstanceOptionAction;
use crate::instances::InstanceAction;
use crate::params::Params;

/// How long a request may wait in the queue for its (down or busy) node.
pub const QUEUED_WAIT: Duration = Duration::from_secs(30);
/// How long a request the owning node has started is awaited.
pub const RUNNING_WAIT: Duration = Duration::from_secs(300);
/// How often a waiter looks whether the node running its request is still alive.
const OWNER_CHECK: Duration = Duration::from_secs(2);
/// Answered requests are kept this long (ms), then purged.
pub const KEEP_ANSWERED: i64 = 3_600_000;
/// Requests of any state older than this (ms) are purged (a node that never came back).
const KEEP_ANY: i64 = 7 * 24 * 3_600_000;
/// Handed-over requests a node runs at once (more wait in the queue).
const MAX_RUNNING: usize = 16;

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    action: String,
    params: Vec<(String, String)>,
    account_id: String,
    region: String,
    from: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Ok(String),
    Error {
        code: String,
        message: String,
        status: u16,
    },
}

impl Outcome {
    fn of(result: Ec2Result<String>) -> Self {
        match result {
            Ok(xml) => Outcome::Ok(xml),
            Err(e) => Outcome::Error {
                code: e.code,
                message: e.message,
                status: e.status,
            },
        }
    }

    fn into_result(self) -> Ec2Result<String> {
        match self {
            Outcome::Ok(xml) => Ok(xml),
            Outcome::Error {
                code,
                message,
                status,
            } => Err(Ec2Error {
                code,
                message,
                status,
            }),
        }
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"error":{"code":"InternalError","message":"unencodable answer","status":500}}"#
                .to_string()
        })
    }
}

/// What a request's work is about, read from the parsed action (`None`: anywhere).
fn target(action: &Action) -> Option<WorkTarget<'_>> {
    let one = std::slice::from_ref;
    match action {
        Action::CreateVolume(c) => c
            .availability_zone
            .as_deref()
            .map(WorkTarget::Zone)
            .or(c.availability_zone_id.as_deref().map(WorkTarget::ZoneId)),
        Action::DeleteVolume { id } => Some(WorkTarget::Volume(id)),
        Action::ModifyVolume(m) => Some(WorkTarget::Volume(&m.volume_id)),
        Action::CreateSnapshot { volume_id, .. } => Some(WorkTarget::Volume(volume_id)),
        Action::Address(AddressAction::Associate(a)) => a
            .instance_id
            .as_ref()
            .map(|id| WorkTarget::Instances(one(id))),
        Action::Instance(i) => match i {
            InstanceAction::Run(r) => r
                .availability_zone
                .as_deref()
                .map(WorkTarget::Zone)
                .or(r.subnet_id.as_deref().map(WorkTarget::Subnet))
                .or(r
                    .network_interfaces
                    .iter()
                    .find_map(|n| n.subnet_id.as_deref())
                    .map(WorkTarget::Subnet)),
            InstanceAction::Start(ids)
            | InstanceAction::Reboot(ids)
            | InstanceAction::Terminate(ids)
            | InstanceAction::Stop { ids, .. } => Some(WorkTarget::Instances(ids)),
            InstanceAction::ConsoleOutput(id)
            | InstanceAction::Screenshot(id)
            | InstanceAction::ModifyMetadataOptions { id, .. } => {
                Some(WorkTarget::Instances(one(id)))
            }
            InstanceAction::ModifyAttribute(m) => Some(WorkTarget::Instances(one(&m.instance_id))),
            InstanceAction::Attach { instance_id, .. } => {
                Some(WorkTarget::Instances(one(instance_id)))
            }
            InstanceAction::Detach { volume_id, .. } => Some(WorkTarget::Volume(volume_id)),
            InstanceAction::CreateImage(c) => Some(WorkTarget::Instances(one(&c.instance_id))),
            InstanceAction::CreateSnapshots(c) => Some(WorkTarget::Instances(one(&c.instance_id))),
            _ => None,
        },
        Action::InstanceOption(InstanceOptionAction::UefiData(id)) => {
            Some(WorkTarget::Instances(one(id)))
        }
        _ => None,
    }
}

/// The node that must run `action`, if not this one.
pub(crate) fn route(cloud: &Cloud, caller: &Caller, action: &Action) -> Ec2Result<Option<String>> {
    let Some(target) = target(action) else {
        return Ok(None);
    };
    Ok(match cloud.route(caller, target)? {
        Route::Local => None,
        Route::Node(node) => Some(node),
    })
}

fn unavailable(node: &str, why: &str) -> Ec2Error {
    Ec2Error {
        code: "ServiceUnavailable".into(),
        message: format!(
            "The openami node {node} serving this request's availability zone {why}. Try again later."
        ),
        status: 503,
    }
}

/// Queues the request for `node` and waits for its answer.
pub(crate) fn forward(
    cloud: &Cloud,
    node: &str,
    caller: &Caller,
    params: &Params,
    name: &str,
) -> Ec2Result<String> {
    let me = cloud.node().map_or_else(String::new, |n| n.id.clone());
    let envelope = Envelope {
        v: 1,
        action: name.to_string(),
        params: params.pairs(),
        account_id: caller.account_id.clone(),
        region: caller.region.clone(),
        from: me,
    };
    let body = serde_json::to_string(&envelope)
        .map_err(|e| Ec2Error::internal("encoding a request for another node", e))?;
    let id = format!("req-{}", hex::encode(engine::ids::random_bytes::<16>()));
    let catalog = cloud.catalog();
    catalog.enqueue_node_request(&id, node, &body, now_ms())?;
    tracing::info!(request = %id, node, action = name, "handed to the owning node");
    let started = Instant::now();
    let mut seen = catalog.wait_node_requests(0, Duration::ZERO);
    let mut last_look = Instant::now();
    loop {
        let row = catalog
            .node_request(&id)?
            .ok_or_else(|| Ec2Error::internal("a handed-over request", "its row disappeared"))?;
        match row.state.as_str() {
            state::DONE => {
                let outcome: Outcome = serde_json::from_str(row.response.as_deref().unwrap_or(""))
                    .map_err(|e| Ec2Error::internal("the answer of another node", e))?;
                return outcome.into_result();
            }
            state::QUEUED if started.elapsed() >= QUEUED_WAIT => {
                let cancelled = Outcome::Error {
                    code: "ServiceUnavailable".into(),
                    message: "cancelled: not picked up in time".into(),
                    status: 503,
                }
                .encode();
                if catalog.cancel_node_request(&id, &cancelled, now_ms())? {
                    return Err(unavailable(node, "did not pick the request up in time"));
                }
                // Claimed meanwhile: wait for its answer.
            }
            state::RUNNING if started.elapsed() >= QUEUED_WAIT + RUNNING_WAIT => {
                return Err(unavailable(
                    node,
                    "has not finished the request in time (it may still complete)",
                ));
            }
            state::RUNNING if last_look.elapsed() >= OWNER_CHECK => {
                // An owner that died mid-request answers it only when it is back: do not
                // keep the client waiting for that.
                last_look = Instant::now();
                let alive = catalog.nodes()?.iter().any(|n| {
                    n.node_id == node
                        && now_ms() - n.heartbeat_ms <= engine::nodes::IMPAIRED_AFTER_MS
                });
                if !alive {
                    return Err(unavailable(
                        node,
                        "stopped while it ran the request (it may or may not have taken effect)",
                    ));
                }
            }
            _ => {}
        }
        seen = catalog.wait_node_requests(seen, Duration::from_millis(500));
    }
}

/// Starts the worker that runs requests other nodes hand to this one (a node only):
/// first it answers what it had claimed before a restart, then it claims and runs
/// queued requests until the cloud shuts down.
pub(crate) fn start_worker(state: Arc<ApiState>) {
    let Some(node) = state.cloud.node().map(|n| n.id.clone()) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("node requests".into())
        .spawn(move || work(&state, &node));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the node request worker");
    }
}

fn work(state: &Arc<ApiState>, node: &str) {
    let catalog = state.cloud.catalog();
    loop {
        match answer_interrupted(&state.cloud, node) {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for interrupted node requests");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        if state.cloud.is_shutting_down() {
            return;
        }
    }
    let mut seen = 0;
    let mut last_purge = Instant::now() - Duration::from_secs(3600);
    let running = Arc::new(AtomicUsize::new(0));
    while !state.cloud.is_shutting_down() {
        let room = MAX_RUNNING.saturating_sub(running.load(Ordering::SeqCst));
        if room == 0 {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let claimed = match catalog.claim_node_requests(node, room, now_ms()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim node requests");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        for request in claimed {
            if now_ms() - request.created_ms > QUEUED_WAIT.as_millis() as i64 {
                // Its waiter has given up (or died): running it now could repeat what the
                // client, told it failed, has asked again meanwhile.
                let late = Outcome::Error {
                    code: "ServiceUnavailable".into(),
                    message: "The request waited too long for its openami node and was not run."
                        .into(),
                    status: 503,
                };
                if let Err(e) = catalog.complete_node_request(&request.id, &late.encode(), now_ms())
                {
                    tracing::warn!(request = %request.id, error = %e, "cannot answer a stale node request");
                }
                continue;
            }
            let state = Arc::clone(state);
            let slot = Slot::take(&running);
            // Each on its own thread: a slow request must not hold up the others.
            let spawned = std::thread::Builder::new()
                .name("node request".into())
                .spawn(move || {
                    let _slot = slot;
                    run_one(&state, &request.id, &request.request);
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a node request");
            }
        }
        if last_purge.elapsed() >= Duration::from_secs(600) {
            last_purge = Instant::now();
            let now = now_ms();
            if let Err(e) = catalog.purge_node_requests(now - KEEP_ANSWERED, now - KEEP_ANY) {
                tracing::warn!(error = %e, "cannot purge node requests");
            }
        }
        seen = catalog.wait_node_requests(seen, Duration::from_secs(1));
    }
}

/// One of the [`MAX_RUNNING`] places, given back when dropped (a request that panics
/// included).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(running: &Arc<AtomicUsize>) -> Slot {
        running.fetch_add(1, Ordering::SeqCst);
        Slot(Arc::clone(running))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers the requests this node had claimed when it stopped.
fn answer_interrupted(cloud: &Cloud, node: &str) -> Result<(), catalog::CatalogError> {
    let catalog = cloud.catalog();
    for request in catalog.node_requests_in_state(node, state::RUNNING)? {
        let outcome = Outcome::Error {
            code: "InternalError".into(),
            message: format!(
                "The openami node {node} restarted while it ran this request; it may or may not have taken effect. Describe the resources to see."
            ),
            status: 500,
        };
        catalog.complete_node_request(&request.id, &outcome.encode(), now_ms())?;
        tracing::warn!(request = %request.id, "answered a node request interrupted by a restart");
    }
    Ok(())
}

fn run_one(state: &ApiState, id: &str, body: &str) {
    let result = serde_json::from_str::<Envelope>(body)
        .map_err(|e| Ec2Error::internal("a request from another node", e))
        .and_then(|env| {
            if env.v != 1 {
                return Err(Ec2Error::internal(
                    "a request from another node",
                    format!("envelope version {}", env.v),
                ));
            }
            let caller = Caller {
                account_id: env.account_id,
                region: env.region,
            };
            let params = Params::from_pairs(env.params);
            tracing::info!(request = %id, from = %env.from, action = %env.action, "running a request from another node");
            // A panic is answered like any failure, not left `running` for the waiter.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::run_here(state, &caller, &params, &env.action)
            }))
            .unwrap_or_else(|_| {
                Err(Ec2Error::internal(
                    "a request from another node",
                    "the request handler panicked",
                ))
            })
        });
    let outcome = Outcome::of(result).encode();
    if let Err(e) = state
        .cloud
        .catalog()
        .complete_node_request(id, &outcome, now_ms())
    {
        tracing::error!(request = %id, error = %e, "cannot store the answer of a node request");
    }
}
