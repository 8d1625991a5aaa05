//! [`Balancer`]: the handle the control plane holds. `apply` reconciles the running data
//! plane with a desired [`Config`]: target groups and their targets (keeping the health of
//! targets that stay, draining those that leave, starting and stopping health checks), then
//! listeners (binding new ones synchronously, closing removed or moved ones, swapping the
//! rules of the others live).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::runtime::Handle;

use crate::listener::{self, Bound, View};
use crate::proxy::{Groups, Upstream};
use crate::state::{Cancel, Group, GroupSettings, TargetState, Targets, lock};
use crate::{Action, BindError, Config, TargetHealth, health};

/// The load balancers' data plane (see the crate docs).
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    apply: Mutex<ApplyState>,
}

/// What request handling and background tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    runtime: Handle,
    groups: RwLock<HashMap<String, Arc<Group>>>,
    /// Request counters by group; they outlive groups, so counts stay monotonic.
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    shutdown: Cancel,
    upstream: Upstream,
}

impl Groups for Shared {
    fn group(&self, id: &str) -> Option<Arc<Group>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn shutdown(&self) -> &Cancel {
        &self.shutdown
    }
}

#[derive(Debug, Default)]
struct ApplyState {
    last: Option<Config>,
    listeners: HashMap<String, Bound>,
    /// The last apply left listeners unbound: the next one retries even if nothing changed.
    failed: bool,
    closed: bool,
}

