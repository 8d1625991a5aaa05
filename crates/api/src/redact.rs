//! Requests as the server log may show them: at `trace` level each request's method,
//! path, query and headers are logged with every secret replaced by `<redacted>` — the
//! SigV4 signature (of the `Authorization` header and of presigned queries), session
//! tokens, EBS block tokens and IMDS tokens. Secret access keys never reach a request.

use axum::http::{HeaderMap, Method, Uri};

const REDACTED: &str = "<redacted>";

/// Headers whose whole value is secret.
const SECRET_HEADERS: [&str; 3] = ["x-amz-security-token", "x-aws-ec2-metadata-token", "cookie"];

/// Query parameters whose value is secret.
const SECRET_PARAMS: [&str; 3] = ["X-Amz-Signature", "X-Amz-Security-Token", "blockToken"];

/// Logs the request at `trace` level, redacted.
pub(crate) fn trace_request(method: &Method, uri: &Uri, headers: &HeaderMap) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    tracing::trace!(
        %method,
        path = uri.path(),
        query = %query(uri.query().unwrap_or("")),
        headers = ?header_list(headers),
        "request"
    );
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let shown = if name.as_str() == "authorization" {
                authorization(&value)
            } else if SECRET_HEADERS.contains(&name.as_str()) {
                REDACTED.to_string()
            } else {
                value.into_owned()
            };
            (name.as_str().to_string(), shown)
        })
        .collect()
}

/// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=<redacted>`; anything that
/// is not that shape is redacted whole.
fn authorization(value: &str) -> String {
    match value.split_once("Signature=") {
        Some((before, _)) if value.starts_with("AWS4-") => format!("{before}Signature={REDACTED}"),
        _ => REDACTED.to_string(),
    }
}

fn query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)) => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=abc123"
                .parse()
                .unwrap(),
        );
        h.insert("x-amz-security-token", "tok".parse().unwrap());
        h.insert("host", "example".parse().unwrap());
        let shown = format!("{:?}", header_list(&h));
        assert!(
            !shown.contains("abc123") && !shown.contains("tok\""),
            "{shown}"
        );
        assert!(shown.contains("Credential=AKID/") && shown.contains("example"));
        let q = query("Action=X&X-Amz-Signature=deadbeef&blockToken=t0k&X-Amz-Credential=AKID");
        assert_eq!(
            q,
            "Action=X&X-Amz-Signature=<redacted>&blockToken=<redacted>&X-Amz-Credential=AKID"
        );
        assert_eq!(authorization("Basic dXNlcjpwYXNz"), REDACTED);
    }
}
