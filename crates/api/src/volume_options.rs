//! Volume actions beyond the basic four: DescribeVolumesModifications,
//! DescribeVolumeStatus, DescribeVolumeAttribute and ModifyVolumeAttribute, parsed and
//! rendered as botocore's model shapes them. [`modification`] also renders ModifyVolume's
//! answer.

use std::sync::Arc;

use engine::query::{Filter, Page, iso8601};
use engine::volumes::{VolumeAttribute, VolumeModification};
use engine::{Caller, Cloud, Ec2Error, Ec2Result};

use crate::params::Params;
use crate::xml::Xml;

/// One volume option request, typed.
#[derive(Debug, Clone)]
pub enum VolumeOptionAction {
    /// DescribeVolumesModifications.
    Modifications {
        /// VolumeId.N
        ids: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// DescribeVolumeStatus.
    Status {
        /// VolumeId.N
        ids: Vec<String>,
        /// Filter.N
        filters: Vec<Filter>,
        /// MaxResults / NextToken
        page: Page,
    },
    /// DescribeVolumeAttribute.
    DescribeAttribute {
        /// VolumeId
        volume_id: String,
        /// Attribute
        attribute: VolumeAttribute,
    },
    /// ModifyVolumeAttribute.
    ModifyAttribute {
        /// VolumeId
        volume_id: String,
        /// AutoEnableIO.Value
        auto_enable_io: bool,
    },
}

impl VolumeOptionAction {
    /// Parses a volume option action, or `None` if `name` is not one.
    pub fn parse(name: &str, p: &Params) -> Ec2Result<Option<VolumeOptionAction>> {
        Ok(Some(match name {
            "DescribeVolumesModifications" => VolumeOptionAction::Modifications {
                ids: p.list("VolumeId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "DescribeVolumeStatus" => VolumeOptionAction::Status {
                ids: p.list("VolumeId")?,
                filters: p.filters()?,
                page: p.page()?,
            },
            "DescribeVolumeAttribute" => VolumeOptionAction::DescribeAttribute {
                volume_id: p.required("VolumeId")?,
                attribute: VolumeAttribute::parse(&p.required("Attribute")?)?,
            },
            "ModifyVolumeAttribute" => VolumeOptionAction::ModifyAttribute {
                volume_id: p.required("VolumeId")?,
                auto_enable_io: p
                    .bool("AutoEnableIO.Value")?
                    .ok_or_else(|| Ec2Error::missing("AutoEnableIO"))?,
            },
            _ => return Ok(None),
        }))
    }
}

/// Writes one `VolumeModification` (ModifyVolume's `volumeModification`, an item of
/// DescribeVolumesModifications' `volumeModificationSet`).
pub fn modification(x: &mut Xml, m: &VolumeModification) {
    let (o, t) = (&m.record.original, &m.record.target);
    x.text("volumeId", &m.volume_id)
        .text("modificationState", m.state())
        .text("targetSize", &t.size_gib.to_string())
        .opt("targetIops", t.iops)
        .text("targetVolumeType", &t.volume_type)
        .opt("targetThroughput", t.throughput)
        .text("targetMultiAttachEnabled", &t.multi_attach.to_string())
        .text("originalSize", &o.size_gib.to_string())
        .opt("originalIops", o.iops)
        .text("originalVolumeType", &o.volume_type)
        .opt("originalThroughput", o.throughput)
        .text("originalMultiAttachEnabled", &o.multi_attach.to_string())
        .text("progress", "100")
        .text("startTime", &iso8601(m.record.start_time_ms))
        .text("endTime", &iso8601(m.record.end_time_ms));
}

/// Executes a volume option action, writing the response body into `x`.
pub fn execute(
    x: &mut Xml,
    cloud: &Arc<Cloud>,
    caller: &Caller,
    action: VolumeOptionAction,
) -> Ec2Result<()> {
    match action {
        VolumeOptionAction::Modifications { ids, filters, page } => {
            let (items, next) =
                cloud.describe_volumes_modifications(caller, &ids, &filters, &page)?;
            x.list("volumeModificationSet", &items, modification)
                .opt("nextToken", next);
        }
        VolumeOptionAction::Status { ids, filters, page } => {
            let (items, next) = cloud.describe_volume_status(caller, &ids, &filters, &page)?;
            x.list("volumeStatusSet", &items, |x, s| {
                x.text("volumeId", &s.volume_id)
                    .text("availabilityZone", &s.availability_zone)
                    .elem("volumeStatus", |x| {
                        x.text("status", s.status);
                        let details = [
                            ("io-enabled", s.io_enabled),
                            ("io-performance", s.io_performance()),
                        ];
                        x.list("details", &details, |x, (name, status)| {
                            x.text("name", name).text("status", status);
                        });
                    })
                    .list("eventsSet", &[] as &[()], |_, _| {})
                    .list("actionsSet", &[] as &[()], |_, _| {});
            })
            .opt("nextToken", next);
        }
        VolumeOptionAction::DescribeAttribute {
            volume_id,
            attribute,
        } => {
            let auto_enable_io = cloud.describe_volume_attribute(caller, &volume_id)?;
            x.text("volumeId", &volume_id);
            match attribute {
                VolumeAttribute::AutoEnableIo => {
                    x.elem("autoEnableIO", |x| {
                        x.text("value", &auto_enable_io.to_string());
                    });
                }
                VolumeAttribute::ProductCodes => {
                    x.list("productCodes", &[] as &[()], |_, _| {});
                }
            }
        }
        VolumeOptionAction::ModifyAttribute {
            volume_id,
            auto_enable_io,
        } => {
            cloud.modify_volume_attribute(caller, &volume_id, auto_enable_io)?;
            x.text("return", "true");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_the_attribute_requests() {
        let p = Params::parse(&[b"VolumeId=vol-1&Attribute=autoEnableIO"]).unwrap();
        assert!(matches!(
            VolumeOptionAction::parse("DescribeVolumeAttribute", &p).unwrap(),
            Some(VolumeOptionAction::DescribeAttribute {
                attribute: VolumeAttribute::AutoEnableIo,
                ..
            })
        ));
        let p = Params::parse(&[b"VolumeId=vol-1&Attribute=size"]).unwrap();
        let e = VolumeOptionAction::parse("DescribeVolumeAttribute", &p).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        let p = Params::parse(&[b"VolumeId=vol-1&AutoEnableIO.Value=true"]).unwrap();
        assert!(matches!(
            VolumeOptionAction::parse("ModifyVolumeAttribute", &p).unwrap(),
            Some(VolumeOptionAction::ModifyAttribute {
                auto_enable_io: true,
                ..
            })
        ));
        let p = Params::parse(&[b"VolumeId=vol-1"]).unwrap();
        let e = VolumeOptionAction::parse("ModifyVolumeAttribute", &p).unwrap_err();
        assert_eq!(e.code, "MissingParameter");
        let p = Params::parse(&[b"VolumeId=vol-1&AutoEnableIO.Value=maybe"]).unwrap();
        assert!(VolumeOptionAction::parse("ModifyVolumeAttribute", &p).is_err());
    }
}
