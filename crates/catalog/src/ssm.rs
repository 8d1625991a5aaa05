//! Storage of SSM Parameter Store parameters: every version of a parameter is a row
//! (region, owner, name, version) holding the `ssm` crate's JSON document. Versions are
//! created by inserting `latest + 1`; two writers racing for the same version collide on
//! the primary key, so a version is never written twice.

use crate::{Backend, Catalog, CatalogError, dispatch};

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

impl Catalog {
    /// The newest version of a parameter.
    pub fn ssm_latest(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Option<SsmVersion>, CatalogError> {
        dispatch!(self.ssm_latest(region, owner, name))
    }

    /// Every stored version of a parameter, oldest first.
    pub fn ssm_history(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Vec<SsmVersion>, CatalogError> {
        dispatch!(self.ssm_history(region, owner, name))
    }

    /// The newest version of every parameter of `owner` whose name starts with `prefix`,
    /// by name.
    pub fn ssm_list(
        &self,
        region: &str,
        owner: &str,
        prefix: &str,
    ) -> Result<Vec<SsmVersion>, CatalogError> {
        dispatch!(self.ssm_list(region, owner, prefix))
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
        dispatch!(self.ssm_insert(region, owner, version, keep))
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
        dispatch!(self.ssm_delete(region, owner, name, tag_id))
    }
}
