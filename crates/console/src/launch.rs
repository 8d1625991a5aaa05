//! The launch wizard: one plain form (no script needed; `multipart/form-data` so a user
//! data file can be attached) for RunInstances — name tag, image, instance type (from
//! the engine's type table, with vCPUs and memory), key pair (choose one, or create one
//! whose private key can be downloaded exactly once), security groups (choose existing
//! ones, or create one in the default VPC with inbound TCP rules: SSH, HTTP, HTTPS, a
//! custom port, from a source CIDR), storage (root size, type, IOPS and delete on
//! termination; extra empty volumes), user data (text or file) and count. Field names
//! and their checks are in [`crate::launch_form`].
//!
//! The steps run in order, each the engine call the API makes: CreateKeyPair,
//! CreateSecurityGroup + AuthorizeSecurityGroupIngress, RunInstances. When a later step
//! fails, the page says so in words and what earlier steps made: a new key pair is
//! deleted again (nobody has its private key), a new group is kept (it can be chosen
//! next time) and named.
//!
//! A new private key is not put on the page: it waits in memory under a random token
//! for one download (`GET /console/{r}/keys/{token}`, as `application/x-pem-file`) by
//! the same session, then is forgotten; undownloaded keys are forgotten after
//! [`KEY_TTL`].
//!
//! The form carries a client token made when it was shown, so submitting it twice (a
//! reload of the result page) launches nothing more: RunInstances is idempotent on it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use engine::images::{DescribeImages, EbsRequest, MappingRequest};
use engine::instances::{InstanceType, RunInstances};
use engine::keypairs::{CreateKeyPair, DescribeKeyPairs};
use engine::query::{Page, TagSpecification};
use engine::vpc::{IpPermission, PermissionSource};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use maud::{Markup, html};

use crate::launch_form::{
    Disk, EXTRA_VOLUMES, Fields, KeyChoice, MAX_COUNT, VOLUME_TYPES, WizardRequest,
};
use crate::layout::{self, Frame};
use crate::{AppState, Refused, Signed, blocking, gate, post_gate, session};

/// How long a new private key waits for its one download.
pub(crate) const KEY_TTL: Duration = Duration::from_secs(15 * 60);

/// A private key waiting for its one download.
struct PendingKey {
    token: String,
    session: String,
    name: String,
    material: String,
    made: Instant,
}

static PENDING: Mutex<Vec<PendingKey>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PendingKey>> {
    let mut keys = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    keys.retain(|k| k.made.elapsed() < KEY_TTL);
    keys
}

/// Keeps a new private key for one download by `session`; returns the download token.
fn hold_key(session: &str, name: &str, material: String) -> String {
    let token = session::random_token();
    pending().push(PendingKey {
        token: token.clone(),
        session: session.to_string(),
        name: name.to_string(),
        material,
        made: Instant::now(),
    });
    token
}

/// Takes a held key (it is gone afterwards): name and material.
fn take_key(session: &str, token: &str) -> Option<(String, String)> {
    let mut keys = pending();
    let at = keys.iter().position(|k| {
        session::same_secret(&k.token, token) && session::same_secret(&k.session, session)
    })?;
    let k = keys.swap_remove(at);
    Some((k.name, k.material))
}

/// What the form offers: key pair names, security groups, instance types.
pub(crate) struct Choices {
    pub(crate) keys: Vec<String>,
    /// (id, name, VPC id).
    pub(crate) groups: Vec<(String, String, String)>,
    pub(crate) types: Vec<InstanceType>,
}

pub(crate) fn choices(cloud: &Cloud, caller: &Caller) -> Ec2Result<Choices> {
    let keys = cloud
        .describe_key_pairs(caller, &DescribeKeyPairs::default())?
        .into_iter()
        .map(|k| k.doc.key_name)
        .collect();
    let groups = cloud
        .describe_security_groups(caller, &[], &[], &[], &Page::default())?
        .0
        .into_iter()
        .map(|g| (g.id, g.doc.name, g.doc.vpc_id))
        .collect();
    let types = engine::instances::describe_instance_types(&[], &[], &Page::default())?.0;
    Ok(Choices {
        keys,
        groups,
        types,
    })
}

