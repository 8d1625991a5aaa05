//! Which `http(s)://` URLs an import may fetch: the guard against server-side request
//! forgery.
//!
//! A URL import makes openami connect somewhere and hand the bytes it gets to the caller
//! (as a snapshot they can read back), so by default it may only reach public addresses.
//! Refused, with an `InvalidParameter` error naming the reason:
//!
//! - schemes other than `http` and `https`, and URLs with user information (`user:pw@`);
//! - loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), private
//!   (10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10), shared/CGNAT (100.64/10),
//!   multicast (224/4, ff00::/8), broadcast, unspecified (0.0.0.0/8, ::), the IETF,
//!   documentation, benchmarking and reserved ranges (192.0.0/24, 192.0.2/24,
//!   198.51.100/24, 203.0.113/24, 198.18/15, 192.88.99/24, 240/4, 2001:db8::/32,
//!   3fff::/20, 100::/64, 2001::/32 Teredo), every IPv6 address outside global unicast
//!   2000::/3, and IPv6 forms that embed an IPv4 address (`::ffff:a.b.c.d`, `::a.b.c.d`,
//!   NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) when the embedded address is refused;
//! - the server's own listener (its `--listen` address and port), always, whatever the
//!   allow-list says.
//!
//! The host is resolved once; every address it resolves to is checked, and the
//! connection is made to exactly those addresses (the HTTP client gets them as a
//! resolver override, so a second DNS answer cannot point elsewhere). Redirects are not
//! followed by the client: each `Location` is checked like the first URL, at most
//! [`MAX_REDIRECTS`] times.
//!
//! The operator's allow-list (`serve --import-url-allow PATTERN[,PATTERN…]`, env
//! `OPENAMI_IMPORT_URL_ALLOW`) opens exactly what it names: a CIDR (`10.0.0.0/8`,
//! `127.0.0.1/32`, `fd00::/8`; a bare address means a single one) opens those addresses
//! even inside refused ranges; a host name (`mirror.internal`) or a wildcard
//! (`*.example.com`: any name below example.com, not example.com itself) opens every
//! address that name resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Resolves a host name and port to socket addresses (the system resolver, or a fake
/// one in tests).
pub(crate) type Resolver = dyn Fn(&str, u16) -> Result<Vec<SocketAddr>, String>;

/// How many redirects a download follows.
pub const MAX_REDIRECTS: usize = 10;

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// Addresses in `network/prefix` (IPv4-mapped IPv6 addresses are compared as IPv4).
    Cidr(IpAddr, u8),
    /// A host name, exactly (lowercase, no trailing dot).
    Host(String),
    /// Names ending with `.suffix`.
    Suffix(String),
}

/// What URL imports may reach: the allow-list and the server's own listeners.
#[derive(Clone, Debug, Default)]
pub struct UrlPolicy {
    allow: Vec<Rule>,
    own_listeners: Vec<SocketAddr>,
}

/// A URL that passed the checks, with the addresses its host resolved to.
#[derive(Clone, Debug)]
pub(crate) struct CheckedUrl {
    /// The URL.
    pub url: reqwest::Url,
    /// Its host name, when it is a name and not an address literal.
    pub domain: Option<String>,
    /// The checked addresses to connect to.
    pub addrs: Vec<SocketAddr>,
}

fn mask(ip: IpAddr, prefix: u8) -> u128 {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) as u128;
            if prefix == 0 {
                0
            } else {
                bits >> (32 - prefix)
            }
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            if prefix == 0 {
                0
            } else {
                bits >> (128 - prefix)
            }
        }
    }
}

/// `ip` with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) turned into IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    mask(IpAddr::V4(ip), prefix) == mask(IpAddr::V4(Ipv4Addr::from(net)), prefix)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    mask(IpAddr::V6(ip), prefix) == mask(IpAddr::V6(net), prefix)
}

