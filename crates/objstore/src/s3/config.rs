//! Where and how [`super::S3Store`] reaches its bucket: `s3://bucket/prefix`, an endpoint, a
//! region and credentials, from explicit values or the usual AWS environment variables.

use std::fmt;
use std::time::Duration;

use crate::ObjectKey;

/// Region used when neither the caller nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where an S3-compatible bucket is and how to talk to it.
///
/// Build one with [`S3Config::from_url`], then fill what was not given explicitly from the
/// environment with [`S3Config::with_env`]. The tuning fields have defaults suited to a
/// store of 512 KiB blocks.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty): object
    /// `k` is stored as `<prefix>/k`.
    pub prefix: String,
    /// The S3 endpoint (`http://127.0.0.1:8333`, `https://s3.example.com`); requests use
    /// path-style addressing (`<endpoint>/<bucket>/<key>`). `None`: AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// The signing region.
    pub region: String,
    /// Static credentials. Required: the store never falls back to instance metadata.
    pub credentials: Option<S3Credentials>,
    /// Requests in flight at most (the rest wait their turn).
    pub max_concurrency: usize,
    /// Retries of a failed request (connection errors, timeouts, 5xx answers).
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// Limit on one request, from connecting to the last byte of the answer.
    pub request_timeout: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
}

