//! Elastic IP actions: AllocateAddress, DescribeAddresses, DescribeAddressesAttribute,
//! AssociateAddress, DisassociateAddress and ReleaseAddress, parsed and rendered as botocore's model shapes
//! them (engine::instances::elastic_ips does the work).

use std::sync::Arc;

use engine::instances::elastic_ips::{AddressView, AssociateAddress};
use engine::query::{Filter, Page, TagSpecification};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One Elastic IP request, typed.
#[derive(Debug, Clone)]
pub enum AddressAction {
    /// AllocateAddress.
    Allocate {
        /// Domain
        domain: Option<String>,
        /// Address (BYOIP: refused)
        address: Option<String>,
        /// PublicIpv4Pool
        pool: Option<String>,
        /// NetworkBorderGroup (must be the region)
        border_group: Option<String>,
        /// TagSpecification.N
        tags: Vec<TagSpecification>,
    },
    /// DescribeAddresses.
    Describe {
        /// PublicIp.N
        public_ips: Vec<String>,
        /// AllocationId.N
        allocation_ids: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
    },
    /// DescribeAddressesAttribute (`domain-name`: no reverse DNS records exist here).
    DescribeAttribute {
        /// AllocationId.N
        allocation_ids: Vec<String>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// AssociateAddress.
    Associate(AssociateAddress),
    /// DisassociateAddress.
    Disassociate {
        /// AssociationId
        association_id: Option<String>,
        /// PublicIp
        public_ip: Option<String>,
    },
    /// ReleaseAddress.
    Release {
        /// AllocationId
        allocation_id: Option<String>,
        /// PublicIp
        public_ip: Option<String>,
        /// NetworkBorderGroup (must be the region)
        border_group: Option<String>,
    },
}

impl AddressAction {
    /// Parses an Elastic IP action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<AddressAction>> {
        for unsupported in ["CustomerOwnedIpv4Pool", "IpamPoolId"] {
            if name == "AllocateAddress" && p.get(unsupported).is_some() {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    format!(
                        "{unsupported} is not supported: addresses come from this host's public pool."
                    ),
                ));
            }
        }
        Ok(Some(match name {
            "AllocateAddress" => AddressAction::Allocate {
                domain: p.string("Domain"),
                address: p.string("Address"),
                pool: p.string("PublicIpv4Pool"),
                border_group: p.string("NetworkBorderGroup"),
                tags: p.tag_specifications()?,
            },
            "DescribeAddresses" => AddressAction::Describe {
                public_ips: p.list("PublicIp")?,
                allocation_ids: p.list("AllocationId")?,
                filters: p.filters()?,
            },
            "DescribeAddressesAttribute" => {
                match p.string("Attribute").as_deref() {
                    Some("domain-name") | None => {}
                    Some(other) => {
                        return Err(Ec2Error::invalid_value(format!(
                            "Value ({other}) for parameter attribute is invalid. Valid values: domain-name"
                        )));
                    }
                }
                AddressAction::DescribeAttribute {
                    allocation_ids: p.list("AllocationId")?,
                    page: p.page()?,
                }
            }
            "AssociateAddress" => AddressAction::Associate(AssociateAddress {
                allocation_id: p.string("AllocationId"),
                public_ip: p.string("PublicIp"),
                instance_id: p.string("InstanceId"),
                network_interface_id: p.string("NetworkInterfaceId"),
                private_ip: p.string("PrivateIpAddress"),
                allow_reassociation: p.bool("AllowReassociation")?.unwrap_or(false),
            }),
            "DisassociateAddress" => AddressAction::Disassociate {
                association_id: p.string("AssociationId"),
                public_ip: p.string("PublicIp"),
            },
            "ReleaseAddress" => AddressAction::Release {
                allocation_id: p.string("AllocationId"),
                public_ip: p.string("PublicIp"),
                border_group: p.string("NetworkBorderGroup"),
            },
            _ => return Ok(None),
        }))
    }
}

fn check_border_group(caller: &Caller, group: Option<&str>) -> Ec2Result<()> {
    match group {
        Some(g) if g != caller.region => Err(Ec2Error::invalid_value(format!(
            "The network border group '{g}' is not valid in region {}",
            caller.region
        ))),
        _ => Ok(()),
    }
}

fn address_xml(x: &mut Xml, a: &AddressView) {
    x.text("publicIp", &a.public_ip)
        .text("allocationId", &a.allocation_id)
        .text("domain", "vpc");
    if let Some(assoc) = &a.association {
        x.text("associationId", &assoc.association_id)
            .text("instanceId", &assoc.instance_id)
            .text("networkInterfaceId", &assoc.network_interface_id)
            .text("networkInterfaceOwnerId", &a.owner_id)
            .text("privateIpAddress", &assoc.private_ip);
    }
    x.tags(&a.tags)
        .text("publicIpv4Pool", "amazon")
        .text("networkBorderGroup", &a.region);
}

/// Executes an Elastic IP action, writing the response body into `x`.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: AddressAction,
) -> Ec2Result<()> {
    match action {
        AddressAction::Allocate {
            domain,
            address,
            pool,
            border_group,
            tags,
        } => {
            check_border_group(caller, border_group.as_deref())?;
            let a = cloud.allocate_address(
                caller,
                domain.as_deref(),
                address.as_deref(),
                pool.as_deref(),
                &tags,
            )?;
            x.text("publicIp", &a.public_ip)
                .text("allocationId", &a.allocation_id)
                .text("domain", "vpc")
                .text("publicIpv4Pool", "amazon")
                .text("networkBorderGroup", &a.region);
        }
        AddressAction::Describe {
            public_ips,
            allocation_ids,
            filters,
        } => {
            let items = cloud.describe_addresses(caller, &public_ips, &allocation_ids, &filters)?;
            x.list("addressesSet", &items, address_xml);
        }
        AddressAction::DescribeAttribute {
            allocation_ids,
            mut page,
        } => {
            page.check(1, 1000, false)?;
            let items = cloud.describe_addresses(caller, &[], &allocation_ids, &[])?;
            let (items, next) = page.apply(items, |a| &a.allocation_id);
            // No PTR record is ever set here, so none is reported.
            x.list("addressSet", &items, |x, a| {
                x.text("publicIp", &a.public_ip)
                    .text("allocationId", &a.allocation_id);
            })
            .opt("nextToken", next);
        }
        AddressAction::Associate(req) => {
            let id = cloud.associate_address(caller, req)?;
            x.text("return", "true").text("associationId", &id);
        }
        AddressAction::Disassociate {
            association_id,
            public_ip,
        } => {
            cloud.disassociate_address(caller, association_id.as_deref(), public_ip.as_deref())?;
            x.text("return", "true");
        }
        AddressAction::Release {
            allocation_id,
            public_ip,
            border_group,
        } => {
            check_border_group(caller, border_group.as_deref())?;
            cloud.release_address(caller, allocation_id.as_deref(), public_ip.as_deref())?;
            x.text("return", "true");
        }
    }
    Ok(())
}
