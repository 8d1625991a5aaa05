//! The node request queue: how one openami node hands work to the node that owns it,
//! durably, through the shared catalog.
//!
//! In a cluster every node answers every API call, but work on a zone's volumes and
//! instances runs on the node that owns the zone. The node that received such a call
//! *enqueues* a request for the owner and waits for its response; the owner *claims*
//! queued requests addressed to it, runs them and *completes* them with a response:
//!
//! ```text
//!  node_requests(id PK, node_id, state, request, response NULL,
//!                created_ms, claimed_ms NULL, done_ms NULL)   index (node_id, state)
//!
//!   enqueue ──► queued ──claim (owner)──► running ──complete──► done ──purge──► (gone)
//!                                              │
//!                                   owner restarted while running:
//!                                   the owner completes it with an error
//! ```
//!
//! The catalog stores the rows; what `request` and `response` mean (JSON the API layer
//! defines) is not its business. The row is committed before the receiving node waits,
//! so a request survives the receiving node's crash: the owner still runs it, and the
//! response stays readable until purged. A claim is atomic (one node, once): PostgreSQL
//! uses `FOR UPDATE SKIP LOCKED`, SQLite its write lock.
//!
//! Waking up: PostgreSQL notifies channel `openami_requests` on every change of the table
//! (a row trigger), and [`Catalog::wait_node_requests`] returns as soon as a
//! notification arrives; SQLite (one machine) polls. Either way a waiter re-reads the
//! rows, so a missed notification costs at most one poll interval.

use std::time::Duration;

use crate::{Backend, Catalog, CatalogError, dispatch};

/// One queued, running or answered request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRequest {
    /// Unique id (the receiving node makes it).
    pub id: String,
    /// The node that must run it.
    pub node_id: String,
    /// `queued`, `running` or `done`.
    pub state: String,
    /// What to run (opaque to the catalog).
    pub request: String,
    /// The answer, once `done`.
    pub response: Option<String>,
    /// When it was enqueued.
    pub created_ms: i64,
    /// When the owner claimed it.
    pub claimed_ms: Option<i64>,
    /// When it was answered.
    pub done_ms: Option<i64>,
}

/// Request states.
pub mod state {
    /// Waiting for its node.
    pub const QUEUED: &str = "queued";
    /// Claimed by its node, being run.
    pub const RUNNING: &str = "running";
    /// Answered.
    pub const DONE: &str = "done";
}

impl Catalog {
    /// Enqueues a request for `node_id`. Fails with [`CatalogError::AlreadyExists`] if
    /// the id is taken.
    pub fn enqueue_node_request(
        &self,
        id: &str,
        node_id: &str,
        request: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        dispatch!(self.enqueue_node_request(id, node_id, request, now_ms))
    }

    /// Claims up to `limit` of the oldest queued requests of `node_id` (they become
    /// `running`) and returns them. Two claimers never get the same request.
    pub fn claim_node_requests(
        &self,
        node_id: &str,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<NodeRequest>, CatalogError> {
        dispatch!(self.claim_node_requests(node_id, limit, now_ms))
    }

    /// Answers a request that is not `done` yet. False if there is no such request or
    /// it was answered already (the first answer stands).
    pub fn complete_node_request(
        &self,
        id: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        dispatch!(self.complete_node_request(id, response, now_ms))
    }

    /// Answers a request only if it is still `queued` (so its node never runs it). False
    /// if it was claimed or answered meanwhile, or does not exist.
    pub fn cancel_node_request(
        &self,
        id: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        dispatch!(self.cancel_node_request(id, response, now_ms))
    }

    /// The request with this id.
    pub fn node_request(&self, id: &str) -> Result<Option<NodeRequest>, CatalogError> {
        dispatch!(self.node_request(id))
    }

    /// Every request of `node_id` in `state`, oldest first (e.g. what a restarting node
    /// was running when it stopped).
    pub fn node_requests_in_state(
        &self,
        node_id: &str,
        state: &str,
    ) -> Result<Vec<NodeRequest>, CatalogError> {
        dispatch!(self.node_requests_in_state(node_id, state))
    }

    /// Deletes answered requests answered before `cutoff_ms`, and requests of any state
    /// created before `stale_cutoff_ms` (a node that never came back); returns how many.
    pub fn purge_node_requests(
        &self,
        cutoff_ms: i64,
        stale_cutoff_ms: i64,
    ) -> Result<u64, CatalogError> {
        dispatch!(self.purge_node_requests(cutoff_ms, stale_cutoff_ms))
    }

    /// A counter that changes when the request table may have changed. Waits up to
    /// `timeout` for it to differ from `seen` (pass the last value returned; any value
    /// for the first call) and returns the current value. PostgreSQL wakes on the
    /// table's notifications; SQLite sleeps a short poll interval. Callers re-read the
    /// rows after it returns, whatever the value.
    pub fn wait_node_requests(&self, seen: u64, timeout: Duration) -> u64 {
        match &self.backend {
            Backend::Sqlite(_) => {
                std::thread::sleep(timeout.min(SQLITE_POLL));
                seen.wrapping_add(1)
            }
            Backend::Postgres(b) => b.wait_node_requests(seen, timeout),
        }
    }
}

/// How often a SQLite waiter looks again.
const SQLITE_POLL: Duration = Duration::from_millis(50);
