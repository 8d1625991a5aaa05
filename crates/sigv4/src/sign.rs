//! Client-side SigV4 signing: an `Authorization` header ([`sign_headers`]) or a presigned
//! query string ([`presign_url`]). Used by this crate's tests and by openami clients; it
//! canonicalizes exactly as the verifier does, so whatever it signs, [`crate::verify`] accepts.

use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::Secret;
use crate::canonical::{
    ALGORITHM, canonical_headers, canonical_query, canonical_request, canonical_uri, scope,
    signature_hex, signing_key, string_to_sign, uri_encode,
};
use crate::parse::MAX_EXPIRES_SECS;
use crate::time::{format_amz, unix_secs};

/// Who signs, for what, and when.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// The access key ID.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret: &'a Secret,
    /// The region of the credential scope, e.g. `us-east-1`.
    pub region: &'a str,
    /// The service of the credential scope, e.g. `ec2` or `ebs`.
    pub service: &'a str,
    /// The signing time (becomes `X-Amz-Date`).
    pub time: SystemTime,
    /// A session token to send (and sign) as `X-Amz-Security-Token`, if any.
    pub security_token: Option<&'a str>,
}

/// The result of [`sign_headers`]: the headers to add, and the intermediate strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSignature {
    /// The `Authorization` header value.
    pub authorization: String,
    /// The `X-Amz-Date` header value.
    pub x_amz_date: String,
    /// The `X-Amz-Security-Token` header value, when a token was given.
    pub security_token: Option<String>,
    /// The signed-headers list, e.g. `host;x-amz-date`.
    pub signed_headers: String,
    /// The hex signature.
    pub signature: String,
    /// The canonical request that was signed.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
}

impl HeaderSignature {
    /// The headers to add to the request: `X-Amz-Date`, `X-Amz-Security-Token` (if any)
    /// and `Authorization`.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out = vec![("X-Amz-Date".to_owned(), self.x_amz_date.clone())];
        if let Some(token) = &self.security_token {
            out.push(("X-Amz-Security-Token".to_owned(), token.clone()));
        }
        out.push(("Authorization".to_owned(), self.authorization.clone()));
        out
    }
}

/// The result of [`presign_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedQuery {
    /// The complete query string (without `?`): the original parameters, then the
    /// `X-Amz-*` authentication parameters ending with `X-Amz-Signature`.
    pub query: String,
    /// The hex signature.
    pub signature: String,
    /// The canonical request that was signed.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// The headers to sign do not include `Host`.
    #[error("the headers to sign must include Host")]
    MissingHost,
    /// A header name is empty or contains characters that cannot be signed.
    #[error("header name {name:?} cannot be signed")]
    InvalidHeaderName {
        /// The offending name.
        name: String,
    },
    /// The presigned URL validity is not between 1 second and 7 days.
    #[error("presigned URL validity must be between 1 and 604800 seconds, got {secs}")]
    InvalidExpires {
        /// The requested validity in seconds.
        secs: u64,
    },
    /// The query to presign already carries `X-Amz-*` authentication parameters.
    #[error("the query already contains the authentication parameter {name}")]
    AlreadySigned {
        /// The parameter found.
        name: String,
    },
}

/// Signs a request with an `Authorization` header.
///
/// `path` and `query` are as they will be sent on the wire (already percent-encoded);
/// `headers` are the headers to sign and must include `Host`. Any `Authorization` or
/// `X-Amz-Date` among them is ignored (and `X-Amz-Security-Token` too when
/// `params.security_token` is set): the signer supplies them. `payload_hash` is the hex
/// SHA-256 of the body ([`crate::sha256_hex`]), or [`crate::UNSIGNED_PAYLOAD`] together with
/// an `X-Amz-Content-SHA256: UNSIGNED-PAYLOAD` header in `headers`.
pub fn sign_headers(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
    params: &SigningParams<'_>,
) -> Result<HeaderSignature, SignError> {
    let amz_date = format_amz(unix_secs(params.time));
    let mut to_sign: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            let lower = name.to_ascii_lowercase();
            !(lower == "authorization"
                || lower == "x-amz-date"
                || (params.security_token.is_some() && lower == "x-amz-security-token"))
        })
        .cloned()
        .collect();
    to_sign.push(("x-amz-date".to_owned(), amz_date.clone()));
    if let Some(token) = params.security_token {
        to_sign.push(("x-amz-security-token".to_owned(), token.to_owned()));
    }
    let names = signed_names(&to_sign)?;
    let headers_block = canonical_headers(&to_sign, &names)
        .map_err(|name| SignError::InvalidHeaderName { name })?;
    let signed_headers = names.join(";");
    let canonical = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(query, &[]),
        &headers_block,
        &signed_headers,
        payload_hash,
    );
    let (scope, signature, to_sign_text) = sign(&canonical, &amz_date, params);
    Ok(HeaderSignature {
        authorization: format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            params.access_key_id
        ),
        x_amz_date: amz_date,
        security_token: params.security_token.map(str::to_owned),
        signed_headers,
        signature,
        canonical_request: canonical,
        string_to_sign: to_sign_text,
    })
}

