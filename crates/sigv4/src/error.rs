//! Why a request failed SigV4 verification, and how to report it the way EC2 does.
//!
//! Each [`AuthError`] variant is one distinct failure with its context; [`AuthError::aws_code`]
//! gives the EC2 error code to put in the response and [`AuthError::http_status`] the HTTP
//! status. `Display` gives a message in the style of AWS's own. No variant ever holds a
//! secret access key or a value derived from one (signing key, expected signature).

use thiserror::Error;

/// A SigV4 verification failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor SigV4 query parameters are present.
    #[error(
        "Request is missing Authentication Token: the request must contain either a valid \
         (registered) access key ID or X.509 certificate"
    )]
    MissingAuthentication,

    /// The request carries both an `Authorization` header and `X-Amz-*` query authentication.
    #[error(
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified"
    )]
    AmbiguousAuthentication,

    /// The `Authorization` header or `X-Amz-Algorithm` names an algorithm other than
    /// `AWS4-HMAC-SHA256` (SigV2, SigV4a, ...).
    #[error("Unsupported AWS 'algorithm': '{algorithm}'")]
    UnsupportedAlgorithm {
        /// The algorithm as sent.
        algorithm: String,
    },

    /// The `Authorization` header could not be parsed.
    #[error("Malformed Authorization header: {reason}")]
    MalformedAuthorization {
        /// What is wrong with it.
        reason: String,
    },

    /// A query parameter required for query-string (presigned) authentication is absent.
    #[error("AWS query-string parameters must include '{name}'")]
    MissingQueryParameter {
        /// The missing parameter.
        name: &'static str,
    },

    /// A header or query parameter that may appear only once appears several times.
    #[error("'{name}' must appear only once in the request")]
    Duplicate {
        /// The repeated header or parameter.
        name: &'static str,
    },

    /// The credential is not `keyid/date/region/service/aws4_request`.
    #[error(
        "Credential must have exactly 5 slash-delimited elements, e.g. \
         keyid/date/region/service/term, got '{credential}'"
    )]
    MalformedCredential {
        /// The credential as sent (it holds the access key ID, never the secret).
        credential: String,
    },

    /// The credential scope does not end in `aws4_request`.
    #[error(
        "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'"
    )]
    BadScopeTerminator {
        /// The terminator as sent.
        terminator: String,
    },

    /// The credential scope names another service than this endpoint's.
    #[error("Credential should be scoped to correct service: '{expected}'")]
    WrongService {
        /// The service this endpoint verifies for.
        expected: String,
        /// The service in the credential scope.
        got: String,
    },

    /// The credential scope names a region this endpoint does not serve.
    #[error("Credential should be scoped to a valid region, not '{region}'")]
    RegionNotAllowed {
        /// The region in the credential scope.
        region: String,
    },

    /// The date in the credential scope is not the date of the request timestamp.
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '{scope_date}' != '{request_date}'"
    )]
    ScopeDateMismatch {
        /// The date in the credential scope.
        scope_date: String,
        /// The `YYYYMMDD` of the request timestamp.
        request_date: String,
    },

    /// No `X-Amz-Date` (header or query parameter) and no `Date` header.
    #[error("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header")]
    MissingDate,

    /// The request timestamp could not be parsed.
    #[error("Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z'), got '{value}'")]
    MalformedDate {
        /// The timestamp as sent.
        value: String,
    },

    /// The signed-headers list is empty or malformed.
    #[error("Malformed SignedHeaders: '{value}'")]
    MalformedSignedHeaders {
        /// The list as sent.
        value: String,
    },

    /// `host` is not among the signed headers.
    #[error("'Host' must be a 'SignedHeader' in the AWS Authorization")]
    HostNotSigned,

    /// `X-Amz-Expires` is not an integer between 1 and 604800 (seven days).
    #[error("X-Amz-Expires must be an integer between 1 and 604800 seconds, got '{value}'")]
    InvalidExpires {
        /// The value as sent.
        value: String,
    },

    /// The request timestamp is more than the allowed skew in the past.
    #[error(
        "Signature expired: {signed_at} is now earlier than {earliest} ({now} - {skew_secs} s)"
    )]
    SignatureExpired {
        /// The request timestamp.
        signed_at: String,
        /// The earliest timestamp accepted now.
        earliest: String,
        /// The server's time.
        now: String,
        /// The allowed skew in seconds.
        skew_secs: u64,
    },

    /// The request timestamp is more than the allowed skew in the future.
    #[error(
        "Signature not yet current: {signed_at} is still later than {latest} ({now} + {skew_secs} s)"
    )]
    SignatureNotYetCurrent {
        /// The request timestamp.
        signed_at: String,
        /// The latest timestamp accepted now.
        latest: String,
        /// The server's time.
        now: String,
        /// The allowed skew in seconds.
        skew_secs: u64,
    },

    /// A presigned URL is used after `X-Amz-Date` + `X-Amz-Expires`.
    #[error("Request has expired: presigned URL valid until {expired_at}, now {now}")]
    PresignedUrlExpired {
        /// When the URL stopped being valid.
        expired_at: String,
        /// The server's time.
        now: String,
    },

    /// The access key ID is not known.
    #[error(
        "AWS was not able to validate the provided access credentials (unknown access key '{access_key_id}')"
    )]
    UnknownAccessKey {
        /// The access key ID as sent.
        access_key_id: String,
    },

    /// A header named in the signed headers is absent from the request.
    #[error("Signed header '{name}' is not present in the request")]
    SignedHeaderMissing {
        /// The lower-case header name.
        name: String,
    },

    /// `X-Amz-Content-SHA256` is a SHA-256 hex digest that does not match the body.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed")]
    ContentSha256Mismatch {
        /// The digest the client sent.
        claimed: String,
        /// The digest of the body received.
        computed: String,
    },

    /// `X-Amz-Content-SHA256` is neither a SHA-256 hex digest nor `UNSIGNED-PAYLOAD`
    /// (streaming and trailer payloads are S3 features, not supported here).
    #[error("Unsupported x-amz-content-sha256 value '{value}'")]
    UnsupportedPayloadHash {
        /// The value as sent.
        value: String,
    },

    /// The signature does not match the one computed with the access key's secret.
    ///
    /// `canonical_request` and `string_to_sign` are what the server computed; AWS returns the
    /// same two strings to help a client find its mistake. Neither depends on the secret.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details."
    )]
    SignatureMismatch {
        /// The canonical request the server computed.
        canonical_request: String,
        /// The string to sign the server computed.
        string_to_sign: String,
    },
}

