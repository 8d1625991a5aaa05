//! The EBS direct APIs over HTTP (REST-JSON, SigV4 service `ebs`), on the same listener
//! as EC2:
//!
//! ```text
//! POST /snapshots                              StartSnapshot
//! PUT  /snapshots/{id}/blocks/{index}          PutSnapshotBlock   (body: 512 KiB)
//! POST /snapshots/completion/{id}              CompleteSnapshot
//! GET  /snapshots/{id}/blocks                  ListSnapshotBlocks
//! GET  /snapshots/{id}/blocks/{index}          GetSnapshotBlock   (?blockToken=)
//! GET  /snapshots/{id}/changedblocks           ListChangedBlocks
//! ```
//!
//! Errors are JSON `{"Message": …, "Reason": …}` with the exception name in
//! `x-amzn-ErrorType`, as botocore's rest-json parser expects.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::Caller;
use engine::ebs::{BlockPage, BlockWrite, EbsError, EbsResult, StartSnapshot};
use serde_json::{Value, json};
use sigv4::Policy;

use crate::ApiState;
use crate::auth::{self, AuthFailure, Signer};

/// The EBS direct block size.
const BLOCK_SIZE: u64 = 512 * 1024;

pub(crate) fn router(state: Arc<ApiState>) -> Router {
    let ebs = Arc::new(EbsState {
        policy: Policy::new("ebs", state.policy.regions.clone()),
        api: state,
    });
    Router::new()
        .route("/snapshots", post(start_snapshot))
        .route("/snapshots/completion/{id}", post(complete_snapshot))
        .route("/snapshots/{id}/blocks", get(list_snapshot_blocks))
        .route(
            "/snapshots/{id}/blocks/{index}",
            get(get_snapshot_block).put(put_snapshot_block),
        )
        .route("/snapshots/{id}/changedblocks", get(list_changed_blocks))
        .with_state(ebs)
}

#[derive(Debug)]
pub(crate) struct EbsState {
    api: Arc<ApiState>,
    policy: Policy,
}

