//! The EC2 Query API over HTTP.
//!
//! EC2: `POST /` (form-encoded body) or `GET /?…` with `Action` and `Version=2016-11-15`.
//! The EBS direct APIs live under `/snapshots` (see `ebs`). Requests at `/` signed for
//! another service (SSM Parameter Store) are routed by `services`.
//! Each request is verified once with SigV4 ([`sigv4::verify`]: header or presigned
//! query; region from the credential scope must be served), turned into the typed
//! [`Action`] enum, executed by the [`engine`] on a blocking thread, and answered with
//! botocore-shaped XML — or the AWS error envelope:
//!
//! ```text
//! <Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors><RequestID>…</RequestID></Response>
//! ```

pub mod account;
pub mod action;
pub mod addresses;
pub mod allowed_images;
pub mod audit;
mod auth;
mod ebs;
mod handoff;
#[doc(hidden)]
pub use ebs::parse_request as ebs_parse_request;
pub mod images;
pub mod instance_options;
pub mod instances;
pub mod keypairs;
pub mod launch_templates;
pub mod limits;
pub mod params;
mod query_services;
mod redact;
mod respond;
pub mod run_options;
pub mod security_groups;
mod services;
pub mod transfers;
pub mod volume_options;
pub mod vpc;
pub mod xml;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use engine::{Caller, Cloud, Ec2Error, Ec2Result};
use sigv4::Policy;

use crate::action::Action;
use crate::params::Params;

/// Largest request body accepted (EC2 Query requests are small).
pub const MAX_BODY: usize = 1 << 20;
const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// API configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Regions served (credential scopes naming others are refused).
    pub regions: Vec<String>,
    /// The endpoint URL reported by DescribeRegions.
    pub endpoint: String,
    /// Query-protocol services served at `/` beside EC2 and SSM (Auto Scaling, ELBv2),
    /// routed on their signing name and `Version`.
    pub services: Vec<Arc<dyn awsquery::Service>>,
    /// Where state-changing calls are recorded (see [`audit`]); `None` records nothing.
    pub audit: Option<Arc<audit::AuditLog>>,
    /// Request rate and upload concurrency limits (see [`limits`]).
    pub limits: limits::LimitConfig,
}

#[derive(Debug)]
struct ApiState {
    cloud: Arc<Cloud>,
    policy: Policy,
    endpoint: String,
    services: Vec<Arc<dyn awsquery::Service>>,
    limits: limits::Limits,
}

/// The router serving the EC2 API (and SSM Parameter Store) at `/`. On a node of a
/// node cluster it also starts the worker that runs requests other nodes hand to this
/// one (see [`handoff`]).
pub fn router(cloud: Arc<Cloud>, config: ApiConfig) -> Router {
    let state = Arc::new(ApiState {
        cloud,
        policy: Policy::new("ec2", config.regions),
        endpoint: config.endpoint,
        services: config.services,
        limits: limits::Limits::new(config.limits),
    });
    handoff::start_worker(Arc::clone(&state));
    let router = Router::new()
        .route("/", any(services::root))
        .with_state(Arc::clone(&state))
        .merge(ebs::router(state));
    let router = match config.audit {
        Some(log) => router.layer(axum::middleware::from_fn_with_state(log, audit::record)),
        None => router,
    };
    router.layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Headers as (name, value) strings, for SigV4 verification.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

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

async fn ec2(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = request_id();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut event = audit::Event::new("ec2");
        let handled = handle(&state, &method, &uri, &headers, &body, &mut event);
        (handled, event)
    })
    .await;
    let mut event = audit::Event::new("ec2");
    let (status, body, action) = match outcome {
        Ok((Ok((action, inner)), seen)) => {
            event = seen;
            // Reads are not recorded: scanning their (maybe large) answers would be waste.
            if event.is_recorded() {
                event.add_xml_resources(&inner);
            }
            (
                StatusCode::OK,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{XMLNS}\"><requestId>{request_id}</requestId>{inner}</{action}Response>"
                ),
                action,
            )
        }
        Ok((Err((action, e)), seen)) => {
            event = seen;
            event.error_code = Some(e.code.clone());
            (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                error_body(&e, &request_id),
                action.unwrap_or_default(),
            )
        }
        Err(join) => {
            let e = Ec2Error::internal("request handler", join);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(&e, &request_id),
                String::new(),
            )
        }
    };
    tracing::info!(
        action = %action,
        status = status.as_u16(),
        ms = started.elapsed().as_millis() as u64,
        request_id = %request_id,
        "ec2 request"
    );
    event.status = status.as_u16();
    event.request_id = request_id;
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        body,
    )
        .into_response();
    response.extensions_mut().insert(event);
    response
}

