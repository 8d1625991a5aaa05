//! SQLite storage of cluster nodes and their zones (see `crate::nodes`).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Sqlite;
use crate::nodes::{ZoneClaim, group};
use crate::{CatalogError, NodeRow};

/// Nodes and the zones they own.
pub(crate) const MIGRATION_7: &str = r#"
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL
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
    value BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
"#;

impl Sqlite {
    pub(crate) fn shared_secret(
        &self,
        name: &str,
        candidate: &[u8],
    ) -> Result<Vec<u8>, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO shared_secrets (name, value, created_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
            params![name, candidate, crate::now_ms()],
        )?;
        Ok(conn.query_row(
            "SELECT value FROM shared_secrets WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?)
    }

    pub(crate) fn register_node(
        &self,
        node_id: &str,
        zones: &[String],
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<ZoneClaim, CatalogError> {
        let mut conn = self.conn();
        // IMMEDIATE: the write lock from the start, so concurrent claims serialise.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut taken_over = Vec::new();
        for zone in zones {
            let owner: Option<(String, i64)> = tx
                .query_row(
                    "SELECT z.node_id, n.heartbeat_ms FROM node_zones z \
                     JOIN nodes n ON n.node_id = z.node_id WHERE z.zone = ?1",
                    params![zone],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match owner {
                Some((owner, heartbeat_ms)) if owner != node_id => {
                    if heartbeat_ms >= stale_before_ms {
                        // Dropping the transaction rolls it back: nothing was written.
                        return Ok(ZoneClaim::Refused {
                            zone: zone.clone(),
                            node_id: owner,
                            heartbeat_ms,
                        });
                    }
                    taken_over.push((zone.clone(), owner));
                }
                _ => {}
            }
        }
        tx.execute(
            "INSERT INTO nodes (node_id, started_ms, heartbeat_ms) VALUES (?1, ?2, ?2) \
             ON CONFLICT (node_id) DO UPDATE SET started_ms = ?2, heartbeat_ms = ?2",
            params![node_id, now_ms],
        )?;
        tx.execute(
            "DELETE FROM node_zones WHERE node_id = ?1",
            params![node_id],
        )?;
        for zone in zones {
            tx.execute(
                "INSERT INTO node_zones (zone, node_id) VALUES (?1, ?2) \
                 ON CONFLICT (zone) DO UPDATE SET node_id = ?2",
                params![zone, node_id],
            )?;
        }
        tx.commit()?;
        Ok(ZoneClaim::Claimed { taken_over })
    }

    pub(crate) fn node_heartbeat(&self, node_id: &str, now_ms: i64) -> Result<bool, CatalogError> {
        let n = self.conn().execute(
            "UPDATE nodes SET heartbeat_ms = max(heartbeat_ms, ?2) WHERE node_id = ?1",
            params![node_id, now_ms],
        )?;
        Ok(n > 0)
    }

    pub(crate) fn nodes(&self) -> Result<Vec<NodeRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT n.node_id, n.started_ms, n.heartbeat_ms, z.zone FROM nodes n \
             LEFT JOIN node_zones z ON z.node_id = n.node_id ORDER BY n.node_id, z.zone",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(group(rows))
    }
}
