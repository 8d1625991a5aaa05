//! An instance's place on the network: its private address (from its subnet), its public
//! address (from the host's loopback pool), its MAC, the user-mode network QEMU gives its
//! NIC, and the host port forwards its security groups open.
//!
//! How the pieces fit, for one instance in the default VPC:
//!
//! ```text
//!   client ──► 127.100.0.7:22 (public address, a QEMU host forward, opened by an
//!              ingress rule whose CIDR covers loopback clients)
//!                     │ slirp
//!                     ▼
//!   guest NIC 172.31.5.10 (DHCP from slirp; net 168.0.0.0/5 so that both the subnet
//!   and 169.254.169.254 are inside it; no router, restrict=on: nothing leaves)
//!                     │ guest connects to 169.254.169.254:80
//!                     ▼
//!   `openami imds-relay <run dir>/imds.sock` (one process per connection) ──► the
//!   instance's own metadata socket served by openami
//! ```
//!
//! The private address is on the NIC itself whenever the subnet and 169.254.169.254 fit
//! in one network of prefix length 4 or more (every 172.16.0.0/12 subnet, so the default
//! VPC's); otherwise the NIC lives in 169.254.0.0/16 and only the API, IMDS and the
//! hostname carry the private address.
//!
//! Security groups: an ingress rule for tcp/udp ports opens them on the public address
//! when one of its IPv4 CIDRs contains 127.0.0.1 (the address local clients connect
//! from). Host forwards have no source filter, so a narrower loopback CIDR (say
//! 127.5.5.5/32) is treated as covering no client. Ranges up to [`MAX_RANGE`] ports are
//! forwarded whole; wider ones (and "all traffic") forward only [`COMMON_PORTS`] within
//! them. A rule naming a security group of a load balancer opens its ports the same way
//! (load balancers live on the host and connect to targets' public addresses; the
//! service above EC2 says which groups those are, [`Cloud::set_load_balancer_groups`]).
//! Rules naming other groups open nothing on the host (instance-to-instance traffic is
//! not carried yet).

use std::net::Ipv4Addr;

use std::path::Path;

use catalog::ResourceRow;

use super::{InstanceDoc, KIND, doc_of};
use crate::network::IngressRule;
pub use crate::vpc::Cidr;
use crate::{Cloud, Ec2Error, Ec2Result};

/// The metadata service's address inside every instance network.
pub const IMDS_ADDR: &str = "169.254.169.254";

/// Widest port range forwarded port by port.
pub const MAX_RANGE: u32 = 64;

/// Ports forwarded from rules wider than [`MAX_RANGE`] (when inside the range).
pub const COMMON_PORTS: &[u16] = &[
    22, 25, 53, 80, 443, 3000, 3306, 3389, 5000, 5432, 6379, 8000, 8080, 8443, 9000, 9090,
];

/// The default pool of public addresses.
pub const DEFAULT_PUBLIC_POOL: &str = "127.100.0.0/16";

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn ip_u32(s: &str) -> Option<u32> {
    s.parse::<Ipv4Addr>().ok().map(u32::from)
}

/// The user-mode network for a NIC in `subnet`: the smallest network of prefix length 4
/// or more holding the subnet and the metadata address, else `169.254.0.0/16`. The
/// second value says whether the private address can be the NIC's.
pub fn slirp_net(subnet: &Cidr) -> (Cidr, bool) {
    let imds = Ipv4Addr::new(169, 254, 169, 254);
    let mut len = subnet.prefix.min(32);
    while len >= 4 {
        let net = Cidr {
            addr: subnet.addr & mask(len),
            prefix: len,
        };
        if net.contains_ip(imds) {
            return (net, true);
        }
        len -= 1;
    }
    (
        Cidr {
            addr: u32::from(Ipv4Addr::new(169, 254, 0, 0)),
            prefix: 16,
        },
        false,
    )
}

