//! EC2-style errors: an error code, a message, and the HTTP status AWS uses.
//!
//! Storage errors of the layers below (catalog, block store, volumes) become
//! `InternalError` (500, details only in the log) — except a full disk (`ENOSPC`,
//! `EDQUOT`, `SQLITE_FULL`), which becomes [`Ec2Error::out_of_storage`]: `ServiceUnavailable`
//! (503, which SDKs retry) saying so, since the same call succeeds once space is freed;
//! and a backend that cannot be reached (a PostgreSQL catalog or an S3 object store that
//! is down), which becomes [`Ec2Error::unavailable`]: `ServiceUnavailable` too.

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

    /// The data directory is full: `ServiceUnavailable` (503) with [`OUT_OF_STORAGE`]; the
    /// details (which file) go to the log.
    pub fn out_of_storage(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, context, "out of storage");
        Ec2Error {
            code: "ServiceUnavailable".into(),
            message: OUT_OF_STORAGE.into(),
            status: 503,
        }
    }

    /// A backend cannot be reached (the catalog's PostgreSQL or the S3 object store is
    /// down or restarting): `ServiceUnavailable` (503, which SDKs retry) with
    /// [`UNAVAILABLE`]; the details go to the log.
    pub fn unavailable(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, context, "backend unavailable");
        Ec2Error {
            code: "ServiceUnavailable".into(),
            message: UNAVAILABLE.into(),
            status: 503,
        }
    }

    /// True for an [`Ec2Error::out_of_storage`] error.
    pub fn is_out_of_storage(&self) -> bool {
        self.status == 503 && self.message == OUT_OF_STORAGE
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

/// What a client is told when the data directory is full.
pub const OUT_OF_STORAGE: &str =
    "The server is out of storage space; retry the request once space has been freed.";

/// What a client is told when the catalog's database or the object store cannot be reached.
pub const UNAVAILABLE: &str = "The service is temporarily unavailable; retry the request.";

impl From<catalog::CatalogError> for Ec2Error {
    fn from(e: catalog::CatalogError) -> Self {
        if e.is_unavailable() {
            Ec2Error::unavailable("catalog", e)
        } else if e.is_storage_full() {
            Ec2Error::out_of_storage("catalog", e)
        } else {
            Ec2Error::internal("catalog", e)
        }
    }
}

impl From<blockstore::BlockStoreError> for Ec2Error {
    fn from(e: blockstore::BlockStoreError) -> Self {
        if e.is_storage_full() {
            Ec2Error::out_of_storage("block store", e)
        } else if e.is_unavailable() {
            Ec2Error::unavailable("block store", e)
        } else {
            Ec2Error::internal("block store", e)
        }
    }
}

impl From<volume::VolumeError> for Ec2Error {
    fn from(e: volume::VolumeError) -> Self {
        if e.is_storage_full() {
            Ec2Error::out_of_storage("volume", e)
        } else if e.is_unavailable() {
            Ec2Error::unavailable("volume", e)
        } else {
            Ec2Error::internal("volume", e)
        }
    }
}

/// Engine results.
pub type Ec2Result<T> = Result<T, Ec2Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use objstore::{RemoteErrorKind, StoreError};

    fn remote(kind: RemoteErrorKind) -> blockstore::BlockStoreError {
        blockstore::BlockStoreError::Store(StoreError::Remote {
            op: "put",
            what: "blocks/ab/cd".into(),
            kind,
            source: "connection refused".into(),
        })
    }

    #[test]
    fn object_store_failures_become_aws_errors() {
        let unavailable = Ec2Error::from(remote(RemoteErrorKind::Unavailable));
        assert_eq!(
            (unavailable.code.as_str(), unavailable.status),
            ("ServiceUnavailable", 503)
        );
        assert_eq!(unavailable.message, UNAVAILABLE);
        let full = Ec2Error::from(remote(RemoteErrorKind::StorageFull));
        assert!(full.is_out_of_storage());
        let failed = Ec2Error::from(remote(RemoteErrorKind::Failed));
        assert_eq!(
            (failed.code.as_str(), failed.status),
            ("InternalError", 500)
        );
        let volume = Ec2Error::from(volume::VolumeError::Store(remote(
            RemoteErrorKind::Unavailable,
        )));
        assert_eq!(volume.status, 503);
    }
}
