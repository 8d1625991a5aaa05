//! The SQLite backend of the catalog (WAL mode): the embedded default. One connection
//! behind a mutex; migrations in SQLite's dialect (the PostgreSQL backend has the same
//! numbering, see `crate::pg::schema`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Account, CatalogError, ResourceRow, now_ms};

mod gc_leases;
mod node_requests;
mod nodes;
mod sessions;
mod ssm;

/// Schema migrations, applied in order. Never edit one that has shipped; append.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    ssm::MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    sessions::MIGRATION_6,
    nodes::MIGRATION_7,
    node_requests::MIGRATION_8,
    gc_leases::MIGRATION_9,
    nodes::MIGRATION_10,
];

/// Console sign-in passwords (hashes), one per account at most.
const MIGRATION_5: &str = r#"
CREATE TABLE console_passwords (
    account_id TEXT PRIMARY KEY REFERENCES accounts(account_id),
    hash TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
"#;

/// When each upload block was written (0 for rows written before this migration), so an
/// upload's inactivity timeout is measured from its last write across restarts.
const MIGRATION_4: &str = r#"
ALTER TABLE upload_blocks ADD COLUMN written_ms INTEGER NOT NULL DEFAULT 0;
"#;

/// Blocks written to EBS direct snapshot uploads that are not completed yet. `hash` is
/// the hex SHA-256 of the block, or '' for a block written as zeros.
const MIGRATION_2: &str = r#"
CREATE TABLE upload_blocks (
    snapshot_id TEXT NOT NULL,
    block_index INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, block_index)
);
"#;

const MIGRATION_1: &str = r#"
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    secret TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE resources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX resources_by_kind_region ON resources(kind, region);
CREATE TABLE tags (
    resource_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (resource_id, key)
);
CREATE TABLE permissions (
    resource_id TEXT NOT NULL,
    attribute TEXT NOT NULL,
    grantee TEXT NOT NULL,
    PRIMARY KEY (resource_id, attribute, grantee)
);
"#;

/// The SQLite catalog.
#[derive(Debug)]
pub(crate) struct Sqlite {
    conn: Mutex<Connection>,
}

pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(err, _)
            if err.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

fn row_to_resource(row: &rusqlite::Row<'_>) -> rusqlite::Result<ResourceRow> {
    Ok(ResourceRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        account_id: row.get(2)?,
        region: row.get(3)?,
        state: row.get(4)?,
        doc: row.get(5)?,
        created_at_ms: row.get(6)?,
    })
}

const RESOURCE_COLUMNS: &str = "id, kind, account_id, region, state, doc, created_at_ms";

