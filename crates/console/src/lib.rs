//! The web console (package `webconsole`, in `crates/console`; the name `console` is taken
//! by a dependency of indicatif), served by `openami serve` under `/console` on the API's own port.
//!
//! Pages are rendered on the server with [`maud`] (compile-time checked templates; every
//! interpolated value is HTML-escaped). They read without JavaScript; one small own
//! script (`/console/static/console.js`) refreshes a page's live region while something in
//! it is changing state. Every action calls the same [`engine::Cloud`] method the EC2 API
//! calls, as the signed-in account, so authorization and errors are identical; errors are
//! shown on the page as `Code: message`.
//!
//! Routes (`{r}` is a region the server serves):
//!
//! ```text
//! GET  /console                      → the home page of the first region, or sign-in
//! GET  /console/signin, POST /console/signin (two ways: account + password, or an
//!                                    access key), POST /console/signout
//! GET  /console/static/{file}        console.css, console.js (embedded)
//! GET  /console/{r}                  home: counts and links
//! GET  /console/{r}/images           the AMI catalog (tabs, search, filters, pages)
//! GET  /console/{r}/images/{id}      image details;   POST …/images/{id}/{action}
//! GET  /console/{r}/instances[/{id}] instances;       POST …/instances/{id}/{action}
//! GET  /console/{r}/instances/{id}/screenshot          the screen as PNG
//! GET  /console/{r}/launch            launch wizard;   POST …/launch (key pair, group, RunInstances)
//! GET  /console/{r}/keys/{token}      a new private key, downloadable once
//! GET  /console/{r}/launch-templates  templates;       POST …/launch-templates (create),
//!                                     …/launch-templates/{id}/{launch|delete}
//! GET  /console/{r}/volumes          volumes;         POST …/volumes, …/volumes/{id}/{action}
//! GET  /console/{r}/snapshots        snapshots;       POST …/snapshots/{id}/{action}
//! GET  /console/{r}/tasks            import/export;   POST …/tasks/new/import, …/tasks/{id}/cancel
//! POST /console/{r}/upload           a disk image file → ImportSnapshot/ImportImage task
//! GET  /console/{r}/snapshots/{id}/download            the snapshot as a raw disk
//! ```
//!
//! Security: see [`session`] (cookie, server-side sessions kept in the catalog, CSRF).
//! Every POST without the session's CSRF token is refused with 403 before anything runs.
//! Every response carries a Content-Security-Policy that allows scripts and styles from
//! the console only.
//! Sign-ins are throttled ([`throttle`]: five failures lock an account or key for 15
//! minutes); console passwords are Argon2id hashes ([`password`]); sign-ins and every
//! POST go to the audit log through [`ConsoleConfig::audit`] ([`audit`]).

pub mod audit;
mod auth;
mod catalog;
mod images;
mod instances;
mod launch;
mod launch_form;
mod layout;
pub mod password;
pub mod session;
mod signin;
mod storage;
mod tasks;
mod templates;
pub mod throttle;
mod upload;

pub use upload::MAX_UPLOAD_BYTES;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::audit::Outcome;
pub use crate::audit::{AuditEvent, AuditSink, PeerAddr};
use crate::session::{Flash, Session, Sessions};

/// Console configuration.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The listener is TLS: session cookies get `Secure`.
    pub secure_cookies: bool,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
    /// Where sign-ins and POSTs are recorded; `None` records nothing.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Failed sign-ins that lock an account, key or client, and for how long.
    pub throttle: throttle::Limits,
    /// The largest disk image a browser may upload, in bytes.
    pub max_upload_bytes: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            secure_cookies: false,
            idle_timeout: Duration::from_secs(12 * 3600),
            audit: None,
            throttle: throttle::Limits::default(),
            max_upload_bytes: MAX_UPLOAD_BYTES,
        }
    }
}

/// Password verifications (19 MiB of memory each) running at once at most.
const CONCURRENT_HASHING: usize = 4;

/// Shared state of the console's handlers.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) cloud: Arc<Cloud>,
    pub(crate) sessions: Sessions,
    pub(crate) throttle: throttle::Throttle,
    /// Permits for password verifications.
    pub(crate) hashing: tokio::sync::Semaphore,
    pub(crate) config: ConsoleConfig,
}

pub(crate) type AppState = State<Arc<App>>;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'";
const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

