//! CPU credit options of burstable (T family) instances: `standard` or `unlimited`, chosen at
//! launch (`CreditSpecification.CpuCredits`) or by ModifyInstanceCreditSpecification, read by
//! DescribeInstanceCreditSpecifications. EC2's defaults: T2 `standard`, T3/T3a/T4g
//! `unlimited`. openami records the option (its machines are not throttled either way).

use super::types::instance_type;
use super::{doc_of, encode};
use crate::query::{Filter, Page};
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// The credit option an instance of `type_name` gets when none is asked for; `None` for
/// types that are not burstable.
pub fn default_cpu_credits(type_name: &str) -> Option<&'static str> {
    let family = type_name.split('.').next().unwrap_or_default();
    match family {
        "t2" => Some("standard"),
        "t3" | "t3a" | "t4g" => Some("unlimited"),
        _ => None,
    }
}

/// A CPU credit option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuCredits {
    /// `standard`: the baseline plus earned credits.
    Standard,
    /// `unlimited`: bursts beyond the earned credits.
    Unlimited,
}

impl CpuCredits {
    /// `standard` or `unlimited` (any case), else `InvalidParameterValue`.
    pub fn parse(value: &str) -> Ec2Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "standard" => Ok(CpuCredits::Standard),
            "unlimited" => Ok(CpuCredits::Unlimited),
            _ => Err(Ec2Error::invalid_value(format!(
                "Value ({value}) for parameter CpuCredits is invalid. Expected 'standard' or 'unlimited'."
            ))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuCredits::Standard => "standard",
            CpuCredits::Unlimited => "unlimited",
        }
    }
}

/// Checks a requested credit option against an instance type (only burstable types take
/// one). Returns the value to record.
pub fn check_cpu_credits(
    type_name: &str,
    requested: Option<CpuCredits>,
) -> Ec2Result<Option<String>> {
    let Some(value) = requested else {
        return Ok(None);
    };
    if default_cpu_credits(type_name).is_none() {
        return Err(Ec2Error::client(
            "InvalidParameterCombination",
            format!(
                "The parameter CreditSpecification is not supported for {type_name} instances."
            ),
        ));
    }
    Ok(Some(value.as_str().to_string()))
}

/// One instance's credit option, as DescribeInstanceCreditSpecifications returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceCredits {
    /// Instance id.
    pub instance_id: String,
    /// `standard` or `unlimited`.
    pub cpu_credits: String,
}

/// One `InstanceCreditSpecification.N` of ModifyInstanceCreditSpecification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreditChange {
    /// `InstanceId`.
    pub instance_id: String,
    /// `CpuCredits`.
    pub cpu_credits: Option<String>,
}

/// The outcome for one instance of ModifyInstanceCreditSpecification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreditChangeResult {
    /// Changed.
    Done(String),
    /// Not changed: (instance id, error code, message).
    Failed(String, String, String),
}

impl Cloud {
    /// DescribeInstanceCreditSpecifications: the burstable instances among the caller's
    /// (not terminated ones), or among `ids`; filter `instance-id`.
    pub fn describe_instance_credit_specifications(
        &self,
        caller: &Caller,
        ids: &[String],
        filters: &[Filter],
        page: &Page,
    ) -> Ec2Result<(Vec<InstanceCredits>, Option<String>)> {
        if let Some(f) = filters.iter().find(|f| f.name != "instance-id") {
            return Err(Ec2Error::client(
                "InvalidParameterValue",
                format!("The filter '{}' is invalid", f.name),
            ));
        }
        let (views, next) = self.describe_instances(caller, ids, filters, page)?;
        let out = views
            .into_iter()
            .filter(|v| v.state != "terminated")
            .filter_map(|v| {
                let default = default_cpu_credits(&v.doc.instance_type)?;
                Some(InstanceCredits {
                    instance_id: v.id,
                    cpu_credits: v.doc.cpu_credits.unwrap_or_else(|| default.to_string()),
                })
            })
            .collect();
        Ok((out, next))
    }

    /// ModifyInstanceCreditSpecification: each instance separately; failures are reported
    /// per instance, as EC2 does.
    pub fn modify_instance_credit_specification(
        &self,
        caller: &Caller,
        changes: &[CreditChange],
    ) -> Ec2Result<Vec<CreditChangeResult>> {
        if changes.is_empty() {
            return Err(Ec2Error::missing("InstanceCreditSpecification"));
        }
        let _t = super::lifecycle::lock_transitions();
        let mut out = Vec::new();
        for change in changes {
            let result = (|| -> Ec2Result<()> {
                let row = self.owned_instance(caller, &change.instance_id)?;
                if row.state == "terminated" || row.state == "shutting-down" {
                    return Err(Ec2Error::client(
                        "IncorrectInstanceState",
                        format!("The instance '{}' is {}.", row.id, row.state),
                    ));
                }
                let mut d = doc_of(&row)?;
                let itype = instance_type(&d.instance_type)?;
                let requested = change.cpu_credits.as_deref().map(CpuCredits::parse);
                let Some(value) = check_cpu_credits(itype.name, requested.transpose()?)? else {
                    return Err(Ec2Error::missing("CpuCredits"));
                };
                d.cpu_credits = Some(value);
                self.catalog
                    .update_resource(&row.id, &row.state, &encode(&d)?)?;
                Ok(())
            })();
            out.push(match result {
                Ok(()) => CreditChangeResult::Done(change.instance_id.clone()),
                Err(e) if e.status >= 500 => return Err(e),
                Err(e) => CreditChangeResult::Failed(change.instance_id.clone(), e.code, e.message),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_by_family() {
        assert_eq!(default_cpu_credits("t2.micro"), Some("standard"));
        assert_eq!(default_cpu_credits("t3.micro"), Some("unlimited"));
        assert_eq!(default_cpu_credits("t3a.large"), Some("unlimited"));
        assert_eq!(default_cpu_credits("m5.large"), None);
    }

    #[test]
    fn checks_requested_credits() {
        assert_eq!(check_cpu_credits("t3.micro", None).unwrap(), None);
        let standard = CpuCredits::parse("Standard").unwrap();
        assert_eq!(
            check_cpu_credits("t3.micro", Some(standard))
                .unwrap()
                .as_deref(),
            Some("standard")
        );
        let e = CpuCredits::parse("fast").unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        let e = check_cpu_credits("m5.large", Some(CpuCredits::Unlimited)).unwrap_err();
        assert_eq!(e.code, "InvalidParameterCombination");
    }
}
