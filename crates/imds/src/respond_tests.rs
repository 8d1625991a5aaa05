//! Unit tests of [`respond`]: every rule of the crate documentation's table and the tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::{Options, mint_token};

const KEY: [u8; 32] = [42; 32];
const NOW: i64 = 1_796_119_200_000; // 2026-12-01T10:00:00Z

fn meta() -> Metadata {
    Metadata {
        options: Options::default(),
        instance_id: "i-0123456789abcdef0".into(),
        ami_id: "ami-0abcdef1234567890".into(),
        instance_type: "t3.micro".into(),
        reservation_id: "r-0fedcba9876543210".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        availability_zone: "us-east-1a".into(),
        availability_zone_id: "use1-az1".into(),
        architecture: "x86_64".into(),
        ami_launch_index: 2,
        local_hostname: "ip-172-31-5-10.ec2.internal".into(),
        local_ipv4: "172.31.5.10".into(),
        public_ipv4: None,
        public_hostname: None,
        mac: "02:00:00:ab:cd:ef".into(),
        interface_id: "eni-0123".into(),
        subnet_id: "subnet-0123".into(),
        subnet_cidr: "172.31.0.0/20".into(),
        vpc_id: "vpc-0123".into(),
        vpc_cidr: "172.31.0.0/16".into(),
        security_groups: vec!["default".into(), "web".into()],
        security_group_ids: vec!["sg-1".into(), "sg-2".into()],
        public_keys: vec![
            ("alice".into(), "ssh-ed25519 AAAAC3Nza alice".into()),
            ("bob".into(), "ssh-rsa AAAAB3Nza bob".into()),
        ],
        block_devices: vec![
            ("ami".into(), "/dev/xvda".into()),
            ("root".into(), "/dev/xvda".into()),
            ("ebs1".into(), "sdb".into()),
        ],
        user_data: Some(b"#cloud-config\n\x00\xff".to_vec()),
        tags: vec![
            ("Name".into(), "web-1".into()),
            ("team x".into(), "blue".into()),
            ("a/b".into(), "hidden".into()),
        ],
        pending_time_ms: NOW,
        kernel_id: None,
        ramdisk_id: None,
        product_codes: vec![],
    }
}

fn send(raw: &str, m: Option<&Metadata>) -> Response {
    respond(raw.as_bytes(), m, &KEY, NOW)
}

fn get_with(path: &str, m: &Metadata) -> Response {
    send(
        &format!("GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"),
        Some(m),
    )
}

fn get(path: &str) -> Response {
    get_with(path, &meta())
}

fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn ok(path: &str) -> String {
    let r = get(path);
    assert_eq!(r.status, 200, "GET {path}: {}", body(&r));
    body(&r)
}

fn put_token(ttl: Option<&str>, path: &str, extra: &str) -> Response {
    let ttl = ttl.map_or(String::new(), |t| format!("{TOKEN_TTL_HEADER}: {t}\r\n"));
    send(
        &format!("PUT {path} HTTP/1.1\r\nHost: x\r\n{ttl}{extra}Content-Length: 0\r\n\r\n"),
        Some(&meta()),
    )
}

fn get_token(path: &str, token: &str, m: &Metadata, now: i64) -> Response {
    respond(
        format!("GET {path} HTTP/1.1\r\nX-aws-ec2-metadata-token: {token}\r\n\r\n").as_bytes(),
        Some(m),
        &KEY,
        now,
    )
}

