//! Tags of every ELBv2 resource (AddTags, RemoveTags, DescribeTags), the static
//! describes (DescribeSSLPolicies, DescribeAccountLimits) and the clear error of the
//! operations openami does not have.

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};

use crate::Elb;
use crate::model::{
    LB_KIND, LISTENER_KIND, RULE_KIND, TG_KIND, db, lb_not_found, listener_not_found,
    rule_not_found, tg_not_found,
};

/// Model operations openami answers with `UnsupportedOperation`.
pub const KNOWN_UNSUPPORTED: &[&str] = &[
    "AddListenerCertificates",
    "RemoveListenerCertificates",
    "AddTrustStoreRevocations",
    "CreateTrustStore",
    "DeleteSharedTrustStoreAssociation",
    "DeleteTrustStore",
    "DescribeTrustStoreAssociations",
    "DescribeTrustStoreRevocations",
    "DescribeTrustStores",
    "GetResourcePolicy",
    "GetTrustStoreCaCertificatesBundle",
    "GetTrustStoreRevocationContent",
    "ModifyCapacityReservation",
    "ModifyIpPools",
    "ModifyTrustStore",
    "RemoveTrustStoreRevocations",
];

/// `UnsupportedOperation` for a model operation openami does not implement.
pub fn unsupported(action: &str) -> QueryError {
    QueryError::new(
        "UnsupportedOperation",
        format!(
            "{action} is not supported by openami (no certificates, trust stores, capacity reservations or IPAM)"
        ),
    )
}