fn error_response(e: &EbsError) -> Response {
    let mut body = json!({ "Message": e.message, "message": e.message });
    if let Some(reason) = e.reason {
        body["Reason"] = json!(reason);
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [
            ("x-amzn-ErrorType", e.kind),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn auth_error(e: &sigv4::AuthError) -> EbsError {
    let (kind, status) = match e.aws_code() {
        "AuthFailure" => ("UnrecognizedClientException", 403),
        "MissingAuthenticationToken" => ("MissingAuthenticationTokenException", 403),
        "IncompleteSignature" => ("IncompleteSignatureException", 400),
        _ => ("InvalidSignatureException", 403),
    };
    EbsError {
        kind,
        status,
        reason: None,
        message: e.to_string(),
    }
}

/// Verifies the request once and returns the caller.
fn authenticate(
    state: &EbsState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    signer: &mut Signer,
) -> EbsResult<Caller> {
    let found = auth::authenticate(
        state.api.cloud.catalog(),
        &state.policy,
        method,
        uri,
        headers,
        body,
        signer,
    );
    let authenticated = match found {
        Ok(a) => a,
        Err(AuthFailure::Signature(e)) => return Err(auth_error(&e)),
        Err(AuthFailure::UnknownKey) => {
            return Err(EbsError {
                kind: "UnrecognizedClientException",
                status: 403,
                reason: None,
                message: "The security token included in the request is invalid.".into(),
            });
        }
        Err(AuthFailure::Catalog(e)) => return Err(EbsError::from(e)),
    };
    state.api.limits.ebs_admit(&authenticated.account_id)?;
    Ok(Caller {
        account_id: authenticated.account_id,
        region: authenticated.region,
    })
}

/// Runs `work` on a blocking thread after authentication.
async fn run(
    state: Arc<EbsState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    work: impl FnOnce(&EbsState, Caller, &HeaderMap, &Uri, &[u8]) -> EbsResult<Response>
    + Send
    + 'static,
) -> Response {
    crate::redact::trace_request(&method, &uri, &headers);
    let started = std::time::Instant::now();
    let path = uri.path().to_string();
    let request_id = crate::request_id();
    let mut event = crate::audit::Event::new("ebs");
    event.action = operation(&method, &path).to_string();
    if let Some(id) = path_snapshot_id(&path) {
        event.add_resource(id);
    }
    let outcome = tokio::task::spawn_blocking(move || {
        let mut signer = Signer::default();
        let result = (|| {
            let caller = authenticate(&state, &method, &uri, &headers, &body, &mut signer)?;
            work(&state, caller, &headers, &uri, &body)
        })();
        (result, signer)
    })
    .await;
    let mut response = match outcome {
        Ok((result, signer)) => {
            signer.record(&mut event);
            match result {
                Ok(r) => r,
                Err(e) => {
                    event.error_code = Some(e.kind.to_string());
                    error_response(&e)
                }
            }
        }
        Err(e) => {
            let e = EbsError::from(engine::Ec2Error::internal("ebs handler", e));
            event.error_code = Some(e.kind.to_string());
            error_response(&e)
        }
    };
    tracing::info!(
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        request_id = %request_id,
        "ebs request"
    );
    if let Some(created) = response.extensions_mut().remove::<CreatedSnapshot>() {
        event.add_resource(&created.0);
    }
    event.status = response.status().as_u16();
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    event.request_id = request_id;
    response.extensions_mut().insert(event);
    response
}

/// The snapshot StartSnapshot created, for the audit log.
#[derive(Debug, Clone)]
struct CreatedSnapshot(String);

/// The operation a method and path name (routes as in the module doc).
fn operation(method: &Method, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["snapshots"]) => "StartSnapshot",
        ("POST", ["snapshots", "completion", _]) => "CompleteSnapshot",
        ("PUT", ["snapshots", _, "blocks", _]) => "PutSnapshotBlock",
        ("GET", ["snapshots", _, "blocks"]) => "ListSnapshotBlocks",
        ("GET", ["snapshots", _, "blocks", _]) => "GetSnapshotBlock",
        ("GET", ["snapshots", _, "changedblocks"]) => "ListChangedBlocks",
        _ => "",
    }
}

/// The snapshot id a path names (`/snapshots/{id}/…`, `/snapshots/completion/{id}`).
fn path_snapshot_id(path: &str) -> Option<&str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["snapshots", "completion", id] => Some(id),
        ["snapshots", id, ..] if segments.len() > 2 => Some(id),
        _ => None,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn query(uri: &Uri) -> HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `pageToken`, `maxResults` and `startingBlockIndex` of the two List calls.
type Paging<'a> = (Option<&'a str>, Option<i64>, Option<u64>);

fn paging(q: &HashMap<String, String>) -> EbsResult<Paging<'_>> {
    Ok((
        q.get("pageToken").map(String::as_str),
        int_param(q.get("maxResults").map(String::as_str), "MaxResults")?,
        int_param(
            q.get("startingBlockIndex").map(String::as_str),
            "StartingBlockIndex",
        )?,
    ))
}

fn int_param<T: std::str::FromStr>(value: Option<&str>, name: &str) -> EbsResult<Option<T>> {
    value
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                EbsError::validation(
                    "INVALID_PARAMETER_VALUE",
                    format!("{name} must be a non-negative integer, got {v:?}."),
                )
            })
        })
        .transpose()
}

/// The body shared by ListSnapshotBlocks and ListChangedBlocks.
fn page_response<T>(key: &str, blocks: Vec<Value>, page: &BlockPage<T>) -> Response {
    let mut out = json!({
        key: blocks,
        "ExpiryTime": page.expiry_secs,
        "VolumeSize": page.volume_size,
        "BlockSize": BLOCK_SIZE,
    });
    if let Some(t) = &page.next_token {
        out["NextToken"] = json!(t);
    }
    json_response(StatusCode::OK, out)
}

fn epoch_secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

