//! Disk images in and out of the browser: upload a disk image file (raw, qcow2, vmdk,
//! vhd, vhdx) into a snapshot or an image, and download a snapshot as a raw disk.
//!
//! Upload (`POST /console/{r}/upload`, `multipart/form-data`): the fields `csrf`, `kind`
//! (`snapshot` or `image`), `description` and `format` come first, the `file` last. The
//! CSRF token is checked before a byte of the file is stored (from the `csrf` field, or
//! from the `X-CSRF-Token` header the console's script sends). The file is streamed chunk
//! by chunk to a staging file in the data directory (never held in memory), at most
//! [`ConsoleConfig::max_upload_bytes`](crate::ConsoleConfig); then the engine's own
//! ImportSnapshot/ImportImage task takes the file over as the signed-in account (same
//! format detection and hostile-image checks, same task in Describe…Tasks and on the
//! tasks page) and deletes it when it ends.
//!
//! Without JavaScript the form posts normally and the browser is sent to the tasks page
//! with the outcome. `console.js` sends the same form with XMLHttpRequest to show upload
//! progress; it sends the header `X-CSRF-Token`, and gets back `text/plain`: the page to
//! go to (200), or what was wrong in words (4xx).
//!
//! Download (`GET /console/{r}/snapshots/{id}/download`): the snapshot's whole disk as raw
//! bytes (`Content-Length` = volume size, blocks read one at a time from the block store,
//! blocks it does not store as zeros), for snapshots the account may create volumes from
//! (its own, or shared with it); others are 404 and nothing is sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::transfers::StagedUpload;
use engine::{Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::audit::Outcome;
use crate::session::{self, Flash};
use crate::{AppState, Signed, forbidden, redirect, words};

/// Default largest upload: 64 GiB.
pub const MAX_UPLOAD_BYTES: u64 = 64 << 30;

/// The header the console's script sends the CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";

/// Largest value of a text field of the upload form.
const MAX_FIELD: usize = 4096;

/// The upload form (tasks page). Works as a plain form; `console.js` adds progress.
pub(crate) fn form(region: &str, csrf: &str, max: u64) -> Markup {
    html! {
        section #upload {
            h2 { "Upload a disk image" }
            p { "A raw, qcow2, vmdk, vhd or vhdx file from this computer (at most " (size(max)) "), imported as a snapshot (ImportSnapshot) or as an image (ImportImage)." }
            form.inline #upload-form method="post" action={ "/console/" (region) "/upload" } enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Import as "
                    select name="kind" {
                        option value="snapshot" { "a snapshot" }
                        option value="image" { "an image (AMI)" }
                    }
                }
                label { "Description " input type="text" name="description"; }
                label { "Disk image file " input type="file" name="file" required; }
                button type="submit" { "Upload" }
                " "
                progress #upload-progress max="100" value="0" hidden {}
                " "
                span #upload-status role="status" {}
            }
        }
    }
}

/// `n` bytes in words (GiB or MiB).
fn size(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{} GiB", n >> 30)
    } else {
        format!("{} MiB", n >> 20)
    }
}

/// How the upload came: a plain form post, or the console script's XMLHttpRequest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Form,
    Script,
}

/// A refused upload: the status and the reason in words.
struct Refusal(StatusCode, String);

impl From<Ec2Error> for Refusal {
    fn from(e: Ec2Error) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        Refusal(status, words(&e))
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, message.into())
}

/// A staging file being written: each chunk is written as it arrives (tokio's file, so
/// no thread is held while the browser is slow to send), at most one chunk in memory.
pub(crate) struct Staging {
    cloud: Arc<Cloud>,
    name: String,
    written: u64,
    max: u64,
    file: Option<tokio::fs::File>,
}

/// A write error of the staging file as the client sees it.
fn staging_error(e: std::io::Error) -> Ec2Error {
    if matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) {
        Ec2Error::out_of_storage("upload staging file", e)
    } else {
        Ec2Error::internal("upload staging file", e)
    }
}

