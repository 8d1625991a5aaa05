//! Nodes: one openami process per set of availability zones (`openami serve --node-id N
//! --zone Z[,Z…]`), all sharing one regional catalog (PostgreSQL).
//!
//! A node owns the volumes and instances of its zones (their data is on its disk, their
//! machines are its processes) and the snapshots and images whose work it started.
//! Without `--node-id` there is no node: the process owns every zone, as the embedded
//! default always did, and nothing here changes its behaviour.
//!
//! * **Claiming zones.** At start, before recovery, a node registers in the catalog's
//!   `nodes`/`node_zones` tables ([`catalog::Catalog::register_node`], one transaction
//!   serialised with every other claim). A zone owned by another node whose heartbeat is
//!   younger than [`IMPAIRED_AFTER_MS`] refuses the start ([`NodeError::ZoneTaken`], one
//!   line); a zone whose owner has been silent longer is taken over (logged). A node may
//!   always re-register its own zones (a restart). A process without `--node-id` refuses
//!   to start on a catalog that live nodes serve ([`NodeError::ClusterWithoutNode`]):
//!   it would recover their resources as its own.
//! * **Heartbeats.** [`Cloud::start_heartbeats`] writes the node's heartbeat every
//!   [`HEARTBEAT_INTERVAL`]. Each heartbeat also renews the node's GC write leases (see
//!   `gc`), re-applies the port forwards of its running instances when another node
//!   changed the catalog (security group rules), and checks that the node is still itself:
//! * **Fencing.** A node whose zone another node took over (it had been silent too long),
//!   or whose node id a newer process registered (its `started_ms` changed), is fenced:
//!   [`Cloud::fenced`] says why, it owns no zone any more (work goes to the real owners)
//!   and the server stops. A restarted node is the newer process, so it carries on.
//! * **Zone states** (DescribeAvailabilityZones, [`ZoneState`]): `available` while the
//!   owner's heartbeat is fresh, `impaired` once it is older than [`IMPAIRED_AFTER_MS`],
//!   `unavailable` when no node owns the zone. Without nodes every zone is `available`.
//! * **Placement.** CreateVolume and RunInstances into a zone this node does not own
//!   answer at once, never waiting: the owner is down → `InsufficientVolumeCapacity` /
//!   `InsufficientInstanceCapacity`; no owner → `Unsupported`; the owner is alive →
//!   `Unsupported` naming the node to ask. (The API hands requests about another live
//!   node's zone to that node before they get here, see [`crate::handoff`]; what still
//!   arrives is work it cannot route, e.g. a zone that only a launch template names, or
//!   Auto Scaling launching through this node.)
//! * **Recovery** reconciles only what the node owns (see the `recovery` module doc).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use catalog::{Catalog, CatalogError, NodeRow, ResourceRow, ZoneClaim, now_ms};

use crate::{Cloud, Ec2Error, Ec2Result, lock, regions};

/// How often a node writes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// A heartbeat older than this (ms) makes its node's zones `impaired`, and lets another
/// node take them over.
pub const IMPAIRED_AFTER_MS: i64 = 10_000;

/// Who this process is in a node cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The operator's name of the node.
    pub id: String,
    /// The zones it owns (each a zone of a served region), sorted, no duplicates.
    pub zones: Vec<String>,
}

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node id is not a short name.
    #[error("invalid node id {0:?}: 1-64 letters, digits, '.', '_' or '-'")]
    BadId(String),
    /// A zone is not one of the served regions'.
    #[error("--zone {zone}: not an availability zone of the served regions ({regions})")]
    BadZone {
        /// The zone given.
        zone: String,
        /// The served regions.
        regions: String,
    },
    /// `--zone` named nothing.
    #[error("--zone: at least one availability zone is needed")]
    NoZones,
    /// Another live node owns a zone.
    #[error(
        "zone {zone} is owned by node {owner}, which is alive (last heartbeat {age_ms} ms ago): stop it or choose other zones (a node's zones can be taken over once it has been silent for {} s)",
        IMPAIRED_AFTER_MS / 1000
    )]
    ZoneTaken {
        /// The zone.
        zone: String,
        /// Its owner.
        owner: String,
        /// How old the owner's heartbeat is.
        age_ms: i64,
    },
    /// The catalog is served by nodes, and this process has no node identity.
    #[error(
        "this catalog is served by openami nodes ({0}): start this server with --node-id and --zone too"
    )]
    ClusterWithoutNode(String),
    /// The catalog failed.
    #[error("registering the node: {0}")]
    Catalog(#[from] CatalogError),
}

