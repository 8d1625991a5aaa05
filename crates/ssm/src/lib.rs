//! AWS Systems Manager Parameter Store, the part EC2 users need.
//!
//! Parameters are stored in the catalog, one row per version (see `catalog::SsmVersion`),
//! per region and owner. The JSON 1.1 protocol (`X-Amz-Target: AmazonSSM.<Operation>`) is
//! served by [`handle`]; the HTTP layer (crates/api) verifies SigV4 for service `ssm` and
//! passes the caller's account and region.
//!
//! Public parameters live under `/aws/service/`: the operator writes them with
//! [`publish_public_parameter`], every account reads them, none may change them.
//! [`resolve`] turns `resolve:ssm:` image ids of RunInstances into values.
//!
//! Not implemented (answered `InvalidAction`): labels, parameter policies, KMS keys other
//! than the default `alias/aws/ssm`. SecureString values are stored as given: they are
//! **not encrypted at rest**. `aws:ec2:image` values are checked for the shape of an image
//! id (`ami-` + hex), not for the image's existence, which only the engine knows.

mod filter;
pub mod names;
mod ops;
mod request;
pub mod store;

pub use ops::{Reply, handle};

use catalog::{Catalog, CatalogError};

use crate::names::PUBLIC_OWNER;
use crate::store::Doc;

/// An SSM error as the JSON 1.1 protocol reports it: `{"__type": code, "message": …}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SsmError {
    /// The error type, e.g. `ParameterNotFound`.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// HTTP status (400 for client errors, 500 for ours).
    pub status: u16,
}

impl SsmError {
    /// A client error (HTTP 400).
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            status: 400,
        }
    }

    /// A `ValidationException`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// A server-side failure (HTTP 500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: "InternalServerError".into(),
            message: message.into(),
            status: 500,
        }
    }
}

impl From<CatalogError> for SsmError {
    fn from(e: CatalogError) -> Self {
        if e.is_unavailable() {
            // The catalog's database is down (PostgreSQL): a retryable 503.
            return Self {
                code: "ServiceUnavailable".into(),
                message: "The service is temporarily unavailable; retry the request.".into(),
                status: 503,
            };
        }
        Self::internal(e.to_string())
    }
}

/// The data types a parameter may have.
pub const DATA_TYPES: [&str; 2] = ["text", "aws:ec2:image"];

