//! Resource ids: a prefix and 17 lowercase hex digits (`vol-0123456789abcdef0`), and
//! 12-digit account ids.

use ring::rand::{SecureRandom, SystemRandom};

use crate::Ec2Error;

/// Random bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // SystemRandom only fails if the OS RNG is unavailable, which is not recoverable.
    if SystemRandom::new().fill(&mut out).is_err() {
        tracing::error!("system random number generator failed");
        std::process::abort();
    }
    out
}

/// A new id such as `vol-0a1b2c3d4e5f60718`.
pub fn new_id(prefix: &str) -> String {
    let hex = hex::encode(random_bytes::<9>());
    format!("{prefix}-{}", &hex[..17])
}

/// True if `id` is `<prefix>-` followed by 8 or 17 lowercase hex digits.
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            (hex.len() == 17 || hex.len() == 8)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Checks an id's shape, failing with e.g. `InvalidVolumeID.Malformed`.
pub fn check(prefix: &str, malformed_code: &str, id: &str) -> Result<(), Ec2Error> {
    if is_valid(prefix, id) {
        Ok(())
    } else {
        Err(Ec2Error::malformed(malformed_code, id))
    }
}

/// True for a 12-digit account id.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// A new random 12-digit account id.
pub fn new_account_id() -> String {
    let n = u64::from_le_bytes(random_bytes::<8>()) % 900_000_000_000 + 100_000_000_000;
    n.to_string()
}

/// A new access key id (`AKIA` + 16 upper-case alphanumerics) and secret (40 chars).
pub fn new_access_key() -> (String, String) {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let id: String = random_bytes::<16>()
        .iter()
        .map(|b| UPPER[(*b as usize) % UPPER.len()] as char)
        .collect();
    let secret: String = random_bytes::<40>()
        .iter()
        .map(|b| SECRET[(*b as usize) % SECRET.len()] as char)
        .collect();
    (format!("AKIA{id}"), secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = new_id("vol");
        assert!(is_valid("vol", &id), "{id}");
        assert!(is_valid("vol", "vol-1234abcd"));
        assert!(!is_valid("vol", "vol-XYZ"));
        assert!(!is_valid("vol", "snap-0123456789abcdef0"));
        assert!(is_account_id(&new_account_id()));
        let (key, secret) = new_access_key();
        assert_eq!(key.len(), 20);
        assert_eq!(secret.len(), 40);
    }
}
