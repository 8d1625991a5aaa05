//! PostgreSQL storage of cluster nodes and their zones (see `crate::nodes`).

use super::{Postgres, classify};
use crate::nodes::{ZoneClaim, group};
use crate::{CatalogError, NodeRow};

/// The `pg_advisory_xact_lock` key zone claims hold ("nodes" in ASCII).
const CLAIM_LOCK: i64 = 0x6e_6f64_6573;

/// Nodes and the zones they own (no change trigger: heartbeats are frequent and
/// nothing caches these rows).
pub(crate) const MIGRATION_7: &str = r#"
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
CREATE TABLE node_zones (
    zone TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes(node_id)
);
"#;

/// Secrets every node of a cluster shares.
pub(crate) const MIGRATION_10: &str = r#"
CREATE TABLE shared_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);
"#;

impl Postgres {
    pub(crate) fn shared_secret(
        &self,
        name: &str,
        candidate: &[u8],
    ) -> Result<Vec<u8>, CatalogError> {
        let (name, candidate) = (name.to_string(), candidate.to_vec());
        self.call(move |c| {
            c.execute(
                "INSERT INTO shared_secrets (name, value, created_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate, &crate::now_ms()],
            )
            .map_err(classify)?;
            c.query_one("SELECT value FROM shared_secrets WHERE name = $1", &[&name])
                .map_err(classify)?
                .try_get(0)
                .map_err(classify)
        })
    }

    pub(crate) fn register_node(
        &self,
        node_id: &str,
        zones: &[String],
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<ZoneClaim, CatalogError> {
        let node_id = node_id.to_string();
        let zones = zones.to_vec();
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            // Claims serialise: the second of two nodes starting together sees the first's.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
                .map_err(classify)?;
            let mut taken_over = Vec::new();
            for zone in &zones {
                let owner = tx
                    .query_opt(
                        "SELECT z.node_id, n.heartbeat_ms FROM node_zones z \
                         JOIN nodes n ON n.node_id = z.node_id WHERE z.zone = $1",
                        &[zone],
                    )
                    .map_err(classify)?;
                let Some(owner) = owner else { continue };
                let owner_id: String = owner.try_get(0).map_err(classify)?;
                let heartbeat_ms: i64 = owner.try_get(1).map_err(classify)?;
                if owner_id == node_id {
                    continue;
                }
                if heartbeat_ms >= stale_before_ms {
                    // Dropping the transaction rolls it back: nothing was written.
                    return Ok(ZoneClaim::Refused {
                        zone: zone.clone(),
                        node_id: owner_id,
                        heartbeat_ms,
                    });
                }
                taken_over.push((zone.clone(), owner_id));
            }
            tx.execute(
                "INSERT INTO nodes (node_id, started_ms, heartbeat_ms) VALUES ($1, $2, $2) \
                 ON CONFLICT (node_id) DO UPDATE SET started_ms = $2, heartbeat_ms = $2",
                &[&node_id, &now_ms],
            )
            .map_err(classify)?;
            tx.execute("DELETE FROM node_zones WHERE node_id = $1", &[&node_id])
                .map_err(classify)?;
            for zone in &zones {
                tx.execute(
                    "INSERT INTO node_zones (zone, node_id) VALUES ($1, $2) \
                     ON CONFLICT (zone) DO UPDATE SET node_id = $2",
                    &[zone, &node_id],
                )
                .map_err(classify)?;
            }
            tx.commit().map_err(classify)?;
            Ok(ZoneClaim::Claimed { taken_over })
        })
    }

    pub(crate) fn node_heartbeat(&self, node_id: &str, now_ms: i64) -> Result<bool, CatalogError> {
        let node_id = node_id.to_string();
        self.call(move |c| {
            let n = c
                .execute(
                    "UPDATE nodes SET heartbeat_ms = GREATEST(heartbeat_ms, $2) WHERE node_id = $1",
                    &[&node_id, &now_ms],
                )
                .map_err(classify)?;
            Ok(n > 0)
        })
    }

    pub(crate) fn nodes(&self) -> Result<Vec<NodeRow>, CatalogError> {
        self.call(|c| {
            let rows = c
                .query(
                    "SELECT n.node_id, n.started_ms, n.heartbeat_ms, z.zone FROM nodes n \
                     LEFT JOIN node_zones z ON z.node_id = n.node_id \
                     ORDER BY n.node_id, z.zone",
                    &[],
                )
                .map_err(classify)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((
                    r.try_get(0).map_err(classify)?,
                    r.try_get(1).map_err(classify)?,
                    r.try_get(2).map_err(classify)?,
                    r.try_get(3).map_err(classify)?,
                ));
            }
            Ok(group(out))
        })
    }
}
