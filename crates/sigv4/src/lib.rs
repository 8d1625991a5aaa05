//! AWS Signature Version 4 for openami: server-side verification of signed requests
//! ([`verify`]) and client-side signing ([`sign_headers`], [`presign_url`]).
//!
//! Canonicalization follows botocore's `SigV4Auth` for non-S3 services: the canonical URI
//! is the wire path, normalized (dot and empty segments removed) and percent-encoded once
//! more, so `%20` is signed as `%2520`; the query is decoded, re-encoded (RFC 3986) and sorted;
//! header values are trimmed with inner white space collapsed. It is checked against
//! the published AWS SigV4 test suite and against requests signed by botocore.
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::{Duration, UNIX_EPOCH};
//! use sigv4::{Policy, RequestParts, Secret, SigningParams, sha256_hex, sign_headers, verify};
//!
//! let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
//! let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
//! let body = b"Action=DescribeRegions&Version=2016-11-15";
//! let mut headers = vec![("Host".to_owned(), "127.0.0.1:8773".to_owned())];
//! let params = SigningParams {
//!     access_key_id: "AKIDEXAMPLE",
//!     secret: &secret,
//!     region: "us-east-1",
//!     service: "ec2",
//!     time: now,
//!     security_token: None,
//! };
//! let signed = sign_headers("POST", "/", "", &headers, &sha256_hex(body), &params).unwrap();
//! headers.extend(signed.headers());
//!
//! let creds = HashMap::from([("AKIDEXAMPLE".to_owned(), secret.clone())]);
//! let req = RequestParts { method: "POST", path: "/", query: "", headers: &headers, body };
//! let verified = verify(&req, &Policy::new("ec2", ["us-east-1"]), now, &creds).unwrap();
//! assert_eq!(verified.access_key_id, "AKIDEXAMPLE");
//! ```

mod canonical;
mod error;
mod parse;
mod sign;
mod time;
mod verify;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

pub use canonical::{EMPTY_SHA256, UNSIGNED_PAYLOAD, sha256_hex};
pub use error::AuthError;
pub use sign::{
    HeaderSignature, PresignedQuery, SignError, SigningParams, presign_url, sign_headers,
};
pub use verify::verify;

/// A secret access key. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`]
/// gives the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret access key.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where [`verify`] finds the secret of an access key ID.
pub trait CredentialLookup {
    /// The secret of `access_key_id`, or `None` if the key is unknown (or disabled).
    fn secret_for(&self, access_key_id: &str) -> Option<Secret>;
}

impl CredentialLookup for HashMap<String, Secret> {
    fn secret_for(&self, access_key_id: &str) -> Option<Secret> {
        self.get(access_key_id).cloned()
    }
}

/// The parts of an incoming HTTP request that the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// The raw path as received, still percent-encoded, e.g. `/` or
    /// `/snapshots/snap-1/blocks/3`.
    pub path: &'a str,
    /// The raw query string without `?`; may be empty.
    pub query: &'a str,
    /// The headers as received: names in any case, possibly repeated, in order. Must
    /// include `Host` (for HTTP/2, add the `:authority` as `host`).
    pub headers: &'a [(String, String)],
    /// The body; hashed when `X-Amz-Content-SHA256` is absent, and checked against that
    /// header when it is a digest.
    pub body: &'a [u8],
}

/// What [`verify`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The service name the credential scope must name: `ec2` or `ebs`.
    pub service: String,
    /// The regions this endpoint serves; the credential scope must name one of them.
    pub regions: Vec<String>,
    /// How far the request timestamp may be from the server's clock, either way.
    pub max_skew: Duration,
}

impl Policy {
    /// The skew AWS allows: 15 minutes.
    pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(15 * 60);

    /// A policy for `service` in `regions` with the default skew of 15 minutes.
    pub fn new<I, S>(service: impl Into<String>, regions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            service: service.into(),
            regions: regions.into_iter().map(Into::into).collect(),
            max_skew: Self::DEFAULT_MAX_SKEW,
        }
    }
}

/// The service named in the request's credential scope (header or presigned query),
/// verifying nothing: for routing a request to the service that then verifies it.
/// `None` if the request carries no parseable SigV4 authentication.
pub fn scope_service(req: &RequestParts<'_>) -> Option<String> {
    parse::extract(req)
        .ok()
        .map(|input| input.credential.service)
}

/// The access key ID a request claims to be signed with (header or presigned query),
/// verifying nothing: for audit records of refused requests. `None` if the request carries
/// no parseable SigV4 authentication or the claimed ID is not a plausible key ID (at most
/// 128 ASCII letters and digits), so that the caller never records arbitrary bytes.
pub fn claimed_access_key_id(req: &RequestParts<'_>) -> Option<String> {
    let id = parse::extract(req).ok()?.credential.access_key_id;
    let plausible =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    plausible.then_some(id)
}

/// A request whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key ID that signed it.
    pub access_key_id: String,
    /// The region of the credential scope.
    pub region: String,
    /// The service of the credential scope.
    pub service: String,
    /// The request timestamp (`X-Amz-Date` or `Date`).
    pub signed_at: SystemTime,
    /// Whether the signature came in the query string (presigned URL).
    pub presigned: bool,
    /// Whether the signature covers the body (false for `UNSIGNED-PAYLOAD`).
    pub payload_signed: bool,
    /// The `X-Amz-Security-Token` sent, if any (signed or not: the caller decides whether
    /// session tokens are acceptable).
    pub security_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_service_reads_header_and_query_scopes() {
        let headers = vec![
            ("X-Amz-Date".to_owned(), "20150830T123600Z".to_owned()),
            (
                "Authorization".to_owned(),
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/ssm/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc"
                    .to_owned(),
            ),
        ];
        let req = |headers: &[(String, String)], query: &'static str| {
            scope_service(&RequestParts {
                method: "POST",
                path: "/",
                query,
                headers,
                body: b"",
            })
        };
        assert_eq!(req(&headers, "").as_deref(), Some("ssm"));
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fec2%2Faws4_request\
                     &X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Signature=abc";
        assert_eq!(req(&[], query).as_deref(), Some("ec2"));
        assert_eq!(req(&[], ""), None);
    }

    #[test]
    fn claimed_access_key_id_is_read_but_only_when_plausible() {
        let claim = |key: &str| {
            let headers = vec![
                ("X-Amz-Date".to_owned(), "20150830T123600Z".to_owned()),
                (
                    "Authorization".to_owned(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential={key}/20150830/us-east-1/ec2/aws4_request, \
                         SignedHeaders=host;x-amz-date, Signature=abc"
                    ),
                ),
            ];
            claimed_access_key_id(&RequestParts {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: b"",
            })
        };
        assert_eq!(claim("AKIAEXAMPLE7").as_deref(), Some("AKIAEXAMPLE7"));
        assert_eq!(claim("AKIA\"},{\"x"), None);
        assert_eq!(claim(&"A".repeat(129)), None);
    }

    #[test]
    fn secret_is_redacted() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        let policy_debug = format!("{:?}", Some(secret.clone()));
        assert!(!policy_debug.contains("EXAMPLEKEY"));
        assert_eq!(secret.expose(), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    }
}
