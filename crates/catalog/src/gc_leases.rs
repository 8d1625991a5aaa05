//! Garbage-collection coordination for block stores shared by many nodes: write leases
//! and each region's collection state (see `blockstore`'s `fossil` module for the
//! protocol they serve).
//!
//! ```text
//! gc_leases(lease_id PK, region, node_id, started_ms, expires_ms)   index (region)
//!     a write session on some node that may reference blocks no manifest names yet;
//!     renewed by its node (all of a node's leases at once), expired when not renewed
//! gc_state(region PK, holder NULL, holder_expires_ms, collection_ms NULL,
//!          waits_for, complete)
//!     the region's GC lock (holder: a node, until holder_expires_ms) and the collection
//!     in progress: fossils made at collection_ms, to be swept once every lease in
//!     waits_for (newline-separated ids) has ended; complete = 0 while the fossils are
//!     still being made (a holder that died mid-way leaves it so)
//! ```
//!
//! The catalog stores rows and makes the lock atomic (SQLite's write lock, PostgreSQL's
//! `SELECT … FOR UPDATE`); what a lease protects and when a collection may be swept is
//! decided by the caller. Times are the callers' wall clocks in ms.

use crate::{Backend, Catalog, CatalogError, dispatch};

/// A collection in progress: fossils were made, and are swept once its leases ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcCollection {
    /// When the fossils were made (or began to be).
    pub started_ms: i64,
    /// Leases that were live when the fossils were made.
    pub waits_for: Vec<String>,
    /// False while the fossils are still being made (or their maker died).
    pub complete: bool,
}

impl GcCollection {
    pub(crate) fn waits_for_text(&self) -> String {
        self.waits_for.join("\n")
    }

    pub(crate) fn from_columns(
        started_ms: Option<i64>,
        waits_for: &str,
        complete: bool,
    ) -> Option<Self> {
        Some(GcCollection {
            started_ms: started_ms?,
            waits_for: waits_for
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            complete,
        })
    }
}

/// What [`Catalog::gc_lock`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcLock {
    /// The caller holds the region's GC lock; the collection in progress, if any.
    Held(Option<GcCollection>),
    /// Another node holds it, until `expires_ms`.
    Busy {
        /// The holder.
        holder: String,
        /// When its hold runs out if not renewed.
        expires_ms: i64,
    },
}

