//! Launch templates: the list (`/console/{r}/launch-templates`: name, id, default and
//! latest version, the default version's image), creating one from an image's details
//! page (name, instance type, key pair, security groups → CreateLaunchTemplate),
//! launching from one (RunInstances with `LaunchTemplate`, its `$Default` version; the
//! instances get the `aws:ec2launchtemplate:*` tags as through the API) and deleting one
//! (DeleteLaunchTemplate; its confirmation box must be ticked).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use engine::instances::RunInstances;
use engine::launch_templates::launch::LaunchTemplateSpecification;
use engine::launch_templates::{
    CreateLaunchTemplate, DescribeLaunchTemplates, LaunchTemplateData, LaunchTemplateView,
    TemplateRef,
};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};

use crate::launch::{Choices, group_boxes, type_select, wizard_gate};
use crate::launch_form::{Fields, MAX_COUNT};
use crate::layout::{self, Frame, confirmed, form};
use crate::{AppState, Done, Form, after, blocking, gate, html, post_gate};

/// The "create a launch template" section of an image's details page.
pub(crate) fn from_image(region: &str, csrf: &str, image: &str, c: &Choices) -> Markup {
    html! {
        section #create-template {
            h2 { "Create a launch template from this image" }
            form.wizard method="post" action={ "/console/" (region) "/launch-templates" } {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="image" value=(image);
                label { "Template name" input type="text" name="template_name" placeholder="web-template" pattern="[A-Za-z0-9()./_-]{3,128}" required; }
                label { "Version description" input type="text" name="description" placeholder="(optional)"; }
                label { "Instance type" (type_select(&c.types)) }
                label { "Key pair"
                    select name="key" {
                        option value="" { "(none)" }
                        @for k in &c.keys { option value=(k) { (k) } }
                    }
                }
                fieldset { legend { "Security groups" } (group_boxes(&c.groups)) }
                button type="submit" { "Create launch template" }
            }
        }
    }
}

fn list_templates(cloud: &Cloud, caller: &Caller) -> Ec2Result<Vec<LaunchTemplateView>> {
    Ok(cloud
        .describe_launch_templates(caller, &DescribeLaunchTemplates::default())?
        .0)
}

/// The image id of a template's default version.
fn default_image(t: &LaunchTemplateView) -> Option<&str> {
    t.doc
        .versions
        .iter()
        .find(|v| v.number == t.doc.default_version)
        .and_then(|v| v.data.image_id.as_deref())
}

fn table(region: &str, csrf: &str, all: &[LaunchTemplateView]) -> Markup {
    html! {
        table.list #templates {
            thead { tr { th { "Name" } th { "Template ID" } th { "Default version" } th { "Latest version" } th { "Image" } th { "Actions" } } }
            tbody {
                @for t in all {
                    @let base = format!("/console/{region}/launch-templates/{}", t.id);
                    tr data-id=(t.id) {
                        td { (t.doc.name) }
                        td { code { (t.id) } }
                        td { (t.doc.default_version) }
                        td { (t.doc.latest_version()) }
                        td {
                            @match default_image(t) {
                                Some(i) => a href={ "/console/" (region) "/images/" (i) } { code { (i) } },
                                None => "-",
                            }
                        }
                        td.actions {
                            (form(&format!("{base}/launch"), csrf, html! {
                                label { "Count " input type="number" name="count" min="1" max=(MAX_COUNT) value="1" required; }
                            }, "Launch", ""))
                            (confirmed(&format!("{base}/delete"), csrf, html! {}, "Delete"))
                        }
                    }
                }
            }
        }
        @if all.is_empty() { p.empty { "No launch templates in this region. Create one from an image's page." } }
    }
}

/// `GET /console/{region}/launch-templates`.
pub(crate) async fn list(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let found = crate::call_as(&app, &signed, &region, move |cloud, caller| {
        list_templates(cloud, caller)
    })
    .await;
    let frame = Frame::new(&app, &signed, &region, "/launch-templates");
    let body = html! {
        h1 { "Launch templates" }
        @match &found {
            Ok(all) => (table(&region, &signed.session.csrf, all)),
            Err(e) => p.flash.failed { (crate::words(e)) },
        }
    };
    html(layout::page(&frame, "Launch templates", body))
}

