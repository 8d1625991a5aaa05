//! Router-level tests of signing in with a console password, of the throttle in front of
//! both ways in, and of the audit events the console hands its sink.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use engine::{Cloud, DataDir};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

const ALICE: &str = "111111111111";
const BOB: &str = "222222222222";
const PASSWORD: &str = "correct horse battery staple";

/// A sink that keeps what it is given.
#[derive(Debug, Default)]
struct Kept(Mutex<Vec<AuditEvent>>);

impl AuditSink for Kept {
    fn record(&self, event: &AuditEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Kept {
    fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Env {
    _dir: tempfile::TempDir,
    cloud: Arc<Cloud>,
    app: Router,
    audit: Arc<Kept>,
}

fn env_with(limits: throttle::Limits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path(), true).unwrap();
    let cloud = Cloud::open(data, &["us-east-1".to_string()]).unwrap();
    cloud
        .create_account(
            "alice",
            Some(ALICE),
            Some(("AKIAALICE0000000001", "alice-secret-0000000001")),
        )
        .unwrap();
    cloud.create_account("bob", Some(BOB), None).unwrap();
    let hash = password::hash(PASSWORD).unwrap();
    assert!(
        cloud
            .catalog()
            .set_console_password(ALICE, Some(&hash))
            .unwrap()
    );
    let audit = Arc::new(Kept::default());
    let config = ConsoleConfig {
        audit: Some(Arc::clone(&audit) as Arc<dyn AuditSink>),
        throttle: limits,
        ..ConsoleConfig::default()
    };
    let app = router(Arc::clone(&cloud), config);
    Env {
        _dir: dir,
        cloud,
        app,
        audit,
    }
}

fn env() -> Env {
    env_with(throttle::Limits::default())
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
    })
}

fn post_from(uri: &str, cookie: &str, body: String, peer: &str) -> Request<Body> {
    let mut req = Request::post(uri)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(PeerAddr(addr));
    req
}

/// Submits the sign-in form with `fields` (url-encoded) from `peer`; returns the status,
/// the session cookie if one was set, and the page.
async fn submit(app: &Router, fields: &str, peer: &str) -> (StatusCode, Option<String>, String) {
    let (_, h, page) = send(
        app,
        Request::get("/console/signin").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(page.contains("name=\"password\"") && page.contains("name=\"access_key_id\""));
    let pre = set_cookie_value(&h, session::SIGNIN_COOKIE).unwrap();
    let (status, h, page) = send(
        app,
        post_from(
            "/console/signin",
            &format!("{}={pre}", session::SIGNIN_COOKIE),
            format!("signin={pre}&{fields}"),
            peer,
        ),
    )
    .await;
    let cookie = set_cookie_value(&h, session::COOKIE).map(|t| format!("{}={t}", session::COOKIE));
    (status, cookie, page)
}

fn by_password(account: &str, password: &str) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("way", "password");
    s.append_pair("account", account);
    s.append_pair("password", password);
    s.finish()
}

/// The text of the page's flash message.
fn flash(page: &str) -> &str {
    let at = page.find("id=\"flash\"").unwrap_or(0);
    let start = page[at..].find('>').map(|i| at + i + 1).unwrap_or(0);
    let end = page[start..]
        .find('<')
        .map(|i| start + i)
        .unwrap_or(page.len());
    &page[start..end]
}

#[tokio::test]
async fn the_password_signs_in_by_name_or_id() {
    let e = env();
    for who in ["alice", ALICE] {
        let (status, cookie, _) = submit(&e.app, &by_password(who, PASSWORD), "127.0.0.1:1").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{who}");
        let (status, _, page) = send(
            &e.app,
            Request::get("/console/us-east-1")
                .header(header::COOKIE, cookie.unwrap())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(ALICE));
        assert!(page.contains("Signed in with the console password"));
    }
}

