//! The catalog's queries in PostgreSQL's dialect: each method is one job (one statement
//! or one transaction) run by a worker thread; arguments are copied into the job.

use std::collections::HashMap;

use postgres::Row;

use super::{Postgres, classify, exists};
use crate::{Account, CatalogError, ResourceRow, SsmVersion, now_ms};

const RESOURCE_COLUMNS: &str = "id, kind, account_id, region, state, doc, created_at_ms";

fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, CatalogError> {
    row.try_get(i).map_err(classify)
}

fn to_resource(row: &Row) -> Result<ResourceRow, CatalogError> {
    Ok(ResourceRow {
        id: get(row, 0)?,
        kind: get(row, 1)?,
        account_id: get(row, 2)?,
        region: get(row, 3)?,
        state: get(row, 4)?,
        doc: get(row, 5)?,
        created_at_ms: get(row, 6)?,
    })
}

fn to_version(row: &Row) -> Result<SsmVersion, CatalogError> {
    Ok(SsmVersion {
        name: get(row, 0)?,
        version: get(row, 1)?,
        doc: get(row, 2)?,
        modified_ms: get(row, 3)?,
    })
}

fn pairs(rows: Vec<Row>) -> Result<Vec<(String, String)>, CatalogError> {
    rows.iter().map(|r| Ok((get(r, 0)?, get(r, 1)?))).collect()
}

fn strings(rows: Vec<Row>) -> Result<Vec<String>, CatalogError> {
    rows.iter().map(|r| get(r, 0)).collect()
}

const UPSERT_TAG: &str = "INSERT INTO tags (resource_id, key, value) VALUES ($1, $2, $3) \
     ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value";

