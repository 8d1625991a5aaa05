//! The PostgreSQL catalog's migrations: the SQLite ones (same tables, same numbering; see
//! the crate doc for the schema) in PostgreSQL's dialect — `BIGINT` for numbers and ms
//! times — plus the row triggers that notify other nodes of changes (see the `pg`
//! module doc). Never edit one that has shipped; append.

use postgres::Client;

use super::classify;
use crate::CatalogError;

/// The `pg_advisory_xact_lock` key migrations hold ("openami" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7065_6e61_6d69;

/// Applied in order; entry `i` is schema version `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    super::sessions::MIGRATION_6,
    super::nodes::MIGRATION_7,
    super::node_requests::MIGRATION_8,
    super::gc_leases::MIGRATION_9,
    super::nodes::MIGRATION_10,
];

const MIGRATION_1: &str = r#"
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    secret TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE resources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
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
CREATE FUNCTION openami_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit, once per transaction however many rows changed.
    PERFORM pg_notify('openami_catalog', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION openami_catalog_changed();
CREATE TRIGGER access_keys_changed AFTER INSERT OR UPDATE OR DELETE ON access_keys
    FOR EACH ROW EXECUTE FUNCTION openami_catalog_changed();
CREATE TRIGGER resources_changed AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION openami_catalog_changed();
CREATE TRIGGER tags_changed AFTER INSERT OR UPDATE OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION openami_catalog_changed();
CREATE TRIGGER permissions_changed AFTER INSERT OR UPDATE OR DELETE ON permissions
    FOR EACH ROW EXECUTE FUNCTION openami_catalog_changed();
"#;

/// Blocks of EBS direct uploads in progress (no trigger: never cached).
const MIGRATION_2: &str = r#"
CREATE TABLE upload_blocks (
    snapshot_id TEXT NOT NULL,
    block_index BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, block_index)
);
"#;

/// SSM parameters, one row per version.
const MIGRATION_3: &str = r#"
CREATE TABLE ssm_parameters (
    region TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL,
    modified_ms BIGINT NOT NULL,
    PRIMARY KEY (region, owner, name, version)
);
CREATE TRIGGER ssm_parameters_changed AFTER INSERT OR UPDATE OR DELETE ON ssm_parameters
    FOR EACH ROW EXECUTE FUNCTION openami_catalog_changed();
"#;

/// When each upload block was written.
const MIGRATION_4: &str = r#"
ALTER TABLE upload_blocks ADD COLUMN written_ms BIGINT NOT NULL DEFAULT 0;
"#;

/// Console sign-in passwords (hashes), one per account at most.
const MIGRATION_5: &str = r#"
CREATE TABLE console_passwords (
    account_id TEXT PRIMARY KEY REFERENCES accounts(account_id),
    hash TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TRIGGER console_passwords_changed AFTER INSERT OR UPDATE OR DELETE ON console_passwords
    FOR EACH ROW EXECUTE FUNCTION openami_catalog_changed();
"#;

/// Brings the database to the newest schema, in one transaction under the migration
/// lock (a second node starting at the same time waits, then finds nothing to do).
pub(crate) fn migrate(client: &mut Client) -> Result<(), CatalogError> {
    let mut tx = client.transaction().map_err(classify)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(classify)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .map_err(classify)?;
    let current = match tx
        .query_opt("SELECT version FROM schema_version", &[])
        .map_err(classify)?
    {
        Some(row) => row.try_get::<_, i64>(0).map_err(classify)? as usize,
        None => 0,
    };
    if current > MIGRATIONS.len() {
        return Err(CatalogError::TooNew {
            found: current,
            supported: MIGRATIONS.len(),
        });
    }
    if current == MIGRATIONS.len() {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tracing::info!(version = i + 1, "applying catalog migration (postgres)");
        tx.batch_execute(sql).map_err(classify)?;
    }
    tx.execute("DELETE FROM schema_version", &[])
        .map_err(classify)?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&(MIGRATIONS.len() as i64)],
    )
    .map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(())
}
