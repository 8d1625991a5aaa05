//! Volumes and snapshots: lists with live state (and snapshot progress), create a volume
//! (empty or from a snapshot), attach/detach, snapshot a volume, share a snapshot with an
//! account (createVolumePermission), delete either (with confirmation). The snapshots list
//! shows the account's own snapshots.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use engine::query::{Page, TagSpecification};
use engine::snapshots::{Grantee, SnapshotView};
use engine::volumes::{CreateVolume, VolumeView};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};

use crate::layout::{self, Frame, confirmed, form};
use crate::{AppState, Form, after, blocking, gate, html, name_tag, post_gate, when};

fn zones(cloud: &Cloud, caller: &Caller) -> Ec2Result<Vec<String>> {
    Ok(cloud
        .describe_zones(caller, &[], &[], &[])?
        .into_iter()
        .map(|z| z.name)
        .collect())
}

fn zone_select(zones: &[String]) -> Markup {
    html! {
        label { "Zone " select name="zone" { @for z in zones { option value=(z) { (z) } } } }
    }
}

fn volume_table(region: &str, views: &[VolumeView], csrf: &str) -> Markup {
    let live = views.iter().any(|v| layout::transient(&v.state));
    html! {
        div #live data-live=(if live { "yes" } else { "no" }) {
            table.list #volumes {
                thead { tr { th { "Name" } th { "Volume ID" } th { "State" } th { "Size (GiB)" } th { "Type" } th { "Zone" } th { "Snapshot" } th { "Attached to" } th { "Created" } th { "Actions" } } }
                tbody {
                    @for v in views {
                        @let base = format!("/console/{region}/volumes/{}", v.id);
                        tr id=(v.id) {
                            td { (name_tag(&v.tags).unwrap_or("-")) }
                            td { code { (v.id) } }
                            td { (layout::state(&v.state)) }
                            td { (v.doc.size_gib) }
                            td { (v.doc.volume_type) }
                            td { (v.doc.availability_zone) }
                            td { (v.doc.snapshot_id.as_deref().unwrap_or("-")) }
                            td {
                                @match &v.doc.attachment {
                                    Some(a) => { a href={ "/console/" (region) "/instances/" (a.instance_id) } { (a.instance_id) } " " (a.device) }
                                    None => "-",
                                }
                            }
                            td { (when(v.doc.create_time_ms)) }
                            td.actions {
                                @if v.doc.attachment.is_some() {
                                    (form(&format!("{base}/detach"), csrf, html! {}, "Detach", ""))
                                } @else {
                                    (form(&format!("{base}/attach"), csrf, html! {
                                        input type="text" name="instance" placeholder="i-…" size="19" required;
                                        input type="text" name="device" value="/dev/sdf" size="8" required;
                                    }, "Attach", ""))
                                }
                                (form(&format!("{base}/snapshot"), csrf, html! {
                                    input type="text" name="description" placeholder="description" size="12";
                                }, "Snapshot", ""))
                                (confirmed(&format!("{base}/delete"), csrf, html! {}, "Delete"))
                            }
                        }
                    }
                }
            }
            @if views.is_empty() { p.empty { "No volumes in this region." } }
        }
    }
}

