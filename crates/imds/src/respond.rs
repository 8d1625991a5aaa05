//! The pure request → response function (the rules table in the crate documentation),
//! used by the server and the fuzz target.

use crate::Metadata;
use crate::http::{Limits, ParseOutcome, Request, Response, parse_request};
use crate::token::{TOKEN_TTL_HEADER, mint_token, verify_token};
use crate::tree::{Node, VERSIONS, resolve};

/// Longest token TTL AWS accepts, in seconds (6 hours).
const MAX_TTL_SECONDS: u64 = 21_600;

/// Answers one raw request (`request` holds the head and the whole body; a truncated
/// request gets 400). `meta` is `None` when the instance is gone. Pure: the server reads
/// a request off the socket and calls [`respond_to`]; this is the same for whole buffers.
pub fn respond(request: &[u8], meta: Option<&Metadata>, key: &[u8; 32], now_ms: i64) -> Response {
    match parse_request(request, &Limits::default()) {
        ParseOutcome::Complete {
            request: req,
            head_len,
        } => {
            let have = (request.len() - head_len) as u64;
            if have < req.content_length {
                Response::error(400)
            } else {
                respond_to(&req, meta, key, now_ms)
            }
        }
        ParseOutcome::Partial => Response::error(400),
        ParseOutcome::Invalid(response) => response,
    }
}

/// Answers a parsed request (see [`respond`]).
pub fn respond_to(req: &Request, meta: Option<&Metadata>, key: &[u8; 32], now_ms: i64) -> Response {
    let mut response = answer(req, meta, key, now_ms);
    response.head_only = req.method == "HEAD";
    response.close |= req.close;
    response
}

fn answer(req: &Request, meta: Option<&Metadata>, key: &[u8; 32], now_ms: i64) -> Response {
    let Some(m) = meta else {
        return Response::error(404);
    };
    if !m.options.endpoint_enabled {
        return Response::error(403);
    }
    let Some(decoded) = split_path(&req.target) else {
        return Response::error(400);
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let token_path = matches!(segments.as_slice(), [v, "api", "token"] if VERSIONS.contains(v));
    match req.method.as_str() {
        "PUT" if segments == ["latest", "api", "token"] => put_token(req, m, key, now_ms),
        // AWS documents 403 for a token PUT on a version-specific path.
        "PUT" if token_path => Response::error(403),
        "GET" | "HEAD" => {
            match &req.token {
                Some(Some(token)) if verify_token(key, &m.instance_id, token, now_ms) => {}
                Some(_) => return Response::error(401),
                None if m.options.tokens_required => return Response::error(401),
                None => {}
            }
            if token_path {
                return Response::error(405);
            }
            match resolve(m, &segments) {
                Some(Node::Dir(entries)) => Response::text(entries.join("\n")),
                Some(Node::Leaf { body, content_type }) => Response::ok(body, content_type),
                None => Response::error(404),
            }
        }
        _ => Response::error(405),
    }
}

fn put_token(req: &Request, m: &Metadata, key: &[u8; 32], now_ms: i64) -> Response {
    if req.forwarded_for {
        return Response::error(403);
    }
    let ttl = req
        .ttl
        .as_ref()
        .and_then(|v| v.as_deref())
        .filter(|v| !v.is_empty() && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|t| (1..=MAX_TTL_SECONDS).contains(t));
    let Some(ttl) = ttl else {
        return Response::error(400);
    };
    let now = u64::try_from(now_ms).unwrap_or(0);
    let token = mint_token(key, &m.instance_id, now.saturating_add(ttl * 1000));
    let mut response = Response::text(token);
    response.headers.push((TOKEN_TTL_HEADER, ttl.to_string()));
    response
}

/// The decoded, non-empty segments of a request target's path (`None`: not a path).
/// Accepts origin form (`/a/b?q`) and absolute form (`http://host/a/b`).
fn split_path(target: &str) -> Option<Vec<String>> {
    let path = match target.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        Some(_) => return None,
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return None;
    }
    Some(
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
    )
}

/// `%XX` → byte (invalid escapes stay as they are; invalid UTF-8 is replaced).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && hex.iter().all(u8::is_ascii_hexdigit)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "respond_tests.rs"]
mod tests;