/// Presigns a request: returns the query string carrying the signature.
///
/// `path`, `query` and `headers` are as for [`sign_headers`] (`headers` must include `Host`;
/// every header given is signed). `payload_hash` is what the signature binds the body to:
/// botocore uses the SHA-256 of the (empty) body, [`crate::EMPTY_SHA256`], for presigned URLs
/// of non-S3 services; S3 uses [`crate::UNSIGNED_PAYLOAD`]. `expires` must be between
/// 1 second and 7 days.
pub fn presign_url(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
    expires: Duration,
    params: &SigningParams<'_>,
) -> Result<PresignedQuery, SignError> {
    let expires = expires.as_secs();
    if !(1..=MAX_EXPIRES_SECS).contains(&expires) {
        return Err(SignError::InvalidExpires { secs: expires });
    }
    for (name, _) in crate::canonical::raw_query_pairs(query) {
        let decoded = String::from_utf8_lossy(&crate::canonical::percent_decode(name)).into_owned();
        if decoded.starts_with("X-Amz-") {
            return Err(SignError::AlreadySigned { name: decoded });
        }
    }
    let to_sign: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    let names = signed_names(&to_sign)?;
    let headers_block = canonical_headers(&to_sign, &names)
        .map_err(|name| SignError::InvalidHeaderName { name })?;
    let signed_headers = names.join(";");
    let amz_date = format_amz(unix_secs(params.time));
    let date = amz_date.get(..8).unwrap_or_default();
    let credential = format!(
        "{}/{}",
        params.access_key_id,
        scope(date, params.region, params.service)
    );
    let mut auth = vec![
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", signed_headers.clone()),
    ];
    if let Some(token) = params.security_token {
        auth.push(("X-Amz-Security-Token", token.to_owned()));
    }
    let mut full_query = query.trim_end_matches('&').to_owned();
    for (name, value) in auth {
        if !full_query.is_empty() {
            full_query.push('&');
        }
        full_query.push_str(name);
        full_query.push('=');
        full_query.push_str(&uri_encode(value.as_bytes(), false));
    }
    let canonical = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(&full_query, &[]),
        &headers_block,
        &signed_headers,
        payload_hash,
    );
    let (_, signature, to_sign_text) = sign(&canonical, &amz_date, params);
    full_query.push_str("&X-Amz-Signature=");
    full_query.push_str(&signature);
    Ok(PresignedQuery {
        query: full_query,
        signature,
        canonical_request: canonical,
        string_to_sign: to_sign_text,
    })
}

/// Lower-case, sorted, unique names of `headers`, which must include `host`.
fn signed_names(headers: &[(String, String)]) -> Result<Vec<String>, SignError> {
    let mut names = Vec::with_capacity(headers.len());
    for (name, _) in headers {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b';' | b','));
        if !valid {
            return Err(SignError::InvalidHeaderName { name: name.clone() });
        }
        names.push(name.to_ascii_lowercase());
    }
    names.sort();
    names.dedup();
    if !names.iter().any(|n| n == "host") {
        return Err(SignError::MissingHost);
    }
    Ok(names)
}

/// Returns `(scope, hex signature, string to sign)` for `canonical`.
fn sign(canonical: &str, amz_date: &str, params: &SigningParams<'_>) -> (String, String, String) {
    let date = amz_date.get(..8).unwrap_or_default();
    let scope = scope(date, params.region, params.service);
    let to_sign = string_to_sign(amz_date, &scope, canonical);
    let key = signing_key(params.secret, date, params.region, params.service);
    let signature = signature_hex(&key, &to_sign);
    (scope, signature, to_sign)
}
