//! VPC layer actions: VPCs, subnets, route tables, network interfaces and (through
//! [`GroupAction`]) security groups, parsed from query parameters and rendered as
//! botocore's model shapes them (`vpcSet`, `subnetSet`, `routeTableSet`,
//! `networkInterfaceSet`, …).

use engine::network::ElasticAssociation;
use engine::query::{Filter, Page, TagSpecification, iso8601, parse_attribute};
use engine::vpc::{
    CreateSubnet, DHCP_OPTIONS_ID, InterfaceView, RouteTableView, SubnetView, VPC_ATTRIBUTES,
    VpcAttribute, VpcView,
};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::params::Params;
use crate::security_groups::{self, GroupAction};
use crate::xml::Xml;

/// One VPC layer request, typed.
#[derive(Debug, Clone)]
pub enum VpcAction {
    /// DescribeVpcs.
    DescribeVpcs {
        /// VpcId.N.
        ids: Vec<String>,
        /// Filter.N.
        filters: Vec<Filter>,
        /// MaxResults / NextToken.
        page: Page,
    },
    /// CreateVpc.
    CreateVpc {
        /// CidrBlock.
        cidr: String,
        /// InstanceTenancy.
        tenancy: Option<String>,
        /// TagSpecification.N.
        tags: Vec<TagSpecification>,
    },
    /// CreateDefaultVpc.
    CreateDefaultVpc,
    /// DeleteVpc.
    DeleteVpc(String),
    /// DescribeVpcAttribute.
    DescribeVpcAttribute {
        /// VpcId.
        id: String,
        /// Attribute.
        attribute: VpcAttribute,
    },
    /// ModifyVpcAttribute.
    ModifyVpcAttribute {
        /// VpcId.
        id: String,
        /// The one attribute given.
        attribute: VpcAttribute,
        /// Its new value.
        value: bool,
    },
    /// DescribeSubnets.
    DescribeSubnets {
        /// SubnetId.N.
        ids: Vec<String>,
        /// Filter.N.
        filters: Vec<Filter>,
        /// MaxResults / NextToken.
        page: Page,
    },
    /// CreateSubnet.
    CreateSubnet(CreateSubnet),
    /// DeleteSubnet.
    DeleteSubnet(String),
    /// DescribeRouteTables.
    DescribeRouteTables {
        /// RouteTableId.N.
        ids: Vec<String>,
        /// Filter.N.
        filters: Vec<Filter>,
        /// MaxResults / NextToken.
        page: Page,
    },
    /// DescribeNetworkInterfaces.
    DescribeNetworkInterfaces {
        /// NetworkInterfaceId.N.
        ids: Vec<String>,
        /// Filter.N.
        filters: Vec<Filter>,
        /// MaxResults / NextToken.
        page: Page,
    },
    /// Security group actions.
    Group(GroupAction),
}

fn unsupported(what: &str) -> Ec2Error {
    Ec2Error::client(
        "UnsupportedOperation",
        format!("The parameter {what} is not supported by openami."),
    )
}

fn modify_vpc_attribute(p: &Params) -> Ec2Result<VpcAction> {
    let mut given = Vec::new();
    for (name, attribute) in [
        ("EnableDnsSupport", VpcAttribute::EnableDnsSupport),
        ("EnableDnsHostnames", VpcAttribute::EnableDnsHostnames),
        (
            "EnableNetworkAddressUsageMetrics",
            VpcAttribute::EnableNetworkAddressUsageMetrics,
        ),
    ] {
        if let Some(v) = p.bool(&format!("{name}.Value"))? {
            given.push((attribute, v));
        }
    }
    match given.as_slice() {
        [(attribute, value)] => Ok(VpcAction::ModifyVpcAttribute {
            id: p.required("VpcId")?,
            attribute: *attribute,
            value: *value,
        }),
        [] => Err(Ec2Error::missing("EnableDnsSupport")),
        _ => Err(Ec2Error::client(
            "InvalidParameterCombination",
            "Only one attribute can be modified at a time.",
        )),
    }
}

