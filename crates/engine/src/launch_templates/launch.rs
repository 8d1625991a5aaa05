//! Launching from a template: RunInstances' `LaunchTemplate` (the template's data fills
//! what the request leaves unset; the instances carry the `aws:ec2launchtemplate:id` and
//! `aws:ec2launchtemplate:version` tags, as on EC2), and GetLaunchTemplateData.

use super::TemplateRef;
use super::data::LaunchTemplateData;
use super::versions::resolve_version;
use crate::instances::{InstanceView, RunInstances};
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// RunInstances' `LaunchTemplate`: `LaunchTemplateId` or `LaunchTemplateName`, and
/// `Version` (default `$Default`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchTemplateSpecification {
    /// The template.
    pub template: TemplateRef,
    /// `Version`.
    pub version: Option<String>,
}

/// The template version instances were launched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchedFrom {
    /// `lt-…` id.
    pub template_id: String,
    /// Version number.
    pub version: i64,
}

/// Tag key of the template id on instances launched from a template.
pub const ID_TAG: &str = "aws:ec2launchtemplate:id";
/// Tag key of the template version on instances launched from a template.
pub const VERSION_TAG: &str = "aws:ec2launchtemplate:version";

impl Cloud {
    /// Fills a RunInstances request from the template version `spec` names; explicit
    /// parameters of the request win, field by field, and tag specifications are
    /// merged. An image id is required from one or the other.
    pub fn apply_launch_template(
        &self,
        caller: &Caller,
        req: RunInstances,
        spec: &LaunchTemplateSpecification,
    ) -> Ec2Result<(RunInstances, LaunchedFrom)> {
        let t = self.launch_template(caller, &spec.template)?;
        let asked = spec.version.as_deref().filter(|v| !v.is_empty());
        let number = resolve_version(&t, asked.unwrap_or("$Default"))?;
        let data = t
            .doc
            .versions
            .iter()
            .find(|v| v.number == number)
            .map(|v| v.data.clone())
            .unwrap_or_default();
        let req = data.fill(req)?;
        if req.image_id.is_empty() {
            return Err(Ec2Error::client(
                "MissingParameter",
                "The request must contain the parameter ImageId",
            ));
        }
        Ok((
            req,
            LaunchedFrom {
                template_id: t.id,
                version: number,
            },
        ))
    }

    /// Tags instances just launched from a template with its id and version (these
    /// `aws:` tags cannot be set by callers).
    pub fn tag_launched_from_template(
        &self,
        views: &mut [InstanceView],
        from: &LaunchedFrom,
    ) -> Ec2Result<()> {
        let tags = [
            (ID_TAG.to_string(), from.template_id.clone()),
            (VERSION_TAG.to_string(), from.version.to_string()),
        ];
        for v in views {
            self.catalog.set_tags(&v.id, &tags)?;
            v.tags.retain(|(k, _)| k != ID_TAG && k != VERSION_TAG);
            v.tags.extend(tags.iter().cloned());
        }
        Ok(())
    }

    /// GetLaunchTemplateData: the launch parameters of one of the caller's instances.
    pub fn get_launch_template_data(
        &self,
        caller: &Caller,
        instance_id: &str,
    ) -> Ec2Result<LaunchTemplateData> {
        let (views, _) = self.describe_instances(
            caller,
            &[instance_id.to_string()],
            &[],
            &crate::query::Page::default(),
        )?;
        let view = views.into_iter().next().ok_or_else(|| {
            Ec2Error::client(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{instance_id}' does not exist"),
            )
        })?;
        let volume_ids: Vec<String> = view
            .doc
            .block_devices
            .iter()
            .map(|d| d.volume_id.clone())
            .collect();
        let volumes = if volume_ids.is_empty() {
            Vec::new()
        } else {
            self.describe_volumes(caller, &volume_ids, &[], &crate::query::Page::default())
                .map(|(vs, _)| {
                    vs.into_iter()
                        .map(|v| (v.id, v.doc.size_gib, v.doc.volume_type))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(LaunchTemplateData::of_instance(&view, &volumes))
    }
}