async fn start_snapshot(
    State(s): State<Arc<EbsState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(s, method, uri, headers, body, |s, caller, _, _, body| {
        let started = s.api.cloud.start_snapshot(&caller, start_snapshot_body(body)?)?;
        let mut out = json!({
            "SnapshotId": started.snapshot_id,
            "OwnerId": started.owner_id,
            "Status": started.status,
            "StartTime": epoch_secs(started.start_time_ms),
            "VolumeSize": started.volume_size,
            "BlockSize": BLOCK_SIZE,
            "Description": started.description,
            "Tags": started.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
        });
        if let Some(parent) = started.parent_snapshot_id {
            out["ParentSnapshotId"] = json!(parent);
        }
        let mut response = json_response(StatusCode::CREATED, out);
        response.extensions_mut().insert(CreatedSnapshot(started.snapshot_id));
        Ok(response)
    })
    .await
}

/// The StartSnapshot JSON body.
fn start_snapshot_body(body: &[u8]) -> EbsResult<StartSnapshot> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        EbsError::validation(
            "INVALID_PARAMETER_VALUE",
            format!("The request body is not valid JSON: {e}"),
        )
    })?;
    let volume_size = v
        .get("VolumeSize")
        .and_then(Value::as_i64)
        .ok_or_else(|| EbsError::validation("INVALID_VOLUME_SIZE", "VolumeSize is required."))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let tags = v
        .get("Tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .map(|t| {
                    (
                        t.get("Key")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        t.get("Value")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(StartSnapshot {
        volume_size,
        parent_snapshot_id: text("ParentSnapshotId"),
        tags,
        description: text("Description"),
        client_token: text("ClientToken"),
        encrypted: v.get("Encrypted").and_then(Value::as_bool).unwrap_or(false),
        timeout: v.get("Timeout").and_then(Value::as_i64),
    })
}

/// Parses what an EBS direct request carries besides its signature, without running it:
/// the operation its method and path name, the snapshot id and block index in the path,
/// the paging and `blockToken` query parameters, the PutSnapshotBlock and
/// CompleteSnapshot headers given as `(name, value)` pairs, and the StartSnapshot JSON
/// body. The same functions the handlers use; for the fuzz target (`crates/api/fuzz`).
/// Returns the operation name (empty when no route matches) or the first error.
#[doc(hidden)]
pub fn parse_request(
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<&'static str, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let uri: Uri = path_and_query
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name =
            axum::http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value =
            axum::http::HeaderValue::from_bytes(value.as_bytes()).map_err(|e| e.to_string())?;
        map.append(name, value);
    }
    let path = uri.path();
    let op = operation(&method, path);
    let _ = path_snapshot_id(path);
    let err = |e: EbsError| format!("{} {}: {}", e.status, e.kind, e.message);
    let q = query(&uri);
    match op {
        "StartSnapshot" => {
            start_snapshot_body(body).map_err(err)?;
        }
        "PutSnapshotBlock" | "GetSnapshotBlock" => {
            let index = path.trim_matches('/').rsplit('/').next().unwrap_or("");
            int_param::<u64>(Some(index), "BlockIndex").map_err(err)?;
            int_param::<u64>(header(&map, "x-amz-data-length"), "x-amz-Data-Length")
                .map_err(err)?;
            let _ = (header(&map, "x-amz-checksum"), q.get("blockToken"));
        }
        "CompleteSnapshot" => {
            int_param::<u64>(
                header(&map, "x-amz-changedblockscount"),
                "x-amz-ChangedBlocksCount",
            )
            .map_err(err)?;
        }
        "ListSnapshotBlocks" | "ListChangedBlocks" => {
            paging(&q).map_err(err)?;
        }
        _ => {}
    }
    Ok(op)
}

