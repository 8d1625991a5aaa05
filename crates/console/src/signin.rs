//! Signing in: the page and its two ways in.
//!
//! * **Account and password**: the account's name or 12-digit id, and the console
//!   password the operator set with `openami account set-console-password` (an Argon2id
//!   hash in the catalog, see [`crate::password`]).
//! * **Access key**: an access key id and its secret access key, checked against the
//!   catalog as SigV4 checks them (the secret compared in constant time).
//!
//! Both forms carry a token that must equal the `openami_console_signin` cookie set with
//! the page (a double-submit check, since there is no session yet to hold a CSRF token).
//! A refusal says the same for an unknown account, an account without a password and a
//! wrong password, and costs the same time: an Argon2 verification (against a dummy hash
//! when there is nothing to verify against) and a one-second pause. Attempts go through
//! [`crate::throttle`] first: five failures lock the account or key for 15 minutes. Every
//! attempt is recorded in the audit log as `ConsoleLogin` (see [`crate::audit`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::audit::Outcome;
use crate::session::{self, COOKIE, SIGNIN_COOKIE};
use crate::{App, AppState, Form, blocking, forbidden, password, redirect};

/// How long a refused sign-in waits before it answers.
const FAILED_SIGNIN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// The refusal of a password sign-in, whatever was wrong.
const WRONG_PASSWORD: &str = "AuthFailure: the account or the password is wrong.";
/// The refusal of an access key sign-in.
const WRONG_KEY: &str = "AuthFailure: the access key id or the secret access key is wrong.";
/// Longest account name or id, or access key id, looked up.
const MAX_NAME: usize = 128;

/// The client's address (when the server provides it; see [`crate::audit::PeerAddr`]).
pub(crate) struct Peer(pub(crate) Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(crate::audit::peer(&parts.extensions)))
    }
}

/// What the sign-in page shows again after a refusal.
#[derive(Default)]
struct Prefill<'a> {
    key_id: &'a str,
    account: &'a str,
}

fn signin_form(token: &str, error: Option<&str>, prefill: &Prefill) -> Markup {
    let password_refused = !prefill.account.is_empty();
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
                    p {
                        "Sign in in either of two ways: with an " strong { "access key" }
                        " of your account (" code { "openami account create" } " prints one), or with your "
                        strong { "account" } " (its name or 12-digit id) and the "
                        strong { "console password" } " your operator set with "
                        code { "openami account set-console-password" } "."
                    }
                    @if let Some(e) = error {
                        p.flash.failed role="alert" #flash { (e) }
                    }
                    h2 { "With an access key" }
                    form #signin-key method="post" action="/console/signin" {
                        input type="hidden" name="signin" value=(token);
                        input type="hidden" name="way" value="key";
                        label { "Access key ID" input type="text" name="access_key_id" value=(prefill.key_id) autocomplete="username" required autofocus[!password_refused]; }
                        label { "Secret access key" input type="password" name="secret_access_key" autocomplete="current-password" required; }
                        button type="submit" { "Sign in" }
                    }
                    h2 { "With the account and its password" }
                    form #signin-password method="post" action="/console/signin" {
                        input type="hidden" name="signin" value=(token);
                        input type="hidden" name="way" value="password";
                        label { "Account name or ID" input type="text" name="account" value=(prefill.account) autocomplete="username" required autofocus[password_refused]; }
                        label { "Console password" input type="password" name="password" autocomplete="current-password" required; }
                        button type="submit" { "Sign in with password" }
                    }
                }
            }
        }
    }
}

fn signin_response(
    app: &App,
    status: StatusCode,
    error: Option<&str>,
    prefill: &Prefill,
) -> Response {
    let token = session::random_token();
    let cookie = session::set_cookie(SIGNIN_COOKIE, &token, app.config.secure_cookies, None);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::SET_COOKIE, cookie),
        ],
        signin_form(&token, error, prefill).into_string(),
    )
        .into_response()
}

