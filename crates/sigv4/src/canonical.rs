//! The pieces of the SigV4 canonical request, string to sign and signing key, shared by
//! the verifier and the signer so that both always agree.
//!
//! Encoding follows botocore's `SigV4Auth` (the signer used by the AWS CLI and boto3) for
//! services other than S3:
//! - canonical URI: the path *as sent on the wire* (already percent-encoded by the client),
//!   with dot segments and empty segments removed (`remove_dot_segments`), then
//!   percent-encoded once more (`quote(path, safe='/~')`), so `%20` on the wire becomes
//!   `%2520`: the "encode twice, except for S3" rule of the AWS documentation;
//! - canonical query: each `name=value` pair percent-decoded and re-encoded with the
//!   RFC 3986 unreserved set (`A-Z a-z 0-9 - _ . ~`, space as `%20`, hex upper case),
//!   sorted by encoded name then encoded value; a `+` is a literal plus (`%2B`);
//! - canonical headers: lower-case names, values with surrounding white space removed and
//!   inner runs collapsed to one space, repeated headers joined with `,` in received order.

use ring::{digest, hmac};

use crate::Secret;

/// The algorithm name in the `Authorization` header and `X-Amz-Algorithm`.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The last element of every SigV4 credential scope.
pub(crate) const TERMINATOR: &str = "aws4_request";

