//! Console requests in the audit log: every sign-in (accepted or refused), sign-out and
//! state-changing POST becomes one [`AuditEvent`], handed to the [`AuditSink`] the server
//! passed in [`crate::ConsoleConfig::audit`] (`openami serve` writes it to the API's
//! audit log, `<data-dir>/audit/audit.log`, in the API's format with `"via":"console"`).
//!
//! One middleware ([`record`]) sees every POST: before the handler runs it notes the
//! path, the client's address and the session's account; after, it takes the [`Outcome`]
//! the handler attached to the response (the error code, ids named in the result) and
//! names the action with its EC2 equivalent from the path ([`action_of`]):
//!
//! ```text
//! POST /console/signin                     signin  ConsoleLogin
//! POST /console/signout                    signin  ConsoleLogout
//! POST /console/{r}/volumes                ec2     CreateVolume
//! POST /console/{r}/volumes/{id}/delete    ec2     DeleteVolume          (resources: id)
//! POST /console/{r}/launch                 ec2     RunInstances
//! anything else under /console             console ConsolePost
//! ```
//!
//! A POST refused before it runs (no session, a wrong CSRF token) is recorded with its
//! error code and no account. Passwords, secrets and tokens are never recorded.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Extensions, Method};
use axum::middleware::Next;
use axum::response::Response;
use engine::Ec2Error;

use crate::App;

/// Most resource ids recorded for one request.
const MAX_RESOURCES: usize = 16;

/// Where the console's audit events go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event; failures are the sink's to report, never the request's.
    fn record(&self, event: &AuditEvent);
}

/// One console request, as the audit log records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// `signin` for signing in and out, `ec2` for actions, `console` when unknown.
    pub service: String,
    /// The EC2 action the request performs (`CreateVolume`), or `ConsoleLogin`/`ConsoleLogout`.
    pub action: String,
    /// The signed-in account; for a sign-in, the account it was for when known.
    pub account_id: Option<String>,
    /// The access key the session signed in with, or the one a sign-in claimed.
    pub access_key_id: Option<String>,
    /// Resource ids: the one in the path, and those the outcome names.
    pub resources: Vec<String>,
    /// 200 for success; the engine error's status (400, 500…) or the response's otherwise.
    pub status: u16,
    /// The AWS-style error code when the request failed.
    pub error_code: Option<String>,
    /// A fresh id for the line (API lines carry the response's request id).
    pub request_id: String,
    /// The client's address.
    pub source: Option<SocketAddr>,
}

/// The address of the client of a request, put into the request's extensions by the
/// server (`openami serve` copies it from its connect info). `ConnectInfo<SocketAddr>`
/// is read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The client's address from a request's extensions.
pub(crate) fn peer(ext: &Extensions) -> Option<SocketAddr> {
    ext.get::<PeerAddr>().map(|p| p.0).or_else(|| {
        ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
    })
}

/// What a handler tells [`record`] about its request (a response extension).
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// The EC2 action, when the path alone cannot tell (an upload: ImportSnapshot or ImportImage).
    pub(crate) action: Option<&'static str>,
    pub(crate) account_id: Option<String>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) error: Option<(String, u16)>,
    pub(crate) resources: Vec<String>,
}

impl Outcome {
    /// A failure with an engine error.
    pub(crate) fn failed(e: &Ec2Error) -> Outcome {
        Outcome {
            error: Some((e.code.clone(), e.status)),
            ..Outcome::default()
        }
    }

    /// A refusal with `code` (HTTP `status`).
    pub(crate) fn refused(code: &str, status: u16) -> Outcome {
        Outcome {
            error: Some((code.to_string(), status)),
            ..Outcome::default()
        }
    }