/// `GET /console/signin`.
pub(crate) async fn page(State(app): AppState, headers: HeaderMap) -> Response {
    if app.signed(&headers).is_some() {
        return redirect("/console");
    }
    signin_response(&app, StatusCode::OK, None, &Prefill::default())
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|v| v.to_str().ok().and_then(|c| session::cookie(c, name)))
        .map(str::to_string)
}

/// The first `MAX_NAME` bytes of a typed name (on a character boundary), trimmed.
fn bounded(s: &str) -> &str {
    let s = s.trim();
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Who a sign-in is for, once looked up.
struct Claim {
    /// The throttle's subject: `account:<id>` for a known account, else what was typed.
    subject: String,
    /// The account, when known.
    account_id: Option<String>,
    /// The access key id claimed (access key sign-in).
    key_id: Option<String>,
}

/// `POST /console/signin`.
pub(crate) async fn signin(
    State(app): AppState,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let expected = cookie_value(&headers, SIGNIN_COOKIE).unwrap_or_default();
    let given = form.get("signin");
    if expected.is_empty() || !session::same_secret(given, &expected) {
        return Outcome::refused("InvalidCsrfToken", 403)
            .attach(forbidden("The sign-in form expired; open it again."));
    }
    let by_password = form.get("way") == "password";
    let key_id = bounded(form.get("access_key_id")).to_string();
    let account = bounded(form.get("account")).to_string();
    let prefill = Prefill {
        key_id: if by_password { "" } else { &key_id },
        account: if by_password { &account } else { "" },
    };
    // Who the attempt is for (a quick catalog read; the costly check comes after the
    // throttle let the attempt through).
    let claim = {
        let app = Arc::clone(&app);
        let (key_id, account) = (key_id.clone(), account.clone());
        blocking(move || {
            if by_password {
                let found = resolve(&app.cloud, &account)?;
                Ok(Claim {
                    subject: match &found {
                        Some(id) => format!("account:{id}"),
                        None => format!("name:{account}"),
                    },
                    account_id: found,
                    key_id: None,
                })
            } else {
                Ok(Claim {
                    subject: format!("key:{key_id}"),
                    account_id: None,
                    key_id: Some(key_id),
                })
            }
        })
        .await
    };
    let claim = match claim {
        Ok(c) => c,
        Err(e) => {
            return Outcome::failed(&e).attach(signin_response(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&crate::words(&e)),
                &prefill,
            ));
        }
    };
    let client = peer.map(|p| p.ip());
    let outcome = Outcome {
        account_id: claim.account_id.clone(),
        access_key_id: claim.key_id.clone().filter(|k| looks_like_key(k)),
        ..Outcome::default()
    };
    if let Err(locked) = app.throttle.attempt(&claim.subject, client, Instant::now()) {
        tracing::info!(subject = %claim.loggable(), client = ?client, "console sign-in throttled");
        tokio::time::sleep(FAILED_SIGNIN_DELAY).await;
        let mut outcome = outcome;
        outcome.error = Some(("Throttling".into(), 429));
        return outcome.attach(signin_response(
            &app,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&locked.message()),
            &prefill,
        ));
    }
    let checked = if by_password {
        check_password(
            &app,
            claim.account_id.clone(),
            form.get("password").to_string(),
        )
        .await
    } else {
        check_key(
            &app,
            key_id.clone(),
            form.get("secret_access_key").to_string(),
        )
        .await
    };
    let account = match checked {
        Ok(Some(account)) => account,
        Ok(None) => {
            tracing::info!(subject = %claim.loggable(), "console sign-in refused");
            // Each wrong guess costs the guesser a second (connections are limited).
            tokio::time::sleep(FAILED_SIGNIN_DELAY).await;
            let mut outcome = outcome;
            outcome.error = Some(("AuthFailure".into(), 401));
            let words = if by_password {
                WRONG_PASSWORD
            } else {
                WRONG_KEY
            };
            return outcome.attach(signin_response(
                &app,
                StatusCode::UNAUTHORIZED,
                Some(words),
                &prefill,
            ));
        }
        Err(e) => {
            // Not the guesser's fault: the attempt does not count against them.
            app.throttle.succeeded(&claim.subject, client);
            let mut outcome = outcome;
            outcome.error = Some((e.code.clone(), e.status));
            return outcome.attach(signin_response(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&crate::words(&e)),
                &prefill,
            ));
        }
    };
    app.throttle.succeeded(&claim.subject, client);
    let session_key = if by_password { "" } else { key_id.as_str() };
    tracing::info!(account = %account, access_key_id = %session_key, "console sign-in");
    let created = {
        let app = Arc::clone(&app);
        let (account, key) = (account.clone(), session_key.to_string());
        blocking(move || app.sessions.create(app.cloud.catalog(), &account, &key)).await
    };
    let token = match created {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(error = %e.message, "console session could not be stored");
            let mut outcome = outcome;
            outcome.error = Some((e.code.clone(), e.status));
            // Whatever went wrong in the catalog, the browser is told only to retry.
            return outcome.attach(signin_response(
                &app,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The sign-in could not be recorded; try again in a moment."),
                &prefill,
            ));
        }
    };
    let secure = app.config.secure_cookies;
    let outcome = Outcome {
        account_id: Some(account),
        access_key_id: (!session_key.is_empty()).then(|| session_key.to_string()),
        ..Outcome::default()
    };
    // AppendHeaders: two Set-Cookie headers (an array of pairs would keep only the last).
    outcome.attach(
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
            .into_response(),
    )
}

