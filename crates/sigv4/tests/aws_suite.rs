//! The published AWS Signature Version 4 test suite.
//!
//! Vectors of `aws-sig-v4-test-suite` (2015 edition: credentials AKIDEXAMPLE /
//! wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830T123600Z, us-east-1, service
//! "service"), as published in the AWS General Reference and carried by the AWS SDKs'
//! test directories; the expected canonical requests and Authorization headers are copied
//! from the suite's `.creq` and `.authz` files. Each case is checked both ways: the signer
//! must produce exactly the suite's canonical request and Authorization header, and the
//! verifier must accept the suite's request carrying the suite's Authorization header.
//!
//! The request paths and queries are taken as the suite writes them (`/example space/`,
//! `/ሴ`), i.e. as raw bytes that the canonical URI encodes once.
//!
//! Two more vectors come from botocore's own copy of the older (2011) suite,
//! `tests/unit/auth/aws4_testsuite/get-space.*` and `get-utf8.*`: there the request line
//! carries the path already percent-encoded (`/%20/foo`, `/%E1%88%B4`) and botocore's
//! canonical request encodes it again (`/%2520/foo`, `/%25E1%2588%25B4`): the double
//! encoding of non-S3 services. They also exercise the `Date` header fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{at, creds, headers, split_target};
use sigv4::{Policy, RequestParts, Secret, SigningParams, sign_headers, verify};

const KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TIME: u64 = 1_440_938_160; // 20150830T123600Z
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

