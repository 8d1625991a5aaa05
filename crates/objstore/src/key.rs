//! Validated object keys.

use std::fmt;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// A key that was refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct KeyError {
    /// The refused key (truncated to 100 characters).
    pub key: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// An object key: `/`-separated segments of `[a-z0-9._-]`, none empty or starting with `.`.
///
/// Keys map directly onto relative file paths in [`crate::LocalFsStore`], so the rules
/// guarantee a key can never escape the store's root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        let refuse = |reason| KeyError {
            key: key.chars().take(100).collect(),
            reason,
        };
        if key.is_empty() {
            return Err(refuse("empty"));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(refuse("longer than 512 bytes"));
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return Err(refuse("empty path segment"));
            }
            if segment.starts_with('.') {
                return Err(refuse("segment starting with '.'"));
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            {
                return Err(refuse("characters outside [a-z0-9._-/]"));
            }
        }
        Ok(ObjectKey(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "blocks/ab/abcdef",
            "snapshots/snap-0123.manifest",
            "x_y-z.1",
        ] {
            assert!(ObjectKey::new(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn refuses_path_tricks() {
        for key in [
            "",
            "/abs",
            "a//b",
            "a/",
            "..",
            "a/../b",
            "./a",
            ".tmp/x",
            "a/.hidden",
            "A",
            "a b",
            "a\\b",
            "a\0b",
            "é",
        ] {
            assert!(ObjectKey::new(key).is_err(), "{key:?} accepted");
        }
        assert!(ObjectKey::new("a".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
