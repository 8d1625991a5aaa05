//! Operator catalog import (`openami catalog import`): the JSON `aws ec2 describe-images`
//! prints becomes image rows of operator accounts — the Quick Start catalog (owner alias
//! `amazon`, so `--owners amazon` lookups work) or marketplace images with product codes
//! (`aws-marketplace`) — keeping image ids, names and attributes, so that code with
//! hard-coded AMI ids or `most_recent` name filters resolves against openami.
//!
//! It works on a [`Catalog`], not on a running [`crate::Cloud`]: the command runs while
//! the server runs, and the server notices the new rows through SQLite's `data_version`
//! (see the image index). Rules:
//!
//! - Input: `{"Images": [...]}` or a bare list, at most [`MAX_INPUT_BYTES`]; unknown
//!   fields are ignored. Each entry is checked on its own: a bad one is reported with an
//!   EC2 error code and message (naming the field whose JSON type is wrong), and the
//!   others are still imported.
//! - Ids (`ami-`, `aki-`, `ari-` and 8 or 17 hex digits) keep their prefix, which gives
//!   the image type (machine, kernel, ramdisk); an `ImageType` that disagrees is an error.
//!   Names, descriptions, enumerations and mappings follow RegisterImage's rules; absent
//!   attributes take RegisterImage's defaults (x86_64, hvm, ebs, `available`, now).
//! - Owner: [`ImportOptions::owner_id`] when given, else the entry's `OwnerId`; alias:
//!   [`ImportOptions::owner_alias`] when given, else `ImageOwnerAlias`. The owner account
//!   need not exist: nobody can act as it through the API, so only the operator changes
//!   its images (by importing again with `replace`).
//! - `Public` (default true) gives a `launchPermission` grant to `all`, unless
//!   [`ImportOptions::private`].
//! - Snapshots named by mappings need not exist locally: they are kept as given (an EBS
//!   mapping with a snapshot must then give its `VolumeSize`). [`ImportOptions::root_snapshot`]
//!   points every image's root EBS mapping at a local completed snapshot of the region,
//!   which everyone who may launch the image must be able to use: shared with `all` for a
//!   public image; for a private one, also the owner's own or one shared with the owner.
//! - Existing ids are skipped unless [`ImportOptions::replace`], which overwrites the row,
//!   its tags and its launch permissions. Names stay unique per owner and region
//!   (`InvalidAMIName.Duplicate`) as RegisterImage enforces. The check reads the catalog
//!   outside the server's lock, so a RegisterImage by the owner account racing the import
//!   could take the same name; operator accounts have no access keys in practice.

mod described;
mod prepare;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use catalog::{Catalog, CatalogError, ResourceRow};
use serde::Serialize;

use crate::snapshots::{self, CREATE_VOLUME_PERMISSION};
use crate::{Ec2Error, datadir, ids};

use super::validate::SnapshotInfo;
use super::{KIND, LAUNCH_PERMISSION, doc_of, encode};
use prepare::{Prepared, RootSnapshot, bad, prepare};

pub use prepare::valid_owner_alias;

pub use described::{
    DescribedEbs, DescribedImage, DescribedMapping, DescribedProductCode, DescribedTag, Entry,
    parse_input,
};

