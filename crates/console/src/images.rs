//! Image details and the owner's actions on an image: launch permissions (share with an
//! account, unshare, public, private — refused by the engine while image block public
//! access is on), deprecation time, deregistration protection, deregister (optionally
//! with its snapshots). An available image's page also offers a launch template made
//! from it (see [`crate::templates`]). Each action is the engine call ModifyImageAttribute,
//! EnableImageDeprecation, … make, as the signed-in account.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use engine::images::validate::parse_timestamp;
use engine::images::{
    AttributeValue, CopyImage, DescribeImages, ImageAttributeName, ImageChange, ImageView,
    MappingTarget, ModifyImageAttribute,
};
use engine::snapshots::Grantee;
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};

use crate::layout::{self, Frame, confirmed, form};
use crate::{AppState, Done, Form, after, blocking, gate, html, post_gate, when};

/// What the details page shows.
struct Details {
    image: ImageView,
    /// Launch permissions (owner only).
    grants: Option<Vec<Grantee>>,
    /// The account's image block public access state (owner only).
    block_public: Option<String>,
}

fn details(cloud: &Cloud, caller: &Caller, id: &str) -> Ec2Result<Details> {
    engine::images::check_image_id(id)?;
    let req = DescribeImages {
        image_ids: vec![id.to_string()],
        ..Default::default()
    };
    let image = cloud
        .describe_images(caller, &req)?
        .0
        .into_iter()
        .next()
        .ok_or_else(|| engine::images::not_found(id))?;
    let (grants, block_public) = if image.owner_id == caller.account_id {
        let grants = match cloud.describe_image_attribute(
            caller,
            id,
            ImageAttributeName::LaunchPermission,
        )? {
            AttributeValue::LaunchPermissions(g) => g,
            _ => Vec::new(),
        };
        (
            Some(grants),
            Some(cloud.image_block_public_access_state(caller)?),
        )
    } else {
        (None, None)
    };
    Ok(Details {
        image,
        grants,
        block_public,
    })
}

fn mappings(region: &str, v: &ImageView, owned: bool) -> Markup {
    html! {
        table.list #mappings {
            thead { tr { th { "Device" } th { "Kind" } th { "Snapshot" } th { "Size (GiB)" } th { "Type" } th { "Delete on termination" } } }
            tbody {
                @for m in &v.doc.block_device_mappings {
                    tr {
                        td { code { (m.device_name) } }
                        @match &m.target {
                            MappingTarget::Ebs(e) => {
                                td { "EBS" }
                                td {
                                    @match (&e.snapshot_id, owned) {
                                        (Some(s), true) => a href={ "/console/" (region) "/snapshots#" (s) } { code { (s) } },
                                        (Some(s), false) => code { (s) },
                                        (None, _) => "-",
                                    }
                                }
                                td { (e.volume_size_gib) }
                                td { (e.volume_type) }
                                td { (if e.delete_on_termination { "yes" } else { "no" }) }
                            }
                            MappingTarget::Ephemeral(name) => { td { "instance store" } td colspan="4" { (name) } }
                            MappingTarget::NoDevice => { td { "no device" } td colspan="4" {} }
                        }
                    }
                }
            }
        }
    }
}

fn permissions(region: &str, d: &Details, csrf: &str) -> Markup {
    let v = &d.image;
    let base = format!("/console/{region}/images/{}", v.id);
    let grants = d.grants.as_deref().unwrap_or(&[]);
    let block = d.block_public.as_deref().unwrap_or("unblocked");
    html! {
        section #permissions {
            h2 { "Launch permissions" }
            p {
                "This image is " strong #visibility { (if v.public { "public" } else { "private" }) } ". "
                "Image block public access: " strong { (block) } "."
            }
            @if v.public {
                (form(&format!("{base}/private"), csrf, html! {}, "Make private", ""))
            } @else {
                (form(&format!("{base}/public"), csrf, html! {}, "Make public", ""))
            }
            ul #shared-with {
                @for g in grants {
                    @if let Grantee::User(account) = g {
                        li {
                            "Shared with " code { (account) } " "
                            (form(&format!("{base}/unshare"), csrf, html! { input type="hidden" name="account" value=(account); }, "Unshare", "link"))
                        }
                    }
                }
            }
            (form(&format!("{base}/share"), csrf, html! {
                label { "Share with account " input type="text" name="account" placeholder="123456789012" pattern="[0-9]{12}" required; }
            }, "Share", ""))
        }
    }
}