impl Staging {
    /// A new staging file that takes at most `max` bytes.
    pub(crate) fn create(cloud: &Arc<Cloud>, max: u64) -> Ec2Result<Staging> {
        let (name, file) = cloud.create_staging_file()?;
        Ok(Staging {
            cloud: Arc::clone(cloud),
            name,
            written: 0,
            max,
            file: Some(tokio::fs::File::from_std(file)),
        })
    }

    /// Appends a chunk; refuses one that takes the file past the limit.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), Ec2Error> {
        self.written += chunk.len() as u64;
        if self.written > self.max {
            let mut e = Ec2Error::client(
                "UploadTooLarge",
                format!(
                    "The file is larger than the upload limit of {}.",
                    size(self.max)
                ),
            );
            e.status = 413;
            return Err(e);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(Ec2Error::internal("upload staging file", "already closed"));
        };
        file.write_all(&chunk).await.map_err(staging_error)
    }

    /// Closes the file, durably: (its name, its size).
    pub(crate) async fn finish(mut self) -> Ec2Result<(String, u64)> {
        let Some(mut file) = self.file.take() else {
            return Err(Ec2Error::internal("upload staging file", "already closed"));
        };
        file.flush().await.map_err(staging_error)?;
        file.sync_all().await.map_err(staging_error)?;
        drop(file);
        Ok((std::mem::take(&mut self.name), self.written))
    }
}

/// An unfinished staging file is deleted (the upload failed or was refused).
impl Drop for Staging {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            // Unlinking an open file is fine on Unix; the handle closes when dropped.
            self.file = None;
            self.cloud
                .discard_staging_file(&std::mem::take(&mut self.name));
        }
    }
}

/// A text field, at most [`MAX_FIELD`] bytes.
async fn text(field: &mut Field<'_>) -> Result<String, Refusal> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.body_text()))? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_FIELD {
            return Err(bad("A form field is too long."));
        }
    }
    String::from_utf8(out).map_err(|_| bad("A form field is not UTF-8."))
}

/// What the form asked for, the file staged.
#[derive(Default)]
struct Upload {
    csrf_ok: bool,
    as_image: bool,
    description: Option<String>,
    format: Option<String>,
    file: Option<(String, String, u64)>,
}

/// Reads the form's fields in order, staging the file once the CSRF token was checked;
/// on a refusal, nothing stays staged.
async fn read_form(
    app: &crate::App,
    signed: &Signed,
    via: Via,
    multipart: &mut Multipart,
) -> Result<Upload, Refusal> {
    let mut up = Upload {
        csrf_ok: via == Via::Script,
        ..Default::default()
    };
    match read_fields(app, signed, &mut up, multipart).await {
        Ok(()) => Ok(up),
        Err(refused) => {
            if let Some((staged, _, _)) = &up.file {
                app.cloud.discard_staging_file(staged);
            }
            Err(refused)
        }
    }
}

async fn read_fields(
    app: &crate::App,
    signed: &Signed,
    up: &mut Upload,
    multipart: &mut Multipart,
) -> Result<(), Refusal> {
    let forbidden_token = || {
        Refusal(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or wrong; reload the page and try again.".into(),
        )
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(e.body_text()))?
    {
        match field.name().unwrap_or("") {
            "csrf" => {
                let given = text(&mut field).await?;
                if given.is_empty() || !session::same_secret(&given, &signed.session.csrf) {
                    return Err(forbidden_token());
                }
                up.csrf_ok = true;
            }
            "kind" => up.as_image = text(&mut field).await? == "image",
            "description" => {
                up.description = Some(text(&mut field).await?).filter(|d| !d.is_empty())
            }
            "format" => up.format = Some(text(&mut field).await?).filter(|f| !f.is_empty()),
            "file" => {
                if !up.csrf_ok {
                    return Err(forbidden_token());
                }
                if up.file.is_some() {
                    return Err(bad("Upload one file at a time."));
                }
                let file_name = field
                    .file_name()
                    .map(|n| {
                        let base = n.rsplit(['/', '\\']).next().unwrap_or(n);
                        base.chars()
                            .filter(|c| !c.is_control())
                            .take(255)
                            .collect::<String>()
                    })
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "disk image".into());
                let mut staging = Staging::create(&app.cloud, app.config.max_upload_bytes)?;
                while let Some(chunk) = field.chunk().await.map_err(|e| {
                    bad(format!(
                        "The upload did not arrive whole: {}",
                        e.body_text()
                    ))
                })? {
                    if let Err(e) = staging.write(chunk).await {
                        drop(staging);
                        // The rest (bounded by the route's body limit) is read and
                        // dropped, so that the browser gets the answer, not a reset.
                        while let Ok(Some(_)) = field.chunk().await {}
                        return Err(e.into());
                    }
                }
                let (name, bytes) = staging.finish().await?;
                up.file = Some((name, file_name, bytes));
            }
            _ => {
                // Unknown fields are read and ignored.
                while field
                    .chunk()
                    .await
                    .map_err(|e| bad(e.body_text()))?
                    .is_some()
                {}
            }
        }
    }
    if !up.csrf_ok {
        return Err(forbidden_token());
    }
    Ok(())
}

