//! Router-level tests over a real cloud in a temporary data directory: sign-in, CSRF,
//! escaping, headers, and that a session sees only its account's private images.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use engine::images::ImageView;
use engine::{Cloud, DataDir};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

struct Env {
    _dir: tempfile::TempDir,
    cloud: Arc<Cloud>,
    app: Router,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path(), true).unwrap();
    let cloud = Cloud::open(data, &["us-east-1".to_string()]).unwrap();
    cloud
        .create_account(
            "alice",
            Some("111111111111"),
            Some(("AKIAALICE0000000001", "alice-secret-0000000001")),
        )
        .unwrap();
    let app = router(Arc::clone(&cloud), ConsoleConfig::default());
    Env {
        _dir: dir,
        cloud,
        app,
    }
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

fn post(uri: &str, cookie: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// Signs alice in; returns the session cookie header value and the CSRF token.
async fn sign_in(app: &Router, secret: &str) -> Result<(String, String), StatusCode> {
    let (_, h, _) = send(
        app,
        Request::get("/console/signin").body(Body::empty()).unwrap(),
    )
    .await;
    let pre = set_cookie_value(&h, session::SIGNIN_COOKIE).unwrap();
    let body = format!("signin={pre}&access_key_id=AKIAALICE0000000001&secret_access_key={secret}");
    let (status, h, _) = send(
        app,
        post(
            "/console/signin",
            &format!("{}={pre}", session::SIGNIN_COOKIE),
            body,
        ),
    )
    .await;
    if status != StatusCode::SEE_OTHER {
        return Err(status);
    }
    let token = set_cookie_value(&h, session::COOKIE).unwrap();
    let cookie = format!("{}={token}", session::COOKIE);
    let (_, _, page) = send(
        app,
        Request::get("/console/us-east-1/volumes")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("{page}"))
        + 19;
    Ok((cookie, page[at..at + 64].to_string()))
}

#[tokio::test]
async fn sign_in_checks_the_secret_and_sets_a_strict_cookie() {
    let e = env();
    assert_eq!(
        sign_in(&e.app, "wrong-secret-00000000").await.unwrap_err(),
        StatusCode::UNAUTHORIZED
    );
    let (cookie, csrf) = sign_in(&e.app, "alice-secret-0000000001").await.unwrap();
    assert_eq!(csrf.len(), 64);
    let (status, h, page) = send(
        &e.app,
        Request::get("/console/us-east-1")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("111111111111"));
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
    // Without a cookie, pages send the browser to sign in.
    let (status, h, _) = send(
        &e.app,
        Request::get("/console/us-east-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(h.get(header::LOCATION).unwrap(), "/console/signin");
}

#[tokio::test]
async fn values_from_the_url_are_escaped_in_error_pages() {
    let e = env();
    let (cookie, _) = sign_in(&e.app, "alice-secret-0000000001").await.unwrap();
    for path in [
        "/console/us-east-1/images/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/console/us-east-1/instances/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/console/us-east-1/images?tab=mine&q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ] {
        let (status, _, page) = send(
            &e.app,
            Request::get(path)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(page.contains("&lt;script&gt;alert(1)"), "{path}");
    }
}

#[tokio::test]
async fn sign_in_without_the_form_token_is_refused() {
    let e = env();
    let body = "access_key_id=AKIAALICE0000000001&secret_access_key=alice-secret-0000000001";
    let (status, h, _) = send(&e.app, post("/console/signin", "", body.into())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(set_cookie_value(&h, session::COOKIE).is_none());
}

#[tokio::test]
async fn posts_without_the_right_csrf_token_change_nothing() {
    let e = env();
    let (cookie, csrf) = sign_in(&e.app, "alice-secret-0000000001").await.unwrap();
    let form = "size=1&type=gp3&zone=us-east-1a";
    for body in [form.to_string(), format!("{form}&csrf=00{}", &csrf[2..])] {
        let (status, _, _) = send(&e.app, post("/console/us-east-1/volumes", &cookie, body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let caller = engine::Caller {
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
    };
    let count = |cloud: &Cloud| {
        cloud
            .describe_volumes(&caller, &[], &[], &engine::query::Page::default())
            .unwrap()
            .0
            .len()
    };
    assert_eq!(count(&e.cloud), 0);
    let (status, _, _) = send(
        &e.app,
        post(
            "/console/us-east-1/volumes",
            &cookie,
            format!("{form}&csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(count(&e.cloud), 1);
    // Signed out, the same token and cookie do nothing.
    let (status, _, _) = send(
        &e.app,
        post("/console/signout", &cookie, format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = send(
        &e.app,
        post(
            "/console/us-east-1/volumes",
            &cookie,
            format!("{form}&csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(count(&e.cloud), 1);
}

#[test]
fn catalog_values_are_escaped() {
    let mut v = ImageView {
        id: "ami-0123456789abcdef0".into(),
        owner_id: "111111111111".into(),
        state: "available".into(),
        ..Default::default()
    };
    v.doc.name = "<script>alert(1)</script>".into();
    v.doc.description = Some("\"><img src=x onerror=alert(2)>".into());
    let out = catalog::table("us-east-1", &[v]).into_string();
    assert!(!out.contains("<script>"));
    assert!(!out.contains("<img"));
    assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn catalog_tabs_map_to_describe_images() {
    let q = catalog::Query::parse("tab=mine&arch=arm64&q=Deb");
    let req = q.request();
    assert_eq!(req.executable_by, vec!["self".to_string()]);
    assert_eq!(req.filters.len(), 1);
    assert_eq!(catalog::Query::parse("tab=bogus").tab, "quickstart");
    assert_eq!(
        catalog::Query::parse("tab=marketplace").request().owners,
        vec!["aws-marketplace".to_string()]
    );
    let mut v = ImageView {
        id: "ami-0123456789abcdef0".into(),
        owner_id: "222222222222".into(),
        ..Default::default()
    };
    v.doc.name = "debian-12".into();
    assert!(catalog::keep(&q, "111111111111", &v));
    v.doc.name = "ubuntu".into();
    assert!(!catalog::keep(&q, "111111111111", &v));
    let community = catalog::Query::parse("tab=community");
    assert!(!catalog::keep(&community, "222222222222", &v));
    assert!(catalog::keep(&community, "111111111111", &v));
}