fn owner_actions(region: &str, v: &ImageView, csrf: &str) -> Markup {
    let base = format!("/console/{region}/images/{}", v.id);
    let protected = v.doc.deregistration_protection.protects(catalog_now());
    html! {
        section #deprecation {
            h2 { "Deprecation" }
            @match v.doc.deprecation_ms {
                Some(t) => {
                    p { "Deprecated from " (when(t)) "." }
                    (form(&format!("{base}/undeprecate"), csrf, html! {}, "Cancel deprecation", ""))
                }
                None => {
                    p { "Not scheduled for deprecation." }
                }
            }
            (form(&format!("{base}/deprecate"), csrf, html! {
                label { "Deprecate at (UTC) " input type="datetime-local" name="at" required; }
            }, "Set deprecation time", ""))
        }
        section #protection {
            h2 { "Deregistration protection" }
            p { "Now: " strong { (v.doc.deregistration_protection.describe(catalog_now())) } }
            (form(&format!("{base}/protect"), csrf, html! {
                label { input type="checkbox" name="cooldown" value="yes"; " with a 24-hour cooldown" }
            }, "Enable protection", ""))
            (form(&format!("{base}/unprotect"), csrf, html! {}, "Disable protection", ""))
        }
        section #deregister {
            h2 { "Deregister" }
            @if protected {
                p { "Deregistration protection is on; disable it first." }
            }
            (confirmed(&format!("{base}/deregister"), csrf, html! {
                label { input type="checkbox" name="delete_snapshots" value="yes"; " also delete its snapshots" }
            }, "Deregister"))
        }
    }
}