#[test]
fn token_put_and_use() {
    let r = put_token(Some("21600"), "/latest/api/token", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header(TOKEN_TTL_HEADER), Some("21600"));
    let token = body(&r);
    let m = meta();
    let got = get_token("/latest/meta-data/instance-id", &token, &m, NOW);
    assert_eq!((got.status, body(&got)), (200, m.instance_id.clone()));
    // Valid until the TTL runs out.
    let last = NOW + 21_600_000 - 1;
    assert_eq!(
        get_token("/latest/meta-data/", &token, &m, last).status,
        200
    );
    assert_eq!(
        get_token("/latest/meta-data/", &token, &m, last + 1).status,
        401
    );
    // Another instance (another socket) does not accept it.
    let mut other = meta();
    other.instance_id = "i-0ffffffffffffffff".into();
    assert_eq!(
        get_token("/latest/meta-data/", &token, &other, NOW).status,
        401
    );
    // Tokens minted elsewhere or garbage: 401 even when tokens are optional.
    assert_eq!(get_token("/latest/", "garbage", &m, NOW).status, 401);
    let foreign = mint_token(&[1; 32], &m.instance_id, 1 << 62);
    assert_eq!(get_token("/latest/", &foreign, &m, NOW).status, 401);
    assert_eq!(get_token("/latest/", "", &m, NOW).status, 401);
    let twice = format!(
        "GET /latest/ HTTP/1.1\r\nX-aws-ec2-metadata-token: {token}\r\nX-aws-ec2-metadata-token: {token}\r\n\r\n"
    );
    assert_eq!(send(&twice, Some(&m)).status, 401);
}

#[test]
fn token_ttl_rules() {
    for ttl in ["1", "60", "21600", " 300 "] {
        assert_eq!(
            put_token(Some(ttl), "/latest/api/token", "").status,
            200,
            "{ttl}"
        );
    }
    for ttl in ["0", "21601", "-1", "abc", "", "1.5", "99999999999999999999"] {
        let r = put_token(Some(ttl), "/latest/api/token", "");
        assert_eq!(r.status, 400, "ttl {ttl:?}");
        assert!(body(&r).contains("400 - Missing or Invalid Parameters"));
    }
    assert_eq!(put_token(None, "/latest/api/token", "").status, 400);
    let r = put_token(Some("1"), "/latest/api/token", "");
    let token = body(&r);
    let m = meta();
    assert_eq!(get_token("/latest/", &token, &m, NOW + 999).status, 200);
    assert_eq!(get_token("/latest/", &token, &m, NOW + 1000).status, 401);
}

#[test]
fn token_put_refusals() {
    assert_eq!(
        put_token(Some("60"), "/2021-03-23/api/token", "").status,
        403
    );
    assert_eq!(
        put_token(Some("60"), "/2009-04-04/api/token", "").status,
        403
    );
    assert_eq!(
        put_token(
            Some("60"),
            "/latest/api/token",
            "X-Forwarded-For: 10.0.0.1\r\n"
        )
        .status,
        403
    );
    assert_eq!(put_token(Some("60"), "/latest/meta-data/", "").status, 405);
    assert_eq!(put_token(Some("60"), "/latest/api/other", "").status, 405);
    // A GET of the token path is not a way to get a token.
    assert_eq!(get("/latest/api/token").status, 405);
    let mut m = meta();
    m.options.endpoint_enabled = false;
    let raw = format!("PUT /latest/api/token HTTP/1.1\r\n{TOKEN_TTL_HEADER}: 60\r\n\r\n");
    assert_eq!(send(&raw, Some(&m)).status, 403);
}

#[test]
fn tokens_required() {
    let mut m = meta();
    m.options.tokens_required = true;
    let r = get_with("/latest/meta-data/instance-id", &m);
    assert_eq!(r.status, 401);
    assert!(body(&r).contains("401 - Unauthorized"));
    assert_eq!(get_with("/", &m).status, 401);
    let token = mint_token(&KEY, &m.instance_id, (NOW + 5000) as u64);
    assert_eq!(
        get_token("/latest/meta-data/instance-id", &token, &m, NOW).status,
        200
    );
    // IMDSv1 works when tokens are optional.
    assert_eq!(get("/latest/meta-data/instance-id").status, 200);
}

#[test]
fn endpoint_disabled_and_instance_gone() {
    let mut m = meta();
    m.options.endpoint_enabled = false;
    for path in ["/", "/latest/meta-data/instance-id", "/nope"] {
        assert_eq!(get_with(path, &m).status, 403, "{path}");
    }
    let r = send("GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n", None);
    assert_eq!(r.status, 404);
    let raw = format!("PUT /latest/api/token HTTP/1.1\r\n{TOKEN_TTL_HEADER}: 60\r\n\r\n");
    assert_eq!(send(&raw, None).status, 404);
}

