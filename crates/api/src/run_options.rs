//! RunInstances options that openami does not implement and that DescribeInstances reports
//! with fixed values (no hibernation, basic monitoring, no enclave, IP-based hostnames,
//! default auto-recovery, default tenancy): asking for anything else is refused with
//! `UnsupportedOperation` instead of being dropped silently. The defaults themselves (which
//! clients such as the Terraform AWS provider always send) are accepted.

use engine::{Ec2Error, Ec2Result};

use crate::params::Params;

/// (parameter, the values accepted: the ones openami's instances have).
const FIXED: &[(&str, &[&str])] = &[
    ("HibernationOptions.Configured", &["false"]),
    ("Monitoring.Enabled", &["false"]),
    ("EnclaveOptions.Enabled", &["false"]),
    ("PrivateDnsNameOptions.HostnameType", &["ip-name"]),
    (
        "PrivateDnsNameOptions.EnableResourceNameDnsARecord",
        &["false"],
    ),
    (
        "PrivateDnsNameOptions.EnableResourceNameDnsAAAARecord",
        &["false"],
    ),
    ("MaintenanceOptions.AutoRecovery", &["default"]),
    ("Placement.Tenancy", &["default", ""]),
];

/// Refuses a RunInstances request that asks for an option openami's instances lack.
pub fn refuse_unsupported(p: &Params) -> Ec2Result<()> {
    for (name, accepted) in FIXED {
        if let Some(v) = p.get(name)
            && !accepted.contains(&v)
        {
            return Err(Ec2Error::client(
                "UnsupportedOperation",
                format!("{name}={v} is not supported by openami"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_pass_and_others_are_refused() {
        let p = Params::parse(&[
            b"HibernationOptions.Configured=false&Monitoring.Enabled=false\
&Placement.AvailabilityZone=&MaintenanceOptions.AutoRecovery=default",
        ])
        .unwrap();
        refuse_unsupported(&p).unwrap();
        for bad in [
            &b"HibernationOptions.Configured=true"[..],
            b"Monitoring.Enabled=true",
            b"PrivateDnsNameOptions.HostnameType=resource-name",
            b"Placement.Tenancy=dedicated",
        ] {
            let p = Params::parse(&[bad]).unwrap();
            assert_eq!(
                refuse_unsupported(&p).unwrap_err().code,
                "UnsupportedOperation"
            );
        }
    }
}
