//! The console's root, signing out, and the home page (signing in is [`crate::signin`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::layout::{self, Frame};
use crate::session::{self, COOKIE};
use crate::{AppState, blocking, gate, html, redirect};

/// `GET /console`: home of the first region, or sign-in.
pub(crate) async fn root(State(app): AppState, headers: HeaderMap) -> Response {
    match app.signed(&headers) {
        Some(_) => redirect(&format!("/console/{}", app.first_region())),
        None => redirect("/console/signin"),
    }
}

/// `POST /console/signout`: ends the session (CSRF-checked like every POST).
pub(crate) async fn signout(State(app): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let signed = match crate::post_gate(&app, &headers, None, &body) {
        Ok((signed, _)) => signed,
        Err(refused) => return *refused,
    };
    if let Err(e) = app.sessions.remove(app.cloud.catalog(), &signed.token) {
        // The session lives on: say so rather than pretend the sign-out happened.
        tracing::warn!(error = %e.message, "console sign-out failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::layout::bare(
                "Service unavailable",
                "The sign-out could not be recorded (the catalog is unavailable); try again.",
            )
            .into_string(),
        )
            .into_response();
    }
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
