//! The small HTTP/1.x layer: [`parse_request`] turns bytes into a [`Request`] (or an error
//! [`Response`]), and [`Response`] serializes itself with `Content-Length`.

use crate::time::http_date;

/// Size limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers, in bytes (default 8 KiB); more → 431.
    pub max_head: usize,
    /// Body bytes (default 64 KiB); a larger `Content-Length` → 413.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            max_body: 64 * 1024,
        }
    }
}

/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// A parsed request head: only what the service looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The request target, as sent (origin form `/…` or absolute form `http://host/…`).
    pub target: String,
    /// The client wants the connection closed after this response (`Connection: close`,
    /// or HTTP/1.0 without `keep-alive`).
    pub close: bool,
    /// `X-aws-ec2-metadata-token` (`Some(None)`: sent more than once or not UTF-8).
    pub token: Option<Option<String>>,
    /// `X-aws-ec2-metadata-token-ttl-seconds` (`Some(None)`: sent more than once or not UTF-8).
    pub ttl: Option<Option<String>>,
    /// An `X-Forwarded-For` header is present.
    pub forwarded_for: bool,
    /// `Content-Length` (0 when absent).
    pub content_length: u64,
}

/// The result of [`parse_request`].
#[derive(Debug)]
pub enum ParseOutcome {
    /// A complete head: the request and the head's length; the body
    /// ([`Request::content_length`] bytes) follows.
    Complete {
        /// The parsed head.
        request: Request,
        /// Bytes of the request line and headers, including the blank line.
        head_len: usize,
    },
    /// More bytes are needed.
    Partial,
    /// The bytes are not an acceptable request: send this (it closes the connection).
    Invalid(Response),
}