struct Case {
    name: &'static str,
    method: &'static str,
    /// Path and query as in the suite's request line.
    target: &'static str,
    /// Headers other than Host and X-Amz-Date (both present in every case).
    extra_headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    /// The suite's `.creq` without the empty-hash last line when it is the empty hash.
    creq: &'static str,
    payload_hash: &'static str,
    signed_headers: &'static str,
    signature: &'static str,
    /// Session token the signer adds itself (get-vanilla-with-session-token).
    signer_token: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let simple = |name, method, target, creq_uri_query: &'static str, signature| Case {
        name,
        method,
        target,
        extra_headers: &[],
        body: "",
        creq: creq_uri_query,
        payload_hash: EMPTY,
        signed_headers: "host;x-amz-date",
        signature,
        signer_token: None,
    };
    vec![
        simple(
            "get-vanilla",
            "GET",
            "/",
            "/\n",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        simple(
            "get-vanilla-empty-query-key",
            "GET",
            "/?Param1=value1",
            "/\nParam1=value1",
            "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
        ),
        simple(
            "get-vanilla-query-order-key-case",
            "GET",
            "/?Param2=value2&Param1=value1",
            "/\nParam1=value1&Param2=value2",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        simple(
            "get-vanilla-query-order-key",
            "GET",
            "/?Param1=value2&Param1=Value1",
            "/\nParam1=Value1&Param1=value2",
            "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        ),
        simple(
            "get-vanilla-query-order-value",
            "GET",
            "/?Param1=value2&Param1=value1",
            "/\nParam1=value1&Param1=value2",
            "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        ),
        simple(
            "get-vanilla-query-order-encoded",
            "GET",
            "/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
            "/\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3",
            "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
        ),
        simple(
            "get-vanilla-query-unreserved",
            "GET",
            "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        ),
        simple(
            "get-vanilla-utf8-query",
            "GET",
            "/?ሴ=bar",
            "/\n%E1%88%B4=bar",
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        ),
        simple(
            "get-unreserved",
            "GET",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        ),
        simple(
            "get-utf8",
            "GET",
            "/ሴ",
            "/%E1%88%B4\n",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        ),
        simple(
            "post-vanilla",
            "POST",
            "/",
            "/\n",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        simple(
            "post-vanilla-query",
            "POST",
            "/?Param1=value1",
            "/\nParam1=value1",
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        ),
        // normalize-path/
        simple(
            "get-relative",
            "GET",
            "/example/..",
            "/\n",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        simple(
            "get-relative-relative",
            "GET",
            "/example1/example2/../..",
            "/\n",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        simple(
            "get-slash",
            "GET",
            "//",
            "/\n",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        simple(
            "get-slash-dot-slash",
            "GET",
            "/./",
            "/\n",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        simple(
            "get-slash-pointless-dot",
            "GET",
            "/./example",
            "/example\n",
            "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
        ),
        simple(
            "get-slashes",
            "GET",
            "//example//",
            "/example/\n",
            "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        ),
        simple(
            "get-space",
            "GET",
            "/example space/",
            "/example%20space/\n",
            "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        ),
        simple(
            "get-special-character",
            "GET",
            "/example/$delete",
            "/example/%24delete\n",
            "a853c9b21b528b19643d00910d35b83a10c366a10833ceefb45edd6c80e40f27",
        ),
        Case {
            name: "get-vanilla-with-session-token",
            creq: "/\n",
            signed_headers: "host;x-amz-date;x-amz-security-token",
            signature: "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
            signer_token: Some(TOKEN),
            ..simple("", "GET", "/", "", "")
        },
        Case {
            name: "get-header-key-duplicate",
            extra_headers: &[
                ("My-Header1", "value2"),
                ("My-Header1", "value2"),
                ("My-Header1", "value1"),
            ],
            creq: "/\n",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
            ..simple("", "GET", "/", "", "")
        },
        Case {
            name: "get-header-value-multiline",
            extra_headers: &[("My-Header1", "value1\n  value2\n     value3")],
            creq: "/\n",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd",
            ..simple("", "GET", "/", "", "")
        },
        Case {
            name: "get-header-value-order",
            extra_headers: &[
                ("My-Header1", "value4"),
                ("My-Header1", "value1"),
                ("My-Header1", "value3"),
                ("My-Header1", "value2"),
            ],
            creq: "/\n",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
            ..simple("", "GET", "/", "", "")
        },
        Case {
            name: "get-header-value-trim",
            extra_headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            creq: "/\n",
            signed_headers: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
            ..simple("", "GET", "/", "", "")
        },
        Case {
            name: "post-header-key-sort",
            extra_headers: &[("My-Header1", "value1")],
            creq: "/\n",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
            ..simple("", "POST", "/", "", "")
        },
        Case {
            name: "post-header-value-case",
            extra_headers: &[("My-Header1", "VALUE1")],
            creq: "/\n",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
            ..simple("", "POST", "/", "", "")
        },
        Case {
            name: "post-x-www-form-urlencoded",
            extra_headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            body: "Param1=value1",
            creq: "/\n",
            payload_hash: "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            signed_headers: "content-type;host;x-amz-date",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
            ..simple("", "POST", "/", "", "")
        },
        Case {
            name: "post-x-www-form-urlencoded-parameters",
            extra_headers: &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf8",
            )],
            body: "Param1=value1",
            creq: "/\n",
            payload_hash: "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            signed_headers: "content-type;host;x-amz-date",
            signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
            ..simple("", "POST", "/", "", "")
        },
        Case {
            name: "post-sts-header-before",
            extra_headers: &[("X-Amz-Security-Token", STS_TOKEN)],
            creq: "/\n",
            signed_headers: "host;x-amz-date;x-amz-security-token",
            signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
            ..simple("", "POST", "/", "", "")
        },
    ]
}

/// The suite's `.creq` for a case: method, URI and query, canonical headers, signed
/// headers, payload hash.
fn expected_creq(case: &Case) -> String {
    let mut headers_block = String::new();
    let mut lines: Vec<(String, String)> = vec![
        ("host".into(), "example.amazonaws.com".into()),
        ("x-amz-date".into(), "20150830T123600Z".into()),
    ];
    for (name, value) in case.extra_headers {
        let name = name.to_ascii_lowercase();
        let value = value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        match lines.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => lines.push((name, value)),
        }
    }
    if let Some(token) = case.signer_token {
        lines.push(("x-amz-security-token".into(), token.into()));
    }
    lines.sort();
    for (name, value) in &lines {
        headers_block.push_str(&format!("{name}:{value}\n"));
    }
    format!(
        "{}\n{}\n{headers_block}\n{}\n{}",
        case.method, case.creq, case.signed_headers, case.payload_hash
    )
}

fn request_headers(case: &Case) -> Vec<(String, String)> {
    let mut h = headers(&[("Host", "example.amazonaws.com")]);
    h.extend(headers(case.extra_headers));
    h
}

#[test]
fn signer_reproduces_the_suite() {
    let secret = Secret::new(SECRET);
    for case in cases() {
        let (path, query) = split_target(case.target);
        let params = SigningParams {
            access_key_id: KEY,
            secret: &secret,
            region: "us-east-1",
            service: "service",
            time: at(TIME),
            security_token: case.signer_token,
        };
        let signed = sign_headers(
            case.method,
            path,
            query,
            &request_headers(&case),
            case.payload_hash,
            &params,
        )
        .unwrap();
        assert_eq!(
            signed.canonical_request,
            expected_creq(&case),
            "{}",
            case.name
        );
        assert_eq!(
            signed.authorization,
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={}, Signature={}",
                case.signed_headers, case.signature
            ),
            "{}",
            case.name
        );
    }
}

#[test]
fn verifier_accepts_the_suite() {
    let creds = creds(KEY, SECRET);
    let policy = Policy::new("service", ["us-east-1"]);
    for case in cases() {
        let (path, query) = split_target(case.target);
        let mut h = request_headers(&case);
        h.push(("X-Amz-Date".into(), "20150830T123600Z".into()));
        if let Some(token) = case.signer_token {
            h.push(("X-Amz-Security-Token".into(), token.into()));
        }
        h.push((
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={}, Signature={}",
                case.signed_headers, case.signature
            ),
        ));
        let req = RequestParts {
            method: case.method,
            path,
            query,
            headers: &h,
            body: case.body.as_bytes(),
        };
        let verified = verify(&req, &policy, at(TIME), &creds)
            .unwrap_or_else(|e| panic!("{}: {e} ({e:?})", case.name));
        assert_eq!(verified.access_key_id, KEY);
        assert_eq!(verified.region, "us-east-1");
        assert_eq!(verified.service, "service");
        assert_eq!(verified.signed_at, at(TIME));
        assert!(
            !verified.presigned && verified.payload_signed,
            "{}",
            case.name
        );
    }
}

/// botocore's copy of the 2011 suite: `Date` header, service "host", region us-east-1,
/// host.foo.com, and paths that arrive percent-encoded and are encoded again.
#[test]
fn verifier_accepts_botocore_legacy_double_encoding_vectors() {
    let creds = creds(KEY, SECRET);
    let policy = Policy::new("host", ["us-east-1"]);
    for (path, signature) in [
        // get-space: .creq URI is /%2520/foo
        (
            "/%20/foo",
            "2be9e587d1ee1f0fd02128724b86b4358ba3630d39f493b6e06610a19a50779e",
        ),
        // get-utf8: .creq URI is /%25E1%2588%25B4
        (
            "/%E1%88%B4",
            "57b1eb3df3b16a8479c0097b66c0b261cfd65b829419a3f2c3d05319722490b8",
        ),
    ] {
        let h = headers(&[
            ("Date", "Mon, 09 Sep 2011 23:36:00 GMT"),
            ("Host", "host.foo.com"),
            (
                "Authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/host/aws4_request, \
                     SignedHeaders=date;host, Signature={signature}"
                ),
            ),
        ]);
        let req = RequestParts {
            method: "GET",
            path,
            query: "",
            headers: &h,
            body: b"",
        };
        let verified = verify(&req, &policy, at(1_315_611_360), &creds)
            .unwrap_or_else(|e| panic!("{path}: {e} ({e:?})"));
        assert_eq!(verified.signed_at, at(1_315_611_360));

        // Encoding only once (as S3 does) must not verify.
        let decoded = String::from_utf8(
            path.split('%')
                .enumerate()
                .flat_map(|(i, part)| {
                    if i == 0 {
                        part.as_bytes().to_vec()
                    } else {
                        let mut v = vec![u8::from_str_radix(&part[..2], 16).unwrap()];
                        v.extend_from_slice(&part.as_bytes()[2..]);
                        v
                    }
                })
                .collect(),
        )
        .unwrap();
        let once = RequestParts {
            path: &decoded,
            ..req
        };
        assert_eq!(
            verify(&once, &policy, at(1_315_611_360), &creds)
                .unwrap_err()
                .aws_code(),
            "SignatureDoesNotMatch"
        );
    }
}
