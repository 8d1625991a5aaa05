//! Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair, and the
//! public key an instance is launched with.
//!
//! A key pair is a catalog resource of kind `key-pair`, scoped to an account and a
//! region, its name unique there. Only the public key is kept (as an OpenSSH line); the
//! private key of a created pair is returned once and kept nowhere.

pub mod material;

use std::sync::Mutex;

use catalog::{ResourceRow, now_ms};
use serde::{Deserialize, Serialize};

use crate::query::{Filter, Filterable, TagSpecification, check_filters, matches, tags_for};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock};
use material::{KeyFormat, KeyType, MaterialError, PublicMaterial};

/// Catalog kind of key pairs.
pub const KIND: &str = "key-pair";
/// Tag specification resource type.
const RESOURCE_TYPE: &str = "key-pair";

/// Serializes the name check and the insert of new key pairs, so that two requests
/// cannot both take a name.
static NAMES: Mutex<()> = Mutex::new(());

/// What the catalog keeps about a key pair.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyPairDoc {
    /// The key name.
    pub key_name: String,
    /// `rsa` or `ed25519`.
    pub key_type: String,
    /// OpenSSH public key line without comment (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// EC2 fingerprint.
    pub fingerprint: String,
    /// When it was created or imported.
    pub create_time_ms: i64,
}

/// A key pair as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPairView {
    /// `key-…` id.
    pub id: String,
    /// Stored attributes.
    pub doc: KeyPairDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl KeyPairView {
    /// The public key as DescribeKeyPairs and the metadata service show it:
    /// `<type> <base64> <key name>`.
    pub fn public_key_line(&self) -> String {
        format!("{} {}", self.doc.public_key, self.doc.key_name)
    }
}

impl Filterable for KeyPairView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        match name {
            "key-pair-id" => one(&self.id),
            "key-name" => one(&self.doc.key_name),
            "fingerprint" => one(&self.doc.fingerprint),
            "key-type" => one(&self.doc.key_type),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// CreateKeyPair parameters.
#[derive(Clone, Debug, Default)]
pub struct CreateKeyPair {
    /// KeyName.
    pub key_name: String,
    /// KeyType: `rsa` (default) or `ed25519`.
    pub key_type: Option<String>,
    /// KeyFormat: `pem` (default) or `ppk`.
    pub key_format: Option<String>,
    /// TagSpecification.N.
    pub tag_specifications: Vec<TagSpecification>,
}

/// ImportKeyPair parameters.
#[derive(Clone, Debug, Default)]
pub struct ImportKeyPair {
    /// KeyName.
    pub key_name: String,
    /// PublicKeyMaterial, decoded from base64.
    pub public_key_material: Vec<u8>,
    /// TagSpecification.N.
    pub tag_specifications: Vec<TagSpecification>,
}

/// The result of CreateKeyPair: the new pair and its private key, shown once.
#[derive(Clone, Debug)]
pub struct CreatedKeyPair {
    /// The stored key pair.
    pub key_pair: KeyPairView,
    /// The private key (PEM, OpenSSH or PPK).
    pub key_material: String,
}

/// DescribeKeyPairs parameters.
#[derive(Clone, Debug, Default)]
pub struct DescribeKeyPairs {
    /// KeyName.N.
    pub key_names: Vec<String>,
    /// KeyPairId.N.
    pub key_pair_ids: Vec<String>,
    /// Filter.N.
    pub filters: Vec<Filter>,
}

/// The key an instance is launched with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchKey {
    /// The key name.
    pub key_name: String,
    /// OpenSSH line `ssh-ed25519 AAAA… name`.
    pub public_key: String,
}

fn not_found(what: &str) -> Ec2Error {
    Ec2Error::client(
        "InvalidKeyPair.NotFound",
        format!("The key pair '{what}' does not exist"),
    )
}

