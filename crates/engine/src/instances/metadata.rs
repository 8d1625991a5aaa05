//! What an instance's metadata service serves: the `imds` crate answers the guest's
//! HTTP requests on the instance's own unix socket and asks this source for a fresh
//! [`imds::Metadata`] on every request, so tags, options and addresses are always
//! current. The source holds only a weak reference: a machine never keeps the cloud
//! alive.

use std::path::Path;
use std::sync::{Arc, Weak};

use super::{InstanceDoc, doc_of};
use crate::{Cloud, Ec2Result};

/// The metadata of one instance, read from the catalog.
pub(crate) struct InstanceMetadata {
    cloud: Weak<Cloud>,
    instance_id: String,
}

impl InstanceMetadata {
    pub(crate) fn new(cloud: &Arc<Cloud>, instance_id: &str) -> Arc<InstanceMetadata> {
        Arc::new(InstanceMetadata {
            cloud: Arc::downgrade(cloud),
            instance_id: instance_id.to_string(),
        })
    }
}

/// `ami`, `root`, `ebsN`, `ephemeralN` → device, as IMDS lists block devices.
fn block_devices(doc: &InstanceDoc) -> Vec<(String, String)> {
    let short = |d: &str| d.trim_start_matches("/dev/").to_string();
    let mut out = vec![
        ("ami".to_string(), short(&doc.root_device_name)),
        ("root".to_string(), doc.root_device_name.clone()),
    ];
    let mut ebs = 1;
    for d in &doc.block_devices {
        if d.device_name != doc.root_device_name {
            out.push((format!("ebs{ebs}"), short(&d.device_name)));
            ebs += 1;
        }
    }
    for e in &doc.ephemeral_disks {
        if e.virtual_name != "root" {
            out.push((e.virtual_name.clone(), short(&e.device_name)));
        }
    }
    out
}

/// Serves the instance's metadata on `<run dir>/imds.sock`, when machines get a relay.
pub(crate) fn start_imds(
    cloud: &Arc<Cloud>,
    instance_id: &str,
    runtime_dir: &Path,
) -> Ec2Result<Option<imds::ImdsHandle>> {
    if cloud.compute_config().imds_relay.is_none() {
        return Ok(None);
    }
    let key = cloud.imds_key;
    let source = InstanceMetadata::new(cloud, instance_id);
    imds::ImdsServer::bind(&runtime_dir.join("imds.sock"), source, key)
        .map(Some)
        .map_err(|e| super::machine::machine_error("serving instance metadata", e))
}

impl imds::MetadataSource for InstanceMetadata {
    fn metadata(&self) -> Option<imds::Metadata> {
        let cloud = self.cloud.upgrade()?;
        let row = cloud.catalog.resource(&self.instance_id).ok()??;
        let doc = doc_of(&row).ok()?;
        let net = doc.network.clone().unwrap_or_default();
        let tags = cloud.catalog.tags(&row.id).unwrap_or_default();
        let user_data = doc
            .user_data
            .as_deref()
            .and_then(|b64| super::launch::decode_user_data(b64).ok());
        let zone_id = crate::regions::zones(&row.region)
            .into_iter()
            .find(|z| z.name == doc.availability_zone)
            .map(|z| z.id)
            .unwrap_or_default();
        let vpc_cidr = cloud.vpc_cidr(&net.vpc_id).unwrap_or_default();
        let o = &doc.metadata_options;
        Some(imds::Metadata {
            options: imds::Options {
                tokens_required: o.http_tokens == "required",
                endpoint_enabled: o.http_endpoint != "disabled",
                tags_enabled: o.instance_metadata_tags == "enabled",
            },
            instance_id: row.id.clone(),
            ami_id: doc.image_id.clone(),
            instance_type: doc.instance_type.clone(),
            reservation_id: doc.reservation_id.clone(),
            account_id: row.account_id.clone(),
            region: row.region.clone(),
            availability_zone: doc.availability_zone.clone(),
            availability_zone_id: zone_id,
            architecture: doc.architecture.clone(),
            ami_launch_index: doc.ami_launch_index,
            local_hostname: crate::vpc::private_dns_name(&row.region, &doc.private_ip),
            local_ipv4: doc.private_ip.clone(),
            public_hostname: net
                .public_ip
                .as_deref()
                .map(|ip| crate::vpc::public_dns_name(&row.region, ip)),
            public_ipv4: net.public_ip.clone(),
            mac: net.mac.clone(),
            interface_id: net.interface_id.clone(),
            subnet_id: net.subnet_id.clone(),
            subnet_cidr: net.subnet_cidr.clone(),
            vpc_id: net.vpc_id.clone(),
            vpc_cidr,
            security_groups: net.groups.iter().map(|g| g.name.clone()).collect(),
            security_group_ids: net.groups.iter().map(|g| g.id.clone()).collect(),
            public_keys: match (&doc.key_name, &doc.key_public) {
                (Some(name), Some(key)) => vec![(name.clone(), key.clone())],
                _ => Vec::new(),
            },
            block_devices: block_devices(&doc),
            user_data,
            tags,
            pending_time_ms: doc.launch_time_ms,
            kernel_id: doc.kernel_id.clone(),
            ramdisk_id: doc.ramdisk_id.clone(),
            product_codes: doc.product_codes.iter().map(|c| c.id.clone()).collect(),
        })
    }
}
