//! Instances: the list (state, type, zone, addresses, launch time, image), one instance's
//! details with its console output, and start/stop/reboot/terminate (stop and terminate
//! need their confirmation box ticked). The list refreshes itself while an instance is in
//! a changing state (`pending`, `stopping`, `shutting-down`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::instances::{CreateImage, InstanceView};
use engine::query::Page;
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};

use crate::layout::{self, Frame, confirmed, form};
use crate::{AppState, Done, Form, after, blocking, gate, html, name_tag, post_gate, when};

fn live(views: &[InstanceView]) -> &'static str {
    if views.iter().any(|v| layout::transient(&v.state)) {
        "yes"
    } else {
        "no"
    }
}

fn table(region: &str, views: &[InstanceView]) -> Markup {
    html! {
        div #live data-live=(live(views)) {
            table.list #instances {
                thead { tr { th { "Name" } th { "Instance ID" } th { "State" } th { "Type" } th { "Zone" } th { "Public IP" } th { "Private IP" } th { "Launched" } th { "Image" } } }
                tbody {
                    @for v in views {
                        tr data-id=(v.id) {
                            td { (name_tag(&v.tags).unwrap_or("-")) }
                            td { a href={ "/console/" (region) "/instances/" (v.id) } { code { (v.id) } } }
                            td { (layout::state(&v.state)) }
                            td { (v.doc.instance_type) }
                            td { (v.doc.availability_zone) }
                            td { (v.public_ip().unwrap_or("-")) }
                            td { (v.doc.private_ip) }
                            td { (when(v.doc.launch_time_ms)) }
                            td { a href={ "/console/" (region) "/images/" (v.doc.image_id) } { code { (v.doc.image_id) } } }
                        }
                    }
                }
            }
            @if views.is_empty() { p.empty { "No instances in this region." } }
        }
    }
}

/// `GET /console/{region}/instances`.
pub(crate) async fn list(
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
            let (mut views, _) =
                app.cloud
                    .describe_instances(&caller, &[], &[], &Page::default())?;
            views.sort_by(|a, b| {
                b.doc
                    .launch_time_ms
                    .cmp(&a.doc.launch_time_ms)
                    .then(a.id.cmp(&b.id))
            });
            Ok(views)
        })
        .await
    };
    let frame = Frame::new(&app, &signed, &region, "/instances");
    let body = html! {
        h1 { "Instances" }
        p { a.button href={ "/console/" (region) "/launch" } { "Launch instances" } }
        @match &found {
            Ok(views) => (table(&region, views)),
            Err(e) => p.flash.failed { (crate::words(e)) },
        }
    };
    html(layout::page(&frame, "Instances", body))
}

fn one(cloud: &Cloud, caller: &Caller, id: &str) -> Ec2Result<(InstanceView, String)> {
    let (views, _) = cloud.describe_instances(caller, &[id.to_string()], &[], &Page::default())?;
    let view = views.into_iter().next().ok_or_else(|| {
        Ec2Error::client(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{id}' does not exist"),
        )
    })?;
    let console = match cloud.console_output(caller, id) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("({})", crate::words(&e)),
    };
    Ok((view, console))
}

fn actions(region: &str, v: &InstanceView, csrf: &str) -> Markup {
    let base = format!("/console/{region}/instances/{}", v.id);
    html! {
        div.actions #actions {
            @if v.state == "stopped" {
                (form(&format!("{base}/start"), csrf, html! {}, "Start", ""))
            }
            @if v.state == "running" || v.state == "pending" {
                (form(&format!("{base}/reboot"), csrf, html! {}, "Reboot", ""))
                (confirmed(&format!("{base}/stop"), csrf, html! {}, "Stop"))
            }
            @if v.state != "terminated" && v.state != "shutting-down" {
                (confirmed(&format!("{base}/terminate"), csrf, html! {}, "Terminate"))
            }
        }
    }
}

