//! Instance option actions: the CPU credits of burstable instances
//! (DescribeInstanceCreditSpecifications, ModifyInstanceCreditSpecification) and
//! GetInstanceUefiData, parsed and rendered as botocore's model shapes them.

use std::sync::Arc;

use engine::instances::credits::{CreditChange, CreditChangeResult};
use engine::query::{Filter, Page};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One instance option request, typed.
#[derive(Debug, Clone)]
pub enum InstanceOptionAction {
    /// DescribeInstanceCreditSpecifications.
    Describe {
        /// InstanceId.N
        ids: Vec<String>,
        /// Filter.N (`instance-id`)
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// ModifyInstanceCreditSpecification.
    Modify(Vec<CreditChange>),
    /// GetInstanceUefiData (InstanceId).
    UefiData(String),
}

impl InstanceOptionAction {
    /// Parses an instance option action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<InstanceOptionAction>> {
        Ok(Some(match name {
            "DescribeInstanceCreditSpecifications" => InstanceOptionAction::Describe {
                ids: p.list("InstanceId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "ModifyInstanceCreditSpecification" => {
                let prefix = "InstanceCreditSpecification";
                let mut changes = Vec::new();
                for i in p.indexes(prefix)? {
                    changes.push(CreditChange {
                        instance_id: p.string(&format!("{prefix}.{i}.InstanceId")).ok_or_else(
                            || Ec2Error::missing(&format!("{prefix}.{i}.InstanceId")),
                        )?,
                        cpu_credits: p.string(&format!("{prefix}.{i}.CpuCredits")),
                    });
                }
                InstanceOptionAction::Modify(changes)
            }
            "GetInstanceUefiData" => InstanceOptionAction::UefiData(p.required("InstanceId")?),
            _ => return Ok(None),
        }))
    }
}

/// Executes an instance option action, writing the response body into `x`.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: InstanceOptionAction,
) -> Ec2Result<()> {
    match action {
        InstanceOptionAction::Describe { ids, filters, page } => {
            let (items, next) =
                cloud.describe_instance_credit_specifications(caller, &ids, &filters, &page)?;
            x.list("instanceCreditSpecificationSet", &items, |x, c| {
                x.text("instanceId", &c.instance_id)
                    .text("cpuCredits", &c.cpu_credits);
            })
            .opt("nextToken", next);
        }
        InstanceOptionAction::Modify(changes) => {
            let results = cloud.modify_instance_credit_specification(caller, &changes)?;
            let done: Vec<&String> = results
                .iter()
                .filter_map(|r| match r {
                    CreditChangeResult::Done(id) => Some(id),
                    CreditChangeResult::Failed(..) => None,
                })
                .collect();
            let failed: Vec<(&String, &String, &String)> = results
                .iter()
                .filter_map(|r| match r {
                    CreditChangeResult::Failed(id, code, message) => Some((id, code, message)),
                    CreditChangeResult::Done(_) => None,
                })
                .collect();
            x.list(
                "successfulInstanceCreditSpecificationSet",
                &done,
                |x, id| {
                    x.text("instanceId", id);
                },
            );
            x.list(
                "unsuccessfulInstanceCreditSpecificationSet",
                &failed,
                |x, (id, code, message)| {
                    x.text("instanceId", id).elem("error", |x| {
                        x.text("code", code).text("message", message);
                    });
                },
            );
        }
        InstanceOptionAction::UefiData(id) => {
            let data = cloud.instance_uefi_data(caller, &id)?;
            x.text("instanceId", &id).opt("uefiData", data);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_modify_entries() {
        let p = Params::parse(&[b"InstanceCreditSpecification.1.InstanceId=i-1&\
InstanceCreditSpecification.1.CpuCredits=standard&InstanceCreditSpecification.2.InstanceId=i-2"])
        .unwrap();
        let Some(InstanceOptionAction::Modify(changes)) =
            InstanceOptionAction::parse("ModifyInstanceCreditSpecification", &p).unwrap()
        else {
            panic!("not a Modify")
        };
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].cpu_credits.as_deref(), Some("standard"));
        assert_eq!(changes[1].instance_id, "i-2");
        assert_eq!(changes[1].cpu_credits, None);
        let p = Params::parse(&[b"InstanceCreditSpecification.1.CpuCredits=standard"]).unwrap();
        let e = InstanceOptionAction::parse("ModifyInstanceCreditSpecification", &p).unwrap_err();
        assert_eq!(e.code, "MissingParameter");
    }
}
