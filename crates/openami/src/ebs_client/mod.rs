//! A client of the EBS direct APIs (`openami snapshot upload|download`) that works against
//! any endpoint speaking them: openami or AWS.
//!
//! Every request is signed with SigV4 (service `ebs`) by [`sigv4::sign_headers`];
//! PutSnapshotBlock sends `x-amz-content-sha256: UNSIGNED-PAYLOAD` as botocore does (the
//! block is covered by its `x-amz-Checksum` instead), every other request signs the hash of
//! its body. Requests are retried with exponential backoff and jitter on connection errors,
//! 5xx and throttling; other 4xx errors fail at once. Over HTTPS it trusts the public
//! web roots plus the PEM certificates in the file `AWS_CA_BUNDLE` names, as the AWS CLI
//! does (for an openami server with a private CA).
//!
//! Blocks are moved by `workers` concurrent tasks that take the next block index from a
//! shared counter. See [`upload`] and [`download`] for the two directions.

pub mod credentials;
pub mod digests;
pub mod download;
pub mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use sigv4::SigningParams;

pub use credentials::Credentials;

/// The EBS direct block size.
pub const BLOCK_SIZE: u64 = 512 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `https://ebs.us-east-1.amazonaws.com` or `http://127.0.0.1:8773`.
    pub endpoint: String,
    /// The signing region.
    pub region: String,
    /// The credentials to sign with.
    pub credentials: Credentials,
    /// Attempts per request (at least 1).
    pub attempts: u32,
    /// Concurrent block transfers.
    pub workers: usize,
    /// Whether to draw a progress bar on standard error.
    pub progress: bool,
}

/// A signed, retrying EBS direct client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    host: String,
    config: ClientConfig,
}

/// A response that succeeded (2xx).
#[derive(Debug)]
pub struct Reply {
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the response body is not JSON")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The extra trusted certificates of `AWS_CA_BUNDLE` (a PEM file), if it is set.
pub fn ca_bundle_from_env() -> anyhow::Result<Vec<reqwest::Certificate>> {
    let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) else {
        return Ok(Vec::new());
    };
    let path = std::path::PathBuf::from(path);
    let pem = std::fs::read(&path)
        .with_context(|| format!("AWS_CA_BUNDLE {}: reading the file", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
        format!(
            "AWS_CA_BUNDLE {}: not a PEM certificate bundle",
            path.display()
        )
    })?;
    if certs.is_empty() {
        bail!(
            "AWS_CA_BUNDLE {}: no PEM certificate in the file",
            path.display()
        );
    }
    Ok(certs)
}

