//! Targets: RegisterTargets, DeregisterTargets and DescribeTargetHealth (health comes from
//! the data plane; the control plane answers for targets the data plane does not know yet
//! and for ids that are not registered).

use std::net::Ipv4Addr;

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};
use engine::query::Page;

use crate::Elb;
use crate::model::{TargetDoc, engine_caller};

/// One answer of DescribeTargetHealth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthRow {
    /// Target id.
    pub id: String,
    /// Port.
    pub port: u16,
    /// Zone given at registration.
    pub zone: Option<String>,
    /// The port health checks use.
    pub health_check_port: String,
    /// State.
    pub state: String,
    /// Reason code.
    pub reason: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// A target as requests name it: (id, port, zone).
pub type TargetSpec = (String, Option<u16>, Option<String>);

fn parse_targets(p: &Params) -> QueryResult<Vec<TargetSpec>> {
    let mut out = Vec::new();
    for t in p.structs("Targets")? {
        let id = t.required("Id")?;
        let port = t.int_in("Port", 1, 65535)?.map(|n| n as u16);
        out.push((id, port, t.string("AvailabilityZone")));
    }
    Ok(out)
}

fn invalid(message: String) -> QueryError {
    QueryError::new("InvalidTarget", message)
}

impl Elb {
    /// Checks and registers targets (what RegisterTargets and Auto Scaling do).
    pub(crate) fn register(
        &self,
        caller: &Caller,
        arn: &str,
        targets: &[TargetSpec],
    ) -> QueryResult<()> {
        if targets.is_empty() {
            return Err(QueryError::missing("Targets"));
        }
        let _g = self.guard();
        let mut tg = self.tg(caller, arn)?;
        let vpc_cidr = self.cloud.vpc_cidr(&tg.doc.vpc_id).ok();
        let mut not_running = Vec::new();
        for (id, _, _) in targets {
            if tg.doc.target_type == "instance" {
                let ec = engine_caller(caller);
                let found = self
                    .cloud
                    .describe_instances(&ec, std::slice::from_ref(id), &[], &Page::default())
                    .ok()
                    .and_then(|(v, _)| v.into_iter().next());
                let Some(view) = found else {
                    return Err(invalid(format!(
                        "The following targets are not valid instances: '{id}'"
                    )));
                };
                if view.state != "running" {
                    not_running.push(format!("'{id}'"));
                    continue;
                }
                let vpc = view.doc.network.as_ref().map(|n| n.vpc_id.as_str());
                if vpc != Some(tg.doc.vpc_id.as_str()) {
                    return Err(invalid(format!(
                        "The following targets are not in the target group VPC '{}': '{id}'",
                        tg.doc.vpc_id
                    )));
                }
            } else {
                let ip: Ipv4Addr = id.parse().map_err(|_| {
                    invalid(format!("The IP address '{id}' is not a valid IPv4 address"))
                })?;
                let inside = vpc_cidr
                    .as_deref()
                    .and_then(|c| engine::vpc::Cidr::parse(c, false))
                    .is_some_and(|c| c.contains_ip(ip));
                if !ip.is_loopback() && !inside {
                    return Err(invalid(format!(
                        "The IP address '{id}' is not within the CIDR of the target group's VPC '{}' (openami also accepts 127.0.0.0/8)",
                        tg.doc.vpc_id
                    )));
                }
            }
        }
        if !not_running.is_empty() {
            return Err(invalid(format!(
                "The following targets are not in a running state and cannot be registered: {}",
                not_running.join(", ")
            )));
        }
        for (id, port, zone) in targets {
            let port = port.unwrap_or(tg.doc.port);
            if !tg.doc.targets.iter().any(|t| &t.id == id && t.port == port) {
                tg.doc.targets.push(TargetDoc {
                    id: id.clone(),
                    port,
                    zone: zone.clone(),
                });
            }
        }
        self.update(arn, &tg.row.state, &tg.doc)?;
        Ok(())
    }

    /// Deregisters targets (a port of `None` removes every registration of the id).
    pub(crate) fn deregister(
        &self,
        caller: &Caller,
        arn: &str,
        targets: &[(String, Option<u16>)],
    ) -> QueryResult<()> {
        if targets.is_empty() {
            return Err(QueryError::missing("Targets"));
        }
        let _g = self.guard();
        let mut tg = self.tg(caller, arn)?;
        tg.doc.targets.retain(|t| {
            !targets
                .iter()
                .any(|(id, port)| *id == t.id && port.is_none_or(|p| p == t.port))
        });
        self.update(arn, &tg.row.state, &tg.doc)?;
        Ok(())
    }

