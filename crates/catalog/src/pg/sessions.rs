//! PostgreSQL storage of console sessions (see `crate::console_sessions`).

use postgres::Row;

use super::{Postgres, classify};
use crate::{CatalogError, ConsoleSession};

/// Console sessions, by the SHA-256 of their token (no change trigger: never cached,
/// and `last_seen_ms` is written often).
pub(crate) const MIGRATION_6: &str = r#"
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    access_key_id TEXT,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_last_seen ON console_sessions(last_seen_ms);
CREATE INDEX console_sessions_by_account ON console_sessions(account_id);
"#;

fn to_session(r: &Row) -> Result<ConsoleSession, CatalogError> {
    Ok(ConsoleSession {
        token_hash: r.try_get(0).map_err(classify)?,
        account_id: r.try_get(1).map_err(classify)?,
        access_key_id: r.try_get(2).map_err(classify)?,
        csrf: r.try_get(3).map_err(classify)?,
        created_ms: r.try_get(4).map_err(classify)?,
        last_seen_ms: r.try_get(5).map_err(classify)?,
    })
}

impl Postgres {
    pub(crate) fn insert_console_session(&self, s: &ConsoleSession) -> Result<(), CatalogError> {
        let s = s.clone();
        self.call(move |c| {
            let n = c
                .execute(
                    "INSERT INTO console_sessions \
                     (token_hash, account_id, access_key_id, csrf, created_ms, last_seen_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_hash) DO NOTHING",
                    &[
                        &s.token_hash,
                        &s.account_id,
                        &s.access_key_id,
                        &s.csrf,
                        &s.created_ms,
                        &s.last_seen_ms,
                    ],
                )
                .map_err(classify)?;
            if n == 0 {
                return Err(CatalogError::AlreadyExists {
                    what: "console session",
                    key: s.token_hash,
                });
            }
            Ok(())
        })
    }

    pub(crate) fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConsoleSession>, CatalogError> {
        let h = token_hash.to_owned();
        self.call(move |c| {
            c.query_opt(
                "SELECT token_hash, account_id, access_key_id, csrf, created_ms, last_seen_ms \
                 FROM console_sessions WHERE token_hash = $1",
                &[&h],
            )
            .map_err(classify)?
            .map(|r| to_session(&r))
            .transpose()
        })
    }

    pub(crate) fn touch_console_session(
        &self,
        token_hash: &str,
        last_seen_ms: i64,
    ) -> Result<bool, CatalogError> {
        let h = token_hash.to_owned();
        self.call(move |c| {
            let n = c
                .execute(
                    "UPDATE console_sessions SET last_seen_ms = GREATEST(last_seen_ms, $2) \
                     WHERE token_hash = $1",
                    &[&h, &last_seen_ms],
                )
                .map_err(classify)?;
            Ok(n > 0)
        })
    }

    pub(crate) fn delete_console_session(&self, token_hash: &str) -> Result<bool, CatalogError> {
        let h = token_hash.to_owned();
        self.call(move |c| {
            let n = c
                .execute("DELETE FROM console_sessions WHERE token_hash = $1", &[&h])
                .map_err(classify)?;
            Ok(n > 0)
        })
    }

    pub(crate) fn purge_console_sessions(&self, cutoff_ms: i64) -> Result<u64, CatalogError> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM console_sessions WHERE last_seen_ms < $1",
                &[&cutoff_ms],
            )
            .map_err(classify)
        })
    }

    pub(crate) fn delete_console_sessions_of(&self, account_id: &str) -> Result<u64, CatalogError> {
        let id = account_id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM console_sessions WHERE account_id = $1", &[&id])
                .map_err(classify)
        })
    }
}
