//! Elastic IP addresses: AllocateAddress, DescribeAddresses, AssociateAddress,
//! DisassociateAddress, ReleaseAddress.
//!
//! An Elastic IP is a public address of the host's pool (`--public-ip-pool`, inside
//! 127.0.0.0/8) that an account keeps until it releases it. Associated with an instance,
//! it is the instance's public address: security groups open ports on it, the metadata
//! service reports it, and it stays while the instance is stopped (an address from the
//! pool is given back at a stop). Associating replaces the instance's pool address (and
//! any Elastic IP it had); disassociating gives a running instance a new pool address if
//! its interface wants one.
//!
//! Records: the address is a catalog row of kind [`KIND`] (id `eipalloc-…`, document
//! [`AddressDoc`]); its association lives only in the instance's document
//! ([`ElasticAssociation`] in its network), so there is one record of it and nothing to
//! reconcile after a crash. Moving an address between instances clears the old instance
//! before it sets the new one: a crash in between leaves it unassociated, never on two.

use std::sync::Arc;

use catalog::{ResourceRow, now_ms};
use serde::{Deserialize, Serialize};

use super::network::address_lock;
use super::{InstanceDoc, doc_of, encode};
use crate::network::ElasticAssociation;
use crate::query::{Filter, Filterable, TagSpecification, check_filters, matches, tags_for};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock};

/// Catalog kind of Elastic IP addresses.
pub const KIND: &str = "elastic-ip";

/// Elastic IPs an account may hold per region (EC2's default quota).
pub const MAX_PER_REGION: usize = 5;

/// What the catalog keeps about an Elastic IP.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddressDoc {
    /// The address, from the host's public pool.
    pub public_ip: String,
    /// Always `vpc`.
    pub domain: String,
}

/// An Elastic IP as DescribeAddresses returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressView {
    /// `eipalloc-…`.
    pub allocation_id: String,
    /// The address.
    pub public_ip: String,
    /// Owner account.
    pub owner_id: String,
    /// Its region (the network border group).
    pub region: String,
    /// Where it is associated, if anywhere.
    pub association: Option<AddressAssociation>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// An Elastic IP's association as DescribeAddresses returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressAssociation {
    /// `eipassoc-…`.
    pub association_id: String,
    /// The instance.
    pub instance_id: String,
    /// Its primary interface.
    pub network_interface_id: String,
    /// The interface's private address.
    pub private_ip: String,
}

