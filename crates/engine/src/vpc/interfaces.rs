//! Network interfaces: DescribeNetworkInterfaces, one primary interface per
//! non-terminated instance, synthesized from the instance's recorded network.

use crate::network::{ElasticAssociation, InstanceNetwork};
use crate::query::{Filter, Filterable, Page, check_filters, matches};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

/// An instance's primary network interface as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceView {
    /// `eni-…`.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// The instance it is attached to.
    pub instance_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Private IPv4 address.
    pub private_ip: String,
    /// `ip-…` private DNS name.
    pub private_dns_name: String,
    /// When it was attached (the instance's launch).
    pub attach_time_ms: i64,
    /// VPC, subnet, MAC, public address, groups.
    pub network: InstanceNetwork,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for InterfaceView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        let n = &self.network;
        match name {
            "network-interface-id" => one(&self.id),
            "attachment.instance-id" => one(&self.instance_id),
            "attachment.attachment-id" => one(&n.attachment_id),
            "attachment.instance-owner-id" | "owner-id" => one(&self.owner_id),
            "attachment.device-index" => one("0"),
            "attachment.status" => one("attached"),
            "attachment.delete-on-termination" => one("true"),
            "subnet-id" => one(&n.subnet_id),
            "vpc-id" => one(&n.vpc_id),
            "group-id" => Some(n.groups.iter().map(|g| g.id.clone()).collect()),
            "group-name" => Some(n.groups.iter().map(|g| g.name.clone()).collect()),
            "private-ip-address" | "addresses.private-ip-address" => one(&self.private_ip),
            "addresses.primary" => one("true"),
            "private-dns-name" => one(&self.private_dns_name),
            "mac-address" => one(&n.mac),
            "availability-zone" => one(&self.availability_zone),
            "status" => one("in-use"),
            "description" => one(""),
            "source-dest-check" => one(&n.source_dest_check.to_string()),
            "interface-type" => one("interface"),
            "requester-managed" => one("false"),
            "association.public-ip" | "addresses.association.public-ip" => {
                Some(n.public_ip.iter().cloned().collect())
            }
            "association.ip-owner-id" => Some(
                n.public_ip
                    .iter()
                    .map(|_| ElasticAssociation::ip_owner(n.elastic.as_ref(), &self.owner_id))
                    .collect(),
            ),
            "association.allocation-id" => {
                Some(n.elastic.iter().map(|e| e.allocation_id.clone()).collect())
            }
            "association.association-id" => {
                Some(n.elastic.iter().map(|e| e.association_id.clone()).collect())
            }
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// `ip-10-0-0-5.ec2.internal` (us-east-1) or `ip-…​.<region>.compute.internal`.
pub fn private_dns_name(region: &str, ip: &str) -> String {
    let dashed = ip.replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{dashed}.ec2.internal")
    } else {
        format!("ip-{dashed}.{region}.compute.internal")
    }
}

/// `ec2-127-100-0-7.compute-1.amazonaws.com` (us-east-1) or
/// `ec2-…​.<region>.compute.amazonaws.com`: EC2's public DNS name for an address (it does
/// not resolve: openami runs no DNS).
pub fn public_dns_name(region: &str, ip: &str) -> String {
    let dashed = ip.replace('.', "-");
    if region == "us-east-1" {
        format!("ec2-{dashed}.compute-1.amazonaws.com")
    } else {
        format!("ec2-{dashed}.{region}.compute.amazonaws.com")
    }
}

impl Cloud {
    /// The interfaces of the caller's non-terminated instances in its region.
    pub(crate) fn interfaces(&self, caller: &Caller) -> Ec2Result<Vec<InterfaceView>> {
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for (row, doc) in self.live_instances(&caller.region)? {
            if row.account_id != caller.account_id {
                continue;
            }
            let Some(network) = doc.network else {
                continue;
            };
            out.push(InterfaceView {
                id: network.interface_id.clone(),
                owner_id: row.account_id.clone(),
                instance_id: row.id.clone(),
                availability_zone: doc.availability_zone.clone(),
                private_dns_name: private_dns_name(&caller.region, &doc.private_ip),
                private_ip: doc.private_ip.clone(),
                attach_time_ms: doc.launch_time_ms,
                tags: all_tags
                    .get(&network.interface_id)
                    .cloned()
                    .unwrap_or_default(),
                network,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// DescribeNetworkInterfaces: the primary interfaces of the caller's instances.
    pub fn describe_network_interfaces(
        &self,
        caller: &Caller,
        interface_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<InterfaceView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !interface_ids.is_empty())?;
        for id in interface_ids {
            ids::check("eni", "InvalidNetworkInterfaceID.Malformed", id)?;
        }
        self.ensure_default_vpc(caller)?;
        let all = self.interfaces(caller)?;
        if let Some(missing) = interface_ids
            .iter()
            .find(|id| !all.iter().any(|i| &i.id == *id))
        {
            return Err(Ec2Error::not_found(
                "InvalidNetworkInterfaceID.NotFound",
                "networkInterface ID",
                missing,
            ));
        }
        let mut out = Vec::new();
        for view in all {
            if !interface_ids.is_empty() && !interface_ids.contains(&view.id) {
                continue;
            }
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        Ok(page.apply(out, |v| &v.id))
    }

    /// True if `id` is the interface of one of the caller's live instances (for tags).
    pub(crate) fn owns_interface(&self, caller: &Caller, id: &str) -> Ec2Result<bool> {
        Ok(self.interfaces(caller)?.iter().any(|i| i.id == id))
    }
}