/// EC2's name rule: 1 to 255 ASCII characters.
fn check_name(name: &str) -> Ec2Result<()> {
    if name.is_empty() {
        return Err(Ec2Error::missing("KeyName"));
    }
    if name.len() > 255 || !name.is_ascii() {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({name}) for parameter keyName is invalid. Key names must be 1 to 255 ASCII characters."
        )));
    }
    Ok(())
}

fn material_error(e: MaterialError) -> Ec2Error {
    match e {
        MaterialError::Format | MaterialError::RsaSize(_) => {
            Ec2Error::client("InvalidKey.Format", e.to_string())
        }
        MaterialError::Crypto(_) => Ec2Error::internal("key pair material", e),
    }
}

fn view(row: &ResourceRow, tags: Vec<(String, String)>) -> Ec2Result<KeyPairView> {
    let doc: KeyPairDoc =
        serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("key pair document", e))?;
    Ok(KeyPairView {
        id: row.id.clone(),
        doc,
        tags,
    })
}

impl Cloud {
    /// The caller's key pairs in its region (without tags).
    fn key_pair_rows(&self, caller: &Caller) -> Ec2Result<Vec<KeyPairView>> {
        self.owned_resources(caller, KIND)?
            .iter()
            .map(|row| view(row, Vec::new()))
            .collect()
    }

    fn key_pair_by_name(&self, caller: &Caller, name: &str) -> Ec2Result<Option<KeyPairView>> {
        Ok(self
            .key_pair_rows(caller)?
            .into_iter()
            .find(|k| k.doc.key_name == name))
    }