impl AuthError {
    /// The EC2 error code for this failure (the `<Code>` of the error response).
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::MissingAuthentication => "MissingAuthenticationToken",
            Self::AmbiguousAuthentication
            | Self::UnsupportedAlgorithm { .. }
            | Self::MalformedAuthorization { .. }
            | Self::MissingQueryParameter { .. }
            | Self::Duplicate { .. }
            | Self::MalformedCredential { .. }
            | Self::MissingDate
            | Self::MalformedDate { .. }
            | Self::MalformedSignedHeaders { .. }
            | Self::HostNotSigned
            | Self::InvalidExpires { .. } => "IncompleteSignature",
            Self::UnsupportedPayloadHash { .. } => "InvalidParameterValue",
            Self::BadScopeTerminator { .. }
            | Self::WrongService { .. }
            | Self::ScopeDateMismatch { .. }
            | Self::SignedHeaderMissing { .. }
            | Self::ContentSha256Mismatch { .. }
            | Self::SignatureMismatch { .. } => "SignatureDoesNotMatch",
            Self::RegionNotAllowed { .. } | Self::UnknownAccessKey { .. } => "AuthFailure",
            Self::SignatureExpired { .. }
            | Self::SignatureNotYetCurrent { .. }
            | Self::PresignedUrlExpired { .. } => "RequestExpired",
        }
    }

    /// The HTTP status EC2 answers this failure with: 401 for `AuthFailure`, 403 for
    /// `MissingAuthenticationToken` and `SignatureDoesNotMatch`, 400 otherwise.
    pub fn http_status(&self) -> u16 {
        match self.aws_code() {
            "AuthFailure" => 401,
            "MissingAuthenticationToken" | "SignatureDoesNotMatch" => 403,
            _ => 400,
        }
    }
}