/// The payload-hash value meaning "the body is not signed".
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Hex SHA-256 of the empty string: the payload hash of a request without a body, and what
/// botocore signs for a presigned URL of a non-S3 service.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// Percent-encodes every byte of `input` outside the RFC 3986 unreserved set (and outside
/// `/` when `keep_slash`), with upper-case hex digits.
pub(crate) fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays literal.
pub(crate) fn percent_decode(input: &str) -> Vec<u8> {
    let b = input.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex_value(b[i + 1]), hex_value(b[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits a raw query string into `(name, value)` pairs, still encoded. Empty segments
/// (`a=1&&b=2`) are skipped; a segment without `=` has an empty value.
pub(crate) fn raw_query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| segment.split_once('=').unwrap_or((segment, "")))
}

/// The canonical query string of `query` (raw, without `?`), leaving out every parameter
/// whose decoded name is in `exclude`.
pub(crate) fn canonical_query(query: &str, exclude: &[&str]) -> String {
    let mut pairs: Vec<(String, String)> = raw_query_pairs(query)
        .filter_map(|(name, value)| {
            let name = percent_decode(name);
            if exclude.iter().any(|e| e.as_bytes() == name.as_slice()) {
                return None;
            }
            Some((
                uri_encode(&name, false),
                uri_encode(&percent_decode(value), false),
            ))
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The canonical URI of a raw request path (see the module docs).
pub(crate) fn canonical_uri(path: &str) -> String {
    uri_encode(remove_dot_segments(path).as_bytes(), true)
}

/// botocore's `normalize_url_path`: RFC 3986 dot-segment removal that also drops empty
/// segments (`//`), keeping a leading and (for a non-root result) a trailing slash.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&kept.join("/"));
    if path.ends_with('/') && !kept.is_empty() {
        out.push('/');
    }
    out
}

/// Trims `value` and collapses inner runs of white space to one space (SigV4 `Trimall`).
pub(crate) fn trim_all(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical headers block (each line `name:value\n`) for the lower-case, sorted
/// `signed` names, taking values from `headers` (names matched case-insensitively, repeats
/// joined with `,`). Returns the first signed name that has no header, if any.
pub(crate) fn canonical_headers(
    headers: &[(String, String)],
    signed: &[String],
) -> Result<String, String> {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_all(v))
            .collect();
        if values.is_empty() {
            return Err(name.clone());
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Joins the six parts of a canonical request.
pub(crate) fn canonical_request(
    method: &str,
    uri: &str,
    query: &str,
    headers_block: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!("{method}\n{uri}\n{query}\n{headers_block}\n{signed_headers}\n{payload_hash}")
}

/// The credential scope `date/region/service/aws4_request`.
pub(crate) fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/{TERMINATOR}")
}

/// The string to sign for `canonical_request`.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The SigV4 signing key: HMAC chain over date, region, service and `aws4_request`.
pub(crate) fn signing_key(secret: &Secret, date: &str, region: &str, service: &str) -> hmac::Key {
    hmac::Key::new(
        hmac::HMAC_SHA256,
        &signing_key_bytes(secret, date, region, service),
    )
}

/// The raw bytes of [`signing_key`] (`kSigning` in the AWS documentation).
fn signing_key_bytes(secret: &Secret, date: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + secret.expose().len());
    key.extend_from_slice(b"AWS4");
    key.extend_from_slice(secret.expose().as_bytes());
    for part in [date, region, service, TERMINATOR] {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes());
        key = tag.as_ref().to_vec();
    }
    key
}

/// Lower-case hex HMAC-SHA256 of `string_to_sign` under `key`.
pub(crate) fn signature_hex(key: &hmac::Key, string_to_sign: &str) -> String {
    hex::encode(hmac::sign(key, string_to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_unreserved_only() {
        assert_eq!(uri_encode(b"a-b_c.d~e/f g+h", true), "a-b_c.d~e/f%20g%2Bh");
        assert_eq!(uri_encode(b"a/b", false), "a%2Fb");
        assert_eq!(uri_encode("ሴ".as_bytes(), true), "%E1%88%B4");
        assert_eq!(uri_encode(b"%20", true), "%2520");
    }

    #[test]
    fn decodes_escapes_leniently() {
        assert_eq!(percent_decode("a%20b%2fc"), b"a b/c");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%2"), b"%2");
        assert_eq!(percent_decode("%zz%41"), b"%zzA");
        assert_eq!(percent_decode("a+b"), b"a+b");
    }

    #[test]
    fn normalizes_paths_like_botocore() {
        for (raw, want) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/./", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/./example", "/example"),
            ("//example//", "/example/"),
            ("/a/../../b", "/b"),
            ("/snapshots/snap-1/blocks/3", "/snapshots/snap-1/blocks/3"),
            ("/snap%201/x", "/snap%25201/x"),
            ("/example space/", "/example%20space/"),
            ("/example/$delete", "/example/%24delete"),
        ] {
            assert_eq!(canonical_uri(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn canonical_query_sorts_and_reencodes() {
        assert_eq!(canonical_query("", &[]), "");
        assert_eq!(canonical_query("b=2&a=1&a=0&c", &[]), "a=0&a=1&b=2&c=");
        assert_eq!(
            canonical_query("x=a%2fb&y=a b&z=a+b", &[]),
            "x=a%2Fb&y=a%20b&z=a%2Bb"
        );
        assert_eq!(
            canonical_query(
                "X-Amz-Signature=abc&a=1&X-Amz%2DSignature=d",
                &["X-Amz-Signature"]
            ),
            "a=1"
        );
        assert_eq!(canonical_query("a=1&&b=2&", &[]), "a=1&b=2");
    }

    #[test]
    fn trim_all_collapses_white_space() {
        assert_eq!(trim_all("  a   b \t c  "), "a b c");
        assert_eq!(
            trim_all("value1\n  value2\n     value3"),
            "value1 value2 value3"
        );
        assert_eq!(trim_all(""), "");
    }

    #[test]
    fn canonical_headers_join_repeats_and_report_missing() {
        let headers = vec![
            ("Host".to_owned(), "example.com".to_owned()),
            ("My-Header".to_owned(), " b ".to_owned()),
            ("my-header".to_owned(), "a".to_owned()),
        ];
        let signed = vec!["host".to_owned(), "my-header".to_owned()];
        assert_eq!(
            canonical_headers(&headers, &signed),
            Ok("host:example.com\nmy-header:b,a\n".to_owned())
        );
        let signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
        assert_eq!(
            canonical_headers(&headers, &signed),
            Err("x-amz-date".to_owned())
        );
    }

    #[test]
    fn signing_key_matches_aws_documentation_example() {
        // "Examples of how to derive a signing key for Signature Version 4" (AWS General
        // Reference): secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam.
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let key = signing_key_bytes(&secret, "20120215", "us-east-1", "iam");
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }
}
