//! Listener rules compiled for matching: ALB's condition semantics.
//!
//! - `path-pattern`: case-sensitive, `*` and `?`, the path only (never the query).
//! - `host-header`: case-insensitive, the port stripped; `*.example.com` does not match
//!   `example.com`.
//! - `http-header`: name and value case-insensitive, value wildcards; any of the header's
//!   values may match.
//! - `http-request-method`: exact, case-sensitive.
//! - `query-string`: (optional key, value pattern) pairs, case-insensitive wildcards; any pair
//!   matching any query parameter satisfies the condition.
//! - `source-ip`: CIDRs on the TCP peer address (never `X-Forwarded-For`).
//!
//! Values within one condition are alternatives (OR); a rule's conditions all must hold (AND).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::http::request::Parts;

use crate::{Action, Condition, Rule};

/// A rule ready to be evaluated.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    conditions: Vec<Matcher>,
    /// The rule's action.
    pub(crate) action: Action,
    /// Counts the requests of a weighted forward, to spread them by weight.
    turn: AtomicU64,
}

#[derive(Debug)]
enum Matcher {
    Path(Vec<String>),
    /// Lower-cased patterns.
    Host(Vec<String>),
    /// Lower-cased name and patterns.
    Header(String, Vec<String>),
    Method(Vec<String>),
    /// Lower-cased keys and patterns.
    Query(Vec<(Option<String>, String)>),
    Source(Vec<Cidr>),
}

impl CompiledRule {
    /// Compiles a rule of the configuration.
    pub(crate) fn new(rule: &Rule) -> Self {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect();
        let conditions = rule
            .conditions
            .iter()
            .map(|c| match c {
                Condition::PathPattern(v) => Matcher::Path(v.clone()),
                Condition::HostHeader(v) => Matcher::Host(lower(v)),
                Condition::HttpHeader { name, values } => {
                    Matcher::Header(name.to_ascii_lowercase(), lower(values))
                }
                Condition::Method(v) => Matcher::Method(v.clone()),
                Condition::QueryString(pairs) => Matcher::Query(
                    pairs
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_ref().map(|k| k.to_ascii_lowercase()),
                                v.to_ascii_lowercase(),
                            )
                        })
                        .collect(),
                ),
                // An unparsable CIDR matches nothing (the control plane validates them).
                Condition::SourceIp(v) => {
                    Matcher::Source(v.iter().filter_map(|c| Cidr::parse(c)).collect())
                }
            })
            .collect();
        CompiledRule {
            conditions,
            action: rule.action.clone(),
            turn: AtomicU64::new(0),
        }
    }

    /// Whether every condition holds for the request from `peer`.
    pub(crate) fn matches(&self, req: &Parts, peer: IpAddr) -> bool {
        self.conditions.iter().all(|c| c.matches(req, peer))
    }

    /// The next turn of this rule's weighted choice.
    pub(crate) fn next_turn(&self) -> u64 {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }
}

impl Matcher {
    fn matches(&self, req: &Parts, peer: IpAddr) -> bool {
        match self {
            Matcher::Path(patterns) => {
                let path = req.uri.path();
                patterns
                    .iter()
                    .any(|p| wildcard(p.as_bytes(), path.as_bytes()))
            }
            Matcher::Host(patterns) => {
                let Some(host) = request_host(req) else {
                    return false;
                };
                let host = strip_port(&host).to_ascii_lowercase();
                patterns
                    .iter()
                    .any(|p| wildcard(p.as_bytes(), host.as_bytes()))
            }
            Matcher::Header(name, patterns) => req.headers.get_all(name.as_str()).iter().any(|v| {
                let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
                patterns
                    .iter()
                    .any(|p| wildcard(p.as_bytes(), v.as_bytes()))
            }),
            Matcher::Method(methods) => methods.iter().any(|m| m == req.method.as_str()),
            Matcher::Query(pairs) => {
                let params = query_pairs(req.uri.query().unwrap_or(""));
                pairs.iter().any(|(key, pattern)| {
                    params.iter().any(|(k, v)| {
                        key.as_ref()
                            .is_none_or(|key| wildcard(key.as_bytes(), k.as_bytes()))
                            && wildcard(pattern.as_bytes(), v.as_bytes())
                    })
                })
            }
            Matcher::Source(cidrs) => cidrs.iter().any(|c| c.contains(peer)),
        }
    }
}

/// The request's host: the `Host` header, or the authority of an absolute-form target.
pub(crate) fn request_host(req: &Parts) -> Option<String> {
    if let Some(h) = req.headers.get(hyper::header::HOST) {
        return h.to_str().ok().map(str::to_owned);
    }
    req.uri.authority().map(|a| a.as_str().to_owned())
}

/// `host:port` → `host` (`[::1]:80` → `[::1]`).
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

