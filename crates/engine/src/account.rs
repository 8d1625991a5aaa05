//! Account-wide EC2 settings: DescribeAccountAttributes and GetEbsEncryptionByDefault.
//!
//! The values are what this server really does, not AWS's defaults: `max-instances` is
//! the host's capacity (`--max-instances`), Elastic IPs are limited to 5 per region, and
//! EBS data is not encrypted at rest, so encryption by default is off.

use crate::vpc::MAX_GROUPS_PER_INTERFACE;
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// The attribute names DescribeAccountAttributes knows, in the order it lists them.
pub const ACCOUNT_ATTRIBUTES: &[&str] = &[
    "supported-platforms",
    "default-vpc",
    "max-instances",
    "vpc-max-security-groups-per-interface",
    "max-elastic-ips",
    "vpc-max-elastic-ips",
];

impl Cloud {
    /// DescribeAccountAttributes: `(name, values)` for `names` (all when empty). An unknown
    /// name is `InvalidParameterValue`.
    pub fn describe_account_attributes(
        &self,
        caller: &Caller,
        names: &[String],
    ) -> Ec2Result<Vec<(&'static str, Vec<String>)>> {
        for n in names {
            if !ACCOUNT_ATTRIBUTES.contains(&n.as_str()) {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({n}) for parameter attributeName is invalid. Valid values: {}",
                    ACCOUNT_ATTRIBUTES.join(", ")
                )));
            }
        }
        let mut out = Vec::new();
        for &name in ACCOUNT_ATTRIBUTES {
            if !names.is_empty() && !names.iter().any(|n| n == name) {
                continue;
            }
            let values = match name {
                "supported-platforms" => vec!["VPC".to_string()],
                "default-vpc" => {
                    self.ensure_default_vpc(caller)?;
                    vec![
                        self.default_vpc(caller)?
                            .map_or_else(|| "none".to_string(), |(id, _)| id),
                    ]
                }
                "max-instances" => vec![self.compute_config().max_instances.to_string()],
                "vpc-max-security-groups-per-interface" => {
                    vec![MAX_GROUPS_PER_INTERFACE.to_string()]
                }
                _ => vec![crate::instances::elastic_ips::MAX_PER_REGION.to_string()],
            };
            out.push((name, values));
        }
        Ok(out)
    }

    /// GetEbsEncryptionByDefault: always false (volumes are not encrypted at rest here).
    pub fn ebs_encryption_by_default(&self, caller: &Caller) -> Ec2Result<bool> {
        self.region(&caller.region)?;
        Ok(false)
    }
}