/// The console's router: every route lives under `/console`.
pub fn router(cloud: Arc<Cloud>, config: ConsoleConfig) -> Router {
    // The upload's body may be as large as the largest file plus the form around it.
    let upload_limit =
        usize::try_from(config.max_upload_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX);
    let app = Arc::new(App {
        cloud,
        sessions: Sessions::new(config.idle_timeout),
        throttle: throttle::Throttle::new(config.throttle),
        hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHING),
        config,
    });
    Router::new()
        .route("/console", get(auth::root))
        .route("/console/", get(auth::root))
        .route("/console/signin", get(signin::page).post(signin::signin))
        .route("/console/signout", post(auth::signout))
        .route("/console/static/{file}", get(asset))
        .route("/console/{region}", get(auth::home))
        .route("/console/{region}/images", get(catalog::page))
        .route("/console/{region}/images/{id}", get(images::page))
        .route("/console/{region}/images/{id}/{action}", post(images::act))
        .route("/console/{region}/instances", get(instances::list))
        .route(
            "/console/{region}/launch",
            get(launch::page).post(launch::submit),
        )
        .route("/console/{region}/keys/{token}", get(launch::key_download))
        .route(
            "/console/{region}/launch-templates",
            get(templates::list).post(templates::submit),
        )
        .route(
            "/console/{region}/launch-templates/{id}/{action}",
            post(templates::act),
        )
        .route("/console/{region}/instances/{id}", get(instances::page))
        .route(
            "/console/{region}/instances/{id}/{action}",
            post(instances::act),
        )
        .route(
            "/console/{region}/instances/{id}/screenshot",
            get(instances::screenshot),
        )
        .route(
            "/console/{region}/volumes",
            get(storage::volumes).post(storage::create_volume),
        )
        .route(
            "/console/{region}/volumes/{id}/{action}",
            post(storage::volume_act),
        )
        .route("/console/{region}/snapshots", get(storage::snapshots))
        .route("/console/{region}/tasks", get(tasks::page))
        .route(
            "/console/{region}/upload",
            post(upload::submit).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/console/{region}/snapshots/{id}/download",
            get(upload::download),
        )
        .route("/console/{region}/tasks/{id}/{action}", post(tasks::act))
        .route(
            "/console/{region}/snapshots/{id}/{action}",
            post(storage::snapshot_act),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            audit::record,
        ))
        .with_state(app)
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The signed-in browser of a request: its session token and session.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub(crate) token: String,
    pub(crate) session: Session,
}

impl Signed {
    /// The engine caller for a region.
    pub(crate) fn caller(&self, region: &str) -> Caller {
        Caller {
            account_id: self.session.account_id.clone(),
            region: region.to_string(),
        }
    }
}

impl App {
    /// The session of a request, if its cookie names a live one.
    pub(crate) fn signed(&self, headers: &HeaderMap) -> Option<Signed> {
        let cookies = headers.get_all(header::COOKIE);
        let token = cookies.iter().find_map(|v| {
            v.to_str()
                .ok()
                .and_then(|c| session::cookie(c, session::COOKIE))
        })?;
        let session = match self.sessions.get(self.cloud.catalog(), token) {
            Ok(found) => found?,
            Err(e) => {
                // Treated as not signed in (the cookie stays: the session works again
                // once the catalog answers).
                tracing::warn!(error = %e.message, "console session lookup failed");
                return None;
            }
        };
        Some(Signed {
            token: token.to_string(),
            session,
        })
    }

    /// The account and access key id (`None` after a password sign-in) of the session a
    /// request's cookie names, leaving the session untouched.
    pub(crate) fn signed_account(&self, headers: &HeaderMap) -> Option<(String, Option<String>)> {
        let token = headers.get_all(header::COOKIE).iter().find_map(|v| {
            v.to_str()
                .ok()
                .and_then(|c| session::cookie(c, session::COOKIE))
        })?;
        let (account, key) = self
            .sessions
            .peek(self.cloud.catalog(), token)
            .ok()
            .flatten()?;
        Some((account, (!key.is_empty()).then_some(key)))
    }

    /// True when the server serves `region`.
    pub(crate) fn serves(&self, region: &str) -> bool {
        self.cloud.region_names().iter().any(|r| r == region)
    }

    /// The first region served (where sign-in lands).
    pub(crate) fn first_region(&self) -> String {
        self.cloud
            .region_names()
            .first()
            .cloned()
            .unwrap_or_else(|| "us-east-1".into())
    }
}

/// A response sent instead of the page (boxed: responses are large).
pub(crate) type Refused = Box<Response>;

/// A GET page's gate: the session, or the response to send instead (sign-in, 404).
pub(crate) fn gate(app: &App, headers: &HeaderMap, region: &str) -> Result<Signed, Refused> {
    let Some(signed) = app.signed(headers) else {
        return Err(Box::new(redirect("/console/signin")));
    };
    if !app.serves(region) {
        return Err(Box::new(
            (StatusCode::NOT_FOUND, "no such region\n").into_response(),
        ));
    }
    Ok(signed)
}

/// A POST's gate: a live session, a served region, and the session's CSRF token in the
/// form's `csrf` field; anything else is 403 and nothing runs.
pub(crate) fn post_gate(
    app: &App,
    headers: &HeaderMap,
    region: Option<&str>,
    body: &Bytes,
) -> Result<(Signed, Form), Refused> {
    let form = Form::parse(body);
    let Some(signed) = app.signed(headers) else {
        return Err(Box::new(Outcome::refused("AuthFailure", 403).attach(
            forbidden("You are not signed in (or your session ended)."),
        )));
    };
    let given = form.get("csrf");
    if !session::same_secret(given, &signed.session.csrf) || given.is_empty() {
        return Err(Box::new(Outcome::refused("InvalidCsrfToken", 403).attach(
            forbidden(
                "The form's security token is missing or wrong; reload the page and try again.",
            ),
        )));
    }
    if let Some(r) = region
        && !app.serves(r)
    {
        return Err(Box::new(Outcome::refused("InvalidRegion", 404).attach(
            (StatusCode::NOT_FOUND, "no such region\n").into_response(),
        )));
    }
    Ok((signed, form))
}

