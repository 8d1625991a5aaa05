//! Requests signed by botocore, the signer of the AWS CLI and boto3.
//!
//! How the fixtures were produced (once, by hand; nothing here runs Python): botocore
//! 1.43.11 / boto3 1.43.11 under CPython 3.11, with `botocore.auth.get_current_datetime`
//! patched to return 2025-01-15T12:00:00Z, a boto3 session with access key
//! `AKIAOPENAMITEST` and secret `openami/Secret+Key/EXAMPLE0123456789`, clients for `ec2` and
//! `ebs` with `endpoint_url="http://127.0.0.1:8773"`, and a `before-send` event handler that
//! recorded the prepared request (method, URL, headers, body) instead of sending it. The
//! `botocore.auth` debug log gave the canonical requests quoted below. Calls made:
//! `ec2.describe_images(Owners=["self"], ImageIds=[...])`, `ebs.list_snapshot_blocks(...)`,
//! `ebs.put_snapshot_block(...)` (an unsigned-payload operation), `ebs.get_snapshot_block(
//! SnapshotId="snap 1/x", ..., BlockToken="tok+en/=")`, `generate_presigned_url(...)` for
//! `describe_images` (default method POST, and `HttpMethod="GET"`) and
//! `list_snapshot_blocks`, `copy_snapshot(SourceRegion="us-east-1")` on a `us-west-2` client
//! (whose `PresignedUrl` parameter botocore presigns itself), and `describe_regions` from a
//! session with a session token in `eu-west-1` (endpoint `http://localhost:8773`).
//! The `Host` header is the one urllib3 sends for the URL (botocore signs it from the URL).
//! User-Agent and the `amz-sdk-*` headers are sent but not signed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{at, creds, headers, split_target};
use sigv4::{
    EMPTY_SHA256, Policy, RequestParts, Secret, SigningParams, UNSIGNED_PAYLOAD, presign_url,
    sha256_hex, sign_headers, verify,
};

const KEY: &str = "AKIAOPENAMITEST";
const SECRET: &str = "openami/Secret+Key/EXAMPLE0123456789";
const NOW: u64 = 1_736_942_400; // 20250115T120000Z
const UA: &str = "Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18.44-fc-v595 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/N,b,e,Z,D cfg/retry-mode#legacy Botocore/1.43.11";

fn params<'a>(secret: &'a Secret, region: &'a str, service: &'a str) -> SigningParams<'a> {
    SigningParams {
        access_key_id: KEY,
        secret,
        region,
        service,
        time: at(NOW),
        security_token: None,
    }
}

fn secret() -> Secret {
    Secret::new(SECRET)
}

fn check(
    policy: &Policy,
    method: &str,
    target: &str,
    h: &[(String, String)],
    body: &[u8],
) -> sigv4::Verified {
    let (path, query) = split_target(target);
    let req = RequestParts {
        method,
        path,
        query,
        headers: h,
        body,
    };
    verify(&req, policy, at(NOW), &creds(KEY, SECRET))
        .unwrap_or_else(|e| panic!("{target}: {e} ({e:?})"))
}

#[test]
fn ec2_query_post() {
    let body =
        b"Action=DescribeImages&Version=2016-11-15&Owner.1=self&ImageId.1=ami-0123456789abcdef0";
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAOPENAMITEST/20250115/us-east-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=c50bc4d998ddb102448bb3a7b9d21debc946a29d789163cc0d6e7538df5703c9";
    let h = headers(&[
        ("Host", "127.0.0.1:8773"),
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("User-Agent", UA),
        ("X-Amz-Date", "20250115T120000Z"),
        ("Authorization", auth),
        (
            "amz-sdk-invocation-id",
            "ad703d1f-297e-4629-bfb1-f455fbc7801d",
        ),
        ("amz-sdk-request", "attempt=1"),
        ("Content-Length", "85"),
    ]);
    let v = check(&Policy::new("ec2", ["us-east-1"]), "POST", "/", &h, body);
    assert!(!v.presigned && v.payload_signed && v.security_token.is_none());

    // Our signer produces botocore's canonical request and signature.
    let signed = sign_headers(
        "POST",
        "/",
        "",
        &headers(&[
            ("Host", "127.0.0.1:8773"),
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ]),
        &sha256_hex(body),
        &params(&secret(), "us-east-1", "ec2"),
    )
    .unwrap();
    assert_eq!(
        signed.canonical_request,
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:127.0.0.1:8773\n\
         x-amz-date:20250115T120000Z\n\ncontent-type;host;x-amz-date\n\
         031b084c1dd40743b9a6c5792beb9dbcf0eba273d17eec88c7a6ac663731134d"
    );
    assert_eq!(signed.authorization, auth);
}

