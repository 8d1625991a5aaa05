//! The HTTP side of a listener: evaluates the rules for each request and performs the
//! action — forward (proxy over HTTP/1.1 to a target with a pooled client), redirect or
//! fixed response — the way an Application Load Balancer does.
//!
//! Forwarding strips hop-by-hop headers both ways, appends the client to `X-Forwarded-For`
//! (per `routing.http.xff_header_processing.mode` and `routing.http.xff_client_port.enabled`),
//! sets `X-Forwarded-Proto` and `X-Forwarded-Port`, and passes `Host` on as ALB does (the
//! listener's port added on a non-default port, unless
//! `routing.http.preserve_host_header.enabled`). Bodies stream both ways. A target's in-flight
//! count covers a request until its response body ends, so a draining target finishes what it
//! started.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use crate::Action;
use crate::rules::{CompiledRule, first_match, request_host, strip_port};
use crate::state::{Cancel, Group, InFlight};

/// Errors of streamed bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What listeners answer with.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// The pooled client to targets.
pub(crate) type Upstream = Client<HttpConnector, Incoming>;

/// How `X-Forwarded-For` is treated (`routing.http.xff_header_processing.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XffMode {
    Append,
    Preserve,
    Remove,
}

/// What an HTTP listener's requests are routed by; swapped whole when the configuration
/// changes.
#[derive(Debug)]
pub(crate) struct ListenerView {
    pub(crate) port: u16,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) xff: XffMode,
    pub(crate) xff_client_port: bool,
    /// `routing.http.preserve_host_header.enabled`: pass `Host` exactly as received.
    pub(crate) preserve_host: bool,
    /// Longest wait for a target's response (`idle_timeout.timeout_seconds`).
    pub(crate) idle_timeout: Duration,
}

impl ListenerView {
    /// A view from the listener's port, rules and the load balancer's attributes.
    pub(crate) fn new(
        port: u16,
        rules: &[crate::Rule],
        lb_attributes: &BTreeMap<String, String>,
    ) -> Self {
        let attr = |k: &str| lb_attributes.get(k).map(|v| v.trim().to_ascii_lowercase());
        let xff = match attr("routing.http.xff_header_processing.mode").as_deref() {
            Some("preserve") => XffMode::Preserve,
            Some("remove") => XffMode::Remove,
            _ => XffMode::Append,
        };
        let idle = attr("idle_timeout.timeout_seconds")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(60);
        ListenerView {
            port,
            rules: rules.iter().map(CompiledRule::new).collect(),
            xff,
            xff_client_port: attr("routing.http.xff_client_port.enabled").as_deref()
                == Some("true"),
            preserve_host: attr("routing.http.preserve_host_header.enabled").as_deref()
                == Some("true"),
            idle_timeout: Duration::from_secs(idle.max(1)),
        }
    }
}

/// What request handling needs from the balancer.
pub(crate) trait Groups: Send + Sync + 'static {
    /// The runtime state of a target group.
    fn group(&self, id: &str) -> Option<Arc<Group>>;
    /// The client to targets.
    fn upstream(&self) -> &Upstream;
    /// Fired when the balancer shuts down.
    fn shutdown(&self) -> &Cancel;
}

/// Handles one request on an HTTP listener.
pub(crate) async fn handle<G: Groups>(
    groups: Arc<G>,
    view: Arc<ListenerView>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<ProxyBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let Some(rule) = first_match(&view.rules, &parts, peer.ip()) else {
        return Ok(error(StatusCode::SERVICE_UNAVAILABLE));
    };
    Ok(match &rule.action {
        Action::FixedResponse {
            status,
            content_type,
            body,
        } => fixed(*status, content_type.as_deref(), body),
        Action::Redirect {
            protocol,
            host,
            port,
            path,
            query,
            status,
        } => {
            let location = redirect_location(
                &parts,
                view.port,
                [
                    protocol.as_deref(),
                    host.as_deref(),
                    port.as_deref(),
                    path.as_deref(),
                    query.as_deref(),
                ],
            );
            redirect(*status, &location)
        }
        Action::Forward(weighted) => {
            let Some(group) = choose(weighted, rule.next_turn()).and_then(|id| groups.group(id))
            else {
                return Ok(error(StatusCode::SERVICE_UNAVAILABLE));
            };
            let shutdown = groups.shutdown().clone();
            forward(
                groups.upstream(),
                &group,
                &view,
                parts,
                body,
                peer,
                shutdown,
            )
            .await
        }
    })
}