fn create(cloud: &Cloud, caller: &Caller, f: &Fields) -> Ec2Result<Done> {
    let image = f.opt("image").ok_or_else(|| Ec2Error::missing("ImageId"))?;
    let name = f
        .opt("template_name")
        .ok_or_else(|| Ec2Error::missing("LaunchTemplateName"))?;
    let made = cloud.create_launch_template(
        caller,
        CreateLaunchTemplate {
            name: name.clone(),
            version_description: f.opt("description"),
            data: LaunchTemplateData {
                image_id: Some(image.clone()),
                instance_type: f.opt("type"),
                key_name: f.opt("key"),
                security_group_ids: f.all("group"),
                ..Default::default()
            },
            ..Default::default()
        },
    )?;
    Ok(Done::from(format!(
        "Created the launch template {name} ({}) from {image}.",
        made.id
    )))
}

/// `POST /console/{region}/launch-templates`: CreateLaunchTemplate (from an image's page).
pub(crate) async fn submit(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (signed, fields) = match wizard_gate(&app, &headers, &region, &body) {
        Ok(ok) => ok,
        Err(refused) => return *refused,
    };
    let caller = signed.caller(&region);
    let image = fields
        .as_ref()
        .map_or(String::new(), |f| f.get("image").to_string());
    let outcome = match fields {
        Err(e) => Err(e),
        Ok(fields) => {
            let app = Arc::clone(&app);
            blocking(move || create(&app.cloud, &caller, &fields)).await
        }
    };
    // Success: the list; failure: back to the image the form was on.
    let to = match (&outcome, image.is_empty()) {
        (Err(_), false) => format!("/console/{region}/images/{image}"),
        _ => format!("/console/{region}/launch-templates"),
    };
    let outcome = outcome.map(|d| d.then(format!("/console/{region}/launch-templates")));
    after(&app, &signed, outcome, &to)
}

fn run(cloud: &Arc<Cloud>, caller: &Caller, id: &str, action: &str, f: &Form) -> Ec2Result<Done> {
    let template = TemplateRef {
        id: Some(id.to_string()),
        name: None,
    };
    match action {
        "launch" => {
            let count = match f.opt("count") {
                None => 1,
                Some(c) => c.parse::<i64>().map_err(|_| {
                    Ec2Error::invalid_value(format!(
                        "Value ({c}) for the number of instances is not a whole number."
                    ))
                })?,
            };
            let spec = LaunchTemplateSpecification {
                template,
                version: None,
            };
            let req = RunInstances {
                min_count: count,
                max_count: count,
                ..Default::default()
            };
            let (req, from) = cloud.apply_launch_template(caller, req, &spec)?;
            let mut views = cloud.run_instances(caller, req)?;
            cloud.tag_launched_from_template(&mut views, &from)?;
            let ids: Vec<String> = views.into_iter().map(|v| v.id).collect();
            let done = Done::from(format!(
                "Launched {} from the launch template {id} (version {}).",
                ids.join(", "),
                from.version
            ));
            Ok(match ids.as_slice() {
                [one] => done.then(format!("/console/{}/instances/{one}", caller.region)),
                _ => done.then(format!("/console/{}/instances", caller.region)),
            })
        }
        "delete" => {
            f.confirmed("delete the launch template")?;
            let gone = cloud.delete_launch_template(caller, &template)?;
            Ok(format!("Deleted the launch template {} ({id}).", gone.doc.name).into())
        }
        other => Err(Ec2Error::client(
            "InvalidAction",
            format!("The launch template action {other} is not known."),
        )),
    }
}

/// `POST /console/{region}/launch-templates/{id}/{action}`: `launch` or `delete`.
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
    let outcome = crate::call_as(&app, &signed, &region, move |cloud, caller| {
        run(cloud, caller, &id, &action, &form)
    })
    .await;
    after(
        &app,
        &signed,
        outcome,
        &format!("/console/{region}/launch-templates"),
    )
}
