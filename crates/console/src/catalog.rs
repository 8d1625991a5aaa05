//! The AMI catalog: four tabs over DescribeImages, as the signed-in account.
//!
//! | tab           | DescribeImages                                              |
//! |---------------|-------------------------------------------------------------|
//! | `quickstart`  | `Owner=amazon`                                              |
//! | `mine`        | `ExecutableBy=self` (owned, and shared with the account)    |
//! | `marketplace` | `Owner=aws-marketplace`                                     |
//! | `community`   | `ExecutableBy=all` minus the account's own and aliased ones |
//!
//! Filters (architecture, root device type, boot mode, owner id) become DescribeImages
//! filters. Browsing by id uses the engine's `MaxResults`/`NextToken` pages, so a catalog
//! of 10,000 images costs one page per request. A text search (name, description or id,
//! case-insensitive) or the newest-first order needs every match: the engine filters
//! first, the console searches and sorts what is left and cuts a page by offset.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use engine::images::{DescribeImages, ImageView};
use engine::query::{Filter, Page};
use maud::{Markup, html};

use crate::layout::{self, Frame};
use crate::{AppState, Form, gate, html, when};

/// Images per page.
pub(crate) const PAGE: usize = 50;

const TABS: [(&str, &str); 4] = [
    ("quickstart", "Quick Start AMIs"),
    ("mine", "My AMIs"),
    ("marketplace", "AWS Marketplace AMIs"),
    ("community", "Community AMIs"),
];

/// The catalog's query string, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pub tab: String,
    pub q: String,
    pub arch: String,
    pub root: String,
    pub boot: String,
    pub owner: String,
    pub newest: bool,
    pub next: Option<String>,
    pub offset: usize,
}

impl Query {
    pub(crate) fn parse(raw: &str) -> Query {
        let f = Form::parse(raw.as_bytes());
        let tab = f.get("tab");
        Query {
            tab: if TABS.iter().any(|(t, _)| *t == tab) {
                tab.to_string()
            } else {
                "quickstart".into()
            },
            q: f.get("q").trim().to_string(),
            arch: f.get("arch").to_string(),
            root: f.get("root").to_string(),
            boot: f.get("boot").to_string(),
            owner: f.get("owner").trim().to_string(),
            newest: f.get("sort") == "newest",
            next: f.opt("next"),
            offset: f.get("offset").parse().unwrap_or(0),
        }
    }

    /// The DescribeImages request of the tab and filters (no page).
    pub(crate) fn request(&self) -> DescribeImages {
        let mut req = DescribeImages::default();
        match self.tab.as_str() {
            "mine" => req.executable_by = vec!["self".into()],
            "marketplace" => req.owners = vec!["aws-marketplace".into()],
            "community" => req.executable_by = vec!["all".into()],
            _ => req.owners = vec!["amazon".into()],
        }
        let mut filter = |name: &str, value: &str| {
            if !value.is_empty() {
                req.filters.push(Filter {
                    name: name.into(),
                    values: vec![value.into()],
                });
            }
        };
        filter("architecture", &self.arch);
        filter("root-device-type", &self.root);
        filter("boot-mode", &self.boot);
        filter("owner-id", &self.owner);
        req
    }

    /// True when the engine's own pages serve this query.
    fn paged_by_engine(&self) -> bool {
        self.q.is_empty() && !self.newest
    }

    /// The query string of this query with another page.
    fn link(&self, next: Option<&str>, offset: usize) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("tab", &self.tab);
        for (k, v) in [
            ("q", &self.q),
            ("arch", &self.arch),
            ("root", &self.root),
            ("boot", &self.boot),
            ("owner", &self.owner),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if self.newest {
            s.append_pair("sort", "newest");
        }
        if let Some(n) = next {
            s.append_pair("next", n);
        }
        if offset > 0 {
            s.append_pair("offset", &offset.to_string());
        }
        s.finish()
    }
}

/// Keeps what a tab shows beyond its DescribeImages request (Community: others' images
/// without an owner alias) and what a text search asks for.
pub(crate) fn keep(q: &Query, account: &str, v: &ImageView) -> bool {
    if q.tab == "community" && (v.owner_id == account || v.doc.owner_alias.is_some()) {
        return false;
    }
    if q.q.is_empty() {
        return true;
    }
    let needle = q.q.to_lowercase();
    v.id.contains(&needle)
        || v.doc.name.to_lowercase().contains(&needle)
        || v.doc
            .description
            .as_deref()
            .is_some_and(|d| d.to_lowercase().contains(&needle))
}

/// One page of results: images, the next page's link (if any), and the total when known.
pub(crate) struct Results {
    pub images: Vec<ImageView>,
    pub next: Option<String>,
    pub total: Option<usize>,
}