/// The group a weighted forward sends its `turn`-th request to.
pub(crate) fn choose(weighted: &[(String, u32)], turn: u64) -> Option<&str> {
    let total: u64 = weighted.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return weighted.first().map(|(id, _)| id.as_str());
    }
    let mut at = turn % total;
    for (id, w) in weighted {
        if at < u64::from(*w) {
            return Some(id);
        }
        at -= u64::from(*w);
    }
    None
}

async fn forward(
    upstream: &Upstream,
    group: &Group,
    view: &ListenerView,
    mut parts: Parts,
    body: Incoming,
    peer: SocketAddr,
    shutdown: Cancel,
) -> Response<ProxyBody> {
    let sticky = group
        .settings
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .sticky;
    let cookie = sticky.and_then(|_| cookie(&parts.headers, STICKY_COOKIE));
    let Some((guard, addr)) = group.pick(cookie.as_deref()) else {
        return error(StatusCode::SERVICE_UNAVAILABLE);
    };
    group.requests.fetch_add(1, Ordering::Relaxed);
    let target = Arc::clone(guard.target());

    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let Ok(uri) = format!("http://{addr}{path}").parse::<Uri>() else {
        return error(StatusCode::BAD_REQUEST);
    };
    // An absolute-form request's authority is its host.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upgrade = upgrade_protocol(&parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    let client_upgrade = match &upgrade {
        Some(protocol) => {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
            parts.extensions.remove::<OnUpgrade>()
        }
        None => None,
    };
    forwarded_headers(&mut parts.headers, view, peer);
    if !view.preserve_host {
        host_port(&mut parts.headers, view.port);
    }

    let request = upstream.request(Request::from_parts(parts, body));
    let answer = tokio::select! {
        r = tokio::time::timeout(view.idle_timeout, request) => r,
        () = target.closed.cancelled() => return error(StatusCode::BAD_GATEWAY),
    };
    match answer {
        Err(_) => error(StatusCode::GATEWAY_TIMEOUT),
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, connect = e.is_connect(), "target request failed");
            error(StatusCode::BAD_GATEWAY)
        }
        Ok(Ok(mut resp)) => {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client_upgrade) = client_upgrade
            {
                let target_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel(client_upgrade, target_upgrade, guard, shutdown));
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, full(Bytes::new()));
            }
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let closed = target.closed.clone();
            let body = Tracked {
                inner: body,
                _guard: guard,
                cut: Box::pin(async move { closed.cancelled().await }),
            };
            let mut resp = Response::from_parts(parts, UnsyncBoxBody::new(body));
            if let Some(duration) = sticky {
                set_sticky_cookie(resp.headers_mut(), &target.sticky_key(), duration);
            }
            resp
        }
    }
}

/// The load balancer's stickiness cookie (`lb_cookie`).
const STICKY_COOKIE: &str = "AWSALB";

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// `AWSALB` and its CORS twin `AWSALBCORS`, naming the target for `duration`.
fn set_sticky_cookie(headers: &mut HeaderMap, key: &str, duration: Duration) {
    let secs = duration.as_secs();
    for cookie in [
        format!("{STICKY_COOKIE}={key}; Max-Age={secs}; Path=/"),
        format!("{STICKY_COOKIE}CORS={key}; Max-Age={secs}; Path=/; SameSite=None"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

/// The protocol a request asks to switch to (`Connection: upgrade` and `Upgrade: …`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// After `101 Switching Protocols` (WebSocket), copies bytes both ways between the client and
/// the target until either side closes, the target's draining ends or the balancer stops.
async fn tunnel(client: OnUpgrade, target: OnUpgrade, guard: InFlight, shutdown: Cancel) {
    let (client, target) = match tokio::join!(client, target) {
        (Ok(c), Ok(t)) => (c, t),
        (c, t) => {
            tracing::debug!(client = c.is_ok(), target = t.is_ok(), "upgrade failed");
            return;
        }
    };
    let (mut client, mut target) = (TokioIo::new(client), TokioIo::new(target));
    let closed = guard.target().closed.clone();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut target) => {}
        () = closed.cancelled() => {}
        () = shutdown.cancelled() => {}
    }
}

/// A target's response body, holding the target's in-flight count until it ends and cut
/// when the target's draining time runs out.
struct Tracked {
    inner: Incoming,
    _guard: InFlight,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("target deregistration completed".into())));
        }
        Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// (`Transfer-Encoding` is hyper's business: it re-frames bodies itself.)
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// A new `X-Amzn-Trace-Id`: `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`.
fn trace_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let n = N.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded randomly per process (and per thread thereafter).
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n ^ salt.rotate_left(32));
        h.finish()
    };
    format!(
        "Root=1-{:08x}-{:016x}{:08x}",
        secs as u32,
        word(1),
        word(2) as u32
    )
}