/// `GET /console/{region}/volumes`.
pub(crate) async fn volumes(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let caller = signed.caller(&region);
    let found = {
        let app = Arc::clone(&app);
        blocking(move || {
            let (views, _) = app
                .cloud
                .describe_volumes(&caller, &[], &[], &Page::default())?;
            Ok((views, zones(&app.cloud, &caller)?))
        })
        .await
    };
    let frame = Frame::new(&app, &signed, &region, "/volumes");
    let csrf = &signed.session.csrf;
    let body = html! {
        h1 { "Volumes" }
        @match &found {
            Ok((views, zones)) => {
                section #create-volume {
                    h2 { "Create a volume" }
                    (form(&format!("/console/{region}/volumes"), csrf, html! {
                        label { "Name " input type="text" name="name" size="12"; }
                        label { "Size (GiB) " input type="number" name="size" min="1" max="16384" value="8" required; }
                        label { "Type " select name="type" { @for t in ["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] { option value=(t) { (t) } } } }
                        (zone_select(zones))
                        label { "From snapshot " input type="text" name="snapshot" placeholder="snap-… (optional)" size="22"; }
                    }, "Create volume", ""))
                }
                (volume_table(&region, views, csrf))
            }
            Err(e) => p.flash.failed { (crate::words(e)) },
        }
    };
    html(layout::page(&frame, "Volumes", body))
}

fn create(cloud: &Cloud, caller: &Caller, form: &Form) -> Ec2Result<String> {
    let size = match form.opt("size") {
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            Ec2Error::invalid_value(format!("Value ({s}) for parameter size is invalid."))
        })?),
        None => None,
    };
    let tag_specifications = form
        .opt("name")
        .map(|name| TagSpecification {
            resource_type: "volume".into(),
            tags: vec![("Name".into(), name)],
        })
        .into_iter()
        .collect();
    let v = cloud.create_volume(
        caller,
        CreateVolume {
            size,
            snapshot_id: form.opt("snapshot"),
            volume_type: form.opt("type"),
            availability_zone: form.opt("zone"),
            tag_specifications,
            ..Default::default()
        },
    )?;
    Ok(format!("Created {} ({} GiB).", v.id, v.doc.size_gib))
}

/// `POST /console/{region}/volumes`: CreateVolume.
pub(crate) async fn create_volume(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (signed, form) = match post_gate(&app, &headers, Some(&region), &body) {
        Ok(ok) => ok,
        Err(refused) => return *refused,
    };
    let outcome = crate::call_as(&app, &signed, &region, move |cloud, caller| {
        create(cloud, caller, &form)
    })
    .await;
    after(
        &app,
        &signed,
        outcome,
        &format!("/console/{region}/volumes"),
    )
}

/// `POST /console/{region}/volumes/{id}/{action}`: `snapshot` or `delete`.
pub(crate) async fn volume_act(
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
    let snapshot = action == "snapshot";
    let outcome = {
        let app = Arc::clone(&app);
        blocking(move || match action.as_str() {
            "snapshot" => {
                let s = app
                    .cloud
                    .create_snapshot(&caller, &id, form.opt("description"), &[])?;
                Ok(format!("Started snapshot {} of {id}.", s.id))
            }
            "attach" => {
                let instance = form.get("instance").trim().to_string();
                let device = form.get("device").trim().to_string();
                let a = app.cloud.attach_volume(&caller, &id, &instance, &device)?;
                Ok(format!(
                    "Attaching {id} to {instance} as {device} ({}).",
                    a.state
                ))
            }
            "detach" => {
                let a = app.cloud.detach_volume(&caller, &id, None, None, false)?;
                Ok(format!("Detaching {id} ({}).", a.state))
            }
            "delete" => {
                form.confirmed("delete the volume")?;
                app.cloud.delete_volume(&caller, &id)?;
                Ok(format!("Deleted {id}."))
            }
            other => Err(Ec2Error::client(
                "InvalidAction",
                format!("The volume action {other} is not known."),
            )),
        })
        .await
    };
    let to = if snapshot && outcome.is_ok() {
        format!("/console/{region}/snapshots")
    } else {
        format!("/console/{region}/volumes")
    };
    after(&app, &signed, outcome, &to)
}

/// Accounts each snapshot is shared with (createVolumePermission), by snapshot id.
type Shares = std::collections::HashMap<String, Vec<String>>;