/// A 403 page.
pub(crate) fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        layout::bare("Forbidden", why).into_string(),
    )
        .into_response()
}

/// A 303 redirect (after a POST, or to sign in).
pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// For the fuzz target: reads a launch wizard body (`multipart/form-data` or URL-encoded,
/// by `content_type`) and checks it as the wizard does; true if it would be accepted.
#[doc(hidden)]
pub fn fuzz_launch_form(content_type: &str, body: &[u8]) -> bool {
    launch_form::Fields::parse(content_type, body)
        .and_then(|f| launch_form::WizardRequest::from_fields(&f))
        .is_ok()
}

/// A form body or query string (`application/x-www-form-urlencoded`, untrusted bytes), by
/// field name (the last value wins).
#[derive(Debug, Default, Clone)]
pub struct Form(HashMap<String, String>);

impl Form {
    /// Parses a body or query string; bytes that are not UTF-8 become U+FFFD.
    pub fn parse(bytes: &[u8]) -> Form {
        Form(form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// Whether the form's confirmation box was ticked; `doing` completes "Tick the
    /// confirmation box to …" (e.g. "delete the volume").
    pub fn confirmed(&self, doing: &str) -> Ec2Result<()> {
        if self.get("confirm") == "yes" {
            Ok(())
        } else {
            Err(Ec2Error::client(
                "ConfirmationRequired",
                format!("Tick the confirmation box to {doing}."),
            ))
        }
    }

    /// A field, or `""`.
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    /// A non-empty field, trimmed.
    pub fn opt(&self, name: &str) -> Option<String> {
        let v = self.get(name).trim();
        (!v.is_empty()).then(|| v.to_string())
    }
}

/// Runs an engine call on a blocking thread (the engine does file and SQLite I/O).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Ec2Result<T> + Send + 'static,
) -> Ec2Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Ec2Error::internal("console request", e)))
}

/// Runs `work` (engine calls) on a blocking thread as the signed-in account in `region`.
pub(crate) async fn call_as<T: Send + 'static>(
    app: &Arc<App>,
    signed: &Signed,
    region: &str,
    work: impl FnOnce(&Arc<Cloud>, &Caller) -> Ec2Result<T> + Send + 'static,
) -> Ec2Result<T> {
    let (app, caller) = (Arc::clone(app), signed.caller(region));
    blocking(move || work(&app.cloud, &caller)).await
}

/// An engine error in words, as pages show it.
pub(crate) fn words(e: &Ec2Error) -> String {
    format!("{}: {}", e.code, e.message)
}

/// A successful action: what was done, in words for the next page, and that page when
/// it is not the action's usual one (e.g. the image a copy made).
pub(crate) struct Done {
    pub(crate) message: String,
    pub(crate) next: Option<String>,
}

impl Done {
    /// Shows `page` next instead of the action's usual page.
    pub(crate) fn then(mut self, page: String) -> Done {
        self.next = Some(page);
        self
    }
}

impl From<String> for Done {
    fn from(message: String) -> Done {
        Done {
            message,
            next: None,
        }
    }
}

/// Leaves the outcome of an action for the next page and sends the browser there: the
/// page the action chose, else `to`.
pub(crate) fn after(
    app: &App,
    signed: &Signed,
    outcome: Ec2Result<impl Into<Done>>,
    to: &str,
) -> Response {
    match outcome.map(Into::into) {
        Ok(done) => {
            tracing::info!(account = %signed.session.account_id, outcome = %done.message, "console action");
            let outcome = Outcome::default().with_ids_in(&done.message);
            app.sessions.flash(&signed.token, Flash::Done, done.message);
            outcome.attach(redirect(done.next.as_deref().unwrap_or(to)))
        }
        Err(e) => {
            tracing::info!(account = %signed.session.account_id, error = %e.code, message = %e.message, "console action refused");
            app.sessions.flash(&signed.token, Flash::Failed, words(&e));
            Outcome::failed(&e).attach(redirect(to))
        }
    }
}

/// An HTML page response.
pub(crate) fn html(markup: maud::Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn when(ms: i64) -> String {
    let iso = engine::query::iso8601(ms);
    // 2024-01-02T03:04:05.000Z → 2024-01-02 03:04:05 UTC
    match (iso.get(..10), iso.get(11..19)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => iso,
    }
}

/// The `Name` tag among tags.
pub(crate) fn name_tag(tags: &[(String, String)]) -> Option<&str> {
    tags.iter()
        .find(|(k, _)| k == "Name")
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod signin_tests;
#[cfg(test)]
mod tests;
