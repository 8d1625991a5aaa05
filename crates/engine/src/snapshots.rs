//! Snapshots: CreateSnapshot, DescribeSnapshots, DeleteSnapshot, CopySnapshot and the
//! createVolumePermission attribute.

use std::sync::Arc;

use blockstore::ResourceId;
use catalog::{ResourceRow, now_ms};
use serde::{Deserialize, Serialize};
use volume::PendingSnapshot;

use crate::query::{
    Filter, Filterable, Page, TagSpecification, check_filters, iso8601, matches, tags_for,
};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock};

/// Catalog kind of snapshots.
pub const KIND: &str = "snapshot";
/// The permission attribute that shares a snapshot.
pub const CREATE_VOLUME_PERMISSION: &str = "createVolumePermission";

/// What the catalog keeps about a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotDoc {
    /// The volume it was taken from (`vol-ffffffff` for copies and uploads, as in AWS).
    pub volume_id: String,
    /// Size of that volume in GiB.
    pub volume_size_gib: i64,
    /// Description.
    pub description: String,
    /// Percent done.
    pub progress: u8,
    /// When it was started.
    pub start_time_ms: i64,
    /// When it completed.
    pub completion_time_ms: Option<i64>,
    /// Why it failed.
    pub state_message: Option<String>,
    /// Encrypted flag.
    pub encrypted: bool,
    /// For copies: the source region and snapshot.
    pub source: Option<(String, String)>,
    /// For EBS direct uploads in progress (StartSnapshot): their parameters.
    #[serde(default)]
    pub upload: Option<crate::ebs::UploadDoc>,
    /// The node whose process stores the snapshot's data (set in a node cluster, see
    /// `crate::nodes`): only that node recovers it after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A snapshot as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotView {
    /// Snapshot id.
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// pending | completed | error.
    pub state: String,
    /// Stored attributes (progress is live while pending).
    pub doc: SnapshotDoc,
    /// Tags (only shown to the owner).
    pub tags: Vec<(String, String)>,
}

impl Filterable for SnapshotView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let d = &self.doc;
        let one = |s: String| Some(vec![s]);
        match name {
            "snapshot-id" => one(self.id.clone()),
            "owner-id" => one(self.owner_id.clone()),
            "status" => one(self.state.clone()),
            "progress" => one(format!("{}%", d.progress)),
            "volume-id" => one(d.volume_id.clone()),
            "volume-size" => one(d.volume_size_gib.to_string()),
            "description" => one(d.description.clone()),
            "start-time" => one(iso8601(d.start_time_ms)),
            "encrypted" => one(d.encrypted.to_string()),
            "storage-tier" => one("standard".into()),
            "owner-alias" => Some(Vec::new()),
            _ => None,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// A snapshot a volume can be created from.
#[derive(Clone, Debug)]
pub(crate) struct UsableSnapshot {
    pub id: String,
    pub volume_size_gib: i64,
    pub encrypted: bool,
}

/// One grant of createVolumePermission: an account id or the group `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grantee {
    /// An account.
    User(String),
    /// Everyone (`Group=all`).
    All,
}

impl Grantee {
    fn as_str(&self) -> &str {
        match self {
            Grantee::User(id) => id,
            Grantee::All => "all",
        }
    }

    fn from_stored(s: &str) -> Self {
        if s == "all" {
            Grantee::All
        } else {
            Grantee::User(s.to_string())
        }
    }
}

pub(crate) fn doc_of(row: &ResourceRow) -> Ec2Result<SnapshotDoc> {
    serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("snapshot document", e))
}

/// The StateMessage of a snapshot whose copy failed with `e`.
pub(crate) fn copy_failure(e: &Ec2Error) -> String {
    if e.is_out_of_storage() {
        e.message.clone()
    } else {
        "Snapshot data could not be copied".to_string()
    }
}

pub(crate) fn encode(doc: &SnapshotDoc) -> Ec2Result<String> {
    serde_json::to_string(doc).map_err(|e| Ec2Error::internal("snapshot document", e))
}

fn rid(id: &str) -> Ec2Result<ResourceId> {
    ResourceId::new(id).map_err(|e| Ec2Error::internal("resource id", e))
}

