//! Garbage collection of the region block stores: in one process, and across the nodes
//! of a node cluster.
//!
//! * **One process** (the embedded default): [`gc_with_uploads`] — blockstore's
//!   mark-and-sweep under its in-memory pins, with the blocks of EBS direct uploads in
//!   progress (catalog rows) as extra roots.
//! * **A node cluster** (`serve --node-id`): the store is an S3 bucket every node writes,
//!   so no node's memory knows every writer. Collection is blockstore's two-phase fossil
//!   collection (see `blockstore::fossil` for why it is safe), coordinated through the
//!   catalog (`catalog::gc_leases`):
//!
//! ```text
//!  write sessions ── share a lease row (node, region) ── renewed with the node heartbeat
//!  node A: gc_lock(region) ─ phase 1: fossilize ─ record {t, leases live now} ─ unlock
//!                        … grace period, and every recorded lease ended …
//!  node B: gc_lock(region) ─ phase 2: sweep fossils ─ clear ─ phase 1 again ─ unlock
//! ```
//!
//! A lease is trusted by its own node only while its last successful renewal (or its
//! creation) is younger than [`LEASE_TTL`] minus [`LEASE_MARGIN`]; other nodes treat it
//! as live until `expires_ms` (TTL after the renewal, by the renewing node's clock). The
//! margin covers the clock skew between nodes. A collector that dies mid-phase leaves
//! the GC lock to expire ([`LOCK_TTL`]); a phase 1 that never finished is finished by the
//! next collector with the leases live then.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use blockstore::{BlockHash, BlockStore, GcReport, Leases};
use catalog::{GcCollection, GcLock};

use crate::{Cloud, Ec2Error, lock};

/// How long a lease stays live on other nodes after its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How much sooner its own node stops trusting it (clock skew, a slow catalog).
pub const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How long a GC lock hold lasts unless renewed (a holder that died is replaced then).
pub const LOCK_TTL: Duration = Duration::from_secs(15 * 60);
/// How often a working holder renews its hold.
pub const LOCK_RENEW: Duration = Duration::from_secs(60);
/// A holder that could not renew stops this long before its hold may have run out.
pub const LOCK_MARGIN: Duration = Duration::from_secs(120);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// This node's write leases and when they were last renewed.
///
/// Sessions share leases: a new session joins the region's current lease while it is
/// younger than [`LEASE_ROTATE`], so a stream of EBS direct puts (a session each) costs a
/// catalog insert every few seconds, not two writes per block. A lease ends (its row is
/// deleted) once it is no longer current and its last session ended, so GC waiting for
/// the leases of a moment waits for at most the sessions open then and those that joined
/// within [`LEASE_ROTATE`] after.
#[derive(Debug)]
pub(crate) struct LeaseBook {
    node_id: String,
    state: Mutex<BookState>,
    /// Lease releases that failed, tried again with the next renewal.
    unreleased: Mutex<Vec<String>>,
    /// This process's name as a GC lock holder (node id and a random suffix).
    gc_holder: String,
}

#[derive(Debug, Default)]
struct BookState {
    /// Lease id → what it is.
    held: HashMap<String, Held>,
    /// Region → the lease new sessions join.
    current: HashMap<String, String>,
}

#[derive(Debug)]
struct Held {
    created: Instant,
    sessions: usize,
    /// When its last successful renewal (or its creation) started.
    renewed: Instant,
    /// A renewal found it expired: it stays untrusted (a collector may have stopped
    /// waiting for it), and its sessions fail.
    lost: bool,
}

/// How long new sessions keep joining the same lease.
pub const LEASE_ROTATE: Duration = Duration::from_secs(5);

impl LeaseBook {
    pub(crate) fn new(node_id: &str) -> Arc<Self> {
        Arc::new(LeaseBook {
            node_id: node_id.to_string(),
            state: Mutex::new(BookState::default()),
            unreleased: Mutex::new(Vec::new()),
            gc_holder: format!("{node_id}/{}", hex::encode(crate::ids::random_bytes::<6>())),
        })
    }