#[test]
fn methods() {
    for method in ["POST", "DELETE", "OPTIONS", "PATCH", "get"] {
        let r = send(
            &format!("{method} /latest/ HTTP/1.1\r\n\r\n"),
            Some(&meta()),
        );
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD, PUT"));
    }
    let head = send(
        "HEAD /latest/meta-data/instance-id HTTP/1.1\r\n\r\n",
        Some(&meta()),
    );
    assert_eq!(head.status, 200);
    assert!(head.head_only);
    let wire = String::from_utf8(head.to_bytes(NOW)).unwrap();
    assert!(wire.contains("Content-Length: 19\r\n"), "{wire}");
    assert!(wire.ends_with("\r\n\r\n"));
    let missing = send(
        "HEAD /latest/meta-data/nope HTTP/1.1\r\n\r\n",
        Some(&meta()),
    );
    assert_eq!(missing.status, 404);
    assert!(missing.head_only);
}

#[test]
fn versions_and_version_listing() {
    let versions = ok("/");
    let lines: Vec<&str> = versions.lines().collect();
    for v in [
        "1.0",
        "2007-01-19",
        "2009-04-04",
        "2016-09-02",
        "2018-09-24",
        "2021-03-23",
    ] {
        assert!(lines.contains(&v), "{v} missing");
    }
    assert_eq!(lines.last(), Some(&"latest"));
    for v in ["latest", "2009-04-04", "2021-03-23", "1.0"] {
        assert_eq!(ok(&format!("/{v}/")), "dynamic\nmeta-data\nuser-data");
        assert_eq!(ok(&format!("/{v}")), "dynamic\nmeta-data\nuser-data");
        assert_eq!(
            ok(&format!("/{v}/meta-data/instance-id")),
            "i-0123456789abcdef0"
        );
    }
    assert_eq!(get("/2099-01-01/").status, 404);
    assert_eq!(get("/latest/nope").status, 404);
    let mut m = meta();
    m.user_data = None;
    assert_eq!(body(&get_with("/latest/", &m)), "dynamic\nmeta-data");
    let r = get_with("/latest/user-data", &m);
    assert_eq!(r.status, 404);
    assert!(body(&r).contains("<title>404 - Not Found</title>"));
    assert_eq!(r.header("Content-Type"), Some("text/html"));
}

#[test]
fn user_data_is_raw() {
    let r = get("/latest/user-data");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"#cloud-config\n\x00\xff");
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
}

#[test]
fn meta_data_leaves() {
    assert_eq!(ok("/latest/meta-data/ami-id"), "ami-0abcdef1234567890");
    assert_eq!(ok("/latest/meta-data/ami-launch-index"), "2");
    assert_eq!(ok("/latest/meta-data/ami-manifest-path"), "(unknown)");
    assert_eq!(
        ok("/latest/meta-data/hostname"),
        "ip-172-31-5-10.ec2.internal"
    );
    assert_eq!(
        ok("/latest/meta-data/local-hostname"),
        "ip-172-31-5-10.ec2.internal"
    );
    assert_eq!(ok("/latest/meta-data/local-ipv4"), "172.31.5.10");
    assert_eq!(ok("/latest/meta-data/instance-action"), "none");
    assert_eq!(ok("/latest/meta-data/instance-life-cycle"), "on-demand");
    assert_eq!(ok("/latest/meta-data/instance-type"), "t3.micro");
    assert_eq!(ok("/latest/meta-data/mac"), "02:00:00:ab:cd:ef");
    assert_eq!(
        ok("/latest/meta-data/reservation-id"),
        "r-0fedcba9876543210"
    );
    assert_eq!(ok("/latest/meta-data/security-groups"), "default\nweb");
    assert_eq!(ok("/latest/meta-data/services/"), "domain\npartition");
    assert_eq!(ok("/latest/meta-data/services/domain"), "amazonaws.com");
    assert_eq!(ok("/latest/meta-data/services/partition"), "aws");
    assert_eq!(
        ok("/latest/meta-data/placement/"),
        "availability-zone\navailability-zone-id\nregion"
    );
    assert_eq!(
        ok("/latest/meta-data/placement/availability-zone"),
        "us-east-1a"
    );
    assert_eq!(
        ok("/latest/meta-data/placement/availability-zone-id"),
        "use1-az1"
    );
    assert_eq!(ok("/latest/meta-data/placement/region"), "us-east-1");
    assert_eq!(
        ok("/latest/meta-data/block-device-mapping/"),
        "ami\nroot\nebs1"
    );
    assert_eq!(
        ok("/latest/meta-data/block-device-mapping/root"),
        "/dev/xvda"
    );
    assert_eq!(ok("/latest/meta-data/block-device-mapping/ebs1"), "sdb");
    assert_eq!(
        get("/latest/meta-data/block-device-mapping/ephemeral0").status,
        404
    );
    for absent in [
        "public-ipv4",
        "public-hostname",
        "kernel-id",
        "ramdisk-id",
        "product-codes",
        "tags/",
        "tags/instance/Name",
        "iam/",
    ] {
        assert_eq!(
            get(&format!("/latest/meta-data/{absent}")).status,
            404,
            "{absent}"
        );
    }
}

