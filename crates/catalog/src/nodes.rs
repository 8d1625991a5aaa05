//! The nodes of a node cluster (`openami serve --node-id N --zone Z[,Z…]`): which
//! openami process owns which availability zones, and when each last said it was alive.
//!
//! ```text
//! nodes(node_id PK, started_ms, heartbeat_ms)
//! node_zones(zone PK, node_id)        one owner per zone, enforced by the key
//! shared_secrets(name PK, value, created_ms)   keys every node must agree on
//! ```
//!
//! [`Catalog::register_node`] claims a node's zones in one transaction (serialised with
//! every other claim: SQLite's write lock, a PostgreSQL advisory lock), so two nodes
//! starting together never both own a zone. A zone owned by another node whose heartbeat
//! is fresh (at or after `stale_before_ms`) refuses the claim and changes nothing; one
//! whose owner is stale is taken over. The engine decides what "fresh" means and what a
//! stale zone's state is; the catalog only stores the rows. The tables have no change
//! trigger (PostgreSQL): heartbeats are written every few seconds by every node, and no
//! cache depends on them.

use crate::{Backend, Catalog, CatalogError, dispatch};

/// A node and the zones it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    /// The operator's name of the node (`--node-id`).
    pub node_id: String,
    /// Zones it owns, sorted.
    pub zones: Vec<String>,
    /// When it last registered (started).
    pub started_ms: i64,
    /// When it last said it was alive.
    pub heartbeat_ms: i64,
}

/// How [`Catalog::register_node`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneClaim {
    /// The node owns exactly the zones it asked for; `taken_over` lists (zone, previous
    /// owner) for zones taken from stale nodes.
    Claimed {
        /// Zones taken from nodes whose heartbeat was stale.
        taken_over: Vec<(String, String)>,
    },
    /// `zone` is owned by `node_id`, whose heartbeat (at `heartbeat_ms`) is fresh.
    /// Nothing was written.
    Refused {
        /// The first zone (in the order asked) that is taken.
        zone: String,
        /// Its owner.
        node_id: String,
        /// The owner's last heartbeat.
        heartbeat_ms: i64,
    },
}

impl Catalog {
    /// Registers (or re-registers, after a restart) node `node_id` as the owner of
    /// exactly `zones` at time `now_ms`: its `started_ms` and `heartbeat_ms` become
    /// `now_ms`, zones it owned before and no longer lists are released. Refused if
    /// another node owns one of the zones and its heartbeat is at or after
    /// `stale_before_ms`; zones of other, stale nodes are taken over.
    pub fn register_node(
        &self,
        node_id: &str,
        zones: &[String],
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<ZoneClaim, CatalogError> {
        dispatch!(self.register_node(node_id, zones, now_ms, stale_before_ms))
    }

    /// Records that `node_id` is alive at `now_ms` (never moving its heartbeat back).
    /// False if there is no such node.
    pub fn node_heartbeat(&self, node_id: &str, now_ms: i64) -> Result<bool, CatalogError> {
        dispatch!(self.node_heartbeat(node_id, now_ms))
    }

    /// Every node with its zones, by node id.
    pub fn nodes(&self) -> Result<Vec<NodeRow>, CatalogError> {
        dispatch!(self.nodes())
    }

    /// The secret `name` that every node sharing this catalog uses (e.g. the key that signs
    /// EBS direct block tokens, so a token one node made is good on another): `candidate`
    /// is stored if there is none yet, and whichever value was stored first is returned.
    pub fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, CatalogError> {
        dispatch!(self.shared_secret(name, candidate))
    }
}

/// Groups (node, started, heartbeat, zone-or-none) rows, sorted by node then zone,
/// into [`NodeRow`]s.
pub(crate) fn group(rows: Vec<(String, i64, i64, Option<String>)>) -> Vec<NodeRow> {
    let mut out: Vec<NodeRow> = Vec::new();
    for (node_id, started_ms, heartbeat_ms, zone) in rows {
        if out.last().is_none_or(|n| n.node_id != node_id) {
            out.push(NodeRow {
                node_id,
                zones: Vec::new(),
                started_ms,
                heartbeat_ms,
            });
        }
        if let (Some(zone), Some(last)) = (zone, out.last_mut()) {
            last.zones.push(zone);
        }
    }
    out
}
