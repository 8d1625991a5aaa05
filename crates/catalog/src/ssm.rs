//! Storage of SSM Parameter Store parameters: every version of a parameter is a row
//! (region, owner, name, version) holding the `ssm` crate's JSON document. Versions are
//! created by inserting `latest + 1`; two writers racing for the same version collide on
//! the primary key, so a version is never written twice.

use rusqlite::{OptionalExtension, params};

use crate::{Catalog, CatalogError, is_unique_violation};

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

/// One stored version of a parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsmVersion {
    /// The parameter's full name, e.g. `/app/db/host`.
    pub name: String,
    /// Its version, from 1.
    pub version: i64,
    /// The `ssm` crate's JSON document.
    pub doc: String,
    /// When this version was written.
    pub modified_ms: i64,
}

fn row_to_version(row: &rusqlite::Row<'_>) -> rusqlite::Result<SsmVersion> {
    Ok(SsmVersion {
        name: row.get(0)?,
        version: row.get(1)?,
        doc: row.get(2)?,
        modified_ms: row.get(3)?,
    })
}

impl Catalog {
    /// The newest version of a parameter.
    pub fn ssm_latest(
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
    pub fn ssm_history(
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
    pub fn ssm_list(
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
    pub fn ssm_insert(
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
    pub fn ssm_delete(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, version: i64) -> SsmVersion {
        SsmVersion {
            name: name.into(),
            version,
            doc: format!("{{\"v\":{version}}}"),
            modified_ms: version,
        }
    }

    #[test]
    fn versions_list_history_and_delete() {
        let c = Catalog::in_memory().unwrap();
        c.ssm_insert("r", "111", &v("/a/b", 1), 100).unwrap();
        c.ssm_insert("r", "111", &v("/a/b", 2), 100).unwrap();
        c.ssm_insert("r", "111", &v("/a/c", 1), 100).unwrap();
        c.ssm_insert("r", "222", &v("/a/b", 1), 100).unwrap();
        assert!(matches!(
            c.ssm_insert("r", "111", &v("/a/b", 2), 100),
            Err(CatalogError::AlreadyExists { .. })
        ));
        assert_eq!(
            c.ssm_latest("r", "111", "/a/b").unwrap().unwrap().version,
            2
        );
        assert_eq!(c.ssm_latest("r2", "111", "/a/b").unwrap(), None);
        let listed = c.ssm_list("r", "111", "/a/").unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|p| (p.name.as_str(), p.version))
            .collect();
        assert_eq!(names, [("/a/b", 2), ("/a/c", 1)]);
        assert!(c.ssm_list("r", "111", "/b").unwrap().is_empty());
        assert_eq!(c.ssm_history("r", "111", "/a/b").unwrap().len(), 2);
        c.set_tags("t", &[("k".into(), "v".into())]).unwrap();
        assert!(c.ssm_delete("r", "111", "/a/b", "t").unwrap());
        assert!(!c.ssm_delete("r", "111", "/a/b", "t").unwrap());
        assert!(c.tags("t").unwrap().is_empty());
        assert_eq!(
            c.ssm_latest("r", "222", "/a/b").unwrap().unwrap().version,
            1
        );
    }

    #[test]
    fn old_versions_are_forgotten() {
        let c = Catalog::in_memory().unwrap();
        for i in 1..=5 {
            c.ssm_insert("r", "o", &v("/x", i), 3).unwrap();
        }
        let kept: Vec<_> = c
            .ssm_history("r", "o", "/x")
            .unwrap()
            .iter()
            .map(|p| p.version)
            .collect();
        assert_eq!(kept, [3, 4, 5]);
    }
}
