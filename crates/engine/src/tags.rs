//! CreateTags, DeleteTags, DescribeTags.

use crate::query::{Filter, Filterable, Page, check_filters, check_tag, matches};
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// One row of DescribeTags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagDescription {
    /// The resource.
    pub resource_id: String,
    /// Its type (`volume`, `snapshot`, `image`, ...).
    pub resource_type: String,
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
    /// For `tags()`.
    pair: Vec<(String, String)>,
}

impl Filterable for TagDescription {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &String| Some(vec![s.clone()]);
        match name {
            "key" => one(&self.key),
            "value" => one(&self.value),
            "resource-id" => one(&self.resource_id),
            "resource-type" => one(&self.resource_type),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.pair
    }
}

/// The EC2 resource type of an id, from its prefix.
pub fn resource_type_of(id: &str) -> Option<&'static str> {
    let prefix = id.split('-').next()?;
    Some(match prefix {
        "vol" => "volume",
        "snap" => "snapshot",
        "ami" | "aki" | "ari" => "image",
        "i" => "instance",
        "key" => "key-pair",
        "vpc" => "vpc",
        "subnet" => "subnet",
        "sg" => "security-group",
        "rtb" => "route-table",
        "eni" => "network-interface",
        "lt" => "launch-template",
        "eipalloc" => "elastic-ip",
        _ => return None,
    })
}

fn not_found(id: &str) -> Ec2Error {
    match resource_type_of(id) {
        Some("volume") => Ec2Error::not_found("InvalidVolume.NotFound", "volume", id),
        Some("snapshot") => Ec2Error::not_found("InvalidSnapshot.NotFound", "snapshot", id),
        Some("image") => Ec2Error::not_found("InvalidAMIID.NotFound", "image id", id),
        Some("instance") => Ec2Error::not_found("InvalidInstanceID.NotFound", "instance ID", id),
        Some("key-pair") => Ec2Error::client(
            "InvalidKeyPair.NotFound",
            format!("The key pair '{id}' does not exist"),
        ),
        Some("vpc") => Ec2Error::not_found("InvalidVpcID.NotFound", "vpc ID", id),
        Some("subnet") => Ec2Error::not_found("InvalidSubnetID.NotFound", "subnet ID", id),
        Some("security-group") => {
            Ec2Error::not_found("InvalidGroup.NotFound", "security group", id)
        }
        Some("route-table") => {
            Ec2Error::not_found("InvalidRouteTableID.NotFound", "routeTable ID", id)
        }
        Some("network-interface") => Ec2Error::not_found(
            "InvalidNetworkInterfaceID.NotFound",
            "networkInterface ID",
            id,
        ),
        Some("launch-template") => crate::launch_templates::id_not_found(id),
        Some("elastic-ip") => Ec2Error::client(
            "InvalidAllocationID.NotFound",
            format!("The allocation ID '{id}' does not exist"),
        ),
        _ => Ec2Error::client("InvalidID", format!("The ID '{id}' is not valid")),
    }
}

impl Cloud {
    fn check_taggable(&self, caller: &Caller, id: &str) -> Ec2Result<()> {
        if resource_type_of(id) == Some("network-interface") {
            // Interfaces are synthesized from their instances.
            return if self.owns_interface(caller, id)? {
                Ok(())
            } else {
                Err(not_found(id))
            };
        }
        match self.catalog.resource(id)? {
            Some(row)
                if row.account_id == caller.account_id
                    && row.region == caller.region
                    && resource_type_of(id).is_some() =>
            {
                Ok(())
            }
            _ => Err(not_found(id)),
        }
    }

    /// Keeps the image index in step with an image's tags.
    fn tags_changed(&self, id: &str) -> Ec2Result<()> {
        if resource_type_of(id) == Some("image") {
            self.refresh_image(id)?;
        }
        Ok(())
    }

    /// CreateTags on resources the caller owns.
    pub fn create_tags(
        &self,
        caller: &Caller,
        resources: &[String],
        tags: &[(String, String)],
    ) -> Ec2Result<()> {
        if resources.is_empty() {
            return Err(Ec2Error::missing("ResourceId"));
        }
        if tags.is_empty() {
            return Err(Ec2Error::missing("Tag"));
        }
        for (k, v) in tags {
            check_tag(k, v)?;
        }
        for id in resources {
            self.check_taggable(caller, id)?;
            let mut keys: Vec<String> =
                self.catalog.tags(id)?.into_iter().map(|(k, _)| k).collect();
            keys.extend(tags.iter().map(|(k, _)| k.clone()));
            keys.sort();
            keys.dedup();
            if keys.len() > 50 {
                return Err(Ec2Error::client(
                    "TagLimitExceeded",
                    format!("The maximum number of tags for resource {id} is 50"),
                ));
            }
        }
        for id in resources {
            self.catalog.set_tags(id, tags)?;
            self.tags_changed(id)?;
        }
        Ok(())
    }

    /// DeleteTags: a tag without a value deletes the key whatever its value.
    pub fn delete_tags(
        &self,
        caller: &Caller,
        resources: &[String],
        tags: &[(String, Option<String>)],
    ) -> Ec2Result<()> {
        if resources.is_empty() {
            return Err(Ec2Error::missing("ResourceId"));
        }
        for id in resources {
            self.check_taggable(caller, id)?;
        }
        for id in resources {
            if tags.is_empty() {
                self.catalog.clear_tags(id)?;
            } else {
                self.catalog.delete_tags(id, tags)?;
            }
            self.tags_changed(id)?;
        }
        Ok(())
    }

    /// DescribeTags over the caller's resources in its region.
    pub fn describe_tags(
        &self,
        caller: &Caller,
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<TagDescription>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, false)?;
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for kind in [
            crate::volumes::KIND,
            crate::snapshots::KIND,
            crate::images::KIND,
            crate::keypairs::KIND,
            crate::launch_templates::KIND,
            crate::vpc::VPC_KIND,
            crate::vpc::SUBNET_KIND,
            crate::vpc::ROUTE_TABLE_KIND,
            crate::vpc::GROUP_KIND,
        ] {
            for row in self.catalog.resources(kind, &caller.region)? {
                if row.account_id != caller.account_id {
                    continue;
                }
                for (key, value) in all_tags.get(&row.id).into_iter().flatten() {
                    let item = TagDescription {
                        resource_id: row.id.clone(),
                        resource_type: resource_type_of(&row.id).unwrap_or("unknown").into(),
                        key: key.clone(),
                        value: value.clone(),
                        pair: vec![(key.clone(), value.clone())],
                    };
                    if matches(&item, filters)? {
                        out.push(item);
                    }
                }
            }
        }
        for eni in self.interfaces(caller)? {
            for (key, value) in &eni.tags {
                let item = TagDescription {
                    resource_id: eni.id.clone(),
                    resource_type: "network-interface".into(),
                    key: key.clone(),
                    value: value.clone(),
                    pair: vec![(key.clone(), value.clone())],
                };
                if matches(&item, filters)? {
                    out.push(item);
                }
            }
        }
        out.sort_by(|a, b| (&a.resource_id, &a.key).cmp(&(&b.resource_id, &b.key)));
        // Page by "resource-id/key" so tokens stay stable.
        let keyed: Vec<(String, TagDescription)> = out
            .into_iter()
            .map(|t| (format!("{}/{}", t.resource_id, t.key), t))
            .collect();
        let (page_items, token) = page.apply(keyed, |(k, _)| k);
        Ok((page_items.into_iter().map(|(_, t)| t).collect(), token))
    }
}