/// The id of the account named `typed`: a 12-digit id of an existing account, else the
/// account with that name.
fn resolve(cloud: &engine::Cloud, typed: &str) -> engine::Ec2Result<Option<String>> {
    if typed.is_empty() {
        return Ok(None);
    }
    let accounts = cloud.catalog().accounts()?;
    let by_id = engine::ids::is_account_id(typed)
        .then(|| accounts.iter().find(|a| a.account_id == typed))
        .flatten();
    Ok(by_id
        .or_else(|| accounts.iter().find(|a| a.name == typed))
        .map(|a| a.account_id.clone()))
}

/// True for what an access key id looks like (recorded in the audit log; anything else a
/// sign-in claimed is not, as it may be a secret typed in the wrong field).
fn looks_like_key(k: &str) -> bool {
    // AWS's shape (`AKIA`/`ASIA` + 16 upper-case letters and digits), which openami's keys
    // have. A 40-character secret has lower-case letters, so it never passes.
    k.len() == 20
        && (k.starts_with("AKIA") || k.starts_with("ASIA"))
        && k.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl Claim {
    /// What the server log may say of the claim: a known account or a key-shaped id;
    /// anything else may be a secret or password typed into the wrong field.
    fn loggable(&self) -> &str {
        match (&self.account_id, &self.key_id) {
            (Some(_), _) => &self.subject,
            (None, Some(k)) if looks_like_key(k) => &self.subject,
            _ => "(unrecognised)",
        }
    }
}

/// The account whose console password `given` is, if it is: the verification runs (on a
/// blocking thread, a few at a time) whether or not the account has a password.
async fn check_password(
    app: &Arc<App>,
    account: Option<String>,
    given: String,
) -> engine::Ec2Result<Option<String>> {
    let _permit = app.hashing.acquire().await;
    let app = Arc::clone(app);
    blocking(move || {
        let stored = match &account {
            Some(id) => app.cloud.catalog().console_password(id)?,
            None => None,
        };
        let ok = match &stored {
            Some(hash) => password::verify(&given, hash),
            None => password::verify_dummy(&given),
        };
        Ok(account.filter(|_| ok && stored.is_some()))
    })
    .await
}

/// The account of access key `key_id` if `secret` is its secret.
async fn check_key(
    app: &Arc<App>,
    key_id: String,
    secret: String,
) -> engine::Ec2Result<Option<String>> {
    let app = Arc::clone(app);
    blocking(move || {
        Ok(match app.cloud.catalog().access_key(&key_id)? {
            Some((account, stored)) if session::same_secret(&secret, &stored) => Some(account),
            _ => None,
        })
    })
    .await
}
