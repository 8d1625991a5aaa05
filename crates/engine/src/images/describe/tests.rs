//! DescribeImages through the index's candidates (`narrow`) against a look at every
//! image of the region: the same answers, page by page, for owners, executable-by,
//! exact / prefix / general wildcard filters, tags, hidden deprecated and disabled images,
//! several callers, and after images change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use catalog::ResourceRow;

use super::*;
use crate::DataDir;
use crate::images::narrow::{Candidates, Scope, candidates};
use crate::images::{ImageDoc, KIND, LAUNCH_PERMISSION, encode};

const REGION: &str = "us-east-1";
const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";
const AMAZON: &str = "137112412989";
const MARKETPLACE: &str = "679593333241";
const FAMILIES: &[&str] = &[
    "debian-12-amd64",
    "debian-12-arm64",
    "ubuntu-22.04",
    "café",
    "web (v1)",
    "al2023-ami-2023",
];

/// xorshift64*: a fixed sequence, so that a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[(self.next() % from.len() as u64) as usize]
    }
}

fn cloud() -> (tempfile::TempDir, Arc<Cloud>) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path(), true).unwrap();
    let cloud = Cloud::open(data, &[REGION.to_string(), "eu-west-1".to_string()]).unwrap();
    (dir, cloud)
}

fn caller(account: &str) -> Caller {
    Caller {
        account_id: account.into(),
        region: REGION.into(),
    }
}