impl NodeConfig {
    /// Checks a node id and its zones against the served regions.
    pub fn new(id: &str, zones: &[String], served: &[String]) -> Result<Self, NodeError> {
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(NodeError::BadId(id.to_string()));
        }
        let mut out = Vec::new();
        for zone in zones.iter().map(|z| z.trim()).filter(|z| !z.is_empty()) {
            let known = served
                .iter()
                .any(|r| regions::zones(r).iter().any(|z| z.name == zone));
            if !known {
                return Err(NodeError::BadZone {
                    zone: zone.to_string(),
                    regions: served.join(","),
                });
            }
            out.push(zone.to_string());
        }
        if out.is_empty() {
            return Err(NodeError::NoZones);
        }
        out.sort();
        out.dedup();
        Ok(NodeConfig {
            id: id.to_string(),
            zones: out,
        })
    }
}

/// A zone's state as DescribeAvailabilityZones reports it (AWS's `ZoneState` values
/// `available`, `impaired`, `unavailable`; `information` and `constrained` are not used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    /// Served by a live node (or no nodes at all).
    Available,
    /// Its node has not sent a heartbeat for [`IMPAIRED_AFTER_MS`].
    Impaired,
    /// No node serves it.
    Unavailable,
}

impl ZoneState {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneState::Available => "available",
            ZoneState::Impaired => "impaired",
            ZoneState::Unavailable => "unavailable",
        }
    }
}

/// Who serves a zone, seen from one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ZoneOwner {
    /// This process (always so without nodes).
    Me,
    /// Another node, alive.
    Alive(String),
    /// Another node, silent for `age_ms`.
    Down { node: String, age_ms: i64 },
    /// No node.
    Nobody,
}

/// Registers `node` as the owner of its zones (before recovery), or, without a node,
/// checks that no live node serves this catalog. Returns the registration's time (its
/// `started_ms`, which tells this process from another registering the same node id).
pub(crate) fn claim(catalog: &Catalog, node: Option<&NodeConfig>) -> Result<i64, NodeError> {
    let now = now_ms();
    let Some(node) = node else {
        let live: Vec<String> = catalog
            .nodes()?
            .into_iter()
            .filter(|n| !n.zones.is_empty() && now - n.heartbeat_ms <= IMPAIRED_AFTER_MS)
            .map(|n| n.node_id)
            .collect();
        if live.is_empty() {
            return Ok(now);
        }
        return Err(NodeError::ClusterWithoutNode(live.join(", ")));
    };
    match catalog.register_node(&node.id, &node.zones, now, now - IMPAIRED_AFTER_MS)? {
        ZoneClaim::Claimed { taken_over } => {
            for (zone, from) in taken_over {
                tracing::warn!(%zone, %from, node = %node.id, "took over a zone whose node stopped sending heartbeats");
            }
            tracing::info!(node = %node.id, zones = ?node.zones, "node registered");
            Ok(now)
        }
        ZoneClaim::Refused {
            zone,
            node_id,
            heartbeat_ms,
        } => Err(NodeError::ZoneTaken {
            zone,
            owner: node_id,
            age_ms: (now - heartbeat_ms).max(0),
        }),
    }
}

/// What kind of resource a placement check is for (it picks the capacity error code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placing {
    Volume,
    Instance,
}

impl Cloud {
    /// This process's node identity (`None`: no node cluster, every zone is ours).
    pub fn node(&self) -> Option<&NodeConfig> {
        self.node.as_ref()
    }

    /// True if this process owns `zone` (always without nodes).
    /// A fenced node owns nothing any more.
    pub(crate) fn owns_zone(&self, zone: &str) -> bool {
        match &self.node {
            None => true,
            Some(n) => n.zones.iter().any(|z| z == zone) && !self.is_fenced(),
        }
    }

    /// True if this process runs the region-wide controllers (Auto Scaling's): always
    /// without nodes; in a node cluster, only the live node with the lowest node id (its
    /// heartbeat fresh, not fenced), so that one controller acts on each group and two nodes
    /// never both launch for the same shortfall. When that node stops heartbeating the next
    /// takes over after [`IMPAIRED_AFTER_MS`]. Decided by each heartbeat from the rows it
    /// reads anyway (so not before a node's first heartbeat).
    pub fn leads(&self) -> bool {
        self.node.is_none() || (self.leader.load(Ordering::Relaxed) && !self.is_fenced())
    }

