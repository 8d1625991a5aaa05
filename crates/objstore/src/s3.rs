//! The S3 [`ObjectStore`]: objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO…),
//! through the `object_store` crate's S3 client.
//!
//! ```text
//! s3://<bucket>/<prefix>/<key>     one S3 object per store object; body = the object's bytes
//! ```
//!
//! How the trait maps onto S3:
//! * `put` is one PutObject with the whole body (never multipart). S3 applies a PUT
//!   atomically — a reader sees the old object or the new one — and it is durable once
//!   answered, so `put_name_pending` is `put` and `persist_names` has nothing left to do.
//!   `put_many` sends its PUTs concurrently and returns when all have answered.
//! * `get`/`head` are GetObject/HeadObject; a 404 is `NotFound`/`None`. `delete` is
//!   DeleteObject, which S3 answers 204 for a missing key too.
//! * `list(prefix)` is ListObjectsV2 on the raw string prefix (not a "directory"), every
//!   page, sorted by key; names that are not valid [`ObjectKey`]s (written by someone else)
//!   are skipped.
//! * No conditional writes are needed: every object is written whole by one request, block
//!   keys are content addresses (a concurrent duplicate PUT writes the same bytes) and
//!   manifest keys are unique ids.
//!
//! Requests are signed with SigV4 from explicit static credentials (never instance
//! metadata), go path-style to the configured endpoint, and are retried by the client on
//! connection errors, timeouts and 5xx answers with exponential backoff, bounded by
//! [`S3Config::max_retries`] and [`S3Config::retry_timeout`]; each attempt is bounded by
//! [`S3Config::request_timeout`]. At most [`S3Config::max_concurrency`] requests are in flight.
//!
//! The trait is synchronous and is called from plain threads, tokio blocking threads and
//! occasionally async tasks. The store therefore owns a small tokio runtime: each call spawns
//! its request onto that runtime and waits for the answer on a `std::sync::mpsc` channel,
//! which is safe from any thread (no `block_on` on the caller's thread, so no panic inside
//! another runtime). Dropping the store shuts its runtime down in the background, which is
//! also safe from async code.
//!
//! Failures become [`StoreError::Remote`] with a [`RemoteErrorKind`]: `Unavailable` for
//! connection errors, timeouts and 5xx answers left after the retries, `StorageFull` for a
//! quota answer (HTTP 507, `StorageFull`/`QuotaExceeded` codes), `Failed` for the rest
//! (credentials, permissions, a missing bucket). [`S3Store::check`] probes the bucket at start
//! and explains a failure in one line.

mod config;

pub use config::{DEFAULT_REGION, S3Config, S3ConfigError, S3Credentials};

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, mpsc};

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig, StaticCredentialProvider,
};
use tokio::sync::Semaphore;

use crate::{ObjectKey, ObjectMeta, ObjectStore, RemoteErrorKind, StoreError};

/// Objects in an S3-compatible bucket under a key prefix.
pub struct S3Store {
    client: Arc<AmazonS3>,
    config: S3Config,
    /// `"<prefix>/"`, or empty for the bucket's root.
    root: String,
    permits: Arc<Semaphore>,
    handle: tokio::runtime::Handle,
    /// Taken by `Drop` to shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

/// Why [`S3Store::check`] found the bucket unusable, in one line.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing answered at the endpoint (refused, timed out, or 5xx after retries).
    #[error("S3 endpoint {endpoint} is unreachable: {detail}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The last error, on one line.
        detail: String,
    },
    /// The endpoint answered but has no such bucket.
    #[error("S3 bucket {bucket:?} does not exist at {endpoint}")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
    },
    /// The endpoint refused the credentials or the access.
    #[error(
        "S3 endpoint {endpoint} refused access to bucket {bucket:?} (check the access key and secret): {detail}"
    )]
    Denied {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// The answer, on one line.
        detail: String,
    },
    /// Any other failure.
    #[error("S3 bucket {bucket:?} at {endpoint} is not usable: {detail}")]
    Failed {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// The error, on one line.
        detail: String,
    },
}