    /// Extends this process's live leases in the catalog (only its own ids, and only those
    /// not expired: a lapsed lease is never revived), ends current leases no session uses
    /// any more and retries failed releases (called with every heartbeat).
    pub(crate) fn renew(&self, catalog: &catalog::Catalog) -> Result<(), catalog::CatalogError> {
        let (idle, ids) = {
            let mut state = lock(&self.state);
            let idle: Vec<String> = state
                .current
                .values()
                .filter(|id| state.held.get(*id).is_some_and(|h| h.sessions == 0))
                .cloned()
                .collect();
            for id in &idle {
                state.held.remove(id);
            }
            state.current.retain(|_, id| !idle.contains(id));
            let ids: Vec<String> = state
                .held
                .iter()
                .filter(|(_, h)| !h.lost)
                .map(|(id, _)| id.clone())
                .collect();
            (idle, ids)
        };
        let mut release: Vec<String> = std::mem::take(&mut *lock(&self.unreleased));
        release.extend(idle);
        for (i, id) in release.iter().enumerate() {
            if let Err(e) = catalog.gc_lease_release(id) {
                lock(&self.unreleased).extend(release[i..].iter().cloned());
                return Err(e);
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let renewed: HashSet<String> = catalog
            .gc_lease_renew(&ids, catalog::now_ms(), ms(LEASE_TTL))?
            .into_iter()
            .collect();
        let mut state = lock(&self.state);
        for id in &ids {
            if let Some(h) = state.held.get_mut(id) {
                if renewed.contains(id) {
                    h.renewed = h.renewed.max(started);
                } else {
                    tracing::error!(lease = %id, "a write lease expired before it was renewed: its sessions fail");
                    h.lost = true;
                }
            }
        }
        // A lost current lease takes no new sessions.
        let state = &mut *state;
        let held = &state.held;
        state
            .current
            .retain(|_, id| !held.get(id).is_some_and(|h| h.lost));
        Ok(())
    }

    fn release_later(&self, id: &str) {
        lock(&self.unreleased).push(id.to_string());
    }
}

/// The [`Leases`] of one region's store on a node: catalog rows renewed by the heartbeat.
#[derive(Debug)]
pub(crate) struct RegionLeases {
    cloud: Weak<Cloud>,
    book: Arc<LeaseBook>,
    region: String,
}

impl RegionLeases {
    pub(crate) fn new(cloud: &Arc<Cloud>, book: &Arc<LeaseBook>, region: &str) -> Arc<Self> {
        Arc::new(RegionLeases {
            cloud: Arc::downgrade(cloud),
            book: Arc::clone(book),
            region: region.to_string(),
        })
    }
}

impl Leases for RegionLeases {
    fn acquire(&self) -> Result<String, String> {
        let mut state = lock(&self.book.state);
        let state = &mut *state;
        if let Some(id) = state.current.get(&self.region)
            && let Some(held) = state.held.get_mut(id)
            && held.created.elapsed() < LEASE_ROTATE
            && !held.lost
        {
            held.sessions += 1;
            return Ok(id.clone());
        }
        // A new row, committed before the session makes its first existence check (the
        // book stays locked meanwhile: sessions of this node wait for it, briefly).
        let cloud = self.cloud.upgrade().ok_or("the service is stopping")?;
        let id = format!(
            "{}-{}",
            self.book.node_id,
            hex::encode(crate::ids::random_bytes::<8>())
        );
        let created = Instant::now();
        cloud
            .catalog
            .gc_lease_acquire(
                &id,
                &self.region,
                &self.book.node_id,
                catalog::now_ms(),
                ms(LEASE_TTL),
            )
            .map_err(|e| e.to_string())?;
        state.held.insert(
            id.clone(),
            Held {
                created,
                sessions: 1,
                renewed: created,
                lost: false,
            },
        );
        // The previous current lease ends with its last session.
        if let Some(old) = state.current.insert(self.region.clone(), id.clone())
            && state.held.get(&old).is_some_and(|h| h.sessions == 0)
        {
            state.held.remove(&old);
            release_row(&cloud, &self.book, &old);
        }
        Ok(id)
    }

    fn release(&self, id: &str) {
        let end = {
            let mut state = lock(&self.book.state);
            let Some(held) = state.held.get_mut(id) else {
                return;
            };
            held.sessions = held.sessions.saturating_sub(1);
            let end = held.sessions == 0
                && state.current.get(&self.region).map(String::as_str) != Some(id);
            if end {
                state.held.remove(id);
            }
            end
        };
        if end && let Some(cloud) = self.cloud.upgrade() {
            release_row(&cloud, &self.book, id);
        }
    }

    fn still_held(&self, id: &str) -> bool {
        lock(&self.book.state)
            .held
            .get(id)
            .is_some_and(|h| !h.lost && h.renewed.elapsed() < LEASE_TTL - LEASE_MARGIN)
    }
}

fn release_row(cloud: &Cloud, book: &LeaseBook, id: &str) {
    if let Err(e) = cloud.catalog.gc_lease_release(id) {
        tracing::warn!(lease = id, error = %e, "ending a write lease (tried again at the next heartbeat)");
        book.release_later(id);
    }
}

/// Every block hash the catalog records for uploads in progress.
fn upload_roots(catalog: &catalog::Catalog) -> Result<HashSet<BlockHash>, String> {
    let hexes = catalog.all_upload_hashes().map_err(|e| e.to_string())?;
    hexes
        .iter()
        .map(|h| {
            h.parse::<BlockHash>()
                .map_err(|e| format!("bad upload hash {h}: {e}"))
        })
        .collect()
}

/// GC of a region store that keeps blocks of uploads in progress (catalog roots); for a
/// store only this process writes.
pub fn gc_with_uploads(
    catalog: &catalog::Catalog,
    store: &Arc<BlockStore>,
) -> Result<GcReport, blockstore::BlockStoreError> {
    store.gc_with_roots(&|| upload_roots(catalog))
}

/// Space accounting of a region store in which the blocks only uploads in progress hold
/// count as held, as [`gc_with_uploads`] keeps them.
pub fn stats_with_uploads(
    catalog: &catalog::Catalog,
    store: &Arc<BlockStore>,
) -> Result<blockstore::StoreStats, blockstore::BlockStoreError> {
    let roots = upload_roots(catalog).map_err(blockstore::BlockStoreError::ExternalRoots)?;
    store.stats_with_roots(&roots)
}

/// What one collection step on a node cluster did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterGcReport {
    /// Another node held the region's GC lock: nothing was done.
    pub busy: Option<String>,
    /// A collection is pending; its grace period or leases are not over yet.
    pub waiting: bool,
    /// Phase 2, if it ran.
    pub swept: Option<blockstore::SweepReport>,
    /// Phase 1, if it ran.
    pub fossilized: Option<blockstore::FossilReport>,
}

impl ClusterGcReport {
    /// The same figures as a single-process [`GcReport`] (blocks freed are phase 2's).
    pub fn as_gc_report(&self) -> GcReport {
        let mut r = GcReport::default();
        if let Some(f) = &self.fossilized {
            r.manifests_dropped = f.manifests_dropped;
            r.blocks_examined = f.blocks_examined;
        }
        if let Some(s) = &self.swept {
            r.blocks_deleted = s.blocks_deleted;
            r.bytes_freed = s.bytes_freed;
        }
        r
    }
}

impl Cloud {
    /// Garbage-collects one region's block store, keeping the blocks of uploads in
    /// progress (recorded in the catalog). On a node of a node cluster this is one step
    /// of the fossil collection ([`Cloud::gc_cluster_step`]).
    pub fn gc_region(&self, region: &str) -> Result<GcReport, Ec2Error> {
        if self.node.is_some() {
            return Ok(self.gc_cluster_step(region)?.as_gc_report());
        }
        let storage = self.region(region)?;
        gc_with_uploads(&self.catalog, &storage.store).map_err(|e| Ec2Error::internal("gc", e))
    }