#[test]
fn meta_data_listing_follows_the_instance() {
    let listing = ok("/latest/meta-data/");
    assert!(
        listing.starts_with("ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\n")
    );
    for absent in [
        "public-ipv4",
        "public-hostname",
        "kernel-id",
        "ramdisk-id",
        "product-codes",
        "tags/",
    ] {
        assert!(!listing.lines().any(|l| l == absent), "{absent} listed");
    }
    let mut m = meta();
    m.public_ipv4 = Some("203.0.113.7".into());
    m.public_hostname = Some("ec2-203-0-113-7.compute-1.amazonaws.com".into());
    m.kernel_id = Some("aki-1".into());
    m.ramdisk_id = Some("ari-1".into());
    m.product_codes = vec!["code1".into(), "code2".into()];
    m.public_keys.clear();
    let listing = body(&get_with("/latest/meta-data/", &m));
    for present in [
        "public-ipv4",
        "public-hostname",
        "kernel-id",
        "ramdisk-id",
        "product-codes",
    ] {
        assert!(
            listing.lines().any(|l| l == present),
            "{present} not listed"
        );
    }
    assert!(!listing.lines().any(|l| l == "public-keys/"));
    assert_eq!(get_with("/latest/meta-data/public-keys/", &m).status, 404);
    assert_eq!(
        body(&get_with("/latest/meta-data/public-ipv4", &m)),
        "203.0.113.7"
    );
    assert_eq!(body(&get_with("/latest/meta-data/kernel-id", &m)), "aki-1");
    assert_eq!(
        body(&get_with("/latest/meta-data/product-codes", &m)),
        "code1\ncode2"
    );
    let mac = "/latest/meta-data/network/interfaces/macs/02:00:00:ab:cd:ef/";
    let nic = body(&get_with(mac, &m));
    assert!(nic.lines().any(|l| l == "public-ipv4s"));
    assert_eq!(
        body(&get_with(&format!("{mac}public-ipv4s"), &m)),
        "203.0.113.7"
    );
    assert_eq!(
        body(&get_with(
            &format!("{mac}ipv4-associations/203.0.113.7"),
            &m
        )),
        "172.31.5.10"
    );
}