/// Writes `n` varied images straight to the catalog (as an operator import does);
/// returns their ids.
fn populate(cloud: &Cloud, rng: &mut Rng, n: usize) -> Vec<String> {
    let now = now_ms();
    let mut ids = Vec::new();
    for i in 0..n {
        let owner = *rng.pick(&[A, A, B, AMAZON, MARKETPLACE]);
        let family = *rng.pick(FAMILIES);
        let mut doc = ImageDoc {
            name: format!("{family}-{}", i % 23),
            architecture: rng.pick(&["x86_64", "arm64"]).to_string(),
            owner_alias: match owner {
                AMAZON => Some("amazon".into()),
                MARKETPLACE => Some("aws-marketplace".into()),
                _ => None,
            },
            deprecation_ms: *rng.pick(&[None, None, Some(now - 60_000), Some(now + 3_600_000)]),
            creation_ms: now,
            ..ImageDoc::default()
        };
        if rng.next().is_multiple_of(4) {
            doc.description = Some(format!("{family} image"));
        }
        let id = format!("ami-{:017x}", rng.next() >> 4);
        let region = if rng.next().is_multiple_of(10) {
            "eu-west-1"
        } else {
            REGION
        };
        cloud
            .catalog()
            .insert_resource(&ResourceRow {
                id: id.clone(),
                kind: KIND.into(),
                account_id: owner.into(),
                region: region.into(),
                state: rng
                    .pick(&["available", "available", "pending", "disabled", "failed"])
                    .to_string(),
                doc: encode(&doc).unwrap(),
                created_at_ms: now,
            })
            .unwrap();
        for grantee in ["all", A, B, C] {
            if rng.next().is_multiple_of(4) {
                cloud
                    .catalog()
                    .add_permission(&id, LAUNCH_PERMISSION, grantee)
                    .unwrap();
            }
        }
        if rng.next().is_multiple_of(3) {
            cloud
                .catalog()
                .set_tags(&id, &[("os".into(), family.into())])
                .unwrap();
        }
        ids.push(id);
    }
    ids
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter {
        name: name.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn filter_sets(ids: &[String]) -> Vec<Vec<Filter>> {
    vec![
        vec![],
        vec![filter("name", &["debian-12-amd64-3"])],
        vec![filter("name", &["debian-12-*"])],
        vec![filter("name", &["*-arm64-*"])],
        vec![filter("name", &["caf?-1*"])],
        vec![filter(
            "name",
            &["web (v1)-?", "ubuntu-22.04-1", "al2023-ami-*-2"],
        )],
        vec![filter("name", &["*"]), filter("state", &["available"])],
        vec![filter("name", &["nothing*"])],
        vec![filter("image-id", &[&ids[0], &ids[1], &ids[7]])],
        vec![filter("tag:os", &["deb*"])],
        vec![filter("is-public", &["true"]), filter("name", &["al2023*"])],
        vec![
            filter("owner-alias", &["amazon"]),
            filter("name", &["*2023*"]),
        ],
        vec![
            filter("name", &["ubuntu-22.04-1?"]),
            filter("architecture", &["arm64"]),
        ],
    ]
}

/// The pages of a call: (ids of each page, in order), following NextToken.
fn pages(
    cloud: &Cloud,
    who: &Caller,
    req: &DescribeImages,
    narrow: bool,
) -> Ec2Result<Vec<Vec<String>>> {
    let mut req = req.clone();
    let mut out = Vec::new();
    loop {
        let (images, token) = cloud.describe_images_with(who, &req, narrow)?;
        out.push(images.into_iter().map(|i| i.id).collect());
        match token {
            Some(t) => req.page.next_token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Every combination of callers, owners, executable-by, filters, include flags and
/// page sizes: narrowed and full answers agree. Returns how many images were returned.
fn compare_all(cloud: &Cloud, ids: &[String]) -> usize {
    let mut returned = 0;
    for who in [A, B, C].map(caller) {
        for owners in [
            vec![],
            vec!["self"],
            vec!["amazon"],
            vec![B],
            vec!["aws-marketplace", "self"],
            vec![AMAZON],
        ] {
            for executable in [vec![], vec!["all"], vec!["self"], vec![A]] {
                for filters in filter_sets(ids) {
                    for (deprecated, disabled, max) in [
                        (false, false, None),
                        (true, true, None),
                        (false, false, Some(5)),
                    ] {
                        let req = DescribeImages {
                            owners: owners.iter().map(|s| s.to_string()).collect(),
                            executable_by: executable.iter().map(|s| s.to_string()).collect(),
                            filters: filters.clone(),
                            include_deprecated: deprecated,
                            include_disabled: disabled,
                            page: Page {
                                max_results: max,
                                next_token: None,
                            },
                            ..DescribeImages::default()
                        };
                        let narrowed = pages(cloud, &who, &req, true).unwrap();
                        let full = pages(cloud, &who, &req, false).unwrap();
                        assert_eq!(narrowed, full, "{who:?} {req:?}");
                        returned += full.iter().map(Vec::len).sum::<usize>();
                    }
                }
            }
        }
    }
    returned
}

#[test]
fn narrowed_answers_are_full_answers() {
    let (_dir, cloud) = cloud();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let ids = populate(&cloud, &mut rng, 400);
    let returned = compare_all(&cloud, &ids);
    assert!(returned > 10_000, "the queries find images: {returned}");

    // Changes through the engine's refresh: grants, removals, new images.
    for id in ids.iter().step_by(3) {
        cloud
            .catalog()
            .remove_permission(id, LAUNCH_PERMISSION, "all")
            .unwrap();
        cloud.refresh_image(id).unwrap();
    }
    for id in ids.iter().skip(1).step_by(5) {
        cloud.catalog().delete_resource(id).unwrap();
        cloud.refresh_image(id).unwrap();
    }
    let more = populate(&cloud, &mut rng, 50);
    for id in &more {
        cloud.refresh_image(id).unwrap();
    }
    let remaining: Vec<String> = ids.iter().skip(2).step_by(5).cloned().collect();
    compare_all(&cloud, &remaining);
}

#[test]
fn candidates_are_few_for_names_and_owners() {
    let (_dir, cloud) = cloud();
    let ids = populate(&cloud, &mut Rng(0x0dd_ba11), 600);
    let count = |filters: &[Filter], owners: &[Owner]| {
        cloud
            .with_region_images(REGION, |r| {
                let scope = Scope {
                    caller: A,
                    owners,
                    executable: &[],
                    filters,
                };
                match candidates(r, &scope) {
                    Candidates::All => r.images.len(),
                    Candidates::Set(s) => s.len(),
                    Candidates::List(l) => l.len(),
                }
            })
            .unwrap()
    };
    let all = count(&[], &[]);
    assert!(all > 300, "{all}");
    assert!(count(&[filter("name", &["debian-12-amd64-3"])], &[]) < 20);
    assert!(count(&[filter("name", &["debian-12-amd64-1*"])], &[]) < all / 4);
    assert!(count(&[filter("name", &["*-amd64-1?"])], &[]) < all / 4);
    assert!(count(&[filter("image-id", &[&ids[0]])], &[]) <= 1);
    let amazon = count(&[], &[Owner::Alias("amazon".into())]);
    assert!(amazon > 0 && amazon < all / 2, "{amazon}");
    // A wildcard name filter that matches everything falls back to the owner set.
    assert!(count(&[filter("name", &["*"])], &[Owner::Alias("amazon".into())]) == amazon);
}