/// The instance type `select` (t3.micro chosen).
pub(crate) fn type_select(types: &[InstanceType]) -> Markup {
    html! {
        select name="type" {
            @for t in types {
                option value=(t.name) selected[t.name == "t3.micro"] {
                    (t.name) " — " (t.vcpus) " vCPU, " (format!("{:.1}", t.memory_mib as f64 / 1024.0)) " GiB"
                }
            }
        }
    }
}

/// One checkbox per security group, named `group`.
pub(crate) fn group_boxes(groups: &[(String, String, String)]) -> Markup {
    html! {
        ul.choices #groups {
            @for (id, name, vpc) in groups {
                li { label { input type="checkbox" name="group" value=(id); span { (name) " (" code { (id) } ", " (vpc) ")" } } }
            }
        }
    }
}

fn type_options(chosen: &str) -> Markup {
    html! {
        option value="" { "(the image's)" }
        @for t in VOLUME_TYPES { option value=(t) selected[t == chosen] { (t) } }
    }
}

fn storage() -> Markup {
    html! {
        fieldset #storage {
            legend { "Storage" }
            p { "Root volume — empty fields keep the image's values." }
            label { "Size (GiB)" input type="number" name="root_size" min="1" max="16384"; }
            label { "Type" select name="root_type" { (type_options("")) } }
            label { "IOPS (io1, io2, gp3)" input type="number" name="root_iops" min="100"; }
            label { input type="checkbox" name="root_keep" value="yes"; " keep the root volume when the instance is terminated" }
            p { "Extra empty volumes (a row without a size is skipped)." }
            table.list #extra-volumes {
                thead { tr { th { "Device" } th { "Size (GiB)" } th { "Type" } th { "IOPS" } th { "Delete on termination" } } }
                tbody {
                    @for (i, dev) in ["/dev/sdf", "/dev/sdg", "/dev/sdh"].iter().take(EXTRA_VOLUMES).enumerate() {
                        @let n = i + 1;
                        tr {
                            td { code { (dev) } }
                            td { input type="number" name={ "vol" (n) "_size" } min="1" max="16384" aria-label={ "Size of volume " (n) }; }
                            td { select name={ "vol" (n) "_type" } aria-label={ "Type of volume " (n) } {
                                @for t in VOLUME_TYPES { option value=(t) selected[t == "gp3"] { (t) } }
                            } }
                            td { input type="number" name={ "vol" (n) "_iops" } min="100" aria-label={ "IOPS of volume " (n) }; }
                            td { input type="checkbox" name={ "vol" (n) "_dot" } value="yes" checked aria-label={ "Delete volume " (n) " on termination" }; }
                        }
                    }
                }
            }
        }
    }
}

