//! The launch wizard: one form for RunInstances — name tag, image, instance type (from
//! the engine's type table, with vCPUs and memory), key pair (choose one, or create one
//! whose private key is shown once on the result page), security group, root volume
//! size, count and user data.
//!
//! The form carries a client token made when it was shown, so submitting it twice (a
//! reload of the result page) launches nothing more: RunInstances is idempotent on it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use engine::images::{DescribeImages, EbsRequest, MappingRequest};
use engine::instances::{InstanceType, RunInstances};
use engine::keypairs::{CreateKeyPair, DescribeKeyPairs};
use engine::query::{Page, TagSpecification};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};

use crate::layout::{self, Frame};
use crate::{AppState, Form, blocking, gate, post_gate, session};

/// What the form offers: key pair names and security groups (id, name).
struct Choices {
    keys: Vec<String>,
    groups: Vec<(String, String)>,
    types: Vec<InstanceType>,
}

fn choices(cloud: &Cloud, caller: &Caller) -> Ec2Result<Choices> {
    let keys = cloud
        .describe_key_pairs(caller, &DescribeKeyPairs::default())?
        .into_iter()
        .map(|k| k.doc.key_name)
        .collect();
    let groups = cloud
        .describe_security_groups(caller, &[], &[], &[], &Page::default())?
        .0
        .into_iter()
        .map(|g| (g.id, g.doc.name))
        .collect();
    let types = engine::instances::describe_instance_types(&[], &[], &Page::default())?.0;
    Ok(Choices {
        keys,
        groups,
        types,
    })
}

fn wizard(region: &str, csrf: &str, image: &str, c: &Choices) -> Markup {
    html! {
        form.wizard #launch method="post" action={ "/console/" (region) "/launch" } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="client_token" value=(session::random_token()[..32]);
            label { "Name" input type="text" name="name" placeholder="my-instance"; }
            label { "Image (AMI ID)" input type="text" name="image" value=(image) pattern="ami-[0-9a-f]+" required; }
            label { "Instance type"
                select name="type" {
                    @for t in &c.types {
                        option value=(t.name) selected[t.name == "t3.micro"] {
                            (t.name) " — " (t.vcpus) " vCPU, " (format!("{:.1}", t.memory_mib as f64 / 1024.0)) " GiB"
                        }
                    }
                }
            }
            fieldset {
                legend { "Key pair" }
                label { "Existing key pair"
                    select name="key" {
                        option value="" { "(none)" }
                        @for k in &c.keys { option value=(k) { (k) } }
                    }
                }
                label { "…or create a new one named" input type="text" name="new_key" placeholder="new key name"; }
                label { "Type" select name="new_key_type" { option value="ed25519" { "ed25519" } option value="rsa" { "rsa" } } }
            }
            label { "Security group"
                select name="group" {
                    option value="" { "(the default group)" }
                    @for (id, name) in &c.groups { option value=(id) { (name) " (" (id) ")" } }
                }
            }
            label { "Root volume size (GiB, empty: the image's)" input type="number" name="root_size" min="1" max="16384"; }
            label { "Number of instances" input type="number" name="count" min="1" max="8" value="1" required; }
            label { "User data" textarea name="user_data" rows="5" cols="60" placeholder="#cloud-config" {} }
            button type="submit" { "Launch" }
        }
    }
}

/// `GET /console/{region}/launch[?image=ami-…]`.
pub(crate) async fn page(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let image = Form::parse(uri.query().unwrap_or("").as_bytes())
        .get("image")
        .to_string();
    let caller = signed.caller(&region);
    let found = {
        let app = Arc::clone(&app);
        blocking(move || choices(&app.cloud, &caller)).await
    };
    let frame = Frame::new(&app, &signed, &region, "/launch");
    let body = html! {
        h1 { "Launch an instance" }
        @match &found {
            Ok(c) => (wizard(&region, &signed.session.csrf, &image, c)),
            Err(e) => p.flash.failed { (crate::words(e)) },
        }
    };
    crate::html(layout::page(&frame, "Launch", body))
}

/// The outcome of a launch: instance ids, and the private key of a key pair made for it.
struct Launched {
    ids: Vec<String>,
    key: Option<(String, String)>,
}