    /// Adds the ids named in `text` (an outcome message: "Started snapshot snap-… of vol-…").
    pub(crate) fn with_ids_in(mut self, text: &str) -> Outcome {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if id_shaped(word) && !self.resources.iter().any(|r| r == word) {
                self.resources.push(word.to_string());
            }
        }
        self
    }

    /// Attaches the outcome to a response.
    pub(crate) fn attach(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// `prefix-hex` as EC2 ids are (`vol-0123456789abcdef0`, `import-ami-…`).
fn id_shaped(word: &str) -> bool {
    let Some((prefix, rest)) = word.rsplit_once('-') else {
        return false;
    };
    !prefix.is_empty()
        && prefix.len() <= 16
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        && (8..=32).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The service, EC2 action and resource id (from the path) of a console POST to `path`.
pub fn action_of(path: &str) -> (&'static str, &'static str, Option<&str>) {
    let segs: Vec<&str> = path
        .strip_prefix("/console/")
        .unwrap_or("")
        .split('/')
        .collect();
    fn id(s: &str) -> Option<&str> {
        id_shaped(s).then_some(s)
    }
    fn ec2<'a>(
        action: &'static str,
        r: Option<&'a str>,
    ) -> (&'static str, &'static str, Option<&'a str>) {
        ("ec2", action, r)
    }
    match segs.as_slice() {
        ["signin"] => ("signin", "ConsoleLogin", None),
        ["signout"] => ("signin", "ConsoleLogout", None),
        [_, "volumes"] => ("ec2", "CreateVolume", None),
        [_, "launch"] => ("ec2", "RunInstances", None),
        [_, "launch-templates"] => ("ec2", "CreateLaunchTemplate", None),
        [_, "launch-templates", t, action] => match *action {
            "launch" => ec2("RunInstances", id(t)),
            "delete" => ec2("DeleteLaunchTemplate", id(t)),
            _ => ("console", "ConsolePost", id(t)),
        },
        [_, "tasks", "new", "import"] => ("ec2", "ImportImage", None),
        [_, "upload"] => ("ec2", "ImportSnapshot", None),
        [_, "tasks", t, "cancel"] if t.starts_with("export-") => ec2("CancelExportTask", id(t)),
        [_, "tasks", t, "cancel"] => ec2("CancelImportTask", id(t)),
        [_, "volumes", v, action] => match *action {
            "snapshot" => ec2("CreateSnapshot", id(v)),
            "attach" => ec2("AttachVolume", id(v)),
            "detach" => ec2("DetachVolume", id(v)),
            "delete" => ec2("DeleteVolume", id(v)),
            _ => ("console", "ConsolePost", id(v)),
        },
        [_, "snapshots", s, action] => match *action {
            "volume" => ec2("CreateVolume", id(s)),
            "share" | "unshare" => ec2("ModifySnapshotAttribute", id(s)),
            "delete" => ec2("DeleteSnapshot", id(s)),
            _ => ("console", "ConsolePost", id(s)),
        },
        [_, "images", i, action] => match *action {
            "share" | "unshare" | "public" | "private" => ec2("ModifyImageAttribute", id(i)),
            "deprecate" => ec2("EnableImageDeprecation", id(i)),
            "undeprecate" => ec2("DisableImageDeprecation", id(i)),
            "protect" => ec2("EnableImageDeregistrationProtection", id(i)),
            "unprotect" => ec2("DisableImageDeregistrationProtection", id(i)),
            "copy" => ec2("CopyImage", id(i)),
            "deregister" => ec2("DeregisterImage", id(i)),
            _ => ("console", "ConsolePost", id(i)),
        },
        [_, "instances", i, action] => match *action {
            "start" => ec2("StartInstances", id(i)),
            "stop" => ec2("StopInstances", id(i)),
            "reboot" => ec2("RebootInstances", id(i)),
            "terminate" => ec2("TerminateInstances", id(i)),
            "image" => ec2("CreateImage", id(i)),
            _ => ("console", "ConsolePost", id(i)),
        },
        _ => ("console", "ConsolePost", None),
    }
}

/// A request id shaped like the API's (`8-4-4-4-12` hex digits).
fn request_id() -> String {
    let h = hex::encode(engine::ids::random_bytes::<16>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The middleware: records every POST under `/console` through the configured sink.
pub(crate) async fn record(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(sink) = app.config.audit.clone() else {
        return next.run(request).await;
    };
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let source = peer(request.extensions());
    // The session before the handler runs (sign-out ends it).
    let session = app.signed_account(request.headers());
    let mut response = next.run(request).await;
    let outcome = response
        .extensions_mut()
        .remove::<Outcome>()
        .unwrap_or_default();
    let (service, action, path_id) = match (action_of(&path), outcome.action) {
        ((_, _, id), Some(action)) => ("ec2", action, id),
        (named, None) => named,
    };
    let mut resources: Vec<String> = path_id.map(str::to_string).into_iter().collect();
    for r in outcome.resources {
        if resources.len() < MAX_RESOURCES && !resources.contains(&r) {
            resources.push(r);
        }
    }
    // A sign-in names whom it was for; other requests are the session's.
    let (account_id, access_key_id) = match session {
        Some((account, key)) if outcome.account_id.is_none() && outcome.access_key_id.is_none() => {
            (Some(account), key)
        }
        _ => (outcome.account_id, outcome.access_key_id),
    };
    let response_status = response.status();
    let (status, error_code) = match outcome.error {
        Some((code, status)) => (status, Some(code)),
        // A redirect or a page: the action went through.
        None if response_status.is_success() || response_status.is_redirection() => (200, None),
        None => (response_status.as_u16(), None),
    };
    let event = AuditEvent {
        service: service.into(),
        action: action.into(),
        account_id,
        access_key_id,
        resources,
        status,
        error_code,
        request_id: request_id(),
        source,
    };
    sink.record(&event);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_from_the_path() {
        let vol = "vol-0123456789abcdef0";
        for (path, want) in [
            ("/console/signin", ("signin", "ConsoleLogin", None)),
            ("/console/signout", ("signin", "ConsoleLogout", None)),
            ("/console/us-east-1/volumes", ("ec2", "CreateVolume", None)),
            (
                "/console/us-east-1/volumes/vol-0123456789abcdef0/delete",
                ("ec2", "DeleteVolume", Some(vol)),
            ),
            (
                "/console/r/snapshots/snap-0123456789abcdef0/share",
                (
                    "ec2",
                    "ModifySnapshotAttribute",
                    Some("snap-0123456789abcdef0"),
                ),
            ),
            (
                "/console/r/tasks/import-ami-0123456789abcdef0/cancel",
                (
                    "ec2",
                    "CancelImportTask",
                    Some("import-ami-0123456789abcdef0"),
                ),
            ),
            (
                "/console/r/instances/i-0123456789abcdef0/image",
                ("ec2", "CreateImage", Some("i-0123456789abcdef0")),
            ),
            (
                "/console/r/launch-templates",
                ("ec2", "CreateLaunchTemplate", None),
            ),
            (
                "/console/r/launch-templates/lt-0123456789abcdef0/delete",
                ("ec2", "DeleteLaunchTemplate", Some("lt-0123456789abcdef0")),
            ),
            // Not an id: not recorded as one.
            (
                "/console/r/volumes/<script>/delete",
                ("ec2", "DeleteVolume", None),
            ),
            ("/console/r/upload", ("ec2", "ImportSnapshot", None)),
            ("/console/r/elsewhere", ("console", "ConsolePost", None)),
            ("/elsewhere", ("console", "ConsolePost", None)),
        ] {
            assert_eq!(action_of(path), want, "{path}");
        }
    }

    #[test]
    fn ids_are_taken_from_outcome_messages() {
        let o = Outcome::default().with_ids_in(
            "Started snapshot snap-0123456789abcdef0 of vol-0aaaaaaaaaaaaaaaa. Done vol-0aaaaaaaaaaaaaaaa.",
        );
        assert_eq!(
            o.resources,
            ["snap-0123456789abcdef0", "vol-0aaaaaaaaaaaaaaaa"]
        );
        let none =
            Outcome::default().with_ids_in("Deleted x-1 and Vol-0123456789abcdef0 (10 GiB).");
        assert!(none.resources.is_empty(), "{:?}", none.resources);
    }
}
