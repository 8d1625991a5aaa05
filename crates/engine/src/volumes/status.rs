//! What EC2 reports about a volume beyond DescribeVolumes: the most recent ModifyVolume
//! (DescribeVolumesModifications), the volume's status checks (DescribeVolumeStatus) and
//! its attributes (DescribeVolumeAttribute / ModifyVolumeAttribute: `autoEnableIO`,
//! `productCodes`).
//!
//! ModifyVolume takes effect at once here (growing a volume only moves its end; a type or
//! performance change is bookkeeping), so a recorded modification is `completed`, 100 %,
//! with its end time equal to its start time. The record lives in the volume's catalog
//! document (`last_modification`), so it survives restarts as AWS keeps it.

use catalog::ResourceRow;
use serde::{Deserialize, Serialize};

use super::{KIND, VolumeDoc, VolumeView};
use crate::query::{Filter, Filterable, Page, check_filters, iso8601, matches};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

/// The settings a modification changes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeSettings {
    /// Size in GiB.
    pub size_gib: i64,
    /// Volume type.
    pub volume_type: String,
    /// IOPS.
    pub iops: Option<i64>,
    /// Throughput in MiB/s.
    pub throughput: Option<i64>,
    /// Multi-attach flag.
    pub multi_attach: bool,
}

impl VolumeSettings {
    /// The settings of a volume document.
    pub fn of(doc: &VolumeDoc) -> Self {
        VolumeSettings {
            size_gib: doc.size_gib,
            volume_type: doc.volume_type.clone(),
            iops: doc.iops,
            throughput: doc.throughput,
            multi_attach: doc.multi_attach,
        }
    }
}

/// A volume's most recent modification.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModificationDoc {
    /// Settings before.
    pub original: VolumeSettings,
    /// Settings after.
    pub target: VolumeSettings,
    /// When it was asked for.
    pub start_time_ms: i64,
    /// When it completed.
    pub end_time_ms: i64,
}

/// The result of ModifyVolume, and one item of DescribeVolumesModifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeModification {
    /// The volume.
    pub volume_id: String,
    /// What changed, and when.
    pub record: ModificationDoc,
    /// Tags of the volume (the `tag:` filters).
    pub tags: Vec<(String, String)>,
}

impl VolumeModification {
    /// `modifying | optimizing | completed | failed`: always `completed` here.
    pub fn state(&self) -> &'static str {
        "completed"
    }
}

impl Filterable for VolumeModification {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let (o, t) = (&self.record.original, &self.record.target);
        let one = |s: String| Some(vec![s]);
        let opt = |v: Option<i64>| Some(v.iter().map(|i| i.to_string()).collect());
        match name {
            "volume-id" => one(self.volume_id.clone()),
            "modification-state" => one(self.state().into()),
            "start-time" => one(iso8601(self.record.start_time_ms)),
            "original-size" => one(o.size_gib.to_string()),
            "original-volume-type" => one(o.volume_type.clone()),
            "original-iops" => opt(o.iops),
            "original-multi-attach-enabled" => one(o.multi_attach.to_string()),
            "target-size" => one(t.size_gib.to_string()),
            "target-volume-type" => one(t.volume_type.clone()),
            "target-iops" => opt(t.iops),
            "target-throughput" => opt(t.throughput),
            "target-multi-attach-enabled" => one(t.multi_attach.to_string()),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// One item of DescribeVolumeStatus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeStatus {
    /// The volume.
    pub volume_id: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// `ok | impaired | insufficient-data`.
    pub status: &'static str,
    /// `io-enabled`: `passed` unless the volume is in error.
    pub io_enabled: &'static str,
    /// Tags of the volume.
    pub tags: Vec<(String, String)>,
}

impl VolumeStatus {
    fn of(view: &VolumeView) -> Self {
        let (status, io_enabled) = match view.state.as_str() {
            "error" => ("impaired", "failed"),
            "creating" => ("insufficient-data", "insufficient-data"),
            _ => ("ok", "passed"),
        };
        VolumeStatus {
            volume_id: view.id.clone(),
            availability_zone: view.doc.availability_zone.clone(),
            status,
            io_enabled,
            tags: view.tags.clone(),
        }
    }

    /// The `io-performance` check: only Provisioned IOPS volumes are measured.
    pub fn io_performance(&self) -> &'static str {
        "not-applicable"
    }
}