/// One failed attempt, and whether to try again.
enum Failure {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl Client {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> anyhow::Result<Self> {
        let base = Url::parse(&config.endpoint)
            .with_context(|| format!("invalid endpoint URL {:?}", config.endpoint))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("endpoint URL {:?} must be http or https", config.endpoint);
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => bail!("endpoint URL {:?} has no host", config.endpoint),
        };
        let mut http = reqwest::Client::builder();
        for cert in ca_bundle_from_env()? {
            http = http.add_root_certificate(cert);
        }
        let http = http
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(config.workers.max(1))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                host,
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sends a signed request, retrying transient failures. `path` starts with `/`;
    /// `query` pairs are percent-encoded here; `unsigned_payload` selects
    /// `UNSIGNED-PAYLOAD` (PutSnapshotBlock). `operation` names the call in errors.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Bytes,
        unsigned_payload: bool,
    ) -> anyhow::Result<Reply> {
        let attempts = self.inner.config.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .attempt(&method, path, query, headers, &body, unsigned_payload)
                .await
            {
                Ok(reply) => return Ok(reply),
                Err(Failure::Fatal(e)) => return Err(e.context(format!("{operation} failed"))),
                Err(Failure::Retry(e)) if attempt >= attempts => {
                    return Err(e.context(format!("{operation} failed after {attempt} attempt(s)")));
                }
                Err(Failure::Retry(e)) => {
                    tracing::debug!("{operation} attempt {attempt} failed, retrying: {e:#}");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: &Bytes,
        unsigned_payload: bool,
    ) -> Result<Reply, Failure> {
        let inner = &self.inner;
        let full_path = format!("{}{path}", inner.base.path().trim_end_matches('/'));
        let query_string = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut to_sign = vec![("Host".to_owned(), inner.host.clone())];
        to_sign.extend(headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let payload_hash = if unsigned_payload {
            to_sign.push((
                "X-Amz-Content-SHA256".to_owned(),
                sigv4::UNSIGNED_PAYLOAD.to_owned(),
            ));
            sigv4::UNSIGNED_PAYLOAD.to_owned()
        } else {
            sigv4::sha256_hex(body)
        };
        let creds = &inner.config.credentials;
        let signed = sigv4::sign_headers(
            method.as_str(),
            &full_path,
            &query_string,
            &to_sign,
            &payload_hash,
            &SigningParams {
                access_key_id: &creds.access_key_id,
                secret: &creds.secret,
                region: &inner.config.region,
                service: "ebs",
                time: SystemTime::now(),
                security_token: creds.session_token.as_deref(),
            },
        )
        .map_err(|e| Failure::Fatal(e.into()))?;
        let mut url = inner.base.clone();
        url.set_path(&full_path);
        url.set_query((!query_string.is_empty()).then_some(query_string.as_str()));
        let mut request = inner.http.request(method.clone(), url).body(body.clone());
        for (name, value) in to_sign.iter().skip(1).chain(signed.headers().iter()) {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|e| {
            Failure::Retry(anyhow!(e).context(format!("cannot reach {}", inner.base)))
        })?;
        let status = response.status();
        let response_headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Retry(anyhow!(e).context("reading the response")))?
            .to_vec();
        if status.is_success() {
            return Ok(Reply {
                headers: response_headers,
                body,
            });
        }
        let kind = response_headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let kind = kind
            .or_else(|| field("__type"))
            .unwrap_or_else(|| "UnknownError".to_owned());
        let message = field("Message")
            .or_else(|| field("message"))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(300)
                    .collect()
            });
        let reason = field("Reason")
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let err = anyhow!("{kind}: {message}{reason} (HTTP {})", status.as_u16());
        if retryable(status, &kind) {
            Err(Failure::Retry(err))
        } else {
            Err(Failure::Fatal(err))
        }
    }
}

/// Whether an error response is worth another attempt.
fn retryable(status: StatusCode, kind: &str) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || kind.contains("Throttl")
        || kind == "RequestLimitExceeded"
        || kind == "RequestThrottledException"
}

/// Exponential backoff with jitter: about 100 ms, 200 ms, 400 ms … capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(10).saturating_sub(1));
    let capped = base.min(10_000);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(capped / 2 + nanos % (capped / 2 + 1))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Base64 of a SHA-256 digest, as `x-amz-Checksum` carries it.
pub fn b64(digest: &[u8]) -> String {
    B64.encode(digest)
}

/// The LINEAR aggregate checksum of CompleteSnapshot: base64 of the SHA-256 of the
/// concatenated raw SHA-256 digests of the written blocks, in block index order.
pub fn linear_checksum<'a>(
    digests_in_index_order: impl IntoIterator<Item = &'a [u8; 32]>,
) -> String {
    let mut all = Vec::new();
    for d in digests_in_index_order {
        all.extend_from_slice(d);
    }
    b64(&blockstore::sha256(&all))
}

/// A byte-counting progress bar on standard error, hidden when `enabled` is false or
/// standard error is not a terminal.
pub fn progress_bar(enabled: bool, total: u64, message: &str) -> ProgressBar {
    use std::io::IsTerminal as _;
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_owned());
    bar
}

/// One block of a snapshot listing.
#[derive(Debug, Clone)]
pub struct ListedBlock {
    /// The block index.
    pub index: u64,
    /// The block token for GetSnapshotBlock.
    pub token: String,
}

