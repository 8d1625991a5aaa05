//! The audit log: every state-changing call, one JSON line each, in
//! `<data-dir>/audit/audit.log` — what CloudTrail gives AWS users.
//!
//! ```text
//! {"time":"2026-12-01T19:00:00.123Z","service":"ec2","action":"DeleteVolume",
//!  "account_id":"123456789012","access_key_id":"AKIA…","resources":["vol-0123…"],
//!  "source":"127.0.0.1:51234","status":400,"error_code":"InvalidVolume.NotFound",
//!  "request_id":"…"}
//! ```
//!
//! Each request path (EC2, SSM, the query services, EBS direct) describes its call as an
//! [`Event`] attached to the response's extensions; one middleware ([`record`]) adds the
//! client's address (axum's `ConnectInfo`) and appends the line through the single
//! [`AuditLog`] writer once the response is decided. The server must be run with connect
//! info ([`ClientAddr`]) for `source` to be known; without it, `source` is `null`.
//!
//! * **What is logged**: calls whose action is not a read — `Describe*`, `Get*` and
//!   `List*` are not logged (as CloudTrail's management events leave out reads by
//!   default). Failed calls are logged with their status and error code, those whose
//!   signature is refused too: with the access key id they claimed (when it looks like
//!   one) and no account, since nothing about the signer was verified. Requests that fail
//!   before their action is known (an unparseable body, a wrong HTTP verb) are not.
//! * **Resources**: the ids named in the request parameters (`…Id`, `…Ids`, and for the
//!   query services also `…Arn`, `…Name`), plus on success the ids the response names.
//! * **Never logged**: secret keys, signatures, tokens or parameter values.
//! * **Failures**: a failure to write the audit log is logged as an error and does not
//!   fail the request: the call has already happened, and answering an error would make
//!   the client retry a call that succeeded.
//! * **The web console** writes its sign-ins and actions here too (through
//!   [`AuditLog::write`], from `openami serve`), with `"via":"console"` (API lines have
//!   no `via`), `service` `signin` for `ConsoleLogin`/`ConsoleLogout` and `ec2` for
//!   actions, named by their EC2 equivalent.
//! * **Rotation**: when a line would take the file past `max_bytes`, `audit.log` becomes
//!   `audit.log.1` (`.1` → `.2`, …; the oldest beyond `keep` is removed). Files are 0600.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use serde_json::json;

/// Most resource ids recorded for one call.
const MAX_RESOURCES: usize = 64;

/// The audit log's file name inside its directory.
pub const FILE_NAME: &str = "audit.log";

