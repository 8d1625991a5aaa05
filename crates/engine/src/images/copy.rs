//! CopyImage: a new image in the caller's region whose snapshots are copies of the
//! source image's, made in the background with the snapshot-copy machinery
//! ([`Cloud::copy_snapshot_data`]). The image is `pending` until every snapshot is
//! copied, then `available` — or `failed`, with a state reason.

use std::sync::Arc;

use catalog::now_ms;

use crate::query::TagSpecification;
use crate::snapshots::{self, SnapshotDoc};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock};

use super::validate::{check_description, check_name, split_tags};
use super::{ImageDoc, KIND, MappingTarget, Protection, StateReason, doc_of, encode, writing};

/// CopyImage parameters.
#[derive(Clone, Debug, Default)]
pub struct CopyImage {
    /// `SourceRegion`.
    pub source_region: String,
    /// `SourceImageId`.
    pub source_image_id: String,
    /// `Name` of the new image.
    pub name: String,
    /// `Description` (default: the source's).
    pub description: Option<String>,
    /// `CopyImageTags`: copy the source image's tags (the caller's own images only).
    pub copy_image_tags: bool,
    /// `TagSpecification.N` (`image` and `snapshot`).
    pub tag_specifications: Vec<TagSpecification>,
    /// `ClientToken`.
    pub client_token: Option<String>,
    /// `Encrypted`: mark the new snapshots encrypted.
    pub encrypted: Option<bool>,
    /// `KmsKeyId` (refused).
    pub kms_key_id: Option<String>,
    /// `DestinationOutpostArn` (refused).
    pub destination_outpost_arn: Option<String>,
}

/// The background half of a CopyImage.
struct CopyJob {
    image_id: String,
    source_region: String,
    region: String,
    /// (source snapshot, destination snapshot).
    snapshots: Vec<(String, String)>,
}

impl Cloud {
    /// CopyImage into the caller's region from `SourceRegion` (which may be the same).
    /// Returns the new image id at once; the copy runs in the background.
    pub fn copy_image(self: &Arc<Self>, caller: &Caller, req: CopyImage) -> Ec2Result<String> {
        check_name(&req.name)?;
        if let Some(d) = &req.description {
            check_description(d)?;
        }
        if req.kms_key_id.is_some() || req.destination_outpost_arn.is_some() {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                "KMS keys and Outposts are not supported by openami",
            ));
        }
        let mut split = split_tags(&req.tag_specifications, &["image", "snapshot"])?;
        let snapshot_tags = split.pop().unwrap_or_default();
        let spec_image_tags = split.pop().unwrap_or_default();
        if let Some(token) = &req.client_token {
            if token.len() > 128 {
                return Err(Ec2Error::invalid_value(
                    "ClientToken must be at most 128 characters",
                ));
            }
            for row in self.catalog.resources(KIND, &caller.region)? {
                if row.account_id == caller.account_id
                    && doc_of(&row)?.client_token.as_deref() == Some(token)
                {
                    return Ok(row.id);
                }
            }
        }
        self.region(&req.source_region)?;
        let source_caller = Caller {
            account_id: caller.account_id.clone(),
            region: req.source_region.clone(),
        };
        let source = self.visible_image(&source_caller, &req.source_image_id)?;
        if source.state != "available" {
            return Err(Ec2Error::client(
                "InvalidAMIID.Unavailable",
                format!(
                    "Image {} is {}; only available images can be copied",
                    source.id, source.state
                ),
            ));
        }
        let source_doc = doc_of(&source)?;
        if source_doc.image_type != "machine" {
            return Err(Ec2Error::client(
                "InvalidRequest",
                "Only machine images can be copied",
            ));
        }
        let mut sources = Vec::new();
        for snap in source_doc.snapshot_ids() {
            let usable = snapshots::usable_snapshot(self, &source_caller, &snap).map_err(|_| {
                Ec2Error::client(
                    "InvalidRequest",
                    "You do not have permission to access the storage of this ami",
                )
            })?;
            sources.push(usable);
        }
        let mut image_tags = Vec::new();
        if req.copy_image_tags && source.account_id == caller.account_id {
            image_tags = self.catalog.tags(&source.id)?;
        }
        for (k, v) in spec_image_tags {
            image_tags.retain(|(key, _)| *key != k);
            image_tags.push((k, v));
        }
        if image_tags.len() > 50 {
            return Err(Ec2Error::client(
                "TagLimitExceeded",
                "The maximum number of tags is 50",
            ));
        }

        let id = ids::new_id("ami");
        let now = now_ms();
        let pairs: Vec<(String, String)> = sources
            .iter()
            .map(|s| (s.id.clone(), ids::new_id("snap")))
            .collect();
        let renamed = |snap: &str| -> Option<String> {
            pairs
                .iter()
                .find(|(src, _)| src == snap)
                .map(|(_, dst)| dst.clone())
        };
        let mut mappings = source_doc.block_device_mappings.clone();
        for m in &mut mappings {
            if let MappingTarget::Ebs(e) = &mut m.target {
                e.snapshot_id = e.snapshot_id.as_deref().and_then(renamed);
                e.encrypted = e.encrypted || req.encrypted == Some(true);
            }
        }
        let template = source_doc
            .instance_store_template
            .as_deref()
            .and_then(renamed);
        let doc = ImageDoc {
            image_location: match &template {
                Some(snap) => snap.clone(),
                None => format!("{}/{}", caller.account_id, req.name),
            },
            name: req.name,
            description: req.description.or(source_doc.description),
            block_device_mappings: mappings,
            instance_store_template: template,
            creation_ms: now,
            deprecation_ms: None,
            deregistration_protection: Protection::Disabled,
            last_launched_ms: None,
            owner_alias: None,
            product_codes: Vec::new(),
            source_image_id: Some(source.id.clone()),
            source_image_region: Some(req.source_region.clone()),
            state_reason: None,
            client_token: req.client_token,
            ..source_doc
        };
        self.insert_image(caller, &id, "pending", &doc, &image_tags, false)?;
        for (source_snap, snap) in &pairs {
            let Some(src) = sources.iter().find(|s| &s.id == source_snap) else {
                continue;
            };
            let snap_doc = SnapshotDoc {
                volume_id: "vol-ffffffff".into(),
                volume_size_gib: src.volume_size_gib,
                description: format!(
                    "Copied for DestinationAmi {id} from SourceAmi {} for SourceSnapshot {source_snap}. Task created on {now}.",
                    source.id
                ),
                progress: 0,
                start_time_ms: now,
                completion_time_ms: None,
                state_message: None,
                encrypted: src.encrypted || req.encrypted == Some(true),
                source: Some((req.source_region.clone(), source_snap.clone())),
                upload: None,
                node: None,
            };
            self.insert_snapshot(caller, snap, &snap_doc, &snapshot_tags)?;
            lock(&self.snapshot_progress).insert(snap.clone(), (String::new(), Arc::default()));
        }
        let job = CopyJob {
            image_id: id.clone(),
            source_region: req.source_region,
            region: caller.region.clone(),
            snapshots: pairs,
        };
        let cloud = Arc::clone(self);
        self.spawn_worker(format!("copy {id}"), move || cloud.run_image_copy(job));
        Ok(id)
    }

    fn run_image_copy(&self, job: CopyJob) {
        let mut failure: Option<String> = None;
        for (src, dst) in &job.snapshots {
            let result = match &failure {
                Some(_) => Err("The image copy failed".to_string()),
                None => self
                    .copy_snapshot_data(&job.source_region, src, &job.region, dst)
                    .map_err(|e| {
                        tracing::error!(image = %job.image_id, snapshot = %dst, error = %e, "image snapshot copy failed");
                        crate::snapshots::copy_failure(&e)
                    }),
            };
            if let Err(reason) = &result
                && failure.is_none()
            {
                failure = Some(format!("{reason} (snapshot {src})"));
            }
            self.finish_snapshot(dst, result);
        }
        if let Err(e) = self.finish_image(&job.image_id, failure) {
            tracing::error!(image = %job.image_id, error = %e, "cannot record image copy completion");
        }
    }

    pub(crate) fn finish_image(&self, id: &str, failure: Option<String>) -> Ec2Result<()> {
        let _writing = writing();
        // The image may have been deregistered while it was being copied.
        let Some(row) = self.catalog.resource(id)? else {
            return Ok(());
        };
        let mut doc = doc_of(&row)?;
        let state = match failure {
            None => "available",
            Some(message) => {
                doc.state_reason = Some(StateReason {
                    code: "Server.InternalError".into(),
                    message,
                });
                "failed"
            }
        };
        self.catalog.update_resource(id, state, &encode(&doc)?)?;
        self.refresh_image(id)
    }
}

