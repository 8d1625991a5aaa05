//! Where an import's bytes come from and where an export's go: paths under the operator's
//! directories (never outside them) and http(s) downloads.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use super::urlguard::{CheckedUrl, MAX_REDIRECTS, UrlPolicy};
use super::{SourceSpec, TaskFailure};

fn client(message: impl Into<String>) -> TaskFailure {
    TaskFailure::Client(message.into())
}

/// Checks one user-supplied bucket name or key: relative, no `..`, no NUL, not empty.
pub(crate) fn check_relative(what: &str, value: &str) -> Result<PathBuf, String> {
    if value.is_empty() || value.len() > 1024 || value.contains('\0') {
        return Err(format!("Invalid {what} {value:?}"));
    }
    let path = Path::new(value);
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "Invalid {what} {value:?}: it must stay inside its bucket"
                ));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(format!("Invalid {what} {value:?}"));
    }
    Ok(clean)
}

/// `<root>/<bucket>/<key>` if it exists and, with symlinks resolved, stays under `root`.
pub(crate) fn inside(root: &Path, bucket: &str, key: &str) -> Result<PathBuf, String> {
    let bucket_path = check_relative("S3 bucket", bucket)?;
    if bucket_path.components().count() != 1 {
        return Err(format!("Invalid S3 bucket {bucket:?}"));
    }
    let key_path = check_relative("S3 key", key)?;
    let root = root
        .canonicalize()
        .map_err(|e| format!("The import directory is not usable: {e}"))?;
    let wanted = root.join(bucket_path).join(key_path);
    let real = wanted
        .canonicalize()
        .map_err(|_| format!("The object s3://{bucket}/{key} does not exist"))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "The object s3://{bucket}/{key} is outside the import directory"
        ));
    }
    if !real.is_file() {
        return Err(format!("The object s3://{bucket}/{key} is not a file"));
    }
    Ok(real)
}

/// Where an import reads from: a file under the import directory, or a download.
pub(crate) enum Source {
    /// A file under the import directory.
    Local(PathBuf),
    /// An http(s) URL, to be downloaded to the given path.
    Http(String),
}

/// Validates an import source at request time (so a bad one fails the call, not the
/// task): returns what the worker will read.
pub(crate) fn resolve(spec: &SourceSpec, import_dir: Option<&Path>) -> Result<Source, String> {
    let bucket_key = match (&spec.bucket, &spec.key, &spec.url) {
        (Some(b), Some(k), _) => Some((b.clone(), k.clone())),
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err("UserBucket needs both S3Bucket and S3Key".into());
        }
        (None, None, Some(url)) => {
            if let Some(rest) = url.strip_prefix("s3://") {
                let (b, k) = rest
                    .split_once('/')
                    .ok_or_else(|| format!("Invalid S3 URL {url:?}"))?;
                Some((b.to_string(), k.to_string()))
            } else if url.starts_with("http://") || url.starts_with("https://") {
                return Ok(Source::Http(url.clone()));
            } else {
                return Err(format!(
                    "Invalid Url {url:?}: expected s3://bucket/key or an http(s) URL"
                ));
            }
        }
        (None, None, None) => return Err("The disk container needs a Url or a UserBucket".into()),
    };
    let (bucket, key) = bucket_key.unwrap_or_default();
    let dir = import_dir.ok_or_else(|| {
        "This openami has no import directory (serve --import-dir); use an http(s) Url".to_string()
    })?;
    inside(dir, &bucket, &key).map(Source::Local)
}

/// Sends the GET of one hop to exactly the checked addresses, without following
/// redirects or using a proxy.
fn get(target: &CheckedUrl) -> Result<reqwest::blocking::Response, TaskFailure> {
    let mut builder = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(None)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(domain) = &target.domain {
        builder = builder.resolve_to_addrs(domain, &target.addrs);
    }
    let http = builder
        .build()
        .map_err(|e| TaskFailure::Server(format!("HTTP client: {e}")))?;
    let url = &target.url;
    http.get(url.clone())
        .send()
        .map_err(|e| client(format!("Cannot download {url}: {}", without_url(&e))))
}

/// A reqwest error's text without the URL it repeats.
fn without_url(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = String::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if text.is_empty() { e.to_string() } else { text }
}

/// Downloads `url` to `dest` (at most `max_bytes`), checking for cancellation. The URL
/// and every redirect are checked against `policy` before anything is sent to them.
pub(crate) fn download(
    url: &str,
    policy: &UrlPolicy,
    dest: &Path,
    max_bytes: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), TaskFailure> {
    let mut next = url.to_string();
    let mut hops = 0;
    let mut response = loop {
        let target = policy.check(&next).map_err(|m| {
            if next == url {
                client(m)
            } else {
                client(format!("{url} redirects to {next}, which is refused: {m}"))
            }
        })?;
        let response = get(&target)?;
        if !response.status().is_redirection() {
            break response;
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                client(format!(
                    "Cannot download {url}: HTTP {} without a Location",
                    response.status()
                ))
            })?;
        next = target
            .url
            .join(location)
            .map_err(|e| client(format!("Cannot download {url}: bad redirect: {e}")))?
            .to_string();
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(client(format!(
                "Cannot download {url}: more than {MAX_REDIRECTS} redirects"
            )));
        }
    };
    if !response.status().is_success() {
        return Err(client(format!(
            "Cannot download {url}: HTTP {}",
            response.status()
        )));
    }
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(client(format!("{url} is larger than {max_bytes} bytes")));
    }
    let mut file = std::fs::File::create(dest)
        .map_err(|e| TaskFailure::Server(format!("download file: {e}")))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        if cancelled() {
            return Err(TaskFailure::Cancelled);
        }
        let n = response
            .read(&mut buf)
            .map_err(|e| client(format!("Downloading {url} failed: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > max_bytes {
            return Err(client(format!("{url} is larger than {max_bytes} bytes")));
        }
        file.write_all(&buf[..n])
            .map_err(|e| TaskFailure::Server(format!("download file: {e}")))?;
    }
    file.sync_all()
        .map_err(|e| TaskFailure::Server(format!("download file: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "a\0b"] {
            assert!(check_relative("key", bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_relative("key", "./a/b.raw").unwrap(),
            PathBuf::from("a/b.raw")
        );
    }

    #[test]
    fn symlinks_out_of_the_directory_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::create_dir(root.path().join("bucket")).unwrap();
        std::fs::write(root.path().join("bucket/disk.raw"), b"disk").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            root.path().join("bucket/link"),
        )
        .unwrap();
        assert!(inside(root.path(), "bucket", "disk.raw").is_ok());
        let err = inside(root.path(), "bucket", "link").unwrap_err();
        assert!(err.contains("outside"), "{err}");
        assert!(inside(root.path(), "bucket", "missing").is_err());
        assert!(inside(root.path(), "a/b", "disk.raw").is_err());
    }

    /// The connection goes to the checked addresses, not to a new DNS answer: the name
    /// `localhost` (which the system resolves to 127.0.0.1) is sent to 127.0.0.2, where
    /// the only server listens.
    #[test]
    fn downloads_connect_to_exactly_the_checked_addresses() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let mut stream = stream;
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbytes",
                )
                .unwrap();
        });
        let target = CheckedUrl {
            url: reqwest::Url::parse(&format!("http://localhost:{}/d.raw", addr.port())).unwrap(),
            domain: Some("localhost".into()),
            addrs: vec![addr],
        };
        let mut response = get(&target).unwrap();
        let mut body = String::new();
        response.read_to_string(&mut body).unwrap();
        assert_eq!(body, "bytes");
        server.join().unwrap();
    }
}