/// Query parameters, percent-decoded and lower-cased (`+` is a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                decode(k).to_ascii_lowercase(),
                decode(v).to_ascii_lowercase(),
            )
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Glob match with `*` (any run, also empty) and `?` (one byte), byte-wise.
pub(crate) fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// An IPv4 or IPv6 CIDR block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cidr {
    net: u128,
    prefix: u32,
    v4: bool,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n` (a bare address is a host block).
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u32>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let (bits, v4, max) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), true, 32),
            IpAddr::V6(a) => (u128::from(a), false, 128),
        };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr {
            net: bits & mask(prefix, max),
            prefix,
            v4,
        })
    }

    /// Whether `ip` lies inside (IPv4-mapped IPv6 peers count as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) if self.v4 => {
                u128::from(u32::from(a)) & mask(self.prefix, 32) == self.net
            }
            IpAddr::V6(a) if !self.v4 => u128::from(a) & mask(self.prefix, 128) == self.net,
            _ => false,
        }
    }
}

fn mask(prefix: u32, max: u32) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all = if max == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        (all << (max - prefix)) & all
    }
}

/// The first rule matching the request (the last rule is the default and has no conditions).
pub(crate) fn first_match<'a>(
    rules: &'a [CompiledRule],
    req: &Parts,
    peer: IpAddr,
) -> Option<&'a CompiledRule> {
    rules.iter().find(|r| r.matches(req, peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn rule(conditions: Vec<Condition>) -> CompiledRule {
        CompiledRule::new(&Rule {
            id: "r".into(),
            conditions,
            action: Action::FixedResponse {
                status: 200,
                content_type: None,
                body: String::new(),
            },
        })
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn wildcards() {
        assert!(wildcard(b"/api/*", b"/api/x/y"));
        assert!(wildcard(b"/api/*", b"/api/"));
        assert!(!wildcard(b"/api/*", b"/api"));
        assert!(wildcard(b"/a?c", b"/abc"));
        assert!(!wildcard(b"/a?c", b"/ac"));
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"*.example.com", b"www.example.com"));
        assert!(!wildcard(b"*.example.com", b"example.com"));
        assert!(wildcard(b"a*b*c", b"aXXbYYbc"));
        assert!(!wildcard(b"a*b*c", b"aXXbYYb"));
    }

    #[test]
    fn path_is_case_sensitive_and_ignores_query() {
        let r = rule(vec![Condition::PathPattern(vec!["/API/*".into()])]);
        assert!(r.matches(&parts("GET", "/API/x?y=1", &[]), PEER));
        assert!(!r.matches(&parts("GET", "/api/x", &[]), PEER));
        let r = rule(vec![Condition::PathPattern(vec!["/x".into()])]);
        assert!(r.matches(&parts("GET", "/x?a=b", &[]), PEER));
    }

    #[test]
    fn host_is_case_insensitive_without_port() {
        let r = rule(vec![Condition::HostHeader(vec!["*.Example.com".into()])]);
        assert!(r.matches(
            &parts("GET", "/", &[("host", "WWW.example.COM:8080")]),
            PEER
        ));
        assert!(!r.matches(&parts("GET", "/", &[("host", "example.com")]), PEER));
        assert!(!r.matches(&parts("GET", "/", &[]), PEER));
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.b"), "a.b");
    }

    #[test]
    fn header_method_query_source() {
        let r = rule(vec![
            Condition::HttpHeader {
                name: "X-Env".into(),
                values: vec!["Prod*".into(), "stage".into()],
            },
            Condition::Method(vec!["POST".into()]),
        ]);
        assert!(r.matches(&parts("POST", "/", &[("x-env", "production")]), PEER));
        assert!(!r.matches(&parts("post", "/", &[("x-env", "production")]), PEER));
        assert!(!r.matches(&parts("POST", "/", &[("x-env", "dev")]), PEER));
        assert!(!r.matches(&parts("POST", "/", &[]), PEER));

        let r = rule(vec![Condition::QueryString(vec![
            (Some("Version".into()), "v1*".into()),
            (None, "Debug".into()),
        ])]);
        assert!(r.matches(&parts("GET", "/?version=V1.2", &[]), PEER));
        assert!(r.matches(&parts("GET", "/?x=debug", &[]), PEER));
        assert!(r.matches(&parts("GET", "/?a=%44ebug", &[]), PEER));
        assert!(!r.matches(&parts("GET", "/?version=v2", &[]), PEER));
        assert!(!r.matches(&parts("GET", "/", &[]), PEER));

        let r = rule(vec![Condition::SourceIp(vec![
            "10.0.0.0/8".into(),
            "127.0.0.0/24".into(),
        ])]);
        assert!(r.matches(&parts("GET", "/", &[]), PEER));
        assert!(!r.matches(&parts("GET", "/", &[]), "127.0.1.1".parse().unwrap()));
        assert!(r.matches(&parts("GET", "/", &[]), "::ffff:10.1.2.3".parse().unwrap()));
        let c = Cidr::parse("::1/128").unwrap();
        assert!(c.contains("::1".parse().unwrap()));
        assert!(!c.contains(PEER));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(PEER));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
    }

    #[test]
    fn conditions_and_rules_order() {
        let rules = vec![
            rule(vec![
                Condition::PathPattern(vec!["/a".into()]),
                Condition::Method(vec!["GET".into()]),
            ]),
            rule(vec![]),
        ];
        let p = parts("GET", "/a", &[]);
        assert!(std::ptr::eq(
            first_match(&rules, &p, PEER).unwrap(),
            &rules[0]
        ));
        let p = parts("PUT", "/a", &[]);
        assert!(std::ptr::eq(
            first_match(&rules, &p, PEER).unwrap(),
            &rules[1]
        ));
    }
}