fn wizard(region: &str, csrf: &str, image: &str, c: &Choices) -> Markup {
    html! {
        form.wizard #launch method="post" action={ "/console/" (region) "/launch" } enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="client_token" value=(session::random_token()[..32]);
            label { "Name" input type="text" name="name" placeholder="my-instance"; }
            label { "Image (AMI ID)" input type="text" name="image" value=(image) pattern="ami-[0-9a-f]+" required; }
            label { "Instance type" (type_select(&c.types)) }
            fieldset #key-pair {
                legend { "Key pair" }
                label { "Existing key pair"
                    select name="key" {
                        option value="" { "(none)" }
                        @for k in &c.keys { option value=(k) { (k) } }
                    }
                }
                label { "…or create a new one named" input type="text" name="new_key" placeholder="new key name"; }
                label { "Type" select name="new_key_type" { option value="ed25519" { "ed25519" } option value="rsa" { "rsa" } } }
                p.hint { "A new key's private key can be downloaded once, from the next page." }
            }
            fieldset #security {
                legend { "Security groups" }
                p { "Existing groups (none ticked and no new group: the VPC's default group)" }
                (group_boxes(&c.groups))
                p { "…and/or a new group in the default VPC, open for inbound TCP:" }
                label { "New group name" input type="text" name="new_group" placeholder="web-access"; }
                label { "Description" input type="text" name="new_group_desc" placeholder="(optional)"; }
                label { input type="checkbox" name="port" value="22"; " SSH (22)" }
                label { input type="checkbox" name="port" value="80"; " HTTP (80)" }
                label { input type="checkbox" name="port" value="443"; " HTTPS (443)" }
                label { "Custom TCP port or range" input type="text" name="custom_port" placeholder="8080 or 8000-8100" pattern="[0-9]+(-[0-9]+)?"; }
                label { "Source CIDR" input type="text" name="source_cidr" value="0.0.0.0/0"; }
            }
            (storage())
            label { "Number of instances" input type="number" name="count" min="1" max=(MAX_COUNT) value="1" required; }
            label { "User data" textarea name="user_data" rows="5" cols="60" placeholder="#cloud-config" {} }
            label { "…or a user data file (wins over the text)" input type="file" name="user_data_file"; }
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
    let image = crate::Form::parse(uri.query().unwrap_or("").as_bytes())
        .get("image")
        .to_string();
    let found = crate::call_as(&app, &signed, &region, move |cloud, caller| {
        choices(cloud, caller)
    })
    .await;
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

/// What a launch made: instance ids, a new key pair (name, download token), a new group.
struct Launched {
    ids: Vec<String>,
    key: Option<(String, String)>,
    group: Option<(String, String)>,
}

/// A failed launch: the error, and what earlier steps made or undid, in words.
struct Failed {
    error: Ec2Error,
    notes: Vec<String>,
}

impl From<Ec2Error> for Failed {
    fn from(error: Ec2Error) -> Failed {
        Failed {
            error,
            notes: Vec::new(),
        }
    }
}