    /// Why this node was fenced, if it was: another process registered its node id, or
    /// another node took over one of its zones (it had been silent too long). A fenced
    /// node works on nothing of its zones any more (requests go to the zones' owners) and
    /// the server stops.
    pub fn fenced(&self) -> Option<String> {
        lock(&self.fence).clone()
    }

    pub(crate) fn is_fenced(&self) -> bool {
        lock(&self.fence).is_some()
    }

    fn fence(&self, reason: String) {
        tracing::error!(reason, "this node is fenced: it stops working on its zones");
        *lock(&self.fence) = Some(reason);
    }

    /// The zone a launch without a zone or subnet goes to: this node's first zone in
    /// `region`, else `<region>a`.
    pub(crate) fn default_zone(&self, region: &str) -> String {
        self.node
            .as_ref()
            .and_then(|n| n.zones.iter().find(|z| regions::zone_region(z) == region))
            .cloned()
            .unwrap_or_else(|| format!("{region}a"))
    }

    /// Who serves each of `zones`, from one read of the catalog's nodes.
    pub(crate) fn zone_owners(&self, zones: &[&str]) -> Ec2Result<Vec<ZoneOwner>> {
        if self.node.is_none() {
            return Ok(zones.iter().map(|_| ZoneOwner::Me).collect());
        }
        let nodes: Vec<NodeRow> = self.catalog.nodes()?;
        let now = now_ms();
        Ok(zones
            .iter()
            .map(|zone| {
                if self.owns_zone(zone) {
                    return ZoneOwner::Me;
                }
                match nodes.iter().find(|n| n.zones.iter().any(|z| z == zone)) {
                    None => ZoneOwner::Nobody,
                    Some(n) if now - n.heartbeat_ms > IMPAIRED_AFTER_MS => ZoneOwner::Down {
                        node: n.node_id.clone(),
                        age_ms: now - n.heartbeat_ms,
                    },
                    Some(n) => ZoneOwner::Alive(n.node_id.clone()),
                }
            })
            .collect())
    }

    /// A zone's state and, when it is not available, a message saying why.
    pub(crate) fn zone_state(owner: &ZoneOwner) -> (ZoneState, Option<String>) {
        match owner {
            ZoneOwner::Me | ZoneOwner::Alive(_) => (ZoneState::Available, None),
            ZoneOwner::Down { node, age_ms } => (
                ZoneState::Impaired,
                Some(format!(
                    "The openami node {node} serving this zone has not reported for {} s.",
                    age_ms / 1000
                )),
            ),
            ZoneOwner::Nobody => (
                ZoneState::Unavailable,
                Some("No openami node serves this zone.".to_string()),
            ),
        }
    }

    /// Refuses, at once, to place a new volume or instance in a zone this node does not
    /// own (see the module doc for the codes).
    pub(crate) fn check_placement(&self, zone: &str, placing: Placing) -> Ec2Result<()> {
        let owner = self.zone_owners(&[zone])?.pop().unwrap_or(ZoneOwner::Me);
        let me = self.node.as_ref().map_or("", |n| n.id.as_str());
        match owner {
            ZoneOwner::Me => Ok(()),
            ZoneOwner::Down { node, age_ms } => Err(match placing {
                Placing::Instance => Ec2Error {
                    code: "InsufficientInstanceCapacity".into(),
                    message: format!(
                        "We currently do not have sufficient capacity in the Availability Zone you requested ({zone}): its node {node} has not reported for {} s. Try another Availability Zone.",
                        age_ms / 1000
                    ),
                    status: 500,
                },
                Placing::Volume => Ec2Error {
                    code: "InsufficientVolumeCapacity".into(),
                    message: format!(
                        "There is not enough capacity to fulfill your EBS volume request in {zone}: its node {node} has not reported for {} s. Try another Availability Zone.",
                        age_ms / 1000
                    ),
                    status: 503,
                },
            }),
            ZoneOwner::Nobody => Err(Ec2Error::client(
                "Unsupported",
                format!("The Availability Zone {zone} is not served by any openami node."),
            )),
            ZoneOwner::Alive(node) => Err(Ec2Error::client(
                "Unsupported",
                format!(
                    "The Availability Zone {zone} is served by openami node {node}; this node ({me}) cannot hand this request over to it. Send the request to node {node}, or name the zone in the request."
                ),
            )),
        }
    }