#[test]
fn ebs_rest_get_with_query() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAOPENAMITEST/20250115/us-east-1/ebs/aws4_request, SignedHeaders=host;x-amz-date, Signature=7913cb97f18e08da39e30a60a556026e3638324997e41509f4b794ae57349915";
    let h = headers(&[
        ("Host", "127.0.0.1:8773"),
        ("User-Agent", UA),
        ("X-Amz-Date", "20250115T120000Z"),
        ("Authorization", auth),
        (
            "amz-sdk-invocation-id",
            "008a48e9-24ad-443b-a888-971b8241b76e",
        ),
        ("amz-sdk-request", "attempt=1"),
    ]);
    let target = "/snapshots/snap-0123456789abcdef0/blocks?maxResults=100";
    check(&Policy::new("ebs", ["us-east-1"]), "GET", target, &h, b"");
    let signed = sign_headers(
        "GET",
        "/snapshots/snap-0123456789abcdef0/blocks",
        "maxResults=100",
        &headers(&[("Host", "127.0.0.1:8773")]),
        EMPTY_SHA256,
        &params(&secret(), "us-east-1", "ebs"),
    )
    .unwrap();
    assert_eq!(signed.authorization, auth);
}

#[test]
fn ebs_put_snapshot_block_unsigned_payload() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAOPENAMITEST/20250115/us-east-1/ebs/aws4_request, SignedHeaders=host;x-amz-checksum;x-amz-checksum-algorithm;x-amz-content-sha256;x-amz-data-length;x-amz-date, Signature=be8c5c74459187216a11428b9bbc449c3b40ffc6c3cdbe9d327bbf8855d81fa7";
    let h = headers(&[
        ("Host", "127.0.0.1:8773"),
        ("x-amz-Data-Length", "11"),
        ("x-amz-Checksum", "aGVsbG8="),
        ("x-amz-Checksum-Algorithm", "SHA256"),
        ("User-Agent", UA),
        ("X-Amz-Date", "20250115T120000Z"),
        ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
        ("Authorization", auth),
        (
            "amz-sdk-invocation-id",
            "0f10122d-a9fc-4f17-8815-4ad995e16abe",
        ),
        ("amz-sdk-request", "attempt=1"),
        ("Content-Length", "11"),
    ]);
    let policy = Policy::new("ebs", ["us-east-1"]);
    let target = "/snapshots/snap-0123456789abcdef0/blocks/3";
    let v = check(&policy, "PUT", target, &h, b"hello block");
    assert!(!v.payload_signed);
    // The body is not signed: another body verifies too (the EBS checksum protects it).
    check(&policy, "PUT", target, &h, b"other bytes");

    let signed = sign_headers(
        "PUT",
        target,
        "",
        &headers(&[
            ("Host", "127.0.0.1:8773"),
            ("x-amz-Data-Length", "11"),
            ("x-amz-Checksum", "aGVsbG8="),
            ("x-amz-Checksum-Algorithm", "SHA256"),
            ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
        ]),
        UNSIGNED_PAYLOAD,
        &params(&secret(), "us-east-1", "ebs"),
    )
    .unwrap();
    assert_eq!(signed.authorization, auth);
}

