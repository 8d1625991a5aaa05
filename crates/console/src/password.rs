//! Console passwords: Argon2id hashes in PHC string form, the only thing the catalog keeps.
//!
//! ```text
//! $argon2id$v=19$m=19456,t=2,p=1$<salt: 16 random bytes, B64>$<hash: 32 bytes, B64>
//! ```
//!
//! The parameters are the `argon2` crate's defaults (OWASP's minimum for Argon2id:
//! 19 MiB, 2 passes, 1 lane); verification reads them back from the stored string, so
//! changing the defaults later keeps old hashes valid. `openami account
//! set-console-password` hashes ([`hash`]); the console's sign-in verifies ([`verify`]).
//! A sign-in for an account that does not exist or has no password verifies against
//! [`dummy_hash`] instead, so that every refusal costs the same time.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Fewest characters a console password may have.
pub const MIN_LEN: usize = 8;
/// Most bytes a console password may have (longer input is refused before hashing).
pub const MAX_LEN: usize = 1024;

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Fewer than [`MIN_LEN`] characters.
    #[error("a console password needs at least {MIN_LEN} characters")]
    TooShort,
    /// More than [`MAX_LEN`] bytes.
    #[error("a console password has at most {MAX_LEN} bytes")]
    TooLong,
    /// A control character (a newline pasted by mistake, a NUL).
    #[error("a console password cannot contain control characters")]
    ControlCharacter,
    /// Argon2 refused (not expected with the fixed parameters).
    #[error("hashing the password: {0}")]
    Hash(String),
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Checks a new password: [`MIN_LEN`] characters at least, [`MAX_LEN`] bytes at most, no
/// control characters.
pub fn check(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::ControlCharacter);
    }
    Ok(())
}

/// The Argon2id PHC string of a new password (checked with [`check`]), with a fresh
/// random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check(password)?;
    let salt = SaltString::encode_b64(&engine::ids::random_bytes::<16>())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True if `password` matches the PHC string `stored`. A stored string that does not
/// parse matches nothing. Input longer than [`MAX_LEN`] is hashed as far as its first
/// [`MAX_LEN`] bytes and then refused, so that it costs what a normal guess costs.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        // Still pay the cost, so that a damaged row is no faster than a wrong password.
        let _ = verify_dummy(password);
        return false;
    };
    let bytes = password.as_bytes();
    let too_long = bytes.len() > MAX_LEN;
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let ok = argon2().verify_password(bytes, &parsed).is_ok();
    ok && !too_long
}

/// A hash of a random password, made once: what a sign-in for an account without a
/// password is verified against (always false, at the cost of a real verification).
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = hex::encode(engine::ids::random_bytes::<16>());
        hash(&random).unwrap_or_else(|e| {
            // Cannot happen (32 hex digits pass `check`); keep the cost anyway.
            tracing::error!(error = %e, "console: making the dummy password hash");
            String::new()
        })
    })
}

/// Verifies `password` against [`dummy_hash`]: always false.
pub fn verify_dummy(password: &str) -> bool {
    if let Ok(parsed) = PasswordHash::new(dummy_hash()) {
        let bytes = password.as_bytes();
        let _ = argon2().verify_password(&bytes[..bytes.len().min(MAX_LEN)], &parsed);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify("correct horse battery", &a));
        assert!(verify("correct horse battery", &b));
        assert!(!verify("correct horse batterx", &a));
        assert!(!verify("", &a));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert!(!verify("correct horse battery", ""));
    }

    #[test]
    fn new_passwords_are_checked() {
        assert!(matches!(hash("short7!"), Err(PasswordError::TooShort)));
        // Characters, not bytes: seven two-byte characters are still too short.
        assert!(matches!(check("ééééééé"), Err(PasswordError::TooShort)));
        assert!(check("éééééééé").is_ok());
        assert!(matches!(
            check("line one\n"),
            Err(PasswordError::ControlCharacter)
        ));
        assert!(matches!(
            check(&"x".repeat(MAX_LEN + 1)),
            Err(PasswordError::TooLong)
        ));
        assert!(check(&"x".repeat(MAX_LEN)).is_ok());
        assert_eq!(
            PasswordError::TooShort.to_string(),
            "a console password needs at least 8 characters"
        );
    }

    #[test]
    fn overlong_guesses_never_match() {
        let long = "y".repeat(MAX_LEN);
        let stored = hash(&long).unwrap();
        assert!(verify(&long, &stored));
        // Same first MAX_LEN bytes, one more: refused.
        assert!(!verify(&format!("{long}y"), &stored));
    }

    #[test]
    fn the_dummy_matches_nothing() {
        assert!(dummy_hash().starts_with("$argon2id$"));
        assert_eq!(dummy_hash(), dummy_hash());
        assert!(!verify_dummy("anything at all"));
    }
}