#[tokio::test]
async fn refusals_say_the_same_whatever_was_wrong() {
    let e = env();
    let mut seen = Vec::new();
    // A wrong password, an account without one (bob), an account that does not exist,
    // a right password for another account.
    for (who, pw) in [
        ("alice", "wrong password!"),
        ("bob", PASSWORD),
        ("nobody", PASSWORD),
        (BOB, PASSWORD),
        ("", ""),
    ] {
        let (status, cookie, page) = submit(&e.app, &by_password(who, pw), "127.0.0.1:1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}");
        assert!(cookie.is_none());
        assert!(
            !page.contains(pw) || pw.is_empty(),
            "the password is not echoed"
        );
        seen.push(flash(&page).to_string());
    }
    assert!(
        seen.iter()
            .all(|m| m == "AuthFailure: the account or the password is wrong."),
        "{seen:?}"
    );
}

#[tokio::test]
async fn five_failures_lock_the_account_even_for_the_right_password() {
    let e = env();
    for _ in 0..5 {
        let (status, _, _) = submit(
            &e.app,
            &by_password("alice", "not it at all"),
            "127.0.0.1:1",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // By name or by id, from anywhere: the account is locked.
    for (who, peer) in [("alice", "127.0.0.1:1"), (ALICE, "127.0.0.2:1")] {
        let (status, cookie, page) = submit(&e.app, &by_password(who, PASSWORD), peer).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(cookie.is_none());
        assert!(flash(&page).contains("too many attempts"), "{page}");
    }
    // The access key of the account is another subject.
    let key = "access_key_id=AKIAALICE0000000001&secret_access_key=alice-secret-0000000001";
    assert_eq!(
        submit(&e.app, key, "127.0.0.3:1").await.0,
        StatusCode::SEE_OTHER
    );
    let events = e.audit.take();
    let logins: Vec<_> = events
        .iter()
        .filter(|e| e.action == "ConsoleLogin")
        .collect();
    assert_eq!(logins.len(), 8);
    assert!(
        logins[..5]
            .iter()
            .all(|l| l.error_code.as_deref() == Some("AuthFailure") && l.status == 401)
    );
    assert!(
        logins[5..7]
            .iter()
            .all(|l| l.error_code.as_deref() == Some("Throttling") && l.status == 429)
    );
    assert!(
        logins[..7]
            .iter()
            .all(|l| l.account_id.as_deref() == Some(ALICE))
    );
    assert_eq!(logins[6].source, Some("127.0.0.2:1".parse().unwrap()));
    assert_eq!(
        logins[7].access_key_id.as_deref(),
        Some("AKIAALICE0000000001")
    );
    assert_eq!(logins[7].error_code, None);
}

#[tokio::test]
async fn a_success_clears_the_count() {
    let e = env();
    for _ in 0..4 {
        submit(
            &e.app,
            &by_password("alice", "not it at all"),
            "127.0.0.1:1",
        )
        .await;
    }
    assert_eq!(
        submit(&e.app, &by_password("alice", PASSWORD), "127.0.0.1:1")
            .await
            .0,
        StatusCode::SEE_OTHER
    );
    for _ in 0..4 {
        submit(
            &e.app,
            &by_password("alice", "not it at all"),
            "127.0.0.1:1",
        )
        .await;
    }
    assert_eq!(
        submit(&e.app, &by_password("alice", PASSWORD), "127.0.0.1:1")
            .await
            .0,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn one_client_cannot_try_many_accounts() {
    let e = env_with(throttle::Limits {
        per_client: 3,
        ..throttle::Limits::default()
    });
    for who in ["a1", "a2", "a3"] {
        let (status, _, _) = submit(&e.app, &by_password(who, "whatever1"), "192.0.2.9:5").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, page) = submit(&e.app, &by_password("alice", PASSWORD), "192.0.2.9:6").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(flash(&page).contains("from your address"), "{page}");
    // Another client is let in.
    let (status, _, _) = submit(&e.app, &by_password("alice", PASSWORD), "192.0.2.10:5").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn console_actions_reach_the_audit_sink() {
    let e = env();
    let (_, cookie, _) = submit(&e.app, &by_password("alice", PASSWORD), "127.0.0.1:7").await;
    let cookie = cookie.unwrap();
    let (_, _, page) = send(
        &e.app,
        Request::get("/console/us-east-1/volumes")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &page[at..at + 64];
    let form = "size=1&type=gp3&zone=us-east-1a";
    let (status, _, _) = send(
        &e.app,
        post_from(
            "/console/us-east-1/volumes",
            &cookie,
            format!("{form}&csrf={csrf}"),
            "127.0.0.1:7",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The audit middleware looked at the session without taking its flash message.
    let (_, _, page) = send(
        &e.app,
        Request::get("/console/us-east-1/volumes")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(flash(&page).starts_with("Created vol-"), "{}", flash(&page));
    // A failing action, and one refused for its CSRF token.
    send(
        &e.app,
        post_from(
            "/console/us-east-1/volumes/vol-0123456789abcdef0/delete",
            &cookie,
            format!("confirm=yes&csrf={csrf}"),
            "127.0.0.1:7",
        ),
    )
    .await;
    send(
        &e.app,
        post_from(
            "/console/us-east-1/volumes",
            &cookie,
            form.into(),
            "127.0.0.1:7",
        ),
    )
    .await;
    send(
        &e.app,
        post_from(
            "/console/signout",
            &cookie,
            format!("csrf={csrf}"),
            "127.0.0.1:7",
        ),
    )
    .await;
    let events = e.audit.take();
    let names: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        names,
        [
            "ConsoleLogin",
            "CreateVolume",
            "DeleteVolume",
            "CreateVolume",
            "ConsoleLogout"
        ]
    );
    let caller = engine::Caller {
        account_id: ALICE.into(),
        region: "us-east-1".into(),
    };
    let volumes = e
        .cloud
        .describe_volumes(&caller, &[], &[], &engine::query::Page::default())
        .unwrap()
        .0;
    assert_eq!(volumes.len(), 1);
    let create = &events[1];
    assert_eq!(create.service, "ec2");
    assert_eq!(create.account_id.as_deref(), Some(ALICE));
    assert_eq!(create.access_key_id, None, "a password session has no key");
    assert_eq!(create.status, 200);
    assert_eq!(create.resources, [volumes[0].id.clone()]);
    assert_eq!(create.source, Some("127.0.0.1:7".parse().unwrap()));
    assert_eq!(
        events[2].error_code.as_deref(),
        Some("InvalidVolume.NotFound")
    );
    assert_eq!(events[2].resources, ["vol-0123456789abcdef0"]);
    assert_eq!(events[3].error_code.as_deref(), Some("InvalidCsrfToken"));
    assert_eq!(events[3].status, 403);
    assert_eq!(events[4].service, "signin");
    assert_eq!(events[4].account_id.as_deref(), Some(ALICE));
    for ev in &events {
        let text = format!("{ev:?}");
        assert!(!text.contains(PASSWORD) && !text.contains(csrf), "{text}");
    }
}

#[test]
fn forms_parse_untrusted_bytes() {
    let f = Form::parse(b"a=1&a=2&b=%20x%20&c&d=%ZZ&e=caf%C3%A9&f=%FF&g=a+b");
    assert_eq!(f.get("a"), "2", "the last value wins");
    assert_eq!(f.get("b"), " x ");
    assert_eq!(f.opt("b").as_deref(), Some("x"));
    assert_eq!(f.get("c"), "");
    assert_eq!(f.opt("c"), None);
    assert_eq!(f.get("d"), "%ZZ");
    assert_eq!(f.get("e"), "café");
    assert_eq!(f.get("f"), "\u{FFFD}");
    assert_eq!(f.get("g"), "a b");
    assert_eq!(f.get("missing"), "");
    assert!(f.confirmed("do it").is_err());
    assert!(Form::parse(b"confirm=yes").confirmed("do it").is_ok());
}
