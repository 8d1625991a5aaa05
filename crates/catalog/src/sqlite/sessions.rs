//! SQLite storage of console sessions (see `crate::console_sessions`).

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, is_unique_violation};
use crate::{CatalogError, ConsoleSession};

/// Console sessions, by the SHA-256 of their token.
pub(crate) const MIGRATION_6: &str = r#"
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    access_key_id TEXT,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
CREATE INDEX console_sessions_by_last_seen ON console_sessions(last_seen_ms);
CREATE INDEX console_sessions_by_account ON console_sessions(account_id);
"#;

impl Sqlite {
    pub(crate) fn insert_console_session(&self, s: &ConsoleSession) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "INSERT INTO console_sessions \
                 (token_hash, account_id, access_key_id, csrf, created_ms, last_seen_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.token_hash,
                    s.account_id,
                    s.access_key_id,
                    s.csrf,
                    s.created_ms,
                    s.last_seen_ms
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    CatalogError::AlreadyExists {
                        what: "console session",
                        key: s.token_hash.clone(),
                    }
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    pub(crate) fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConsoleSession>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT token_hash, account_id, access_key_id, csrf, created_ms, last_seen_ms \
                 FROM console_sessions WHERE token_hash = ?1",
                params![token_hash],
                |r| {
                    Ok(ConsoleSession {
                        token_hash: r.get(0)?,
                        account_id: r.get(1)?,
                        access_key_id: r.get(2)?,
                        csrf: r.get(3)?,
                        created_ms: r.get(4)?,
                        last_seen_ms: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub(crate) fn touch_console_session(
        &self,
        token_hash: &str,
        last_seen_ms: i64,
    ) -> Result<bool, CatalogError> {
        let n = self.conn().execute(
            "UPDATE console_sessions SET last_seen_ms = max(last_seen_ms, ?2) WHERE token_hash = ?1",
            params![token_hash, last_seen_ms],
        )?;
        Ok(n > 0)
    }

    pub(crate) fn delete_console_session(&self, token_hash: &str) -> Result<bool, CatalogError> {
        let n = self.conn().execute(
            "DELETE FROM console_sessions WHERE token_hash = ?1",
            params![token_hash],
        )?;
        Ok(n > 0)
    }

    pub(crate) fn purge_console_sessions(&self, cutoff_ms: i64) -> Result<u64, CatalogError> {
        let n = self.conn().execute(
            "DELETE FROM console_sessions WHERE last_seen_ms < ?1",
            params![cutoff_ms],
        )?;
        Ok(n as u64)
    }

    pub(crate) fn delete_console_sessions_of(&self, account_id: &str) -> Result<u64, CatalogError> {
        let n = self.conn().execute(
            "DELETE FROM console_sessions WHERE account_id = ?1",
            params![account_id],
        )?;
        Ok(n as u64)
    }
}
