//! The fuzz target's seeds (`fuzz/seeds/verify/`, signed by botocore) verify, read the way
//! the target reads them: so the fuzzer starts from requests that reach the signature check
//! and pass it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use sigv4::{CredentialLookup, Policy, RequestParts, Secret};

#[test]
fn fuzz_seeds_are_valid_signed_requests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/verify");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let (&flags, rest) = data.split_first().unwrap();
        let text = String::from_utf8(rest.to_vec()).unwrap();
        let (head, body) = text.split_once("\n\n").unwrap();
        let mut lines = head.split('\n');
        let (method, p, query) = (
            lines.next().unwrap(),
            lines.next().unwrap(),
            lines.next().unwrap().strip_prefix('?').unwrap(),
        );
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_owned(), v.trim_start().to_owned())
            })
            .collect();
        let req = RequestParts {
            method,
            path: p,
            query,
            headers: &headers,
            body: body.as_bytes(),
        };
        let service = if flags & 1 == 0 { "ec2" } else { "ebs" };
        let creds: HashMap<String, Secret> = HashMap::from([(
            "AKIDEXAMPLE".to_owned(),
            Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        )]);
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let v = sigv4::verify(
            &req,
            &Policy::new(service, ["us-east-1"]),
            now,
            &creds as &dyn CredentialLookup,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(v.service, service);
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} seeds");
}