impl Filterable for AddressView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        let assoc = |f: &dyn Fn(&AddressAssociation) -> String| {
            Some(self.association.iter().map(f).collect())
        };
        match name {
            "allocation-id" => one(&self.allocation_id),
            "public-ip" => one(&self.public_ip),
            "domain" => one("vpc"),
            "network-border-group" => one(&self.region),
            "association-id" => assoc(&|a| a.association_id.clone()),
            "instance-id" => assoc(&|a| a.instance_id.clone()),
            "network-interface-id" => assoc(&|a| a.network_interface_id.clone()),
            "network-interface-owner-id" => assoc(&|_| self.owner_id.clone()),
            "private-ip-address" => assoc(&|a| a.private_ip.clone()),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// AssociateAddress parameters.
#[derive(Clone, Debug, Default)]
pub struct AssociateAddress {
    /// AllocationId.
    pub allocation_id: Option<String>,
    /// PublicIp (instead of AllocationId).
    pub public_ip: Option<String>,
    /// InstanceId.
    pub instance_id: Option<String>,
    /// NetworkInterfaceId (instead of InstanceId).
    pub network_interface_id: Option<String>,
    /// PrivateIpAddress: must be the interface's own.
    pub private_ip: Option<String>,
    /// AllowReassociation: may move an address that is associated elsewhere.
    pub allow_reassociation: bool,
}

impl Cloud {
    /// Every allocated Elastic IP of this host (any account or region): the public
    /// pool must not hand them out.
    pub(crate) fn elastic_ips(&self) -> Ec2Result<Vec<String>> {
        let mut out = Vec::new();
        for row in self.catalog.resources_of_kind(KIND)? {
            out.push(address_doc(&row)?.public_ip);
        }
        Ok(out)
    }

    /// The caller's live instances that hold an Elastic IP association, with it.
    fn associations(&self, caller: &Caller) -> Ec2Result<Vec<(ResourceRow, InstanceDoc)>> {
        Ok(self
            .live_instances(&caller.region)?
            .into_iter()
            .filter(|(row, doc)| {
                row.account_id == caller.account_id
                    && doc.network.as_ref().is_some_and(|n| n.elastic.is_some())
            })
            .collect())
    }

    fn view_address(
        &self,
        row: &ResourceRow,
        associated: &[(ResourceRow, InstanceDoc)],
        tags: Vec<(String, String)>,
    ) -> Ec2Result<AddressView> {
        let doc = address_doc(row)?;
        let association = associated.iter().find_map(|(inst, d)| {
            let n = d.network.as_ref()?;
            let e = n.elastic.as_ref()?;
            (e.allocation_id == row.id).then(|| AddressAssociation {
                association_id: e.association_id.clone(),
                instance_id: inst.id.clone(),
                network_interface_id: n.interface_id.clone(),
                private_ip: d.private_ip.clone(),
            })
        });
        Ok(AddressView {
            allocation_id: row.id.clone(),
            public_ip: doc.public_ip,
            owner_id: row.account_id.clone(),
            region: row.region.clone(),
            association,
            tags,
        })
    }

    /// The caller's address named by allocation id or by public address.
    fn owned_address(
        &self,
        caller: &Caller,
        allocation_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Ec2Result<ResourceRow> {
        match (allocation_id, public_ip) {
            (Some(id), _) => {
                ids::check("eipalloc", "InvalidAllocationID.Malformed", id)?;
                self.owned_row(caller, KIND, id)?.ok_or_else(|| {
                    Ec2Error::client(
                        "InvalidAllocationID.NotFound",
                        format!("The allocation ID '{id}' does not exist"),
                    )
                })
            }
            (None, Some(ip)) => {
                for row in self.owned_resources(caller, KIND)? {
                    if address_doc(&row)?.public_ip == ip {
                        return Ok(row);
                    }
                }
                Err(Ec2Error::client(
                    "InvalidAddress.NotFound",
                    format!("Address '{ip}' not found."),
                ))
            }
            (None, None) => Err(Ec2Error::missing("AllocationId")),
        }
    }

    /// AllocateAddress: a new Elastic IP from the host's pool. `Domain` may only be
    /// `vpc`; a specific `Address` or `PublicIpv4Pool` (BYOIP) is refused.
    pub fn allocate_address(
        &self,
        caller: &Caller,
        domain: Option<&str>,
        address: Option<&str>,
        pool: Option<&str>,
        tag_specifications: &[TagSpecification],
    ) -> Ec2Result<AddressView> {
        self.region(&caller.region)?;
        let tags = tags_for(tag_specifications, "elastic-ip")?;
        match domain {
            None | Some("vpc") => {}
            Some("standard") => {
                return Err(Ec2Error::client(
                    "UnsupportedOperation",
                    "EC2-Classic addresses (Domain=standard) do not exist: use Domain=vpc.",
                ));
            }
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter domain is invalid. Valid values: vpc, standard"
                )));
            }
        }
        if address.is_some() || pool.is_some_and(|p| p != "amazon") {
            return Err(Ec2Error::client(
                "InvalidParameterValue",
                "Addresses come only from this host's public pool: Address and PublicIpv4Pool (BYOIP) are not supported.",
            ));
        }
        let _addresses = address_lock();
        if self.owned_resources(caller, KIND)?.len() >= MAX_PER_REGION {
            return Err(Ec2Error::client(
                "AddressLimitExceeded",
                "The maximum number of addresses has been reached.",
            ));
        }
        let public_ip = self.allocate_public_ip(&[])?;
        let doc = AddressDoc {
            public_ip,
            domain: "vpc".into(),
        };
        let row = ResourceRow {
            id: ids::new_id("eipalloc"),
            kind: KIND.into(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            state: "allocated".into(),
            doc: encode_address(&doc)?,
            created_at_ms: now_ms(),
        };
        self.catalog.insert_resource_with_tags(&row, &tags)?;
        self.view_address(&row, &[], tags)
    }

    /// DescribeAddresses: the caller's Elastic IPs in its region (named ones must exist).
    pub fn describe_addresses(
        &self,
        caller: &Caller,
        public_ips: &[String],
        allocation_ids: &[String],
        filters: &[Filter],
    ) -> Ec2Result<Vec<AddressView>> {
        check_filters(filters)?;
        for id in allocation_ids {
            self.owned_address(caller, Some(id), None)?;
        }
        for ip in public_ips {
            self.owned_address(caller, None, Some(ip))?;
        }
        let associated = self.associations(caller)?;
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for row in self.owned_resources(caller, KIND)? {
            let view = self.view_address(
                &row,
                &associated,
                all_tags.get(&row.id).cloned().unwrap_or_default(),
            )?;
            let named = (allocation_ids.is_empty() && public_ips.is_empty())
                || allocation_ids.contains(&view.allocation_id)
                || public_ips.contains(&view.public_ip);
            if named && matches(&view, filters)? {
                out.push(view);
            }
        }
        out.sort_by(|a, b| a.allocation_id.cmp(&b.allocation_id));
        Ok(out)
    }

    /// AssociateAddress: makes the Elastic IP the instance's public address; returns the
    /// association id.
    pub fn associate_address(&self, caller: &Caller, req: AssociateAddress) -> Ec2Result<String> {
        let _t = super::lifecycle::lock_transitions();
        let _addresses = address_lock();
        let address = self.owned_address(
            caller,
            req.allocation_id.as_deref(),
            req.public_ip.as_deref(),
        )?;
        let public_ip = address_doc(&address)?.public_ip;
        let target = match (&req.instance_id, &req.network_interface_id) {
            (Some(id), _) => self.owned_instance(caller, id)?,
            (None, Some(eni)) => self.instance_of_interface(caller, eni)?,
            (None, None) => return Err(Ec2Error::missing("InstanceId")),
        };
        if !matches!(
            target.state.as_str(),
            "pending" | "running" | "stopping" | "stopped"
        ) {
            return Err(Ec2Error::client(
                "IncorrectInstanceState",
                format!(
                    "The instance '{}' is not in a valid state for this operation.",
                    target.id
                ),
            ));
        }
        let mut doc = doc_of(&target)?;
        let Some(net) = doc.network.as_mut() else {
            return Err(Ec2Error::client(
                "InvalidInstanceID",
                format!("The instance '{}' has no network interface", target.id),
            ));
        };
        if let Some(ip) = &req.private_ip
            && ip != &doc.private_ip
        {
            return Err(Ec2Error::invalid_value(format!(
                "The private IP address {ip} is not assigned to the network interface {}",
                net.interface_id
            )));
        }
        if let Some(e) = &net.elastic
            && e.allocation_id == address.id
        {
            // Already here: EC2 answers with the association it has.
            return Ok(e.association_id.clone());
        }
        // The instance that loses the address lets go of its ports first, so the new
        // holder can listen there.
        let mut refresh = Vec::new();
        let holder = self.associations(caller)?.into_iter().find(|(_, d)| {
            d.network
                .as_ref()
                .and_then(|n| n.elastic.as_ref())
                .is_some_and(|e| e.allocation_id == address.id)
        });
        if let Some((row, old)) = holder {
            if !req.allow_reassociation {
                let association = old
                    .network
                    .and_then(|n| n.elastic)
                    .map(|e| e.association_id)
                    .unwrap_or_default();
                return Err(Ec2Error::client(
                    "Resource.AlreadyAssociated",
                    format!(
                        "resource {} is already associated with associate-id {association}",
                        address.id
                    ),
                ));
            }
            self.drop_elastic(&row, old)?;
            refresh.push(row.id);
        }
        let association_id = ids::new_id("eipassoc");
        net.elastic = Some(ElasticAssociation {
            allocation_id: address.id.clone(),
            association_id: association_id.clone(),
        });
        net.public_ip = Some(public_ip);
        self.catalog
            .update_resource(&target.id, &target.state, &encode(&doc)?)?;
        refresh.push(target.id.clone());
        self.refresh_forwards_of(&refresh);
        Ok(association_id)
    }

    /// Clears an instance's Elastic IP; a running instance whose interface wants a public
    /// address gets a new one from the pool. (The caller holds the transition and
    /// address locks.)
    fn drop_elastic(&self, row: &ResourceRow, mut doc: InstanceDoc) -> Ec2Result<()> {
        let running = matches!(row.state.as_str(), "pending" | "running");
        if let Some(n) = doc.network.as_mut() {
            n.elastic = None;
            n.public_ip = None;
        }
        if running {
            self.assign_public_ip(&mut doc, &[])?;
        }
        self.catalog
            .update_resource(&row.id, &row.state, &encode(&doc)?)?;
        Ok(())
    }

    /// DisassociateAddress, by association id or by public address.
    pub fn disassociate_address(
        &self,
        caller: &Caller,
        association_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Ec2Result<()> {
        let _t = super::lifecycle::lock_transitions();
        let _addresses = address_lock();
        let allocation = match (association_id, public_ip) {
            (Some(id), _) => {
                ids::check("eipassoc", "InvalidAssociationID.Malformed", id)?;
                None
            }
            (None, Some(ip)) => Some(self.owned_address(caller, None, Some(ip))?.id),
            (None, None) => return Err(Ec2Error::missing("AssociationId")),
        };
        let holder = self.associations(caller)?.into_iter().find(|(_, d)| {
            d.network
                .as_ref()
                .and_then(|n| n.elastic.as_ref())
                .is_some_and(|e| match (&allocation, association_id) {
                    (Some(a), _) => &e.allocation_id == a,
                    (None, Some(id)) => e.association_id == id,
                    (None, None) => false,
                })
        });
        let Some((row, doc)) = holder else {
            return Err(match association_id {
                Some(id) => Ec2Error::client(
                    "InvalidAssociationID.NotFound",
                    format!("The association ID '{id}' does not exist"),
                ),
                None => Ec2Error::client(
                    "InvalidAssociationID.NotFound",
                    format!(
                        "The address '{}' is not associated",
                        public_ip.unwrap_or("")
                    ),
                ),
            });
        };
        self.drop_elastic(&row, doc)?;
        self.refresh_forwards_of(&[row.id]);
        Ok(())
    }

    /// ReleaseAddress: gives an unassociated Elastic IP back to the pool.
    pub fn release_address(
        &self,
        caller: &Caller,
        allocation_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Ec2Result<()> {
        let _t = super::lifecycle::lock_transitions();
        let _addresses = address_lock();
        let row = self.owned_address(caller, allocation_id, public_ip)?;
        let associated = self.associations(caller)?;
        if self
            .view_address(&row, &associated, Vec::new())?
            .association
            .is_some()
        {
            return Err(Ec2Error::client(
                "InvalidIPAddress.InUse",
                format!("Address {} is in use.", row.id),
            ));
        }
        self.catalog.delete_resource(&row.id)?;
        Ok(())
    }

    /// The instance whose primary interface is `eni`.
    fn instance_of_interface(&self, caller: &Caller, eni: &str) -> Ec2Result<ResourceRow> {
        ids::check("eni", "InvalidNetworkInterfaceID.Malformed", eni)?;
        for (row, doc) in self.live_instances(&caller.region)? {
            if row.account_id == caller.account_id
                && doc.network.as_ref().is_some_and(|n| n.interface_id == eni)
            {
                return Ok(row);
            }
        }
        Err(Ec2Error::not_found(
            "InvalidNetworkInterfaceID.NotFound",
            "networkInterface ID",
            eni,
        ))
    }

    /// Re-applies the host forwards of these instances' running machines.
    fn refresh_forwards_of(&self, instance_ids: &[String]) {
        let machines: Vec<Arc<super::machine::Machine>> = instance_ids
            .iter()
            .filter_map(|id| lock(&self.machines).get(id).cloned())
            .collect();
        for m in machines {
            m.apply_forwards(self);
        }
    }
}

fn address_doc(row: &ResourceRow) -> Ec2Result<AddressDoc> {
    serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("address document", e))
}

fn encode_address(doc: &AddressDoc) -> Ec2Result<String> {
    serde_json::to_string(doc).map_err(|e| Ec2Error::internal("address document", e))
}
