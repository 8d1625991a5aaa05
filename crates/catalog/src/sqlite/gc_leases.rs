//! SQLite storage of GC leases and collection state (see `crate::gc_leases`).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Sqlite;
use crate::CatalogError;
use crate::gc_leases::{GcCollection, GcLock};

/// Write leases and each region's GC lock and collection.
pub(crate) const MIGRATION_9: &str = r#"
CREATE TABLE gc_leases (
    lease_id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    node_id TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX gc_leases_by_region ON gc_leases(region);
CREATE TABLE gc_state (
    region TEXT PRIMARY KEY,
    holder TEXT,
    holder_expires_ms INTEGER NOT NULL DEFAULT 0,
    collection_ms INTEGER,
    waits_for TEXT NOT NULL DEFAULT '',
    complete INTEGER NOT NULL DEFAULT 0
);
"#;

/// holder, holder_expires_ms, collection_ms, waits_for, complete
type StateRow = (Option<String>, i64, Option<i64>, String, bool);

impl Sqlite {
    pub(crate) fn gc_lease_acquire(
        &self,
        lease_id: &str,
        region: &str,
        node_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT INTO gc_leases (lease_id, region, node_id, started_ms, expires_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease_id, region, node_id, now_ms, now_ms + ttl_ms],
        )?;
        Ok(())
    }

    pub(crate) fn gc_lease_renew(
        &self,
        lease_ids: &[String],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut renewed = Vec::new();
        for id in lease_ids {
            let n = tx.execute(
                "UPDATE gc_leases SET expires_ms = max(expires_ms, ?3) \
                 WHERE lease_id = ?1 AND expires_ms > ?2",
                params![id, now_ms, now_ms + ttl_ms],
            )?;
            if n == 1 {
                renewed.push(id.clone());
            }
        }
        tx.commit()?;
        Ok(renewed)
    }

    pub(crate) fn gc_lease_release(&self, lease_id: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "DELETE FROM gc_leases WHERE lease_id = ?1",
            params![lease_id],
        )?;
        Ok(())
    }

    pub(crate) fn gc_live_leases(
        &self,
        region: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT lease_id FROM gc_leases WHERE region = ?1 AND expires_ms > ?2 \
             ORDER BY lease_id",
        )?;
        let rows = stmt.query_map(params![region, now_ms], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn gc_lock(
        &self,
        region: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<GcLock, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<StateRow> = tx
            .query_row(
                "SELECT holder, holder_expires_ms, collection_ms, waits_for, complete \
                 FROM gc_state WHERE region = ?1",
                params![region],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let collection = match row {
            Some((Some(other), expires_ms, ..)) if other != holder && expires_ms > now_ms => {
                return Ok(GcLock::Busy {
                    holder: other,
                    expires_ms,
                });
            }
            Some((_, _, started, waits_for, complete)) => {
                GcCollection::from_columns(started, &waits_for, complete)
            }
            None => None,
        };
        tx.execute(
            "INSERT INTO gc_state (region, holder, holder_expires_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (region) DO UPDATE SET holder = ?2, holder_expires_ms = ?3",
            params![region, holder, now_ms + ttl_ms],
        )?;
        tx.execute(
            "DELETE FROM gc_leases WHERE region = ?1 AND expires_ms < ?2",
            params![region, now_ms - ttl_ms],
        )?;
        tx.commit()?;
        Ok(GcLock::Held(collection))
    }

    pub(crate) fn gc_set_collection(
        &self,
        region: &str,
        holder: &str,
        collection: Option<&GcCollection>,
    ) -> Result<bool, CatalogError> {
        let (started, waits_for, complete) = match collection {
            Some(c) => (Some(c.started_ms), c.waits_for_text(), c.complete),
            None => (None, String::new(), false),
        };
        let n = self.conn().execute(
            "UPDATE gc_state SET collection_ms = ?3, waits_for = ?4, complete = ?5 \
             WHERE region = ?1 AND holder = ?2",
            params![region, holder, started, waits_for, complete],
        )?;
        Ok(n == 1)
    }

    pub(crate) fn gc_unlock(&self, region: &str, holder: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE gc_state SET holder = NULL, holder_expires_ms = 0 \
             WHERE region = ?1 AND holder = ?2",
            params![region, holder],
        )?;
        Ok(())
    }
}