impl VpcAction {
    /// Parses a VPC layer action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<VpcAction>> {
        if let Some(group) = GroupAction::parse(name, p)? {
            return Ok(Some(VpcAction::Group(group)));
        }
        Ok(Some(match name {
            "DescribeVpcs" => VpcAction::DescribeVpcs {
                ids: p.list("VpcId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "CreateVpc" => {
                for param in [
                    "Ipv4IpamPoolId",
                    "Ipv4NetmaskLength",
                    "Ipv6IpamPoolId",
                    "Ipv6CidrBlock",
                    "Ipv6Pool",
                ] {
                    if p.get(param).is_some() {
                        return Err(unsupported(param));
                    }
                }
                if p.bool("AmazonProvidedIpv6CidrBlock")? == Some(true) {
                    return Err(unsupported("AmazonProvidedIpv6CidrBlock"));
                }
                VpcAction::CreateVpc {
                    cidr: p.required("CidrBlock")?,
                    tenancy: p.string("InstanceTenancy"),
                    tags: p.tag_specifications()?,
                }
            }
            "CreateDefaultVpc" => VpcAction::CreateDefaultVpc,
            "DeleteVpc" => VpcAction::DeleteVpc(p.required("VpcId")?),
            "DescribeVpcAttribute" => VpcAction::DescribeVpcAttribute {
                id: p.required("VpcId")?,
                attribute: parse_attribute(VPC_ATTRIBUTES, &p.required("Attribute")?)?,
            },
            "ModifyVpcAttribute" => modify_vpc_attribute(p)?,
            "DescribeSubnets" => VpcAction::DescribeSubnets {
                ids: p.list("SubnetId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "CreateSubnet" => {
                for param in [
                    "Ipv6CidrBlock",
                    "OutpostArn",
                    "Ipv4IpamPoolId",
                    "Ipv4NetmaskLength",
                    "Ipv6IpamPoolId",
                    "Ipv6NetmaskLength",
                ] {
                    if p.get(param).is_some() {
                        return Err(unsupported(param));
                    }
                }
                if p.bool("Ipv6Native")? == Some(true) {
                    return Err(unsupported("Ipv6Native"));
                }
                VpcAction::CreateSubnet(CreateSubnet {
                    vpc_id: p.required("VpcId")?,
                    cidr_block: p.required("CidrBlock")?,
                    availability_zone: p.string("AvailabilityZone"),
                    availability_zone_id: p.string("AvailabilityZoneId"),
                    tag_specifications: p.tag_specifications()?,
                })
            }
            "DeleteSubnet" => VpcAction::DeleteSubnet(p.required("SubnetId")?),
            "DescribeRouteTables" => VpcAction::DescribeRouteTables {
                ids: p.list("RouteTableId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "DescribeNetworkInterfaces" => VpcAction::DescribeNetworkInterfaces {
                ids: p.list("NetworkInterfaceId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            _ => return Ok(None),
        }))
    }
}

fn tags(x: &mut Xml, tags: &[(String, String)]) {
    if !tags.is_empty() {
        x.tags(tags);
    }
}

fn vpc_xml(x: &mut Xml, v: &VpcView) {
    let d = &v.doc;
    x.text("vpcId", &v.id)
        .text("ownerId", &v.owner_id)
        .text("state", &v.state)
        .text("cidrBlock", &d.cidr)
        .elem("cidrBlockAssociationSet", |x| {
            x.elem("item", |x| {
                x.text("associationId", &d.cidr_association_id)
                    .text("cidrBlock", &d.cidr)
                    .elem("cidrBlockState", |x| {
                        x.text("state", "associated");
                    });
            });
        })
        .text("dhcpOptionsId", DHCP_OPTIONS_ID)
        .text("instanceTenancy", &d.instance_tenancy)
        .text("isDefault", &d.is_default.to_string());
    tags(x, &v.tags);
}

fn subnet_xml(x: &mut Xml, s: &SubnetView) {
    let d = &s.doc;
    x.text("subnetId", &s.id)
        .text("subnetArn", &s.arn)
        .text("state", &s.state)
        .text("ownerId", &s.owner_id)
        .text("vpcId", &d.vpc_id)
        .text("cidrBlock", &d.cidr)
        .elem("ipv6CidrBlockAssociationSet", |_| {})
        .text(
            "availableIpAddressCount",
            &s.available_ip_address_count.to_string(),
        )
        .text("availabilityZone", &d.availability_zone)
        .text("availabilityZoneId", &s.availability_zone_id)
        .text("defaultForAz", &d.default_for_az.to_string())
        .text(
            "mapPublicIpOnLaunch",
            &d.map_public_ip_on_launch.to_string(),
        )
        .text("mapCustomerOwnedIpOnLaunch", "false")
        .text("assignIpv6AddressOnCreation", "false")
        .text("enableDns64", "false")
        .text("ipv6Native", "false")
        .elem("privateDnsNameOptionsOnLaunch", |x| {
            x.text("hostnameType", "ip-name")
                .text("enableResourceNameDnsARecord", "false")
                .text("enableResourceNameDnsAAAARecord", "false");
        });
    tags(x, &s.tags);
}

fn route_table_xml(x: &mut Xml, t: &RouteTableView) {
    let d = &t.doc;
    x.text("routeTableId", &t.id)
        .text("vpcId", &d.vpc_id)
        .text("ownerId", &t.owner_id)
        .list("routeSet", &d.routes, |x, (cidr, gateway)| {
            x.text("destinationCidrBlock", cidr)
                .text("gatewayId", gateway)
                .text("state", "active")
                .text("origin", "CreateRouteTable");
        })
        .elem("associationSet", |x| {
            if d.main {
                x.elem("item", |x| {
                    x.text("routeTableAssociationId", &d.main_association_id)
                        .text("routeTableId", &t.id)
                        .text("main", "true")
                        .elem("associationState", |x| {
                            x.text("state", "associated");
                        });
                });
            }
        })
        .elem("propagatingVgwSet", |_| {});
    tags(x, &t.tags);
}

fn interface_xml(x: &mut Xml, i: &InterfaceView) {
    let n = &i.network;
    let association = |x: &mut Xml| {
        if let Some(ip) = &n.public_ip {
            x.elem("association", |x| {
                x.text("publicIp", ip)
                    .text(
                        "publicDnsName",
                        &engine::vpc::public_dns_name(
                            i.availability_zone.trim_end_matches(char::is_alphabetic),
                            ip,
                        ),
                    )
                    .text(
                        "ipOwnerId",
                        &ElasticAssociation::ip_owner(n.elastic.as_ref(), &i.owner_id),
                    );
                if let Some(e) = &n.elastic {
                    x.text("allocationId", &e.allocation_id)
                        .text("associationId", &e.association_id);
                }
            });
        }
    };
    x.text("networkInterfaceId", &i.id)
        .text("subnetId", &n.subnet_id)
        .text("vpcId", &n.vpc_id)
        .text("availabilityZone", &i.availability_zone)
        .text("description", "")
        .text("ownerId", &i.owner_id)
        .text("requesterManaged", "false")
        .text("status", "in-use")
        .text("macAddress", &n.mac)
        .text("privateIpAddress", &i.private_ip)
        .text("privateDnsName", &i.private_dns_name)
        .text("sourceDestCheck", &n.source_dest_check.to_string())
        .list("groupSet", &n.groups, |x, g| {
            x.text("groupName", &g.name).text("groupId", &g.id);
        })
        .elem("attachment", |x| {
            x.text("attachmentId", &n.attachment_id)
                .text("deviceIndex", "0")
                .text("networkCardIndex", "0")
                .text("instanceId", &i.instance_id)
                .text("instanceOwnerId", &i.owner_id)
                .text("status", "attached")
                .text("attachTime", &iso8601(i.attach_time_ms))
                .text("deleteOnTermination", "true");
        });
    association(x);
    x.elem("privateIpAddressesSet", |x| {
        x.elem("item", |x| {
            x.text("privateIpAddress", &i.private_ip)
                .text("privateDnsName", &i.private_dns_name)
                .text("primary", "true");
            association(x);
        });
    })
    .elem("ipv6AddressesSet", |_| {})
    .text("interfaceType", "interface");
    tags(x, &i.tags);
}

/// Runs a VPC layer action.
pub fn execute(x: &mut Xml, cloud: &Cloud, caller: &Caller, action: VpcAction) -> Ec2Result<()> {
    match action {
        VpcAction::DescribeVpcs { ids, filters, page } => {
            let (items, token) = cloud.describe_vpcs(caller, &ids, &filters, &page)?;
            x.list("vpcSet", &items, vpc_xml);
            x.opt("nextToken", token);
        }
        VpcAction::CreateVpc {
            cidr,
            tenancy,
            tags,
        } => {
            let v = cloud.create_vpc(caller, &cidr, tenancy.as_deref(), &tags)?;
            x.elem("vpc", |x| vpc_xml(x, &v));
        }
        VpcAction::CreateDefaultVpc => {
            let v = cloud.create_default_vpc(caller)?;
            x.elem("vpc", |x| vpc_xml(x, &v));
        }
        VpcAction::DeleteVpc(id) => {
            cloud.delete_vpc(caller, &id)?;
            x.text("return", "true");
        }
        VpcAction::DescribeVpcAttribute { id, attribute } => {
            let value = cloud.describe_vpc_attribute(caller, &id, attribute)?;
            let name = engine::query::attribute_name(VPC_ATTRIBUTES, attribute);
            x.text("vpcId", &id).elem(name, |x| {
                x.text("value", &value.to_string());
            });
        }
        VpcAction::ModifyVpcAttribute {
            id,
            attribute,
            value,
        } => {
            cloud.modify_vpc_attribute(caller, &id, attribute, value)?;
            x.text("return", "true");
        }
        VpcAction::DescribeSubnets { ids, filters, page } => {
            let (items, token) = cloud.describe_subnets(caller, &ids, &filters, &page)?;
            x.list("subnetSet", &items, subnet_xml);
            x.opt("nextToken", token);
        }
        VpcAction::CreateSubnet(req) => {
            let s = cloud.create_subnet(caller, req)?;
            x.elem("subnet", |x| subnet_xml(x, &s));
        }
        VpcAction::DeleteSubnet(id) => {
            cloud.delete_subnet(caller, &id)?;
            x.text("return", "true");
        }
        VpcAction::DescribeRouteTables { ids, filters, page } => {
            let (items, token) = cloud.describe_route_tables(caller, &ids, &filters, &page)?;
            x.list("routeTableSet", &items, route_table_xml);
            x.opt("nextToken", token);
        }
        VpcAction::DescribeNetworkInterfaces { ids, filters, page } => {
            let (items, token) =
                cloud.describe_network_interfaces(caller, &ids, &filters, &page)?;
            x.list("networkInterfaceSet", &items, interface_xml);
            x.opt("nextToken", token);
        }
        VpcAction::Group(action) => security_groups::execute(x, cloud, caller, action)?,
    }
    Ok(())
}
