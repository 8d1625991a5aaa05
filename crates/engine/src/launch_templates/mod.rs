//! EC2 launch templates: CreateLaunchTemplate, DescribeLaunchTemplates,
//! ModifyLaunchTemplate, DeleteLaunchTemplate, their versions (`versions`),
//! GetLaunchTemplateData and RunInstances from a template (`launch`).
//!
//! A template is one catalog resource of kind `launch-template`, scoped to an account
//! and a region, its name unique there; its versions live in its document. Version
//! numbers grow from 1 and are never reused; `$Default` and `$Latest` name the default
//! and the highest existing version.

pub mod data;
pub mod launch;
pub mod versions;

use std::sync::Mutex;

use catalog::{ResourceRow, now_ms};
use serde::{Deserialize, Serialize};

use crate::query::{
    Filter, Filterable, Page, TagSpecification, check_filters, iso8601, matches, tags_for,
};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, ids, lock};
pub use data::LaunchTemplateData;

/// Catalog kind of launch templates.
pub const KIND: &str = "launch-template";

/// Serializes changes of templates (name checks, version numbering).
static CHANGES: Mutex<()> = Mutex::new(());

/// One version of a template.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionDoc {
    /// Version number (from 1).
    pub number: i64,
    /// `VersionDescription`.
    pub description: Option<String>,
    /// When it was created.
    pub create_time_ms: i64,
    /// The launch parameters.
    pub data: LaunchTemplateData,
    /// `ClientToken` of the call that created it.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// What the catalog keeps about a template.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LaunchTemplateDoc {
    /// `LaunchTemplateName`.
    pub name: String,
    /// When it was created.
    pub create_time_ms: i64,
    /// `arn:aws:iam::<account>:root`.
    pub created_by: String,
    /// The default version's number.
    pub default_version: i64,
    /// The last number given to a version.
    pub last_number: i64,
    /// Existing versions, ascending.
    pub versions: Vec<VersionDoc>,
    /// `ClientToken` of the CreateLaunchTemplate call.
    #[serde(default)]
    pub client_token: Option<String>,
}

impl LaunchTemplateDoc {
    /// The highest existing version number.
    pub fn latest_version(&self) -> i64 {
        self.versions
            .last()
            .map_or(self.default_version, |v| v.number)
    }
}

/// A template as the Describe calls return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplateView {
    /// `lt-…` id.
    pub id: String,
    /// Stored attributes.
    pub doc: LaunchTemplateDoc,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Filterable for LaunchTemplateView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "launch-template-name" => vec![self.doc.name.clone()],
            "create-time" => vec![iso8601(self.doc.create_time_ms)],
            _ => return None,
        })
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
}

/// Which template a request names: `LaunchTemplateId` or `LaunchTemplateName`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateRef {
    /// `LaunchTemplateId`.
    pub id: Option<String>,
    /// `LaunchTemplateName`.
    pub name: Option<String>,
}

/// CreateLaunchTemplate parameters.
#[derive(Clone, Debug, Default)]
pub struct CreateLaunchTemplate {
    /// `LaunchTemplateName`.
    pub name: String,
    /// `VersionDescription`.
    pub version_description: Option<String>,
    /// `LaunchTemplateData`.
    pub data: LaunchTemplateData,
    /// `TagSpecification.N` (`launch-template`).
    pub tag_specifications: Vec<TagSpecification>,
    /// `ClientToken`: a retry with the same token returns the template it created.
    pub client_token: Option<String>,
}

/// DescribeLaunchTemplates parameters.
#[derive(Clone, Debug, Default)]
pub struct DescribeLaunchTemplates {
    /// `LaunchTemplateId.N`.
    pub ids: Vec<String>,
    /// `LaunchTemplateName.N`.
    pub names: Vec<String>,
    /// `Filter.N`.
    pub filters: Vec<Filter>,
    /// `MaxResults` / `NextToken`.
    pub page: Page,
}

/// `InvalidLaunchTemplateId.NotFound`.
pub fn id_not_found(id: &str) -> Ec2Error {
    Ec2Error::client(
        "InvalidLaunchTemplateId.NotFound",
        format!("The specified launch template, with template ID {id}, does not exist."),
    )
}