impl Catalog {
    /// Records a write lease of `node_id` on `region`'s block store, live until
    /// `now_ms + ttl_ms` unless renewed.
    pub fn gc_lease_acquire(
        &self,
        lease_id: &str,
        region: &str,
        node_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(), CatalogError> {
        dispatch!(self.gc_lease_acquire(lease_id, region, node_id, now_ms, ttl_ms))
    }

    /// Extends the leases `lease_ids` that are still live at `now_ms` to `now_ms + ttl_ms`
    /// and returns those it extended. A lease that expired stays expired: a collector may
    /// have stopped waiting for it already.
    pub fn gc_lease_renew(
        &self,
        lease_ids: &[String],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>, CatalogError> {
        dispatch!(self.gc_lease_renew(lease_ids, now_ms, ttl_ms))
    }

    /// Ends a lease (idempotent).
    pub fn gc_lease_release(&self, lease_id: &str) -> Result<(), CatalogError> {
        dispatch!(self.gc_lease_release(lease_id))
    }

    /// Ids of `region`'s leases that have not expired at `now_ms`, sorted.
    pub fn gc_live_leases(&self, region: &str, now_ms: i64) -> Result<Vec<String>, CatalogError> {
        dispatch!(self.gc_live_leases(region, now_ms))
    }

    /// Takes (or renews) `region`'s GC lock for `holder` until `now_ms + ttl_ms`, if it is
    /// free, expired or already `holder`'s; removes the region's leases that expired more
    /// than `ttl_ms` ago (housekeeping).
    pub fn gc_lock(
        &self,
        region: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<GcLock, CatalogError> {
        dispatch!(self.gc_lock(region, holder, now_ms, ttl_ms))
    }

    /// Records `region`'s collection state (`None`: no collection in progress) if
    /// `holder` holds the lock, keeping the lock. False if it does not hold it.
    pub fn gc_set_collection(
        &self,
        region: &str,
        holder: &str,
        collection: Option<&GcCollection>,
    ) -> Result<bool, CatalogError> {
        dispatch!(self.gc_set_collection(region, holder, collection))
    }

    /// Releases `region`'s GC lock if `holder` holds it.
    pub fn gc_unlock(&self, region: &str, holder: &str) -> Result<(), CatalogError> {
        dispatch!(self.gc_unlock(region, holder))
    }
}

/// The conformance checks of this module (run by [`crate::conformance::run_all`]).
pub(crate) fn conformance(c: &Catalog) {
    let ok = |what: &str, r: Result<(), CatalogError>| {
        if let Err(e) = r {
            panic!("{what}: {e}");
        }
    };
    let live = |region: &str, now: i64| match c.gc_live_leases(region, now) {
        Ok(v) => v,
        Err(e) => panic!("gc_live_leases: {e}"),
    };
    ok(
        "acquire",
        c.gc_lease_acquire("l-1", "r-1", "n-1", 1_000, 500),
    );
    ok(
        "acquire",
        c.gc_lease_acquire("l-2", "r-1", "n-2", 1_000, 500),
    );
    ok(
        "acquire",
        c.gc_lease_acquire("l-3", "r-2", "n-1", 1_000, 500),
    );
    assert!(
        c.gc_lease_acquire("l-1", "r-1", "n-1", 1_000, 500).is_err(),
        "a lease id is unique"
    );
    assert_eq!(live("r-1", 1_100), vec!["l-1", "l-2"]);
    assert_eq!(live("r-1", 1_500), Vec::<String>::new(), "expired at 1500");
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut renewed = c.gc_lease_renew(&ids(&["l-1", "l-3"]), 1_400, 500).ok();
    if let Some(v) = renewed.as_mut() {
        v.sort();
    }
    assert_eq!(renewed, Some(ids(&["l-1", "l-3"])));
    assert_eq!(live("r-1", 1_600), vec!["l-1"], "l-1 was renewed, l-2 not");
    assert_eq!(
        c.gc_lease_renew(&ids(&["l-2"]), 1_600, 500).ok(),
        Some(Vec::new()),
        "an expired lease is not revived"
    );
    assert_eq!(live("r-1", 1_700), vec!["l-1"]);
    assert_eq!(live("r-2", 1_600), vec!["l-3"]);
    ok("release", c.gc_lease_release("l-1"));
    ok("release twice", c.gc_lease_release("l-1"));
    assert_eq!(live("r-1", 1_600), Vec::<String>::new());

    // The lock: one holder at a time, taken over once expired.
    let lock = |holder: &str, now: i64| match c.gc_lock("r-1", holder, now, 1_000) {
        Ok(l) => l,
        Err(e) => panic!("gc_lock: {e}"),
    };
    assert_eq!(lock("n-1", 2_000), GcLock::Held(None));
    assert_eq!(
        lock("n-2", 2_500),
        GcLock::Busy {
            holder: "n-1".into(),
            expires_ms: 3_000
        }
    );
    assert_eq!(lock("n-1", 2_600), GcLock::Held(None), "the holder renews");
    let collection = GcCollection {
        started_ms: 2_600,
        waits_for: vec!["l-3".into(), "l-9".into()],
        complete: false,
    };
    assert_eq!(
        c.gc_set_collection("r-1", "n-2", Some(&collection)).ok(),
        Some(false),
        "only the holder records"
    );
    assert_eq!(
        c.gc_set_collection("r-1", "n-1", Some(&collection)).ok(),
        Some(true)
    );
    // n-1 dies holding the lock: n-2 takes over once it expired and sees the collection.
    assert!(matches!(lock("n-2", 3_500), GcLock::Busy { .. }));
    assert_eq!(lock("n-2", 3_700), GcLock::Held(Some(collection.clone())));
    let done = GcCollection {
        complete: true,
        ..collection
    };
    assert_eq!(
        c.gc_set_collection("r-1", "n-2", Some(&done)).ok(),
        Some(true)
    );
    ok("unlock", c.gc_unlock("r-1", "n-2"));
    assert_eq!(lock("n-1", 3_800), GcLock::Held(Some(done)));
    assert_eq!(c.gc_set_collection("r-1", "n-1", None).ok(), Some(true));
    ok("unlock", c.gc_unlock("r-1", "n-1"));
    assert_eq!(lock("n-2", 3_900), GcLock::Held(None));
    ok("unlock", c.gc_unlock("r-1", "n-2"));
    // Expired leases are purged by a later lock (more than a lock TTL after expiry).
    ok(
        "acquire",
        c.gc_lease_acquire("l-old", "r-1", "n-3", 4_000, 10),
    );
    assert_eq!(lock("n-1", 9_000), GcLock::Held(None));
    ok("release", c.gc_lease_release("l-old"));
    ok("unlock", c.gc_unlock("r-1", "n-1"));
    ok("release", c.gc_lease_release("l-2"));
    ok("release", c.gc_lease_release("l-3"));

    // Shared secrets: the first value stored wins, for every caller.
    let first = c.shared_secret("test-key", &[1; 32]).ok();
    assert_eq!(first, Some(vec![1; 32]));
    assert_eq!(c.shared_secret("test-key", &[2; 32]).ok(), first);
    assert_eq!(
        c.shared_secret("other-key", &[3; 32]).ok(),
        Some(vec![3; 32])
    );
}
