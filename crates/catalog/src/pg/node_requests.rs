//! PostgreSQL storage of the node request queue (see `crate::node_requests`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use postgres::Row;

use super::{Postgres, classify};
use crate::node_requests::state;
use crate::{CatalogError, NodeRequest};

/// The NOTIFY channel of the request table (not `openami_catalog`: a queue change must not
/// invalidate other nodes' caches).
pub(crate) const REQUESTS_CHANNEL: &str = "openami_requests";

/// Requests handed from one node to the node that owns the work; every change notifies
/// `openami_requests` at commit.
pub(crate) const MIGRATION_8: &str = r#"
CREATE TABLE node_requests (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT,
    created_ms BIGINT NOT NULL,
    claimed_ms BIGINT,
    done_ms BIGINT
);
CREATE INDEX node_requests_by_node_state ON node_requests(node_id, state, created_ms);
CREATE FUNCTION openami_requests_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('openami_requests', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER node_requests_changed AFTER INSERT OR UPDATE ON node_requests
    FOR EACH ROW EXECUTE FUNCTION openami_requests_changed();
"#;

const COLUMNS: &str = "id, node_id, state, request, response, created_ms, claimed_ms, done_ms";

fn to_request(r: &Row) -> Result<NodeRequest, CatalogError> {
    Ok(NodeRequest {
        id: r.try_get(0).map_err(classify)?,
        node_id: r.try_get(1).map_err(classify)?,
        state: r.try_get(2).map_err(classify)?,
        request: r.try_get(3).map_err(classify)?,
        response: r.try_get(4).map_err(classify)?,
        created_ms: r.try_get(5).map_err(classify)?,
        claimed_ms: r.try_get(6).map_err(classify)?,
        done_ms: r.try_get(7).map_err(classify)?,
    })
}

impl Postgres {
    pub(crate) fn enqueue_node_request(
        &self,
        id: &str,
        node_id: &str,
        request: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        let (id, node_id, request) = (id.to_string(), node_id.to_string(), request.to_string());
        self.call(move |c| {
            let n = c
                .execute(
                    "INSERT INTO node_requests (id, node_id, state, request, created_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    &[&id, &node_id, &state::QUEUED, &request, &now_ms],
                )
                .map_err(classify)?;
            if n == 0 {
                return Err(CatalogError::AlreadyExists {
                    what: "node request",
                    key: id,
                });
            }
            Ok(())
        })
    }

    pub(crate) fn claim_node_requests(
        &self,
        node_id: &str,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<NodeRequest>, CatalogError> {
        let node_id = node_id.to_string();
        self.call(move |c| {
            let rows = c
                .query(
                    &format!(
                        "UPDATE node_requests SET state = $1, claimed_ms = $2 WHERE id IN ( \
                           SELECT id FROM node_requests WHERE node_id = $3 AND state = $4 \
                           ORDER BY created_ms, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
                         RETURNING {COLUMNS}"
                    ),
                    &[
                        &state::RUNNING,
                        &now_ms,
                        &node_id,
                        &state::QUEUED,
                        &(limit as i64),
                    ],
                )
                .map_err(classify)?;
            let mut claimed = rows.iter().map(to_request).collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
            Ok(claimed)
        })
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

    /// Answers request `id` if it is in one of the states `from`.
    fn answer_node_request(
        &self,
        id: &str,
        response: &str,
        now_ms: i64,
        from: &[&str],
    ) -> Result<bool, CatalogError> {
        let (id, response) = (id.to_string(), response.to_string());
        let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
        self.call(move |c| {
            let n = c
                .execute(
                    "UPDATE node_requests SET state = $1, response = $2, done_ms = $3 \
                     WHERE id = $4 AND state = ANY($5)",
                    &[&state::DONE, &response, &now_ms, &id, &from],
                )
                .map_err(classify)?;
            Ok(n > 0)
        })
    }

    pub(crate) fn node_request(&self, id: &str) -> Result<Option<NodeRequest>, CatalogError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM node_requests WHERE id = $1"),
                &[&id],
            )
            .map_err(classify)?
            .as_ref()
            .map(to_request)
            .transpose()
        })
    }

    pub(crate) fn node_requests_in_state(
        &self,
        node_id: &str,
        state: &str,
    ) -> Result<Vec<NodeRequest>, CatalogError> {
        let (node_id, state) = (node_id.to_string(), state.to_string());
        self.call(move |c| {
            c.query(
                &format!(
                    "SELECT {COLUMNS} FROM node_requests WHERE node_id = $1 AND state = $2 \
                     ORDER BY created_ms, id"
                ),
                &[&node_id, &state],
            )
            .map_err(classify)?
            .iter()
            .map(to_request)
            .collect()
        })
    }

    pub(crate) fn purge_node_requests(
        &self,
        cutoff_ms: i64,
        stale_cutoff_ms: i64,
    ) -> Result<u64, CatalogError> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM node_requests WHERE (state = $1 AND done_ms < $2) OR created_ms < $3",
                &[&state::DONE, &cutoff_ms, &stale_cutoff_ms],
            )
            .map_err(classify)
        })
    }

    /// See [`crate::Catalog::wait_node_requests`].
    pub(crate) fn wait_node_requests(&self, seen: u64, timeout: Duration) -> u64 {
        let shared = &self.shared;
        let guard = shared
            .requests_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (_guard, _) = shared
            .requests_changed
            .wait_timeout_while(guard, timeout, |()| {
                shared.requests_version.load(Ordering::SeqCst) == seen
                    && !shared.stopped.load(Ordering::SeqCst)
            })
            .unwrap_or_else(|p| p.into_inner());
        shared.requests_version.load(Ordering::SeqCst)
    }
}