impl Filterable for VolumeStatus {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let none = || Some(Vec::new());
        match name {
            "availability-zone" => Some(vec![self.availability_zone.clone()]),
            "volume-status.status" => Some(vec![self.status.into()]),
            "volume-status.details-name" => {
                Some(vec!["io-enabled".into(), "io-performance".into()])
            }
            "volume-status.details-status" => {
                Some(vec![self.io_enabled.into(), self.io_performance().into()])
            }
            // No scheduled events or pending actions exist here.
            "action.code" | "action.description" | "action.event-id" | "event.description"
            | "event.event-id" | "event.event-type" | "event.not-after" | "event.not-before" => {
                none()
            }
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// The attribute DescribeVolumeAttribute asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeAttribute {
    /// `autoEnableIO`.
    AutoEnableIo,
    /// `productCodes`: always empty here.
    ProductCodes,
}

impl VolumeAttribute {
    /// Parses the `Attribute` parameter.
    pub fn parse(name: &str) -> Ec2Result<Self> {
        match name {
            "autoEnableIO" => Ok(VolumeAttribute::AutoEnableIo),
            "productCodes" => Ok(VolumeAttribute::ProductCodes),
            other => Err(Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid. Valid values: autoEnableIO, productCodes"
            ))),
        }
    }
}

impl Cloud {
    /// The caller's volumes of its region (those in `volume_ids` if any), with tags.
    fn volume_views(&self, caller: &Caller, volume_ids: &[String]) -> Ec2Result<Vec<VolumeView>> {
        for id in volume_ids {
            ids::check("vol", "InvalidVolumeID.Malformed", id)?;
        }
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for row in self.catalog.resources(KIND, &caller.region)? {
            if row.account_id != caller.account_id
                || (!volume_ids.is_empty() && !volume_ids.contains(&row.id))
            {
                continue;
            }
            out.push(self.view_volume(&row, all_tags.get(&row.id).cloned().unwrap_or_default())?);
        }
        for id in volume_ids {
            if !out.iter().any(|v| &v.id == id) {
                return Err(Ec2Error::not_found("InvalidVolume.NotFound", "volume", id));
            }
        }
        Ok(out)
    }

    /// DescribeVolumesModifications: the most recent modification of each volume that
    /// has one. A volume named in `volume_ids` that was never modified is
    /// `InvalidVolumeModification.NotFound`, as on AWS.
    pub fn describe_volumes_modifications(
        &self,
        caller: &Caller,
        volume_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<VolumeModification>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 500, !volume_ids.is_empty())?;
        let mut out = Vec::new();
        for view in self.volume_views(caller, volume_ids)? {
            let Some(record) = view.doc.last_modification.clone() else {
                if volume_ids.contains(&view.id) {
                    return Err(Ec2Error::client(
                        "InvalidVolumeModification.NotFound",
                        format!("Modification for volume '{}' does not exist.", view.id),
                    ));
                }
                continue;
            };
            let m = VolumeModification {
                volume_id: view.id,
                record,
                tags: view.tags,
            };
            if matches(&m, filters)? {
                out.push(m);
            }
        }
        Ok(page.apply(out, |m| &m.volume_id))
    }

    /// DescribeVolumeStatus.
    pub fn describe_volume_status(
        &self,
        caller: &Caller,
        volume_ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<VolumeStatus>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !volume_ids.is_empty())?;
        let mut out = Vec::new();
        for view in self.volume_views(caller, volume_ids)? {
            let status = VolumeStatus::of(&view);
            if matches(&status, filters)? {
                out.push(status);
            }
        }
        Ok(page.apply(out, |s| &s.volume_id))
    }

    /// DescribeVolumeAttribute: the volume's `autoEnableIO` flag (`productCodes` are
    /// always empty).
    pub fn describe_volume_attribute(&self, caller: &Caller, volume_id: &str) -> Ec2Result<bool> {
        let row = self.owned_volume(caller, volume_id)?;
        Ok(self.view_volume(&row, Vec::new())?.doc.auto_enable_io)
    }

    /// ModifyVolumeAttribute: sets `autoEnableIO`.
    pub fn modify_volume_attribute(
        &self,
        caller: &Caller,
        volume_id: &str,
        auto_enable_io: bool,
    ) -> Ec2Result<()> {
        let row: ResourceRow = self.owned_volume(caller, volume_id)?;
        let mut doc = self.view_volume(&row, Vec::new())?.doc;
        doc.auto_enable_io = auto_enable_io;
        self.catalog
            .update_resource(&row.id, &row.state, &super::encode(&doc)?)?;
        Ok(())
    }
}