/// True if one of `snapshots` is this node's to recover.
fn owns_a_snapshot(cloud: &Cloud, snapshots: &[String]) -> Ec2Result<bool> {
    for snap in snapshots {
        if let Some(row) = cloud.catalog.resource(snap)?
            && cloud.owns_snapshot_row(&row)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Startup recovery of images that were pending (being copied) when openami stopped:
/// after the snapshot recovery has settled their snapshots, an image whose snapshots
/// are all `completed` becomes `available`, any other `failed`.
pub(crate) fn recover(cloud: &Cloud) -> Ec2Result<()> {
    for row in cloud.catalog.resources_of_kind(KIND)? {
        if row.state != "pending" {
            continue;
        }
        let mut doc = doc_of(&row)?;
        if cloud.node().is_some() && !owns_a_snapshot(cloud, &doc.snapshot_ids())? {
            // Another node's copy or CreateImage: that node finishes it.
            continue;
        }
        let mut complete = true;
        for snap in doc.snapshot_ids() {
            let state = cloud.catalog.resource(&snap)?.map(|r| r.state);
            complete &= state.as_deref() == Some("completed");
        }
        // A pending image is a CopyImage (it names its source) or a CreateImage.
        let what = if doc.source_image_id.is_some() {
            "image copy"
        } else {
            "image creation"
        };
        let state = if complete {
            tracing::info!(image = %row.id, "{what} was complete before the restart");
            "available"
        } else {
            tracing::warn!(image = %row.id, "{what} was interrupted: marking the image failed");
            doc.state_reason = Some(StateReason {
                code: "Server.InternalError".into(),
                message: format!("The {what} was interrupted by a restart of the service"),
            });
            "failed"
        };
        cloud
            .catalog
            .update_resource(&row.id, state, &encode(&doc)?)?;
        cloud.refresh_image(&row.id)?;
    }
    Ok(())
}