impl Sqlite {
    /// Opens (creating and migrating) the catalog at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, CatalogError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::setup(conn)
    }

    /// A private in-memory catalog (tests).
    pub(crate) fn in_memory() -> Result<Self, CatalogError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self, CatalogError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let tx = conn.transaction()?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
        let current: usize = tx
            .query_row("SELECT version FROM schema_version", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map_or(0, |v| v as usize);
        if current > MIGRATIONS.len() {
            return Err(CatalogError::TooNew {
                found: current,
                supported: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tracing::info!(version = i + 1, "applying catalog migration");
            tx.execute_batch(sql)?;
        }
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![MIGRATIONS.len() as i64],
        )?;
        tx.commit()?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // SQLite keeps the database consistent; a panic while holding the guard leaves
        // at most an open transaction, which rusqlite rolls back on drop.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SQLite's `data_version`: it changes when *another* connection (e.g. an operator
    /// command in another process) commits, never for this connection's own writes. Caches
    /// of catalog data compare it to notice changes made behind their back.
    pub(crate) fn data_version(&self) -> Result<i64, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("PRAGMA data_version")?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }

    /// Creates an account with its first access key.
    pub(crate) fn create_account(
        &self,
        account: &Account,
        access_key_id: &str,
        secret: &str,
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO accounts (account_id, name, created_at_ms) VALUES (?1, ?2, ?3)",
            params![account.account_id, account.name, now],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                CatalogError::AlreadyExists {
                    what: "account",
                    key: format!("{} ({})", account.name, account.account_id),
                }
            } else {
                e.into()
            }
        })?;
        tx.execute(
            "INSERT INTO access_keys (access_key_id, account_id, secret, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![access_key_id, account.account_id, secret, now],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                CatalogError::AlreadyExists {
                    what: "access key",
                    key: access_key_id.to_string(),
                }
            } else {
                e.into()
            }
        })?;
        tx.commit()?;
        Ok(())
    }

    /// Every account, by id.
    pub(crate) fn accounts(&self) -> Result<Vec<Account>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT account_id, name FROM accounts ORDER BY account_id")?;
        let rows = stmt.query_map([], |r| {
            Ok(Account {
                account_id: r.get(0)?,
                name: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The account and secret of an access key.
    pub(crate) fn access_key(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(String, String)>, CatalogError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT account_id, secret FROM access_keys WHERE access_key_id = ?1",
                params![access_key_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The access keys of an account (id and secret), oldest first.
    pub(crate) fn access_keys_of(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT access_key_id, secret FROM access_keys WHERE account_id = ?1 ORDER BY created_at_ms, access_key_id",
        )?;
        let rows = stmt.query_map(params![account_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Inserts a new resource and its tags in one transaction: if either cannot be
    /// written (e.g. the disk is full) neither is. Fails if the id exists.
    pub(crate) fn insert_resource_with_tags(
        &self,
        row: &ResourceRow,
        tags: &[(String, String)],
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO resources (id, kind, account_id, region, state, doc, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![row.id, row.kind, row.account_id, row.region, row.state, row.doc, row.created_at_ms],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                CatalogError::AlreadyExists {
                    what: "resource",
                    key: row.id.clone(),
                }
            } else {
                e.into()
            }
        })?;
        for (key, value) in tags {
            tx.execute(
                "INSERT INTO tags (resource_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value",
                params![row.id, key, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces a resource's state and document. Returns false if it does not exist.
    pub(crate) fn update_resource(
        &self,
        id: &str,
        state: &str,
        doc: &str,
    ) -> Result<bool, CatalogError> {
        let n = self.conn().execute(
            "UPDATE resources SET state = ?2, doc = ?3 WHERE id = ?1",
            params![id, state, doc],
        )?;
        Ok(n == 1)
    }

    /// One resource.
    pub(crate) fn resource(&self, id: &str) -> Result<Option<ResourceRow>, CatalogError> {
        // Cached: every EBS direct block and most EC2 calls look a resource up.
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE id = ?1"
        ))?;
        Ok(stmt.query_row(params![id], row_to_resource).optional()?)
    }

    /// Every resource of a kind in a region, by id.
    pub(crate) fn resources(
        &self,
        kind: &str,
        region: &str,
    ) -> Result<Vec<ResourceRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = ?1 AND region = ?2 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![kind, region], row_to_resource)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every resource of a kind in any region (for recovery at startup).
    pub(crate) fn resources_of_kind(&self, kind: &str) -> Result<Vec<ResourceRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![kind], row_to_resource)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a resource with its tags and permissions. Returns false if absent.
    pub(crate) fn delete_resource(&self, id: &str) -> Result<bool, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM resources WHERE id = ?1", params![id])?;
        tx.execute("DELETE FROM tags WHERE resource_id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM permissions WHERE resource_id = ?1",
            params![id],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Sets tags (replacing values of existing keys).
    pub(crate) fn set_tags(
        &self,
        resource_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (key, value) in tags {
            tx.execute(
                "INSERT INTO tags (resource_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value",
                params![resource_id, key, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes tags: a key alone removes it whatever its value; with a value, only if
    /// the value matches.
    pub(crate) fn delete_tags(
        &self,
        resource_id: &str,
        tags: &[(String, Option<String>)],
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (key, value) in tags {
            match value {
                Some(v) => tx.execute(
                    "DELETE FROM tags WHERE resource_id = ?1 AND key = ?2 AND value = ?3",
                    params![resource_id, key, v],
                )?,
                None => tx.execute(
                    "DELETE FROM tags WHERE resource_id = ?1 AND key = ?2",
                    params![resource_id, key],
                )?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes every tag of a resource.
    pub(crate) fn clear_tags(&self, resource_id: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "DELETE FROM tags WHERE resource_id = ?1",
            params![resource_id],
        )?;
        Ok(())
    }

    /// Tags of every resource, by resource id (sorted by key).
    pub(crate) fn all_tags(&self) -> Result<HashMap<String, Vec<(String, String)>>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT resource_id, key, value FROM tags ORDER BY resource_id, key")?;
        let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?;
        for row in rows {
            let (id, k, v) = row?;
            out.entry(id).or_default().push((k, v));
        }
        Ok(out)
    }

    /// Tags of one resource, sorted by key.
    pub(crate) fn tags(&self, resource_id: &str) -> Result<Vec<(String, String)>, CatalogError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT key, value FROM tags WHERE resource_id = ?1 ORDER BY key")?;
        let rows = stmt.query_map(params![resource_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Grants `attribute` (e.g. `launchPermission`) on a resource to a grantee.
    pub(crate) fn add_permission(
        &self,
        resource_id: &str,
        attribute: &str,
        grantee: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO permissions (resource_id, attribute, grantee) VALUES (?1, ?2, ?3)",
            params![resource_id, attribute, grantee],
        )?;
        Ok(())
    }

    /// Revokes a grant (no error if absent).
    pub(crate) fn remove_permission(
        &self,
        resource_id: &str,
        attribute: &str,
        grantee: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "DELETE FROM permissions WHERE resource_id = ?1 AND attribute = ?2 AND grantee = ?3",
            params![resource_id, attribute, grantee],
        )?;
        Ok(())
    }

    /// Revokes every grant of an attribute.
    pub(crate) fn clear_permissions(
        &self,
        resource_id: &str,
        attribute: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "DELETE FROM permissions WHERE resource_id = ?1 AND attribute = ?2",
            params![resource_id, attribute],
        )?;
        Ok(())
    }

    /// Grantees of an attribute on every resource, by resource id (sorted).
    pub(crate) fn all_permissions(
        &self,
        attribute: &str,
    ) -> Result<HashMap<String, Vec<String>>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT resource_id, grantee FROM permissions WHERE attribute = ?1 ORDER BY resource_id, grantee",
        )?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let rows = stmt.query_map(params![attribute], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?))
        })?;
        for row in rows {
            let (id, grantee) = row?;
            out.entry(id).or_default().push(grantee);
        }
        Ok(out)
    }

    /// Records (or overwrites) one block of an upload in progress, written now.
    pub(crate) fn put_upload_block(
        &self,
        snapshot_id: &str,
        index: u64,
        hash: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT INTO upload_blocks (snapshot_id, block_index, hash, written_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (snapshot_id, block_index) DO UPDATE SET hash = excluded.hash, written_ms = excluded.written_ms",
            params![snapshot_id, index as i64, hash, now_ms()],
        )?;
        Ok(())
    }

    /// Records several blocks of uploads in progress in one transaction.
    pub(crate) fn put_upload_blocks(
        &self,
        blocks: &[(String, u64, String)],
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO upload_blocks (snapshot_id, block_index, hash, written_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (snapshot_id, block_index) DO UPDATE SET hash = excluded.hash, written_ms = excluded.written_ms",
            )?;
            let now = now_ms();
            for (snapshot_id, index, hash) in blocks {
                stmt.execute(params![snapshot_id, *index as i64, hash, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// When the last block of an upload was written (ms), if any was.
    pub(crate) fn upload_last_write(&self, snapshot_id: &str) -> Result<Option<i64>, CatalogError> {
        Ok(self.conn().query_row(
            "SELECT MAX(written_ms) FROM upload_blocks WHERE snapshot_id = ?1",
            params![snapshot_id],
            |r| r.get::<_, Option<i64>>(0),
        )?)
    }

    /// Every snapshot id that has blocks recorded in `upload_blocks`.
    pub(crate) fn upload_snapshot_ids(&self) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT DISTINCT snapshot_id FROM upload_blocks")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The blocks of an upload, by index.
    pub(crate) fn upload_blocks(
        &self,
        snapshot_id: &str,
    ) -> Result<Vec<(u64, String)>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT block_index, hash FROM upload_blocks WHERE snapshot_id = ?1 ORDER BY block_index",
        )?;
        let rows = stmt.query_map(params![snapshot_id], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of blocks written to an upload.
    pub(crate) fn upload_block_count(&self, snapshot_id: &str) -> Result<u64, CatalogError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM upload_blocks WHERE snapshot_id = ?1",
            params![snapshot_id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Every block hash of every upload in progress (GC roots).
    pub(crate) fn all_upload_hashes(&self) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT DISTINCT hash FROM upload_blocks WHERE hash != ''")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets an upload's blocks (after completion or failure).
    pub(crate) fn clear_upload(&self, snapshot_id: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "DELETE FROM upload_blocks WHERE snapshot_id = ?1",
            params![snapshot_id],
        )?;
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) an account's console password hash. False if
    /// there is no such account.
    pub(crate) fn set_console_password(
        &self,
        account_id: &str,
        hash: Option<&str>,
    ) -> Result<bool, CatalogError> {
        let conn = self.conn();
        let exists = conn
            .query_row(
                "SELECT 1 FROM accounts WHERE account_id = ?1",
                params![account_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Ok(false);
        }
        match hash {
            Some(hash) => conn.execute(
                "INSERT INTO console_passwords (account_id, hash, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(account_id) DO UPDATE SET hash = excluded.hash, updated_ms = excluded.updated_ms",
                params![account_id, hash, now_ms()],
            )?,
            None => conn.execute(
                "DELETE FROM console_passwords WHERE account_id = ?1",
                params![account_id],
            )?,
        };
        Ok(true)
    }

    /// An account's console password hash, if one is set.
    pub(crate) fn console_password(
        &self,
        account_id: &str,
    ) -> Result<Option<String>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT hash FROM console_passwords WHERE account_id = ?1",
                params![account_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Grantees of an attribute on one resource (sorted).
    pub(crate) fn permissions(
        &self,
        resource_id: &str,
        attribute: &str,
    ) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT grantee FROM permissions WHERE resource_id = ?1 AND attribute = ?2 ORDER BY grantee",
        )?;
        let rows = stmt.query_map(params![resource_id, attribute], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;
