//! SQLite storage of the node request queue (see `crate::node_requests`).

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, is_unique_violation};
use crate::node_requests::state;
use crate::{CatalogError, NodeRequest};

/// Requests handed from one node to the node that owns the work.
pub(crate) const MIGRATION_8: &str = r#"
CREATE TABLE node_requests (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT,
    created_ms INTEGER NOT NULL,
    claimed_ms INTEGER,
    done_ms INTEGER
);
CREATE INDEX node_requests_by_node_state ON node_requests(node_id, state, created_ms);
"#;

const COLUMNS: &str = "id, node_id, state, request, response, created_ms, claimed_ms, done_ms";

fn to_request(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRequest> {
    Ok(NodeRequest {
        id: r.get(0)?,
        node_id: r.get(1)?,
        state: r.get(2)?,
        request: r.get(3)?,
        response: r.get(4)?,
        created_ms: r.get(5)?,
        claimed_ms: r.get(6)?,
        done_ms: r.get(7)?,
    })
}

impl Sqlite {
    pub(crate) fn enqueue_node_request(
        &self,
        id: &str,
        node_id: &str,
        request: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "INSERT INTO node_requests (id, node_id, state, request, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, node_id, state::QUEUED, request, now_ms],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    CatalogError::AlreadyExists {
                        what: "node request",
                        key: id.to_string(),
                    }
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    pub(crate) fn claim_node_requests(
        &self,
        node_id: &str,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<NodeRequest>, CatalogError> {
        let mut conn = self.conn();
        // IMMEDIATE: the write lock from the first read, so two processes sharing the
        // file cannot both claim a row.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut claimed = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM node_requests WHERE node_id = ?1 AND state = ?2 \
                 ORDER BY created_ms, id LIMIT ?3"
            ))?;
            stmt.query_map(params![node_id, state::QUEUED, limit as i64], to_request)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        for r in &mut claimed {
            tx.execute(
                "UPDATE node_requests SET state = ?1, claimed_ms = ?2 WHERE id = ?3",
                params![state::RUNNING, now_ms, r.id],
            )?;
            r.state = state::RUNNING.to_string();
            r.claimed_ms = Some(now_ms);
        }
        tx.commit()?;
        Ok(claimed)
    }

    pub(crate) fn complete_node_request(
        &self,
        id: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        self.answer_node_request(id, response, now_ms, &[state::QUEUED, state::RUNNING])
    }

    pub(crate) fn cancel_node_request(
        &self,
        id: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        self.answer_node_request(id, response, now_ms, &[state::QUEUED])
    }

    /// Answers request `id` if it is in one of `from` (two states at most).
    fn answer_node_request(
        &self,
        id: &str,
        response: &str,
        now_ms: i64,
        from: &[&str],
    ) -> Result<bool, CatalogError> {
        let (a, b) = (
            from.first().copied().unwrap_or(""),
            from.last().copied().unwrap_or(""),
        );
        let n = self.conn().execute(
            "UPDATE node_requests SET state = ?1, response = ?2, done_ms = ?3 \
             WHERE id = ?4 AND state IN (?5, ?6)",
            params![state::DONE, response, now_ms, id, a, b],
        )?;
        Ok(n > 0)
    }

    pub(crate) fn node_request(&self, id: &str) -> Result<Option<NodeRequest>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM node_requests WHERE id = ?1"),
                params![id],
                to_request,
            )
            .optional()?)
    }

    pub(crate) fn node_requests_in_state(
        &self,
        node_id: &str,
        state: &str,
    ) -> Result<Vec<NodeRequest>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM node_requests WHERE node_id = ?1 AND state = ?2 \
             ORDER BY created_ms, id"
        ))?;
        let rows = stmt
            .query_map(params![node_id, state], to_request)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub(crate) fn purge_node_requests(
        &self,
        cutoff_ms: i64,
        stale_cutoff_ms: i64,
    ) -> Result<u64, CatalogError> {
        let n = self.conn().execute(
            "DELETE FROM node_requests WHERE (state = ?1 AND done_ms < ?2) OR created_ms < ?3",
            params![state::DONE, cutoff_ms, stale_cutoff_ms],
        )?;
        Ok(n as u64)
    }
}
