//! Account-wide actions: DescribeAccountAttributes, GetEbsEncryptionByDefault,
//! DescribeInstanceTypeOfferings and block public access for snapshots
//! (Get/Enable/DisableSnapshotBlockPublicAccess), parsed and rendered as botocore's model
//! shapes them.

use std::sync::Arc;

use engine::query::{Filter, Page};
use engine::{Caller, Cloud, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One account-wide request, typed.
#[derive(Debug, Clone)]
pub enum AccountAction {
    /// DescribeAccountAttributes (AttributeName.N).
    Attributes(Vec<String>),
    /// GetEbsEncryptionByDefault.
    EbsEncryptionByDefault,
    /// GetSnapshotBlockPublicAccessState.
    SnapshotBlockPublicAccess,
    /// EnableSnapshotBlockPublicAccess (State), or DisableSnapshotBlockPublicAccess (None).
    SetSnapshotBlockPublicAccess(Option<String>),
    /// DescribeInstanceTypeOfferings.
    TypeOfferings {
        /// LocationType
        location_type: Option<String>,
        /// Filter.N (`instance-type`, `location`)
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
}

impl AccountAction {
    /// Parses an account-wide action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<AccountAction>> {
        Ok(Some(match name {
            "DescribeAccountAttributes" => AccountAction::Attributes(p.list("AttributeName")?),
            "GetEbsEncryptionByDefault" => AccountAction::EbsEncryptionByDefault,
            "GetSnapshotBlockPublicAccessState" => AccountAction::SnapshotBlockPublicAccess,
            "EnableSnapshotBlockPublicAccess" => {
                AccountAction::SetSnapshotBlockPublicAccess(Some(p.required("State")?))
            }
            "DisableSnapshotBlockPublicAccess" => AccountAction::SetSnapshotBlockPublicAccess(None),
            "DescribeInstanceTypeOfferings" => AccountAction::TypeOfferings {
                location_type: p.string("LocationType"),
                filters: p.filters()?,
                page: p.page()?,
            },
            _ => return Ok(None),
        }))
    }
}

/// Executes an account-wide action, writing the response body into `x`.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: AccountAction,
) -> Ec2Result<()> {
    match action {
        AccountAction::Attributes(names) => {
            let attributes = cloud.describe_account_attributes(caller, &names)?;
            x.list("accountAttributeSet", &attributes, |x, (name, values)| {
                x.text("attributeName", name)
                    .list("attributeValueSet", values, |x, v| {
                        x.text("attributeValue", v);
                    });
            });
        }
        AccountAction::EbsEncryptionByDefault => {
            let on = cloud.ebs_encryption_by_default(caller)?;
            x.text("ebsEncryptionByDefault", &on.to_string());
        }
        AccountAction::SnapshotBlockPublicAccess => {
            let state = cloud.snapshot_block_public_access_state(caller)?;
            x.text("state", &state).text("managedBy", "account");
        }
        AccountAction::SetSnapshotBlockPublicAccess(state) => {
            let state = match state {
                Some(s) => cloud.enable_snapshot_block_public_access(caller, &s)?,
                None => cloud.disable_snapshot_block_public_access(caller)?,
            };
            x.text("state", &state);
        }
        AccountAction::TypeOfferings {
            location_type,
            filters,
            page,
        } => {
            let (items, next) = engine::instances::describe_instance_type_offerings(
                &caller.region,
                location_type.as_deref(),
                &filters,
                &page,
            )?;
            x.list("instanceTypeOfferingSet", &items, |x, o| {
                x.text("instanceType", o.instance_type)
                    .text("locationType", o.location_type)
                    .text("location", &o.location);
            })
            .opt("nextToken", next);
        }
    }
    Ok(())
}
