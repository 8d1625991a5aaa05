//! Server-side verification of a SigV4-signed request: credential scope, timestamp,
//! access key, payload hash and finally the signature itself (compared in constant time
//! by `ring::hmac::verify`).

use std::time::SystemTime;

use ring::hmac;

use crate::canonical::{
    TERMINATOR, UNSIGNED_PAYLOAD, canonical_headers, canonical_query, canonical_request,
    canonical_uri, scope, sha256_hex, signing_key, string_to_sign,
};
use crate::parse::{self, AuthInput, single_header};
use crate::time::{format_amz, from_unix_secs, unix_secs};
use crate::{AuthError, CredentialLookup, Policy, RequestParts, Verified};

/// Verifies the SigV4 signature of `req` at time `now`.
///
/// Accepts the `Authorization` header form (timestamp from `X-Amz-Date`, else `Date`) and
/// query-string authentication (presigned URLs). Checks, in order: the syntax, the credential
/// scope (terminator, `policy.service`, one of `policy.regions`, date equal to the timestamp's),
/// the timestamp (within `policy.max_skew` of `now`; for a presigned URL with `X-Amz-Expires`,
/// not in the future beyond the skew and not expired), the access key (through `creds`), the
/// payload hash, and the signature.
///
/// The payload hash signed is the `X-Amz-Content-SHA256` header when present (a hex digest,
/// which must then match `req.body`, or `UNSIGNED-PAYLOAD`), else the SHA-256 of `req.body`,
/// which is what botocore signs for headers and for presigned URLs of non-S3 services. For
/// query authentication without that header, a signature over `UNSIGNED-PAYLOAD` (what S3-style
/// presigners produce) is accepted too, and reported as `payload_signed: false`.
///
/// `req.headers` must contain `Host` as the client sent it (for HTTP/2, the `:authority`).
pub fn verify(
    req: &RequestParts<'_>,
    policy: &Policy,
    now: SystemTime,
    creds: &dyn CredentialLookup,
) -> Result<Verified, AuthError> {
    let input = parse::extract(req)?;
    check_scope(&input, policy)?;
    check_time(&input, policy, unix_secs(now))?;
    let credential = &input.credential;
    let secret =
        creds
            .secret_for(&credential.access_key_id)
            .ok_or_else(|| AuthError::UnknownAccessKey {
                access_key_id: credential.access_key_id.clone(),
            })?;
    let payload = payload_hash(req)?;

    let presigned = input.query_auth.is_some();
    let exclude: &[&str] = if presigned { &["X-Amz-Signature"] } else { &[] };
    let uri = canonical_uri(req.path);
    let query = canonical_query(req.query, exclude);
    let headers_block = canonical_headers(req.headers, &input.signed_headers)
        .map_err(|name| AuthError::SignedHeaderMissing { name })?;
    let signed_headers = input.signed_headers.join(";");
    let scope = scope(&credential.date, &credential.region, &credential.service);
    let amz_date = input.amz_date();
    let key = signing_key(
        &secret,
        &credential.date,
        &credential.region,
        &credential.service,
    );
    // A signature that is not hex cannot match; an empty tag never verifies.
    let provided = hex::decode(&input.signature).unwrap_or_default();

    let attempt = |payload_hash: &str| {
        let canonical = canonical_request(
            req.method,
            &uri,
            &query,
            &headers_block,
            &signed_headers,
            payload_hash,
        );
        let to_sign = string_to_sign(&amz_date, &scope, &canonical);
        let ok = hmac::verify(&key, to_sign.as_bytes(), &provided).is_ok();
        (ok, canonical, to_sign)
    };

    let (ok, canonical, to_sign) = attempt(&payload.hash);
    let payload_signed = if ok {
        payload.signed
    } else if presigned && !payload.from_header && attempt(UNSIGNED_PAYLOAD).0 {
        false
    } else {
        return Err(AuthError::SignatureMismatch {
            canonical_request: canonical,
            string_to_sign: to_sign,
        });
    };

    Ok(Verified {
        access_key_id: credential.access_key_id.clone(),
        region: credential.region.clone(),
        service: credential.service.clone(),
        signed_at: from_unix_secs(input.signed_at),
        presigned,
        payload_signed,
        security_token: input.security_token.clone(),
    })
}

fn check_scope(input: &AuthInput, policy: &Policy) -> Result<(), AuthError> {
    let credential = &input.credential;
    if credential.terminator != TERMINATOR {
        return Err(AuthError::BadScopeTerminator {
            terminator: credential.terminator.clone(),
        });
    }
    if credential.service != policy.service {
        return Err(AuthError::WrongService {
            expected: policy.service.clone(),
            got: credential.service.clone(),
        });
    }
    if !policy.regions.contains(&credential.region) {
        return Err(AuthError::RegionNotAllowed {
            region: credential.region.clone(),
        });
    }
    let amz_date = input.amz_date();
    let request_date = amz_date.get(..8).unwrap_or_default();
    if credential.date != request_date {
        return Err(AuthError::ScopeDateMismatch {
            scope_date: credential.date.clone(),
            request_date: request_date.to_owned(),
        });
    }
    Ok(())
}

fn check_time(input: &AuthInput, policy: &Policy, now: u64) -> Result<(), AuthError> {
    let skew = policy.max_skew.as_secs();
    let signed_at = input.signed_at;
    if signed_at > now.saturating_add(skew) {
        return Err(AuthError::SignatureNotYetCurrent {
            signed_at: format_amz(signed_at),
            latest: format_amz(now.saturating_add(skew)),
            now: format_amz(now),
            skew_secs: skew,
        });
    }
    match input.query_auth {
        Some(Some(expires)) => {
            let expired_at = signed_at.saturating_add(expires);
            if now > expired_at {
                return Err(AuthError::PresignedUrlExpired {
                    expired_at: format_amz(expired_at),
                    now: format_amz(now),
                });
            }
        }
        _ => {
            if signed_at.saturating_add(skew) < now {
                return Err(AuthError::SignatureExpired {
                    signed_at: format_amz(signed_at),
                    earliest: format_amz(now.saturating_sub(skew)),
                    now: format_amz(now),
                    skew_secs: skew,
                });
            }
        }
    }
    Ok(())
}

/// The payload hash to put in the canonical request.
struct PayloadHash {
    hash: String,
    /// Whether the hash binds the body (false for `UNSIGNED-PAYLOAD`).
    signed: bool,
    /// Whether it came from `X-Amz-Content-SHA256`.
    from_header: bool,
}

fn payload_hash(req: &RequestParts<'_>) -> Result<PayloadHash, AuthError> {
    let Some(value) = single_header(req.headers, "x-amz-content-sha256", "X-Amz-Content-SHA256")?
    else {
        return Ok(PayloadHash {
            hash: sha256_hex(req.body),
            signed: true,
            from_header: false,
        });
    };
    let value = value.trim();
    if value == UNSIGNED_PAYLOAD {
        return Ok(PayloadHash {
            hash: value.to_owned(),
            signed: false,
            from_header: true,
        });
    }
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::UnsupportedPayloadHash {
            value: value.to_owned(),
        });
    }
    let computed = sha256_hex(req.body);
    if !value.eq_ignore_ascii_case(&computed) {
        return Err(AuthError::ContentSha256Mismatch {
            claimed: value.to_owned(),
            computed,
        });
    }
    Ok(PayloadHash {
        hash: value.to_owned(),
        signed: true,
        from_header: true,
    })
}
