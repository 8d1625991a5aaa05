//! IPv4 CIDR blocks: parsing (`10.0.0.0/16`), containment, overlap and sizes.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 CIDR block whose address is its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: u32,
    /// Prefix length, 0–32.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`. With `strict`, host bits must be zero; otherwise they are
    /// cleared.
    pub fn parse(text: &str, strict: bool) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let addr = u32::from(addr);
        let masked = addr & Self::mask(prefix);
        if strict && masked != addr {
            return None;
        }
        Some(Cidr {
            addr: masked,
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Last address.
    pub fn last(&self) -> u32 {
        self.addr | !Self::mask(self.prefix)
    }

    /// True if `other` lies entirely inside this block.
    pub fn contains(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && other.addr & Self::mask(self.prefix) == self.addr
    }

    /// True if `ip` is in this block.
    pub fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == self.addr
    }

    /// The `n`th address of the block.
    pub fn nth(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.wrapping_add(n as u32))
    }

    /// True if the blocks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

/// True for an IPv6 CIDR such as `::/0` or `2001:db8::/32`.
pub fn is_ipv6_cidr(text: &str) -> bool {
    text.split_once('/').is_some_and(|(addr, prefix)| {
        addr.parse::<std::net::Ipv6Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 128)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let c = Cidr::parse("172.31.16.0/20", true).unwrap();
        assert_eq!(c.to_string(), "172.31.16.0/20");
        assert_eq!(c.size(), 4096);
        assert!(Cidr::parse("10.0.0.5/24", true).is_none());
        assert_eq!(
            Cidr::parse("10.0.0.5/24", false).unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert!(Cidr::parse("10.0.0.0/33", false).is_none());
        assert!(Cidr::parse("10.0.0.0", false).is_none());
        assert!(Cidr::parse("10.0.0.0/", false).is_none());
        assert!(Cidr::parse("300.0.0.0/8", false).is_none());
        assert_eq!(Cidr::parse("0.0.0.0/0", true).unwrap().size(), 1 << 32);
    }

    #[test]
    fn containment_and_overlap() {
        let vpc = Cidr::parse("172.31.0.0/16", true).unwrap();
        let a = Cidr::parse("172.31.0.0/20", true).unwrap();
        let b = Cidr::parse("172.31.16.0/20", true).unwrap();
        let wide = Cidr::parse("172.31.0.0/19", true).unwrap();
        let outside = Cidr::parse("10.0.0.0/24", true).unwrap();
        assert!(vpc.contains(&a) && vpc.contains(&b));
        assert!(!a.contains(&vpc));
        assert!(!vpc.contains(&outside));
        assert!(!a.overlaps(&b));
        assert!(wide.overlaps(&a) && wide.overlaps(&b));
        assert!(!outside.overlaps(&vpc));
        assert!(a.contains_ip("172.31.15.255".parse().unwrap()));
        assert!(!a.contains_ip("172.31.16.0".parse().unwrap()));
        assert!(is_ipv6_cidr("::/0"));
        assert!(!is_ipv6_cidr("0.0.0.0/0"));
    }
}