async fn put_snapshot_block(
    State(s): State<Arc<EbsState>>,
    Path((id, index)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        s,
        method,
        uri,
        headers,
        body,
        move |s, caller, headers, _, body| {
            let index: u64 = int_param(Some(&index), "BlockIndex")?.unwrap_or(0);
            let checksum = header(headers, "x-amz-checksum").ok_or_else(|| {
                EbsError::validation("INVALID_PARAMETER_VALUE", "x-amz-Checksum is required.")
            })?;
            let algorithm = header(headers, "x-amz-checksum-algorithm").ok_or_else(|| {
                EbsError::validation(
                    "INVALID_PARAMETER_VALUE",
                    "x-amz-Checksum-Algorithm is required.",
                )
            })?;
            let length =
                int_param::<u64>(header(headers, "x-amz-data-length"), "x-amz-Data-Length")?;
            let block = BlockWrite {
                index,
                data: body,
                data_length: length,
                checksum,
                algorithm,
            };
            let _slot = s.api.limits.upload_slot(&id)?;
            let sum = s.api.cloud.put_snapshot_block(&caller, &id, block)?;
            Ok((
                StatusCode::CREATED,
                [
                    ("x-amz-Checksum", sum.as_str()),
                    ("x-amz-Checksum-Algorithm", "SHA256"),
                ],
                "{}",
            )
                .into_response())
        },
    )
    .await
}

async fn complete_snapshot(
    State(s): State<Arc<EbsState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        s,
        method,
        uri,
        headers,
        body,
        move |s, caller, headers, _, _| {
            let count = int_param::<u64>(
                header(headers, "x-amz-changedblockscount"),
                "x-amz-ChangedBlocksCount",
            )?
            .ok_or_else(|| {
                EbsError::validation(
                    "INVALID_PARAMETER_VALUE",
                    "x-amz-ChangedBlocksCount is required.",
                )
            })?;
            let status = s.api.cloud.complete_snapshot(
                &caller,
                &id,
                count,
                header(headers, "x-amz-checksum"),
                header(headers, "x-amz-checksum-algorithm"),
                header(headers, "x-amz-checksum-aggregation-method"),
            )?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                json!({ "Status": status }),
            ))
        },
    )
    .await
}

async fn list_snapshot_blocks(
    State(s): State<Arc<EbsState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        s,
        method,
        uri,
        headers,
        body,
        move |s, caller, _, uri, _| {
            let q = query(uri);
            let (token, max, start) = paging(&q)?;
            let page = s
                .api
                .cloud
                .list_snapshot_blocks(&caller, &id, token, max, start)?;
            let blocks = page
                .blocks
                .iter()
                .map(|(i, t)| json!({"BlockIndex": i, "BlockToken": t}))
                .collect();
            Ok(page_response("Blocks", blocks, &page))
        },
    )
    .await
}

async fn list_changed_blocks(
    State(s): State<Arc<EbsState>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        s,
        method,
        uri,
        headers,
        body,
        move |s, caller, _, uri, _| {
            let q = query(uri);
            let (token, max, start) = paging(&q)?;
            let first = q.get("firstSnapshotId").map(String::as_str);
            let page = s
                .api
                .cloud
                .list_changed_blocks(&caller, first, &id, token, max, start)?;
            let blocks: Vec<Value> = page
                .blocks
                .iter()
                .map(|c| {
                    let mut b = json!({"BlockIndex": c.index});
                    if let Some(t) = &c.first_token {
                        b["FirstBlockToken"] = json!(t);
                    }
                    if let Some(t) = &c.second_token {
                        b["SecondBlockToken"] = json!(t);
                    }
                    b
                })
                .collect();
            Ok(page_response("ChangedBlocks", blocks, &page))
        },
    )
    .await
}

async fn get_snapshot_block(
    State(s): State<Arc<EbsState>>,
    Path((id, index)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        s,
        method,
        uri,
        headers,
        body,
        move |s, caller, _, uri, _| {
            let index: u64 = int_param(Some(&index), "BlockIndex")?.unwrap_or(0);
            let q = query(uri);
            let token = q.get("blockToken").ok_or_else(|| {
                EbsError::validation("INVALID_BLOCK_TOKEN", "blockToken is required.")
            })?;
            let (data, checksum) = s.api.cloud.get_snapshot_block(&caller, &id, index, token)?;
            let length = data.len().to_string();
            Ok((
                StatusCode::OK,
                [
                    ("x-amz-Data-Length", length.as_str()),
                    ("x-amz-Checksum", checksum.as_str()),
                    ("x-amz-Checksum-Algorithm", "SHA256"),
                    ("content-type", "application/octet-stream"),
                ],
                Body::from(data),
            )
                .into_response())
        },
    )
    .await
}