impl S3Store {
    /// A store for `config` (validated first). Starts the client's threads; does not touch
    /// the network — call [`check`](Self::check) for that.
    pub fn open(config: S3Config) -> Result<Self, S3ConfigError> {
        config.validate()?;
        let credentials = config
            .credentials
            .clone()
            .ok_or(S3ConfigError::NoCredentials)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("objstore-s3")
            .enable_all()
            .build()
            .map_err(S3ConfigError::Runtime)?;
        let options = ClientOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_credentials(Arc::new(StaticCredentialProvider::new(AwsCredential {
                key_id: credentials.access_key_id,
                secret_key: credentials.secret_access_key,
                token: credentials.session_token,
            })))
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: config.max_retries,
                retry_timeout: config.retry_timeout,
            })
            .with_client_options(options)
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let built = {
            let _entered = runtime.enter();
            builder.build()
        };
        let client = match built {
            Ok(client) => client,
            Err(e) => {
                // Never a plain drop: that panics when called from async code.
                runtime.shutdown_background();
                return Err(S3ConfigError::Client(e));
            }
        };
        let root = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", config.prefix)
        };
        Ok(S3Store {
            client: Arc::new(client),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            root,
            config,
        })
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Probes the bucket with one listing under the prefix: succeeds if the endpoint
    /// answers, the bucket exists and the credentials may list it.
    pub fn check(&self) -> Result<(), CheckError> {
        let client = Arc::clone(&self.client);
        let prefix = (!self.root.is_empty()).then(|| self.root.clone());
        let answer = self.run(async move {
            let options = PaginatedListOptions {
                max_keys: Some(1),
                ..Default::default()
            };
            client.list_paginated(prefix.as_deref(), options).await
        });
        let error = match answer {
            Some(Ok(_)) => return Ok(()),
            Some(Err(error)) => error,
            None => {
                return Err(CheckError::Unreachable {
                    endpoint: self.config.endpoint_url(),
                    detail: "the S3 client stopped".into(),
                });
            }
        };
        let endpoint = self.config.endpoint_url();
        let bucket = self.config.bucket.clone();
        let text = chain_text(&error);
        let detail = summary(&error, &text);
        if classify(&error) == RemoteErrorKind::Unavailable {
            return Err(CheckError::Unreachable { endpoint, detail });
        }
        if text.contains("NoSuchBucket") {
            return Err(CheckError::NoSuchBucket { bucket, endpoint });
        }
        let denied = matches!(
            error,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
        ]
        .iter()
        .any(|code| text.contains(code));
        if denied {
            Err(CheckError::Denied {
                bucket,
                endpoint,
                detail,
            })
        } else {
            Err(CheckError::Failed {
                bucket,
                endpoint,
                detail,
            })
        }
    }

    fn path(&self, key: &ObjectKey) -> Result<Path, StoreError> {
        let full = format!("{}{}", self.root, key.as_str());
        Path::parse(&full).map_err(|e| StoreError::Remote {
            op: "map key",
            what: key.to_string(),
            kind: RemoteErrorKind::Failed,
            source: Box::new(e),
        })
    }

    /// Runs `future` on the store's runtime once a request slot is free; the answer comes
    /// back on the returned channel (which closes without one if the runtime stopped).
    fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let permits = Arc::clone(&self.permits);
        self.handle.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let _ = tx.send(future.await);
        });
        rx
    }

    /// [`spawn`](Self::spawn) and wait: `None` if the runtime stopped first.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.spawn(future).recv().ok()
    }

    /// Waits for a request's answer and maps its error.
    fn wait<T>(
        rx: mpsc::Receiver<Result<T, object_store::Error>>,
        op: &'static str,
        what: &str,
    ) -> Result<T, StoreError> {
        match rx.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(remote(op, what, error)),
            Err(_) => Err(StoreError::Remote {
                op,
                what: what.to_string(),
                kind: RemoteErrorKind::Unavailable,
                source: "the S3 client stopped before answering".into(),
            }),
        }
    }

    fn spawn_put(
        &self,
        key: &ObjectKey,
        data: Vec<u8>,
    ) -> Result<mpsc::Receiver<Result<(), object_store::Error>>, StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        Ok(self.spawn(async move { client.put(&path, PutPayload::from(data)).await.map(|_| ()) }))
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.config.url())
            .field("endpoint", &self.config.endpoint_url())
            .finish()
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        Self::wait(self.spawn_put(key, data.to_vec())?, "put", key.as_str())
    }

    fn put_many(&self, objects: &[(ObjectKey, Vec<u8>)]) -> Result<(), StoreError> {
        let mut pending = Vec::with_capacity(objects.len());
        for (key, data) in objects {
            pending.push((key, self.spawn_put(key, data.clone())?));
        }
        // Wait for every PUT even after a failure, so none is still running on return.
        let mut first_error = None;
        for (key, rx) in pending {
            if let Err(e) = Self::wait(rx, "put", key.as_str()) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        let rx = self.spawn(async move { client.get(&path).await?.bytes().await });
        match Self::wait(rx, "get", key.as_str()) {
            Ok(bytes) => Ok(Vec::from(bytes)),
            Err(StoreError::Remote { source, .. }) if is_plain_not_found(source.as_ref()) => {
                Err(StoreError::NotFound { key: key.clone() })
            }
            Err(e) => Err(e),
        }
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        let rx = self.spawn(async move { client.head(&path).await });
        match Self::wait(rx, "head", key.as_str()) {
            Ok(meta) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: meta.size,
            })),
            Err(StoreError::Remote { source, .. }) if is_plain_not_found(source.as_ref()) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        let rx = self.spawn(async move { client.delete(&path).await });
        match Self::wait(rx, "delete", key.as_str()) {
            Err(StoreError::Remote { source, .. }) if is_plain_not_found(source.as_ref()) => Ok(()),
            other => other,
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full = format!("{}{}", self.root, prefix);
        let client = Arc::clone(&self.client);
        let rx = self.spawn(async move {
            let mut found = Vec::new();
            let mut page_token = None;
            loop {
                let options = PaginatedListOptions {
                    page_token: page_token.take(),
                    ..Default::default()
                };
                let page = client
                    .list_paginated((!full.is_empty()).then_some(full.as_str()), options)
                    .await?;
                found.extend(
                    page.result
                        .objects
                        .into_iter()
                        .map(|meta| (meta.location.to_string(), meta.size)),
                );
                match page.page_token {
                    Some(token) => page_token = Some(token),
                    None => return Ok(found),
                }
            }
        });
        let listed = Self::wait(rx, "list", prefix)?;
        let mut objects: Vec<ObjectMeta> = listed
            .into_iter()
            .filter_map(|(name, size)| {
                let key = ObjectKey::new(name.strip_prefix(&self.root)?).ok()?;
                key.as_str()
                    .starts_with(prefix)
                    .then_some(ObjectMeta { key, size })
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

/// An `object_store` error as a [`StoreError::Remote`], classified.
fn remote(op: &'static str, what: &str, error: object_store::Error) -> StoreError {
    StoreError::Remote {
        op,
        what: what.to_string(),
        kind: classify(&error),
        source: Box::new(error),
    }
}

/// A 404 for the object itself (not for a missing bucket, which S3 also answers 404).
fn is_plain_not_found(error: &(dyn StdError + Send + Sync + 'static)) -> bool {
    matches!(
        error.downcast_ref::<object_store::Error>(),
        Some(object_store::Error::NotFound { .. })
    ) && !chain_text(error).contains("NoSuchBucket")
}

fn classify(error: &object_store::Error) -> RemoteErrorKind {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>()
            && !matches!(http.kind(), HttpErrorKind::Decode | HttpErrorKind::Unknown)
        {
            return RemoteErrorKind::Unavailable;
        }
        source = e.source();
    }
    let text = chain_text(error);
    if text.contains("status code: 507")
        || ["StorageFull", "QuotaExceeded"]
            .iter()
            .any(|code| text.contains(code))
    {
        return RemoteErrorKind::StorageFull;
    }
    if text.contains("non-2xx status code: 5")
        || ["SlowDown", "ServiceUnavailable", "InternalError"]
            .iter()
            .any(|code| text.contains(code))
    {
        return RemoteErrorKind::Unavailable;
    }
    RemoteErrorKind::Failed
}

/// The messages of an error and all its sources, joined.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The gist of a failure: the S3 error code and message when the server answered one,
/// else the innermost cause (e.g. "Connection refused (os error 111)").
fn summary(error: &(dyn StdError + 'static), text: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find("</")? + start;
        Some(text[start..end].to_string())
    };
    if let Some(code) = element("Code") {
        return one_line(&match element("Message") {
            Some(message) => format!("{code}: {message}"),
            None => code,
        });
    }
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    one_line(&innermost.to_string())
}

/// `text` on one line of at most 300 characters.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 300 {
        joined.chars().take(297).chain("...".chars()).collect()
    } else {
        joined
    }
}