/// At most 50 tags, keys 1–128 characters not starting with `aws:`, values ≤ 256.
pub fn check_tags(tags: &[(String, String)]) -> QueryResult<()> {
    if tags.len() > 50 {
        return Err(QueryError::new(
            "TooManyTags",
            "You've reached the limit on the number of tags per resource (50)",
        ));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(QueryError::validation(format!(
                "Tag key '{k}' must be 1 to 128 characters and its value at most 256"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(QueryError::validation(format!(
                "Tag key '{k}' cannot start with 'aws:'"
            )));
        }
        if tags[..i].iter().any(|(o, _)| o == k) {
            return Err(QueryError::new(
                "DuplicateTagKeys",
                format!("Tag key '{k}' is duplicated"),
            ));
        }
    }
    Ok(())
}

fn not_found_for(arn: &str) -> QueryError {
    let rest = arn.splitn(6, ':').nth(5).unwrap_or("");
    if rest.starts_with("targetgroup/") {
        tg_not_found()
    } else if rest.starts_with("listener-rule/") {
        rule_not_found()
    } else if rest.starts_with("listener/") {
        listener_not_found()
    } else if rest.starts_with("loadbalancer/") {
        lb_not_found()
    } else {
        QueryError::validation(format!("'{arn}' is not a valid resource ARN"))
    }
}

impl Elb {
    /// Checks that `arn` names one of the caller's resources.
    fn check_resource(&self, caller: &Caller, arn: &str) -> QueryResult<()> {
        match self.catalog().resource(arn).map_err(db)? {
            Some(row)
                if [LB_KIND, TG_KIND, LISTENER_KIND, RULE_KIND].contains(&row.kind.as_str())
                    && row.account_id == caller.account_id
                    && row.region == caller.region =>
            {
                Ok(())
            }
            _ => {
                // The default rule has no row: it is its listener's.
                let is_default = self
                    .list::<crate::model::ListenerDoc>(caller, LISTENER_KIND)?
                    .iter()
                    .any(|l| l.doc.default_rule_arn == arn);
                if is_default {
                    Ok(())
                } else {
                    Err(not_found_for(arn))
                }
            }
        }
    }

    pub(crate) fn add_tags(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arns = p.strings("ResourceArns")?;
        if arns.is_empty() {
            return Err(QueryError::missing("ResourceArns"));
        }
        let tags = p.tags("Tags")?;
        if tags.is_empty() {
            return Err(QueryError::missing("Tags"));
        }
        check_tags(&tags)?;
        let _g = self.guard();
        for arn in &arns {
            self.check_resource(caller, arn)?;
            let mut keys: Vec<String> = self
                .catalog()
                .tags(arn)
                .map_err(db)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            keys.extend(tags.iter().map(|(k, _)| k.clone()));
            keys.sort();
            keys.dedup();
            if keys.len() > 50 {
                return Err(QueryError::new(
                    "TooManyTags",
                    "You've reached the limit on the number of tags per resource (50)",
                ));
            }
        }
        for arn in &arns {
            self.catalog().set_tags(arn, &tags).map_err(db)?;
        }
        Ok(String::new())
    }

    pub(crate) fn remove_tags(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arns = p.strings("ResourceArns")?;
        if arns.is_empty() {
            return Err(QueryError::missing("ResourceArns"));
        }
        let keys = p.strings("TagKeys")?;
        let _g = self.guard();
        for arn in &arns {
            self.check_resource(caller, arn)?;
        }
        let pairs: Vec<(String, Option<String>)> = keys.into_iter().map(|k| (k, None)).collect();
        for arn in &arns {
            self.catalog().delete_tags(arn, &pairs).map_err(db)?;
        }
        Ok(String::new())
    }

    pub(crate) fn describe_tags(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arns = p.strings("ResourceArns")?;
        if arns.is_empty() {
            return Err(QueryError::missing("ResourceArns"));
        }
        if arns.len() > 20 {
            return Err(QueryError::validation(
                "At most 20 resource ARNs can be described at once",
            ));
        }
        let mut out = Vec::new();
        for arn in &arns {
            self.check_resource(caller, arn)?;
            out.push((arn.clone(), self.catalog().tags(arn).map_err(db)?));
        }
        let mut x = Xml::new();
        x.members("TagDescriptions", &out, |x, (arn, tags)| {
            x.text("ResourceArn", arn);
            x.members("Tags", tags, |x, (k, v)| {
                x.text("Key", k).text("Value", v);
            });
        });
        Ok(x.finish())
    }
}

/// DescribeSSLPolicies: AWS's default policy (listed for reference; openami has no TLS
/// listeners).
pub fn describe_ssl_policies(p: &Params) -> QueryResult<String> {
    const NAME: &str = "ELBSecurityPolicy-2016-08";
    let names = p.strings("Names")?;
    if let Some(n) = names.iter().find(|n| n.as_str() != NAME) {
        return Err(QueryError::new(
            "SSLPolicyNotFound",
            format!("SSL policy '{n}' not found"),
        ));
    }
    let protocols = ["TLSv1", "TLSv1.1", "TLSv1.2"];
    let ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    ];
    let mut x = Xml::new();
    x.members("SslPolicies", &[NAME], |x, name| {
        let protos: Vec<String> = protocols.iter().map(|s| s.to_string()).collect();
        x.strings("SslProtocols", &protos);
        x.members(
            "Ciphers",
            &ciphers.iter().enumerate().collect::<Vec<_>>(),
            |x, (i, c)| {
                x.text("Name", c).text("Priority", &(i + 1).to_string());
            },
        );
        x.text("Name", name);
        x.strings(
            "SupportedLoadBalancerTypes",
            &["application".to_string(), "network".to_string()],
        );
    });
    Ok(x.finish())
}

/// DescribeAccountLimits: the limits openami enforces (and AWS's defaults for the rest).
pub fn describe_account_limits(_p: &Params) -> QueryResult<String> {
    let limits = [
        ("application-load-balancers", "50"),
        ("network-load-balancers", "50"),
        ("target-groups", "3000"),
        ("listeners-per-application-load-balancer", "50"),
        ("listeners-per-network-load-balancer", "50"),
        ("rules-per-application-load-balancer", "100"),
        ("targets-per-application-load-balancer", "1000"),
        ("targets-per-network-load-balancer", "500"),
        (
            "targets-per-availability-zone-per-network-load-balancer",
            "500",
        ),
        ("target-groups-per-application-load-balancer", "100"),
        ("target-groups-per-action-on-application-load-balancer", "5"),
        ("condition-values-per-alb-rule", "5"),
        ("condition-wildcards-per-alb-rule", "5"),
        ("certificates-per-application-load-balancer", "0"),
        ("certificates-per-network-load-balancer", "0"),
    ];
    let mut x = Xml::new();
    x.members("Limits", &limits, |x, (n, m)| {
        x.text("Name", n).text("Max", m);
    });
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_arns() {
        check_tags(&[("a".into(), "b".into())]).unwrap();
        assert_eq!(
            check_tags(&[("a".into(), "1".into()), ("a".into(), "2".into())])
                .unwrap_err()
                .code,
            "DuplicateTagKeys"
        );
        assert!(check_tags(&[("aws:x".into(), "1".into())]).is_err());
        let a =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/0123456789abcdef";
        assert_eq!(not_found_for(a).code, "TargetGroupNotFound");
        let r = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/x/1/2/3";
        assert_eq!(not_found_for(r).code, "RuleNotFound");
        assert!(
            describe_ssl_policies(&Params::from_pairs([]))
                .unwrap()
                .contains("ELBSecurityPolicy-2016-08")
        );
    }
}