/// An access key, its secret and an optional session token. `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    /// Not of the form `s3://bucket[/prefix]`.
    #[error("{url:?} is not an s3://bucket[/prefix] URL")]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// A bucket name S3 would refuse.
    #[error("invalid S3 bucket name {bucket:?}: {reason}")]
    BadBucket {
        /// The name.
        bucket: String,
        /// Why.
        reason: &'static str,
    },
    /// A prefix that is not a valid object key.
    #[error("invalid S3 key prefix {prefix:?}: {reason}")]
    BadPrefix {
        /// The prefix.
        prefix: String,
        /// Why.
        reason: &'static str,
    },
    /// An endpoint that is not an `http://` or `https://` URL.
    #[error("invalid S3 endpoint {endpoint:?}: expected http://host[:port] or https://host[:port]")]
    BadEndpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// No access key and secret were given or found in the environment.
    #[error(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or pass them explicitly)"
    )]
    NoCredentials,
    /// The client could not be built.
    #[error("building the S3 client: {0}")]
    Client(#[source] object_store::Error),
    /// The client's runtime could not be started.
    #[error("starting the S3 client's threads: {0}")]
    Runtime(#[source] std::io::Error),
}

impl S3Config {
    /// A configuration for `s3://bucket[/prefix]` with default tuning, region
    /// [`DEFAULT_REGION`], AWS's endpoint and no credentials yet.
    pub fn from_url(url: &str) -> Result<Self, S3ConfigError> {
        let bad = || S3ConfigError::BadUrl {
            url: url.to_string(),
        };
        let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad());
        }
        let config = S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
            endpoint: None,
            region: DEFAULT_REGION.to_string(),
            credentials: None,
            max_concurrency: 32,
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        };
        config.validate_names()?;
        Ok(config)
    }

    /// Fills what is still unset from the process environment: `AWS_ENDPOINT_URL_S3`,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// and `AWS_SESSION_TOKEN`. The generic `AWS_ENDPOINT_URL` is deliberately not read: it
    /// usually points the AWS clients at openami itself.
    pub fn with_env(self) -> Self {
        self.with_env_from(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`with_env`](Self::with_env) with the variables looked up by `var`.
    pub fn with_env_from(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        if self.endpoint.is_none() {
            self.endpoint = var("AWS_ENDPOINT_URL_S3");
        }
        if self.region == DEFAULT_REGION
            && let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"))
        {
            self.region = region;
        }
        if self.credentials.is_none()
            && let (Some(access_key_id), Some(secret_access_key)) =
                (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        {
            self.credentials = Some(S3Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            });
        }
        self
    }

    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), S3ConfigError> {
        self.validate_names()?;
        if let Some(endpoint) = &self.endpoint {
            let host = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"));
            if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
                return Err(S3ConfigError::BadEndpoint {
                    endpoint: endpoint.clone(),
                });
            }
        }
        if self
            .credentials
            .as_ref()
            .is_none_or(|c| c.access_key_id.is_empty() || c.secret_access_key.is_empty())
        {
            return Err(S3ConfigError::NoCredentials);
        }
        Ok(())
    }

    /// The endpoint requests go to (AWS's regional one when none is set).
    pub fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }

    /// `s3://bucket/prefix` as given.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn validate_names(&self) -> Result<(), S3ConfigError> {
        let bucket = &self.bucket;
        let refuse = |reason| S3ConfigError::BadBucket {
            bucket: bucket.clone(),
            reason,
        };
        if !(3..=63).contains(&bucket.len()) {
            return Err(refuse("must be 3 to 63 characters long"));
        }
        if !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(refuse(
                "only lowercase letters, digits, '.' and '-' allowed",
            ));
        }
        let edges = [bucket.as_bytes()[0], bucket.as_bytes()[bucket.len() - 1]];
        if !edges.iter().all(|b| b.is_ascii_alphanumeric()) {
            return Err(refuse("must begin and end with a letter or digit"));
        }
        if !self.prefix.is_empty()
            && let Err(e) = ObjectKey::new(self.prefix.as_str())
        {
            return Err(S3ConfigError::BadPrefix {
                prefix: self.prefix.clone(),
                reason: e.reason,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let c = S3Config::from_url("s3://my-bucket/openami/blocks/").unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str()),
            ("my-bucket", "openami/blocks")
        );
        assert_eq!(c.url(), "s3://my-bucket/openami/blocks");
        let c = S3Config::from_url("s3://bkt").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bkt", ""));
        assert_eq!(c.endpoint_url(), "https://s3.us-east-1.amazonaws.com");
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "",
            "s3://",
            "s3:///x",
            "http://bucket/x",
            "s3://Bucket",
            "s3://ab",
            "s3://-bucket",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "s3://bucket/UP",
        ] {
            assert!(S3Config::from_url(url).is_err(), "{url:?} accepted");
        }
    }

    #[test]
    fn environment_fills_only_what_is_unset() {
        let env = |name: &str| {
            let value = match name {
                "AWS_ENDPOINT_URL_S3" => "http://127.0.0.1:9",
                "AWS_ENDPOINT_URL" => "http://127.0.0.1:1",
                "AWS_DEFAULT_REGION" => "eu-west-1",
                "AWS_ACCESS_KEY_ID" => "AKID",
                "AWS_SECRET_ACCESS_KEY" => "s3cr3t-value",
                _ => return None,
            };
            Some(value.to_string())
        };
        let mut c = S3Config::from_url("s3://bucket").unwrap();
        assert!(matches!(c.validate(), Err(S3ConfigError::NoCredentials)));
        c = c.with_env_from(env);
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.region, "eu-west-1");
        let creds = c.credentials.clone().unwrap();
        assert_eq!(creds.access_key_id, "AKID");
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "Debug hides the secret"
        );
        c.validate().unwrap();

        let mut explicit = S3Config::from_url("s3://bucket").unwrap();
        explicit.endpoint = Some("http://127.0.0.1:7".into());
        explicit.region = "ap-south-1".into();
        let c = explicit.with_env_from(env);
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:7"));
        assert_eq!(c.region, "ap-south-1");
    }

    #[test]
    fn refuses_bad_endpoints() {
        let mut c = S3Config::from_url("s3://bucket").unwrap();
        c.credentials = Some(S3Credentials {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
            session_token: None,
        });
        for endpoint in ["127.0.0.1:9000", "ftp://x", "http://", "http://a b"] {
            c.endpoint = Some(endpoint.into());
            assert!(
                matches!(c.validate(), Err(S3ConfigError::BadEndpoint { .. })),
                "{endpoint}"
            );
        }
        c.endpoint = Some("http://127.0.0.1:9000/".into());
        c.validate().unwrap();
        assert_eq!(c.endpoint_url(), "http://127.0.0.1:9000");
    }
}
