//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sigv4::Secret;

/// `SystemTime` at `secs` after the Unix epoch.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Owned header pairs from string slices.
pub fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// A credential store holding one key.
pub fn creds(access_key_id: &str, secret: &str) -> HashMap<String, Secret> {
    HashMap::from([(access_key_id.to_owned(), Secret::new(secret))])
}

/// Splits `path?query` (the query may be absent).
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}
