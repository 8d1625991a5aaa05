//! The catalog: openami's control-plane state, in SQLite (WAL mode, the embedded
//! default) or PostgreSQL (a regional catalog many nodes share, see [`Catalog::open_url`]).
//!
//! It stores what the EC2 API talks about — accounts and access keys, and resources
//! (volumes, snapshots, images, ...) — while their bytes live in the block store. The
//! catalog is deliberately schema-light: a resource is a row with the columns every query
//! filters on (id, kind, owner account, region, state) plus a JSON document the engine
//! defines, so adding a field needs no migration. Tags and permissions have their own
//! tables because they are queried across resources.
//!
//! ```text
//! schema_version(version)
//! accounts(account_id PK, name UNIQUE, created_at_ms)
//! access_keys(access_key_id PK, account_id → accounts, secret, created_at_ms)
//! resources(id PK, kind, account_id, region, state, doc JSON, created_at_ms)
//!     index (kind, region)
//! tags(resource_id, key, value)                   PK (resource_id, key)
//! permissions(resource_id, attribute, grantee)    PK (resource_id, attribute, grantee)
//!     grantee: a 12-digit account id, or "all"
//! upload_blocks(snapshot_id, block_index, hash, written_ms)   PK (snapshot_id, block_index)
//!     blocks of EBS direct uploads in progress ('' = written as zeros); written_ms is
//!     when the block was acknowledged, so an upload's timeout survives a restart
//! ssm_parameters(region, owner, name, version, doc JSON, modified_ms)
//!     PK (region, owner, name, version); owner: a 12-digit account id, or "public"
//! console_passwords(account_id PK → accounts, hash, updated_ms)
//!     the web console's sign-in password of an account, as a PHC string the console
//!     crate makes and checks (the catalog never sees the password)
//! console_sessions(token_hash PK, account_id, access_key_id NULL, csrf, created_ms,
//!                  last_seen_ms)   index (last_seen_ms), index (account_id)
//!     the web console's signed-in browsers; token_hash is the hex SHA-256 of the
//!     session cookie's token (the token itself is never stored); access_key_id is NULL
//!     after a password sign-in; last_seen_ms is updated at most about once a minute
//! nodes(node_id PK, started_ms, heartbeat_ms)
//! node_zones(zone PK, node_id → nodes)
//!     the openami nodes of a node cluster and the availability zones each owns (one
//!     owner per zone), see `nodes`
//! node_requests(id PK, node_id, state, request, response NULL, created_ms,
//!               claimed_ms NULL, done_ms NULL)   index (node_id, state, created_ms)
//!     work one node hands to the node that owns it (queued → running → done), see
//!     [`node_requests`]
//! gc_leases(lease_id PK, region, node_id, started_ms, expires_ms)   index (region)
//! gc_state(region PK, holder NULL, holder_expires_ms, collection_ms NULL, waits_for,
//!          complete)
//!     write leases and each region's GC lock and collection in progress, for block
//!     stores that many nodes share, see `gc_leases`
//! shared_secrets(name PK, value, created_ms)
//!     keys every node of a cluster must agree on (the EBS direct block token key)
//! ```
//!
//! Migrations are numbered SQL scripts applied in order inside a transaction; the applied
//! number is kept in `schema_version`. Both backends have the same tables and the same
//! numbering, each in its own SQL dialect (times in ms are `INTEGER` in SQLite, `BIGINT`
//! in PostgreSQL).
//!
//! Two backends behind one [`Catalog`]:
//!
//! * `sqlite` — one connection behind a mutex. [`Catalog::data_version`] is SQLite's
//!   `PRAGMA data_version`.
//! * `pg` — PostgreSQL through worker threads that own the connections (catalog calls
//!   are synchronous and may come from inside a tokio runtime, where a blocking client
//!   must not run). Migrations run under an advisory lock, so nodes starting together
//!   migrate once; a lost connection is reopened on the next call and reported as
//!   [`CatalogError::is_unavailable`] meanwhile. `data_version` is a local counter bumped
//!   by LISTEN/NOTIFY (triggers on the cached tables), see the `pg` module.
//!
//! Every backend runs the one behaviour suite in [`conformance`]; [`test_postgres`]
//! starts a throw-away PostgreSQL server for tests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod conformance;
mod console_sessions;
mod gc_leases;
pub mod node_requests;
mod nodes;
mod pg;
mod sqlite;
mod ssm;
pub mod test_postgres;