/// Can `caller` see (and create volumes from) this snapshot row?
pub(crate) fn visible(caller: &Caller, row: &ResourceRow, grantees: &[String]) -> bool {
    row.kind == KIND
        && row.region == caller.region
        && (row.account_id == caller.account_id
            || grantees
                .iter()
                .any(|g| g == "all" || *g == caller.account_id))
}

/// The snapshot `id` if `caller` may create a volume from it and it is completed.
pub(crate) fn usable_snapshot(
    cloud: &Cloud,
    caller: &Caller,
    id: &str,
) -> Ec2Result<UsableSnapshot> {
    ids::check("snap", "InvalidSnapshotID.Malformed", id)?;
    let row = cloud.catalog.resource(id)?;
    let grantees = cloud.catalog.permissions(id, CREATE_VOLUME_PERMISSION)?;
    let row = match row {
        Some(row) if visible(caller, &row, &cloud.effective_grantees(&row, &grantees)?) => row,
        _ => {
            return Err(Ec2Error::not_found(
                "InvalidSnapshot.NotFound",
                "snapshot",
                id,
            ));
        }
    };
    if row.state != "completed" {
        return Err(Ec2Error::client(
            "IncorrectState",
            format!(
                "Snapshot '{id}' is not in the completed state ({})",
                row.state
            ),
        ));
    }
    let doc = doc_of(&row)?;
    Ok(UsableSnapshot {
        id: row.id,
        volume_size_gib: doc.volume_size_gib,
        encrypted: doc.encrypted,
    })
}

/// Marks a snapshot whose data was stored before openami stopped as completed.
pub(crate) fn mark_completed(cloud: &Cloud, row: &ResourceRow) -> Ec2Result<()> {
    let mut doc = doc_of(row)?;
    doc.progress = 100;
    doc.completion_time_ms.get_or_insert_with(now_ms);
    cloud
        .catalog
        .update_resource(&row.id, "completed", &encode(&doc)?)?;
    Ok(())
}

/// Marks a snapshot that was pending when openami stopped as failed.
pub(crate) fn fail_interrupted(cloud: &Cloud, row: &ResourceRow) -> Ec2Result<()> {
    let mut doc = doc_of(row)?;
    tracing::warn!(snapshot = %row.id, "snapshot creation was interrupted by a restart: marking it error");
    doc.state_message =
        Some("Snapshot creation was interrupted by a restart of the service".into());
    cloud
        .catalog
        .update_resource(&row.id, "error", &encode(&doc)?)?;
    Ok(())
}

impl Cloud {
    /// Records the end of a snapshot's background work: `completed`, or `error` with the
    /// reason.
    pub(crate) fn finish_snapshot(&self, id: &str, result: Result<(), String>) {
        let outcome = self.record_until_space("snapshot end", || -> Ec2Result<()> {
            let Some(row) = self.catalog.resource(id)? else {
                return Ok(());
            };
            let mut doc = doc_of(&row)?;
            let state = match &result {
                Ok(()) => {
                    doc.progress = 100;
                    doc.completion_time_ms = Some(now_ms());
                    "completed"
                }
                Err(reason) => {
                    doc.state_message = Some(reason.clone());
                    "error"
                }
            };
            self.catalog.update_resource(id, state, &encode(&doc)?)?;
            Ok(())
        });
        if let Err(e) = outcome {
            tracing::error!(snapshot = %id, error = %e, "cannot record snapshot completion");
        }
        lock(&self.snapshot_progress).remove(id);
    }

    pub(crate) fn insert_snapshot(
        &self,
        caller: &Caller,
        id: &str,
        doc: &SnapshotDoc,
        tags: &[(String, String)],
    ) -> Ec2Result<()> {
        let mut doc = doc.clone();
        doc.node = self.node().map(|n| n.id.clone());
        self.catalog.insert_resource_with_tags(
            &ResourceRow {
                id: id.to_string(),
                kind: KIND.into(),
                account_id: caller.account_id.clone(),
                region: caller.region.clone(),
                state: "pending".into(),
                doc: encode(&doc)?,
                created_at_ms: doc.start_time_ms,
            },
            tags,
        )?;
        Ok(())
    }