fn error_body(e: &Ec2Error, request_id: &str) -> String {
    let mut x = xml::Xml::new();
    x.elem("Response", |x| {
        x.elem("Errors", |x| {
            x.elem("Error", |x| {
                x.text("Code", &e.code).text("Message", &e.message);
            });
        })
        .text("RequestID", request_id);
    });
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}", x.finish())
}

type Handled = Result<(String, String), (Option<String>, Ec2Error)>;

fn handle(
    state: &ApiState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    event: &mut audit::Event,
) -> Handled {
    let query = uri.query().unwrap_or("");
    let fail = |e: Ec2Error| (None, e);
    if method != Method::GET && method != Method::POST {
        return Err(fail(Ec2Error::client(
            "UnsupportedHttpVerb",
            format!("The HTTP verb {method} is not supported; use GET or POST"),
        )));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let sources: Vec<&[u8]> = if form && method == Method::POST {
        vec![body, query.as_bytes()]
    } else {
        vec![query.as_bytes()]
    };
    // Parsed before authentication (whose errors come first) so that the audit log knows
    // the action of a request whose signature is refused.
    let parsed = Params::parse(&sources);
    if let Ok(p) = &parsed {
        event.action = p.get("Action").unwrap_or_default().to_string();
        event.add_param_resources(p.names().filter_map(|n| p.get(n).map(|v| (n, v))), false);
    }
    let mut signer = auth::Signer::default();
    let authenticated = auth::authenticate(
        state.cloud.catalog(),
        &state.policy,
        method,
        uri,
        headers,
        body,
        &mut signer,
    );
    signer.record(event);
    let caller = match authenticated {
        Ok(a) => Caller {
            account_id: a.account_id,
            region: a.region,
        },
        Err(auth::AuthFailure::Signature(e)) => {
            return Err(fail(Ec2Error {
                code: e.aws_code().to_string(),
                message: e.to_string(),
                status: e.http_status(),
            }));
        }
        Err(auth::AuthFailure::UnknownKey) => {
            return Err(fail(Ec2Error::client(
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            )));
        }
        Err(auth::AuthFailure::Catalog(e)) => return Err(fail(e)),
    };
    let params = parsed.map_err(fail)?;
    let name = params.required("Action").map_err(fail)?;
    event.action = name.clone();
    let named = |e: Ec2Error| (Some(name.clone()), e);
    state.limits.ec2_admit(&caller.account_id).map_err(named)?;
    run(state, &caller, &params, &name)
        .map(|inner| (name.clone(), inner))
        .map_err(named)
}

fn run(state: &ApiState, caller: &Caller, params: &Params, name: &str) -> Ec2Result<String> {
    run_routed(state, caller, params, name, true)
}

/// Runs a request another node handed to this one (never handed on again).
pub(crate) fn run_here(
    state: &ApiState,
    caller: &Caller,
    params: &Params,
    name: &str,
) -> Ec2Result<String> {
    run_routed(state, caller, params, name, false)
}

/// Parses and executes a request; with `route`, a request whose work belongs to another
/// node's zone is handed to that node (see [`handoff`]).
fn run_routed(
    state: &ApiState,
    caller: &Caller,
    params: &Params,
    name: &str,
    route: bool,
) -> Ec2Result<String> {
    if params.get("Version").is_none() {
        return Err(Ec2Error::missing("Version"));
    }
    let mut action = Action::parse(name, params)?;
    services::resolve_image(state.cloud.catalog(), caller, &mut action)?;
    if params.bool("DryRun")? == Some(true) {
        return Err(Ec2Error {
            code: "DryRunOperation".into(),
            message: "Request would have succeeded, but DryRun flag is set.".into(),
            status: 412,
        });
    }
    if route && let Some(node) = handoff::route(&state.cloud, caller, &action)? {
        return handoff::forward(&state.cloud, &node, caller, params, name);
    }
    respond::execute(&state.cloud, caller, &state.endpoint, action)
}
