//! Parameters over the catalog: the stored document of a version, and the operations
//! every entry point shares (put with version numbering, get by selector, delete, list).

use catalog::{Catalog, CatalogError, SsmVersion};
use serde::{Deserialize, Serialize};

use crate::SsmError;
use crate::names::{self, Selector};

/// Versions kept per parameter (AWS keeps 100).
pub const KEEP_VERSIONS: i64 = 100;

/// How often a put is retried when another writer took the version it computed.
const PUT_ATTEMPTS: usize = 32;

/// What one version of a parameter holds (the catalog row's JSON document).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    /// `String`, `StringList` or `SecureString`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `text` or `aws:ec2:image`.
    pub data_type: String,
    /// The value as given (SecureString values are not encrypted at rest).
    pub value: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `alias/aws/ssm` for SecureString.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `Standard` or `Advanced`.
    pub tier: String,
    /// Who wrote the version (an IAM-style ARN).
    pub modified_by: String,
}

/// One version of a parameter, read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Full name.
    pub name: String,
    /// Catalog owner: an account id or [`names::PUBLIC_OWNER`].
    pub owner: String,
    /// Version number.
    pub version: i64,
    /// When written (ms since the epoch).
    pub modified_ms: i64,
    /// The document.
    pub doc: Doc,
}

impl Param {
    fn from_row(owner: &str, row: SsmVersion) -> Result<Self, SsmError> {
        let doc = serde_json::from_str(&row.doc)
            .map_err(|e| SsmError::internal(format!("parameter {} document: {e}", row.name)))?;
        Ok(Param {
            name: row.name,
            owner: owner.to_string(),
            version: row.version,
            modified_ms: row.modified_ms,
            doc,
        })
    }
}

/// The tag key of a parameter in the catalog's tag table.
pub fn tag_id(region: &str, owner: &str, name: &str) -> String {
    format!("ssm:{region}:{owner}:{name}")
}

fn not_found(reference: &str) -> SsmError {
    SsmError::new(
        "ParameterNotFound",
        format!("Parameter {reference} not found."),
    )
}

/// Reads `name[:selector]` as `account_id` sees it: its own parameters, or public ones.
pub fn get(
    catalog: &Catalog,
    account_id: &str,
    region: &str,
    reference: &str,
) -> Result<Param, SsmError> {
    let (name, selector) = names::split_selector(reference);
    names::validate(name)?;
    let owner = names::owner_for(name, account_id);
    match selector {
        Selector::Latest => catalog
            .ssm_latest(region, owner, name)?
            .map(|row| Param::from_row(owner, row))
            .transpose()?
            .ok_or_else(|| not_found(reference)),
        Selector::Version(v) => {
            let history = catalog.ssm_history(region, owner, name)?;
            if history.is_empty() {
                return Err(not_found(name));
            }
            let row = history
                .into_iter()
                .find(|row| row.version == v)
                .ok_or_else(|| {
                    SsmError::new(
                        "ParameterVersionNotFound",
                        format!(
                            "Systems Manager could not find version {v} of {name}. Verify the version and try again."
                        ),
                    )
                })?;
            Param::from_row(owner, row)
        }
        Selector::Label(label) => Err(SsmError::new(
            "ParameterVersionLabelNotFound",
            format!(
                "Systems Manager could not find label {label} for parameter {name} (openami does not support labels)."
            ),
        )),
    }
}

/// Every stored version of a parameter, oldest first.
pub fn history(
    catalog: &Catalog,
    account_id: &str,
    region: &str,
    name: &str,
) -> Result<Vec<Param>, SsmError> {
    names::validate(name)?;
    let owner = names::owner_for(name, account_id);
    let rows = catalog.ssm_history(region, owner, name)?;
    if rows.is_empty() {
        return Err(not_found(name));
    }
    rows.into_iter()
        .map(|row| Param::from_row(owner, row))
        .collect()
}

/// The newest version of every parameter of `owner` whose name starts with `prefix`.
pub fn list(
    catalog: &Catalog,
    region: &str,
    owner: &str,
    prefix: &str,
) -> Result<Vec<Param>, SsmError> {
    catalog
        .ssm_list(region, owner, prefix)?
        .into_iter()
        .map(|row| Param::from_row(owner, row))
        .collect()
}

/// Writes a new version of `name` owned by `owner`. `build` gets the current newest
/// version (if any) and returns the new document, or `None` to write nothing. Returns
/// the version now current and whether one was written. Races with other writers are
/// retried, then answered `TooManyUpdates`.
pub fn put(
    catalog: &Catalog,
    region: &str,
    owner: &str,
    name: &str,
    mut build: impl FnMut(Option<&Param>) -> Result<Option<Doc>, SsmError>,
) -> Result<(i64, bool), SsmError> {
    for _ in 0..PUT_ATTEMPTS {
        let current = catalog
            .ssm_latest(region, owner, name)?
            .map(|row| Param::from_row(owner, row))
            .transpose()?;
        let Some(doc) = build(current.as_ref())? else {
            return Ok((current.map_or(0, |c| c.version), false));
        };
        let version = current.map_or(1, |c| c.version + 1);
        let row = SsmVersion {
            name: name.to_string(),
            version,
            doc: serde_json::to_string(&doc)
                .map_err(|e| SsmError::internal(format!("parameter document: {e}")))?,
            modified_ms: catalog::now_ms(),
        };
        match catalog.ssm_insert(region, owner, &row, KEEP_VERSIONS) {
            Ok(()) => return Ok((version, true)),
            Err(CatalogError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SsmError::new(
        "TooManyUpdates",
        format!("There are concurrent updates for the resource {name}; try again."),
    ))
}

/// Deletes a parameter of `account_id` (never a public one: callers check).
pub fn delete(catalog: &Catalog, region: &str, owner: &str, name: &str) -> Result<bool, SsmError> {
    Ok(catalog.ssm_delete(region, owner, name, &tag_id(region, owner, name))?)
}

/// Who modified public parameters.
pub fn operator_user() -> String {
    "openami-operator".to_string()
}
