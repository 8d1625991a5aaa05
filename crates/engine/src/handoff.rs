//! Where a request's work runs in a node cluster: the zone a request is about, and which
//! node serves it. The API layer asks [`Cloud::route`] before it executes a request; when
//! the answer is another live node it hands the request over through the catalog's node
//! request queue (see `api::handoff`) instead of executing it here.
//!
//! A request is *about a zone* when its work touches a volume's data or an instance's
//! machine, which live on the node that owns the zone: CreateVolume (its zone),
//! DeleteVolume, ModifyVolume, CreateSnapshot, AttachVolume, DetachVolume (the volume's
//! zone), RunInstances with an explicit zone or subnet (and without: this node's own
//! zone), and the instance actions (the instances' zone). Everything else — images,
//! snapshots and EBS direct (regional, in the shared block store), the VPC layer, key
//! pairs, Describe calls (the catalog) — runs on whichever node received it.
//!
//! A target this node cannot resolve (an unknown or foreign id) is routed here, so the
//! local execution answers with the usual not-found error.

use crate::nodes::ZoneOwner;
use crate::{Caller, Cloud, Ec2Error, Ec2Result, instances};

/// What a request's work is about, as the API layer reads it from the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkTarget<'a> {
    /// A zone by name.
    Zone(&'a str),
    /// A zone by id (`use1-az1`).
    ZoneId(&'a str),
    /// The zone of a subnet.
    Subnet(&'a str),
    /// The zone of a volume.
    Volume(&'a str),
    /// The zone of each of these instances (they must share one node).
    Instances(&'a [String]),
}

/// Where to run a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here.
    Local,
    /// On another node, which is alive.
    Node(String),
}

impl Cloud {
    /// Where the work of a request about `target` runs. Without nodes, always here.
    /// A new volume or instance in a zone whose node is down or that no node serves is
    /// answered here (the engine refuses it at once with EC2's capacity errors, see
    /// `nodes`); work on an existing volume or instance there is refused with
    /// `ServiceUnavailable` (503) — never run on a node that does not have it.
    pub fn route(&self, caller: &Caller, target: WorkTarget<'_>) -> Ec2Result<Route> {
        if self.node().is_none() {
            return Ok(Route::Local);
        }
        let zones = match target {
            WorkTarget::Zone(z) => vec![z.to_string()],
            WorkTarget::ZoneId(id) => match crate::regions::zone_by_id(&caller.region, id) {
                Ok(z) => vec![z],
                Err(_) => return Ok(Route::Local),
            },
            WorkTarget::Subnet(id) => match self.subnet_zone(caller, id)? {
                Some(z) => vec![z],
                None => return Ok(Route::Local),
            },
            WorkTarget::Volume(id) => match self.owned_volume(caller, id) {
                Ok(row) => vec![self.view_volume(&row, Vec::new())?.doc.availability_zone],
                Err(_) => return Ok(Route::Local),
            },
            WorkTarget::Instances(ids) => {
                let mut zones = Vec::new();
                for id in ids {
                    match self.owned_instance(caller, id) {
                        Ok(row) => zones.push(instances::doc_of(&row)?.availability_zone),
                        Err(_) => return Ok(Route::Local),
                    }
                }
                zones.sort();
                zones.dedup();
                zones
            }
        };
        let existing = matches!(target, WorkTarget::Volume(_) | WorkTarget::Instances(_));
        let owners = self.zone_owners(&zones.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut remote: Vec<&str> = Vec::new();
        let mut local = false;
        for (owner, zone) in owners.iter().zip(&zones) {
            match owner {
                ZoneOwner::Alive(node) => remote.push(node),
                ZoneOwner::Me => local = true,
                // New volumes and instances there are refused by the engine with EC2's
                // capacity errors; existing ones live on a node that cannot be reached,
                // and running their work here would act on what this node does not have.
                ZoneOwner::Down { node, .. } if existing => {
                    return Err(zone_down(
                        zone,
                        &format!("its openami node {node} is not reporting"),
                    ));
                }
                ZoneOwner::Nobody if existing => {
                    return Err(zone_down(zone, "no openami node serves it"));
                }
                ZoneOwner::Down { .. } | ZoneOwner::Nobody => local = true,
            }
        }
        remote.sort_unstable();
        remote.dedup();
        match (remote.as_slice(), local) {
            ([], _) => Ok(Route::Local),
            ([node], false) => Ok(Route::Node((*node).to_string())),
            _ => Err(Ec2Error::client(
                "Unsupported",
                format!(
                    "The instances of this request are in availability zones served by different openami nodes ({}): send one request per zone.",
                    zones.join(", ")
                ),
            )),
        }
    }

    /// The zone of a subnet the caller can see, if any.
    fn subnet_zone(&self, caller: &Caller, id: &str) -> Ec2Result<Option<String>> {
        Ok(self
            .subnet_docs(caller)?
            .into_iter()
            .find(|(subnet, _)| subnet == id)
            .map(|(_, doc)| doc.availability_zone))
    }
}

fn zone_down(zone: &str, why: &str) -> Ec2Error {
    Ec2Error {
        code: "ServiceUnavailable".into(),
        message: format!(
            "The availability zone {zone} is impaired: {why}. Its volumes and instances cannot be changed until it is back."
        ),
        status: 503,
    }
}