impl Balancer {
    /// A balancer whose listeners, connections and checks run on `runtime`.
    pub fn new(runtime: Handle) -> Arc<Balancer> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let upstream = {
            let _enter = runtime.enter();
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector)
        };
        Arc::new(Balancer {
            shared: Arc::new(Shared {
                runtime,
                groups: RwLock::new(HashMap::new()),
                counters: Mutex::new(HashMap::new()),
                shutdown: Cancel::new(),
                upstream,
            }),
            apply: Mutex::new(ApplyState::default()),
        })
    }

    /// Makes the data plane match `config`: binds new listeners (std bind, so errors return
    /// synchronously), closes removed ones, swaps rules/targets of the others live (keeps
    /// health state of targets that stay, starts targets new to a group at `initial`, moves
    /// targets removed from a group to `draining`). Idempotent; cheap when nothing changed.
    pub fn apply(&self, config: Config) -> Vec<BindError> {
        let mut st = lock(&self.apply);
        if st.closed || (!st.failed && st.last.as_ref() == Some(&config)) {
            return Vec::new();
        }
        self.reconcile_groups(&config);
        let errors = self.reconcile_listeners(&mut st, &config);
        st.failed = !errors.is_empty();
        st.last = Some(config);
        errors
    }

    /// Registered targets of a group, and those still draining.
    pub fn target_health(&self, target_group: &str) -> Vec<TargetHealth> {
        let Some(group) = self.shared.group(target_group) else {
            return Vec::new();
        };
        let checks = group.settings().health_check.enabled;
        let in_use = group.in_use.load(Ordering::SeqCst) && !group.removed.load(Ordering::SeqCst);
        let targets = lock(&group.targets);
        let registered = targets.registered.iter().map(|t| t.health(in_use, checks));
        registered
            .chain(targets.draining.iter().map(|t| t.draining_health()))
            .collect()
    }

    /// Requests forwarded to the group since start (monotonic).
    pub fn requests(&self, target_group: &str) -> u64 {
        lock(&self.shared.counters)
            .get(target_group)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Closes every listener and stops health checks.
    pub fn shutdown(&self) {
        let mut st = lock(&self.apply);
        st.closed = true;
        st.listeners.clear();
        self.shared.shutdown.cancel();
        let groups: Vec<Arc<Group>> = self
            .shared
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, g)| g)
            .collect();
        for group in groups {
            let targets = lock(&group.targets);
            for t in targets.registered.iter().chain(&targets.draining) {
                t.stop_checks();
                t.closed.cancel();
            }
        }
    }

    fn counter(&self, id: &str) -> Arc<AtomicU64> {
        Arc::clone(
            lock(&self.shared.counters)
                .entry(id.to_owned())
                .or_default(),
        )
    }

    fn reconcile_groups(&self, config: &Config) {
        let in_use: HashSet<&str> = config
            .load_balancers
            .iter()
            .flat_map(|lb| &lb.listeners)
            .flat_map(|l| &l.rules)
            .filter_map(|r| match &r.action {
                Action::Forward(groups) => Some(groups.iter().map(|(id, _)| id.as_str())),
                _ => None,
            })
            .flatten()
            .collect();
        let mut groups = self
            .shared
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut wanted = HashSet::new();
        for tg in &config.target_groups {
            wanted.insert(tg.id.as_str());
            let settings = GroupSettings::new(tg);
            let group = match groups.get(&tg.id) {
                Some(g) => {
                    *g.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
                    Arc::clone(g)
                }
                None => {
                    let g = Arc::new(Group::new(settings, self.counter(&tg.id)));
                    groups.insert(tg.id.clone(), Arc::clone(&g));
                    g
                }
            };
            group.removed.store(false, Ordering::SeqCst);
            let used = in_use.contains(tg.id.as_str());
            let was_used = group.in_use.swap(used, Ordering::SeqCst);
            self.reconcile_targets(&group, tg, used && !was_used);
        }
        for (id, group) in groups.iter() {
            if !wanted.contains(id.as_str()) && !group.removed.swap(true, Ordering::SeqCst) {
                group.in_use.store(false, Ordering::SeqCst);
                let delay = group.settings().deregistration_delay;
                let mut targets = lock(&group.targets);
                for t in std::mem::take(&mut targets.registered) {
                    self.drain(group, &mut targets, t, delay);
                }
            }
        }
        groups
            .retain(|id, g| wanted.contains(id.as_str()) || !lock(&g.targets).draining.is_empty());
    }

    /// Registers, updates and deregisters the targets of one group; starts and stops their
    /// health checks. `restart`: the group just came into use, checks start over.
    fn reconcile_targets(&self, group: &Arc<Group>, tg: &crate::TargetGroup, restart: bool) {
        let settings = group.settings();
        let mut targets = lock(&group.targets);
        let mut old: HashMap<(String, u16), Arc<TargetState>> =
            std::mem::take(&mut targets.registered)
                .into_iter()
                .map(|t| ((t.id.clone(), t.port), t))
                .collect();
        let mut fresh = HashSet::new();
        for t in &tg.targets {
            let key = (t.id.clone(), t.port);
            if targets
                .registered
                .iter()
                .any(|r| r.id == t.id && r.port == t.port)
            {
                continue; // listed twice
            }
            let state = match old.remove(&key) {
                Some(existing) => {
                    let mut inner = lock(&existing.inner);
                    if inner.addr != t.addr {
                        inner.addr = t.addr;
                        fresh.insert(key);
                    }
                    inner.unreachable_reason.clone_from(&t.unreachable_reason);
                    drop(inner);
                    existing
                }
                None if let Some(pos) = targets
                    .draining
                    .iter()
                    .position(|d| d.id == t.id && d.port == t.port) =>
                {
                    // Registered again while draining: it is back, its requests uncut.
                    let back = targets.draining.remove(pos);
                    let mut inner = lock(&back.inner);
                    inner.addr = t.addr;
                    inner.unreachable_reason.clone_from(&t.unreachable_reason);
                    drop(inner);
                    fresh.insert(key);
                    back
                }
                None => {
                    fresh.insert(key);
                    Arc::new(TargetState::new(
                        t.id.clone(),
                        t.port,
                        t.addr,
                        t.unreachable_reason.clone(),
                    ))
                }
            };
            targets.registered.push(state);
        }
        for (_, gone) in old {
            self.drain(group, &mut targets, gone, settings.deregistration_delay);
        }
        let used = group.in_use.load(Ordering::SeqCst);
        for t in &targets.registered {
            let want = used && settings.health_check.enabled && lock(&t.inner).addr.is_some();
            let running = lock(&t.checker).as_ref().is_some_and(|h| !h.is_finished());
            if want && (!running || restart || fresh.contains(&(t.id.clone(), t.port))) {
                health::start(&self.shared.runtime, group, t);
            } else if !want && running {
                t.stop_checks();
            }
        }
    }

    /// Moves a target to draining: no new requests; it disappears once nothing is in flight,
    /// or when `delay` runs out (its remaining requests and connections are then cut).
    fn drain(
        &self,
        group: &Arc<Group>,
        targets: &mut Targets,
        t: Arc<TargetState>,
        delay: Duration,
    ) {
        t.stop_checks();
        targets.draining.push(Arc::clone(&t));
        let weak = Arc::downgrade(group);
        let shutdown = self.shared.shutdown.clone();
        self.shared.runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + delay;
            loop {
                let idle = t.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                // Decided under the group's lock, where re-registration takes a target back.
                if let Some(g) = weak.upgrade() {
                    let mut targets = lock(&g.targets);
                    let Some(pos) = targets.draining.iter().position(|d| Arc::ptr_eq(d, &t)) else {
                        return; // registered again
                    };
                    if t.in_flight() == 0 {
                        targets.draining.remove(pos);
                        return;
                    }
                } else if t.in_flight() == 0 {
                    return;
                }
                tokio::select! {
                    () = idle => {}
                    () = tokio::time::sleep_until(deadline) => break,
                    () = shutdown.cancelled() => return,
                }
            }
            if let Some(g) = weak.upgrade() {
                let mut targets = lock(&g.targets);
                let Some(pos) = targets.draining.iter().position(|d| Arc::ptr_eq(d, &t)) else {
                    return;
                };
                targets.draining.remove(pos);
            }
            t.closed.cancel();
        });
    }

    fn reconcile_listeners(&self, st: &mut ApplyState, config: &Config) -> Vec<BindError> {
        let mut desired = HashMap::new();
        for lb in &config.load_balancers {
            for l in &lb.listeners {
                desired.insert(l.id.as_str(), (lb, l));
            }
        }
        let before = st.listeners.len();
        st.listeners.retain(|id, b| {
            desired.get(id.as_str()).is_some_and(|(lb, l)| {
                b.addr == SocketAddr::from((lb.addr, l.port)) && b.protocol == l.protocol
            })
        });
        let closed_some = st.listeners.len() < before;
        let mut errors = Vec::new();
        for lb in &config.load_balancers {
            for l in &lb.listeners {
                let view = View::new(l, lb);
                if let Some(b) = st.listeners.get(&l.id) {
                    *b.view.write().unwrap_or_else(|e| e.into_inner()) = view;
                    continue;
                }
                match self.bind(lb.addr, l.port, view, closed_some) {
                    Ok(bound) => {
                        st.listeners.insert(l.id.clone(), bound);
                    }
                    Err(e) => errors.push(BindError {
                        listener: l.id.clone(),
                        addr: SocketAddr::from((lb.addr, l.port)),
                        message: e.to_string(),
                    }),
                }
            }
        }
        errors
    }

    /// Binds a listener. A listener just closed releases its socket asynchronously, so when
    /// something was closed an address in use is retried for a moment.
    fn bind(
        &self,
        addr: std::net::Ipv4Addr,
        port: u16,
        view: View,
        retry: bool,
    ) -> std::io::Result<Bound> {
        let mut attempts = if retry { 25 } else { 1 };
        loop {
            let groups = Arc::clone(&self.shared);
            let shutdown = self.shared.shutdown.clone();
            match listener::bind(
                &self.shared.runtime,
                groups,
                shutdown,
                addr,
                port,
                view.clone(),
            ) {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => {
                    attempts -= 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