/// `POST /console/{region}/upload`.
pub(crate) async fn submit(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let Some(signed) = app.signed(&headers) else {
        return Outcome::refused("AuthFailure", 403)
            .attach(forbidden("You are not signed in (or your session ended)."));
    };
    let via = match headers.get(CSRF_HEADER).map(|v| v.to_str().unwrap_or("")) {
        None => Via::Form,
        Some(given) if !given.is_empty() && session::same_secret(given, &signed.session.csrf) => {
            Via::Script
        }
        Some(_) => {
            return Outcome::refused("InvalidCsrfToken", 403).attach(forbidden(
                "The form's security token is missing or wrong; reload the page and try again.",
            ));
        }
    };
    if !app.serves(&region) {
        return (StatusCode::NOT_FOUND, "no such region\n").into_response();
    }
    let tasks = format!("/console/{region}/tasks");
    let mut action = "ImportSnapshot";
    let outcome = async {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let max = app.config.max_upload_bytes;
        if declared.is_some_and(|n| n > max.saturating_add(1 << 20)) {
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "UploadTooLarge: The file is larger than the upload limit of {}.",
                    size(max)
                ),
            ));
        }
        let mut multipart =
            multipart.map_err(|_| bad("The upload must be a multipart/form-data form."))?;
        let up = read_form(&app, &signed, via, &mut multipart).await?;
        let Some((staged, file_name, bytes)) = up.file else {
            return Err(bad("Choose a disk image file to upload."));
        };
        if bytes == 0 {
            app.cloud.discard_staging_file(&staged);
            return Err(bad(format!("The file {file_name} is empty.")));
        }
        if up.as_image {
            action = "ImportImage";
        }
        let caller = signed.caller(&region);
        let cloud = Arc::clone(&app.cloud);
        let request = StagedUpload {
            staged,
            file_name: file_name.clone(),
            format: up.format,
            description: up.description,
        };
        let task =
            crate::blocking(move || cloud.import_staged(&caller, request, up.as_image)).await?;
        Ok((
            format!(
                "Uploaded {file_name} ({bytes} bytes); {} imports it.",
                task.id
            ),
            task.id,
        ))
    }
    .await;
    match outcome {
        Ok((message, task_id)) => {
            tracing::info!(account = %signed.session.account_id, outcome = %message, "console upload");
            // The task's id only: the message also holds the browser's file name.
            let audited = Outcome {
                action: Some(action),
                ..Outcome::default()
            }
            .with_ids_in(&task_id);
            app.sessions.flash(&signed.token, Flash::Done, message);
            audited.attach(match via {
                Via::Form => redirect(&tasks),
                Via::Script => plain(StatusCode::OK, tasks),
            })
        }
        Err(Refusal(status, why)) => {
            tracing::info!(account = %signed.session.account_id, %status, message = %why, "console upload refused");
            // `words` writes engine errors as `Code: message`; the others are ours.
            let code = match why.split_once(':') {
                _ if status == StatusCode::FORBIDDEN => "InvalidCsrfToken",
                Some((code, _)) if !code.contains(' ') => code,
                _ => "InvalidParameter",
            };
            let audited = Outcome {
                action: Some(action),
                ..Outcome::refused(code, status.as_u16())
            };
            audited.attach(match (via, status) {
                (Via::Form, StatusCode::FORBIDDEN) => forbidden(&why),
                (Via::Form, _) => {
                    app.sessions.flash(&signed.token, Flash::Failed, why);
                    redirect(&tasks)
                }
                (Via::Script, _) => plain(status, why),
            })
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The chunks a blocking reader sends, as a response body stream.
struct Chunks(mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// `GET /console/{region}/snapshots/{id}/download`.
pub(crate) async fn download(
    State(app): AppState,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let signed = match crate::gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let caller = signed.caller(&region);
    let image = {
        let (cloud, id) = (Arc::clone(&app.cloud), id.clone());
        crate::blocking(move || cloud.snapshot_image(&caller, &id)).await
    };
    let image = match image {
        Ok(image) => image,
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let status = if e.code.ends_with(".NotFound") || e.code.ends_with(".Malformed") {
                StatusCode::NOT_FOUND
            } else {
                status
            };
            return plain(status, format!("{}\n", words(&e)));
        }
    };
    tracing::info!(account = %signed.session.account_id, snapshot = %id, bytes = image.size(), "console download");
    let size = image.size();
    let (tx, rx) = mpsc::channel(4);
    let image = Arc::new(image);
    // One short blocking task per block read; waiting for a slow browser holds no thread.
    tokio::spawn(async move {
        for index in 0..image.blocks() {
            let reader = Arc::clone(&image);
            let chunk = match tokio::task::spawn_blocking(move || reader.block(index)).await {
                Ok(read) => read
                    .map(Bytes::from)
                    .map_err(|e| std::io::Error::other(words(&e))),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = chunk.is_err();
            // A closed channel: the browser went away.
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.raw\""),
            ),
        ],
        Body::from_stream(Chunks(rx)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::DataDir;

    fn cloud() -> (tempfile::TempDir, Arc<Cloud>) {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path(), true).unwrap();
        let cloud = Cloud::open(data, &["us-east-1".to_string()]).unwrap();
        (dir, cloud)
    }

    fn staged(dir: &tempfile::TempDir) -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(dir.path().join("transfers/uploads")) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    #[tokio::test]
    async fn chunks_land_in_the_staging_file_in_order() {
        let (dir, cloud) = cloud();
        let mut s = Staging::create(&cloud, 1 << 20).unwrap();
        let mut want = Vec::new();
        for i in 0..100u8 {
            let chunk = vec![i; 1000 + i as usize];
            want.extend_from_slice(&chunk);
            s.write(Bytes::from(chunk)).await.unwrap();
        }
        let (name, bytes) = s.finish().await.unwrap();
        assert_eq!(bytes, want.len() as u64);
        let path = dir.path().join("transfers/uploads").join(&name);
        assert_eq!(std::fs::read(&path).unwrap(), want);
        // The task would own it now; discarding removes it.
        cloud.discard_staging_file(&name);
        assert!(staged(&dir).is_empty());
    }

    #[tokio::test]
    async fn an_upload_past_the_limit_is_refused_and_its_file_deleted() {
        let (dir, cloud) = cloud();
        let mut s = Staging::create(&cloud, 10_000).unwrap();
        s.write(Bytes::from(vec![1u8; 6000])).await.unwrap();
        let err = s.write(Bytes::from(vec![1u8; 6000])).await.unwrap_err();
        assert_eq!(err.code, "UploadTooLarge");
        assert!(err.message.contains("upload limit"), "{}", err.message);
        assert_eq!(staged(&dir).len(), 1);
        drop(s);
        for _ in 0..100 {
            if staged(&dir).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(staged(&dir).is_empty());
    }

    #[test]
    fn sizes_read_in_words() {
        assert_eq!(size(MAX_UPLOAD_BYTES), "64 GiB");
        assert_eq!(size(5 << 20), "5 MiB");
    }
}