fn number(form: &Form, field: &str) -> Ec2Result<Option<i64>> {
    form.opt(field)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                Ec2Error::invalid_value(format!("Value ({v}) for {field} is not a number."))
            })
        })
        .transpose()
}

fn launch(cloud: &Arc<Cloud>, caller: &Caller, form: &Form) -> Ec2Result<Launched> {
    let image_id = form
        .opt("image")
        .ok_or_else(|| Ec2Error::missing("ImageId"))?;
    let count = number(form, "count")?.unwrap_or(1);
    let mut key_name = form.opt("key");
    let mut key = None;
    let mut block_device_mappings = Vec::new();
    if let Some(size) = number(form, "root_size")? {
        let req = DescribeImages {
            image_ids: vec![image_id.clone()],
            ..Default::default()
        };
        let image = cloud.describe_images(caller, &req)?.0.into_iter().next();
        let device = image
            .and_then(|i| i.doc.root_device_name)
            .unwrap_or_else(|| "/dev/xvda".into());
        block_device_mappings.push(MappingRequest {
            device_name: Some(device),
            ebs: Some(EbsRequest {
                volume_size: Some(size),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    // Checked before a key pair is made, so a bad form leaves nothing behind.
    if image_id.is_empty() || !(1..=64).contains(&count) {
        return Err(Ec2Error::invalid_value(
            "Launch between 1 and 64 instances.",
        ));
    }
    if let Some(name) = form.opt("new_key") {
        let created = cloud.create_key_pair(
            caller,
            CreateKeyPair {
                key_name: name.clone(),
                key_type: form.opt("new_key_type"),
                ..Default::default()
            },
        )?;
        key = Some((name.clone(), created.key_material));
        key_name = Some(name);
    }
    let tag_specifications = form
        .opt("name")
        .map(|n| TagSpecification {
            resource_type: "instance".into(),
            tags: vec![("Name".into(), n)],
        })
        .into_iter()
        .collect();
    let user_data = form
        .opt("user_data")
        .map(|text| base64::engine::general_purpose::STANDARD.encode(text.replace("\r\n", "\n")));
    let launched = cloud.run_instances(
        caller,
        RunInstances {
            image_id,
            min_count: count,
            max_count: count,
            instance_type: form.opt("type"),
            block_device_mappings,
            user_data,
            client_token: form.opt("client_token"),
            tag_specifications,
            key_name,
            security_group_ids: form.opt("group").into_iter().collect(),
            ..Default::default()
        },
    );
    let views = match launched {
        Ok(views) => views,
        Err(e) => {
            // A key pair made for a launch that failed would be a key nobody has seen.
            if let Some((name, _)) = &key
                && let Err(cleanup) = cloud.delete_key_pair(caller, Some(name), None)
            {
                tracing::warn!(key = %name, error = %cleanup.message, "removing the key pair of a failed launch");
            }
            return Err(e);
        }
    };
    Ok(Launched {
        ids: views.into_iter().map(|v| v.id).collect(),
        key,
    })
}

/// `POST /console/{region}/launch`: RunInstances; answers with a page (not a redirect)
/// because a new private key is shown there once.
pub(crate) async fn submit(
    State(app): AppState,
    Path(region): Path<String>,
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
        let form = form.clone();
        blocking(move || launch(&app.cloud, &caller, &form)).await
    };
    let frame = Frame::new(&app, &signed, &region, "/launch");
    let (status, body) = match &outcome {
        Ok(done) => (
            StatusCode::OK,
            html! {
                h1 { "Launched" }
                p.flash.done #flash {
                    "Launched " (done.ids.len()) " instance(s): "
                    @for id in &done.ids { a href={ "/console/" (region) "/instances/" (id) } { code { (id) } } " " }
                }
                @if let Some((name, material)) = &done.key {
                    section #new-key {
                        h2 { "Private key of " (name) }
                        p { "Save it now: it is shown only this once and openami does not keep it." }
                        pre.console #key-material { (material) }
                    }
                }
                p { a href={ "/console/" (region) "/instances" } { "All instances" } }
            },
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            html! {
                h1 { "Launch an instance" }
                p.flash.failed #flash { (crate::words(e)) }
                p { a href={ "/console/" (region) "/launch?image=" (form.get("image")) } { "Back to the wizard" } }
            },
        ),
    };
    (status, crate::html(layout::page(&frame, "Launch", body))).into_response()
}
