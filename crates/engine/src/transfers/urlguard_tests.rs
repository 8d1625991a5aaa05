//! Unit tests of the URL guard: address classification, allow-list matching and URL
//! checks. Nothing here connects anywhere: names are resolved by a fake resolver.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn reason(s: &str) -> Option<&'static str> {
    refusal_reason(ip(s))
}

#[test]
fn every_refused_ipv4_range_is_refused() {
    let cases = [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this network"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        ("169.254.169.254", "link-local"),
        ("192.0.0.8", "IETF"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("192.88.99.1", "6to4"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
    ];
    for (addr, want) in cases {
        let got = reason(addr).unwrap_or_else(|| panic!("{addr} must be refused"));
        assert!(got.contains(want), "{addr}: {got}");
    }
}

#[test]
fn public_ipv4_addresses_pass() {
    for addr in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "172.15.255.255",
        "172.32.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "169.253.255.255",
        "11.0.0.0",
        "223.255.255.255",
        "198.20.0.0",
    ] {
        assert_eq!(reason(addr), None, "{addr}");
    }
}

#[test]
fn every_refused_ipv6_range_is_refused() {
    let cases = [
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("fec0::1", "site-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("100::1", "discard"),
        ("2001:0:4136:e378::1", "Teredo"),
        ("2001:2::1", "IETF"),
        ("64:ff9b:1::1", "NAT64"),
        ("::7f00:1", "IPv4-compatible"),
        ("4000::1", "reserved"),
        ("::2", "IPv4-compatible"),
    ];
    for (addr, want) in cases {
        let got = reason(addr).unwrap_or_else(|| panic!("{addr} must be refused"));
        assert!(got.contains(want), "{addr}: {got}");
    }
}

#[test]
fn ipv6_forms_embedding_ipv4_are_classified_by_the_ipv4_address() {
    let cases = [
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:172.16.0.1", "private"),
        ("::ffff:192.168.0.1", "private"),
        ("::ffff:100.64.0.1", "carrier-grade NAT"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("::ffff:224.0.0.1", "multicast"),
        ("::ffff:255.255.255.255", "broadcast"),
        ("64:ff9b::127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::1", "loopback"),
        ("2002:a00:1::", "private"),
    ];
    for (addr, want) in cases {
        let got = reason(addr).unwrap_or_else(|| panic!("{addr} must be refused"));
        assert!(got.contains(want), "{addr}: {got}");
    }
    assert_eq!(reason("::ffff:8.8.8.8"), None);
    assert_eq!(reason("64:ff9b::808:808"), None);
    assert_eq!(reason("2002:808:808::1"), None);
    assert_eq!(reason("2606:4700:4700::1111"), None);
    assert_eq!(reason("2a00:1450:4001::1"), None);
}

fn policy(patterns: &[&str]) -> UrlPolicy {
    let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    UrlPolicy::new(&p, vec!["127.0.0.1:8773".parse().unwrap()]).unwrap()
}

fn sa(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

#[test]
fn cidrs_open_exactly_their_addresses() {
    let p = policy(&["127.0.0.1/32", "10.0.0.0/8", "fd00::/8", "192.168.1.7"]);
    assert_eq!(p.refusal(None, sa("127.0.0.1", 80)), None);
    assert_eq!(p.refusal(None, sa("::ffff:127.0.0.1", 80)), None);
    assert!(p.refusal(None, sa("127.0.0.2", 80)).is_some());
    assert!(p.refusal(None, sa("::1", 80)).is_some());
    assert_eq!(p.refusal(None, sa("10.200.3.4", 443)), None);
    assert!(
        p.refusal(None, sa("11.0.0.0", 443)).is_none(),
        "public anyway"
    );
    assert!(p.refusal(None, sa("172.16.0.1", 443)).is_some());
    assert_eq!(p.refusal(None, sa("fd12::1", 443)), None);
    assert!(p.refusal(None, sa("fc00::1", 443)).is_some());
    assert_eq!(p.refusal(None, sa("192.168.1.7", 443)), None);
    assert!(p.refusal(None, sa("192.168.1.8", 443)).is_some());
    assert!(p.refusal(None, sa("169.254.169.254", 80)).is_some());
    // A mapped IPv6 CIDR covers the IPv4 addresses.
    let mapped = policy(&["::ffff:10.0.0.0/104"]);
    assert_eq!(mapped.refusal(None, sa("10.9.9.9", 80)), None);
    assert!(mapped.refusal(None, sa("11.0.0.1", 80)).is_none());
    assert!(mapped.refusal(None, sa("192.168.0.1", 80)).is_some());
}

#[test]
fn host_patterns_open_their_names_only() {
    let p = policy(&["mirror.internal", "*.images.example.com"]);
    assert_eq!(p.refusal(Some("mirror.internal"), sa("10.0.0.5", 80)), None);
    assert_eq!(
        p.refusal(Some("MIRROR.internal."), sa("10.0.0.5", 80)),
        None
    );
    assert!(
        p.refusal(Some("other.internal"), sa("10.0.0.5", 80))
            .is_some()
    );
    assert!(p.refusal(None, sa("10.0.0.5", 80)).is_some());
    assert_eq!(
        p.refusal(Some("a.images.example.com"), sa("10.0.0.5", 80)),
        None
    );
    assert_eq!(
        p.refusal(Some("a.b.images.example.com"), sa("10.0.0.5", 80)),
        None
    );
    assert!(
        p.refusal(Some("images.example.com"), sa("10.0.0.5", 80))
            .is_some()
    );
    assert!(
        p.refusal(Some("evilimages.example.com"), sa("10.0.0.5", 80))
            .is_some()
    );
}

#[test]
fn the_own_listener_is_refused_even_when_allowed() {
    let p = policy(&["127.0.0.0/8"]);
    let why = p.refusal(None, sa("127.0.0.1", 8773)).unwrap();
    assert!(why.contains("own listener"), "{why}");
    assert!(p.refusal(None, sa("::ffff:127.0.0.1", 8773)).is_some());
    assert_eq!(p.refusal(None, sa("127.0.0.1", 8774)), None);
    // Listening on every address: any local address at that port is the server.
    let any = UrlPolicy::new(
        &["127.0.0.0/8".into()],
        vec!["0.0.0.0:9000".parse().unwrap()],
    )
    .unwrap();
    assert!(any.refusal(None, sa("127.0.0.5", 9000)).is_some());
    assert_eq!(any.refusal(None, sa("127.0.0.5", 9001)), None);
}

#[test]
fn bad_patterns_are_refused() {
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/x",
        "foo/8",
        "*",
        "*.",
        "a..b",
        "exa mple.com",
        "a.*.com",
        "http://x",
    ] {
        assert!(UrlPolicy::new(&[bad.to_string()], vec![]).is_err(), "{bad}");
    }
}

fn no_dns(host: &str, _port: u16) -> Result<Vec<SocketAddr>, String> {
    panic!("{host} must not be resolved")
}

#[test]
fn urls_are_checked_before_anything_is_sent() {
    let p = policy(&[]);
    for (url, want) in [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://user:pw@example.com/x", "user information"),
        ("http://user@example.com/x", "user information"),
        ("http://10.1.2.3/disk.raw", "10.1.2.3, a private address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:8080/x", "loopback"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://0x7f.1/x", "loopback"),
        ("http://2130706433/x", "loopback"),
        ("http://0/x", "unspecified"),
        ("https://100.64.1.1/x", "carrier-grade"),
    ] {
        let err = p.check_with(url, &no_dns).unwrap_err();
        assert!(err.contains(want), "{url}: {err}");
    }
    let err = p.check_with("http://10.1.2.3/", &no_dns).unwrap_err();
    assert!(err.contains("see --import-url-allow"), "{err}");
}

#[test]
fn every_resolved_address_is_checked() {
    let p = policy(&[]);
    let resolver = |host: &str, port: u16| -> Result<Vec<SocketAddr>, String> {
        match host {
            "public.example" => Ok(vec![sa("93.184.216.34", port)]),
            "mixed.example" => Ok(vec![sa("93.184.216.34", port), sa("127.0.0.1", port)]),
            "localhost" => Ok(vec![sa("::1", port), sa("127.0.0.1", port)]),
            _ => Err("no such host".into()),
        }
    };
    let ok = p
        .check_with("http://public.example:8080/d.raw", &resolver)
        .unwrap();
    assert_eq!(ok.domain.as_deref(), Some("public.example"));
    assert_eq!(ok.addrs, vec![sa("93.184.216.34", 8080)]);
    let err = p
        .check_with("http://mixed.example/d.raw", &resolver)
        .unwrap_err();
    assert!(
        err.contains("mixed.example resolves to 127.0.0.1, a loopback address"),
        "{err}"
    );
    let err = p.check_with("http://localhost/", &resolver).unwrap_err();
    assert!(err.contains("loopback"), "{err}");
    let err = p
        .check_with("http://nowhere.example/", &resolver)
        .unwrap_err();
    assert!(err.contains("cannot be resolved"), "{err}");
    // Allowed by name: every address of that name.
    let named = policy(&["localhost"]);
    let ok = named.check_with("http://localhost:81/", &resolver).unwrap();
    assert_eq!(ok.addrs.len(), 2);
    assert!(
        named
            .check_with("http://mixed.example/", &resolver)
            .is_err()
    );
}
