//! Storage of web console sessions, so they survive a restart of the server and are
//! shared by every server on one catalog. A row is keyed by the hex SHA-256 of the
//! session token (the cookie value); the token itself is never stored, so a copy of the
//! database signs no one in. The console crate decides what the rows mean (idle expiry,
//! CSRF); the catalog only stores them. The table has no change trigger (PostgreSQL): a
//! session's `last_seen_ms` is written often and no cache depends on it.

use crate::{Backend, Catalog, CatalogError, dispatch};

/// One stored console session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// 64 hex digits: the SHA-256 of the session token.
    pub token_hash: String,
    /// The signed-in account.
    pub account_id: String,
    /// The access key used to sign in; `None` after a password sign-in.
    pub access_key_id: Option<String>,
    /// The CSRF token every form of the session carries.
    pub csrf: String,
    /// When the session started.
    pub created_ms: i64,
    /// When the session was last used (updated at most about once a minute).
    pub last_seen_ms: i64,
}

impl Catalog {
    /// Stores a new session. Fails with [`CatalogError::AlreadyExists`] if the token
    /// hash is taken.
    pub fn insert_console_session(&self, session: &ConsoleSession) -> Result<(), CatalogError> {
        dispatch!(self.insert_console_session(session))
    }

    /// The session with this token hash, expired or not.
    pub fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConsoleSession>, CatalogError> {
        dispatch!(self.console_session(token_hash))
    }

    /// Sets a session's `last_seen_ms` (never moving it back). False if there is no such
    /// session.
    pub fn touch_console_session(
        &self,
        token_hash: &str,
        last_seen_ms: i64,
    ) -> Result<bool, CatalogError> {
        dispatch!(self.touch_console_session(token_hash, last_seen_ms))
    }

    /// Deletes a session (sign-out). False if there was none.
    pub fn delete_console_session(&self, token_hash: &str) -> Result<bool, CatalogError> {
        dispatch!(self.delete_console_session(token_hash))
    }

    /// Deletes every session last seen before `cutoff_ms`; returns how many.
    pub fn purge_console_sessions(&self, cutoff_ms: i64) -> Result<u64, CatalogError> {
        dispatch!(self.purge_console_sessions(cutoff_ms))
    }

    /// Deletes every session of an account (e.g. after its password changed); returns
    /// how many.
    pub fn delete_console_sessions_of(&self, account_id: &str) -> Result<u64, CatalogError> {
        dispatch!(self.delete_console_sessions_of(account_id))
    }
}