pub use console_sessions::ConsoleSession;
pub use gc_leases::{GcCollection, GcLock};
pub use node_requests::NodeRequest;
pub use nodes::{NodeRow, ZoneClaim};
pub use ssm::SsmVersion;

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed.
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed a statement.
    #[error("catalog database: {}", pg::describe(.0))]
    Postgres(#[from] postgres::Error),
    /// The PostgreSQL server cannot be reached (or the connection was lost); a later call
    /// reconnects.
    #[error("catalog database unavailable: {0}")]
    Unavailable(String),
    /// A row with this key exists already.
    #[error("{what} {key} already exists")]
    AlreadyExists {
        /// What kind of row.
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// The database was written by a newer openami.
    #[error("catalog schema version {found} is newer than this openami ({supported})")]
    TooNew {
        /// Version in the database.
        found: usize,
        /// Newest this build knows.
        supported: usize,
    },
    /// The catalog location is not a path nor a `postgres://` URL.
    #[error("invalid catalog location: {0}")]
    BadLocation(String),
}

impl CatalogError {
    /// True if the database could not write because its disk is full: SQLite's
    /// `SQLITE_FULL` (which is also what an `ENOSPC`/`EDQUOT` on the database or its WAL
    /// becomes), PostgreSQL's `disk_full` (53100). The transaction was rolled back; the
    /// same write may succeed once space is freed.
    pub fn is_storage_full(&self) -> bool {
        match self {
            CatalogError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            CatalogError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::DISK_FULL),
            _ => false,
        }
    }

    /// True if the catalog's server could not be reached or went away: a service that
    /// is temporarily unavailable, not a bad request. The call may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CatalogError::Unavailable(_))
    }
}

/// An account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// 12-digit account id.
    pub account_id: String,
    /// Unique human name.
    pub name: String,
}

/// A resource row: indexed columns plus the engine's JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRow {
    /// e.g. `vol-0123…`.
    pub id: String,
    /// e.g. `volume`, `snapshot`, `image`.
    pub kind: String,
    /// Owner.
    pub account_id: String,
    /// Region it lives in.
    pub region: String,
    /// Lifecycle state (also inside the document; kept here for queries).
    pub state: String,
    /// The engine's JSON document.
    pub doc: String,
    /// Creation time.
    pub created_at_ms: i64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The catalog database.
#[derive(Debug)]
pub struct Catalog {
    backend: Backend,
    /// Access keys found, valid while `data_version` has not moved: every signed request
    /// looks its key up, and on PostgreSQL that is a round trip (see [`Catalog::access_key`]).
    keys: Mutex<KeyCache>,
}

#[derive(Debug, Default)]
struct KeyCache {
    version: Option<i64>,
    /// Access key id → (account, secret).
    found: HashMap<String, (String, String)>,
}

/// Access keys the cache holds at most (unknown keys are never cached).
const KEY_CACHE_MAX: usize = 10_000;

#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Postgres),
}

/// Calls the same method on whichever backend the catalog has.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(b) => b.$method($($arg),*),
            Backend::Postgres(b) => b.$method($($arg),*),
        }
    };
}
pub(crate) use dispatch;

impl Catalog {
    fn with(backend: Backend) -> Self {
        Catalog {
            backend,
            keys: Mutex::new(KeyCache::default()),
        }
    }