/// Largest input accepted (64 MiB).
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Errors that stop a whole import (a bad entry is reported in [`ImportReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("the input is {0} bytes; at most {MAX_INPUT_BYTES} are accepted")]
    TooLarge(usize),
    /// The input is not JSON.
    #[error("the input is not valid JSON: {0}")]
    Json(serde_json::Error),
    /// The input is JSON of the wrong shape.
    #[error(
        "expected the output of `aws ec2 describe-images` ({{\"Images\": [...]}}) or a list of images"
    )]
    Shape,
    /// An option is invalid (or its snapshot unusable).
    #[error("{0}")]
    Options(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A stored image could not be read.
    #[error(transparent)]
    Engine(#[from] Ec2Error),
}

/// How to import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// Region the images live in.
    pub region: String,
    /// Owner alias for every image (`amazon`, `aws-marketplace`, or another lowercase
    /// alias); default: each entry's `ImageOwnerAlias`.
    pub owner_alias: Option<String>,
    /// Owner account for every image; default: each entry's `OwnerId`.
    pub owner_id: Option<String>,
    /// Keep every image owner-only, whatever its `Public`.
    pub private: bool,
    /// Overwrite images whose ids exist already (default: skip them).
    pub replace: bool,
    /// A local completed snapshot every image's root EBS mapping is pointed at.
    pub root_snapshot: Option<String>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            region: "us-east-1".into(),
            owner_alias: None,
            owner_id: None,
            private: false,
            replace: false,
            root_snapshot: None,
        }
    }
}

/// An image left alone.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Skipped {
    /// The image.
    pub image_id: String,
    /// Why.
    pub reason: String,
}

/// An entry that failed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct EntryError {
    /// Position in the input (from 0).
    pub index: usize,
    /// Its `ImageId`, if it has one.
    pub image_id: Option<String>,
    /// EC2 error code, e.g. `InvalidAMIName.Malformed`.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// What an import did; printed as JSON by the CLI.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ImportReport {
    /// Images written, in input order.
    pub imported: Vec<String>,
    /// Images that exist already.
    pub skipped: Vec<Skipped>,
    /// Entries that failed.
    pub errors: Vec<EntryError>,
}

impl ImportOptions {
    /// Checks the options and loads the root snapshot, if any.
    fn check(&self, catalog: &Catalog) -> Result<Option<RootSnapshot>, ImportError> {
        let fail = |m: String| Err(ImportError::Options(m));
        if !datadir::valid_region_name(&self.region) {
            return fail(format!("invalid region {:?}", self.region));
        }
        if let Some(id) = &self.owner_id
            && !ids::is_account_id(id)
        {
            return fail(format!("owner id {id:?} is not a 12-digit account id"));
        }
        if let Some(alias) = &self.owner_alias
            && !valid_owner_alias(alias)
        {
            return fail(format!(
                "invalid owner alias {alias:?}: lowercase letters, digits and dashes (e.g. amazon, aws-marketplace)"
            ));
        }
        let Some(snap) = &self.root_snapshot else {
            return Ok(None);
        };
        if !ids::is_valid("snap", snap) {
            return fail(format!("invalid snapshot id {snap:?}"));
        }
        let row = catalog
            .resource(snap)?
            .filter(|r| r.kind == snapshots::KIND && r.region == self.region);
        let Some(row) = row else {
            return fail(format!("snapshot {snap} does not exist in {}", self.region));
        };
        if row.state != "completed" {
            return fail(format!("snapshot {snap} is {}, not completed", row.state));
        }
        let doc = snapshots::doc_of(&row)?;
        Ok(Some(RootSnapshot {
            id: row.id.clone(),
            grants: catalog.permissions(&row.id, CREATE_VOLUME_PERMISSION)?,
            owner: row.account_id,
            info: SnapshotInfo {
                volume_size_gib: doc.volume_size_gib,
                encrypted: doc.encrypted,
            },
        }))
    }
}

/// What happened to one prepared image.
enum Outcome {
    Imported,
    Skipped(String),
    Refused(Ec2Error),
}

/// Writes one image: a new row, or over an existing one with `replace`. `names` maps
/// (owner, name) to the image of the region that has it.
fn write(
    catalog: &Catalog,
    opts: &ImportOptions,
    names: &mut HashMap<(String, String), String>,
    p: &Prepared,
) -> Result<Outcome, ImportError> {
    let existing = catalog.resource(&p.id)?;
    if let Some(old) = &existing {
        if old.kind != KIND {
            return Ok(Outcome::Refused(bad(format!(
                "{} is the id of a {}",
                p.id, old.kind
            ))));
        }
        if !opts.replace {
            return Ok(Outcome::Skipped(format!(
                "image {} exists already (owner {}, region {}); --replace overwrites it",
                p.id, old.account_id, old.region
            )));
        }
    }
    let key = (p.owner_id.clone(), p.doc.name.clone());
    if let Some(other) = names.get(&key).filter(|other| **other != p.id) {
        return Ok(Outcome::Refused(Ec2Error::client(
            "InvalidAMIName.Duplicate",
            format!("AMI name {} is already in use by AMI {other}", p.doc.name),
        )));
    }
    let row = ResourceRow {
        id: p.id.clone(),
        kind: KIND.into(),
        account_id: p.owner_id.clone(),
        region: opts.region.clone(),
        state: p.state.clone(),
        doc: encode(&p.doc)?,
        created_at_ms: p.doc.creation_ms,
    };
    match &existing {
        Some(old) if old.account_id == row.account_id && old.region == row.region => {
            catalog.update_resource(&row.id, &row.state, &row.doc)?;
            catalog.clear_tags(&row.id)?;
            catalog.clear_permissions(&row.id, LAUNCH_PERMISSION)?;
        }
        Some(old) => {
            catalog.delete_resource(&old.id)?;
            catalog.insert_resource(&row)?;
        }
        None => catalog.insert_resource(&row)?,
    }
    if !p.tags.is_empty() {
        catalog.set_tags(&row.id, &p.tags)?;
    }
    if p.public {
        catalog.add_permission(&row.id, LAUNCH_PERMISSION, "all")?;
    }
    names.retain(|_, id| *id != p.id);
    names.insert(key, p.id.clone());
    Ok(Outcome::Imported)
}

/// Imports the images of `input` (see the module docs) into `catalog`. Entries that
/// fail are reported in the result; only unusable input, options or a failing catalog
/// stop the whole import.
pub fn import_images(
    catalog: &Catalog,
    input: &[u8],
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let root = opts.check(catalog)?;
    let entries = parse_input(input)?;
    let mut names = HashMap::new();
    for row in catalog.resources(KIND, &opts.region)? {
        names.insert((row.account_id.clone(), doc_of(&row)?.name), row.id);
    }
    let mut seen = HashSet::new();
    let mut report = ImportReport::default();
    for (index, Entry { image_id, image }) in entries.into_iter().enumerate() {
        let fail = |e: Ec2Error| EntryError {
            index,
            image_id: image_id.clone(),
            code: e.code,
            message: e.message,
        };
        let prepared = image
            .map_err(|m| bad(format!("Malformed image: {m}")))
            .and_then(|raw| prepare(raw, opts, root.as_ref()));
        let p = match prepared {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(fail(e));
                continue;
            }
        };
        if !seen.insert(p.id.clone()) {
            report.errors.push(fail(bad(format!(
                "{} appears more than once in the input",
                p.id
            ))));
            continue;
        }
        match write(catalog, opts, &mut names, &p)? {
            Outcome::Imported => report.imported.push(p.id),
            Outcome::Skipped(reason) => report.skipped.push(Skipped {
                image_id: p.id,
                reason,
            }),
            Outcome::Refused(e) => report.errors.push(fail(e)),
        }
    }
    Ok(report)
}