    /// Stores a new key pair under a name not yet taken.
    fn insert_key_pair(
        &self,
        caller: &Caller,
        name: &str,
        public: PublicMaterial,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<KeyPairView> {
        let _names = lock(&NAMES);
        if self.key_pair_by_name(caller, name)?.is_some() {
            return Err(Ec2Error::client(
                "InvalidKeyPair.Duplicate",
                format!("The keypair already exists: '{name}'"),
            ));
        }
        let doc = KeyPairDoc {
            key_name: name.to_string(),
            key_type: public.key_type.as_str().to_string(),
            public_key: public.openssh,
            fingerprint: public.fingerprint,
            create_time_ms: now_ms(),
        };
        let row = ResourceRow {
            id: ids::new_id("key"),
            kind: KIND.into(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            state: "available".into(),
            doc: serde_json::to_string(&doc)
                .map_err(|e| Ec2Error::internal("key pair document", e))?,
            created_at_ms: doc.create_time_ms,
        };
        self.catalog.insert_resource_with_tags(&row, &tags)?;
        Ok(KeyPairView {
            id: row.id,
            doc,
            tags,
        })
    }

    /// CreateKeyPair: a new RSA (2048-bit) or Ed25519 key pair.
    pub fn create_key_pair(
        &self,
        caller: &Caller,
        req: CreateKeyPair,
    ) -> Ec2Result<CreatedKeyPair> {
        check_name(&req.key_name)?;
        let key_type = match req.key_type.as_deref() {
            None => KeyType::Rsa,
            Some(t) => KeyType::parse(t).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({t}) for parameter keyType is invalid. Valid values are: rsa, ed25519."
                ))
            })?,
        };
        let format = match req.key_format.as_deref() {
            None => KeyFormat::Pem,
            Some(f) => KeyFormat::parse(f).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({f}) for parameter keyFormat is invalid. Valid values are: pem, ppk."
                ))
            })?,
        };
        let tags = tags_for(&req.tag_specifications, RESOURCE_TYPE)?;
        if self.key_pair_by_name(caller, &req.key_name)?.is_some() {
            // Checked again under the lock; this spares generating a key for nothing.
            return Err(Ec2Error::client(
                "InvalidKeyPair.Duplicate",
                format!("The keypair already exists: '{}'", req.key_name),
            ));
        }
        let generated =
            material::generate(key_type, format, &req.key_name).map_err(material_error)?;
        let key_pair = self.insert_key_pair(caller, &req.key_name, generated.public, tags)?;
        Ok(CreatedKeyPair {
            key_pair,
            key_material: generated.private_key,
        })
    }

    /// ImportKeyPair: stores the public key of a pair made elsewhere.
    pub fn import_key_pair(&self, caller: &Caller, req: ImportKeyPair) -> Ec2Result<KeyPairView> {
        check_name(&req.key_name)?;
        if req.public_key_material.is_empty() {
            return Err(Ec2Error::missing("PublicKeyMaterial"));
        }
        let tags = tags_for(&req.tag_specifications, RESOURCE_TYPE)?;
        let public = material::import(&req.public_key_material).map_err(material_error)?;
        self.insert_key_pair(caller, &req.key_name, public, tags)
    }

    /// DescribeKeyPairs: the caller's key pairs in its region; a name or id asked for
    /// that does not exist is `InvalidKeyPair.NotFound`.
    pub fn describe_key_pairs(
        &self,
        caller: &Caller,
        req: &DescribeKeyPairs,
    ) -> Ec2Result<Vec<KeyPairView>> {
        check_filters(&req.filters)?;
        for id in &req.key_pair_ids {
            ids::check("key", "InvalidKeyPair.NotFound", id).map_err(|_| not_found(id))?;
        }
        let all = self.key_pair_rows(caller)?;
        for name in &req.key_names {
            if !all.iter().any(|k| &k.doc.key_name == name) {
                return Err(not_found(name));
            }
        }
        for id in &req.key_pair_ids {
            if !all.iter().any(|k| &k.id == id) {
                return Err(not_found(id));
            }
        }
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for mut key in all {
            if !req.key_names.is_empty() && !req.key_names.contains(&key.doc.key_name) {
                continue;
            }
            if !req.key_pair_ids.is_empty() && !req.key_pair_ids.contains(&key.id) {
                continue;
            }
            key.tags = all_tags.get(&key.id).cloned().unwrap_or_default();
            if matches(&key, &req.filters)? {
                out.push(key);
            }
        }
        out.sort_by(|a, b| a.doc.key_name.cmp(&b.doc.key_name));
        Ok(out)
    }

    /// DeleteKeyPair by name or id. As on EC2, deleting a name that does not exist
    /// succeeds; an id that does not exist is `InvalidKeyPair.NotFound`. Returns the id
    /// of the deleted pair, if there was one.
    pub fn delete_key_pair(
        &self,
        caller: &Caller,
        key_name: Option<&str>,
        key_pair_id: Option<&str>,
    ) -> Ec2Result<Option<String>> {
        let found = match (key_name, key_pair_id) {
            (_, Some(id)) => {
                ids::check("key", "InvalidKeyPair.NotFound", id).map_err(|_| not_found(id))?;
                let key = self
                    .owned_row(caller, KIND, id)?
                    .ok_or_else(|| not_found(id))?;
                if let Some(name) = key_name
                    && view(&key, Vec::new())?.doc.key_name != name
                {
                    return Err(not_found(id));
                }
                Some(key.id)
            }
            (Some(name), None) => self.key_pair_by_name(caller, name)?.map(|k| k.id),
            (None, None) => return Err(Ec2Error::missing("KeyName")),
        };
        if let Some(id) = &found {
            self.catalog.delete_resource(id)?;
        }
        Ok(found)
    }

    /// The public key of key pair `key_name` for an instance launch (RunInstances, the
    /// metadata service), or `InvalidKeyPair.NotFound`.
    pub fn launch_key(&self, caller: &Caller, key_name: &str) -> Ec2Result<LaunchKey> {
        let key = self
            .key_pair_by_name(caller, key_name)?
            .ok_or_else(|| not_found(key_name))?;
        Ok(LaunchKey {
            key_name: key.doc.key_name.clone(),
            public_key: key.public_key_line(),
        })
    }
}

#[cfg(test)]
mod tests;