fn catalog_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /console/{region}/images/{id}`.
pub(crate) async fn page(
    State(app): AppState,
    Path((region, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let caller = signed.caller(&region);
    let found = {
        let app = Arc::clone(&app);
        let id = id.clone();
        blocking(move || {
            let d = details(&app.cloud, &caller, &id)?;
            let offer = if d.image.state == "available" {
                Some(crate::launch::choices(&app.cloud, &caller)?)
            } else {
                None
            };
            Ok((d, offer))
        })
        .await
    };
    let frame = Frame::new(&app, &signed, &region, "/images");
    let csrf = signed.session.csrf.clone();
    let body = match &found {
        Err(e) => html! { h1 { "Image " (id) } p.flash.failed { (crate::words(e)) } },
        Ok((d, offer)) => {
            let v = &d.image;
            let owned = v.owner_id == signed.session.account_id;
            html! {
                h1 { (v.doc.name) }
                @if v.state == "available" {
                    p { a.button #launch-from href={ "/console/" (region) "/launch?image=" (v.id) } { "Launch an instance from this image" } }
                }
                div #live data-live=(if layout::transient(&v.state) { "yes" } else { "no" }) {
                dl.facts #facts {
                    dt { "AMI ID" } dd { code #image-id { (v.id) } }
                    dt { "State" } dd { (layout::state(&v.state)) }
                    dt { "Description" } dd { (v.doc.description.as_deref().unwrap_or("-")) }
                    dt { "Owner" } dd { (v.owner_id) @if let Some(a) = &v.doc.owner_alias { " (" (a) ")" } }
                    dt { "Architecture" } dd { (v.doc.architecture) }
                    dt { "Root device" } dd { (v.doc.root_device_type) " " (v.doc.root_device_name.as_deref().unwrap_or("")) }
                    dt { "Boot mode" } dd { (v.doc.boot_mode.as_deref().unwrap_or("-")) }
                    dt { "Virtualization" } dd { (v.doc.virtualization_type) }
                    dt { "Platform" } dd { (v.doc.platform_details) }
                    dt { "Created" } dd { (when(v.doc.creation_ms)) }
                    dt { "Deprecation time" } dd { (v.doc.deprecation_ms.map(when).unwrap_or_else(|| "-".into())) }
                    dt { "Deregistration protection" } dd { (v.doc.deregistration_protection.describe(catalog_now())) }
                    @if let Some(src) = &v.doc.source_image_id {
                        dt { "Copied from" } dd { (src) " in " (v.doc.source_image_region.as_deref().unwrap_or("?")) }
                    }
                }
                }
                h2 { "Block device mapping" }
                (mappings(&region, v, owned))
                @if v.state == "available" {
                    section #copy {
                        h2 { "Copy to a region" }
                        (form(&format!("/console/{region}/images/{}/copy", v.id), &csrf, html! {
                            label { "Region " select name="to" { @for r in frame.regions { option value=(r) selected[*r == region] { (r) } } } }
                            label { "Name " input type="text" name="copy_name" value=(v.doc.name) required; }
                        }, "Copy image", ""))
                    }
                }
                @if let Some(c) = offer {
                    (crate::templates::from_image(&region, &csrf, &v.id, c))
                }
                @if owned {
                    (permissions(&region, d, &csrf))
                    (owner_actions(&region, v, &csrf))
                }
            }
        }
    };
    let title = found
        .as_ref()
        .map_or_else(|_| id.clone(), |(d, _)| d.image.doc.name.clone());
    html(layout::page(&frame, &title, body))
}

fn account_field(form: &Form) -> Ec2Result<String> {
    let account = form.get("account").trim().to_string();
    if account.is_empty() {
        return Err(Ec2Error::missing("account id"));
    }
    Ok(account)
}

/// Runs one image action: what was done, and the page to show next if not the image's.
fn run(
    cloud: &Arc<Cloud>,
    caller: &Caller,
    id: &str,
    action: &str,
    form: &Form,
) -> Ec2Result<Done> {
    engine::images::check_image_id(id)?;
    let permission = |add: Vec<Grantee>, remove: Vec<Grantee>| {
        cloud.modify_image_attribute(
            caller,
            ModifyImageAttribute {
                image_id: id.to_string(),
                change: ImageChange::LaunchPermission { add, remove },
            },
        )
    };
    match action {
        "share" => {
            let account = account_field(form)?;
            permission(vec![Grantee::User(account.clone())], vec![])?;
            Ok(format!("Shared {id} with account {account}.").into())
        }
        "unshare" => {
            let account = account_field(form)?;
            permission(vec![], vec![Grantee::User(account.clone())])?;
            Ok(format!("{id} is no longer shared with account {account}.").into())
        }
        "public" => {
            permission(vec![Grantee::All], vec![])?;
            Ok(format!("{id} is now public.").into())
        }
        "private" => {
            permission(vec![], vec![Grantee::All])?;
            Ok(format!("{id} is now private.").into())
        }
        "deprecate" => {
            let at = form.get("at").trim();
            // datetime-local sends `YYYY-MM-DDTHH:MM`; seconds are optional.
            let full = if at.len() == 16 {
                format!("{at}:00Z")
            } else {
                at.to_string()
            };
            let ms = parse_timestamp(&full).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({at}) for parameter DeprecateAt is invalid. Expected a date and time."
                ))
            })?;
            cloud.enable_image_deprecation(caller, id, ms)?;
            Ok(format!("{id} is deprecated from {}.", when(ms)).into())
        }
        "undeprecate" => {
            cloud.disable_image_deprecation(caller, id)?;
            Ok(format!("Deprecation of {id} cancelled.").into())
        }
        "protect" => {
            let cooldown = form.get("cooldown") == "yes";
            cloud.enable_image_deregistration_protection(caller, id, cooldown)?;
            Ok(format!("Deregistration protection enabled for {id}.").into())
        }
        "unprotect" => {
            cloud.disable_image_deregistration_protection(caller, id)?;
            Ok(format!("Deregistration protection disabled for {id}.").into())
        }
        "copy" => {
            let to = form.get("to").trim();
            if !cloud.region_names().iter().any(|r| r == to) {
                return Err(Ec2Error::invalid_value(format!("Unknown region {to:?}.")));
            }
            let dest = Caller {
                account_id: caller.account_id.clone(),
                region: to.to_string(),
            };
            let copy = cloud.copy_image(
                &dest,
                CopyImage {
                    source_region: caller.region.clone(),
                    source_image_id: id.to_string(),
                    name: form.get("copy_name").trim().to_string(),
                    ..Default::default()
                },
            )?;
            Ok(Done::from(format!("Copying {id} to {copy} in {to}."))
                .then(format!("/console/{to}/images/{copy}")))
        }
        "deregister" => {
            form.confirmed("deregister the image")?;
            let deleted =
                cloud.deregister_image(caller, id, form.get("delete_snapshots") == "yes")?;
            let mut text = format!("Deregistered {id}.");
            for d in deleted {
                text.push_str(&format!(" Snapshot {}: {}.", d.snapshot_id, d.return_code));
            }
            Ok(Done::from(text).then(format!("/console/{}/images?tab=mine", caller.region)))
        }
        other => Err(Ec2Error::client(
            "InvalidAction",
            format!("The image action {other} is not known."),
        )),
    }
}

/// `POST /console/{region}/images/{id}/{action}`.
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
        &format!("/console/{region}/images/{id}"),
    )
}