#[test]
fn network_interface() {
    assert_eq!(ok("/latest/meta-data/network/"), "interfaces/");
    assert_eq!(ok("/latest/meta-data/network/interfaces/"), "macs/");
    assert_eq!(
        ok("/latest/meta-data/network/interfaces/macs/"),
        "02:00:00:ab:cd:ef/"
    );
    let mac = "/latest/meta-data/network/interfaces/macs/02:00:00:ab:cd:ef/";
    let listing = ok(mac);
    assert!(!listing.contains("public-ipv4s"));
    let expect = [
        ("device-number", "0"),
        ("interface-id", "eni-0123"),
        ("local-hostname", "ip-172-31-5-10.ec2.internal"),
        ("local-ipv4s", "172.31.5.10"),
        ("mac", "02:00:00:ab:cd:ef"),
        ("owner-id", "123456789012"),
        ("security-group-ids", "sg-1\nsg-2"),
        ("security-groups", "default\nweb"),
        ("subnet-id", "subnet-0123"),
        ("subnet-ipv4-cidr-block", "172.31.0.0/20"),
        ("vpc-id", "vpc-0123"),
        ("vpc-ipv4-cidr-block", "172.31.0.0/16"),
        ("vpc-ipv4-cidr-blocks", "172.31.0.0/16"),
    ];
    for (key, value) in expect {
        assert!(listing.lines().any(|l| l == key), "{key} not listed");
        assert_eq!(ok(&format!("{mac}{key}")), value, "{key}");
    }
    assert_eq!(listing.lines().count(), expect.len());
    assert_eq!(
        get("/latest/meta-data/network/interfaces/macs/02:00:00:00:00:01/").status,
        404
    );
    assert_eq!(get(&format!("{mac}public-ipv4s")).status, 404);
}

#[test]
fn public_keys() {
    assert_eq!(ok("/latest/meta-data/public-keys/"), "0=alice\n1=bob");
    assert_eq!(ok("/latest/meta-data/public-keys"), "0=alice\n1=bob");
    assert_eq!(ok("/latest/meta-data/public-keys/0/"), "openssh-key");
    assert_eq!(ok("/latest/meta-data/public-keys/0"), "openssh-key");
    assert_eq!(
        ok("/latest/meta-data/public-keys/0/openssh-key"),
        "ssh-ed25519 AAAAC3Nza alice"
    );
    assert_eq!(
        ok("/latest/meta-data/public-keys/1/openssh-key"),
        "ssh-rsa AAAAB3Nza bob"
    );
    for bad in [
        "2/",
        "2/openssh-key",
        "00/openssh-key",
        "+0/",
        "-1/",
        "0=alice/",
        "0/other",
        "x/",
    ] {
        assert_eq!(
            get(&format!("/latest/meta-data/public-keys/{bad}")).status,
            404,
            "{bad}"
        );
    }
}

#[test]
fn tags_on_and_off() {
    let mut m = meta();
    assert_eq!(get_with("/latest/meta-data/tags/instance/", &m).status, 404);
    m.options.tags_enabled = true;
    assert!(
        body(&get_with("/latest/meta-data/", &m))
            .lines()
            .any(|l| l == "tags/")
    );
    assert_eq!(body(&get_with("/latest/meta-data/tags/", &m)), "instance/");
    // Keys that cannot be one path segment are not listed.
    assert_eq!(
        body(&get_with("/latest/meta-data/tags/instance", &m)),
        "Name\nteam x"
    );
    assert_eq!(
        body(&get_with("/latest/meta-data/tags/instance/Name", &m)),
        "web-1"
    );
    assert_eq!(
        body(&get_with("/latest/meta-data/tags/instance/team%20x", &m)),
        "blue"
    );
    assert_eq!(
        get_with("/latest/meta-data/tags/instance/name", &m).status,
        404
    );
    assert_eq!(
        get_with("/latest/meta-data/tags/instance/a/b", &m).status,
        404
    );
    m.tags.clear();
    let r = get_with("/latest/meta-data/tags/instance/", &m);
    assert_eq!((r.status, body(&r)), (200, String::new()));
}

