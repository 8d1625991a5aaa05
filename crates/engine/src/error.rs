//! EC2-style errors: an error code, a message, and the HTTP status AWS uses.

/// An error as the EC2 API reports it (`<Code>` and `<Message>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    /// The AWS error code, e.g. `InvalidVolume.NotFound`.
    pub code: String,
    /// A human message; never names another account's private resources.
    pub message: String,
    /// HTTP status: 400 for client errors, 500/503 for server faults.
    pub status: u16,
}

impl Ec2Error {
    /// A client error (HTTP 400).
    pub fn client(code: impl Into<String>, message: impl Into<String>) -> Self {
        Ec2Error {
            code: code.into(),
            message: message.into(),
            status: 400,
        }
    }

    /// A server fault (HTTP 500): details go to the log, not to the client.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, context, "internal error");
        Ec2Error {
            code: "InternalError".into(),
            message: "An internal error has occurred".into(),
            status: 500,
        }
    }

    /// `InvalidParameterValue`.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterValue", message)
    }

    /// `MissingParameter`.
    pub fn missing(parameter: &str) -> Self {
        Self::client(
            "MissingParameter",
            format!("The request must contain the parameter {parameter}"),
        )
    }

    /// `<Kind>.NotFound` for an id, e.g. `InvalidVolume.NotFound`.
    pub fn not_found(code: &str, what: &str, id: &str) -> Self {
        Self::client(code, format!("The {what} '{id}' does not exist."))
    }

    /// A malformed id, e.g. `InvalidVolumeID.Malformed`.
    pub fn malformed(code: &str, id: &str) -> Self {
        Self::client(code, format!("Invalid id: \"{id}\""))
    }
}

impl From<catalog::CatalogError> for Ec2Error {
    fn from(e: catalog::CatalogError) -> Self {
        Ec2Error::internal("catalog", e)
    }
}

impl From<blockstore::BlockStoreError> for Ec2Error {
    fn from(e: blockstore::BlockStoreError) -> Self {
        Ec2Error::internal("block store", e)
    }
}

impl From<volume::VolumeError> for Ec2Error {
    fn from(e: volume::VolumeError) -> Self {
        Ec2Error::internal("volume", e)
    }
}

/// Engine results.
pub type Ec2Result<T> = Result<T, Ec2Error>;