/// botocore encodes the path labels (`snap 1/x` -> `snap%201%2Fx`) and its canonical URI
/// encodes the wire path again: `/snapshots/snap%25201%252Fx/blocks/7`.
#[test]
fn ebs_path_is_encoded_twice() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAOPENAMITEST/20250115/us-east-1/ebs/aws4_request, SignedHeaders=host;x-amz-date, Signature=9e50e2c14d7e2cc3b3476903da8ac5b0fc470b4e675a2008f72cbc8099eba73b";
    let h = headers(&[
        ("Host", "127.0.0.1:8773"),
        ("User-Agent", UA),
        ("X-Amz-Date", "20250115T120000Z"),
        ("Authorization", auth),
    ]);
    let target = "/snapshots/snap%201%2Fx/blocks/7?blockToken=tok%2Ben%2F%3D";
    check(&Policy::new("ebs", ["us-east-1"]), "GET", target, &h, b"");
    let (path, query) = split_target(target);
    let signed = sign_headers(
        "GET",
        path,
        query,
        &headers(&[("Host", "127.0.0.1:8773")]),
        EMPTY_SHA256,
        &params(&secret(), "us-east-1", "ebs"),
    )
    .unwrap();
    assert_eq!(
        signed.canonical_request,
        "GET\n/snapshots/snap%25201%252Fx/blocks/7\nblockToken=tok%2Ben%2F%3D\nhost:127.0.0.1:8773\n\
         x-amz-date:20250115T120000Z\n\nhost;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(signed.authorization, auth);
}

#[test]
fn session_token_header_is_signed_and_reported() {
    let token = "FQoGZXIvYXdzEXAMPLE//token+value==";
    let auth = "AWS4-HMAC-SHA256 Credential=ASIAOPENAMITEST/20250115/eu-west-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=e786f7031f3519bce87b5bd67480d68e7c45c461c4af350868c6e67540dc00e9";
    let h = headers(&[
        ("Host", "localhost:8773"),
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("User-Agent", UA),
        ("X-Amz-Date", "20250115T120000Z"),
        ("X-Amz-Security-Token", token),
        ("Authorization", auth),
        ("Content-Length", "41"),
    ]);
    let req = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &h,
        body: b"Action=DescribeRegions&Version=2016-11-15",
    };
    let v = verify(
        &req,
        &Policy::new("ec2", ["us-east-1", "eu-west-1"]),
        at(NOW),
        &creds("ASIAOPENAMITEST", SECRET),
    )
    .unwrap();
    assert_eq!(v.region, "eu-west-1");
    assert_eq!(v.security_token.as_deref(), Some(token));
}

