//! Subnets: DescribeSubnets, CreateSubnet, DeleteSubnet, and the addresses in use.

use crate::query::{Filter, Filterable, Page, TagSpecification, check_filters, matches, tags_for};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, regions};

use super::{Cidr, SUBNET_KIND, SubnetDoc, decode, encode, new_row};

/// Addresses EC2 reserves in every subnet (network, router, DNS, future, broadcast).
const RESERVED_ADDRESSES: u64 = 5;

/// A subnet as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetView {
    /// `subnet-…`.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// `available`.
    pub state: String,
    /// The zone's id (`use1-az1`).
    pub availability_zone_id: String,
    /// Free addresses: size − 5 − addresses of its instances.
    pub available_ip_address_count: i64,
    /// `arn:aws:ec2:…:subnet/…`.
    pub arn: String,
    /// Stored attributes.
    pub doc: SubnetDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for SubnetView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        let d = &self.doc;
        match name {
            "subnet-id" => one(&self.id),
            "vpc-id" => one(&d.vpc_id),
            "cidr" | "cidr-block" | "cidrBlock" => one(&d.cidr),
            "availability-zone" | "availabilityZone" => one(&d.availability_zone),
            "availability-zone-id" | "availabilityZoneId" => one(&self.availability_zone_id),
            "default-for-az" | "defaultForAz" => one(&d.default_for_az.to_string()),
            "map-public-ip-on-launch" => one(&d.map_public_ip_on_launch.to_string()),
            "available-ip-address-count" => one(&self.available_ip_address_count.to_string()),
            "owner-id" => one(&self.owner_id),
            "state" => one(&self.state),
            "subnet-arn" => one(&self.arn),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// CreateSubnet parameters.
#[derive(Clone, Debug, Default)]
pub struct CreateSubnet {
    /// VpcId.
    pub vpc_id: String,
    /// CidrBlock.
    pub cidr_block: String,
    /// AvailabilityZone.
    pub availability_zone: Option<String>,
    /// AvailabilityZoneId.
    pub availability_zone_id: Option<String>,
    /// TagSpecification.N.
    pub tag_specifications: Vec<TagSpecification>,
}

fn zone_id(region: &str, zone: &str) -> String {
    regions::zones(region)
        .into_iter()
        .find(|z| z.name == zone)
        .map(|z| z.id)
        .unwrap_or_default()
}

/// Checks a subnet CIDR against its VPC's and its siblings'.
pub(crate) fn check_subnet_cidr(text: &str, vpc: &str, siblings: &[String]) -> Ec2Result<Cidr> {
    let cidr = Cidr::parse(text, true).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Value ({text}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    let vpc = Cidr::parse(vpc, false)
        .ok_or_else(|| Ec2Error::internal("vpc cidr", format!("bad stored CIDR {vpc}")))?;
    if !(16..=28).contains(&cidr.prefix) || !vpc.contains(&cidr) {
        return Err(Ec2Error::client(
            "InvalidSubnet.Range",
            format!("The CIDR '{text}' is invalid."),
        ));
    }
    for other in siblings {
        if Cidr::parse(other, false).is_some_and(|o| o.overlaps(&cidr)) {
            return Err(Ec2Error::client(
                "InvalidSubnet.Conflict",
                format!("The CIDR '{text}' conflicts with another subnet"),
            ));
        }
    }
    Ok(cidr)
}

impl Cloud {
    /// Subnet views of `rows`, counting the addresses of live instances.
    fn view_subnets(
        &self,
        caller: &Caller,
        rows: Vec<super::TaggedRow>,
    ) -> Ec2Result<Vec<SubnetView>> {
        let instances = self.live_instances(&caller.region)?;
        rows.into_iter()
            .map(|(row, tags)| {
                let doc: SubnetDoc = decode(&row)?;
                let used = instances
                    .iter()
                    .filter(|(_, i)| i.network.as_ref().is_some_and(|n| n.subnet_id == row.id))
                    .count() as i64;
                let size = Cidr::parse(&doc.cidr, false).map_or(0, |c| c.size());
                Ok(SubnetView {
                    availability_zone_id: zone_id(&caller.region, &doc.availability_zone),
                    available_ip_address_count: size.saturating_sub(RESERVED_ADDRESSES) as i64
                        - used,
                    arn: super::arn(&caller.region, &row.account_id, "subnet", &row.id),
                    id: row.id,
                    owner_id: row.account_id,
                    state: row.state,
                    doc,
                    tags,
                })
            })
            .collect()
    }

    /// The caller's subnet `id`, or `InvalidSubnetID.NotFound`.
    pub(crate) fn owned_subnet(&self, caller: &Caller, id: &str) -> Ec2Result<SubnetDoc> {
        ids::check("subnet", "InvalidSubnetID.Malformed", id)?;
        let row = self
            .owned_row(caller, SUBNET_KIND, id)?
            .ok_or_else(|| Ec2Error::not_found("InvalidSubnetID.NotFound", "subnet ID", id))?;
        decode(&row)
    }

    /// The caller's subnets (all, unfiltered), with their documents.
    pub(crate) fn subnet_docs(&self, caller: &Caller) -> Ec2Result<Vec<(String, SubnetDoc)>> {
        self.owned_rows(caller, SUBNET_KIND)?
            .into_iter()
            .map(|(row, _)| Ok((row.id.clone(), decode(&row)?)))
            .collect()
    }

    /// DescribeSubnets: the caller's subnets in its region.
    pub fn describe_subnets(
        &self,
        caller: &Caller,
        subnet_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<SubnetView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !subnet_ids.is_empty())?;
        for id in subnet_ids {
            ids::check("subnet", "InvalidSubnetID.Malformed", id)?;
        }
        self.ensure_default_vpc(caller)?;
        let rows: Vec<_> = self
            .owned_rows(caller, SUBNET_KIND)?
            .into_iter()
            .filter(|(row, _)| subnet_ids.is_empty() || subnet_ids.contains(&row.id))
            .collect();
        for id in subnet_ids {
            if !rows.iter().any(|(r, _)| &r.id == id) {
                return Err(Ec2Error::not_found(
                    "InvalidSubnetID.NotFound",
                    "subnet ID",
                    id,
                ));
            }
        }
        let mut out = Vec::new();
        for view in self.view_subnets(caller, rows)? {
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        Ok(page.apply(out, |v| &v.id))
    }

    /// CreateSubnet: a subnet inside its VPC's CIDR that overlaps no other subnet.
    pub fn create_subnet(&self, caller: &Caller, req: CreateSubnet) -> Ec2Result<SubnetView> {
        let tags = tags_for(&req.tag_specifications, "subnet")?;
        let zone = match (&req.availability_zone, &req.availability_zone_id) {
            (Some(zone), _) => regions::check_zone(&caller.region, zone)?,
            (None, Some(id)) => regions::zone_by_id(&caller.region, id)?,
            (None, None) => format!("{}a", caller.region),
        };
        let _guard = self.vpc_guard(caller)?;
        let (_, vpc) = self.owned_vpc(caller, &req.vpc_id)?;
        let siblings: Vec<String> = self
            .subnet_docs(caller)?
            .into_iter()
            .filter(|(_, s)| s.vpc_id == req.vpc_id)
            .map(|(_, s)| s.cidr)
            .collect();
        let cidr = check_subnet_cidr(&req.cidr_block, &vpc.cidr, &siblings)?;
        let doc = SubnetDoc {
            vpc_id: req.vpc_id.clone(),
            cidr: cidr.to_string(),
            availability_zone: zone,
            default_for_az: false,
            map_public_ip_on_launch: false,
        };
        let id = ids::new_id("subnet");
        let row = new_row(caller, &id, SUBNET_KIND, "available", encode(&doc)?);
        self.catalog.insert_resource_with_tags(&row, &tags)?;
        let mut views = self.view_subnets(caller, vec![(row, tags)])?;
        views
            .pop()
            .ok_or_else(|| Ec2Error::internal("create subnet", "no view"))
    }

    /// DeleteSubnet: refused while instances use it.
    pub fn delete_subnet(&self, caller: &Caller, subnet_id: &str) -> Ec2Result<()> {
        let _guard = self.vpc_guard(caller)?;
        self.owned_subnet(caller, subnet_id)?;
        for (_, inst) in self.live_instances(&caller.region)? {
            if inst
                .network
                .as_ref()
                .is_some_and(|n| n.subnet_id == subnet_id)
            {
                return Err(Ec2Error::client(
                    "DependencyViolation",
                    format!("The subnet '{subnet_id}' has dependencies and cannot be deleted."),
                ));
            }
        }
        self.catalog.delete_resource(subnet_id)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_cidr_checks() {
        let vpc = "10.0.0.0/16";
        let siblings = vec!["10.0.1.0/24".to_string()];
        assert!(check_subnet_cidr("10.0.2.0/24", vpc, &siblings).is_ok());
        assert_eq!(
            check_subnet_cidr("10.0.1.128/25", vpc, &siblings)
                .unwrap_err()
                .code,
            "InvalidSubnet.Conflict"
        );
        assert_eq!(
            check_subnet_cidr("10.0.0.0/23", vpc, &siblings)
                .unwrap_err()
                .code,
            "InvalidSubnet.Conflict"
        );
        assert_eq!(
            check_subnet_cidr("10.1.0.0/24", vpc, &siblings)
                .unwrap_err()
                .code,
            "InvalidSubnet.Range"
        );
        assert_eq!(
            check_subnet_cidr("10.0.0.0/29", vpc, &[]).unwrap_err().code,
            "InvalidSubnet.Range"
        );
        assert_eq!(
            check_subnet_cidr("10.0.0.1/24", vpc, &[]).unwrap_err().code,
            "InvalidParameterValue"
        );
    }
}