    /// True if this process recovers volume `row`: its zone is ours.
    pub(crate) fn owns_volume_row(&self, row: &ResourceRow) -> Ec2Result<bool> {
        if self.node.is_none() {
            return Ok(true);
        }
        let doc: crate::volumes::VolumeDoc =
            serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("volume document", e))?;
        Ok(self.owns_zone(&doc.availability_zone))
    }

    /// True if this process recovers instance `row`: its zone is ours.
    pub(crate) fn owns_instance_row(&self, row: &ResourceRow) -> Ec2Result<bool> {
        if self.node.is_none() {
            return Ok(true);
        }
        Ok(self.owns_zone(&crate::instances::doc_of(row)?.availability_zone))
    }

    /// True if this process recovers snapshot `row`: this node started its work, or
    /// (a snapshot recorded before nodes) it was taken from a volume of our zones.
    pub(crate) fn owns_snapshot_row(&self, row: &ResourceRow) -> Ec2Result<bool> {
        let Some(node) = &self.node else {
            return Ok(true);
        };
        let doc = crate::snapshots::doc_of(row)?;
        if let Some(owner) = &doc.node {
            return Ok(*owner == node.id);
        }
        match self.catalog.resource(&doc.volume_id)? {
            Some(volume) if volume.kind == crate::volumes::KIND => self.owns_volume_row(&volume),
            _ => Ok(false),
        }
    }

    /// Writes this node's heartbeat now (nothing without a node). If the node's row is
    /// gone (a catalog restored from backup), it registers again.
    pub fn heartbeat(&self) -> Result<(), NodeError> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        if self.is_fenced() {
            return Ok(());
        }
        if !self.catalog.node_heartbeat(&node.id, now_ms())? {
            tracing::warn!(node = %node.id, "node row missing: registering again");
            let at = claim(&self.catalog, Some(node))?;
            self.registered_ms.store(at, Ordering::Relaxed);
        }
        // Leases first: they guard other nodes' GC, so nothing below may delay or skip them.
        if let Some(book) = &self.leases {
            book.renew(&self.catalog)?;
        }
        // Still us, still our zones? Otherwise stop: someone else does our work now.
        let rows = self.catalog.nodes()?;
        if let Some(row) = rows.iter().find(|r| r.node_id == node.id) {
            if row.started_ms != self.registered_ms.load(Ordering::Relaxed) {
                self.fence(format!(
                    "another process registered as node {} (at {} ms); this one stops",
                    node.id, row.started_ms
                ));
                return Ok(());
            }
            let lost: Vec<&String> = node
                .zones
                .iter()
                .filter(|z| !row.zones.contains(z))
                .collect();
            if !lost.is_empty() {
                let owners: Vec<String> = lost
                    .iter()
                    .map(|z| {
                        let owner = rows.iter().find(|r| r.zones.contains(z));
                        format!("{z} → {}", owner.map_or("nobody", |r| r.node_id.as_str()))
                    })
                    .collect();
                self.fence(format!(
                    "node {} lost zones it had been silent too long for: {}",
                    node.id,
                    owners.join(", ")
                ));
                return Ok(());
            }
        }
        // The leader: the live node with the lowest id (see `leads`).
        let now = now_ms();
        let leader = rows
            .iter()
            .filter(|n| !n.zones.is_empty() && now - n.heartbeat_ms <= IMPAIRED_AFTER_MS)
            .map(|n| n.node_id.as_str())
            .min();
        self.leader
            .store(leader == Some(node.id.as_str()), Ordering::Relaxed);
        // Another node changed the catalog (a security group's rules, perhaps): the port
        // forwards of this node's running instances follow within a heartbeat.
        let version = self.catalog.data_version()?;
        if self.seen_version.swap(version, Ordering::Relaxed) != version {
            self.refresh_forwards_of_groups(&[]);
        }
        Ok(())
    }

    /// Starts the heartbeat thread (a node only): every [`HEARTBEAT_INTERVAL`] until the
    /// cloud shuts down. A failed heartbeat is logged; the next one tries again.
    pub fn start_heartbeats(self: &Arc<Self>) {
        if self.node.is_none() {
            return;
        }
        let weak: Weak<Cloud> = Arc::downgrade(self);
        self.spawn_worker("node heartbeat".into(), move || {
            let mut next = Instant::now() + HEARTBEAT_INTERVAL;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let Some(cloud) = weak.upgrade() else { return };
                if cloud.is_shutting_down() {
                    return;
                }
                if Instant::now() < next {
                    continue;
                }
                next = Instant::now() + HEARTBEAT_INTERVAL;
                if let Err(e) = cloud.heartbeat() {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
