//! VM import/export: ImportImage, ImportSnapshot, ExportImage, their Describe…Tasks and
//! Cancel…Task actions.
//!
//! openami has no S3, so an `S3Bucket`/`S3Key` (or an `s3://bucket/key` URL) names a
//! file under the operator's *import directory*, `<import-dir>/<bucket>/<key>`, and an
//! export's `S3Bucket`/`S3Prefix` a place under the *export directory*,
//! `<export-dir>/<bucket>/<prefix><export-ami-…>.<format>`. Anything that would leave
//! those directories (`..`, absolute keys, symlinks pointing out) is refused. Imports
//! also take `http(s)://` URLs, downloaded into the data directory first; such a URL
//! may not name an internal address (loopback, link-local, private, …) unless the
//! operator's `--import-url-allow` list opens it: see [`urlguard`] for the rules
//! (resolved once, every address and every redirect checked, no DNS rebinding).
//!
//! Error messages name the client's own locations (`s3://bucket/key` or the URL), never
//! the server's directories.
//!
//! Images are read with the `diskimage` crate (raw, qcow2, vmdk, vhd, vhdx; hostile
//! images are refused before any data is read) and stored block by block like any
//! snapshot, so blocks shared with other snapshots are stored once.
//!
//! A task is a catalog row (kinds [`IMPORT_IMAGE`], [`IMPORT_SNAPSHOT`],
//! [`EXPORT_IMAGE`]) whose document is a [`TaskDoc`]; its work runs on a worker thread
//! and reports progress in memory. States follow EC2: `active` → `completed`, or
//! `deleting` → `deleted` when cancelled or failed (`error` for snapshot imports, which
//! the SDK's `snapshot_imported` waiter treats as failure). After a restart, tasks that
//! were active start over from the beginning (their partial output is discarded) and
//! tasks being cancelled finish as `deleted`.

mod export;
mod import;
mod source;
mod staged;
pub mod urlguard;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use catalog::{ResourceRow, now_ms};
use serde::{Deserialize, Serialize};

pub use export::ExportImage;
pub use import::{DiskContainer, ImportImage, ImportSnapshot};
pub use staged::{SnapshotImage, StagedUpload};
pub use urlguard::UrlPolicy;

use crate::query::{Filter, Page, check_filters};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, lock};

/// Catalog kind of ImportImage tasks (`import-ami-…`).
pub const IMPORT_IMAGE: &str = "import-image-task";
/// Catalog kind of ImportSnapshot tasks (`import-snap-…`).
pub const IMPORT_SNAPSHOT: &str = "import-snapshot-task";
/// Catalog kind of ExportImage tasks (`export-ami-…`).
pub const EXPORT_IMAGE: &str = "export-image-task";

/// Where imports come from and exports go.
#[derive(Clone, Debug, Default)]
pub struct TransferConfig {
    /// `<dir>/<bucket>/<key>` is what an import's S3 location names.
    pub import_dir: Option<PathBuf>,
    /// Exports are written under `<dir>/<bucket>/`.
    pub export_dir: Option<PathBuf>,
    /// What `http(s)://` imports may reach.
    pub url_policy: UrlPolicy,
}

impl TransferConfig {
    /// `message` with the server's directories replaced by the client's names: a path
    /// under the import or export directory becomes `s3://bucket/key`, one under the
    /// data directory `<data-dir>/…`.
    pub(crate) fn hide_paths(&self, message: &str, data_dir: &std::path::Path) -> String {
        let mut out = message.to_string();
        let mut roots: Vec<(PathBuf, &str, &str)> = Vec::new();
        let mut add = |dir: &std::path::Path, under: &'static str, bare: &'static str| {
            if let Ok(real) = dir.canonicalize() {
                roots.push((real, under, bare));
            }
            if dir.is_absolute() {
                roots.push((dir.to_path_buf(), under, bare));
            }
        };
        if let Some(dir) = &self.import_dir {
            add(dir, "s3://", "the import directory");
        }
        if let Some(dir) = &self.export_dir {
            add(dir, "s3://", "the export directory");
        }
        add(data_dir, "<data-dir>/", "the data directory");
        // Longest first, so that a directory inside another is replaced whole.
        roots.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.as_os_str().len()));
        for (root, under, bare) in roots {
            let text = root.to_string_lossy();
            let text = text.trim_end_matches('/');
            if text.is_empty() {
                continue;
            }
            out = out.replace(&format!("{text}/"), under);
            out = out.replace(text, bare);
        }
        out
    }
}

