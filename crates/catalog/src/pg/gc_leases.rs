//! PostgreSQL storage of GC leases and collection state (see `crate::gc_leases`).

use super::{Postgres, classify};
use crate::CatalogError;
use crate::gc_leases::{GcCollection, GcLock};

/// Write leases and each region's GC lock and collection (no change trigger: leases are
/// written often and nothing caches them).
pub(crate) const MIGRATION_9: &str = r#"
CREATE TABLE gc_leases (
    lease_id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    node_id TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX gc_leases_by_region ON gc_leases(region);
CREATE TABLE gc_state (
    region TEXT PRIMARY KEY,
    holder TEXT,
    holder_expires_ms BIGINT NOT NULL DEFAULT 0,
    collection_ms BIGINT,
    waits_for TEXT NOT NULL DEFAULT '',
    complete BOOLEAN NOT NULL DEFAULT FALSE
);
"#;

impl Postgres {
    pub(crate) fn gc_lease_acquire(
        &self,
        lease_id: &str,
        region: &str,
        node_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(), CatalogError> {
        let (lease_id, region, node_id) = (
            lease_id.to_string(),
            region.to_string(),
            node_id.to_string(),
        );
        self.call(move |c| {
            c.execute(
                "INSERT INTO gc_leases (lease_id, region, node_id, started_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&lease_id, &region, &node_id, &now_ms, &(now_ms + ttl_ms)],
            )
            .map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn gc_lease_renew(
        &self,
        lease_ids: &[String],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let lease_ids = lease_ids.to_vec();
        self.call(move |c| {
            c.query(
                "UPDATE gc_leases SET expires_ms = GREATEST(expires_ms, $3) \
                 WHERE lease_id = ANY($1) AND expires_ms > $2 RETURNING lease_id",
                &[&lease_ids, &now_ms, &(now_ms + ttl_ms)],
            )
            .map_err(classify)?
            .iter()
            .map(|r| r.try_get(0).map_err(classify))
            .collect()
        })
    }

    pub(crate) fn gc_lease_release(&self, lease_id: &str) -> Result<(), CatalogError> {
        let lease_id = lease_id.to_string();
        self.call(move |c| {
            c.execute("DELETE FROM gc_leases WHERE lease_id = $1", &[&lease_id])
                .map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn gc_live_leases(
        &self,
        region: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let region = region.to_string();
        self.call(move |c| {
            c.query(
                "SELECT lease_id FROM gc_leases WHERE region = $1 AND expires_ms > $2 \
                 ORDER BY lease_id",
                &[&region, &now_ms],
            )
            .map_err(classify)?
            .iter()
            .map(|r| r.try_get(0).map_err(classify))
            .collect()
        })
    }

    pub(crate) fn gc_lock(
        &self,
        region: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<GcLock, CatalogError> {
        let (region, holder) = (region.to_string(), holder.to_string());
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            tx.execute(
                "INSERT INTO gc_state (region) VALUES ($1) ON CONFLICT (region) DO NOTHING",
                &[&region],
            )
            .map_err(classify)?;
            let row = tx
                .query_one(
                    "SELECT holder, holder_expires_ms, collection_ms, waits_for, complete \
                     FROM gc_state WHERE region = $1 FOR UPDATE",
                    &[&region],
                )
                .map_err(classify)?;
            let current: Option<String> = row.try_get(0).map_err(classify)?;
            let expires_ms: i64 = row.try_get(1).map_err(classify)?;
            if let Some(other) = current
                && other != holder
                && expires_ms > now_ms
            {
                // Dropping the transaction rolls it back.
                return Ok(GcLock::Busy {
                    holder: other,
                    expires_ms,
                });
            }
            let started: Option<i64> = row.try_get(2).map_err(classify)?;
            let waits_for: String = row.try_get(3).map_err(classify)?;
            let complete: bool = row.try_get(4).map_err(classify)?;
            tx.execute(
                "UPDATE gc_state SET holder = $2, holder_expires_ms = $3 WHERE region = $1",
                &[&region, &holder, &(now_ms + ttl_ms)],
            )
            .map_err(classify)?;
            tx.execute(
                "DELETE FROM gc_leases WHERE region = $1 AND expires_ms < $2",
                &[&region, &(now_ms - ttl_ms)],
            )
            .map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(GcLock::Held(GcCollection::from_columns(
                started, &waits_for, complete,
            )))
        })
    }

    pub(crate) fn gc_set_collection(
        &self,
        region: &str,
        holder: &str,
        collection: Option<&GcCollection>,
    ) -> Result<bool, CatalogError> {
        let (region, holder) = (region.to_string(), holder.to_string());
        let (started, waits_for, complete) = match collection {
            Some(c) => (Some(c.started_ms), c.waits_for_text(), c.complete),
            None => (None, String::new(), false),
        };
        self.call(move |c| {
            let n = c
                .execute(
                    "UPDATE gc_state SET collection_ms = $3, waits_for = $4, complete = $5 \
                     WHERE region = $1 AND holder = $2",
                    &[&region, &holder, &started, &waits_for, &complete],
                )
                .map_err(classify)?;
            Ok(n == 1)
        })
    }

    pub(crate) fn gc_unlock(&self, region: &str, holder: &str) -> Result<(), CatalogError> {
        let (region, holder) = (region.to_string(), holder.to_string());
        self.call(move |c| {
            c.execute(
                "UPDATE gc_state SET holder = NULL, holder_expires_ms = 0 \
                 WHERE region = $1 AND holder = $2",
                &[&region, &holder],
            )
            .map_err(classify)?;
            Ok(())
        })
    }
}
