//! IMDSv2 session tokens: stateless, HMAC-signed, bound to one instance (format in the
//! crate documentation).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The header carrying a token's TTL in seconds, on the PUT and its response.
pub const TOKEN_TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";

const DOMAIN: &[u8] = b"openami-imds-token-v1";
/// 8 bytes of expiry + 32 bytes of HMAC-SHA256.
const RAW_LEN: usize = 40;
/// base64url without padding of 40 bytes.
const TOKEN_LEN: usize = 54;

fn message(instance_id: &str, expiry_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + instance_id.len() + 10);
    m.extend_from_slice(DOMAIN);
    m.push(0);
    m.extend_from_slice(instance_id.as_bytes());
    m.push(0);
    m.extend_from_slice(&expiry_ms.to_be_bytes());
    m
}

/// A token for `instance_id` that expires at `expiry_ms` (unix milliseconds).
pub fn mint_token(key: &[u8; 32], instance_id: &str, expiry_ms: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, &message(instance_id, expiry_ms));
    let mut raw = Vec::with_capacity(RAW_LEN);
    raw.extend_from_slice(&expiry_ms.to_be_bytes());
    raw.extend_from_slice(tag.as_ref());
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether `token` was minted with `key` for `instance_id` and is unexpired at `now_ms`
/// (the HMAC is compared in constant time).
pub fn verify_token(key: &[u8; 32], instance_id: &str, token: &str, now_ms: i64) -> bool {
    if token.len() != TOKEN_LEN {
        return false;
    }
    let Ok(raw) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    let Some((expiry, tag)) = raw.split_first_chunk::<8>() else {
        return false;
    };
    let expiry_ms = u64::from_be_bytes(*expiry);
    let now = u64::try_from(now_ms).unwrap_or(0);
    if expiry_ms <= now {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, &message(instance_id, expiry_ms), tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9; 32];

    #[test]
    fn round_trip_and_binding() {
        let t = mint_token(&KEY, "i-1", 10_000);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(verify_token(&KEY, "i-1", &t, 9_999));
        assert!(!verify_token(&KEY, "i-1", &t, 10_000), "expired at expiry");
        assert!(!verify_token(&KEY, "i-2", &t, 0), "other instance");
        assert!(!verify_token(&[8; 32], "i-1", &t, 0), "other key");
        // Moving the expiry forward breaks the HMAC.
        let forged = mint_token(&KEY, "i-1", 99_999);
        let spliced = format!("{}{}", &forged[..10], &t[10..]);
        assert!(!verify_token(&KEY, "i-1", &spliced, 0));
        assert!(!verify_token(&KEY, "i-1", "", 0));
        assert!(!verify_token(&KEY, "i-1", &"A".repeat(TOKEN_LEN), 0));
        assert!(!verify_token(&KEY, "i-1", &"*".repeat(TOKEN_LEN), 0));
    }
}