/// An import's source as the request gave it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceSpec {
    /// `Format` (VMDK, RAW, VHD, VHDX, QCOW2; checked against the file).
    pub format: Option<String>,
    /// `Url`.
    pub url: Option<String>,
    /// `UserBucket.S3Bucket`.
    pub bucket: Option<String>,
    /// `UserBucket.S3Key`.
    pub key: Option<String>,
    /// `Description` of the disk.
    pub description: Option<String>,
    /// `DeviceName` (ImportImage).
    pub device_name: Option<String>,
    /// A file uploaded through the web console: its staging file's name (see
    /// [`staged`]); the task deletes it when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// The uploaded file's name as the browser sent it (for messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_name: Option<String>,
}

/// One disk of an import.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DiskDetail {
    /// Where it comes from.
    pub source: SourceSpec,
    /// An existing snapshot used as the disk (ImportImage `SnapshotId`).
    pub given_snapshot: Option<String>,
    /// Format found in the source file.
    pub detected_format: Option<String>,
    /// Size of the source file in bytes.
    pub disk_image_size: Option<u64>,
    /// The snapshot holding the disk (set when its conversion starts).
    pub snapshot_id: Option<String>,
    /// `completed` once its snapshot is stored.
    pub status: String,
}

/// What the catalog keeps about a task.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TaskDoc {
    /// `Description`.
    pub description: Option<String>,
    /// Human status, e.g. `converting`, `completed`, `ClientError: …`.
    pub status_message: String,
    /// Progress of the last stored state, percent.
    pub progress: u8,
    /// Imports: one entry per disk.
    pub disks: Vec<DiskDetail>,
    /// The AMI an ImportImage created, or the one an ExportImage exports.
    pub image_id: Option<String>,
    /// ImportImage: `Architecture` (default x86_64).
    pub architecture: Option<String>,
    /// ImportImage: `Platform` (Linux or Windows).
    pub platform: Option<String>,
    /// ImportImage: `BootMode`.
    pub boot_mode: Option<String>,
    /// ImportImage: `LicenseType`.
    pub license_type: Option<String>,
    /// `Encrypted`.
    pub encrypted: bool,
    /// ExportImage: `DiskImageFormat` (VMDK, RAW, VHD, QCOW2).
    pub export_format: Option<String>,
    /// ExportImage: `S3ExportLocation.S3Bucket`.
    pub export_bucket: Option<String>,
    /// ExportImage: `S3ExportLocation.S3Prefix`.
    pub export_prefix: Option<String>,
    /// `RoleName` (recorded).
    pub role_name: Option<String>,
    /// `ClientToken`.
    pub client_token: Option<String>,
    /// When the task was created.
    pub created_ms: i64,
}

/// A task as Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// active | completed | deleting | deleted | error.
    pub status: String,
    /// Stored attributes (progress is live while active).
    pub doc: TaskDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// Live progress of a running task and its cancel flag.
#[derive(Debug, Default)]
pub(crate) struct TaskProgress {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
}

impl TaskProgress {
    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total.max(1), Ordering::Relaxed);
    }

    pub(crate) fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn percent(&self) -> u8 {
        let total = self.total.load(Ordering::Relaxed).max(1);
        (self.done.load(Ordering::Relaxed).min(total) * 100 / total) as u8
    }
}

/// Registry of running tasks.
#[derive(Debug, Default)]
pub struct TaskRegistry {
    running: std::sync::Mutex<HashMap<String, Arc<TaskProgress>>>,
}

/// Why a task stopped early.
#[derive(Debug)]
pub(crate) enum TaskFailure {
    /// CancelImportTask / CancelExportTask.
    Cancelled,
    /// The input or the request was at fault (`ClientError: …`).
    Client(String),
    /// openami failed (`ServerError: …`).
    Server(String),
}

/// A block store failure of a task: a full disk says so (`ServerError: The server is out
/// of storage space…`); anything else reports the error (paths are hidden later).
impl From<blockstore::BlockStoreError> for TaskFailure {
    fn from(e: blockstore::BlockStoreError) -> Self {
        if e.is_storage_full() {
            tracing::warn!(error = %e, "import: out of storage");
            TaskFailure::Server(crate::error::OUT_OF_STORAGE.into())
        } else {
            TaskFailure::Server(e.to_string())
        }
    }
}

impl From<Ec2Error> for TaskFailure {
    fn from(e: Ec2Error) -> Self {
        if e.status >= 500 {
            TaskFailure::Server(e.message)
        } else {
            TaskFailure::Client(e.message)
        }
    }
}

impl From<catalog::CatalogError> for TaskFailure {
    fn from(e: catalog::CatalogError) -> Self {
        Ec2Error::from(e).into()
    }
}

pub(crate) fn doc_of(row: &ResourceRow) -> Ec2Result<TaskDoc> {
    serde_json::from_str(&row.doc).map_err(|e| Ec2Error::internal("task document", e))
}

