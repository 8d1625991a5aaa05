//! Identifiers of snapshots and hold owners as the block store sees them.

use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid identifier {id:?}: must be 1-64 characters of [a-z0-9-]")]
pub struct IdError {
    /// The refused identifier (truncated).
    pub id: String,
}

/// A snapshot id or holder id: 1–64 characters of `[a-z0-9-]` (e.g. `snap-0123…`,
/// `vol-…`). Safe to embed in an object key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(String);

impl ResourceId {
    /// Validates an id.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(ResourceId(id))
        } else {
            Err(IdError {
                id: id.chars().take(80).collect(),
            })
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::str::FromStr for ResourceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(ResourceId::new("snap-0123456789abcdef0").is_ok());
        for bad in ["", "SNAP", "a/b", "..", "a b", &"a".repeat(65)] {
            assert!(ResourceId::new(bad).is_err(), "{bad}");
        }
    }
}
