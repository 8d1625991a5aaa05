//! Fuzz `sigv4::verify` and `sigv4::scope_service` on an arbitrary request.
//!
//! Input: the first byte picks the policy's service (`ec2`/`ebs`) and whether a known
//! access key is configured; the rest is text: method, path and `?query` (`?` alone when
//! empty) on the first three lines, then `Name: value` header lines up to an empty line, then the body. Checks that
//! nothing panics, and that a verified request names the service its scope names.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use sigv4::{CredentialLookup, Policy, RequestParts, Secret};

/// 2015-08-30T12:36:00Z, the time the seeds were signed at.
const NOW: u64 = 1_440_938_160;
const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or("");
    let path = lines.next().unwrap_or("");
    let query = lines.next().unwrap_or("");
    let query = query.strip_prefix('?').unwrap_or(query);
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.to_owned(), v.trim_start().to_owned())
        })
        .collect();
    let req = RequestParts {
        method,
        path,
        query,
        headers: &headers,
        body: body.as_bytes(),
    };
    let service = if flags & 1 == 0 { "ec2" } else { "ebs" };
    let policy = Policy::new(service, ["us-east-1", "eu-west-1"]);
    let mut creds: HashMap<String, Secret> = HashMap::new();
    if flags & 2 == 0 {
        creds.insert(KEY_ID.to_owned(), Secret::new(SECRET));
    }
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let scoped = sigv4::scope_service(&req);
    let result = sigv4::verify(&req, &policy, now, &creds as &dyn CredentialLookup);
    if let Ok(v) = &result {
        assert_eq!(v.service, service);
        assert_eq!(scoped.as_deref(), Some(service));
        assert_eq!(v.access_key_id, KEY_ID);
    }
    if let Err(e) = &result {
        let _ = (e.aws_code(), e.http_status(), e.to_string());
    }
});