/// Checks a value against its type and data type.
pub fn check_value(kind: &str, data_type: &str, value: &str, tier: &str) -> Result<(), SsmError> {
    if !DATA_TYPES.contains(&data_type) {
        return Err(SsmError::validation(format!(
            "The following data type is not supported: {data_type} (Data type names are all lowercase.)"
        )));
    }
    if value.is_empty() {
        return Err(SsmError::validation(
            "1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    let max = if tier == "Advanced" { 8192 } else { 4096 };
    if value.len() > max {
        return Err(SsmError::validation(format!(
            "Standard tier parameters support a maximum parameter value of 4096 characters; advanced ones 8192. This value has {}.",
            value.len()
        )));
    }
    if data_type == "aws:ec2:image" {
        if kind != "String" {
            return Err(SsmError::validation(
                "The data type aws:ec2:image is supported only for parameters of type String.",
            ));
        }
        let hex = value.strip_prefix("ami-").unwrap_or("");
        if !(hex.len() == 8 || hex.len() == 17)
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(SsmError::validation(format!(
                "Parameter value {value} is not a valid image id for data type aws:ec2:image (expected ami- followed by 8 or 17 hexadecimal digits)."
            )));
        }
    }
    Ok(())
}

/// What [`publish_public_parameter`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The version now current.
    pub version: i64,
    /// False when the parameter already had this value and data type (nothing written).
    pub changed: bool,
}

/// Publishes (creates or updates) the public `String` parameter `name` (which must be
/// under `/aws/service/`) in `region`: the operator's way to announce e.g. the Quick Start
/// image ids. Idempotent: the same value and data type write no new version.
pub fn publish_public_parameter(
    catalog: &Catalog,
    region: &str,
    name: &str,
    value: &str,
    data_type: &str,
) -> Result<Published, SsmError> {
    names::validate(name)?;
    if !names::is_public(name) {
        return Err(SsmError::validation(format!(
            "Public parameters live under {}; {name} does not.",
            names::PUBLIC_PREFIX
        )));
    }
    check_value("String", data_type, value, "Standard")?;
    let (version, changed) = store::put(catalog, region, PUBLIC_OWNER, name, |current| {
        if let Some(c) = current
            && c.doc.value == value
            && c.doc.data_type == data_type
            && c.doc.kind == "String"
        {
            return Ok(None);
        }
        Ok(Some(Doc {
            kind: "String".into(),
            data_type: data_type.to_string(),
            value: value.to_string(),
            description: current.and_then(|c| c.doc.description.clone()),
            key_id: None,
            tier: "Standard".into(),
            modified_by: store::operator_user(),
        }))
    })?;
    Ok(Published { version, changed })
}

/// The value of parameter `reference` (`name`, `name:version`) for `account_id` in
/// `region`: its own parameters or public ones. For `resolve:ssm:` in RunInstances.
pub fn resolve(
    catalog: &Catalog,
    account_id: &str,
    region: &str,
    reference: &str,
) -> Result<String, SsmError> {
    Ok(store::get(catalog, account_id, region, reference)?
        .doc
        .value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_idempotent_and_resolvable_by_everyone() {
        let c = Catalog::in_memory().unwrap();
        let name = "/aws/service/debian/release/12/latest/amd64";
        let p = publish_public_parameter(&c, "r1", name, "ami-0123456789abcdef0", "aws:ec2:image")
            .unwrap();
        assert_eq!(
            p,
            Published {
                version: 1,
                changed: true
            }
        );
        let p = publish_public_parameter(&c, "r1", name, "ami-0123456789abcdef0", "aws:ec2:image")
            .unwrap();
        assert_eq!(
            p,
            Published {
                version: 1,
                changed: false
            }
        );
        let p = publish_public_parameter(&c, "r1", name, "ami-0123456789abcdef1", "aws:ec2:image")
            .unwrap();
        assert_eq!(
            p,
            Published {
                version: 2,
                changed: true
            }
        );
        for account in ["111111111111", "222222222222"] {
            assert_eq!(
                resolve(&c, account, "r1", name).unwrap(),
                "ami-0123456789abcdef1"
            );
            assert_eq!(
                resolve(&c, account, "r1", &format!("{name}:1")).unwrap(),
                "ami-0123456789abcdef0"
            );
        }
        assert_eq!(
            resolve(&c, "111111111111", "r2", name).unwrap_err().code,
            "ParameterNotFound"
        );
        assert_eq!(
            resolve(&c, "111111111111", "r1", &format!("{name}:9"))
                .unwrap_err()
                .code,
            "ParameterVersionNotFound"
        );
        assert_eq!(
            publish_public_parameter(&c, "r1", "/mine/x", "v", "text")
                .unwrap_err()
                .code,
            "ValidationException"
        );
        assert_eq!(
            publish_public_parameter(&c, "r1", name, "not-an-image", "aws:ec2:image")
                .unwrap_err()
                .code,
            "ValidationException"
        );
    }

    #[test]
    fn values_are_checked() {
        check_value("String", "text", "x", "Standard").unwrap();
        check_value("String", "aws:ec2:image", "ami-12345678", "Standard").unwrap();
        for (kind, dt, v) in [
            ("String", "text", ""),
            ("String", "Text", "x"),
            ("StringList", "aws:ec2:image", "ami-12345678"),
            ("String", "aws:ec2:image", "ami-XYZ45678"),
            ("String", "aws:ec2:image", "i-12345678"),
        ] {
            assert!(
                check_value(kind, dt, v, "Standard").is_err(),
                "{kind} {dt} {v}"
            );
        }
        assert!(check_value("String", "text", &"x".repeat(4097), "Standard").is_err());
        check_value("String", "text", &"x".repeat(4097), "Advanced").unwrap();
    }
}
