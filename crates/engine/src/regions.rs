//! DescribeRegions, DescribeAvailabilityZones, and zone validation.
//!
//! Every served region has three zones, `<region>a`, `b` and `c`, with ids like
//! `use1-az1` (the region's initials and number). A zone's state is `available`, or,
//! in a node cluster, what its node's heartbeat says (see `crate::nodes`).

use crate::query::{Filter, Filterable, check_filters, matches};
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// A region as DescribeRegions returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionView {
    /// e.g. `us-east-1`.
    pub name: String,
    /// The endpoint clients use.
    pub endpoint: String,
}

impl Filterable for RegionView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "region-name" => Some(vec![self.name.clone()]),
            "endpoint" => Some(vec![self.endpoint.clone()]),
            "opt-in-status" => Some(vec!["opt-in-not-required".into()]),
            _ => None,
        }
    }
    fn tags(&self) -> &[(String, String)] {
        &[]
    }
}

/// A zone as DescribeAvailabilityZones returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneView {
    /// e.g. `us-east-1a`.
    pub name: String,
    /// e.g. `use1-az1`.
    pub id: String,
    /// Its region.
    pub region: String,
    /// `available`, or `impaired`/`unavailable` when its node is down or missing.
    pub state: crate::nodes::ZoneState,
    /// Why it is not available.
    pub message: Option<String>,
}

impl Filterable for ZoneView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &String| Some(vec![s.clone()]);
        match name {
            "zone-name" => one(&self.name),
            "zone-id" => one(&self.id),
            "region-name" => one(&self.region),
            "state" => Some(vec![self.state.as_str().into()]),
            "zone-type" => Some(vec!["availability-zone".into()]),
            "group-name" | "network-border-group" => one(&self.region),
            "opt-in-status" => Some(vec!["opt-in-not-required".into()]),
            _ => None,
        }
    }
    fn tags(&self) -> &[(String, String)] {
        &[]
    }
}

fn region_initials(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    match parts.as_slice() {
        [country, area, number] => {
            let area_initial: String = area.chars().take(1).collect();
            format!("{country}{area_initial}{number}")
        }
        _ => region.replace('-', ""),
    }
}

/// The zones of a region.
pub fn zones(region: &str) -> Vec<ZoneView> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, letter)| ZoneView {
            name: format!("{region}{letter}"),
            id: format!("{}-az{}", region_initials(region), i + 1),
            region: region.to_string(),
            state: crate::nodes::ZoneState::Available,
            message: None,
        })
        .collect()
}

/// The region of a zone name (`us-east-1a` → `us-east-1`).
pub fn zone_region(zone: &str) -> &str {
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
}

/// Checks a zone name belongs to the region.
pub fn check_zone(region: &str, zone: &str) -> Ec2Result<String> {
    if zones(region).iter().any(|z| z.name == zone) {
        Ok(zone.to_string())
    } else {
        Err(Ec2Error::invalid_value(format!(
            "Invalid availability zone: [{zone}]"
        )))
    }
}

/// The zone name of a zone id in the region.
pub fn zone_by_id(region: &str, zone_id: &str) -> Ec2Result<String> {
    zones(region)
        .into_iter()
        .find(|z| z.id == zone_id)
        .map(|z| z.name)
        .ok_or_else(|| {
            Ec2Error::invalid_value(format!("Invalid availability zone id: [{zone_id}]"))
        })
}

impl Cloud {
    /// DescribeRegions: every served region (RegionNames must all be served).
    pub fn describe_regions(
        &self,
        endpoint: &str,
        names: &[String],
        filters: &[Filter],
    ) -> Ec2Result<Vec<RegionView>> {
        check_filters(filters)?;
        for name in names {
            if !self.region_names.contains(name) {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid region name: {name}"
                )));
            }
        }
        let mut out = Vec::new();
        for name in &self.region_names {
            if !names.is_empty() && !names.contains(name) {
                continue;
            }
            let view = RegionView {
                name: name.clone(),
                endpoint: endpoint.to_string(),
            };
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// DescribeAvailabilityZones of the caller's region.
    pub fn describe_zones(
        &self,
        caller: &Caller,
        names: &[String],
        zone_ids: &[String],
        filters: &[Filter],
    ) -> Ec2Result<Vec<ZoneView>> {
        check_filters(filters)?;
        let all = zones(&caller.region);
        for n in names {
            if !all.iter().any(|z| &z.name == n) {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid availability zone: [{n}]"
                )));
            }
        }
        for n in zone_ids {
            if !all.iter().any(|z| &z.id == n) {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid availability zone id: [{n}]"
                )));
            }
        }
        let owners = self.zone_owners(&all.iter().map(|z| z.name.as_str()).collect::<Vec<_>>())?;
        let mut out = Vec::new();
        for (mut z, owner) in all.into_iter().zip(owners) {
            if (!names.is_empty() || !zone_ids.is_empty())
                && !names.contains(&z.name)
                && !zone_ids.contains(&z.id)
            {
                continue;
            }
            (z.state, z.message) = Cloud::zone_state(&owner);
            if matches(&z, filters)? {
                out.push(z);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids() {
        let z = zones("us-east-1");
        assert_eq!(z[0].name, "us-east-1a");
        assert_eq!(z[0].id, "use1-az1");
        assert!(check_zone("us-east-1", "us-east-1b").is_ok());
        assert!(check_zone("us-east-1", "eu-west-1a").is_err());
        assert_eq!(zone_region("ap-northeast-2c"), "ap-northeast-2");
    }
}
