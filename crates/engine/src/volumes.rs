//! Volumes: CreateVolume, DescribeVolumes, DeleteVolume, ModifyVolume (and, in
//! [`status`], what EC2 reports about a volume beyond DescribeVolumes).

use std::sync::Arc;

use blockstore::{BlockStoreError, ResourceId};
use catalog::{ResourceRow, now_ms};
use serde::{Deserialize, Serialize};
use volume::Volume;

use crate::query::{Filter, Filterable, Page, TagSpecification, check_filters, matches, tags_for};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock, regions, snapshots};

/// Catalog kind of volumes.
pub const KIND: &str = "volume";
const GIB: u64 = 1 << 30;

/// What the catalog keeps about a volume.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeDoc {
    /// Size in GiB.
    pub size_gib: i64,
    /// gp2, gp3, io1, io2, st1, sc1 or standard.
    pub volume_type: String,
    /// Provisioned IOPS (gp3, io1, io2) or the gp2 baseline.
    pub iops: Option<i64>,
    /// Throughput in MiB/s (gp3).
    pub throughput: Option<i64>,
    /// Availability zone.
    pub availability_zone: String,
    /// Snapshot it was created from.
    pub snapshot_id: Option<String>,
    /// Encrypted flag (recorded; data at rest is not encrypted yet).
    pub encrypted: bool,
    /// Multi-attach flag.
    pub multi_attach: bool,
    /// Creation time.
    pub create_time_ms: i64,
    /// Idempotency token of the CreateVolume call.
    #[serde(default)]
    pub client_token: Option<String>,
    /// The instance it is attached to.
    #[serde(default)]
    pub attachment: Option<AttachmentDoc>,
    /// The most recent ModifyVolume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modification: Option<ModificationDoc>,
    /// The `autoEnableIO` attribute (ModifyVolumeAttribute).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_enable_io: bool,
}

/// A volume's attachment to an instance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentDoc {
    /// The instance.
    pub instance_id: String,
    /// Device name, e.g. `/dev/sdf`.
    pub device: String,
    /// When it was attached.
    pub attach_time_ms: i64,
    /// Delete the volume when the instance terminates.
    pub delete_on_termination: bool,
    /// attaching | attached | detaching.
    pub state: String,
}

pub(crate) fn encode(doc: &VolumeDoc) -> Ec2Result<String> {
    serde_json::to_string(doc).map_err(|e| Ec2Error::internal("volume document", e))
}

