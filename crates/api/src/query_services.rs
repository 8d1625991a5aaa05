//! The query-protocol services at `/` (Auto Scaling, Elastic Load Balancing v2): SigV4
//! verified for the service's signing name, routed on (signing name, `Version`), run on a
//! blocking thread, answered in the query protocol's envelopes.
//!
//! Classic Elastic Load Balancing signs as `elasticloadbalancing` too but speaks version
//! 2012-06-01; requests naming a version no service serves get `InvalidAction` saying so.

use std::sync::Arc;
use std::time::Instant;

use awsquery::{Caller, Params, QueryError, Service};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sigv4::Policy;

use crate::audit::Event;
use crate::auth::{self, AuthFailure, Signer};
use crate::{ApiState, request_id};

/// The services signing as `signing_name`, if any.
pub(crate) fn signing_names(state: &ApiState) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = state.services.iter().map(|s| s.signing_name()).collect();
    names.dedup();
    names
}

/// Serves one request for a query service signing as `signing_name`.
pub(crate) async fn serve(
    state: Arc<ApiState>,
    signing_name: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = request_id();
    let namespace_hint = state
        .services
        .iter()
        .find(|s| s.signing_name() == signing_name)
        .map(|s| s.namespace())
        .unwrap_or_default();
    let name = signing_name.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut event = Event::new(&name);
        let handled = handle(&state, &name, &method, &uri, &headers, &body, &mut event);
        (handled, event)
    })
    .await;
    let mut event = Event::new(&signing_name);
    let (status, text, action) = match outcome {
        Ok((Ok((action, namespace, result)), seen)) => {
            event = seen;
            if let Some(result) = &result
                && event.is_recorded()
            {
                event.add_xml_resources(result);
            }
            (
                200,
                awsquery::response(&action, namespace, result.as_deref(), &request_id),
                action,
            )
        }
        Ok((Err((action, namespace, e)), seen)) => {
            event = seen;
            event.error_code = Some(e.code.clone());
            (
                e.status,
                awsquery::error_response(namespace, &e, &request_id),
                action.unwrap_or_default(),
            )
        }
        Err(join) => {
            let e = QueryError::internal(format!("request handler failed: {join}"));
            (
                500,
                awsquery::error_response(namespace_hint, &e, &request_id),
                String::new(),
            )
        }
    };
    tracing::info!(
        service = %signing_name,
        action = %action,
        status,
        ms = started.elapsed().as_millis() as u64,
        request_id = %request_id,
        "query request"
    );
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        text,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    event.status = status;
    event.request_id = request_id;
    response.extensions_mut().insert(event);
    response
}

type Handled =
    Result<(String, &'static str, Option<String>), (Option<String>, &'static str, QueryError)>;

fn handle(
    state: &ApiState,
    signing_name: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    event: &mut Event,
) -> Handled {
    let candidates: Vec<&Arc<dyn Service>> = state
        .services
        .iter()
        .filter(|s| s.signing_name() == signing_name)
        .collect();
    let namespace = candidates
        .first()
        .map(|s| s.namespace())
        .unwrap_or_default();
    let fail = |e: QueryError| (None, namespace, e);
    if method != Method::GET && method != Method::POST {
        return Err(fail(
            QueryError::new(
                "UnsupportedHttpVerb",
                format!("The HTTP verb {method} is not supported; use POST"),
            )
            .with_status(405),
        ));
    }
    let query = uri.query().unwrap_or("");
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
        event.add_param_resources(p.names().filter_map(|n| p.get(n).map(|v| (n, v))), true);
    }
    let policy = Policy {
        service: signing_name.to_string(),
        ..state.policy.clone()
    };
    let mut signer = Signer::default();
    let authenticated = auth::authenticate(
        state.cloud.catalog(),
        &policy,
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
        Err(AuthFailure::Signature(e)) => {
            return Err(fail(
                QueryError::new(e.aws_code(), e.to_string()).with_status(e.http_status()),
            ));
        }
        Err(AuthFailure::UnknownKey) => {
            return Err(fail(
                QueryError::new(
                    "InvalidClientTokenId",
                    "The security token included in the request is invalid.",
                )
                .with_status(403),
            ));
        }
        Err(AuthFailure::Catalog(e)) if e.status == 503 => {
            return Err(fail(
                QueryError::new("ServiceUnavailable", e.message).with_status(503),
            ));
        }
        Err(AuthFailure::Catalog(e)) => return Err(fail(QueryError::internal(e.message))),
    };
    state.limits.query_admit(&caller.account_id).map_err(fail)?;
    let params = parsed.map_err(fail)?;
    let action = params.required("Action").map_err(fail)?;
    event.action = action.clone();
    let version = params.required("Version").map_err(fail)?;
    let Some(service) = candidates.iter().find(|s| s.version() == version) else {
        let served: Vec<&str> = candidates.iter().map(|s| s.version()).collect();
        return Err((
            Some(action),
            namespace,
            QueryError::new(
                "InvalidAction",
                format!(
                    "API version {version} of '{signing_name}' is not served here (openami serves version {}); the classic Elastic Load Balancing API (2012-06-01) is not implemented.",
                    served.join(", ")
                ),
            ),
        ));
    };
    match service.call(&caller, &action, &params) {
        Ok(result) => Ok((action, service.namespace(), result)),
        Err(e) => Err((Some(action), service.namespace(), e)),
    }
}
