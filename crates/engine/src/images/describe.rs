//! DescribeImages.

use catalog::now_ms;

use crate::query::{Filter, Page, check_filters};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids};

use super::index::Indexed;
use super::narrow::{Candidates, Owner, Scope, candidates};
use super::{ImageFilters, ImageView, check_image_id, launchable, not_found};

/// DescribeImages parameters.
#[derive(Clone, Debug, Default)]
pub struct DescribeImages {
    /// `ImageId.N`.
    pub image_ids: Vec<String>,
    /// `Owner.N`: account ids, `self`, `amazon`, `aws-marketplace`.
    pub owners: Vec<String>,
    /// `ExecutableBy.N`: account ids, `self`, `all`.
    pub executable_by: Vec<String>,
    /// `Filter.N`.
    pub filters: Vec<Filter>,
    /// `IncludeDeprecated`.
    pub include_deprecated: bool,
    /// `IncludeDisabled`.
    pub include_disabled: bool,
    /// `MaxResults` / `NextToken`.
    pub page: Page,
}

fn owners(caller: &Caller, given: &[String]) -> Ec2Result<Vec<Owner>> {
    given
        .iter()
        .map(|o| match o.as_str() {
            "self" => Ok(Owner::Account(caller.account_id.clone())),
            "amazon" | "aws-marketplace" => Ok(Owner::Alias(o.clone())),
            id if ids::is_account_id(id) => Ok(Owner::Account(id.to_string())),
            other => Err(Ec2Error::invalid_value(format!(
                "Invalid owner: {other}. Expected an account id, self, amazon or aws-marketplace"
            ))),
        })
        .collect()
}

fn executable_by(caller: &Caller, given: &[String]) -> Ec2Result<Vec<String>> {
    given
        .iter()
        .map(|e| match e.as_str() {
            "self" => Ok(caller.account_id.clone()),
            "all" => Ok("all".to_string()),
            id if ids::is_account_id(id) => Ok(id.to_string()),
            other => Err(Ec2Error::invalid_value(format!(
                "Invalid value for ExecutableBy: {other}. Expected an account id, self or all"
            ))),
        })
        .collect()
}

impl Cloud {
    /// DescribeImages. With no ids, owners or executable-by, every image the caller may
    /// launch: its own, those shared with its account, and public ones. Deprecated
    /// images of others are hidden unless asked for by id or with `IncludeDeprecated`;
    /// disabled images (only ever visible to their owner) unless asked for by id or with
    /// `IncludeDisabled`. An id the caller cannot see fails the whole call. Results are
    /// sorted by id; `NextToken` is the last id of the previous page.
    pub fn describe_images(
        &self,
        caller: &Caller,
        req: &DescribeImages,
    ) -> Ec2Result<(Vec<ImageView>, Option<String>)> {
        self.describe_images_with(caller, req, true)
    }

    /// [`Cloud::describe_images`], looking at only the candidates the index gives
    /// (`narrow`) or at every image of the region (the reference the tests compare with).
    fn describe_images_with(
        &self,
        caller: &Caller,
        req: &DescribeImages,
        narrow: bool,
    ) -> Ec2Result<(Vec<ImageView>, Option<String>)> {
        check_filters(&req.filters)?;
        let filters = ImageFilters::new(&req.filters)?;
        let mut page = req.page.clone();
        page.check(5, 1000, !req.image_ids.is_empty())?;
        for id in &req.image_ids {
            check_image_id(id)?;
        }
        let mut wanted = req.image_ids.clone();
        wanted.sort();
        wanted.dedup();
        let owners = owners(caller, &req.owners)?;
        let executable = executable_by(caller, &req.executable_by)?;
        let now = now_ms();
        let allowed = self.allowed_images(caller)?;
        let limit = page.max_results.map_or(usize::MAX, |n| n.max(0) as usize);
        let visible = |i: &Indexed| {
            launchable(caller, &i.view.owner_id, &i.view.state, &i.grants)
                && !allowed.hides(caller, &i.view.owner_id, &i.view.doc, now)
        };
        let keep = |i: &Indexed, asked: bool| -> bool {
            let v = &i.view;
            let own = v.owner_id == caller.account_id;
            if !visible(i)
                || (!asked && !req.include_deprecated && !own && v.doc.deprecated(now))
                || (!asked && !req.include_disabled && v.state == "disabled")
            {
                return false;
            }
            if !owners.is_empty()
                && !owners.iter().any(|o| match o {
                    Owner::Account(id) => *id == v.owner_id,
                    Owner::Alias(alias) => v.doc.owner_alias.as_deref() == Some(alias),
                })
            {
                return false;
            }
            if !executable.is_empty()
                && !executable.iter().any(|e| {
                    if e == "all" {
                        v.public
                    } else {
                        *e == v.owner_id || i.grants.contains(e)
                    }
                })
            {
                return false;
            }
            filters.matches(v, own)
        };
        let view = |i: &Indexed| {
            let mut v = i.view.clone();
            if v.owner_id != caller.account_id {
                v.tags.clear();
            }
            v.allowed = allowed.reported(caller, &v.owner_id, &v.doc, now);
            v
        };
        self.with_region_images(&caller.region, |r| {
            let mut out = Vec::new();
            if !wanted.is_empty() {
                for id in &wanted {
                    match r.get(id) {
                        Some(i) if keep(i, true) => out.push(view(i)),
                        // Filtered out is fine; invisible or absent is an error.
                        Some(i) if visible(i) => {}
                        _ => return Err(not_found(id)),
                    }
                }
                return Ok((out, None));
            }
            let candidates = if narrow {
                candidates(
                    r,
                    &Scope {
                        caller: &caller.account_id,
                        owners: &owners,
                        executable: &executable,
                        filters: &req.filters,
                    },
                )
            } else {
                Candidates::All
            };
            let mut more = false;
            candidates.visit(r, page.next_token.as_deref(), |i| {
                if keep(i, false) {
                    if out.len() == limit {
                        more = true;
                        return false;
                    }
                    out.push(view(i));
                }
                true
            });
            let token = if more {
                out.last().map(|v| v.id.clone())
            } else {
                None
            };
            Ok((out, token))
        })?
    }
}

#[cfg(test)]
mod tests;