    /// Health of a group's targets: the registered and draining ones, or exactly `only`.
    pub(crate) fn health(
        &self,
        caller: &Caller,
        arn: &str,
        only: Option<&[(String, Option<u16>)]>,
    ) -> QueryResult<Vec<HealthRow>> {
        let tg = self.tg(caller, arn)?;
        let in_use = !self.tg_load_balancers(caller, arn)?.is_empty();
        let plane = self.plane.target_health(arn);
        let hc_port = |port: u16| {
            if tg.doc.health_check.port == "traffic-port" {
                port.to_string()
            } else {
                tg.doc.health_check.port.clone()
            }
        };
        let row_of = |id: &str, port: u16, zone: Option<String>| -> HealthRow {
            let mut row = HealthRow {
                id: id.to_string(),
                port,
                zone,
                health_check_port: hc_port(port),
                state: "initial".into(),
                reason: Some("Elb.RegistrationInProgress".into()),
                description: Some("Target registration is in progress".into()),
            };
            if let Some(h) = plane.iter().find(|h| h.id == id && h.port == port) {
                row.state = h.state.as_str().to_string();
                row.reason = h.reason.clone();
                row.description = h.description.clone();
            } else if !in_use {
                row.state = "unused".into();
                row.reason = Some("Target.NotInUse".into());
                row.description = Some(
                    "Target group is not configured to receive traffic from the load balancer"
                        .into(),
                );
            }
            row
        };
        let registered = |id: &str, port: Option<u16>| {
            tg.doc
                .targets
                .iter()
                .filter(|t| t.id == id && port.is_none_or(|p| p == t.port))
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut out = Vec::new();
        match only {
            Some(wanted) => {
                for (id, port) in wanted {
                    let regs = registered(id, *port);
                    if !regs.is_empty() {
                        out.extend(regs.into_iter().map(|t| row_of(&t.id, t.port, t.zone)));
                        continue;
                    }
                    let draining: Vec<_> = plane
                        .iter()
                        .filter(|h| &h.id == id && port.is_none_or(|p| p == h.port))
                        // Removed targets the data plane still drains (not ones it has
                        // not been told about yet).
                        .filter(|h| h.state == balancer::HealthState::Draining)
                        .collect();
                    if !draining.is_empty() {
                        out.extend(draining.into_iter().map(|h| row_of(&h.id, h.port, None)));
                        continue;
                    }
                    let port = port.unwrap_or(tg.doc.port);
                    out.push(HealthRow {
                        id: id.clone(),
                        port,
                        zone: None,
                        health_check_port: hc_port(port),
                        state: "unused".into(),
                        reason: Some("Target.NotRegistered".into()),
                        description: Some("Target is not registered to the target group".into()),
                    });
                }
            }
            None => {
                for t in &tg.doc.targets {
                    out.push(row_of(&t.id, t.port, t.zone.clone()));
                }
                for h in &plane {
                    if h.state == balancer::HealthState::Draining
                        && !tg
                            .doc
                            .targets
                            .iter()
                            .any(|t| t.id == h.id && t.port == h.port)
                    {
                        out.push(row_of(&h.id, h.port, None));
                    }
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn register_targets(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("TargetGroupArn")?;
        self.register(caller, &arn, &parse_targets(p)?)?;
        Ok(String::new())
    }

    pub(crate) fn deregister_targets(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("TargetGroupArn")?;
        let targets: Vec<_> = parse_targets(p)?
            .into_iter()
            .map(|(i, p, _)| (i, p))
            .collect();
        self.deregister(caller, &arn, &targets)?;
        Ok(String::new())
    }

    pub(crate) fn describe_target_health(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let arn = p.required("TargetGroupArn")?;
        let targets: Vec<_> = parse_targets(p)?
            .into_iter()
            .map(|(i, p, _)| (i, p))
            .collect();
        let rows = self.health(caller, &arn, (!targets.is_empty()).then_some(&targets[..]))?;
        let mut x = Xml::new();
        x.members("TargetHealthDescriptions", &rows, |x, r| {
            x.elem("Target", |x| {
                x.text("Id", &r.id).text("Port", &r.port.to_string());
                x.opt("AvailabilityZone", r.zone.as_deref());
            })
            .text("HealthCheckPort", &r.health_check_port)
            .elem("TargetHealth", |x| {
                x.text("State", &r.state)
                    .opt("Reason", r.reason.as_deref())
                    .opt("Description", r.description.as_deref());
            });
        });
        Ok(x.finish())
    }
}
