//! Launch template versions: CreateLaunchTemplateVersion, DescribeLaunchTemplateVersions
//! and DeleteLaunchTemplateVersions, and how `$Latest`, `$Default` and numbers name them.

use catalog::now_ms;

use super::{
    CHANGES, LaunchTemplateData, LaunchTemplateView, TemplateRef, VersionDoc, check_description,
};
use crate::query::{Filter, Filterable, Page, check_filters, iso8601, matches};
use crate::{Caller, Cloud, Ec2Error, Ec2Result, lock};

/// Most versions a template may have (EC2's quota).
const MAX_VERSIONS: usize = 10_000;

/// One version as DescribeLaunchTemplateVersions returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionView {
    /// `lt-…` id.
    pub template_id: String,
    /// The template's name.
    pub template_name: String,
    /// Who created the template.
    pub created_by: String,
    /// True for the template's default version.
    pub default_version: bool,
    /// The version.
    pub version: VersionDoc,
}

impl VersionView {
    fn of(t: &LaunchTemplateView, v: &VersionDoc) -> Self {
        VersionView {
            template_id: t.id.clone(),
            template_name: t.doc.name.clone(),
            created_by: t.doc.created_by.clone(),
            default_version: v.number == t.doc.default_version,
            version: v.clone(),
        }
    }

    fn sort_key(&self) -> String {
        format!("{}/{:019}", self.template_id, self.version.number)
    }
}

fn yes_no(b: Option<bool>) -> Vec<String> {
    b.map(|b| vec![b.to_string()]).unwrap_or_default()
}

impl Filterable for VersionView {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let d = &self.version.data;
        let m = &d.metadata_options;
        Some(match name {
            "create-time" => vec![iso8601(self.version.create_time_ms)],
            "ebs-optimized" => yes_no(d.ebs_optimized),
            "image-id" => d.image_id.iter().cloned().collect(),
            "instance-type" => d.instance_type.iter().cloned().collect(),
            "is-default-version" => vec![self.default_version.to_string()],
            "http-endpoint" => m.http_endpoint.iter().cloned().collect(),
            "http-tokens" => m.http_tokens.iter().cloned().collect(),
            "http-put-response-hop-limit" => m
                .http_put_response_hop_limit
                .map(|n| n.to_string())
                .into_iter()
                .collect(),
            "instance-metadata-tags" => m.instance_metadata_tags.iter().cloned().collect(),
            _ => return None,
        })
    }

    fn tags(&self) -> &[(String, String)] {
        &[]
    }
}

/// CreateLaunchTemplateVersion parameters.
#[derive(Clone, Debug, Default)]
pub struct CreateLaunchTemplateVersion {
    /// The template.
    pub template: TemplateRef,
    /// `SourceVersion`: the version whose data the new one starts from.
    pub source_version: Option<String>,
    /// `VersionDescription`.
    pub version_description: Option<String>,
    /// `LaunchTemplateData` (overrides the source's fields).
    pub data: LaunchTemplateData,
    /// `ClientToken`: a retry with the same token returns the version it created.
    pub client_token: Option<String>,
}

/// DescribeLaunchTemplateVersions parameters.
#[derive(Clone, Debug, Default)]
pub struct DescribeLaunchTemplateVersions {
    /// The template (none: `$Latest`/`$Default` of every template).
    pub template: TemplateRef,
    /// `LaunchTemplateVersion.N`.
    pub versions: Vec<String>,
    /// `MinVersion`.
    pub min_version: Option<String>,
    /// `MaxVersion`.
    pub max_version: Option<String>,
    /// `Filter.N`.
    pub filters: Vec<Filter>,
    /// `MaxResults` / `NextToken`.
    pub page: Page,
}

/// The outcome of DeleteLaunchTemplateVersions for one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedVersion {
    /// `lt-…` id.
    pub template_id: String,
    /// The template's name.
    pub template_name: String,
    /// The version number (0 if the given version was not a number).
    pub number: i64,
    /// `None` on success, else (error code, message).
    pub error: Option<(String, String)>,
}

fn version_not_found(t: &LaunchTemplateView, v: &str) -> Ec2Error {
    Ec2Error::client(
        "InvalidLaunchTemplateId.VersionNotFound",
        format!(
            "Could not find launch template version {v} for the launch template with ID {}",
            t.id
        ),
    )
}

/// The number a version string names (`$Latest`, `$Default` or a number) in `t`.
pub(crate) fn resolve_version(t: &LaunchTemplateView, v: &str) -> Ec2Result<i64> {
    let number = match v {
        "$Latest" => t.doc.latest_version(),
        "$Default" => t.doc.default_version,
        n => n.parse::<i64>().map_err(|_| {
            Ec2Error::client(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!("The version '{n}' is not valid: use a number, $Latest or $Default"),
            )
        })?,
    };
    if t.doc.versions.iter().any(|x| x.number == number) {
        Ok(number)
    } else {
        Err(version_not_found(t, v))
    }
}