/// All blocks of a completed snapshot (ListSnapshotBlocks, every page), and its volume
/// size in GiB.
pub async fn list_all_blocks(
    client: &Client,
    snapshot: &str,
) -> anyhow::Result<(Vec<ListedBlock>, u64)> {
    let path = format!("/snapshots/{}/blocks", encode(snapshot));
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("maxResults", "10000")];
        if let Some(t) = &token {
            query.push(("pageToken", t.as_str()));
        }
        let page = client
            .call(
                "ListSnapshotBlocks",
                Method::GET,
                &path,
                &query,
                &[],
                Bytes::new(),
                false,
            )
            .await?
            .json()?;
        let volume_size = page
            .get("VolumeSize")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("ListSnapshotBlocks returned no VolumeSize"))?;
        if let Some(size) = page.get("BlockSize").and_then(Value::as_u64)
            && size != BLOCK_SIZE
        {
            bail!("unsupported block size {size}");
        }
        for b in page
            .get("Blocks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = b.get("BlockIndex").and_then(Value::as_u64);
            let tok = b.get("BlockToken").and_then(Value::as_str);
            match (index, tok) {
                (Some(index), Some(tok)) => out.push(ListedBlock {
                    index,
                    token: tok.to_owned(),
                }),
                _ => bail!("ListSnapshotBlocks returned a malformed block: {b}"),
            }
        }
        token = page
            .get("NextToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            return Ok((out, volume_size));
        }
    }
}

/// GetSnapshotBlock: the block's data, verified against its `x-amz-Checksum`, and the
/// data's SHA-256. A mismatch is retried like a transient error.
pub async fn get_block(
    client: &Client,
    snapshot: &str,
    block: &ListedBlock,
) -> anyhow::Result<(Vec<u8>, [u8; 32])> {
    let path = format!("/snapshots/{}/blocks/{}", encode(snapshot), block.index);
    let mut last = None;
    for _ in 0..client.config().attempts.max(1) {
        let reply = client
            .call(
                "GetSnapshotBlock",
                Method::GET,
                &path,
                &[("blockToken", block.token.as_str())],
                &[],
                Bytes::new(),
                false,
            )
            .await?;
        let digest = blockstore::sha256(&reply.body);
        let expected = reply.header("x-amz-checksum").map(str::to_owned);
        if reply.body.len() as u64 == BLOCK_SIZE && expected.as_deref() == Some(&b64(&digest)) {
            return Ok((reply.body, digest));
        }
        last = Some(format!(
            "block {} of {snapshot}: {} bytes with checksum {} but x-amz-Checksum {:?}",
            block.index,
            reply.body.len(),
            b64(&digest),
            expected
        ));
    }
    bail!(
        "GetSnapshotBlock returned corrupt data: {}",
        last.unwrap_or_default()
    )
}

/// Runs `f(0..count)` on `workers` concurrent tasks, each taking the next index; stops
/// handing out work after the first error and returns it.
pub async fn for_each_parallel<F, Fut>(workers: usize, count: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..workers.clamp(1, count.max(1)) {
        let (f, next, failed) = (f.clone(), next.clone(), failed.clone());
        handles.push(tokio::spawn(async move {
            loop {
                if failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(());
                }
                if let Err(e) = f(i).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }));
    }
    let mut first = None;
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first.get_or_insert(e);
            }
            Err(e) => {
                first.get_or_insert(anyhow!("a transfer task failed: {e}"));
            }
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_checksum_matches_definition() {
        let a = vec![1u8; BLOCK_SIZE as usize];
        let b = vec![0u8; BLOCK_SIZE as usize];
        let (da, db) = (blockstore::sha256(&a), blockstore::sha256(&b));
        let mut cat = da.to_vec();
        cat.extend_from_slice(&db);
        assert_eq!(linear_checksum([&da, &db]), b64(&blockstore::sha256(&cat)));
        assert_ne!(linear_checksum([&db, &da]), linear_checksum([&da, &db]));
        // Known value: SHA-256 of the empty string.
        assert_eq!(
            linear_checksum(std::iter::empty()),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn encodes_and_classifies() {
        assert_eq!(encode("a+b/c=d~"), "a%2Bb%2Fc%3Dd~");
        assert!(retryable(
            StatusCode::SERVICE_UNAVAILABLE,
            "InternalServerException"
        ));
        assert!(retryable(StatusCode::BAD_REQUEST, "ThrottlingException"));
        assert!(!retryable(StatusCode::BAD_REQUEST, "ValidationException"));
        assert!(!retryable(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException"
        ));
        assert!(backoff(1) <= Duration::from_millis(100));
        assert!(backoff(20) <= Duration::from_secs(10));
    }
}