    /// Opens (creating and migrating) the SQLite catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        Ok(Catalog::with(Backend::Sqlite(sqlite::Sqlite::open(path)?)))
    }

    /// A private in-memory SQLite catalog (tests).
    pub fn in_memory() -> Result<Self, CatalogError> {
        Ok(Catalog::with(Backend::Sqlite(sqlite::Sqlite::in_memory()?)))
    }

    /// Connects to (and migrates) the PostgreSQL catalog at `url`
    /// (`postgres://user@host:port/db`, or any libpq-style connection string). Fails with
    /// [`CatalogError::Unavailable`] if the server cannot be reached.
    pub fn open_postgres(url: &str) -> Result<Self, CatalogError> {
        Ok(Catalog::with(Backend::Postgres(pg::Postgres::open(url)?)))
    }

    /// Opens the catalog `location` names: a `postgres://` or `postgresql://` URL, or
    /// else the path of a SQLite file.
    pub fn open_url(location: &str) -> Result<Self, CatalogError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Self::open_postgres(location)
        } else if location.contains("://") || location.contains('=') {
            Err(CatalogError::BadLocation(format!(
                "{}: only postgres:// URLs and file paths are catalogs",
                redact(location)
            )))
        } else {
            Self::open(Path::new(location))
        }
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A number that changes when *another* connection (another process or node, e.g. an
    /// operator command) commits a change to the catalog. Caches of catalog data compare
    /// it to notice changes made behind their back. SQLite: `PRAGMA data_version`, which
    /// changes as soon as the other commit is done and never for this catalog's own
    /// writes. PostgreSQL: changes when the other commit's notification arrives (within
    /// milliseconds), also never for own writes; and after a reconnect, since
    /// notifications may have been missed.
    pub fn data_version(&self) -> Result<i64, CatalogError> {
        dispatch!(self.data_version())
    }

    /// Creates an account with its first access key.
    pub fn create_account(
        &self,
        account: &Account,
        access_key_id: &str,
        secret: &str,
    ) -> Result<(), CatalogError> {
        let created = dispatch!(self.create_account(account, access_key_id, secret));
        self.forget_keys();
        created
    }

    /// Every account, by id.
    pub fn accounts(&self) -> Result<Vec<Account>, CatalogError> {
        dispatch!(self.accounts())
    }

    /// The account and secret of an access key. Keys found are remembered until
    /// [`data_version`](Self::data_version) moves (another node or process changed the
    /// catalog) or this catalog writes accounts or keys itself.
    pub fn access_key(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(String, String)>, CatalogError> {
        let version = self.data_version()?;
        {
            let mut cache = self.key_cache();
            if cache.version != Some(version) {
                cache.found.clear();
                cache.version = Some(version);
            }
            if let Some(found) = cache.found.get(access_key_id) {
                return Ok(Some(found.clone()));
            }
        }
        let found = dispatch!(self.access_key(access_key_id))?;
        if let Some(found) = &found {
            let mut cache = self.key_cache();
            if cache.version == Some(version) && cache.found.len() < KEY_CACHE_MAX {
                cache.found.insert(access_key_id.to_string(), found.clone());
            }
        }
        Ok(found)
    }

    fn key_cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        // Every critical section leaves the cache consistent.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget_keys(&self) {
        *self.key_cache() = KeyCache::default();
    }

    /// The access keys of an account (id and secret), oldest first.
    pub fn access_keys_of(&self, account_id: &str) -> Result<Vec<(String, String)>, CatalogError> {
        dispatch!(self.access_keys_of(account_id))
    }

    /// Inserts a new resource; fails if the id exists.
    pub fn insert_resource(&self, row: &ResourceRow) -> Result<(), CatalogError> {
        self.insert_resource_with_tags(row, &[])
    }

    /// Inserts a new resource and its tags in one transaction: if either cannot be
    /// written (e.g. the disk is full) neither is. Fails if the id exists.
    pub fn insert_resource_with_tags(
        &self,
        row: &ResourceRow,
        tags: &[(String, String)],
    ) -> Result<(), CatalogError> {
        dispatch!(self.insert_resource_with_tags(row, tags))
    }

    /// Replaces a resource's state and document. Returns false if it does not exist.
    pub fn update_resource(&self, id: &str, state: &str, doc: &str) -> Result<bool, CatalogError> {
        dispatch!(self.update_resource(id, state, doc))
    }

    /// One resource.
    pub fn resource(&self, id: &str) -> Result<Option<ResourceRow>, CatalogError> {
        dispatch!(self.resource(id))
    }

    /// Every resource of a kind in a region, by id.
    pub fn resources(&self, kind: &str, region: &str) -> Result<Vec<ResourceRow>, CatalogError> {
        dispatch!(self.resources(kind, region))
    }

    /// Every resource of a kind in any region (for recovery at startup).
    pub fn resources_of_kind(&self, kind: &str) -> Result<Vec<ResourceRow>, CatalogError> {
        dispatch!(self.resources_of_kind(kind))
    }

    /// Deletes a resource with its tags and permissions. Returns false if absent.
    pub fn delete_resource(&self, id: &str) -> Result<bool, CatalogError> {
        dispatch!(self.delete_resource(id))
    }

    /// Sets tags (replacing values of existing keys).
    pub fn set_tags(
        &self,
        resource_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), CatalogError> {
        dispatch!(self.set_tags(resource_id, tags))
    }

    /// Removes tags: a key alone removes it whatever its value; with a value, only if
    /// the value matches.
    pub fn delete_tags(
        &self,
        resource_id: &str,
        tags: &[(String, Option<String>)],
    ) -> Result<(), CatalogError> {
        dispatch!(self.delete_tags(resource_id, tags))
    }

    /// Removes every tag of a resource.
    pub fn clear_tags(&self, resource_id: &str) -> Result<(), CatalogError> {
        dispatch!(self.clear_tags(resource_id))
    }

    /// Tags of every resource, by resource id (sorted by key).
    pub fn all_tags(&self) -> Result<HashMap<String, Vec<(String, String)>>, CatalogError> {
        dispatch!(self.all_tags())
    }

    /// Tags of one resource, sorted by key.
    pub fn tags(&self, resource_id: &str) -> Result<Vec<(String, String)>, CatalogError> {
        dispatch!(self.tags(resource_id))
    }

    /// Grants `attribute` (e.g. `launchPermission`) on a resource to a grantee.
    pub fn add_permission(
        &self,
        resource_id: &str,
        attribute: &str,
        grantee: &str,
    ) -> Result<(), CatalogError> {
        dispatch!(self.add_permission(resource_id, attribute, grantee))
    }

    /// Revokes a grant (no error if absent).
    pub fn remove_permission(
        &self,
        resource_id: &str,
        attribute: &str,
        grantee: &str,
    ) -> Result<(), CatalogError> {
        dispatch!(self.remove_permission(resource_id, attribute, grantee))
    }

    /// Revokes every grant of an attribute.
    pub fn clear_permissions(
        &self,
        resource_id: &str,
        attribute: &str,
    ) -> Result<(), CatalogError> {
        dispatch!(self.clear_permissions(resource_id, attribute))
    }

    /// Grantees of an attribute on every resource, by resource id (sorted).
    pub fn all_permissions(
        &self,
        attribute: &str,
    ) -> Result<HashMap<String, Vec<String>>, CatalogError> {
        dispatch!(self.all_permissions(attribute))
    }

    /// Grantees of an attribute on one resource (sorted).
    pub fn permissions(
        &self,
        resource_id: &str,
        attribute: &str,
    ) -> Result<Vec<String>, CatalogError> {
        dispatch!(self.permissions(resource_id, attribute))
    }

    /// Records (or overwrites) one block of an upload in progress, written now.
    pub fn put_upload_block(
        &self,
        snapshot_id: &str,
        index: u64,
        hash: &str,
    ) -> Result<(), CatalogError> {
        dispatch!(self.put_upload_block(snapshot_id, index, hash))
    }

    /// Records (or overwrites) several blocks of uploads in progress — `(snapshot id,
    /// index, hash)` — in one transaction: all or none (the group commit of
    /// PutSnapshotBlock).
    pub fn put_upload_blocks(&self, blocks: &[(String, u64, String)]) -> Result<(), CatalogError> {
        dispatch!(self.put_upload_blocks(blocks))
    }

    /// When the last block of an upload was written (ms), if any was.
    pub fn upload_last_write(&self, snapshot_id: &str) -> Result<Option<i64>, CatalogError> {
        dispatch!(self.upload_last_write(snapshot_id))
    }

    /// Every snapshot id that has blocks recorded in `upload_blocks`.
    pub fn upload_snapshot_ids(&self) -> Result<Vec<String>, CatalogError> {
        dispatch!(self.upload_snapshot_ids())
    }

    /// The blocks of an upload, by index.
    pub fn upload_blocks(&self, snapshot_id: &str) -> Result<Vec<(u64, String)>, CatalogError> {
        dispatch!(self.upload_blocks(snapshot_id))
    }

    /// Number of blocks written to an upload.
    pub fn upload_block_count(&self, snapshot_id: &str) -> Result<u64, CatalogError> {
        dispatch!(self.upload_block_count(snapshot_id))
    }

    /// Every block hash of every upload in progress (GC roots).
    pub fn all_upload_hashes(&self) -> Result<Vec<String>, CatalogError> {
        dispatch!(self.all_upload_hashes())
    }

    /// Forgets an upload's blocks (after completion or failure).
    pub fn clear_upload(&self, snapshot_id: &str) -> Result<(), CatalogError> {
        dispatch!(self.clear_upload(snapshot_id))
    }

    /// Sets (`Some`) or removes (`None`) an account's console password hash. False if
    /// there is no such account.
    pub fn set_console_password(
        &self,
        account_id: &str,
        hash: Option<&str>,
    ) -> Result<bool, CatalogError> {
        dispatch!(self.set_console_password(account_id, hash))
    }

    /// An account's console password hash, if one is set.
    pub fn console_password(&self, account_id: &str) -> Result<Option<String>, CatalogError> {
        dispatch!(self.console_password(account_id))
    }
}

/// `location` fit for messages and logs: a file path as it is; a URL or connection
/// string as scheme, user, hosts, ports and database only (never a password, whether in
/// the authority, in `?password=` or in `password=`).
pub fn redact(location: &str) -> String {
    let is_url = location.starts_with("postgres://") || location.starts_with("postgresql://");
    if !is_url && !location.contains('=') {
        if location.contains("://") {
            // Another scheme (refused): show the scheme only.
            return location
                .split_once("://")
                .map_or_else(String::new, |(scheme, _)| format!("{scheme}://…"));
        }
        return location.to_string();
    }
    match location.parse::<postgres::Config>() {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
            format!(
                "postgres://{}{}@{}{}/{}",
                config.get_user().unwrap_or(""),
                if config.get_password().is_some() {
                    ":***"
                } else {
                    ""
                },
                hosts.join(","),
                if ports.is_empty() {
                    String::new()
                } else {
                    format!(":{}", ports.join(","))
                },
                config.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "(an unreadable PostgreSQL connection string)".to_string(),
    }
}
