//! The frame every page shares (header, navigation, region switcher, flash message) and
//! small pieces of markup: forms that carry the CSRF token, state badges.

use maud::{DOCTYPE, Markup, html};

use crate::Signed;
use crate::session::Flash;

/// What the frame needs to know about the request.
pub(crate) struct Frame<'a> {
    /// The signed-in session.
    pub signed: &'a Signed,
    /// The region of the page.
    pub region: &'a str,
    /// Every region served (for the switcher).
    pub regions: &'a [String],
    /// The part of the path after the region (kept when switching regions).
    pub section: &'a str,
}

impl<'a> Frame<'a> {
    /// The frame of a page of `region` at `section`, for the signed-in session.
    pub fn new(app: &'a crate::App, signed: &'a Signed, region: &'a str, section: &'a str) -> Self {
        Frame {
            signed,
            region,
            regions: app.cloud.region_names(),
            section,
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · openami console" }
            link rel="stylesheet" href="/console/static/console.css";
            script src="/console/static/console.js" defer {}
        }
    }
}

/// A page with no session (sign-in, errors).
pub(crate) fn bare(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main {
                    h1 { (title) }
                    p { (message) }
                    p { a href="/console" { "Back to the console" } }
                }
            }
        }
    }
}

/// A signed-in page: header, navigation, flash, then `body`.
pub(crate) fn page(frame: &Frame, title: &str, body: Markup) -> Markup {
    let r = frame.region;
    let s = &frame.signed.session;
    let nav = [
        ("", "Home"),
        ("/images", "AMI catalog"),
        ("/instances", "Instances"),
        ("/launch-templates", "Launch templates"),
        ("/volumes", "Volumes"),
        ("/snapshots", "Snapshots"),
        ("/tasks", "Import/export"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href={ "/console/" (r) } { "openami" }
                    nav {
                        @for (path, label) in nav {
                            @let current = frame.section == path
                                || (!path.is_empty() && frame.section.starts_with(path));
                            a href={ "/console/" (r) (path) } aria-current=[current.then_some("page")] { (label) }
                        }
                    }
                    details.regions {
                        summary { "Region: " strong #region { (r) } }
                        ul {
                            @for other in frame.regions {
                                li { a href={ "/console/" (other) (frame.section) } { (other) } }
                            }
                        }
                    }
                    span.who title=(if s.access_key_id.is_empty() { "Signed in with the console password".to_string() } else { format!("Access key {}", s.access_key_id) }) { "Account " span #account { (s.account_id) } }
                    (form("/console/signout", &s.csrf, html! {}, "Sign out", "link"))
                }
                main {
                    @if let Some((kind, text)) = &s.flash {
                        @let class = if *kind == Flash::Done { "flash done" } else { "flash failed" };
                        p class=(class) role="status" #flash { (text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A POST form carrying the session's CSRF token; `fields` go before the button.
pub(crate) fn form(action: &str, csrf: &str, fields: Markup, button: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            (fields)
            button type="submit" class=(class) { (button) }
        }
    }
}

/// A destructive action: the form needs its confirmation box ticked (no script needed).
pub(crate) fn confirmed(action: &str, csrf: &str, extra: Markup, button: &str) -> Markup {
    form(
        action,
        csrf,
        html! {
            (extra)
            label.confirm { input type="checkbox" name="confirm" value="yes" required; " confirm" }
        },
        button,
        "danger",
    )
}

/// True for states that are about to change (the page keeps refreshing while one shows).
pub(crate) fn transient(state: &str) -> bool {
    matches!(
        state,
        "pending"
            | "stopping"
            | "shutting-down"
            | "creating"
            | "deleting"
            | "attaching"
            | "detaching"
    )
}

/// A state badge.
pub(crate) fn state(state: &str) -> Markup {
    let class = if transient(state) {
        "state transient"
    } else {
        "state"
    };
    html! { span class=(class) data-state=(state) { (state) } }
}