/// Parses one request head from the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> ParseOutcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_head {
                ParseOutcome::Invalid(Response::error(431))
            } else {
                ParseOutcome::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => return ParseOutcome::Invalid(Response::error(431)),
        Err(_) => return ParseOutcome::Invalid(Response::error(400)),
    };
    if head_len > limits.max_head {
        return ParseOutcome::Invalid(Response::error(431));
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return ParseOutcome::Invalid(Response::error(400));
    };
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        close: minor == 0,
        token: None,
        ttl: None,
        forwarded_for: false,
        content_length: 0,
    };
    let mut content_length: Option<u64> = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (parsed, content_length) {
                (None, _) => return ParseOutcome::Invalid(Response::error(400)),
                (Some(n), Some(prev)) if n != prev => {
                    return ParseOutcome::Invalid(Response::error(400));
                }
                (Some(n), _) => content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return ParseOutcome::Invalid(Response::error(501));
        } else if name.eq_ignore_ascii_case("connection") {
            for option in String::from_utf8_lossy(h.value).split(',') {
                let option = option.trim();
                if option.eq_ignore_ascii_case("close") {
                    request.close = true;
                } else if option.eq_ignore_ascii_case("keep-alive") && minor == 0 {
                    request.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("x-aws-ec2-metadata-token") {
            set_once(&mut request.token, h.value);
        } else if name.eq_ignore_ascii_case(crate::TOKEN_TTL_HEADER) {
            set_once(&mut request.ttl, h.value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            request.forwarded_for = true;
        }
    }
    request.content_length = content_length.unwrap_or(0);
    if request.content_length > limits.max_body {
        return ParseOutcome::Invalid(Response::error(413));
    }
    ParseOutcome::Complete { request, head_len }
}

/// Records a header value that must appear once: a repeat (or non-UTF-8) makes it
/// `Some(None)`, which the caller treats as invalid.
fn set_once(slot: &mut Option<Option<String>>, value: &[u8]) {
    *slot = match slot {
        None => Some(
            std::str::from_utf8(value)
                .ok()
                .map(|v| v.trim().to_string()),
        ),
        Some(_) => Some(None),
    };
}

/// One response; [`to_bytes`](Self::to_bytes) writes it with `Content-Length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Type` included); `Content-Length`, `Connection`, `Date`
    /// and `Server` are added when serialized.
    pub headers: Vec<(&'static str, String)>,
    /// The body (for HEAD: the body GET would get; only its length is sent).
    pub body: Vec<u8>,
    /// The request was HEAD: send the headers only.
    pub head_only: bool,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<Vec<u8>>) -> Response {
        Response::ok(body.into(), "text/plain")
    }

    /// 200 with a body of the given content type.
    pub fn ok(body: Vec<u8>, content_type: &str) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
            head_only: false,
            close: false,
        }
    }

    /// An error page like AWS's (`<title>404 - Not Found</title>`). 400, 413, 431 and 501
    /// (malformed requests) close the connection.
    pub fn error(status: u16) -> Response {
        let reason = match status {
            400 => "Missing or Invalid Parameters",
            _ => reason(status),
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n\
             <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
             \t\t \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
             <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n \
             <head>\n  <title>{status} - {reason}</title>\n </head>\n \
             <body>\n  <h1>{status} - {reason}</h1>\n </body>\n</html>\n"
        );
        let mut response = Response::ok(body.into_bytes(), "text/html");
        response.status = status;
        response.close = matches!(status, 400 | 413 | 431 | 501);
        if status == 405 {
            response
                .headers
                .push(("Allow", "GET, HEAD, PUT".to_string()));
        }
        response
    }

    /// The value of a header set on this response (not the ones added when serialized).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response on the wire, `Date` from `now_ms`.
    pub fn to_bytes(&self, now_ms: i64) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("Accept-Ranges: none\r\n");
        out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        out.push_str(&format!("Date: {}\r\n", http_date(now_ms)));
        out.push_str("Server: EC2ws\r\n");
        out.push_str(if self.close {
            "Connection: close\r\n"
        } else {
            "Connection: keep-alive\r\n"
        });
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf, &Limits::default()) {
            ParseOutcome::Complete { request, head_len } => (request, head_len),
            other => panic!("not complete: {other:?}"),
        }
    }

    fn invalid(buf: &[u8]) -> u16 {
        match parse_request(buf, &Limits::default()) {
            ParseOutcome::Invalid(r) => {
                assert!(r.close);
                r.status
            }
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn parses_head_and_headers() {
        let raw = b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n\
                    X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 3\r\n\r\nabc";
        let (r, n) = complete(raw);
        assert_eq!(n, raw.len() - 3);
        assert_eq!(r.method, "PUT");
        assert_eq!(r.target, "/latest/api/token");
        assert_eq!(r.ttl, Some(Some("60".into())));
        assert_eq!(r.content_length, 3);
        assert!(!r.close);
        assert!(!r.forwarded_for);
    }

    #[test]
    fn connection_semantics() {
        assert!(
            complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .close
        );
        assert!(complete(b"GET / HTTP/1.0\r\n\r\n").0.close);
        assert!(
            !complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .close
        );
        assert!(!complete(b"GET / HTTP/1.1\r\n\r\n").0.close);
    }

    #[test]
    fn repeated_token_is_invalid() {
        let (r, _) = complete(
            b"GET / HTTP/1.1\r\nX-aws-ec2-metadata-token: a\r\nx-aws-ec2-metadata-token: a\r\n\r\n",
        );
        assert_eq!(r.token, Some(None));
    }

    #[test]
    fn partial_and_limits() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost:", &Limits::default()),
            ParseOutcome::Partial
        ));
        let mut long = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(invalid(&long), 431);
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(invalid(&long), 431);
        let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            invalid(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
        assert_eq!(
            invalid(b"PUT / HTTP/1.1\r\nContent-Length: 104857600\r\n\r\n"),
            413
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(invalid(b"\x00\x01garbage\r\n\r\n"), 400);
        assert_eq!(
            invalid(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
    }

    #[test]
    fn response_bytes() {
        let mut r = Response::text("i-1");
        let wire = String::from_utf8(r.to_bytes(0)).unwrap();
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.contains("Content-Length: 3\r\n"));
        assert!(wire.contains("Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
        assert!(wire.ends_with("\r\n\r\ni-1"));
        r.head_only = true;
        let wire = String::from_utf8(r.to_bytes(0)).unwrap();
        assert!(wire.contains("Content-Length: 3\r\n"));
        assert!(wire.ends_with("\r\n\r\n"));
        let e = Response::error(404);
        assert!(String::from_utf8_lossy(&e.body).contains("<title>404 - Not Found</title>"));
        assert!(!e.close);
    }
}