fn snapshot_table(
    region: &str,
    views: &[SnapshotView],
    zones: &[String],
    shares: &Shares,
    csrf: &str,
) -> Markup {
    let live = views.iter().any(|v| v.state == "pending");
    html! {
        div #live data-live=(if live { "yes" } else { "no" }) {
            table.list #snapshots {
                thead { tr { th { "Snapshot ID" } th { "State" } th { "Progress" } th { "Size (GiB)" } th { "Volume" } th { "Description" } th { "Started" } th { "Actions" } } }
                tbody {
                    @for s in views {
                        @let base = format!("/console/{region}/snapshots/{}", s.id);
                        tr id=(s.id) {
                            td { code { (s.id) } }
                            td { (layout::state(&s.state)) }
                            td { progress max="100" value=(s.doc.progress) { (s.doc.progress) "%" } " " (s.doc.progress) "%" }
                            td { (s.doc.volume_size_gib) }
                            td { (s.doc.volume_id) }
                            td { (s.doc.description) }
                            td { (when(s.doc.start_time_ms)) }
                            td.actions {
                                @if s.state == "completed" {
                                    (form(&format!("{base}/volume"), csrf, zone_select(zones), "Create volume", ""))
                                    a.download href={ (base) "/download" } download { "Download (raw)" }
                                }
                                (form(&format!("{base}/share"), csrf, html! {
                                    input type="text" name="account" placeholder="account id" size="13" pattern="[0-9]{12}" required;
                                }, "Share", ""))
                                @if let Some(shared) = shares.get(&s.id) {
                                    @for account in shared {
                                        (form(&format!("{base}/unshare"), csrf, html! {
                                            input type="hidden" name="account" value=(account);
                                        }, &format!("Unshare {account}"), "link"))
                                    }
                                }
                                (confirmed(&format!("{base}/delete"), csrf, html! {}, "Delete"))
                            }
                        }
                    }
                }
            }
            @if views.is_empty() { p.empty { "No snapshots of yours in this region." } }
        }
    }
}

/// `GET /console/{region}/snapshots`.
pub(crate) async fn snapshots(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let caller = signed.caller(&region);
    let found = {
        let app = Arc::clone(&app);
        blocking(move || {
            let (mut views, _) = app.cloud.describe_snapshots(
                &caller,
                &[],
                &["self".into()],
                &[],
                &[],
                &Page::default(),
            )?;
            views.sort_by_key(|v| std::cmp::Reverse(v.doc.start_time_ms));
            let mut shares = Shares::new();
            for v in &views {
                let accounts = app
                    .cloud
                    .snapshot_permissions(&caller, &v.id)?
                    .into_iter()
                    .filter_map(|g| match g {
                        Grantee::User(a) => Some(a),
                        Grantee::All => None,
                    })
                    .collect();
                shares.insert(v.id.clone(), accounts);
            }
            Ok((views, zones(&app.cloud, &caller)?, shares))
        })
        .await
    };
    let frame = Frame::new(&app, &signed, &region, "/snapshots");
    let body = html! {
        h1 { "Snapshots" }
        @match &found {
            Ok((views, zones, shares)) => (snapshot_table(&region, views, zones, shares, &signed.session.csrf)),
            Err(e) => p.flash.failed { (crate::words(e)) },
        }
    };
    html(layout::page(&frame, "Snapshots", body))
}

/// `POST /console/{region}/snapshots/{id}/{action}`: `volume`, `share`, `unshare` or
/// `delete`.
pub(crate) async fn snapshot_act(
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
    let to_volumes = action == "volume";
    let outcome = {
        let app = Arc::clone(&app);
        blocking(move || match action.as_str() {
            "volume" => {
                let v = app.cloud.create_volume(
                    &caller,
                    CreateVolume {
                        snapshot_id: Some(id.clone()),
                        availability_zone: form.opt("zone"),
                        ..Default::default()
                    },
                )?;
                Ok(format!("Created {} from {id}.", v.id))
            }
            "share" | "unshare" => {
                let account = form.get("account").trim().to_string();
                let grant = [Grantee::User(account.clone())];
                let (add, remove): (&[Grantee], &[Grantee]) = if action == "share" {
                    (&grant, &[])
                } else {
                    (&[], &grant)
                };
                app.cloud
                    .modify_snapshot_permissions(&caller, &id, add, remove)?;
                Ok(format!("{id}: {action}d with account {account}."))
            }
            "delete" => {
                form.confirmed("delete the snapshot")?;
                app.cloud.delete_snapshot(&caller, &id)?;
                Ok(format!("Deleted {id}."))
            }
            other => Err(Ec2Error::client(
                "InvalidAction",
                format!("The snapshot action {other} is not known."),
            )),
        })
        .await
    };
    let to = if to_volumes {
        format!("/console/{region}/volumes")
    } else {
        format!("/console/{region}/snapshots")
    };
    after(&app, &signed, outcome, &to)
}