impl Cloud {
    /// CreateLaunchTemplateVersion: the next version, from `SourceVersion`'s data with the
    /// given data over it (or from the given data alone).
    pub fn create_launch_template_version(
        &self,
        caller: &Caller,
        req: CreateLaunchTemplateVersion,
    ) -> Ec2Result<VersionView> {
        check_description(&req.version_description)?;
        req.data.check()?;
        let _changes = lock(&CHANGES);
        let mut t = self.launch_template(caller, &req.template)?;
        let token = req.client_token.filter(|t| !t.is_empty());
        if let Some(done) = t
            .doc
            .versions
            .iter()
            .find(|v| token.is_some() && v.client_token == token)
        {
            return Ok(VersionView::of(&t, done));
        }
        if t.doc.versions.len() >= MAX_VERSIONS {
            return Err(Ec2Error::client(
                "VersionLimitExceeded",
                "The launch template has too many versions",
            ));
        }
        let data = match &req.source_version {
            Some(source) => {
                let n = resolve_version(&t, source)?;
                let base = t
                    .doc
                    .versions
                    .iter()
                    .find(|v| v.number == n)
                    .map(|v| v.data.clone())
                    .unwrap_or_default();
                base.overridden_by(&req.data)
            }
            None => req.data,
        };
        let number = t.doc.last_number + 1;
        let version = VersionDoc {
            number,
            description: req.version_description,
            create_time_ms: now_ms(),
            data,
            client_token: token,
        };
        t.doc.last_number = number;
        t.doc.versions.push(version.clone());
        self.store_launch_template(&t)?;
        Ok(VersionView::of(&t, &version))
    }

    /// DescribeLaunchTemplateVersions.
    pub fn describe_launch_template_versions(
        &self,
        caller: &Caller,
        req: &DescribeLaunchTemplateVersions,
    ) -> Ec2Result<(Vec<VersionView>, Option<String>)> {
        check_filters(&req.filters)?;
        let mut page = req.page.clone();
        page.check(1, 200, false)?;
        let named = req.template.id.is_some() || req.template.name.is_some();
        let templates = if named {
            vec![self.launch_template(caller, &req.template)?]
        } else {
            if req.versions.is_empty()
                || req
                    .versions
                    .iter()
                    .any(|v| v != "$Latest" && v != "$Default")
            {
                return Err(Ec2Error::client(
                    "MissingParameter",
                    "The request must contain the parameter launchTemplateName or launchTemplateId, unless only $Latest or $Default versions are asked for",
                ));
            }
            let mut all = self.launch_template_rows(caller)?;
            all.sort_by(|a, b| a.id.cmp(&b.id));
            all
        };
        let parse_bound = |t: &LaunchTemplateView, b: &Option<String>| -> Ec2Result<Option<i64>> {
            b.as_deref()
                .map(|s| match s {
                    "$Latest" => Ok(t.doc.latest_version()),
                    "$Default" => Ok(t.doc.default_version),
                    n => n.parse::<i64>().map_err(|_| {
                        Ec2Error::invalid_value(format!("The version bound '{n}' is not a number"))
                    }),
                })
                .transpose()
        };
        let mut out = Vec::new();
        for t in &templates {
            let wanted: Vec<i64> = req
                .versions
                .iter()
                .map(|v| resolve_version(t, v))
                .collect::<Ec2Result<_>>()?;
            let min = parse_bound(t, &req.min_version)?;
            let max = parse_bound(t, &req.max_version)?;
            for v in &t.doc.versions {
                if (!wanted.is_empty() && !wanted.contains(&v.number))
                    || min.is_some_and(|m| v.number < m)
                    || max.is_some_and(|m| v.number > m)
                {
                    continue;
                }
                let view = VersionView::of(t, v);
                if matches(&view, &req.filters)? {
                    out.push(view);
                }
            }
        }
        out.sort_by_key(VersionView::sort_key);
        let keyed: Vec<(String, VersionView)> =
            out.into_iter().map(|v| (v.sort_key(), v)).collect();
        let (page_items, token) = page.apply(keyed, |(k, _)| k.as_str());
        Ok((page_items.into_iter().map(|(_, v)| v).collect(), token))
    }

    /// DeleteLaunchTemplateVersions: each version is deleted or reported with its error
    /// (the default version cannot be deleted).
    pub fn delete_launch_template_versions(
        &self,
        caller: &Caller,
        r: &TemplateRef,
        versions: &[String],
    ) -> Ec2Result<Vec<DeletedVersion>> {
        if versions.is_empty() {
            return Err(Ec2Error::missing("LaunchTemplateVersion"));
        }
        let _changes = lock(&CHANGES);
        let mut t = self.launch_template(caller, r)?;
        let mut out = Vec::new();
        for v in versions {
            let mut item = DeletedVersion {
                template_id: t.id.clone(),
                template_name: t.doc.name.clone(),
                number: v.parse().unwrap_or(0),
                error: None,
            };
            match v.parse::<i64>() {
                Ok(n) if n == t.doc.default_version => {
                    item.error = Some((
                        "unexpectedError".into(),
                        "Cannot delete the default version of a launch template. Set another version as the default first, or delete the launch template.".into(),
                    ));
                }
                Ok(n) if t.doc.versions.iter().any(|x| x.number == n) => {
                    t.doc.versions.retain(|x| x.number != n);
                }
                _ => {
                    item.error = Some((
                        "launchTemplateVersionDoesNotExist".into(),
                        "The specified launch template version does not exist.".into(),
                    ));
                }
            }
            out.push(item);
        }
        self.store_launch_template(&t)?;
        Ok(out)
    }
}