/// The single writer of the audit log.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Mutex<Option<(File, u64)>>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) `dir/audit.log` for appending; rotates past
    /// `max_bytes`, keeping `keep` (at least 1) rotated files.
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        let log = AuditLog {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file: Mutex::new(None),
        };
        let opened = log.open_file()?;
        *log.file
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))? = Some(opened);
        Ok(log)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn open_file(&self) -> std::io::Result<(File, u64)> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(self.path())?;
        let meta = file.metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            // An existing file someone widened: owner-only again.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            tracing::warn!(
                path = %self.path().display(),
                old = format!("{mode:o}"),
                new = "600",
                "audit log: made owner-only"
            );
        }
        Ok((file, meta.len()))
    }

    /// `audit.log` → `audit.log.1`, `.1` → `.2`, …, dropping the one past `keep`.
    fn rotate(&self) -> std::io::Result<()> {
        let base = self.path();
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", base.display()));
        match fs::remove_file(numbered(self.keep)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for n in (1..self.keep).rev() {
            match fs::rename(numbered(n), numbered(n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        fs::rename(&base, numbered(1))
    }

    /// Appends one line (a newline is added), rotating first when it would not fit.
    pub fn append(&self, line: &str) -> std::io::Result<()> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        let len = line.len() as u64 + 1;
        let needs_rotation = match guard.as_ref() {
            Some((_, size)) => *size > 0 && size + len > self.max_bytes,
            None => false,
        };
        if needs_rotation {
            *guard = None;
            self.rotate()?;
        }
        if guard.is_none() {
            *guard = Some(self.open_file()?);
        }
        let Some((file, size)) = guard.as_mut() else {
            return Err(std::io::Error::other("audit log not open"));
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        *size += len;
        Ok(())
    }

    /// Appends the line of `event` from `source`; a failure is logged, never returned.
    pub fn write(&self, event: &Event, source: Option<SocketAddr>) {
        let line = event.to_json(source, now_ms());
        if let Err(e) = self.append(&line) {
            tracing::error!(
                error = %e,
                action = %event.action,
                request_id = %event.request_id,
                "cannot write the audit log"
            );
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The client's address, recorded as an event's `source`: the connect info to serve the
/// router with, `app.into_make_service_with_connect_info::<ClientAddr>()`, on a
/// [`ClientListener`]. (`ConnectInfo<SocketAddr>` works too.)
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Listeners whose connections' remote address is the client's: `tokio`'s `TcpListener`,
/// and a TLS listener over TCP (`impl ClientListener for TlsListener {}`).
pub trait ClientListener: Listener<Addr = SocketAddr> {}

impl ClientListener for tokio::net::TcpListener {}

impl<L: ClientListener> Connected<IncomingStream<'_, L>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, L>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// One API call as its request path saw it (or one console request).
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// `ec2`, `ssm`, `ebs`, `autoscaling`, `elasticloadbalancing`.
    pub service: String,
    /// The action (operation) name; empty when it was never known.
    pub action: String,
    /// The caller's account, once authenticated.
    pub account_id: Option<String>,
    /// The access key the request was signed with, once verified.
    pub access_key_id: Option<String>,
    /// Resource ids the call names.
    pub resources: Vec<String>,
    /// HTTP status of the answer.
    pub status: u16,
    /// The AWS error code, if the call failed.
    pub error_code: Option<String>,
    /// The request id of the answer.
    pub request_id: String,
    /// Where the call came from when not the API: `console`. Left out of the line when
    /// `None`.
    pub via: Option<String>,
}

impl Event {
    pub(crate) fn new(service: &str) -> Event {
        Event {
            service: service.to_string(),
            ..Event::default()
        }
    }

    /// True if the call is one the audit log records: a known action that is not a read.
    pub(crate) fn is_recorded(&self) -> bool {
        !self.action.is_empty() && !is_read(&self.action)
    }

    /// Adds a resource id (once; up to [`MAX_RESOURCES`]).
    pub(crate) fn add_resource(&mut self, id: &str) {
        let id = id.trim();
        if !id.is_empty()
            && self.resources.len() < MAX_RESOURCES
            && !self.resources.iter().any(|r| r == id)
        {
            self.resources.push(id.to_string());
        }
    }

    /// Adds the values of the parameters that name resources: `…Id`/`…Ids` (and with
    /// `names_too`, `…Arn(s)`/`…Name(s)`), judged on the last segment of the parameter
    /// name that is neither a list index nor `member`/`entry`.
    pub(crate) fn add_param_resources<'a>(
        &mut self,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        names_too: bool,
    ) {
        for (name, value) in params {
            let Some(last) = name.split('.').rev().find(|s| {
                !s.is_empty()
                    && !s.bytes().all(|b| b.is_ascii_digit())
                    && *s != "member"
                    && *s != "entry"
            }) else {
                continue;
            };
            let names_resource = last.ends_with("Id")
                || last.ends_with("Ids")
                || (names_too
                    && (last.ends_with("Arn")
                        || last.ends_with("Arns")
                        || last.ends_with("Name")
                        || last.ends_with("Names")));
            if names_resource {
                self.add_resource(value);
            }
        }
    }

    /// Adds the ids an XML response names: elements `<…Id>` with an id-shaped value
    /// (`vol-0123…`) and `<…Arn>` with an ARN.
    pub(crate) fn add_xml_resources(&mut self, xml: &str) {
        let mut rest = xml;
        while let Some(open) = rest.find('<') {
            rest = &rest[open + 1..];
            let Some(close) = rest.find('>') else { break };
            let tag = &rest[..close];
            let after = &rest[close + 1..];
            if tag.starts_with('/') || tag.contains(' ') || tag.ends_with('/') {
                continue;
            }
            let Some(end) = after.find('<') else { break };
            let value = &after[..end];
            let wanted = (tag.ends_with("Id")
                && tag != "requestId"
                && tag != "RequestId"
                && id_shaped(value))
                || (tag.ends_with("Arn") && value.starts_with("arn:"));
            if wanted {
                self.add_resource(value);
            }
        }
    }

    fn to_json(&self, source: Option<SocketAddr>, now_ms: i64) -> String {
        let mut line = json!({
            "time": engine::query::iso8601(now_ms),
            "service": self.service,
            "action": self.action,
            "account_id": self.account_id,
            "access_key_id": self.access_key_id,
            "resources": self.resources,
            "source": source.map(|s| s.to_string()),
            "status": self.status,
            "error_code": self.error_code,
            "request_id": self.request_id,
        });
        if let (Some(via), Some(map)) = (&self.via, line.as_object_mut()) {
            map.insert("via".into(), json!(via));
        }
        line.to_string()
    }
}

/// `Describe*`, `Get*`, `List*`: reads, not recorded.
fn is_read(action: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| action.starts_with(p))
}

/// `prefix-hex` as EC2 ids are: `vol-0123456789abcdef0`, `ami-…`, `lt-…`.
fn id_shaped(value: &str) -> bool {
    match value.split_once('-') {
        Some((prefix, rest)) => {
            !prefix.is_empty()
                && prefix.len() <= 12
                && prefix.bytes().all(|b| b.is_ascii_lowercase())
                && rest.len() >= 8
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        }
        None => false,
    }
}

/// The middleware: appends the [`Event`] a handler attached to its response, if it is one
/// the log records, with the client's address.
pub(crate) async fn record(
    State(log): State<Arc<AuditLog>>,
    request: Request,
    next: Next,
) -> Response {
    let extensions = request.extensions();
    let source = extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0)
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0));
    let mut response = next.run(request).await;
    if let Some(event) = response.extensions_mut().remove::<Event>()
        && event.is_recorded()
    {
        // One small append to the page cache: done inline, so the line is there when the
        // client has its answer.
        log.write(&event, source);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_recorded() {
        let mut e = Event::new("ec2");
        for (action, recorded) in [
            ("DescribeVolumes", false),
            ("GetConsoleOutput", false),
            ("ListSnapshotBlocks", false),
            ("CreateVolume", true),
            ("PutSnapshotBlock", true),
            ("", false),
        ] {
            e.action = action.into();
            assert_eq!(e.is_recorded(), recorded, "{action}");
        }
    }

    #[test]
    fn resources_from_params_and_xml() {
        let mut e = Event::new("ec2");
        e.add_param_resources(
            [
                ("Action", "AttachVolume"),
                ("VolumeId", "vol-1"),
                ("InstanceId.1", "i-2"),
                ("Filter.1.Name", "x"),
                ("ClientToken", "secret-ish"),
            ],
            false,
        );
        assert_eq!(e.resources, ["vol-1", "i-2"]);
        let mut q = Event::new("autoscaling");
        q.add_param_resources(
            [
                ("AutoScalingGroupName", "web"),
                ("InstanceIds.member.1", "i-3"),
                ("Tags.member.1.Value", "v"),
            ],
            true,
        );
        assert_eq!(q.resources, ["web", "i-3"]);
        let mut x = Event::new("ec2");
        x.add_xml_resources(
            "<r><requestId>abcdef01-2345</requestId><volumeId>vol-0123456789abcdef0</volumeId><ownerId>123456789012</ownerId><a><b>1</b></a><x/><loadBalancerArn>arn:aws:x</loadBalancerArn></r>",
        );
        assert_eq!(x.resources, ["vol-0123456789abcdef0", "arn:aws:x"]);
    }

    #[test]
    fn appends_json_lines_and_rotates() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), 600, 2).unwrap();
        let mut e = Event::new("ec2");
        e.action = "CreateVolume".into();
        e.status = 200;
        e.request_id = "r".into();
        let source: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        for _ in 0..10 {
            log.write(&e, Some(source));
        }
        let path = tmp.path().join(FILE_NAME);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut lines = 0;
        for name in ["audit.log", "audit.log.1", "audit.log.2"] {
            let text = fs::read_to_string(tmp.path().join(name)).unwrap();
            assert!(text.len() <= 600, "{name} is {} bytes", text.len());
            assert!(text.lines().count() >= 2, "{name}: {text}");
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["action"], "CreateVolume");
                assert_eq!(v["source"], "127.0.0.1:4000");
                lines += 1;
            }
        }
        assert!(!tmp.path().join("audit.log.3").exists());
        assert!(lines < 10, "the oldest lines were dropped");
        assert!(lines >= 6);
    }

    #[test]
    fn console_lines_say_via_and_api_lines_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), 1 << 20, 1).unwrap();
        let mut e = Event::new("ec2");
        e.action = "CreateVolume".into();
        log.write(&e, None);
        e.via = Some("console".into());
        log.write(&e, None);
        let text = fs::read_to_string(tmp.path().join(FILE_NAME)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines[0].get("via").is_none());
        assert_eq!(lines[1]["via"], "console");
    }

    #[test]
    fn write_failure_is_reported_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        fs::create_dir(&dir).unwrap();
        let log = AuditLog::open(&dir, 10, 1).unwrap();
        log.append("first line, past the limit").unwrap();
        fs::remove_dir_all(&dir).unwrap();
        // The rotation the next line needs cannot happen: an error, not a panic.
        assert!(log.append("second").is_err());
        let mut e = Event::new("ec2");
        e.action = "CreateVolume".into();
        log.write(&e, None);
    }
}