fn mapping(device: String, d: &Disk) -> MappingRequest {
    MappingRequest {
        device_name: Some(device),
        ebs: Some(EbsRequest {
            volume_size: d.size,
            volume_type: d.volume_type.clone(),
            iops: d.iops,
            delete_on_termination: Some(d.delete_on_termination),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mappings(cloud: &Cloud, caller: &Caller, w: &WizardRequest) -> Ec2Result<Vec<MappingRequest>> {
    let mut out = Vec::new();
    if let Some(root) = &w.root {
        let req = DescribeImages {
            image_ids: vec![w.image.clone()],
            ..Default::default()
        };
        let image = cloud
            .describe_images(caller, &req)?
            .0
            .into_iter()
            .next()
            .ok_or_else(|| engine::images::not_found(&w.image))?;
        let device = image
            .doc
            .root_device_name
            .unwrap_or_else(|| "/dev/xvda".into());
        out.push(mapping(device, root));
    }
    for v in &w.volumes {
        out.push(mapping(v.device.clone().unwrap_or_default(), v));
    }
    Ok(out)
}

/// CreateSecurityGroup in the default VPC, then its inbound rules; a group whose rules
/// are refused is deleted again (it was made a moment ago and nothing uses it).
fn new_group(
    cloud: &Cloud,
    caller: &Caller,
    w: &WizardRequest,
) -> Ec2Result<Option<(String, String)>> {
    let Some(g) = &w.new_group else {
        return Ok(None);
    };
    let made = cloud.create_security_group(caller, &g.name, &g.description, None, &[])?;
    if !g.ports.is_empty() {
        let perms: Vec<IpPermission> = g
            .ports
            .iter()
            .map(|&(from, to)| IpPermission {
                protocol: "tcp".into(),
                from_port: Some(from),
                to_port: Some(to),
                sources: vec![(PermissionSource::Cidr(g.cidr.clone()), None)],
            })
            .collect();
        if let Err(e) =
            cloud.authorize_security_group(caller, Some(&made.id), None, false, &perms, &[])
        {
            if let Err(cleanup) = cloud.delete_security_group(caller, Some(&made.id), None) {
                tracing::warn!(group = %made.id, error = %cleanup.message, "removing the group of a refused rule");
            }
            return Err(e);
        }
    }
    Ok(Some((made.id, g.name.clone())))
}

fn launch(
    cloud: &Arc<Cloud>,
    signed: &Signed,
    caller: &Caller,
    fields: &Fields,
) -> Result<Launched, Failed> {
    let w = WizardRequest::from_fields(fields)?;
    // Checked before anything is made, so a bad form leaves nothing behind.
    let block_device_mappings = mappings(cloud, caller, &w)?;
    let mut notes = Vec::new();
    let fail = |error: Ec2Error, notes: Vec<String>| Failed { error, notes };
    let mut key = None;
    let key_name = match &w.key {
        KeyChoice::None => None,
        KeyChoice::Existing(name) => Some(name.clone()),
        KeyChoice::New(name, kind) => {
            let created = cloud.create_key_pair(
                caller,
                CreateKeyPair {
                    key_name: name.clone(),
                    key_type: Some(kind.clone()),
                    ..Default::default()
                },
            )?;
            key = Some((name.clone(), created.key_material));
            Some(name.clone())
        }
    };
    let forget_key = |notes: &mut Vec<String>| {
        // A key pair made for a launch that failed would be a key nobody has seen.
        if let Some((name, _)) = &key {
            match cloud.delete_key_pair(caller, Some(name), None) {
                Ok(_) => notes.push(format!(
                    "The key pair {name} made for this launch was deleted again (its private key was never shown)."
                )),
                Err(e) => notes.push(format!(
                    "The key pair {name} was made but could not be deleted again ({}); delete it, its private key was never shown.",
                    crate::words(&e)
                )),
            }
        }
    };
    let group = match new_group(cloud, caller, &w) {
        Ok(g) => g,
        Err(e) => {
            forget_key(&mut notes);
            return Err(fail(e, notes));
        }
    };
    let mut security_group_ids = w.groups.clone();
    if let Some((id, _)) = &group {
        security_group_ids.push(id.clone());
    }
    let tag_specifications = w
        .name
        .clone()
        .map(|n| TagSpecification {
            resource_type: "instance".into(),
            tags: vec![("Name".into(), n)],
        })
        .into_iter()
        .collect();
    let launched = cloud.run_instances(
        caller,
        RunInstances {
            image_id: w.image.clone(),
            min_count: w.count,
            max_count: w.count,
            instance_type: w.instance_type.clone(),
            block_device_mappings,
            user_data: w.user_data.clone(),
            client_token: w.client_token.clone(),
            tag_specifications,
            key_name,
            security_group_ids,
            ..Default::default()
        },
    );
    match launched {
        Ok(views) => Ok(Launched {
            ids: views.into_iter().map(|v| v.id).collect(),
            key: key.map(|(name, material)| {
                let token = hold_key(&signed.token, &name, material);
                (name, token)
            }),
            group,
        }),
        Err(e) => {
            forget_key(&mut notes);
            if let Some((id, name)) = &group {
                notes.push(format!(
                    "The security group {name} ({id}) made for this launch was kept; choose it next time or delete it."
                ));
            }
            Err(fail(e, notes))
        }
    }
}

/// A POST's gate for a form that may be `multipart/form-data`: the same checks as
/// [`post_gate`] (session, CSRF token, region), on the parsed fields.
pub(crate) fn wizard_gate(
    app: &crate::App,
    headers: &HeaderMap,
    region: &str,
    body: &Bytes,
) -> Result<(Signed, Result<Fields, Ec2Error>), Refused> {
    if app.signed(headers).is_none() {
        // Refused (and audited) before a byte of the body is parsed.
        return Err(post_gate(app, headers, Some(region), &Bytes::new())
            .err()
            .unwrap_or_else(|| Box::new(crate::forbidden("You are not signed in."))));
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let fields = Fields::parse(kind, body);
    let csrf = fields.as_ref().map_or("", |f| f.get("csrf"));
    let token_only: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", csrf)
        .finish();
    let (signed, _) = post_gate(app, headers, Some(region), &Bytes::from(token_only))?;
    Ok((signed, fields))
}

/// `POST /console/{region}/launch`: the steps above; answers with a page (not a
/// redirect) because it carries the one-time key download link.
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
    let image = fields.as_ref().map_or("", |f| f.get("image")).to_string();
    let caller = signed.caller(&region);
    let outcome = match fields {
        Err(e) => Err(Failed::from(e)),
        Ok(fields) => {
            let app = Arc::clone(&app);
            let signed = signed.clone();
            blocking(move || Ok(launch(&app.cloud, &signed, &caller, &fields)))
                .await
                .unwrap_or_else(|e| Err(Failed::from(e)))
        }
    };
    match &outcome {
        Ok(done) => {
            tracing::info!(account = %signed.session.account_id, instances = ?done.ids, "console launch")
        }
        Err(f) => {
            tracing::info!(account = %signed.session.account_id, error = %f.error.code, message = %f.error.message, "console launch refused")
        }
    }
    let audited = match &outcome {
        Ok(done) => crate::audit::Outcome::default().with_ids_in(&done.ids.join(" ")),
        Err(f) => crate::audit::Outcome::failed(&f.error),
    };
    let frame = Frame::new(&app, &signed, &region, "/launch");
    let (status, body) = match &outcome {
        Ok(done) => (StatusCode::OK, launched(&region, done)),
        Err(f) => (
            StatusCode::BAD_REQUEST,
            html! {
                h1 { "Launch an instance" }
                p.flash.failed #flash { (crate::words(&f.error)) }
                @if !f.notes.is_empty() {
                    ul #already { @for n in &f.notes { li { (n) } } }
                }
                p { a href={ "/console/" (region) "/launch?image=" (image) } { "Back to the wizard" } }
            },
        ),
    };
    audited.attach((status, crate::html(layout::page(&frame, "Launch", body))).into_response())
}

fn launched(region: &str, done: &Launched) -> Markup {
    html! {
        h1 { "Launched" }
        p.flash.done #flash {
            "Launched " (done.ids.len()) " instance(s): "
            @for id in &done.ids { a href={ "/console/" (region) "/instances/" (id) } { code { (id) } } " " }
        }
        @if let Some((id, name)) = &done.group {
            p #new-group { "Made the security group " (name) " (" code { (id) } ")." }
        }
        @if let Some((name, token)) = &done.key {
            section #new-key {
                h2 { "Private key of " (name) }
                p { "Download it now: the link works once, for this session, within "
                    (KEY_TTL.as_secs() / 60) " minutes. openami does not keep it afterwards." }
                p { a.button #key-download download={ (name) ".pem" } href={ "/console/" (region) "/keys/" (token) } { "Download " (name) ".pem" } }
            }
        }
        p { a href={ "/console/" (region) "/instances" } { "All instances" } }
    }
}

/// `GET /console/{region}/keys/{token}`: a new private key, once, as a PEM attachment.
pub(crate) async fn key_download(
    State(app): AppState,
    Path((region, token)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some((name, material)) = take_key(&signed.token, &token) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            layout::bare(
                "Key no longer available",
                "This private key was already downloaded, has expired, or belongs to another session; openami keeps no copy. Create a new key pair if it is lost.",
            )
            .into_string(),
        )
            .into_response();
    };
    tracing::info!(account = %signed.session.account_id, key = %name, "console key download");
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.pem\""),
            ),
        ],
        material,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_held_key_is_taken_once_and_only_by_its_session() {
        let token = hold_key("session-a", "k", "PEM".into());
        assert!(take_key("session-b", &token).is_none());
        assert_eq!(
            take_key("session-a", &token).unwrap(),
            ("k".into(), "PEM".into())
        );
        assert!(take_key("session-a", &token).is_none());
    }
}
