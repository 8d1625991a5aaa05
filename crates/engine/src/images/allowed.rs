//! Allowed AMIs: an account's rule, per region, for which other accounts' images it may
//! discover and launch (Get/Enable/DisableAllowedImagesSettings,
//! ReplaceImageCriteriaInAllowedImagesSettings).
//!
//! - `disabled` (the default): no effect; DescribeImages reports no `ImageAllowed`.
//! - `audit-mode`: no effect either, but DescribeImages reports `ImageAllowed` for each
//!   image, saying whether `enabled` would let it through.
//! - `enabled`: DescribeImages leaves out images that match no criterion, and RunInstances
//!   treats them as absent.
//!
//! The account's own images are always allowed. An image is allowed when it matches any
//! criterion; a criterion matches when every condition it sets holds: its provider (the
//! owner alias `amazon`, `aws-marketplace` or `aws-backup-vault`, or the owner's account
//! id; `none` allows only the account's own), its name (wildcards `*` and `?`), a
//! marketplace product code, a creation no older than N days, and no deprecation or one
//! no older than N days. State and criteria are two settings (crate::settings): the
//! state's value, and the criteria as the other's JSON document.

use serde::{Deserialize, Serialize};

use super::ImageDoc;
use crate::query::wildcard_match;
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

const STATE: &str = "allowed-images-state";
const CRITERIA: &str = "allowed-images-criteria";
const DAY_MS: i64 = 86_400_000;

/// One criterion of Allowed AMIs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ImageCriterion {
    /// `amazon`, `aws-marketplace`, `aws-backup-vault`, account ids, or `none`.
    pub image_providers: Vec<String>,
    /// Marketplace product codes.
    pub marketplace_product_codes: Vec<String>,
    /// Image names (wildcards).
    pub image_names: Vec<String>,
    /// Deprecated at most this many days ago (or not deprecated).
    pub max_days_since_deprecated: Option<i64>,
    /// Created at most this many days ago.
    pub max_days_since_created: Option<i64>,
}

impl ImageCriterion {
    fn matches(&self, owner_id: &str, d: &ImageDoc, now_ms: i64) -> bool {
        let provider = self.image_providers.is_empty()
            || self
                .image_providers
                .iter()
                .any(|p| p == owner_id || d.owner_alias.as_deref() == Some(p.as_str()));
        let name = self.image_names.is_empty()
            || self.image_names.iter().any(|n| wildcard_match(n, &d.name));
        let code = self.marketplace_product_codes.is_empty()
            || d.product_codes
                .iter()
                .any(|c| self.marketplace_product_codes.contains(&c.id));
        let created = self
            .max_days_since_created
            .is_none_or(|days| now_ms - d.creation_ms <= days * DAY_MS);
        let deprecated = self.max_days_since_deprecated.is_none_or(|days| {
            d.deprecation_ms
                .is_none_or(|t| t > now_ms || now_ms - t <= days * DAY_MS)
        });
        provider && name && code && created && deprecated
    }
}

/// The Allowed AMIs settings of an account in a region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedImages {
    /// `enabled`, `audit-mode` or `disabled`.
    pub state: String,
    /// The criteria.
    pub criteria: Vec<ImageCriterion>,
}

impl AllowedImages {
    /// Whether `caller` may discover and launch an image of `owner_id` under the criteria
    /// (whatever the state).
    pub fn allows(&self, caller: &Caller, owner_id: &str, doc: &ImageDoc, now_ms: i64) -> bool {
        owner_id == caller.account_id
            || self
                .criteria
                .iter()
                .any(|c| c.matches(owner_id, doc, now_ms))
    }

    /// `ImageAllowed` as DescribeImages reports it: only when the setting is on.
    pub fn reported(
        &self,
        caller: &Caller,
        owner_id: &str,
        doc: &ImageDoc,
        now_ms: i64,
    ) -> Option<bool> {
        (self.state != "disabled").then(|| self.allows(caller, owner_id, doc, now_ms))
    }

    /// Whether an image is hidden from `caller`: the state is `enabled` and the criteria
    /// do not allow it.
    pub fn hides(&self, caller: &Caller, owner_id: &str, doc: &ImageDoc, now_ms: i64) -> bool {
        self.state == "enabled" && !self.allows(caller, owner_id, doc, now_ms)
    }
}

impl Cloud {
    /// GetAllowedImagesSettings.
    pub fn allowed_images(&self, caller: &Caller) -> Ec2Result<AllowedImages> {
        let state = self
            .account_setting(STATE, &caller.account_id, &caller.region)?
            .unwrap_or_else(|| "disabled".to_string());
        let criteria =
            match self.account_setting_doc(CRITERIA, &caller.account_id, &caller.region)? {
                Some((_, doc)) => serde_json::from_str(&doc)
                    .map_err(|e| Ec2Error::internal("allowed images criteria", e))?,
                None => Vec::new(),
            };
        Ok(AllowedImages { state, criteria })
    }

