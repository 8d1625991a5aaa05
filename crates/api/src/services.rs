//! Which AWS service a request at `/` is for, and the services other than EC2.
//!
//! Requests are routed on the service of their SigV4 credential scope (never on `Action`
//! alone): `ec2` → the EC2 Query API, `ssm` → Parameter Store (JSON 1.1, `X-Amz-Target`),
//! the signing names of the query services (`autoscaling`, `elasticloadbalancing`) →
//! `query_services`. Unsigned or unparseable requests go to EC2, which answers the
//! authentication error. Each service then verifies the signature with its own [`Policy`].
//!
//! Also here: `resolve:ssm:<name>[:<version>]` image ids of RunInstances ([`resolve_image`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use engine::{Caller, Ec2Error, Ec2Result};
use sigv4::{AuthError, Policy, RequestParts};

use crate::action::Action;
use crate::audit::Event;
use crate::auth::{self, AuthFailure, Signer};
use crate::instances::InstanceAction;
use crate::{ApiState, header_pairs, request_id};

/// `/`: dispatches on the credential scope's service.
pub(crate) async fn root(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::redact::trace_request(&method, &uri, &headers);
    let header_list = header_pairs(&headers);
    let service = sigv4::scope_service(&RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &header_list,
        body: &body,
    });
    match service.as_deref() {
        None | Some("ec2") => crate::ec2(State(state), method, uri, headers, body).await,
        Some("ssm") => ssm(state, method, uri, headers, body).await,
        Some(name) if crate::query_services::signing_names(&state).contains(&name) => {
            let name = name.to_string();
            crate::query_services::serve(state, name, method, uri, headers, body).await
        }
        Some(other) => {
            // AWS answers a scope naming another service SignatureDoesNotMatch; say which
            // services this endpoint serves.
            let mut served = vec!["ec2", "ssm"];
            served.extend(crate::query_services::signing_names(&state));
            let auth = AuthError::WrongService {
                expected: served.join(", "),
                got: other.to_string(),
            };
            let e = Ec2Error {
                code: auth.aws_code().to_string(),
                message: format!(
                    "{auth}; this request is signed for service '{other}', which openami does not serve at / (the EBS direct APIs are under /snapshots)."
                ),
                status: auth.http_status(),
            };
            tracing::info!(service = %other, "request for an unserved service");
            (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::FORBIDDEN),
                [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
                crate::error_body(&e, &request_id()),
            )
                .into_response()
        }
    }
}

/// The JSON error codes of authentication failures (the JSON protocols' words).
fn json_auth_code(e: &AuthError) -> &'static str {
    match e.aws_code() {
        "SignatureDoesNotMatch" => "InvalidSignatureException",
        "AuthFailure" => "UnrecognizedClientException",
        other => other,
    }
}

fn ssm_error(status: u16, code: &str, message: &str) -> ssm::Reply {
    ssm::Reply {
        status,
        body: serde_json::json!({"__type": code, "message": message}).to_string(),
        operation: String::new(),
    }
}

fn ssm_handle(
    state: &ApiState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    event: &mut Event,
) -> ssm::Reply {
    if method != Method::POST {
        return ssm_error(
            405,
            "UnsupportedHttpVerb",
            &format!("The HTTP verb {method} is not supported; AmazonSSM takes POST"),
        );
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    // Known before authentication, so that a refused signature is still audited.
    event.action = target
        .and_then(|t| t.strip_prefix("AmazonSSM."))
        .unwrap_or_default()
        .to_string();
    let policy = Policy {
        service: "ssm".into(),
        ..state.policy.clone()
    };
    let catalog = state.cloud.catalog();
    let mut signer = Signer::default();
    let authenticated =
        auth::authenticate(catalog, &policy, method, uri, headers, body, &mut signer);
    signer.record(event);
    let (account, region) = match authenticated {
        Ok(a) => (a.account_id, a.region),
        Err(AuthFailure::Signature(e)) => {
            return ssm_error(e.http_status(), json_auth_code(&e), &e.to_string());
        }
        Err(AuthFailure::UnknownKey) => {
            return ssm_error(
                400,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            );
        }
        Err(AuthFailure::Catalog(e)) if e.status == 503 => {
            return ssm_error(503, "ServiceUnavailable", &e.message);
        }
        Err(AuthFailure::Catalog(e)) => {
            return ssm_error(500, "InternalServerError", &e.message);
        }
    };
    add_ssm_resources(event, body);
    if !state.limits.admit(&account) {
        return ssm_error(400, "ThrottlingException", "Rate exceeded");
    }
    ssm::handle(catalog, &account, &region, target, body)
}

/// The parameter names (`Name`, `Names`) and tagged resource (`ResourceId`) an SSM
/// request body names, for the audit log.
fn add_ssm_resources(event: &mut Event, body: &[u8]) {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return;
    };
    for key in ["Name", "ResourceId"] {
        if let Some(v) = fields.get(key).and_then(|v| v.as_str()) {
            event.add_resource(v);
        }
    }
    for v in fields
        .get("Names")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(v) = v.as_str() {
            event.add_resource(v);
        }
    }
}

async fn ssm(
    state: Arc<ApiState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = request_id();
    let (reply, mut event) = tokio::task::spawn_blocking(move || {
        let mut event = Event::new("ssm");
        let reply = ssm_handle(&state, &method, &uri, &headers, &body, &mut event);
        (reply, event)
    })
    .await
    .unwrap_or_else(|e| {
        (
            ssm_error(500, "InternalServerError", &e.to_string()),
            Event::new("ssm"),
        )
    });
    tracing::info!(
        operation = %reply.operation,
        status = reply.status,
        ms = started.elapsed().as_millis() as u64,
        request_id = %request_id,
        "ssm request"
    );
    if !reply.operation.is_empty() {
        event.action = reply.operation.clone();
    }
    event.status = reply.status;
    if reply.status >= 300 {
        event.error_code = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("__type").and_then(|t| t.as_str()).map(str::to_string));
    }
    event.request_id = request_id.clone();
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        reply.body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response.extensions_mut().insert(event);
    response
}

/// Replaces a RunInstances image id `resolve:ssm:<name>[:<version>]` by the value of that
/// parameter (the caller's own, or public); a parameter that cannot be read answers
/// `InvalidParameterValue`.
pub(crate) fn resolve_image(
    catalog: &engine::Catalog,
    caller: &Caller,
    action: &mut Action,
) -> Ec2Result<()> {
    match action {
        Action::Instance(InstanceAction::Run(req)) => resolve_run_image(catalog, caller, req),
        _ => Ok(()),
    }
}

/// [`resolve_image`] of one RunInstances request (also after a launch template filled it).
pub(crate) fn resolve_run_image(
    catalog: &engine::Catalog,
    caller: &Caller,
    req: &mut engine::instances::RunInstances,
) -> Ec2Result<()> {
    let Some(reference) = req.image_id.strip_prefix("resolve:ssm:") else {
        return Ok(());
    };
    match ssm::resolve(catalog, &caller.account_id, &caller.region, reference) {
        Ok(value) => {
            req.image_id = value;
            Ok(())
        }
        Err(e) if e.status == 500 => Err(Ec2Error::internal("resolving an SSM parameter", e)),
        Err(e) => Err(Ec2Error::client(
            "InvalidParameterValue",
            format!(
                "Invalid value '{}' for ImageId: unable to resolve the SSM parameter {reference}: {}",
                req.image_id, e.message
            ),
        )),
    }
}