pub(crate) fn name_not_found(name: &str) -> Ec2Error {
    Ec2Error::client(
        "InvalidLaunchTemplateName.NotFoundException",
        format!("The specified launch template, with template name {name}, does not exist."),
    )
}

/// Checks an `lt-` id's shape.
pub(crate) fn check_id(id: &str) -> Ec2Result<()> {
    if ids::is_valid("lt", id) {
        Ok(())
    } else {
        Err(Ec2Error::client(
            "InvalidLaunchTemplateId.Malformed",
            format!(
                "The specified ID for the launch template ({id}) is not valid. A launch template ID must be in the form lt-xxxxxxxxxxxxxxxxx."
            ),
        ))
    }
}

/// EC2's name rule: 3-128 characters of letters, digits, `(`, `)`, `.`, `-`, `/`, `_`.
fn check_name(name: &str) -> Ec2Result<()> {
    let ok = (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"()./-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Ec2Error::client(
            "InvalidLaunchTemplateName.MalformedException",
            format!(
                "The launch template name '{name}' is not valid. It must be 3 to 128 characters of letters, digits and ( ) . / - _."
            ),
        ))
    }
}

fn check_description(d: &Option<String>) -> Ec2Result<()> {
    if d.as_ref().is_some_and(|d| d.chars().count() > 255) {
        return Err(Ec2Error::invalid_value(
            "A version description can have at most 255 characters",
        ));
    }
    Ok(())
}

fn view(row: &ResourceRow, tags: Vec<(String, String)>) -> Ec2Result<LaunchTemplateView> {
    let doc: LaunchTemplateDoc = serde_json::from_str(&row.doc)
        .map_err(|e| Ec2Error::internal("launch template document", e))?;
    Ok(LaunchTemplateView {
        id: row.id.clone(),
        doc,
        tags,
    })
}

impl Cloud {
    /// The caller's templates in its region (without tags).
    fn launch_template_rows(&self, caller: &Caller) -> Ec2Result<Vec<LaunchTemplateView>> {
        self.owned_resources(caller, KIND)?
            .iter()
            .map(|row| view(row, Vec::new()))
            .collect()
    }

