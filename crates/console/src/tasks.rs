//! Import and export tasks: ImportImage, ImportSnapshot and ExportImage tasks of the
//! account with their status, progress and result, refreshed live while one is active;
//! start an image import from a URL (or `s3://bucket/key`, which names a file in the
//! operator's import directory), or upload a disk image file (see [`crate::upload`]);
//! cancel an active task.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use engine::query::Page;
use engine::transfers::{
    DiskContainer, EXPORT_IMAGE, IMPORT_IMAGE, IMPORT_SNAPSHOT, ImportImage, TaskView,
};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};

use crate::layout::{self, Frame, confirmed, form};
use crate::{AppState, Form, after, blocking, gate, html, post_gate, when};

/// True while a task can still change.
fn active(status: &str) -> bool {
    matches!(status, "active" | "deleting")
}

fn tasks(cloud: &Cloud, caller: &Caller) -> Ec2Result<Vec<(&'static str, TaskView)>> {
    let mut out = Vec::new();
    for (kind, label) in [
        (IMPORT_IMAGE, "import image"),
        (IMPORT_SNAPSHOT, "import snapshot"),
        (EXPORT_IMAGE, "export image"),
    ] {
        let (views, _) = cloud.describe_tasks(caller, kind, &[], &[], &Page::default())?;
        out.extend(views.into_iter().map(|v| (label, v)));
    }
    out.sort_by_key(|(_, v)| std::cmp::Reverse(v.doc.created_ms));
    Ok(out)
}

fn table(region: &str, rows: &[(&'static str, TaskView)], csrf: &str) -> Markup {
    let live = rows.iter().any(|(_, v)| active(&v.status));
    html! {
        div #live data-live=(if live { "yes" } else { "no" }) {
            table.list #tasks {
                thead { tr { th { "Task" } th { "Kind" } th { "Status" } th { "Progress" } th { "Message" } th { "Result" } th { "Created" } th {} } }
                tbody {
                    @for (kind, v) in rows {
                        tr id=(v.id) {
                            td { code { (v.id) } }
                            td { (kind) }
                            td { span.state.transient[active(&v.status)] data-state=(v.status) { (v.status) } }
                            td { progress max="100" value=(v.doc.progress) {} " " (v.doc.progress) "%" }
                            td { (v.doc.status_message) }
                            td {
                                @if let Some(image) = &v.doc.image_id {
                                    a href={ "/console/" (region) "/images/" (image) } { code { (image) } }
                                }
                                @for d in &v.doc.disks {
                                    @if let Some(s) = &d.snapshot_id { " " code { (s) } }
                                }
                            }
                            td { (when(v.doc.created_ms)) }
                            td {
                                @if active(&v.status) {
                                    (confirmed(&format!("/console/{region}/tasks/{}/cancel", v.id), csrf, html! {}, "Cancel"))
                                }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.empty { "No import or export tasks in this region." } }
        }
    }
}

/// `GET /console/{region}/tasks`.
pub(crate) async fn page(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let found = crate::call_as(&app, &signed, &region, move |cloud, caller| {
        tasks(cloud, caller)
    })
    .await;
    let frame = Frame::new(&app, &signed, &region, "/tasks");
    let csrf = &signed.session.csrf;
    let body = html! {
        h1 { "Import and export tasks" }
        section #import {
            h2 { "Import an image" }
            p { "From an http(s) URL, or " code { "s3://bucket/key" } " for a file in the server's import directory (raw, qcow2, vmdk, vhd, vhdx)." }
            (form(&format!("/console/{region}/tasks/new/import"), csrf, html! {
                label { "Disk image " input type="text" name="source" size="48" placeholder="https://… or s3://bucket/key" required; }
                label { "Description " input type="text" name="description"; }
            }, "Import", ""))
        }
        (crate::upload::form(&region, csrf, app.config.max_upload_bytes))
        @match &found {
            Ok(rows) => (table(&region, rows, csrf)),
            Err(e) => p.flash.failed { (crate::words(e)) },
        }
    };
    html(layout::page(&frame, "Tasks", body))
}

fn import(cloud: &Arc<Cloud>, caller: &Caller, form: &Form) -> Ec2Result<String> {
    let source = form.get("source").trim().to_string();
    let mut disk = DiskContainer::default();
    if let Some(rest) = source.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| Ec2Error::invalid_value(format!("{source} is not s3://bucket/key")))?;
        disk.bucket = Some(bucket.to_string());
        disk.key = Some(key.to_string());
    } else if source.starts_with("http://") || source.starts_with("https://") {
        disk.url = Some(source.clone());
    } else {
        return Err(Ec2Error::invalid_value(format!(
            "{source:?} is neither an http(s) URL nor s3://bucket/key"
        )));
    }
    let task = cloud.import_image(
        caller,
        ImportImage {
            description: form.opt("description"),
            disk_containers: vec![disk],
            ..Default::default()
        },
    )?;
    Ok(format!("Started {} for {source}.", task.id))
}

/// `POST /console/{region}/tasks/{id}/{action}`: `new/import` or `{id}/cancel`.
pub(crate) async fn act(
    State(app): AppState,
    Path((region, id, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (signed, form) = match post_gate(&app, &headers, Some(&region), &body) {
        Ok(ok) => ok,
        Err(refused) => return *refused,
    };
    let caller = signed.caller(&region);
    let outcome = {
        let app = Arc::clone(&app);
        blocking(move || match (id.as_str(), action.as_str()) {
            ("new", "import") => import(&app.cloud, &caller, &form),
            (_, "cancel") => {
                form.confirmed("cancel the task")?;
                let (task, previous, _) = app.cloud.cancel_task(&caller, &id)?;
                Ok(format!("Cancelled {task} (was {previous})."))
            }
            (_, other) => Err(Ec2Error::client(
                "InvalidAction",
                format!("The task action {other} is not known."),
            )),
        })
        .await
    };
    after(&app, &signed, outcome, &format!("/console/{region}/tasks"))
}
