//! SQLite storage of SSM Parameter Store parameters (see `crate::ssm`).

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, is_unique_violation};
use crate::{CatalogError, SsmVersion};

/// SSM parameters, one row per version.
pub(crate) const MIGRATION_3: &str = r#"
CREATE TABLE ssm_parameters (
    region TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (region, owner, name, version)
);
"#;

fn row_to_version(row: &rusqlite::Row<'_>) -> rusqlite::Result<SsmVersion> {
    Ok(SsmVersion {
        name: row.get(0)?,
        version: row.get(1)?,
        doc: row.get(2)?,
        modified_ms: row.get(3)?,
    })
}

impl Sqlite {
    /// The newest version of a parameter.
    pub(crate) fn ssm_latest(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Option<SsmVersion>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, version, doc, modified_ms FROM ssm_parameters \
                 WHERE region = ?1 AND owner = ?2 AND name = ?3 ORDER BY version DESC LIMIT 1",
                params![region, owner, name],
                row_to_version,
            )
            .optional()?)
    }

    /// Every stored version of a parameter, oldest first.
    pub(crate) fn ssm_history(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Vec<SsmVersion>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, version, doc, modified_ms FROM ssm_parameters \
             WHERE region = ?1 AND owner = ?2 AND name = ?3 ORDER BY version",
        )?;
        let rows = stmt.query_map(params![region, owner, name], row_to_version)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest version of every parameter of `owner` whose name starts with `prefix`,
    /// by name.
    pub(crate) fn ssm_list(
        &self,
        region: &str,
        owner: &str,
        prefix: &str,
    ) -> Result<Vec<SsmVersion>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT p.name, p.version, p.doc, p.modified_ms FROM ssm_parameters p \
             WHERE p.region = ?1 AND p.owner = ?2 AND substr(p.name, 1, length(?3)) = ?3 \
             AND p.version = (SELECT MAX(q.version) FROM ssm_parameters q \
                 WHERE q.region = p.region AND q.owner = p.owner AND q.name = p.name) \
             ORDER BY p.name",
        )?;
        let rows = stmt.query_map(params![region, owner, prefix], row_to_version)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes `version` of a parameter and forgets versions older than `keep` versions
    /// back. Fails with [`CatalogError::AlreadyExists`] if that version exists (a
    /// concurrent writer got there first).
    pub(crate) fn ssm_insert(
        &self,
        region: &str,
        owner: &str,
        version: &SsmVersion,
        keep: i64,
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO ssm_parameters (region, owner, name, version, doc, modified_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                region,
                owner,
                version.name,
                version.version,
                version.doc,
                version.modified_ms
            ],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                CatalogError::AlreadyExists {
                    what: "parameter version",
                    key: format!("{}:{}", version.name, version.version),
                }
            } else {
                e.into()
            }
        })?;
        tx.execute(
            "DELETE FROM ssm_parameters WHERE region = ?1 AND owner = ?2 AND name = ?3 \
             AND version <= ?4",
            params![region, owner, version.name, version.version - keep],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes every version of a parameter, and the tags of `tag_id`. Returns false if
    /// it did not exist.
    pub(crate) fn ssm_delete(
        &self,
        region: &str,
        owner: &str,
        name: &str,
        tag_id: &str,
    ) -> Result<bool, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM ssm_parameters WHERE region = ?1 AND owner = ?2 AND name = ?3",
            params![region, owner, name],
        )?;
        tx.execute("DELETE FROM tags WHERE resource_id = ?1", params![tag_id])?;
        tx.commit()?;
        Ok(n > 0)
    }
}