    /// EnableAllowedImagesSettings (`enabled` or `audit-mode`) and
    /// DisableAllowedImagesSettings (`disabled`): the new state.
    pub fn set_allowed_images_state(&self, caller: &Caller, state: &str) -> Ec2Result<String> {
        self.region(&caller.region)?;
        if !["enabled", "audit-mode", "disabled"].contains(&state) {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({state}) for parameter AllowedImagesSettingsState is invalid. Valid values: enabled, audit-mode"
            )));
        }
        self.set_account_setting(caller, STATE, state)?;
        Ok(state.to_string())
    }

    /// ReplaceImageCriteriaInAllowedImagesSettings: at most 10 criteria and 200 providers
    /// in all; `none` only on its own; providers are the aliases or 12-digit account ids.
    pub fn replace_image_criteria(
        &self,
        caller: &Caller,
        criteria: Vec<ImageCriterion>,
    ) -> Ec2Result<()> {
        self.region(&caller.region)?;
        if criteria.len() > 10 {
            return Err(Ec2Error::invalid_value(
                "At most 10 image criteria can be specified.",
            ));
        }
        let providers: usize = criteria.iter().map(|c| c.image_providers.len()).sum();
        if providers > 200 {
            return Err(Ec2Error::invalid_value(
                "At most 200 image providers can be specified.",
            ));
        }
        for c in &criteria {
            for p in &c.image_providers {
                let known = ["amazon", "aws-marketplace", "aws-backup-vault", "none"]
                    .contains(&p.as_str())
                    || crate::ids::is_account_id(p);
                if !known {
                    return Err(Ec2Error::invalid_value(format!(
                        "Image provider '{p}' is not valid: use amazon, aws-marketplace, aws-backup-vault, none or a 12-digit account ID."
                    )));
                }
            }
            if c.image_providers.iter().any(|p| p == "none") && c.image_providers.len() > 1 {
                return Err(Ec2Error::invalid_value(
                    "When 'none' is specified as an image provider, no other providers can be specified.",
                ));
            }
            for days in [c.max_days_since_created, c.max_days_since_deprecated]
                .into_iter()
                .flatten()
            {
                if days < 0 {
                    return Err(Ec2Error::invalid_value(
                        "The number of days must be 0 or more.",
                    ));
                }
            }
        }
        let doc = serde_json::to_string(&criteria)
            .map_err(|e| Ec2Error::internal("allowed images criteria", e))?;
        self.set_account_setting_doc(caller, CRITERIA, "set", &doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::ProductCode;

    #[test]
    fn a_criterion_needs_every_condition_it_sets() {
        let now = 100 * DAY_MS;
        let mut doc = ImageDoc {
            name: "web-2".into(),
            creation_ms: now - 10 * DAY_MS,
            owner_alias: Some("amazon".into()),
            ..ImageDoc::default()
        };
        let c = |f: &dyn Fn(&mut ImageCriterion)| {
            let mut c = ImageCriterion::default();
            f(&mut c);
            c
        };
        let owner = "111111111111";
        assert!(c(&|c| c.image_providers = vec!["amazon".into()]).matches(owner, &doc, now));
        assert!(c(&|c| c.image_providers = vec![owner.into()]).matches(owner, &doc, now));
        assert!(
            !c(&|c| c.image_providers = vec!["aws-marketplace".into()]).matches(owner, &doc, now)
        );
        assert!(c(&|c| c.image_names = vec!["web-?".into()]).matches(owner, &doc, now));
        assert!(!c(&|c| c.image_names = vec!["db-*".into()]).matches(owner, &doc, now));
        assert!(c(&|c| c.max_days_since_created = Some(10)).matches(owner, &doc, now));
        assert!(!c(&|c| c.max_days_since_created = Some(9)).matches(owner, &doc, now));
        assert!(
            !c(&|c| c.marketplace_product_codes = vec!["abc".into()]).matches(owner, &doc, now)
        );
        doc.product_codes = vec![ProductCode {
            id: "abc".into(),
            kind: "marketplace".into(),
        }];
        assert!(c(&|c| c.marketplace_product_codes = vec!["abc".into()]).matches(owner, &doc, now));
        // Not deprecated, deprecated recently, deprecated long ago.
        let recent = c(&|c| c.max_days_since_deprecated = Some(5));
        assert!(recent.matches(owner, &doc, now));
        doc.deprecation_ms = Some(now - 3 * DAY_MS);
        assert!(recent.matches(owner, &doc, now));
        doc.deprecation_ms = Some(now - 6 * DAY_MS);
        assert!(!recent.matches(owner, &doc, now));
        // Both conditions of one criterion must hold.
        let both = c(&|c| {
            c.image_providers = vec!["amazon".into()];
            c.image_names = vec!["db-*".into()];
        });
        assert!(!both.matches(owner, &doc, now));
    }
}