/// `GET /console/{region}/instances/{id}`: details and console output.
pub(crate) async fn page(
    State(app): AppState,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let found = {
        let id = id.clone();
        crate::call_as(&app, &signed, &region, move |cloud, caller| {
            one(cloud, caller, &id)
        })
        .await
    };
    let frame = Frame::new(&app, &signed, &region, "/instances");
    let body = match &found {
        Err(e) => html! { h1 { "Instance " (id) } p.flash.failed { (crate::words(e)) } },
        Ok((v, console)) => html! {
            h1 { (name_tag(&v.tags).unwrap_or(&v.id)) }
            div #live data-live=(live(std::slice::from_ref(v))) {
                dl.facts #facts {
                    dt { "Instance ID" } dd { code { (v.id) } }
                    dt { "State" } dd #state { (layout::state(&v.state)) }
                    @if let Some(r) = &v.doc.state_reason {
                        dt { "State reason" } dd #state-reason { (r.code) ": " (r.message) }
                    }
                    dt { "Type" } dd { (v.doc.instance_type) " (" (v.doc.vcpus) " vCPUs, " (v.doc.memory_mib) " MiB)" }
                    dt { "Zone" } dd { (v.doc.availability_zone) }
                    dt { "Public IP" } dd { (v.public_ip().unwrap_or("-")) }
                    dt { "Private IP" } dd { (v.doc.private_ip) }
                    dt { "Image" } dd { a href={ "/console/" (region) "/images/" (v.doc.image_id) } { code { (v.doc.image_id) } } }
                    dt { "Key pair" } dd { (v.doc.key_name.as_deref().unwrap_or("-")) }
                    dt { "Launched" } dd { (when(v.doc.launch_time_ms)) }
                    dt { "Status checks" } dd { (v.instance_status()) " / " (v.system_status()) }
                }
                (actions(&region, v, &signed.session.csrf))
            }
            @if v.state == "running" {
                h2 { "Screen" }
                p { img.screen #screenshot src={ "/console/" (region) "/instances/" (v.id) "/screenshot" } alt={ "Screen of " (v.id) }; }
            }
            @if matches!(v.state.as_str(), "running" | "stopping" | "stopped") {
                section #create-image {
                    h2 { "Create an image" }
                    (form(&format!("/console/{region}/instances/{}/image", v.id), &signed.session.csrf, html! {
                        label { "Image name " input type="text" name="image_name" required; }
                        label { "Description " input type="text" name="description"; }
                        label { input type="checkbox" name="no_reboot" value="yes"; " no reboot" }
                    }, "Create image", ""))
                }
            }
            h2 { "Console output" }
            pre.console #console-output { (console) }
        },
    };
    html(layout::page(&frame, &id, body))
}

fn run(
    cloud: &Arc<Cloud>,
    caller: &Caller,
    id: &str,
    action: &str,
    form: &Form,
) -> Ec2Result<Done> {
    let ids = [id.to_string()];
    let confirm = || form.confirmed(&format!("{action} the instance"));
    let change = |changes: Vec<engine::instances::StateChange>| {
        changes
            .first()
            .map(|c| format!("{id}: {} → {}.", c.previous, c.current))
            .unwrap_or_default()
    };
    match action {
        "start" => Ok(change(cloud.start_instances(caller, &ids)?).into()),
        "stop" => {
            confirm()?;
            Ok(change(cloud.stop_instances(caller, &ids, false)?).into())
        }
        "reboot" => {
            cloud.reboot_instances(caller, &ids)?;
            Ok(format!("{id} is rebooting.").into())
        }
        "terminate" => {
            confirm()?;
            Ok(change(cloud.terminate_instances(caller, &ids)?).into())
        }
        "image" => {
            let image = cloud.create_image(
                caller,
                CreateImage {
                    instance_id: id.to_string(),
                    name: form.get("image_name").trim().to_string(),
                    description: form.opt("description"),
                    no_reboot: form.get("no_reboot") == "yes",
                    ..Default::default()
                },
            )?;
            Ok(Done::from(format!("Creating image {image} from {id}."))
                .then(format!("/console/{}/images/{image}", caller.region)))
        }
        other => Err(Ec2Error::client(
            "InvalidAction",
            format!("The instance action {other} is not known."),
        )),
    }
}

/// `POST /console/{region}/instances/{id}/{action}`.
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
    let outcome = {
        let id = id.clone();
        crate::call_as(&app, &signed, &region, move |cloud, caller| {
            run(cloud, caller, &id, &action, &form)
        })
        .await
    };
    after(
        &app,
        &signed,
        outcome,
        &format!("/console/{region}/instances/{id}"),
    )
}

/// `GET /console/{region}/instances/{id}/screenshot`: the screen as PNG
/// (GetConsoleScreenshot).
pub(crate) async fn screenshot(
    State(app): AppState,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let png = crate::call_as(&app, &signed, &region, move |cloud, caller| {
        cloud.console_screenshot(caller, &id)
    })
    .await;
    match png {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            crate::words(&e),
        )
            .into_response(),
    }
}