/// A volume as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeView {
    /// Volume id.
    pub id: String,
    /// creating | available | in-use | deleting | deleted | error.
    pub state: String,
    /// Stored attributes.
    pub doc: VolumeDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for VolumeView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let d = &self.doc;
        let one = |s: String| Some(vec![s]);
        let attached =
            |f: &dyn Fn(&AttachmentDoc) -> String| Some(d.attachment.iter().map(f).collect());
        match name {
            "volume-id" => one(self.id.clone()),
            "status" => one(self.state.clone()),
            "size" => one(d.size_gib.to_string()),
            "volume-type" => one(d.volume_type.clone()),
            "availability-zone" => one(d.availability_zone.clone()),
            "snapshot-id" => Some(d.snapshot_id.iter().cloned().collect()),
            "encrypted" => one(d.encrypted.to_string()),
            "multi-attach-enabled" => one(d.multi_attach.to_string()),
            "create-time" => one(crate::query::iso8601(d.create_time_ms)),
            "iops" => Some(d.iops.iter().map(|i| i.to_string()).collect()),
            "throughput" => Some(d.throughput.iter().map(|i| i.to_string()).collect()),
            "attachment.instance-id" => attached(&|a| a.instance_id.clone()),
            "attachment.device" => attached(&|a| a.device.clone()),
            "attachment.status" => attached(&|a| a.state.clone()),
            "attachment.attach-time" => attached(&|a| crate::query::iso8601(a.attach_time_ms)),
            "attachment.delete-on-termination" => {
                attached(&|a| a.delete_on_termination.to_string())
            }
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// CreateVolume parameters.
#[derive(Clone, Debug, Default)]
pub struct CreateVolume {
    /// Size in GiB.
    pub size: Option<i64>,
    /// Source snapshot.
    pub snapshot_id: Option<String>,
    /// Volume type (default gp2).
    pub volume_type: Option<String>,
    /// IOPS.
    pub iops: Option<i64>,
    /// Throughput (gp3).
    pub throughput: Option<i64>,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Availability zone id.
    pub availability_zone_id: Option<String>,
    /// Encrypted.
    pub encrypted: Option<bool>,
    /// Multi-attach.
    pub multi_attach: Option<bool>,
    /// Tags to apply.
    pub tag_specifications: Vec<TagSpecification>,
    /// Idempotency token.
    pub client_token: Option<String>,
}

/// ModifyVolume parameters.
#[derive(Clone, Debug, Default)]
pub struct ModifyVolume {
    /// The volume.
    pub volume_id: String,
    /// New size in GiB.
    pub size: Option<i64>,
    /// New type.
    pub volume_type: Option<String>,
    /// New IOPS.
    pub iops: Option<i64>,
    /// New throughput.
    pub throughput: Option<i64>,
    /// New multi-attach flag.
    pub multi_attach: Option<bool>,
}

/// Size limits (GiB) and IOPS rules per volume type.
fn type_limits(volume_type: &str) -> Option<(i64, i64)> {
    Some(match volume_type {
        "gp2" | "gp3" | "io1" => (if volume_type == "io1" { 4 } else { 1 }, 16_384),
        "io2" => (4, 65_536),
        "st1" | "sc1" => (125, 16_384),
        "standard" => (1, 1_024),
        _ => return None,
    })
}

fn check_type_and_performance(
    volume_type: &str,
    size: i64,
    iops: Option<i64>,
    throughput: Option<i64>,
) -> Ec2Result<(Option<i64>, Option<i64>)> {
    let (min, max) = type_limits(volume_type).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Value ({volume_type}) for parameter volumeType is invalid. Valid types are: standard, io1, io2, gp2, sc1, st1, gp3."
        ))
    })?;
    if size < min {
        return Err(Ec2Error::invalid_value(format!(
            "Volume of {size}GiB is too small; minimum is {min}GiB."
        )));
    }
    if size > max {
        return Err(Ec2Error::invalid_value(format!(
            "Volume of {size}GiB is too large; maximum is {max}GiB."
        )));
    }
    match volume_type {
        "io1" | "io2" => {
            let iops = iops.ok_or_else(|| Ec2Error::missing("iops"))?;
            let limit = if volume_type == "io1" {
                64_000
            } else {
                256_000
            };
            if !(100..=limit).contains(&iops) {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({iops}) for parameter iops is invalid. Expected a value between 100 and {limit}."
                )));
            }
            if throughput.is_some() {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    format!("The parameter throughput is not supported for {volume_type} volumes."),
                ));
            }
            Ok((Some(iops), None))
        }
        "gp3" => {
            let iops = iops.unwrap_or(3000);
            let throughput = throughput.unwrap_or(125);
            if !(3000..=16_000).contains(&iops) {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({iops}) for parameter iops is invalid. Expected a value between 3000 and 16000."
                )));
            }
            if !(125..=1000).contains(&throughput) {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({throughput}) for parameter throughput is invalid. Expected a value between 125 and 1000."
                )));
            }
            Ok((Some(iops), Some(throughput)))
        }
        other => {
            if iops.is_some() {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    format!("The parameter iops is not supported for {other} volumes."),
                ));
            }
            if throughput.is_some() {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    format!("The parameter throughput is not supported for {other} volumes."),
                ));
            }
            // gp2 baseline: 3 IOPS per GiB, between 100 and 16000.
            Ok((
                (other == "gp2").then(|| (size * 3).clamp(100, 16_000)),
                None,
            ))
        }
    }
}

fn resource_id(id: &str) -> Ec2Result<ResourceId> {
    ResourceId::new(id).map_err(|e| Ec2Error::internal("resource id", e))
}

impl Cloud {
    pub(crate) fn view_volume(
        &self,
        row: &ResourceRow,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<VolumeView> {
        let doc: VolumeDoc =
            serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("volume document", e))?;
        Ok(VolumeView {
            id: row.id.clone(),
            state: row.state.clone(),
            doc,
            tags,
        })
    }

    /// A volume the caller owns in its region, or `InvalidVolume.NotFound`.
    pub(crate) fn owned_volume(&self, caller: &Caller, id: &str) -> Ec2Result<ResourceRow> {
        ids::check("vol", "InvalidVolumeID.Malformed", id)?;
        self.owned_row(caller, KIND, id)?
            .ok_or_else(|| Ec2Error::not_found("InvalidVolume.NotFound", "volume", id))
    }

    /// The open handle of a volume (opening it on first use).
    pub(crate) fn volume_handle(&self, region: &str, id: &str) -> Ec2Result<Arc<Volume>> {
        let mut open = lock(&self.open_volumes);
        if let Some(v) = open.get(id) {
            return Ok(Arc::clone(v));
        }
        let storage = self.region(region)?;
        let v = Volume::open(&storage.volumes_dir.join(id), Arc::clone(&storage.store))?;
        open.insert(id.to_string(), Arc::clone(&v));
        Ok(v)
    }