    /// The template a request names (by id or by name, not both), with its tags.
    pub(crate) fn launch_template(
        &self,
        caller: &Caller,
        r: &TemplateRef,
    ) -> Ec2Result<LaunchTemplateView> {
        let id = r.id.as_deref().filter(|s| !s.is_empty());
        let name = r.name.as_deref().filter(|s| !s.is_empty());
        let found = match (id, name) {
            (Some(_), Some(_)) => {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    "Only one of LaunchTemplateId or LaunchTemplateName may be specified",
                ));
            }
            (Some(id), None) => {
                check_id(id)?;
                let row = self
                    .owned_row(caller, KIND, id)?
                    .ok_or_else(|| id_not_found(id))?;
                view(&row, Vec::new())?
            }
            (None, Some(name)) => self
                .launch_template_rows(caller)?
                .into_iter()
                .find(|t| t.doc.name == name)
                .ok_or_else(|| name_not_found(name))?,
            (None, None) => {
                return Err(Ec2Error::client(
                    "MissingParameter",
                    "The request must contain the parameter launchTemplateName or launchTemplateId",
                ));
            }
        };
        let tags = self.catalog.tags(&found.id)?;
        Ok(LaunchTemplateView { tags, ..found })
    }

    fn store_launch_template(&self, t: &LaunchTemplateView) -> Ec2Result<()> {
        let doc = serde_json::to_string(&t.doc)
            .map_err(|e| Ec2Error::internal("launch template document", e))?;
        self.catalog.update_resource(&t.id, "available", &doc)?;
        Ok(())
    }

    /// CreateLaunchTemplate: a new template whose version 1 is the default.
    pub fn create_launch_template(
        &self,
        caller: &Caller,
        req: CreateLaunchTemplate,
    ) -> Ec2Result<LaunchTemplateView> {
        check_name(&req.name)?;
        check_description(&req.version_description)?;
        req.data.check()?;
        let tags = tags_for(&req.tag_specifications, "launch-template")?;
        let _changes = lock(&CHANGES);
        let existing = self.launch_template_rows(caller)?;
        if let Some(token) = req.client_token.as_deref().filter(|t| !t.is_empty())
            && let Some(same) = existing
                .iter()
                .find(|t| t.doc.client_token.as_deref() == Some(token))
        {
            if same.doc.name != req.name {
                return Err(Ec2Error::client(
                    "IdempotentParameterMismatch",
                    "The client token was already used with other parameters",
                ));
            }
            let tags = self.catalog.tags(&same.id)?;
            return Ok(LaunchTemplateView {
                tags,
                ..same.clone()
            });
        }
        if existing.iter().any(|t| t.doc.name == req.name) {
            return Err(Ec2Error::client(
                "InvalidLaunchTemplateName.AlreadyExistsException",
                format!("Launch template name already in use: '{}'", req.name),
            ));
        }
        let now = now_ms();
        let doc = LaunchTemplateDoc {
            name: req.name,
            create_time_ms: now,
            created_by: format!("arn:aws:iam::{}:root", caller.account_id),
            default_version: 1,
            last_number: 1,
            versions: vec![VersionDoc {
                number: 1,
                description: req.version_description,
                create_time_ms: now,
                data: req.data,
                client_token: None,
            }],
            client_token: req.client_token.filter(|t| !t.is_empty()),
        };
        let row = ResourceRow {
            id: ids::new_id("lt"),
            kind: KIND.into(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            state: "available".into(),
            doc: serde_json::to_string(&doc)
                .map_err(|e| Ec2Error::internal("launch template document", e))?,
            created_at_ms: now,
        };
        self.catalog.insert_resource_with_tags(&row, &tags)?;
        Ok(LaunchTemplateView {
            id: row.id,
            doc,
            tags,
        })
    }

    /// DescribeLaunchTemplates: the caller's templates in its region, by id; an id or
    /// name asked for that does not exist is an error.
    pub fn describe_launch_templates(
        &self,
        caller: &Caller,
        req: &DescribeLaunchTemplates,
    ) -> Ec2Result<(Vec<LaunchTemplateView>, Option<String>)> {
        check_filters(&req.filters)?;
        let mut page = req.page.clone();
        page.check(1, 200, !req.ids.is_empty() || !req.names.is_empty())?;
        for id in &req.ids {
            check_id(id)?;
        }
        let all = self.launch_template_rows(caller)?;
        for id in &req.ids {
            if !all.iter().any(|t| &t.id == id) {
                return Err(id_not_found(id));
            }
        }
        for name in &req.names {
            if !all.iter().any(|t| &t.doc.name == name) {
                return Err(name_not_found(name));
            }
        }
        let all_tags = self.catalog.all_tags()?;
        let mut out = Vec::new();
        for mut t in all {
            if (!req.ids.is_empty() && !req.ids.contains(&t.id))
                || (!req.names.is_empty() && !req.names.contains(&t.doc.name))
            {
                continue;
            }
            t.tags = all_tags.get(&t.id).cloned().unwrap_or_default();
            if matches(&t, &req.filters)? {
                out.push(t);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(page.apply(out, |t| t.id.as_str()))
    }

    /// ModifyLaunchTemplate: sets the default version (`SetDefaultVersion`).
    pub fn modify_launch_template(
        &self,
        caller: &Caller,
        r: &TemplateRef,
        default_version: Option<&str>,
    ) -> Ec2Result<LaunchTemplateView> {
        let _changes = lock(&CHANGES);
        let mut t = self.launch_template(caller, r)?;
        if let Some(v) = default_version {
            let number = versions::resolve_version(&t, v)?;
            t.doc.default_version = number;
            self.store_launch_template(&t)?;
        }
        Ok(t)
    }

    /// DeleteLaunchTemplate: the template and all its versions.
    pub fn delete_launch_template(
        &self,
        caller: &Caller,
        r: &TemplateRef,
    ) -> Ec2Result<LaunchTemplateView> {
        let _changes = lock(&CHANGES);
        let t = self.launch_template(caller, r)?;
        self.catalog.clear_tags(&t.id)?;
        self.catalog.delete_resource(&t.id)?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        check_name("web-app_v1.(x)/y").unwrap();
        assert!(check_name("ab").is_err());
        assert!(check_name("has space").is_err());
        check_id("lt-0123456789abcdef0").unwrap();
        assert_eq!(
            check_id("lt-xyz").unwrap_err().code,
            "InvalidLaunchTemplateId.Malformed"
        );
    }
}