    /// One step of the fossil collection of a region's shared store (a node only): under
    /// the region's GC lock, sweeps the pending collection if its grace period is over
    /// and every lease it waits for has ended, then starts a new one.
    pub fn gc_cluster_step(&self, region: &str) -> Result<ClusterGcReport, Ec2Error> {
        let book = self
            .leases
            .as_ref()
            .ok_or_else(|| Ec2Error::internal("gc", "not a node of a node cluster"))?;
        if self.is_fenced() {
            return Err(Ec2Error::internal("gc", "this node is fenced"));
        }
        // This process's own name for the lock: a fenced process and its replacement
        // (same node id) never both hold it.
        let holder = book.gc_holder.as_str();
        let store = &self.region(region)?.store;
        let catalog = &self.catalog;
        let fail = |e: &dyn std::fmt::Display| Ec2Error::internal("gc", e);
        let roots = || upload_roots(catalog);
        let mut report = ClusterGcReport::default();
        let pending = match catalog
            .gc_lock(region, holder, catalog::now_ms(), ms(LOCK_TTL))
            .map_err(|e| fail(&e))?
        {
            GcLock::Busy { holder, .. } => {
                report.busy = Some(holder);
                return Ok(report);
            }
            GcLock::Held(pending) => pending,
        };
        // The hold is renewed every LOCK_RENEW while a phase moves or deletes blocks; the
        // phase stops once another holder took the lock, the node was fenced, or the hold
        // could not be renewed for so long that it may have run out.
        let held_since = Mutex::new(Instant::now());
        let keep_going = || -> bool {
            if self.is_fenced() {
                return false;
            }
            let mut since = lock(&held_since);
            if since.elapsed() < LOCK_RENEW {
                return true;
            }
            let started = Instant::now();
            match catalog.gc_lock(region, holder, catalog::now_ms(), ms(LOCK_TTL)) {
                Ok(GcLock::Held(_)) => {
                    *since = started;
                    true
                }
                Ok(GcLock::Busy { .. }) => false,
                Err(e) => {
                    tracing::warn!(region, error = %e, "renewing the GC lock");
                    since.elapsed() < LOCK_TTL - LOCK_MARGIN
                }
            }
        };
        let outcome = (|| -> Result<(), Ec2Error> {
            let set = |c: Option<&GcCollection>| -> Result<(), Ec2Error> {
                if catalog
                    .gc_set_collection(region, holder, c)
                    .map_err(|e| fail(&e))?
                {
                    Ok(())
                } else {
                    Err(fail(&"lost the GC lock"))
                }
            };
            let live = || {
                catalog
                    .gc_live_leases(region, catalog::now_ms())
                    .map_err(|e| fail(&e))
            };
            if let Some(mut c) = pending {
                if !c.complete {
                    // Its maker died while making fossils: every session that may have
                    // seen a block before it moved is live now or has ended.
                    c = GcCollection {
                        started_ms: catalog::now_ms(),
                        waits_for: live()?,
                        complete: true,
                    };
                    set(Some(&c))?;
                }
                let now = catalog::now_ms();
                let live_now: HashSet<String> = live()?.into_iter().collect();
                if now < c.started_ms.saturating_add(ms(self.gc_grace))
                    || c.waits_for.iter().any(|l| live_now.contains(l))
                {
                    report.waiting = true;
                    return Ok(());
                }
                report.swept = Some(
                    store
                        .sweep_fossils(&roots, &keep_going)
                        .map_err(|e| fail(&e))?,
                );
                set(None)?;
            }
            set(Some(&GcCollection {
                started_ms: catalog::now_ms(),
                waits_for: Vec::new(),
                complete: false,
            }))?;
            let made = store.fossilize(&roots, &keep_going).map_err(|e| fail(&e))?;
            if made.fossilized == 0 {
                set(None)?;
            } else {
                set(Some(&GcCollection {
                    started_ms: catalog::now_ms(),
                    waits_for: live()?,
                    complete: true,
                }))?;
            }
            report.fossilized = Some(made);
            Ok(())
        })();
        if let Err(e) = catalog.gc_unlock(region, holder) {
            tracing::warn!(region, error = %e, "releasing the GC lock (it will expire)");
        }
        outcome?;
        tracing::info!(region, ?report, "cluster gc step");
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