    /// CreateVolume.
    pub fn create_volume(&self, caller: &Caller, req: CreateVolume) -> Ec2Result<VolumeView> {
        let tags = tags_for(&req.tag_specifications, "volume")?;
        if let Some(token) = &req.client_token {
            if token.len() > 64 {
                return Err(Ec2Error::invalid_value(
                    "ClientToken must be at most 64 characters",
                ));
            }
            for row in self.catalog.resources(KIND, &caller.region)? {
                if row.account_id == caller.account_id
                    && self
                        .view_volume(&row, Vec::new())?
                        .doc
                        .client_token
                        .as_deref()
                        == Some(token)
                {
                    return self.view_volume(&row, self.catalog.tags(&row.id)?);
                }
            }
        }
        let zone = match (&req.availability_zone, &req.availability_zone_id) {
            (Some(zone), _) => regions::check_zone(&caller.region, zone)?,
            (None, Some(zone_id)) => regions::zone_by_id(&caller.region, zone_id)?,
            (None, None) => return Err(Ec2Error::missing("AvailabilityZone")),
        };
        self.check_placement(&zone, crate::nodes::Placing::Volume)?;
        let volume_type = req.volume_type.clone().unwrap_or_else(|| "gp2".into());
        let source = match &req.snapshot_id {
            Some(snap) => Some(snapshots::usable_snapshot(self, caller, snap)?),
            None => None,
        };
        let size = match (req.size, &source) {
            (Some(size), Some(src)) if size < src.volume_size_gib => {
                return Err(Ec2Error::invalid_value(format!(
                    "Volume of {size}GiB is smaller than snapshot '{}', expect size >= {}GiB",
                    src.id, src.volume_size_gib
                )));
            }
            (Some(size), _) => size,
            (None, Some(src)) => src.volume_size_gib,
            (None, None) => return Err(Ec2Error::missing("size")),
        };
        let (iops, throughput) =
            check_type_and_performance(&volume_type, size, req.iops, req.throughput)?;
        if req.multi_attach == Some(true) && volume_type != "io1" && volume_type != "io2" {
            return Err(Ec2Error::invalid_value(
                "Multi-Attach is supported only for io1 and io2 volumes",
            ));
        }
        let doc = VolumeDoc {
            size_gib: size,
            volume_type,
            iops,
            throughput,
            availability_zone: zone,
            snapshot_id: req.snapshot_id.clone(),
            encrypted: req.encrypted.unwrap_or(false)
                || source.as_ref().is_some_and(|s| s.encrypted),
            multi_attach: req.multi_attach.unwrap_or(false),
            create_time_ms: now_ms(),
            client_token: req.client_token.clone(),
            attachment: None,
            last_modification: None,
            auto_enable_io: false,
        };
        self.materialize_volume(&caller.account_id, &caller.region, doc, tags)
    }

