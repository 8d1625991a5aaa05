//! Key pair actions: CreateKeyPair, ImportKeyPair, DescribeKeyPairs and DeleteKeyPair,
//! parsed and rendered as botocore's model shapes them.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use engine::keypairs::{CreateKeyPair, DescribeKeyPairs, ImportKeyPair, KeyPairView};
use engine::query::iso8601;
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One key pair request, typed.
#[derive(Debug, Clone)]
pub enum KeyPairAction {
    /// CreateKeyPair.
    Create(CreateKeyPair),
    /// ImportKeyPair.
    Import(ImportKeyPair),
    /// DescribeKeyPairs.
    Describe {
        /// KeyName.N, KeyPairId.N, Filter.N.
        request: DescribeKeyPairs,
        /// IncludePublicKey.
        include_public_key: bool,
    },
    /// DeleteKeyPair.
    Delete {
        /// KeyName.
        key_name: Option<String>,
        /// KeyPairId.
        key_pair_id: Option<String>,
    },
}

/// `PublicKeyMaterial` is a blob: base64 on the wire.
fn public_key_material(p: &Params) -> Ec2Result<Vec<u8>> {
    let text = p.required("PublicKeyMaterial")?;
    let compact: String = text.split_whitespace().collect();
    STANDARD.decode(compact).map_err(|_| {
        Ec2Error::client(
            "InvalidKey.Format",
            "Key is not in valid OpenSSH public key format",
        )
    })
}

impl KeyPairAction {
    /// Parses a key pair action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<KeyPairAction>> {
        Ok(Some(match name {
            "CreateKeyPair" => KeyPairAction::Create(CreateKeyPair {
                key_name: p.required("KeyName")?,
                key_type: p.string("KeyType"),
                key_format: p.string("KeyFormat"),
                tag_specifications: p.tag_specifications()?,
            }),
            "ImportKeyPair" => KeyPairAction::Import(ImportKeyPair {
                key_name: p.required("KeyName")?,
                public_key_material: public_key_material(p)?,
                tag_specifications: p.tag_specifications()?,
            }),
            "DescribeKeyPairs" => KeyPairAction::Describe {
                request: DescribeKeyPairs {
                    key_names: p.list("KeyName")?,
                    key_pair_ids: p.list("KeyPairId")?,
                    filters: p.filters()?,
                },
                include_public_key: p.bool("IncludePublicKey")?.unwrap_or(false),
            },
            "DeleteKeyPair" => KeyPairAction::Delete {
                key_name: p.string("KeyName").filter(|s| !s.is_empty()),
                key_pair_id: p.string("KeyPairId").filter(|s| !s.is_empty()),
            },
            _ => return Ok(None),
        }))
    }
}

fn tag_set(x: &mut Xml, tags: &[(String, String)]) {
    x.tags(tags);
}

fn key_pair_info(x: &mut Xml, k: &KeyPairView, include_public_key: bool) {
    x.text("keyPairId", &k.id).text("keyType", &k.doc.key_type);
    tag_set(x, &k.tags);
    if include_public_key {
        x.text("publicKey", &k.public_key_line());
    }
    x.text("keyName", &k.doc.key_name)
        .text("keyFingerprint", &k.doc.fingerprint)
        .text("createTime", &iso8601(k.doc.create_time_ms));
}

/// Executes a key pair action, writing the response body into `x`.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: KeyPairAction,
) -> Ec2Result<()> {
    match action {
        KeyPairAction::Create(req) => {
            let created = cloud.create_key_pair(caller, req)?;
            let k = &created.key_pair;
            x.text("keyFingerprint", &k.doc.fingerprint)
                .text("keyMaterial", &created.key_material)
                .text("keyName", &k.doc.key_name)
                .text("keyPairId", &k.id);
            tag_set(x, &k.tags);
        }
        KeyPairAction::Import(req) => {
            let k = cloud.import_key_pair(caller, req)?;
            x.text("keyFingerprint", &k.doc.fingerprint)
                .text("keyName", &k.doc.key_name)
                .text("keyPairId", &k.id);
            tag_set(x, &k.tags);
        }
        KeyPairAction::Describe {
            request,
            include_public_key,
        } => {
            let keys = cloud.describe_key_pairs(caller, &request)?;
            x.list("keySet", &keys, |x, k| {
                key_pair_info(x, k, include_public_key)
            });
        }
        KeyPairAction::Delete {
            key_name,
            key_pair_id,
        } => {
            let deleted =
                cloud.delete_key_pair(caller, key_name.as_deref(), key_pair_id.as_deref())?;
            x.text("return", "true").opt("keyPairId", deleted);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_lists_and_material() {
        let p = Params::parse(&[
            b"KeyName.1=a&KeyName.2=b&KeyPairId.1=key-0123456789abcdef0&IncludePublicKey=true",
        ])
        .unwrap();
        match KeyPairAction::parse("DescribeKeyPairs", &p).unwrap() {
            Some(KeyPairAction::Describe {
                request,
                include_public_key,
            }) => {
                assert_eq!(request.key_names, ["a", "b"]);
                assert_eq!(request.key_pair_ids, ["key-0123456789abcdef0"]);
                assert!(include_public_key);
            }
            other => panic!("{other:?}"),
        }
        let p =
            Params::parse(&[b"KeyName=k&PublicKeyMaterial=c3NoLWVkMjU1MTkgQUFBQQ%3D%3D"]).unwrap();
        match KeyPairAction::parse("ImportKeyPair", &p).unwrap() {
            Some(KeyPairAction::Import(req)) => {
                assert_eq!(req.public_key_material, b"ssh-ed25519 AAAA");
            }
            other => panic!("{other:?}"),
        }
        let p = Params::parse(&[b"KeyName=k&PublicKeyMaterial=%%%"]).unwrap();
        assert_eq!(
            KeyPairAction::parse("ImportKeyPair", &p).unwrap_err().code,
            "InvalidKey.Format"
        );
        assert!(
            KeyPairAction::parse("DescribeVolumes", &p)
                .unwrap()
                .is_none()
        );
    }
}