/// Why an IPv4 address is refused, if it is.
fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 32, "an unspecified address"),
        ([0, 0, 0, 0], 8, "a \"this network\" address (0.0.0.0/8)"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([100, 64, 0, 0], 10, "a shared (carrier-grade NAT) address"),
        ([169, 254, 0, 0], 16, "a link-local address"),
        ([192, 0, 0, 0], 24, "an IETF protocol assignment address"),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([192, 88, 99, 0], 24, "a 6to4 relay anycast address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([255, 255, 255, 255], 32, "a broadcast address"),
        ([240, 0, 0, 0], 4, "a reserved address"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

/// Why an address is refused by default, if it is (`None`: a public address).
pub(crate) fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    let v6 = match ip {
        IpAddr::V4(v4) => return v4_reason(v4),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let bits = u128::from(v6);
    let embedded = |shift: u32| Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32);
    let net = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    if v6.is_unspecified() {
        return Some("an unspecified address");
    }
    if v6.is_loopback() {
        return Some("a loopback address");
    }
    if in_v6(v6, Ipv6Addr::UNSPECIFIED, 96) {
        return Some("an IPv4-compatible IPv6 address (deprecated)");
    }
    if in_v6(v6, net("64:ff9b::"), 96) {
        // NAT64: the connection ends at the embedded IPv4 address.
        return v4_reason(embedded(0));
    }
    if in_v6(v6, net("64:ff9b:1::"), 48) {
        return Some("a local-use NAT64 address");
    }
    if in_v6(v6, net("2002::"), 16) {
        // 6to4: the embedded IPv4 address is the relay's.
        return v4_reason(embedded(80));
    }
    const RANGES: &[(&str, u8, &str)] = &[
        ("fe80::", 10, "a link-local address"),
        ("fec0::", 10, "a site-local (private) address"),
        ("fc00::", 7, "a private (unique local) address"),
        ("ff00::", 8, "a multicast address"),
        ("100::", 64, "a discard-only address"),
        ("2001:db8::", 32, "a documentation address"),
        ("3fff::", 20, "a documentation address"),
        ("2001::", 32, "a Teredo address"),
        ("2001::", 23, "an IETF protocol assignment address"),
    ];
    if let Some((_, _, why)) = RANGES
        .iter()
        .find(|(n, prefix, _)| in_v6(v6, net(n), *prefix))
    {
        return Some(why);
    }
    if !in_v6(v6, net("2000::"), 3) {
        return Some("a reserved address (outside global unicast 2000::/3)");
    }
    None
}

fn parse_rule(pattern: &str) -> Result<Rule, String> {
    let p = pattern.trim();
    let bad = || format!("invalid --import-url-allow pattern {pattern:?}");
    if p.is_empty() {
        return Err(bad());
    }
    if let Some((addr, prefix)) = p.split_once('/') {
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        return Ok(Rule::Cidr(ip, prefix));
    }
    let literal = p.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(Rule::Cidr(ip, prefix));
    }
    let name = p.trim_end_matches('.').to_ascii_lowercase();
    let (wild, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, name.clone()),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if rest.is_empty() || rest.len() > 253 || !rest.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(if wild {
        Rule::Suffix(rest)
    } else {
        Rule::Host(rest)
    })
}

impl UrlPolicy {
    /// A policy from `--import-url-allow` patterns and the server's listening addresses.
    pub fn new(patterns: &[String], own_listeners: Vec<SocketAddr>) -> Result<Self, String> {
        let allow = patterns
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| parse_rule(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UrlPolicy {
            allow,
            own_listeners,
        })
    }

    fn host_allowed(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().any(|r| match r {
            Rule::Host(h) => *h == domain,
            Rule::Suffix(s) => domain
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            Rule::Cidr(..) => false,
        })
    }

    fn cidr_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow.iter().any(|r| match r {
            Rule::Cidr(orig, prefix) => {
                let net = canonical(*orig);
                let prefix = match (net, orig) {
                    // `::ffff:a.b.c.d/N` written as IPv6 covers IPv4 with N-96 bits.
                    (IpAddr::V4(_), IpAddr::V6(_)) => prefix.saturating_sub(96),
                    _ => *prefix,
                };
                net.is_ipv4() == ip.is_ipv4() && mask(net, prefix) == mask(ip, prefix)
            }
            _ => false,
        })
    }

    fn is_own_listener(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.own_listeners.iter().any(|l| {
            l.port() == addr.port()
                && (canonical(l.ip()) == ip || (l.ip().is_unspecified() && is_local_address(ip)))
        })
    }

    /// Why `addr` (reached through host name `domain`, if any) is refused, if it is.
    pub(crate) fn refusal(&self, domain: Option<&str>, addr: SocketAddr) -> Option<String> {
        if self.is_own_listener(addr) {
            return Some("this openami server's own listener".into());
        }
        if domain.is_some_and(|d| self.host_allowed(d)) || self.cidr_allowed(addr.ip()) {
            return None;
        }
        refusal_reason(addr.ip()).map(str::to_string)
    }

    /// Checks `url` (scheme, user information) and every address its host resolves to
    /// (resolved here, once).
    pub(crate) fn check(&self, url: &str) -> Result<CheckedUrl, String> {
        self.check_with(url, &|host, port| {
            (host, port)
                .to_socket_addrs()
                .map(|a| a.collect())
                .map_err(|e| e.to_string())
        })
    }

    /// [`Self::check`] with a given resolver (tests).
    pub(crate) fn check_with(&self, url: &str, resolve: &Resolver) -> Result<CheckedUrl, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("Invalid Url {url:?}: {e}"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(format!(
                "Invalid Url {url:?}: only http and https URLs are imported"
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(
                "Invalid Url: URLs with user information (user:password@) are refused".to_string(),
            );
        }
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("Invalid Url {url:?}: no port"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("Invalid Url {url:?}: it has no host"))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let (domain, addrs) = match literal.parse::<IpAddr>() {
            Ok(ip) => (None, vec![SocketAddr::new(ip, port)]),
            Err(_) if host.is_empty() => {
                return Err(format!("Invalid Url {url:?}: it has no host"));
            }
            Err(_) => {
                let d = host;
                let addrs = resolve(d, port)
                    .map_err(|e| format!("The URL's host {d} cannot be resolved: {e}"))?;
                if addrs.is_empty() {
                    return Err(format!(
                        "The URL's host {d} does not resolve to any address"
                    ));
                }
                (Some(d.to_string()), addrs)
            }
        };
        for addr in &addrs {
            if let Some(why) = self.refusal(domain.as_deref(), *addr) {
                let what = match &domain {
                    Some(d) => format!("The URL's host {d} resolves to {}", addr.ip()),
                    None => format!("The URL's host is {}", addr.ip()),
                };
                return Err(format!(
                    "{what}, {why}; imports from internal addresses are refused (see --import-url-allow)"
                ));
            }
        }
        Ok(CheckedUrl {
            url: parsed,
            domain,
            addrs,
        })
    }
}

/// Whether `ip` is one of this host's addresses (binding a UDP socket to it succeeds;
/// nothing is sent).
fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
#[path = "urlguard_tests.rs"]
mod tests;