    /// Creates the data and the catalog row of a new volume described by `doc` (its
    /// snapshot, if any, already checked), `available` or `in-use` when `doc` says it is
    /// attached.
    pub(crate) fn materialize_volume(
        &self,
        account_id: &str,
        region: &str,
        doc: VolumeDoc,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<VolumeView> {
        let storage = self.region(region)?;
        let id = ids::new_id("vol");
        let vol_id = resource_id(&id)?;
        let dir = storage.volumes_dir.join(&id);
        let bytes = doc.size_gib as u64 * GIB;
        let created = match &doc.snapshot_id {
            Some(src) => Volume::create_from_snapshot(
                &dir,
                vol_id,
                &resource_id(src)?,
                Some(bytes),
                Arc::clone(&storage.store),
            ),
            None => Volume::create(&dir, vol_id, bytes, Arc::clone(&storage.store)),
        };
        let handle = created.map_err(|e| match e {
            // Deleted since the caller checked it (a concurrent DeleteSnapshot).
            volume::VolumeError::Store(BlockStoreError::SnapshotNotFound { .. }) => {
                Ec2Error::not_found(
                    "InvalidSnapshot.NotFound",
                    "snapshot",
                    doc.snapshot_id.as_deref().unwrap_or_default(),
                )
            }
            e if e.is_storage_full() => {
                // EC2's code for "no room for this volume now; try later".
                tracing::warn!(error = %e, "out of storage creating a volume");
                Ec2Error {
                    code: "InsufficientVolumeCapacity".into(),
                    message: crate::error::OUT_OF_STORAGE.into(),
                    status: 503,
                }
            }
            e => e.into(),
        })?;
        let state = if doc.attachment.is_some() {
            "in-use"
        } else {
            "available"
        };
        let row = ResourceRow {
            id: id.clone(),
            kind: KIND.into(),
            account_id: account_id.to_string(),
            region: region.to_string(),
            state: state.into(),
            doc: encode(&doc)?,
            created_at_ms: doc.create_time_ms,
        };
        if let Err(e) = self.catalog.insert_resource_with_tags(&row, &tags) {
            let _ = Volume::destroy(&dir, &storage.store);
            return Err(e.into());
        }
        lock(&self.open_volumes).insert(id.clone(), handle);
        Ok(VolumeView {
            id,
            state: row.state,
            doc,
            tags,
        })
    }

    /// DescribeVolumes: the caller's volumes in its region.
    pub fn describe_volumes(
        &self,
        caller: &Caller,
        volume_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<VolumeView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 500, !volume_ids.is_empty())?;
        for id in volume_ids {
            ids::check("vol", "InvalidVolumeID.Malformed", id)?;
        }
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for row in self.catalog.resources(KIND, &caller.region)? {
            if row.account_id != caller.account_id {
                continue;
            }
            if !volume_ids.is_empty() && !volume_ids.contains(&row.id) {
                continue;
            }
            let view =
                self.view_volume(&row, all_tags.get(&row.id).cloned().unwrap_or_default())?;
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        for id in volume_ids {
            if !out.iter().any(|v| &v.id == id) && self.owned_volume(caller, id).is_err() {
                return Err(Ec2Error::not_found("InvalidVolume.NotFound", "volume", id));
            }
        }
        Ok(page.apply(out, |v| &v.id))
    }

    /// DeleteVolume.
    pub fn delete_volume(&self, caller: &Caller, id: &str) -> Ec2Result<()> {
        let _lifecycle = lock(&self.volume_lifecycle);
        let row = self.owned_volume(caller, id)?;
        if row.state == "in-use" {
            return Err(Ec2Error::client(
                "VolumeInUse",
                format!("Volume {id} is currently attached"),
            ));
        }
        if lock(&self.snapshot_progress)
            .values()
            .any(|(volume, _)| volume == id)
        {
            return Err(Ec2Error::client(
                "VolumeInUse",
                format!("Volume {id} has a snapshot in progress"),
            ));
        }
        let storage = self.region(&row.region)?;
        if let Some(handle) = lock(&self.open_volumes).remove(id) {
            drop(handle);
        }
        Volume::destroy(&storage.volumes_dir.join(id), &storage.store)?;
        self.catalog.delete_resource(id)?;
        Ok(())
    }

    /// ModifyVolume: grow, change type or performance. Completes at once.
    pub fn modify_volume(
        &self,
        caller: &Caller,
        req: ModifyVolume,
    ) -> Ec2Result<VolumeModification> {
        let row = self.owned_volume(caller, &req.volume_id)?;
        let original = self.view_volume(&row, Vec::new())?.doc;
        let mut target = original.clone();
        if let Some(size) = req.size {
            if size < original.size_gib {
                return Err(Ec2Error::invalid_value(format!(
                    "New size cannot be smaller than existing size of {}GiB",
                    original.size_gib
                )));
            }
            target.size_gib = size;
        }
        if let Some(t) = &req.volume_type {
            target.volume_type = t.clone();
        }
        let type_changed = target.volume_type != original.volume_type;
        let iops = req.iops.or(if type_changed {
            None
        } else {
            original.iops.filter(|_| target.volume_type != "gp2")
        });
        let throughput = req.throughput.or(if type_changed {
            None
        } else {
            original.throughput
        });
        let (iops, throughput) =
            check_type_and_performance(&target.volume_type, target.size_gib, iops, throughput)?;
        target.iops = iops;
        target.throughput = throughput;
        if let Some(m) = req.multi_attach {
            target.multi_attach = m;
        }
        if target == original {
            return Err(Ec2Error::invalid_value(
                "New size, type, IOPS, throughput or multi-attach must differ from the current values",
            ));
        }
        if target.size_gib > original.size_gib {
            let handle = self.volume_handle(&row.region, &row.id)?;
            handle.grow(target.size_gib as u64 * GIB)?;
        }
        // It takes effect at once: completed when it is recorded.
        let now = now_ms();
        let record = ModificationDoc {
            original: VolumeSettings::of(&original),
            target: VolumeSettings::of(&target),
            start_time_ms: now,
            end_time_ms: now,
        };
        target.last_modification = Some(record.clone());
        self.catalog
            .update_resource(&row.id, &row.state, &encode(&target)?)?;
        Ok(VolumeModification {
            volume_id: row.id,
            record,
            tags: Vec::new(),
        })
    }
}

mod status;
pub use status::{
    ModificationDoc, VolumeAttribute, VolumeModification, VolumeSettings, VolumeStatus,
};

#[cfg(test)]
mod tests;