/// Runs a catalog query as `caller`.
pub(crate) fn run(
    cloud: &engine::Cloud,
    caller: &engine::Caller,
    q: &Query,
) -> engine::Ec2Result<Results> {
    let mut req = q.request();
    if q.paged_by_engine() {
        req.page = Page {
            max_results: Some(PAGE as i64),
            next_token: q.next.clone(),
        };
        let (images, token) = cloud.describe_images(caller, &req)?;
        let images = images
            .into_iter()
            .filter(|v| keep(q, &caller.account_id, v))
            .collect();
        return Ok(Results {
            images,
            next: token.map(|t| q.link(Some(&t), 0)),
            total: None,
        });
    }
    let (mut images, _) = cloud.describe_images(caller, &req)?;
    images.retain(|v| keep(q, &caller.account_id, v));
    if q.newest {
        images.sort_by(|a, b| {
            b.doc
                .creation_ms
                .cmp(&a.doc.creation_ms)
                .then(a.id.cmp(&b.id))
        });
    }
    let total = images.len();
    let end = (q.offset + PAGE).min(total);
    let page: Vec<ImageView> = images
        .into_iter()
        .skip(q.offset)
        .take(end.saturating_sub(q.offset))
        .collect();
    Ok(Results {
        images: page,
        next: (end < total).then(|| q.link(None, end)),
        total: Some(total),
    })
}

fn select(name: &str, label: &str, current: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        label {
            (label)
            select name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[*value == current] { (text) }
                }
            }
        }
    }
}

fn filters(q: &Query) -> Markup {
    html! {
        form.filters method="get" {
            input type="hidden" name="tab" value=(q.tab);
            label.search { "Search" input type="search" name="q" value=(q.q) placeholder="name, description or ami-…"; }
            (select("arch", "Architecture", &q.arch, &[("", "any"), ("x86_64", "x86_64"), ("arm64", "arm64"), ("i386", "i386")]))
            (select("root", "Root device", &q.root, &[("", "any"), ("ebs", "ebs"), ("instance-store", "instance-store")]))
            (select("boot", "Boot mode", &q.boot, &[("", "any"), ("legacy-bios", "legacy-bios"), ("uefi", "uefi"), ("uefi-preferred", "uefi-preferred")]))
            label { "Owner" input type="text" name="owner" value=(q.owner) placeholder="account id" size="14"; }
            (select("sort", "Sort", if q.newest { "newest" } else { "" }, &[("", "by id"), ("newest", "newest first")]))
            button type="submit" { "Apply" }
        }
    }
}

/// The table of images (also used by the home page's tests).
pub(crate) fn table(region: &str, images: &[ImageView]) -> Markup {
    html! {
        table.list #images {
            thead { tr { th { "Name" } th { "AMI ID" } th { "Owner" } th { "Architecture" } th { "Root" } th { "Boot" } th { "Created" } th { "Visibility" } } }
            tbody {
                @for v in images {
                    tr {
                        td.name {
                            a href={ "/console/" (region) "/images/" (v.id) } { (v.doc.name) }
                            @if let Some(d) = &v.doc.description { div.desc { (d) } }
                        }
                        td { code { (v.id) } }
                        td { (v.doc.owner_alias.as_deref().unwrap_or(&v.owner_id)) }
                        td { (v.doc.architecture) }
                        td { (v.doc.root_device_type) }
                        td { (v.doc.boot_mode.as_deref().unwrap_or("-")) }
                        td { (when(v.doc.creation_ms)) }
                        td { (if v.public { "public" } else { "private" }) }
                    }
                }
            }
        }
    }
}

/// `GET /console/{region}/images`.
pub(crate) async fn page(
    State(app): AppState,
    Path(region): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let signed = match gate(&app, &headers, &region) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let q = Query::parse(uri.query().unwrap_or(""));
    let results = {
        let q = q.clone();
        crate::call_as(&app, &signed, &region, move |cloud, caller| {
            run(cloud, caller, &q)
        })
        .await
    };
    let frame = Frame::new(&app, &signed, &region, "/images");
    let body = html! {
        h1 { "AMI catalog" }
        nav.tabs {
            @for (tab, label) in TABS {
                a href={ "?tab=" (tab) } aria-current=[(q.tab == tab).then_some("page")] { (label) }
            }
        }
        (filters(&q))
        @match &results {
            Ok(r) => {
                p.count {
                    @match r.total {
                        Some(n) => { (n) " images match" @if q.offset > 0 { ", from " (q.offset + 1) } "." }
                        None => { "Showing " (r.images.len()) " images" @if q.next.is_some() { " (a later page)" } "." }
                    }
                }
                @if r.images.is_empty() {
                    p.empty { "No images here." }
                } @else {
                    (table(&region, &r.images))
                }
                nav.pager {
                    @if q.next.is_some() || q.offset > 0 {
                        a href={ "?" (q.link(None, 0)) } { "First page" }
                    }
                    @if let Some(next) = &r.next {
                        a #next-page href={ "?" (next) } { "Next page" }
                    }
                }
            }
            Err(e) => p.flash.failed { (crate::words(e)) }
        }
    };
    html(layout::page(&frame, "AMI catalog", body))
}