#[test]
fn dynamic_identity_document() {
    assert_eq!(ok("/latest/dynamic/"), "instance-identity/");
    assert_eq!(ok("/latest/dynamic/instance-identity"), "document");
    assert_eq!(ok("/latest/dynamic/instance-identity/"), "document");
    for unsigned in ["pkcs7", "signature", "rsa2048"] {
        let path = format!("/latest/dynamic/instance-identity/{unsigned}");
        assert_eq!(get(&path).status, 404);
    }
    let doc = ok("/latest/dynamic/instance-identity/document");
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["accountId"], "123456789012");
    assert_eq!(v["architecture"], "x86_64");
    assert_eq!(v["availabilityZone"], "us-east-1a");
    assert_eq!(v["billingProducts"], serde_json::Value::Null);
    assert_eq!(v["devpayProductCodes"], serde_json::Value::Null);
    assert_eq!(v["marketplaceProductCodes"], serde_json::Value::Null);
    assert_eq!(v["imageId"], "ami-0abcdef1234567890");
    assert_eq!(v["instanceId"], "i-0123456789abcdef0");
    assert_eq!(v["instanceType"], "t3.micro");
    assert_eq!(v["kernelId"], serde_json::Value::Null);
    assert_eq!(v["pendingTime"], "2026-12-01T10:00:00Z");
    assert_eq!(v["privateIp"], "172.31.5.10");
    assert_eq!(v["ramdiskId"], serde_json::Value::Null);
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["version"], "2017-09-30");
    assert!(
        doc.starts_with("{\n  \"accountId\" : \"123456789012\",\n"),
        "{doc}"
    );
    let mut m = meta();
    m.product_codes = vec!["pc1".into()];
    m.kernel_id = Some("aki-9".into());
    let doc = body(&get_with("/latest/dynamic/instance-identity/document", &m));
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["marketplaceProductCodes"], serde_json::json!(["pc1"]));
    assert_eq!(v["kernelId"], "aki-9");
}

#[test]
fn path_forms() {
    // Directories and leaves answer with or without the trailing slash; empty segments,
    // query strings and the absolute form are tolerated.
    assert_eq!(
        ok("/latest/meta-data/placement"),
        ok("/latest/meta-data/placement/")
    );
    assert_eq!(ok("/latest/meta-data/instance-id/"), "i-0123456789abcdef0");
    assert_eq!(ok("//latest//meta-data/instance-id"), "i-0123456789abcdef0");
    assert_eq!(
        ok("/latest/meta-data/instance-id?x=1"),
        "i-0123456789abcdef0"
    );
    assert_eq!(
        ok("http://169.254.169.254/latest/meta-data/instance-id"),
        "i-0123456789abcdef0"
    );
    assert_eq!(ok("/latest/meta-data/%69nstance-id"), "i-0123456789abcdef0");
    assert_eq!(get("*").status, 400);
    assert_eq!(get("ftp://x/latest/").status, 400);
}

/// Every listed entry resolves, and each listing's directories are crawled: the listings
/// and the tree agree, like cloud-init's crawler needs.
#[test]
fn crawl_everything_listed() {
    let mut m = meta();
    m.options.tags_enabled = true;
    m.public_ipv4 = Some("203.0.113.7".into());
    m.public_hostname = Some("ec2-x".into());
    m.kernel_id = Some("aki-1".into());
    m.ramdisk_id = Some("ari-1".into());
    m.product_codes = vec!["p".into()];
    let mut queue = vec!["/latest/".to_string()];
    let mut seen = 0;
    while let Some(dir) = queue.pop() {
        let r = get_with(&dir, &m);
        assert_eq!(r.status, 200, "{dir}");
        for line in body(&r).lines() {
            let name = line.split('=').next().unwrap();
            let path = format!("{dir}{}", name.replace(' ', "%20"));
            let r = get_with(&path, &m);
            assert_eq!(r.status, 200, "{path} listed but {}", r.status);
            seen += 1;
            if name.ends_with('/') || ["dynamic", "meta-data"].contains(&name) || line.contains('=')
            {
                queue.push(if path.ends_with('/') {
                    path
                } else {
                    format!("{path}/")
                });
            }
        }
    }
    assert!(seen > 50, "crawled only {seen}");
}

#[test]
fn malformed_requests() {
    assert_eq!(
        send("GET /latest/ HTTP/1.1\r\nHost: x\r\n", Some(&meta())).status,
        400
    );
    assert_eq!(send("nonsense\r\n\r\n", Some(&meta())).status, 400);
    let r = send(
        "PUT /latest/api/token HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        Some(&meta()),
    );
    assert_eq!(r.status, 400);
    assert!(r.close);
    let r = send(
        "GET /latest/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        Some(&meta()),
    );
    assert_eq!(r.status, 200);
    assert!(r.close);
    assert!(
        String::from_utf8(r.to_bytes(NOW))
            .unwrap()
            .contains("Connection: close\r\n")
    );
}