fn encode(doc: &TaskDoc) -> Ec2Result<String> {
    serde_json::to_string(doc).map_err(|e| Ec2Error::internal("task document", e))
}

/// The id prefix of a task kind.
fn prefix(kind: &str) -> &'static str {
    match kind {
        IMPORT_IMAGE => "import-ami",
        IMPORT_SNAPSHOT => "import-snap",
        _ => "export-ami",
    }
}

fn task_not_found(kind: &str, id: &str) -> Ec2Error {
    let code = if kind == EXPORT_IMAGE {
        "InvalidExportImageTaskId.NotFound"
    } else {
        "InvalidConversionTaskId.NotFound"
    };
    Ec2Error::client(code, format!("The task ID '{id}' does not exist"))
}

impl Cloud {
    /// Records a new `active` task of `kind` and starts its worker.
    pub(crate) fn start_task(
        self: &Arc<Self>,
        caller: &Caller,
        kind: &'static str,
        doc: TaskDoc,
        tags: &[(String, String)],
    ) -> Ec2Result<TaskView> {
        let id = crate::ids::new_id(prefix(kind));
        let row = ResourceRow {
            id: id.clone(),
            kind: kind.into(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            state: "active".into(),
            doc: encode(&doc)?,
            created_at_ms: doc.created_ms,
        };
        self.catalog.insert_resource_with_tags(&row, tags)?;
        self.run_task_in_background(row);
        Ok(TaskView {
            id,
            status: "active".into(),
            doc,
            tags: tags.to_vec(),
        })
    }

    /// The caller's task of `kind` created with ClientToken `token`, if any.
    pub(crate) fn existing_task(
        &self,
        caller: &Caller,
        kind: &str,
        token: &str,
    ) -> Ec2Result<Option<TaskView>> {
        for row in self.catalog.resources(kind, &caller.region)? {
            let doc = doc_of(&row)?;
            if row.account_id == caller.account_id && doc.client_token.as_deref() == Some(token) {
                return Ok(Some(TaskView {
                    id: row.id.clone(),
                    status: row.state.clone(),
                    doc,
                    tags: self.catalog.tags(&row.id)?,
                }));
            }
        }
        Ok(None)
    }

    fn run_task_in_background(self: &Arc<Self>, row: ResourceRow) {
        let progress = Arc::new(TaskProgress::default());
        lock(&self.tasks.running).insert(row.id.clone(), Arc::clone(&progress));
        let cloud = Arc::clone(self);
        self.spawn_worker(format!("task {}", row.id), move || {
            let result = match row.kind.as_str() {
                IMPORT_IMAGE | IMPORT_SNAPSHOT => cloud.run_import(&row, &progress),
                _ => cloud.run_export(&row, &progress),
            };
            // The upload goes first, so a task seen ended has no staging file left.
            cloud.remove_staged_of(&row);
            cloud.finish_task(&row, result);
            lock(&cloud.tasks.running).remove(&row.id);
        });
    }

    /// Updates a task's stored status message (and progress) while it runs.
    pub(crate) fn task_status(&self, id: &str, message: &str, progress: u8) {
        let result = (|| -> Ec2Result<()> {
            let Some(row) = self.catalog.resource(id)? else {
                return Ok(());
            };
            if row.state != "active" {
                return Ok(());
            }
            let mut doc = doc_of(&row)?;
            doc.status_message = message.into();
            doc.progress = progress;
            self.catalog
                .update_resource(id, &row.state, &encode(&doc)?)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(task = %id, error = %e, "cannot record task status");
        }
    }

    /// Records how a task ended; `done` fills in what it produced.
    fn finish_task(&self, row: &ResourceRow, result: Result<TaskDoc, TaskFailure>) {
        let outcome = self.record_until_space("task end", || -> Ec2Result<()> {
            let Some(current) = self.catalog.resource(&row.id)? else {
                return Ok(());
            };
            let (state, doc) = match &result {
                Ok(doc) => ("completed", doc.clone()),
                Err(failure) => {
                    let mut doc = doc_of(&current)?;
                    let hide = |m: &str| self.transfers.hide_paths(m, self.data_dir().root());
                    doc.status_message = match failure {
                        TaskFailure::Cancelled => "Canceled by the user".into(),
                        TaskFailure::Client(m) => format!("ClientError: {}", hide(m)),
                        TaskFailure::Server(m) => format!("ServerError: {}", hide(m)),
                    };
                    let failed = if row.kind == IMPORT_SNAPSHOT && current.state != "deleting" {
                        "error"
                    } else {
                        "deleted"
                    };
                    (failed, doc)
                }
            };
            self.catalog
                .update_resource(&row.id, state, &encode(&doc)?)?;
            Ok(())
        });
        if let Err(e) = outcome {
            tracing::error!(task = %row.id, error = %e, "cannot record task end");
        }
    }

    /// Describe…Tasks for one kind.
    pub fn describe_tasks(
        &self,
        caller: &Caller,
        kind: &str,
        ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<TaskView>, Option<String>)> {
        check_filters(filters)?;
        let mut page = page.clone();
        page.check(1, 500, false)?;
        let mut out = Vec::new();
        for row in self.catalog.resources(kind, &caller.region)? {
            if row.account_id != caller.account_id || (!ids.is_empty() && !ids.contains(&row.id)) {
                continue;
            }
            let mut doc = doc_of(&row)?;
            if row.state == "active"
                && let Some(p) = lock(&self.tasks.running).get(&row.id)
            {
                doc.progress = p.percent().min(99);
            }
            let view = TaskView {
                id: row.id.clone(),
                status: row.state.clone(),
                doc,
                tags: self.catalog.tags(&row.id)?,
            };
            let keep = filters.iter().all(|f| {
                let values: Vec<String> = match f.name.as_str() {
                    "task-state" => vec![view.status.clone()],
                    n => crate::query::tag_filter_values(&view.tags, n).unwrap_or_default(),
                };
                f.values
                    .iter()
                    .any(|p| values.iter().any(|v| crate::query::wildcard_match(p, v)))
            });
            if keep {
                out.push(view);
            }
        }
        if let Some(missing) = ids.iter().find(|id| !out.iter().any(|t| &t.id == *id)) {
            return Err(task_not_found(kind, missing));
        }
        Ok(page.apply(out, |t| &t.id))
    }

    /// CancelImportTask / CancelExportTask: returns (task id, previous state, state).
    pub fn cancel_task(&self, caller: &Caller, id: &str) -> Ec2Result<(String, String, String)> {
        let kind = if id.starts_with("export-ami-") {
            EXPORT_IMAGE
        } else if id.starts_with("import-snap-") {
            IMPORT_SNAPSHOT
        } else {
            IMPORT_IMAGE
        };
        let row = self
            .owned_row(caller, kind, id)?
            .ok_or_else(|| task_not_found(kind, id))?;
        if row.state != "active" {
            return Err(Ec2Error::client(
                "IncorrectState",
                format!(
                    "The task {id} is {}; only active tasks can be canceled",
                    row.state
                ),
            ));
        }
        let doc = doc_of(&row)?;
        self.catalog
            .update_resource(id, "deleting", &encode(&doc)?)?;
        if let Some(p) = lock(&self.tasks.running).get(id) {
            p.cancelled.store(true, Ordering::Relaxed);
        }
        Ok((id.to_string(), "active".into(), "deleting".into()))
    }

    /// After a restart: active tasks start over, cancellations finish.
    pub(crate) fn resume_tasks(self: &Arc<Self>) -> Ec2Result<()> {
        for kind in [IMPORT_IMAGE, IMPORT_SNAPSHOT, EXPORT_IMAGE] {
            for row in self.catalog.resources_of_kind(kind)? {
                match row.state.as_str() {
                    "active" => {
                        tracing::info!(task = %row.id, "restarting a task interrupted by a restart");
                        self.run_task_in_background(row);
                    }
                    "deleting" => {
                        let mut doc = doc_of(&row)?;
                        doc.status_message = "Canceled by the user".into();
                        self.catalog
                            .update_resource(&row.id, "deleted", &encode(&doc)?)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The transfer directories.
    pub fn transfer_config(&self) -> &TransferConfig {
        &self.transfers
    }
}

/// Milliseconds now (task creation).
pub(crate) fn created_now() -> i64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_become_client_names() {
        let base = tempfile::tempdir().unwrap();
        let imports = base.path().join("imports");
        let data = base.path().join("data");
        std::fs::create_dir_all(imports.join("bucket")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let config = TransferConfig {
            import_dir: Some(imports.clone()),
            ..Default::default()
        };
        let msg = format!(
            "{}/bucket/evil.qcow2: refused qcow2 image: it has a backing file {}/bucket/b.raw; \
             cannot write {}/transfers/x: denied",
            imports.canonicalize().unwrap().display(),
            imports.display(),
            data.display()
        );
        let hidden = config.hide_paths(&msg, &data);
        assert!(
            !hidden.contains(&*base.path().to_string_lossy()),
            "{hidden}"
        );
        assert!(
            hidden.starts_with("s3://bucket/evil.qcow2: refused"),
            "{hidden}"
        );
        assert!(
            hidden.contains("backing file s3://bucket/b.raw"),
            "{hidden}"
        );
        assert!(hidden.contains("<data-dir>/transfers/x"), "{hidden}");
    }
}
