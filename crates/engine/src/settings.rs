//! Per-account, per-region settings (block public access for AMIs and for snapshots),
//! each a catalog row of kind [`KIND`] whose state is the setting's value:
//!
//! ```text
//! id     <name>:<account id>:<region>     e.g. snapshot-block-public-access:123456789012:us-east-1
//! kind   account-setting
//! state  the value                        e.g. block-all-sharing
//! doc    {} or the setting's details     e.g. the Allowed AMIs criteria
//! ```

use catalog::{ResourceRow, now_ms};

use crate::{Caller, Cloud, Ec2Result};

/// Catalog kind of settings.
pub const KIND: &str = "account-setting";

fn setting_id(name: &str, account_id: &str, region: &str) -> String {
    format!("{name}:{account_id}:{region}")
}

impl Cloud {
    /// The value of setting `name` of an account in a region, if it was ever set.
    pub(crate) fn account_setting(
        &self,
        name: &str,
        account_id: &str,
        region: &str,
    ) -> Ec2Result<Option<String>> {
        Ok(self
            .catalog
            .resource(&setting_id(name, account_id, region))?
            .map(|r| r.state))
    }

    /// The value and document of setting `name`, if it was ever set.
    pub(crate) fn account_setting_doc(
        &self,
        name: &str,
        account_id: &str,
        region: &str,
    ) -> Ec2Result<Option<(String, String)>> {
        Ok(self
            .catalog
            .resource(&setting_id(name, account_id, region))?
            .map(|r| (r.state, r.doc)))
    }

    /// Sets setting `name` of the caller's account in its region.
    pub(crate) fn set_account_setting(
        &self,
        caller: &Caller,
        name: &str,
        value: &str,
    ) -> Ec2Result<()> {
        self.set_account_setting_doc(caller, name, value, "{}")
    }

    /// Sets setting `name` of the caller's account in its region, with a document.
    pub(crate) fn set_account_setting_doc(
        &self,
        caller: &Caller,
        name: &str,
        value: &str,
        doc: &str,
    ) -> Ec2Result<()> {
        let id = setting_id(name, &caller.account_id, &caller.region);
        if !self.catalog.update_resource(&id, value, doc)? {
            let row = ResourceRow {
                id: id.clone(),
                kind: KIND.into(),
                account_id: caller.account_id.clone(),
                region: caller.region.clone(),
                state: value.into(),
                doc: doc.into(),
                created_at_ms: now_ms(),
            };
            if let Err(e) = self.catalog.insert_resource(&row) {
                // Lost a race with another request: update instead.
                if !self.catalog.update_resource(&id, value, doc)? {
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}
