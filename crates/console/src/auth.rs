//! Signing in and out, and the home page.
//!
//! Sign-in takes an access key id and its secret access key, checked against the catalog
//! as SigV4 checks them (the secret compared in constant time). The sign-in form carries
//! a token that must equal the `openami_console_signin` cookie set with the form (a
//! double-submit check, since there is no session yet to hold a CSRF token).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::layout::{self, Frame};
use crate::session::{self, COOKIE, SIGNIN_COOKIE};
use crate::{App, AppState, Form, blocking, forbidden, gate, html, redirect};

/// How long a refused sign-in waits before it answers.
const FAILED_SIGNIN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /console`: home of the first region, or sign-in.
pub(crate) async fn root(State(app): AppState, headers: HeaderMap) -> Response {
    match app.signed(&headers) {
        Some(_) => redirect(&format!("/console/{}", app.first_region())),
        None => redirect("/console/signin"),
    }
}

fn signin_form(token: &str, error: Option<&str>, key_id: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · openami console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body.bare {
                main.signin {
                    h1 { "openami console" }
                    p { "Sign in with an access key of your account (" code { "openami account create" } " prints one)." }
                    @if let Some(e) = error {
                        p.flash.failed role="alert" #flash { (e) }
                    }
                    form method="post" action="/console/signin" {
                        input type="hidden" name="signin" value=(token);
                        label { "Access key ID" input type="text" name="access_key_id" value=(key_id) autocomplete="username" required autofocus; }
                        label { "Secret access key" input type="password" name="secret_access_key" autocomplete="current-password" required; }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

fn signin_response(app: &App, status: StatusCode, error: Option<&str>, key_id: &str) -> Response {
    let token = session::random_token();
    let cookie = session::set_cookie(SIGNIN_COOKIE, &token, app.config.secure_cookies, None);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::SET_COOKIE, cookie),
        ],
        signin_form(&token, error, key_id).into_string(),
    )
        .into_response()
}

/// `GET /console/signin`.
pub(crate) async fn signin_page(State(app): AppState, headers: HeaderMap) -> Response {
    if app.signed(&headers).is_some() {
        return redirect("/console");
    }
    signin_response(&app, StatusCode::OK, None, "")
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|v| v.to_str().ok().and_then(|c| session::cookie(c, name)))
        .map(str::to_string)
}

/// `POST /console/signin`.
pub(crate) async fn signin(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let expected = cookie_value(&headers, SIGNIN_COOKIE).unwrap_or_default();
    let given = form.get("signin");
    if expected.is_empty() || !session::same_secret(given, &expected) {
        return forbidden("The sign-in form expired; open it again.");
    }
    let key_id = form.get("access_key_id").trim().to_string();
    let secret = form.get("secret_access_key").to_string();
    let lookup = {
        let app = Arc::clone(&app);
        let key_id = key_id.clone();
        blocking(move || Ok(app.cloud.catalog().access_key(&key_id)?)).await
    };
    let account = match lookup {
        Ok(Some((account, stored))) if session::same_secret(&secret, &stored) => account,
        Ok(_) => {
            tracing::info!(access_key_id = %key_id, "console sign-in refused");
            // Each wrong guess costs the guesser a second (connections are limited).
            tokio::time::sleep(FAILED_SIGNIN_DELAY).await;
            return signin_response(
                &app,
                StatusCode::UNAUTHORIZED,
                Some("AuthFailure: the access key id or the secret access key is wrong."),
                &key_id,
            );
        }
        Err(e) => {
            return signin_response(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&crate::words(&e)),
                &key_id,
            );
        }
    };
    tracing::info!(account = %account, access_key_id = %key_id, "console sign-in");
    let token = app.sessions.create(&account, &key_id);
    let secure = app.config.secure_cookies;
    // AppendHeaders: two Set-Cookie headers (an array of pairs would keep only the last).
    (
        StatusCode::SEE_OTHER,
        AppendHeaders([
            (header::LOCATION, format!("/console/{}", app.first_region())),
            (
                header::SET_COOKIE,
                session::set_cookie(COOKIE, &token, secure, None),
            ),
            (
                header::SET_COOKIE,
                session::set_cookie(SIGNIN_COOKIE, "", secure, Some(0)),
            ),
        ]),
    )
        .into_response()
}

/// `POST /console/signout`: ends the session (CSRF-checked like every POST).
pub(crate) async fn signout(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let signed = match crate::post_gate(&app, &headers, None, &body) {
        Ok((signed, _)) => signed,
        Err(refused) => return *refused,
    };
    app.sessions.remove(&signed.token);
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/signin".to_string()),
            (
                header::SET_COOKIE,
                session::set_cookie(COOKIE, "", app.config.secure_cookies, Some(0)),
            ),
        ],
    )
        .into_response()
}

/// `GET /console/{region}`: what the account has in the region.
pub(crate) async fn home(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let caller = signed.caller(&region);
    let counts = {
        let app = Arc::clone(&app);
        blocking(move || {
            let page = engine::query::Page::default();
            let cloud = &app.cloud;
            let instances = cloud.describe_instances(&caller, &[], &[], &page)?.0;
            let running = instances.iter().filter(|i| i.state == "running").count();
            let instances = instances.iter().filter(|i| i.state != "terminated").count();
            let volumes = cloud.describe_volumes(&caller, &[], &[], &page)?.0.len();
            let snapshots = cloud
                .describe_snapshots(&caller, &[], &["self".into()], &[], &[], &page)?
                .0
                .len();
            let images = cloud
                .describe_images(
                    &caller,
                    &engine::images::DescribeImages {
                        owners: vec!["self".into()],
                        ..Default::default()
                    },
                )?
                .0
                .len();
            Ok([
                (
                    "Instances",
                    "/instances",
                    instances,
                    format!("{running} running"),
                ),
                ("My AMIs", "/images?tab=mine", images, "owned by you".into()),
                ("Volumes", "/volumes", volumes, String::new()),
                ("Snapshots", "/snapshots", snapshots, "owned by you".into()),
            ])
        })
        .await
    };
    let frame = Frame::new(&app, &signed, &region, "");
    let body = html! {
        h1 { "Home" }
        @match &counts {
            Ok(cards) => {
                div.cards {
                    @for (label, path, n, note) in cards {
                        a.card href={ "/console/" (region) (path) } {
                            span.count { (n) }
                            span.label { (label) }
                            @if !note.is_empty() { span.note { (note) } }
                        }
                    }
                }
            }
            Err(e) => p.flash.failed { (crate::words(e)) }
        }
        p {
            "Browse the " a href={ "/console/" (region) "/images" } { "AMI catalog" }
            " to find an image: Quick Start, your own and shared images, Marketplace and Community."
        }
    };
    html(layout::page(&frame, "Home", body))
}