/// ALB's `Host` without `routing.http.preserve_host_header.enabled`: on a listener on 80 or
/// 443 the port is removed; on another port, the listener's port is added when the client
/// sent none.
pub(crate) fn host_port(headers: &mut HeaderMap, listener_port: u16) {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return;
    };
    let bare = strip_port(host);
    let rewritten = if listener_port == 80 || listener_port == 443 {
        bare.to_owned()
    } else if bare.len() == host.len() {
        format!("{host}:{listener_port}")
    } else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&rewritten) {
        headers.insert(header::HOST, v);
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Port` as the load balancer's attributes say, and
/// an `X-Amzn-Trace-Id` when the request has none.
pub(crate) fn forwarded_headers(headers: &mut HeaderMap, view: &ListenerView, peer: SocketAddr) {
    let ip = match peer.ip() {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
        v4 => v4,
    };
    let client = match (view.xff_client_port, ip) {
        (false, ip) => ip.to_string(),
        (true, IpAddr::V4(a)) => format!("{a}:{}", peer.port()),
        (true, IpAddr::V6(a)) => format!("[{a}]:{}", peer.port()),
    };
    match view.xff {
        XffMode::Append => {
            let previous: Vec<String> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            let value = if previous.is_empty() {
                client
            } else {
                format!("{}, {client}", previous.join(", "))
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert("x-forwarded-for", v);
            }
        }
        XffMode::Preserve => {}
        XffMode::Remove => {
            headers.remove("x-forwarded-for");
        }
    }
    if !headers.contains_key("x-amzn-trace-id")
        && let Ok(v) = HeaderValue::from_str(&trace_id())
    {
        headers.insert("x-amzn-trace-id", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-port", HeaderValue::from(view.port));
}

/// The `Location` of a redirect: each of protocol, host, port, path and query is the
/// configured value (default: the request's), with `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` (without its leading `/`) and `#{query}` replaced by the request's.
pub(crate) fn redirect_location(
    req: &Parts,
    listener_port: u16,
    config: [Option<&str>; 5],
) -> String {
    let host = request_host(req)
        .map(|h| strip_port(&h).to_owned())
        .unwrap_or_default();
    let path = req.uri.path().trim_start_matches('/').to_owned();
    let query = req.uri.query().unwrap_or("").to_owned();
    let port = listener_port.to_string();
    let expand = |v: &str| {
        v.replace("#{protocol}", "HTTP")
            .replace("#{host}", &host)
            .replace("#{port}", &port)
            .replace("#{path}", &path)
            .replace("#{query}", &query)
    };
    let [protocol, host_cfg, port_cfg, path_cfg, query_cfg] = config;
    let protocol = expand(protocol.unwrap_or("#{protocol}")).to_ascii_lowercase();
    let new_host = expand(host_cfg.unwrap_or("#{host}"));
    let new_port = expand(port_cfg.unwrap_or("#{port}"));
    let mut new_path = expand(path_cfg.unwrap_or("/#{path}"));
    if !new_path.starts_with('/') {
        new_path.insert(0, '/');
    }
    let new_query = expand(query_cfg.unwrap_or("#{query}"));
    let default_port = if protocol == "https" { "443" } else { "80" };
    let mut location = format!("{protocol}://{new_host}");
    if !new_port.is_empty() && new_port != default_port {
        location.push(':');
        location.push_str(&new_port);
    }
    location.push_str(&new_path);
    if !new_query.is_empty() {
        location.push('?');
        location.push_str(&new_query);
    }
    location
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    UnsyncBoxBody::new(Full::new(body.into()).map_err(|never| match never {}))
}

fn fixed(status: u16, content_type: Option<&str>, body: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body.to_owned()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    resp
}

fn redirect(status: u16, location: &str) -> Response<ProxyBody> {
    let mut resp = error(StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY));
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// ALB's own HTML error (and redirect) page.
pub(crate) fn error(status: StatusCode) -> Response<ProxyBody> {
    // The wording of ALB's pages (nginx's), not hyper's canonical reasons.
    let reason = match status.as_u16() {
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => status.canonical_reason().unwrap_or(""),
    };
    let line = format!("{} {reason}", status.as_u16());
    let body = format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = fixed(status.as_u16(), Some("text/html"), &body);
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: &str) -> Parts {
        Request::get(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn weighted_choice() {
        let w = vec![("a".to_owned(), 1), ("b".to_owned(), 3)];
        let picks: Vec<_> = (0..8).map(|t| choose(&w, t).unwrap()).collect();
        assert_eq!(picks.iter().filter(|p| **p == "a").count(), 2);
        assert_eq!(choose(&[("x".to_owned(), 0)], 5), Some("x"));
        assert_eq!(choose(&[], 0), None);
    }

    #[test]
    fn redirects() {
        let p = parts("/a/b?x=1", "Example.com:8080");
        assert_eq!(
            redirect_location(&p, 8080, [None; 5]),
            "http://Example.com:8080/a/b?x=1"
        );
        assert_eq!(
            redirect_location(&p, 8080, [Some("HTTPS"), None, Some("443"), None, None]),
            "https://Example.com/a/b?x=1"
        );
        assert_eq!(
            redirect_location(
                &p,
                80,
                [
                    None,
                    Some("new.#{host}"),
                    None,
                    Some("/v2/#{path}"),
                    Some("")
                ]
            ),
            "http://new.Example.com/v2/a/b"
        );
    }

    #[test]
    fn host_gets_the_listener_port_unless_preserved() {
        let host = |h: &'static str, port: u16| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_static(h));
            host_port(&mut m, port);
            m[header::HOST].to_str().unwrap().to_owned()
        };
        assert_eq!(host("a.example", 8080), "a.example:8080");
        assert_eq!(host("a.example:9", 8080), "a.example:9");
        assert_eq!(host("a.example:80", 80), "a.example");
        assert_eq!(host("a.example", 443), "a.example");
        assert_eq!(host("[::1]", 8080), "[::1]:8080");
        let mut attrs = BTreeMap::new();
        assert!(!ListenerView::new(80, &[], &attrs).preserve_host);
        attrs.insert(
            "routing.http.preserve_host_header.enabled".into(),
            "true".into(),
        );
        assert!(ListenerView::new(80, &[], &attrs).preserve_host);
    }

    #[test]
    fn hop_by_hop_and_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-keep", HeaderValue::from_static("y"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-secret").is_none()
                && h.get("connection").is_none()
                && h.get("keep-alive").is_none()
        );
        let mut view = ListenerView::new(8080, &[], &BTreeMap::new());
        let peer: SocketAddr = "127.0.0.9:5555".parse().unwrap();
        let mut h1 = h.clone();
        forwarded_headers(&mut h1, &view, peer);
        assert_eq!(h1["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h1["x-forwarded-proto"], "http");
        assert_eq!(h1["x-forwarded-port"], "8080");
        assert_eq!(h1["x-keep"], "y");
        let trace = h1["x-amzn-trace-id"].to_str().unwrap().to_owned();
        assert!(
            trace.starts_with("Root=1-") && trace.len() == 7 + 8 + 1 + 24,
            "{trace}"
        );
        let mut h4 = HeaderMap::new();
        forwarded_headers(&mut h4, &view, peer);
        assert_ne!(h4["x-amzn-trace-id"], trace.as_str());
        forwarded_headers(&mut h4, &view, peer);
        assert_eq!(
            h4.get_all("x-amzn-trace-id").iter().count(),
            1,
            "kept, not added twice"
        );
        view.xff_client_port = true;
        let mut h2 = HeaderMap::new();
        forwarded_headers(&mut h2, &view, peer);
        assert_eq!(h2["x-forwarded-for"], "127.0.0.9:5555");
        view.xff = XffMode::Preserve;
        let mut h3 = h.clone();
        forwarded_headers(&mut h3, &view, peer);
        assert_eq!(h3["x-forwarded-for"], "10.0.0.1");
        view.xff = XffMode::Remove;
        forwarded_headers(&mut h, &view, peer);
        assert!(h.get("x-forwarded-for").is_none());
    }
}