impl Postgres {
    pub(crate) fn create_account(
        &self,
        account: &Account,
        access_key_id: &str,
        secret: &str,
    ) -> Result<(), CatalogError> {
        let (account, key, secret) = (account.clone(), access_key_id.to_owned(), secret.to_owned());
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            let now = now_ms();
            tx.execute(
                "INSERT INTO accounts (account_id, name, created_at_ms) VALUES ($1, $2, $3)",
                &[&account.account_id, &account.name, &now],
            )
            .map_err(|e| {
                exists(
                    e,
                    "account",
                    format!("{} ({})", account.name, account.account_id),
                )
            })?;
            tx.execute(
                "INSERT INTO access_keys (access_key_id, account_id, secret, created_at_ms) \
                 VALUES ($1, $2, $3, $4)",
                &[&key, &account.account_id, &secret, &now],
            )
            .map_err(|e| exists(e, "access key", key.clone()))?;
            tx.commit().map_err(classify)
        })
    }

    pub(crate) fn accounts(&self) -> Result<Vec<Account>, CatalogError> {
        self.call(|c| {
            let rows = c
                .query(
                    "SELECT account_id, name FROM accounts ORDER BY account_id COLLATE \"C\"",
                    &[],
                )
                .map_err(classify)?;
            rows.iter()
                .map(|r| {
                    Ok(Account {
                        account_id: get(r, 0)?,
                        name: get(r, 1)?,
                    })
                })
                .collect()
        })
    }

    pub(crate) fn access_key(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(String, String)>, CatalogError> {
        let key = access_key_id.to_owned();
        self.call(move |c| {
            let row = c
                .query_opt(
                    "SELECT account_id, secret FROM access_keys WHERE access_key_id = $1",
                    &[&key],
                )
                .map_err(classify)?;
            row.map(|r| Ok((get(&r, 0)?, get(&r, 1)?))).transpose()
        })
    }

    pub(crate) fn access_keys_of(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        let account = account_id.to_owned();
        self.call(move |c| {
            pairs(
                c.query(
                    "SELECT access_key_id, secret FROM access_keys WHERE account_id = $1 \
                     ORDER BY created_at_ms, access_key_id COLLATE \"C\"",
                    &[&account],
                )
                .map_err(classify)?,
            )
        })
    }

    pub(crate) fn insert_resource_with_tags(
        &self,
        row: &ResourceRow,
        tags: &[(String, String)],
    ) -> Result<(), CatalogError> {
        let (row, tags) = (row.clone(), tags.to_vec());
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            tx.execute(
                &format!(
                    "INSERT INTO resources ({RESOURCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &row.id,
                    &row.kind,
                    &row.account_id,
                    &row.region,
                    &row.state,
                    &row.doc,
                    &row.created_at_ms,
                ],
            )
            .map_err(|e| exists(e, "resource", row.id.clone()))?;
            for (key, value) in &tags {
                tx.execute(UPSERT_TAG, &[&row.id, key, value])
                    .map_err(classify)?;
            }
            tx.commit().map_err(classify)
        })
    }

    pub(crate) fn update_resource(
        &self,
        id: &str,
        state: &str,
        doc: &str,
    ) -> Result<bool, CatalogError> {
        let (id, state, doc) = (id.to_owned(), state.to_owned(), doc.to_owned());
        self.call(move |c| {
            let n = c
                .execute(
                    "UPDATE resources SET state = $2, doc = $3 WHERE id = $1",
                    &[&id, &state, &doc],
                )
                .map_err(classify)?;
            Ok(n == 1)
        })
    }

    pub(crate) fn resource(&self, id: &str) -> Result<Option<ResourceRow>, CatalogError> {
        let id = id.to_owned();
        self.call(move |c| {
            c.query_opt(
                &format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE id = $1"),
                &[&id],
            )
            .map_err(classify)?
            .map(|r| to_resource(&r))
            .transpose()
        })
    }

    pub(crate) fn resources(
        &self,
        kind: &str,
        region: &str,
    ) -> Result<Vec<ResourceRow>, CatalogError> {
        let (kind, region) = (kind.to_owned(), region.to_owned());
        self.call(move |c| {
            c.query(
                &format!(
                    "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND region = $2 ORDER BY id COLLATE \"C\""
                ),
                &[&kind, &region],
            )
            .map_err(classify)?
            .iter()
            .map(to_resource)
            .collect()
        })
    }

    pub(crate) fn resources_of_kind(&self, kind: &str) -> Result<Vec<ResourceRow>, CatalogError> {
        let kind = kind.to_owned();
        self.call(move |c| {
            c.query(
                &format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 ORDER BY id COLLATE \"C\""),
                &[&kind],
            )
            .map_err(classify)?
            .iter()
            .map(to_resource)
            .collect()
        })
    }

    pub(crate) fn delete_resource(&self, id: &str) -> Result<bool, CatalogError> {
        let id = id.to_owned();
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            let n = tx
                .execute("DELETE FROM resources WHERE id = $1", &[&id])
                .map_err(classify)?;
            tx.execute("DELETE FROM tags WHERE resource_id = $1", &[&id])
                .map_err(classify)?;
            tx.execute("DELETE FROM permissions WHERE resource_id = $1", &[&id])
                .map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(n == 1)
        })
    }

    pub(crate) fn set_tags(
        &self,
        resource_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), CatalogError> {
        let (id, tags) = (resource_id.to_owned(), tags.to_vec());
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            for (key, value) in &tags {
                tx.execute(UPSERT_TAG, &[&id, key, value])
                    .map_err(classify)?;
            }
            tx.commit().map_err(classify)
        })
    }

    pub(crate) fn delete_tags(
        &self,
        resource_id: &str,
        tags: &[(String, Option<String>)],
    ) -> Result<(), CatalogError> {
        let (id, tags) = (resource_id.to_owned(), tags.to_vec());
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            for (key, value) in &tags {
                match value {
                    Some(v) => tx.execute(
                        "DELETE FROM tags WHERE resource_id = $1 AND key = $2 AND value = $3",
                        &[&id, key, v],
                    ),
                    None => tx.execute(
                        "DELETE FROM tags WHERE resource_id = $1 AND key = $2",
                        &[&id, key],
                    ),
                }
                .map_err(classify)?;
            }
            tx.commit().map_err(classify)
        })
    }

    pub(crate) fn clear_tags(&self, resource_id: &str) -> Result<(), CatalogError> {
        let id = resource_id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM tags WHERE resource_id = $1", &[&id])
                .map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn all_tags(&self) -> Result<HashMap<String, Vec<(String, String)>>, CatalogError> {
        self.call(|c| {
            let rows = c
                .query(
                    "SELECT resource_id, key, value FROM tags ORDER BY resource_id COLLATE \"C\", key COLLATE \"C\"",
                    &[],
                )
                .map_err(classify)?;
            let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for r in &rows {
                out.entry(get(r, 0)?)
                    .or_default()
                    .push((get(r, 1)?, get(r, 2)?));
            }
            Ok(out)
        })
    }

    pub(crate) fn tags(&self, resource_id: &str) -> Result<Vec<(String, String)>, CatalogError> {
        let id = resource_id.to_owned();
        self.call(move |c| {
            pairs(
                c.query(
                    "SELECT key, value FROM tags WHERE resource_id = $1 ORDER BY key COLLATE \"C\"",
                    &[&id],
                )
                .map_err(classify)?,
            )
        })
    }

    /// Runs one statement with three text parameters.
    fn exec3(&self, sql: &'static str, a: &str, b: &str, c: &str) -> Result<(), CatalogError> {
        let (a, b, c3) = (a.to_owned(), b.to_owned(), c.to_owned());
        self.call(move |c| {
            c.execute(sql, &[&a, &b, &c3]).map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn add_permission(
        &self,
        resource_id: &str,
        attribute: &str,
        grantee: &str,
    ) -> Result<(), CatalogError> {
        self.exec3(
            "INSERT INTO permissions (resource_id, attribute, grantee) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            resource_id,
            attribute,
            grantee,
        )
    }

    pub(crate) fn remove_permission(
        &self,
        resource_id: &str,
        attribute: &str,
        grantee: &str,
    ) -> Result<(), CatalogError> {
        self.exec3(
            "DELETE FROM permissions WHERE resource_id = $1 AND attribute = $2 AND grantee = $3",
            resource_id,
            attribute,
            grantee,
        )
    }

    pub(crate) fn clear_permissions(
        &self,
        resource_id: &str,
        attribute: &str,
    ) -> Result<(), CatalogError> {
        let (id, attribute) = (resource_id.to_owned(), attribute.to_owned());
        self.call(move |c| {
            c.execute(
                "DELETE FROM permissions WHERE resource_id = $1 AND attribute = $2",
                &[&id, &attribute],
            )
            .map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn all_permissions(
        &self,
        attribute: &str,
    ) -> Result<HashMap<String, Vec<String>>, CatalogError> {
        let attribute = attribute.to_owned();
        self.call(move |c| {
            let rows = c
                .query(
                    "SELECT resource_id, grantee FROM permissions WHERE attribute = $1 \
                     ORDER BY resource_id COLLATE \"C\", grantee COLLATE \"C\"",
                    &[&attribute],
                )
                .map_err(classify)?;
            let mut out: HashMap<String, Vec<String>> = HashMap::new();
            for r in &rows {
                out.entry(get(r, 0)?).or_default().push(get(r, 1)?);
            }
            Ok(out)
        })
    }

    pub(crate) fn permissions(
        &self,
        resource_id: &str,
        attribute: &str,
    ) -> Result<Vec<String>, CatalogError> {
        let (id, attribute) = (resource_id.to_owned(), attribute.to_owned());
        self.call(move |c| {
            strings(
                c.query(
                    "SELECT grantee FROM permissions WHERE resource_id = $1 AND attribute = $2 \
                     ORDER BY grantee COLLATE \"C\"",
                    &[&id, &attribute],
                )
                .map_err(classify)?,
            )
        })
    }

    pub(crate) fn put_upload_block(
        &self,
        snapshot_id: &str,
        index: u64,
        hash: &str,
    ) -> Result<(), CatalogError> {
        let (id, hash) = (snapshot_id.to_owned(), hash.to_owned());
        let index = index as i64;
        self.call(move |c| {
            c.execute(
                "INSERT INTO upload_blocks (snapshot_id, block_index, hash, written_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (snapshot_id, block_index) \
                 DO UPDATE SET hash = excluded.hash, written_ms = excluded.written_ms",
                &[&id, &index, &hash, &now_ms()],
            )
            .map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn put_upload_blocks(
        &self,
        blocks: &[(String, u64, String)],
    ) -> Result<(), CatalogError> {
        let blocks = blocks.to_vec();
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            let stmt = tx
                .prepare(
                    "INSERT INTO upload_blocks (snapshot_id, block_index, hash, written_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (snapshot_id, block_index) \
                     DO UPDATE SET hash = excluded.hash, written_ms = excluded.written_ms",
                )
                .map_err(classify)?;
            let now = now_ms();
            for (id, index, hash) in &blocks {
                let index = *index as i64;
                tx.execute(&stmt, &[id, &index, hash, &now])
                    .map_err(classify)?;
            }
            tx.commit().map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn upload_last_write(&self, snapshot_id: &str) -> Result<Option<i64>, CatalogError> {
        let id = snapshot_id.to_owned();
        self.call(move |c| {
            let row = c
                .query_one(
                    "SELECT MAX(written_ms) FROM upload_blocks WHERE snapshot_id = $1",
                    &[&id],
                )
                .map_err(classify)?;
            get(&row, 0)
        })
    }

    pub(crate) fn upload_snapshot_ids(&self) -> Result<Vec<String>, CatalogError> {
        self.call(|c| {
            strings(
                c.query("SELECT DISTINCT snapshot_id FROM upload_blocks", &[])
                    .map_err(classify)?,
            )
        })
    }

    pub(crate) fn upload_blocks(
        &self,
        snapshot_id: &str,
    ) -> Result<Vec<(u64, String)>, CatalogError> {
        let id = snapshot_id.to_owned();
        self.call(move |c| {
            c.query(
                "SELECT block_index, hash FROM upload_blocks WHERE snapshot_id = $1 \
                 ORDER BY block_index",
                &[&id],
            )
            .map_err(classify)?
            .iter()
            .map(|r| Ok((get::<i64>(r, 0)? as u64, get(r, 1)?)))
            .collect()
        })
    }

    pub(crate) fn upload_block_count(&self, snapshot_id: &str) -> Result<u64, CatalogError> {
        let id = snapshot_id.to_owned();
        self.call(move |c| {
            let row = c
                .query_one(
                    "SELECT COUNT(*) FROM upload_blocks WHERE snapshot_id = $1",
                    &[&id],
                )
                .map_err(classify)?;
            Ok(get::<i64>(&row, 0)? as u64)
        })
    }

    pub(crate) fn all_upload_hashes(&self) -> Result<Vec<String>, CatalogError> {
        self.call(|c| {
            strings(
                c.query(
                    "SELECT DISTINCT hash FROM upload_blocks WHERE hash <> ''",
                    &[],
                )
                .map_err(classify)?,
            )
        })
    }

    pub(crate) fn clear_upload(&self, snapshot_id: &str) -> Result<(), CatalogError> {
        let id = snapshot_id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM upload_blocks WHERE snapshot_id = $1", &[&id])
                .map_err(classify)?;
            Ok(())
        })
    }

    pub(crate) fn set_console_password(
        &self,
        account_id: &str,
        hash: Option<&str>,
    ) -> Result<bool, CatalogError> {
        let (id, hash) = (account_id.to_owned(), hash.map(str::to_owned));
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            let found = tx
                .query_opt(
                    "SELECT account_id FROM accounts WHERE account_id = $1",
                    &[&id],
                )
                .map_err(classify)?
                .is_some();
            if !found {
                return Ok(false);
            }
            match hash {
                Some(hash) => tx.execute(
                    "INSERT INTO console_passwords (account_id, hash, updated_ms) \
                     VALUES ($1, $2, $3) ON CONFLICT (account_id) \
                     DO UPDATE SET hash = excluded.hash, updated_ms = excluded.updated_ms",
                    &[&id, &hash, &now_ms()],
                ),
                None => tx.execute(
                    "DELETE FROM console_passwords WHERE account_id = $1",
                    &[&id],
                ),
            }
            .map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(true)
        })
    }

    pub(crate) fn console_password(
        &self,
        account_id: &str,
    ) -> Result<Option<String>, CatalogError> {
        let id = account_id.to_owned();
        self.call(move |c| {
            c.query_opt(
                "SELECT hash FROM console_passwords WHERE account_id = $1",
                &[&id],
            )
            .map_err(classify)?
            .map(|r| get(&r, 0))
            .transpose()
        })
    }

    pub(crate) fn ssm_latest(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Option<SsmVersion>, CatalogError> {
        let (region, owner, name) = (region.to_owned(), owner.to_owned(), name.to_owned());
        self.call(move |c| {
            c.query_opt(
                "SELECT name, version, doc, modified_ms FROM ssm_parameters \
                 WHERE region = $1 AND owner = $2 AND name = $3 ORDER BY version DESC LIMIT 1",
                &[&region, &owner, &name],
            )
            .map_err(classify)?
            .map(|r| to_version(&r))
            .transpose()
        })
    }

    pub(crate) fn ssm_history(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Vec<SsmVersion>, CatalogError> {
        let (region, owner, name) = (region.to_owned(), owner.to_owned(), name.to_owned());
        self.call(move |c| {
            c.query(
                "SELECT name, version, doc, modified_ms FROM ssm_parameters \
                 WHERE region = $1 AND owner = $2 AND name = $3 ORDER BY version",
                &[&region, &owner, &name],
            )
            .map_err(classify)?
            .iter()
            .map(to_version)
            .collect()
        })
    }

    pub(crate) fn ssm_list(
        &self,
        region: &str,
        owner: &str,
        prefix: &str,
    ) -> Result<Vec<SsmVersion>, CatalogError> {
        let (region, owner, prefix) = (region.to_owned(), owner.to_owned(), prefix.to_owned());
        self.call(move |c| {
            c.query(
                "SELECT p.name, p.version, p.doc, p.modified_ms FROM ssm_parameters p \
                 WHERE p.region = $1 AND p.owner = $2 \
                 AND left(p.name, char_length($3::text)) = $3::text \
                 AND p.version = (SELECT MAX(q.version) FROM ssm_parameters q \
                     WHERE q.region = p.region AND q.owner = p.owner AND q.name = p.name) \
                 ORDER BY p.name COLLATE \"C\"",
                &[&region, &owner, &prefix],
            )
            .map_err(classify)?
            .iter()
            .map(to_version)
            .collect()
        })
    }

    pub(crate) fn ssm_insert(
        &self,
        region: &str,
        owner: &str,
        version: &SsmVersion,
        keep: i64,
    ) -> Result<(), CatalogError> {
        let (region, owner, v) = (region.to_owned(), owner.to_owned(), version.clone());
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            tx.execute(
                "INSERT INTO ssm_parameters (region, owner, name, version, doc, modified_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&region, &owner, &v.name, &v.version, &v.doc, &v.modified_ms],
            )
            .map_err(|e| exists(e, "parameter version", format!("{}:{}", v.name, v.version)))?;
            tx.execute(
                "DELETE FROM ssm_parameters WHERE region = $1 AND owner = $2 AND name = $3 \
                 AND version <= $4",
                &[&region, &owner, &v.name, &(v.version - keep)],
            )
            .map_err(classify)?;
            tx.commit().map_err(classify)
        })
    }

    pub(crate) fn ssm_delete(
        &self,
        region: &str,
        owner: &str,
        name: &str,
        tag_id: &str,
    ) -> Result<bool, CatalogError> {
        let (region, owner, name, tag_id) = (
            region.to_owned(),
            owner.to_owned(),
            name.to_owned(),
            tag_id.to_owned(),
        );
        self.call(move |c| {
            let mut tx = c.transaction().map_err(classify)?;
            let n = tx
                .execute(
                    "DELETE FROM ssm_parameters WHERE region = $1 AND owner = $2 AND name = $3",
                    &[&region, &owner, &name],
                )
                .map_err(classify)?;
            tx.execute("DELETE FROM tags WHERE resource_id = $1", &[&tag_id])
                .map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(n > 0)
        })
    }
}