/// The host forwards (protocol, guest port) that `rules` open to loopback clients and to
/// members of `host_groups` (load balancers' security groups).
pub fn open_ports(rules: &[IngressRule], host_groups: &[String]) -> Vec<(compute::Proto, u16)> {
    let mut out = Vec::new();
    for rule in rules {
        let covers = rule
            .cidrs
            .iter()
            .filter_map(|c| Cidr::parse(c, false))
            .any(|c| c.contains_ip(Ipv4Addr::LOCALHOST))
            || rule.source_groups.iter().any(|g| host_groups.contains(g));
        if !covers {
            continue;
        }
        let protos: &[compute::Proto] = match rule.protocol.as_str() {
            "tcp" | "6" => &[compute::Proto::Tcp],
            "udp" | "17" => &[compute::Proto::Udp],
            "-1" | "all" => &[compute::Proto::Tcp, compute::Proto::Udp],
            _ => &[],
        };
        let (from, to) = if rule.from_port < 0 || rule.to_port < 0 {
            (0, 65535)
        } else {
            (rule.from_port.clamp(0, 65535), rule.to_port.clamp(0, 65535))
        };
        let ports: Vec<u16> = if to >= from && ((to - from) as u32) < MAX_RANGE {
            (from..=to).filter(|p| *p > 0).map(|p| p as u16).collect()
        } else {
            COMMON_PORTS
                .iter()
                .copied()
                .filter(|p| i64::from(*p) >= from && i64::from(*p) <= to)
                .collect()
        };
        for proto in protos {
            for port in &ports {
                out.push((*proto, *port));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The host forwards for an instance with public address `public_ip`.
pub fn host_forwards(
    rules: &[IngressRule],
    host_groups: &[String],
    public_ip: &str,
) -> Vec<compute::HostForward> {
    open_ports(rules, host_groups)
        .into_iter()
        .map(|(proto, port)| compute::HostForward {
            proto,
            host_addr: public_ip.to_string(),
            host_port: port,
            guest_port: port,
        })
        .collect()
}

/// A new locally administered unicast MAC (`02:…`), as EC2's ENIs have.
pub fn new_mac() -> String {
    let b = crate::ids::random_bytes::<5>();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// A stopped instance gives its public address back (EC2's rule: a new one at the next
/// start), unless it is an Elastic IP, which stays associated.
pub(crate) fn release_public_ip(doc: &mut InstanceDoc) {
    if let Some(n) = &mut doc.network
        && n.elastic.is_none()
    {
        n.public_ip = None;
    }
}

/// A terminated instance gives back its public address and its Elastic IP's
/// association (the Elastic IP stays allocated to the account).
pub(crate) fn release_all_public_addresses(doc: &mut InstanceDoc) {
    if let Some(n) = &mut doc.network {
        n.public_ip = None;
        n.elastic = None;
    }
}

/// The SMBIOS identity cloud-init recognises as EC2: a system UUID (and equal serial)
/// starting with `ec2`, derived from the instance id so it is stable across boots.
pub(crate) fn identity(instance_id: &str, instance_type: &str) -> compute::Identity {
    let h = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        instance_id.as_bytes(),
    ));
    compute::Identity {
        manufacturer: "Amazon EC2".into(),
        product: instance_type.to_string(),
        uuid: format!(
            "ec2{}-{}-{}-{}-{}",
            &h[0..5],
            &h[5..9],
            &h[9..13],
            &h[13..17],
            &h[17..29]
        ),
        asset_tag: instance_id.to_string(),
    }
}

/// The NIC of an instance with a network interface: its MAC, private address (on the
/// NIC when the subnet allows, see `instances::network`), DHCP hostname and the
/// metadata relay. Host forwards are added once QEMU runs.
pub(crate) fn net_spec(
    cloud: &Cloud,
    doc: &InstanceDoc,
    runtime_dir: &Path,
    with_imds: bool,
) -> Option<compute::NetSpec> {
    let net = doc.network.as_ref()?;
    let subnet = Cidr::parse(&net.subnet_cidr, false)?;
    let (slirp, on_nic) = slirp_net(&subnet);
    let (host, dns, address) = if on_nic {
        (
            subnet.nth(1).to_string(),
            subnet.nth(2).to_string(),
            doc.private_ip.clone(),
        )
    } else {
        (
            slirp.nth(2 * 256 + 2).to_string(),
            slirp.nth(2 * 256 + 3).to_string(),
            slirp.nth(2 * 256 + 15).to_string(),
        )
    };
    let mut guest_forwards = Vec::new();
    if with_imds && let Some(relay) = &cloud.compute_config().imds_relay {
        let mut command = relay.clone();
        command.push(runtime_dir.join("imds.sock").to_string_lossy().into_owned());
        guest_forwards.push(compute::GuestForward {
            addr: IMDS_ADDR.into(),
            port: 80,
            command,
        });
    }
    Some(compute::NetSpec {
        mac: net.mac.clone(),
        net: slirp.to_string(),
        host,
        dns,
        dhcp_start: address,
        hostname: Some(format!("ip-{}", doc.private_ip.replace('.', "-"))),
        guest_forwards,
        host_forwards: Vec::new(),
        egress: cloud.compute_config().egress,
    })
}

/// True for instances that hold addresses (everything but terminated).
fn holds_addresses(row: &ResourceRow) -> bool {
    row.state != "terminated"
}

static ADDRESSES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Offset in the pool of the public address handed out last (0: none yet).
static LAST_PUBLIC: std::sync::Mutex<u64> = std::sync::Mutex::new(0);

/// Held while addresses are chosen and recorded (launches and starts).
pub(crate) fn address_lock() -> std::sync::MutexGuard<'static, ()> {
    ADDRESSES.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cloud {
    /// Private addresses of a subnet's instances (all but terminated ones).
    fn used_private_ips(&self, subnet_id: &str) -> Ec2Result<Vec<u32>> {
        let mut used = Vec::new();
        for row in self.catalog.resources_of_kind(KIND)? {
            if !holds_addresses(&row) {
                continue;
            }
            let doc = doc_of(&row)?;
            if doc
                .network
                .as_ref()
                .is_some_and(|n| n.subnet_id == subnet_id)
                && let Some(ip) = ip_u32(&doc.private_ip)
            {
                used.push(ip);
            }
        }
        Ok(used)
    }

    /// Whether an instance of the subnet has address `ip`.
    pub(crate) fn private_ip_in_use(&self, subnet_id: &str, ip: &str) -> Ec2Result<bool> {
        let used = self.used_private_ips(subnet_id)?;
        Ok(ip_u32(ip).is_some_and(|ip| used.contains(&ip)))
    }

    /// The lowest free private address of a subnet (EC2 reserves the first four and the
    /// last address of every subnet).
    pub(crate) fn allocate_private_ip(
        &self,
        subnet_id: &str,
        subnet_cidr: &str,
        taken_now: &[String],
    ) -> Ec2Result<String> {
        let cidr = Cidr::parse(subnet_cidr, false)
            .ok_or_else(|| Ec2Error::internal("subnet CIDR", subnet_cidr))?;
        let mut used: Vec<u32> = taken_now.iter().filter_map(|s| ip_u32(s)).collect();
        used.extend(self.used_private_ips(subnet_id)?);
        (4..cidr.size().saturating_sub(1))
            .map(|n| cidr.nth(n))
            .find(|ip| !used.contains(&u32::from(*ip)))
            .map(|ip| ip.to_string())
            .ok_or_else(|| {
                Ec2Error::client(
                    "InsufficientFreeAddressesInSubnet",
                    format!("The specified subnet {subnet_id} does not have enough free addresses to satisfy the request."),
                )
            })
    }

    /// The lowest free address of the public pool (shared by every account and region
    /// of this host).
    pub(crate) fn allocate_public_ip(&self, taken_now: &[String]) -> Ec2Result<String> {
        let pool = Cidr::parse(&self.compute_config().public_ip_pool, false).ok_or_else(|| {
            Ec2Error::internal("public address pool", &self.compute_config().public_ip_pool)
        })?;
        let mut used: Vec<u32> = taken_now.iter().filter_map(|s| ip_u32(s)).collect();
        used.extend(self.elastic_ips()?.iter().filter_map(|s| ip_u32(s)));
        for row in self.catalog.resources_of_kind(KIND)? {
            if let Some(ip) = doc_of(&row)?
                .network
                .and_then(|n| n.public_ip)
                .and_then(|ip| ip_u32(&ip))
            {
                used.push(ip);
            }
        }
        // Round robin from the last address handed out, so an instance that stops and
        // starts gets a new address (EC2's rule) while the pool lasts.
        let mut last = LAST_PUBLIC.lock().unwrap_or_else(|p| p.into_inner());
        let size = pool.size().saturating_sub(2).max(1);
        // The index (0-based from offset 1) of the last address; none yet: just before 0.
        let start = if *last == 0 {
            size - 1
        } else {
            (*last - 1) % size
        };
        let found = (1..=size)
            .map(|k| pool.nth(1 + (start + k) % size))
            .find(|ip| !used.contains(&u32::from(*ip)));
        match found {
            Some(ip) => {
                *last = u64::from(u32::from(ip).wrapping_sub(pool.addr));
                Ok(ip.to_string())
            }
            None => Err(Ec2Error::client(
                "AddressLimitExceeded",
                "The public address pool of this host is exhausted.",
            )),
        }
    }

    /// Gives a (re)starting instance a new public address when its interface wants one
    /// and holds no Elastic IP (which it keeps). (The caller holds [`address_lock`];
    /// `taken_now` are addresses chosen but not yet recorded.) Returns the new address.
    pub(crate) fn assign_public_ip(
        &self,
        doc: &mut InstanceDoc,
        taken_now: &[String],
    ) -> Ec2Result<Option<String>> {
        let wants = doc
            .network
            .as_ref()
            .is_some_and(|n| n.associate_public_ip && n.elastic.is_none());
        if !wants {
            return Ok(None);
        }
        let ip = self.allocate_public_ip(taken_now)?;
        if let Some(n) = &mut doc.network {
            n.public_ip = Some(ip.clone());
        }
        Ok(Some(ip))
    }

    /// Re-applies the host forwards of the running instances in `group_ids`.
    pub(crate) fn refresh_forwards_of_groups(&self, group_ids: &[String]) {
        let machines: Vec<(String, std::sync::Arc<super::machine::Machine>)> =
            crate::lock(&self.machines)
                .iter()
                .map(|(id, m)| (id.clone(), std::sync::Arc::clone(m)))
                .collect();
        for (id, machine) in machines {
            let Ok(Some(row)) = self.catalog.resource(&id) else {
                continue;
            };
            let Ok(doc) = doc_of(&row) else { continue };
            let member = doc.network.as_ref().is_some_and(|n| {
                n.groups.iter().any(|g| group_ids.contains(&g.id)) || group_ids.is_empty()
            });
            if member {
                machine.apply_forwards(self);
            }
        }
    }

    /// Tells which security groups load balancers (on the host) use: ingress rules naming
    /// them open their ports on instances' public addresses. Forwards of running
    /// instances follow when the set changes.
    pub fn set_load_balancer_groups(&self, mut groups: Vec<String>) {
        groups.sort();
        groups.dedup();
        {
            let mut current = crate::lock(&self.load_balancer_groups);
            if *current == groups {
                return;
            }
            *current = groups;
        }
        self.refresh_forwards_of_groups(&[]);
    }

    /// The host forwards an instance's groups ask for.
    pub(crate) fn wanted_forwards(&self, doc: &InstanceDoc) -> Vec<compute::HostForward> {
        let Some(net) = &doc.network else {
            return Vec::new();
        };
        let Some(public_ip) = &net.public_ip else {
            return Vec::new();
        };
        let ids: Vec<String> = net.groups.iter().map(|g| g.id.clone()).collect();
        match self.ingress_rules(&ids) {
            Ok(rules) => {
                let host_groups = crate::lock(&self.load_balancer_groups).clone();
                host_forwards(&rules, &host_groups, public_ip)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read security group rules");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &str, from: i64, to: i64, cidrs: &[&str]) -> IngressRule {
        IngressRule {
            group_id: "sg-1".into(),
            protocol: protocol.into(),
            from_port: from,
            to_port: to,
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            source_groups: vec![],
        }
    }

    #[test]
    fn nth_addresses() {
        let c = Cidr::parse("172.31.16.0/20", true).unwrap();
        assert_eq!(c.nth(4).to_string(), "172.31.16.4");
        assert_eq!(c.nth(4095).to_string(), "172.31.31.255");
    }

    #[test]
    fn slirp_networks_hold_the_subnet_and_the_metadata_address() {
        let (net, on_nic) = slirp_net(&Cidr::parse("172.31.0.0/20", true).unwrap());
        assert_eq!(net.to_string(), "168.0.0.0/5");
        assert!(on_nic);
        let (net, on_nic) = slirp_net(&Cidr::parse("10.0.0.0/16", true).unwrap());
        assert_eq!(net.to_string(), "169.254.0.0/16");
        assert!(!on_nic);
        let (net, on_nic) = slirp_net(&Cidr::parse("169.254.0.0/16", true).unwrap());
        assert_eq!(net.to_string(), "169.254.0.0/16");
        assert!(on_nic);
    }

    #[test]
    fn ports_opened_by_rules() {
        use compute::Proto::{Tcp, Udp};
        let rules = vec![
            rule("tcp", 22, 22, &["0.0.0.0/0"]),
            rule("tcp", 80, 80, &["10.0.0.0/8"]),
            rule("udp", 53, 54, &["127.0.0.0/8"]),
            rule("tcp", 8000, 8002, &["127.0.0.1/32"]),
            rule("tcp", 443, 443, &["127.5.5.5/32"]),
        ];
        assert_eq!(
            open_ports(&rules, &[]),
            vec![
                (Tcp, 22),
                (Tcp, 8000),
                (Tcp, 8001),
                (Tcp, 8002),
                (Udp, 53),
                (Udp, 54)
            ]
        );
        let all = open_ports(&[rule("-1", -1, -1, &["0.0.0.0/0"])], &[]);
        assert!(all.contains(&(Tcp, 22)) && all.contains(&(Udp, 80)));
        assert_eq!(all.len(), COMMON_PORTS.len() * 2);
        let wide = open_ports(&[rule("tcp", 1000, 9000, &["0.0.0.0/0"])], &[]);
        assert_eq!(wide.first(), Some(&(Tcp, 3000)));
        assert!(open_ports(&[rule("icmp", -1, -1, &["0.0.0.0/0"])], &[]).is_empty());
        let fwd = host_forwards(&[rule("tcp", 22, 22, &["0.0.0.0/0"])], &[], "127.100.0.9");
        assert_eq!(fwd[0].rule(), "tcp:127.100.0.9:22-:22");
        // A rule naming a load balancer's group opens its port; other groups open nothing.
        let mut from_lb = rule("tcp", 80, 80, &[]);
        from_lb.source_groups = vec!["sg-lb".into()];
        assert_eq!(
            open_ports(&[from_lb.clone()], &["sg-lb".into()]),
            vec![(Tcp, 80)]
        );
        assert!(open_ports(&[from_lb], &["sg-other".into()]).is_empty());
    }

    #[test]
    fn macs_are_locally_administered() {
        let mac = new_mac();
        assert!(mac.starts_with("02:") && mac.len() == 17);
        assert_ne!(mac, new_mac());
    }
}