/// `generate_presigned_url(..., HttpMethod="GET")`: botocore's `SigV4QueryAuth` signs the
/// SHA-256 of the empty body (not `UNSIGNED-PAYLOAD`, which only its S3 presigner uses).
#[test]
fn ec2_presigned_get() {
    let url_query = "Action=DescribeImages&Version=2016-11-15&ImageId.1=ami-0123456789abcdef0&Owner.1=self&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAOPENAMITEST%2F20250115%2Fus-east-1%2Fec2%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=559069eff1ff21a21055afbb563f2ad951643294bafa3b81d6ea12b44f295998";
    let h = headers(&[("Host", "127.0.0.1:8773"), ("User-Agent", "curl/8.0")]);
    let policy = Policy::new("ec2", ["us-east-1"]);
    let v = check(&policy, "GET", &format!("/?{url_query}"), &h, b"");
    assert!(v.presigned && v.payload_signed);

    let signed = presign_url(
        "GET",
        "/",
        "Action=DescribeImages&Version=2016-11-15&ImageId.1=ami-0123456789abcdef0&Owner.1=self",
        &headers(&[("Host", "127.0.0.1:8773")]),
        EMPTY_SHA256,
        Duration::from_secs(900),
        &params(&secret(), "us-east-1", "ec2"),
    )
    .unwrap();
    assert_eq!(signed.query, url_query);
    assert_eq!(
        signed.canonical_request,
        "GET\n/\nAction=DescribeImages&ImageId.1=ami-0123456789abcdef0&Owner.1=self&Version=2016-11-15\
         &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAOPENAMITEST%2F20250115%2Fus-east-1%2Fec2%2Faws4_request\
         &X-Amz-Date=20250115T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\nhost:127.0.0.1:8773\n\nhost\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );

    // Valid until X-Amz-Date + 900 s, not after.
    let (path, query) = ("/", url_query);
    let req = RequestParts {
        method: "GET",
        path,
        query,
        headers: &h,
        body: b"",
    };
    assert!(verify(&req, &policy, at(NOW + 900), &creds(KEY, SECRET)).is_ok());
    assert_eq!(
        verify(&req, &policy, at(NOW + 901), &creds(KEY, SECRET))
            .unwrap_err()
            .aws_code(),
        "RequestExpired"
    );
}

/// Without `HttpMethod`, botocore presigns an EC2 operation with the operation's own
/// method, POST: such a URL verifies only when it is sent with POST.
#[test]
fn ec2_presigned_with_default_method_is_bound_to_post() {
    let url_query = "Action=DescribeImages&Version=2016-11-15&ImageId.1=ami-0123456789abcdef0&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAOPENAMITEST%2F20250115%2Fus-east-1%2Fec2%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=9bfc715211d1c4737c81c97bffd2bec4171a59e376b3ad72027ad97b7f43af41";
    let h = headers(&[("Host", "127.0.0.1:8773")]);
    let policy = Policy::new("ec2", ["us-east-1"]);
    check(&policy, "POST", &format!("/?{url_query}"), &h, b"");
    let req = RequestParts {
        method: "GET",
        path: "/",
        query: url_query,
        headers: &h,
        body: b"",
    };
    assert_eq!(
        verify(&req, &policy, at(NOW), &creds(KEY, SECRET))
            .unwrap_err()
            .aws_code(),
        "SignatureDoesNotMatch"
    );
}

/// The `PresignedUrl` botocore builds for `CopySnapshot` (method GET, source region host).
#[test]
fn ec2_copy_snapshot_presigned_url() {
    let url_query = "Action=CopySnapshot&Version=2016-11-15&SourceSnapshotId=snap-0123456789abcdef0&SourceRegion=us-east-1&Description=copy%20me&DestinationRegion=us-west-2&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAOPENAMITEST%2F20250115%2Fus-east-1%2Fec2%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=f454c48b7d8f17127c5f8359475e1149a99b1229701a834681fe1c5a87adcfbe";
    let h = headers(&[("Host", "ec2.us-east-1.amazonaws.com")]);
    let v = check(
        &Policy::new("ec2", ["us-east-1"]),
        "GET",
        &format!("/?{url_query}"),
        &h,
        b"",
    );
    assert!(v.presigned);
    assert_eq!(v.region, "us-east-1");
}

#[test]
fn ebs_presigned_get() {
    let url_query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAOPENAMITEST%2F20250115%2Fus-east-1%2Febs%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=8dda4822ad4b39c32282f200f1894b0348f2ca8bf93cc88b83caf26d0fb42b5e";
    let h = headers(&[("Host", "127.0.0.1:8773")]);
    let target = format!("/snapshots/snap-0123456789abcdef0/blocks?{url_query}");
    check(&Policy::new("ebs", ["us-east-1"]), "GET", &target, &h, b"");
    let signed = presign_url(
        "GET",
        "/snapshots/snap-0123456789abcdef0/blocks",
        "",
        &h,
        EMPTY_SHA256,
        Duration::from_secs(300),
        &params(&secret(), "us-east-1", "ebs"),
    )
    .unwrap();
    assert_eq!(signed.query, url_query);
}
