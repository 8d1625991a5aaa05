//! Allowed AMIs actions: GetAllowedImagesSettings, Enable/DisableAllowedImagesSettings and
//! ReplaceImageCriteriaInAllowedImagesSettings, parsed and rendered as botocore's model
//! shapes them (engine::images::AllowedImages holds the rules).

use std::sync::Arc;

use engine::images::ImageCriterion;
use engine::{Caller, Cloud, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One Allowed AMIs request, typed.
#[derive(Debug, Clone)]
pub enum AllowedImagesAction {
    /// GetAllowedImagesSettings.
    Get,
    /// EnableAllowedImagesSettings (AllowedImagesSettingsState) or
    /// DisableAllowedImagesSettings (`disabled`).
    SetState(String),
    /// ReplaceImageCriteriaInAllowedImagesSettings.
    ReplaceCriteria(Vec<ImageCriterion>),
}

impl AllowedImagesAction {
    /// Parses an Allowed AMIs action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<AllowedImagesAction>> {
        Ok(Some(match name {
            "GetAllowedImagesSettings" => AllowedImagesAction::Get,
            "EnableAllowedImagesSettings" => {
                let state = p.required("AllowedImagesSettingsState")?;
                if state == "disabled" {
                    return Err(engine::Ec2Error::invalid_value(
                        "Value (disabled) for parameter AllowedImagesSettingsState is invalid. Valid values: enabled, audit-mode",
                    ));
                }
                AllowedImagesAction::SetState(state)
            }
            "DisableAllowedImagesSettings" => AllowedImagesAction::SetState("disabled".into()),
            "ReplaceImageCriteriaInAllowedImagesSettings" => {
                let mut criteria = Vec::new();
                for i in p.indexes("ImageCriterion")? {
                    let c = p.with_prefix(&format!("ImageCriterion.{i}."));
                    criteria.push(ImageCriterion {
                        image_providers: c.list("ImageProvider")?,
                        marketplace_product_codes: c.list("MarketplaceProductCode")?,
                        image_names: c.list("ImageName")?,
                        max_days_since_deprecated: c
                            .int("DeprecationTimeCondition.MaximumDaysSinceDeprecated")?,
                        max_days_since_created: c
                            .int("CreationDateCondition.MaximumDaysSinceCreated")?,
                    });
                }
                AllowedImagesAction::ReplaceCriteria(criteria)
            }
            _ => return Ok(None),
        }))
    }
}

/// Executes an Allowed AMIs action, writing the response body into `x`.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: AllowedImagesAction,
) -> Ec2Result<()> {
    match action {
        AllowedImagesAction::Get => {
            let settings = cloud.allowed_images(caller)?;
            x.text("state", &settings.state)
                .list("imageCriterionSet", &settings.criteria, |x, c| {
                    // Only the conditions the criterion sets, as AWS answers.
                    for (name, values) in [
                        ("imageProviderSet", &c.image_providers),
                        ("marketplaceProductCodeSet", &c.marketplace_product_codes),
                        ("imageNameSet", &c.image_names),
                    ] {
                        if !values.is_empty() {
                            x.list(name, values, |x, v| {
                                x.text_only(v);
                            });
                        }
                    }
                    if let Some(days) = c.max_days_since_deprecated {
                        x.elem("deprecationTimeCondition", |x| {
                            x.text("maximumDaysSinceDeprecated", &days.to_string());
                        });
                    }
                    if let Some(days) = c.max_days_since_created {
                        x.elem("creationDateCondition", |x| {
                            x.text("maximumDaysSinceCreated", &days.to_string());
                        });
                    }
                })
                .text("managedBy", "account");
        }
        AllowedImagesAction::SetState(state) => {
            let state = cloud.set_allowed_images_state(caller, &state)?;
            x.text("allowedImagesSettingsState", &state);
        }
        AllowedImagesAction::ReplaceCriteria(criteria) => {
            cloud.replace_image_criteria(caller, criteria)?;
            x.text("return", "true");
        }
    }
    Ok(())
}