    /// CreateSnapshot: fixes the point in time now; the data is stored in the background
    /// (`pending` → `completed`).
    pub fn create_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        volume_id: &str,
        description: Option<String>,
        tag_specifications: &[TagSpecification],
    ) -> Ec2Result<SnapshotView> {
        let tags = tags_for(tag_specifications, "snapshot")?;
        let (view, pending) = self.begin_volume_snapshot(caller, volume_id, description, tags)?;
        let cloud = Arc::clone(self);
        let snap = view.id.clone();
        self.spawn_worker(format!("snapshot {snap}"), move || {
            cloud.store_snapshot(pending);
        });
        Ok(view)
    }

    /// Fixes the point in time of a snapshot of one of the caller's volumes and records
    /// it as `pending`; [`Cloud::store_snapshot`] then stores its data.
    pub(crate) fn begin_volume_snapshot(
        &self,
        caller: &Caller,
        volume_id: &str,
        description: Option<String>,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<(SnapshotView, PendingSnapshot)> {
        let description = description.unwrap_or_default();
        if description.len() > 255 {
            return Err(Ec2Error::invalid_value(
                "Description must be at most 255 characters",
            ));
        }
        // Until the snapshot is in `snapshot_progress`, DeleteVolume must wait.
        let _lifecycle = lock(&self.volume_lifecycle);
        let row = self.owned_volume(caller, volume_id)?;
        let volume_doc = self.view_volume(&row, Vec::new())?.doc;
        let handle = self.volume_handle(&row.region, &row.id)?;
        let id = ids::new_id("snap");
        let pending = handle.begin_snapshot(rid(&id)?).map_err(|e| match e {
            volume::VolumeError::SnapshotInProgress { .. } => Ec2Error::client(
                "SnapshotCreationPerVolumeRateExceeded",
                "The maximum per volume CreateSnapshot request rate has been exceeded. Wait for the previous snapshot to complete.",
            ),
            other => other.into(),
        })?;
        let doc = SnapshotDoc {
            volume_id: row.id.clone(),
            volume_size_gib: volume_doc.size_gib,
            description,
            progress: 0,
            start_time_ms: now_ms(),
            completion_time_ms: None,
            state_message: None,
            encrypted: volume_doc.encrypted,
            source: None,
            upload: None,
            node: None,
        };
        self.insert_snapshot(caller, &id, &doc, &tags)?;
        lock(&self.snapshot_progress).insert(id.clone(), (row.id.clone(), pending.progress()));
        Ok((
            SnapshotView {
                id,
                owner_id: caller.account_id.clone(),
                state: "pending".into(),
                doc,
                tags,
            },
            pending,
        ))
    }

    /// Stores the data of a snapshot begun by [`Cloud::begin_volume_snapshot`] and records
    /// the outcome; true if it completed.
    pub(crate) fn store_snapshot(&self, pending: PendingSnapshot) -> bool {
        let snap = pending.snapshot_id().to_string();
        let result = pending.run().map(|_| ()).map_err(|e| {
            tracing::error!(snapshot = %snap, error = %e, "snapshot failed");
            if e.is_storage_full() {
                crate::error::OUT_OF_STORAGE.to_string()
            } else {
                "Snapshot data could not be stored".to_string()
            }
        });
        let ok = result.is_ok();
        self.finish_snapshot(&snap, result);
        ok
    }

    fn view_snapshot(
        &self,
        row: &ResourceRow,
        caller: &Caller,
        tags: Vec<(String, String)>,
    ) -> Ec2Result<SnapshotView> {
        let mut doc = doc_of(row)?;
        if row.state == "pending"
            && let Some((_, progress)) = lock(&self.snapshot_progress).get(&row.id)
        {
            doc.progress = progress.percent().min(99);
        }
        Ok(SnapshotView {
            id: row.id.clone(),
            owner_id: row.account_id.clone(),
            state: row.state.clone(),
            doc,
            // Tags are the owner's business.
            tags: if row.account_id == caller.account_id {
                tags
            } else {
                Vec::new()
            },
        })
    }

    /// DescribeSnapshots.
    #[allow(clippy::too_many_arguments)]
    pub fn describe_snapshots(
        &self,
        caller: &Caller,
        snapshot_ids: &[String],
        owner_ids: &[String],
        restorable_by: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<SnapshotView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(5, 1000, !snapshot_ids.is_empty())?;
        for id in snapshot_ids {
            ids::check("snap", "InvalidSnapshotID.Malformed", id)?;
        }
        let owners: Vec<String> = owner_ids
            .iter()
            .map(|o| {
                if o == "self" {
                    caller.account_id.clone()
                } else {
                    o.clone()
                }
            })
            .collect();
        for o in &owners {
            if !ids::is_account_id(o) && o != "amazon" && o != "aws-marketplace" {
                return Err(Ec2Error::invalid_value(format!("Invalid owner id: {o}")));
            }
        }
        let restorable: Vec<String> = restorable_by
            .iter()
            .map(|r| {
                if r == "self" {
                    caller.account_id.clone()
                } else {
                    r.clone()
                }
            })
            .collect();
        let grants = self.catalog.all_permissions(CREATE_VOLUME_PERMISSION)?;
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for row in self.catalog.resources(KIND, &caller.region)? {
            let grantees = grants.get(&row.id).map(Vec::as_slice).unwrap_or(&[]);
            let grantees = &self.effective_grantees(&row, grantees)?;
            if !visible(caller, &row, grantees) {
                continue;
            }
            if !snapshot_ids.is_empty() && !snapshot_ids.contains(&row.id) {
                continue;
            }
            if !owners.is_empty() && !owners.contains(&row.account_id) {
                continue;
            }
            if !restorable.is_empty()
                && !restorable
                    .iter()
                    .any(|r| *r == row.account_id || grantees.iter().any(|g| g == "all" || g == r))
            {
                continue;
            }
            let view = self.view_snapshot(
                &row,
                caller,
                all_tags.get(&row.id).cloned().unwrap_or_default(),
            )?;
            if matches(&view, filters)? {
                out.push(view);
            }
        }
        for id in snapshot_ids {
            if !out.iter().any(|s| &s.id == id) {
                // Filtered out is fine; invisible or absent is an error.
                let row = self.catalog.resource(id)?;
                let grantees = self.catalog.permissions(id, CREATE_VOLUME_PERMISSION)?;
                let seen = match row {
                    Some(r) => visible(caller, &r, &self.effective_grantees(&r, &grantees)?),
                    None => false,
                };
                if !seen {
                    return Err(Ec2Error::not_found(
                        "InvalidSnapshot.NotFound",
                        "snapshot",
                        id,
                    ));
                }
            }
        }
        Ok(page.apply(out, |s| &s.id))
    }

    /// The caller's own snapshot, or `InvalidSnapshot.NotFound`.
    pub(crate) fn owned_snapshot(&self, caller: &Caller, id: &str) -> Ec2Result<ResourceRow> {
        ids::check("snap", "InvalidSnapshotID.Malformed", id)?;
        self.owned_row(caller, KIND, id)?
            .ok_or_else(|| Ec2Error::not_found("InvalidSnapshot.NotFound", "snapshot", id))
    }

    /// DeleteSnapshot. Refused while a registered image uses it.
    pub fn delete_snapshot(&self, caller: &Caller, id: &str) -> Ec2Result<()> {
        // One delete at a time, and no image registered between the check below and
        // the delete (see `images::writing`).
        let _writing = crate::images::writing();
        let row = self.owned_snapshot(caller, id)?;
        if row.state == "pending" {
            return Err(Ec2Error::client(
                "IncorrectState",
                format!("Snapshot '{id}' is pending; wait for it to complete"),
            ));
        }
        if let Some(image) = self.image_using_snapshot(id)? {
            return Err(Ec2Error::client(
                "InvalidSnapshot.InUse",
                format!("The snapshot {id} is currently in use by {image}"),
            ));
        }
        let storage = self.region(&row.region)?;
        let snap = rid(id)?;
        if storage.store.snapshot_exists(&snap)? {
            storage.store.delete_snapshot(&snap)?;
        }
        self.catalog.delete_resource(id)?;
        Ok(())
    }

    /// The image (if any) whose block device mapping uses a snapshot.
    pub(crate) fn image_using_snapshot(&self, snapshot_id: &str) -> Ec2Result<Option<String>> {
        crate::images::image_using_snapshot(self, snapshot_id)
    }

    /// DescribeSnapshotAttribute(createVolumePermission): only the owner may ask.
    pub fn snapshot_permissions(&self, caller: &Caller, id: &str) -> Ec2Result<Vec<Grantee>> {
        self.owned_snapshot(caller, id)?;
        Ok(self
            .catalog
            .permissions(id, CREATE_VOLUME_PERMISSION)?
            .iter()
            .map(|g| Grantee::from_stored(g))
            .collect())
    }

    /// ModifySnapshotAttribute(createVolumePermission): add and remove grants.
    pub fn modify_snapshot_permissions(
        &self,
        caller: &Caller,
        id: &str,
        add: &[Grantee],
        remove: &[Grantee],
    ) -> Ec2Result<()> {
        self.owned_snapshot(caller, id)?;
        self.check_public_sharing(caller, add)?;
        for g in add.iter().chain(remove) {
            if let Grantee::User(user) = g
                && !ids::is_account_id(user)
            {
                return Err(Ec2Error::client(
                    "InvalidUserID.Malformed",
                    format!("User ID '{user}' is invalid"),
                ));
            }
        }
        for g in add {
            self.catalog
                .add_permission(id, CREATE_VOLUME_PERMISSION, g.as_str())?;
        }
        for g in remove {
            self.catalog
                .remove_permission(id, CREATE_VOLUME_PERMISSION, g.as_str())?;
        }
        Ok(())
    }

    /// ResetSnapshotAttribute(createVolumePermission): back to private.
    pub fn reset_snapshot_permissions(&self, caller: &Caller, id: &str) -> Ec2Result<()> {
        self.owned_snapshot(caller, id)?;
        self.catalog
            .clear_permissions(id, CREATE_VOLUME_PERMISSION)?;
        Ok(())
    }

    /// CopySnapshot into the caller's region from `source_region` (which may be the
    /// same). Only blocks the destination store lacks are copied. Returns the new id.
    pub fn copy_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        source_region: &str,
        source_id: &str,
        description: Option<String>,
        tag_specifications: &[TagSpecification],
    ) -> Ec2Result<(String, Vec<(String, String)>)> {
        let tags = tags_for(tag_specifications, "snapshot")?;
        self.region(source_region)?;
        let source_caller = Caller {
            account_id: caller.account_id.clone(),
            region: source_region.to_string(),
        };
        let source = usable_snapshot(self, &source_caller, source_id)?;
        let id = ids::new_id("snap");
        let doc = SnapshotDoc {
            volume_id: "vol-ffffffff".into(),
            volume_size_gib: source.volume_size_gib,
            description: description
                .unwrap_or_else(|| format!("[Copied {source_id} from {source_region}]")),
            progress: 0,
            start_time_ms: now_ms(),
            completion_time_ms: None,
            state_message: None,
            encrypted: source.encrypted,
            source: Some((source_region.to_string(), source_id.to_string())),
            upload: None,
            node: None,
        };
        self.insert_snapshot(caller, &id, &doc, &tags)?;
        let cloud = Arc::clone(self);
        let (src_region, src_id, new_id) =
            (source_region.to_string(), source_id.to_string(), id.clone());
        let dst_region = caller.region.clone();
        lock(&self.snapshot_progress).insert(id.clone(), (String::new(), Arc::default()));
        self.spawn_worker(format!("copy {id}"), move || {
            let result = cloud.copy_snapshot_data(&src_region, &src_id, &dst_region, &new_id);
            cloud.finish_snapshot(
                &new_id,
                result.map_err(|e| {
                    tracing::error!(snapshot = %new_id, error = %e, "snapshot copy failed");
                    copy_failure(&e)
                }),
            );
        });
        Ok((id, tags))
    }

    /// Copies a snapshot's manifest, and the blocks the destination lacks, between
    /// region stores (in parallel: see [`crate::snapshot_copy`]).
    pub(crate) fn copy_snapshot_data(
        &self,
        src_region: &str,
        src_id: &str,
        dst_region: &str,
        dst_id: &str,
    ) -> Ec2Result<()> {
        let src = self.region(src_region)?;
        let dst = self.region(dst_region)?;
        let progress = lock(&self.snapshot_progress)
            .get(dst_id)
            .map(|(_, p)| Arc::clone(p));
        crate::snapshot_copy::copy_snapshot_blocks(
            &src.store,
            &dst.store,
            &rid(src_id)?,
            &rid(dst_id)?,
            progress.as_deref(),
        )?;
        Ok(())
    }
}
mod public_access;
