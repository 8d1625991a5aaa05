//! The bridge to the `balancer` data plane: every call into `balancer::Balancer` is in
//! this module. [`Elb::resync`] rebuilds the whole [`balancer::Config`] from the catalog
//! and the engine's instance addresses and applies it; the resync thread runs it every
//! second and at once when an API call changed something.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use awsquery::Caller;
use balancer::{
    Action, Balancer, BindError, Condition, Config, HealthCheck, Listener, LoadBalancer, Protocol,
    Rule, Target, TargetGroup, TargetHealth,
};
use engine::query::Page;

use crate::Elb;
use crate::attributes;
use crate::listeners::listener_table;
use crate::load_balancers::lb_table;
use crate::model::{
    ActionDoc, ConditionDoc, LB_KIND, LISTENER_KIND, LbDoc, ListenerDoc, RULE_KIND, RuleDoc,
    Stored, TG_KIND, TgDoc, engine_caller,
};
use crate::target_groups::{deregistration_delay, tg_table};

/// How often the resync runs without being asked.
const PERIOD: Duration = Duration::from_secs(1);

/// The balancer and what the last resync told the engine.
pub struct DataPlane {
    balancer: Arc<Balancer>,
    groups: Mutex<Option<Vec<String>>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane").finish_non_exhaustive()
    }
}

impl DataPlane {
    /// A balancer running on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        DataPlane {
            balancer: Balancer::new(runtime),
            groups: Mutex::new(None),
        }
    }

    /// Health of a group's targets as the data plane sees them.
    pub fn target_health(&self, tg: &str) -> Vec<TargetHealth> {
        self.balancer.target_health(tg)
    }

    /// Requests forwarded to a group.
    pub fn requests(&self, tg: &str) -> u64 {
        self.balancer.requests(tg)
    }

    /// Closes every listener.
    pub fn shutdown(&self) {
        self.balancer.shutdown();
    }
}

/// The resync thread: runs until the service drops its sender or goes away.
pub fn resync_loop(elb: Weak<Elb>, rx: Receiver<()>) {
    loop {
        match rx.recv_timeout(PERIOD) {
            Ok(()) => while rx.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(elb) = elb.upgrade() else { return };
        let _ = elb.resync();
    }
}

/// Where the host reaches a running instance: (state, public address).
type InstanceAddrs = HashMap<String, (String, Option<Ipv4Addr>)>;

fn protocol(p: &str) -> Protocol {
    if p == "TCP" {
        Protocol::Tcp
    } else {
        Protocol::Http
    }
}

fn condition(c: &ConditionDoc) -> Condition {
    match c.field.as_str() {
        "path-pattern" => Condition::PathPattern(c.values.clone()),
        "host-header" => Condition::HostHeader(c.values.clone()),
        "http-header" => Condition::HttpHeader {
            name: c.header_name.clone().unwrap_or_default(),
            values: c.values.clone(),
        },
        "http-request-method" => Condition::Method(c.values.clone()),
        "query-string" => Condition::QueryString(c.query.clone()),
        _ => Condition::SourceIp(c.values.clone()),
    }
}

/// The terminal action of a rule (parse_actions keeps exactly one).
fn action(actions: &[ActionDoc]) -> Action {
    let Some(a) = actions.iter().find(|a| a.action_type != "authenticate") else {
        return fixed_503();
    };
    match a.action_type.as_str() {
        "forward" => {
            let groups = match &a.forward {
                Some(f) => f
                    .groups
                    .iter()
                    .map(|(t, w)| (t.clone(), u32::try_from(*w).unwrap_or(0)))
                    .collect(),
                None => a.target_groups().into_iter().map(|t| (t, 1)).collect(),
            };
            Action::Forward(groups)
        }
        "redirect" => {
            let r = a.redirect.clone().unwrap_or_default();
            Action::Redirect {
                protocol: r.protocol,
                host: r.host,
                port: r.port,
                path: r.path,
                query: r.query,
                status: if r.status_code == "HTTP_302" {
                    302
                } else {
                    301
                },
            }
        }
        "fixed-response" => {
            let f = a.fixed.clone().unwrap_or_default();
            Action::FixedResponse {
                status: f.status_code.parse().unwrap_or(503),
                content_type: f.content_type,
                body: f.message_body.unwrap_or_default(),
            }
        }
        _ => fixed_503(),
    }
}

fn fixed_503() -> Action {
    Action::FixedResponse {
        status: 503,
        content_type: None,
        body: String::new(),
    }
}

fn map_of(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

fn health_check(tg: &TgDoc) -> HealthCheck {
    let hc = &tg.health_check;
    HealthCheck {
        enabled: hc.enabled,
        protocol: protocol(&hc.protocol),
        port: hc.port.parse().ok(),
        path: hc.path.clone().unwrap_or_else(|| "/".into()),
        interval: Duration::from_secs(hc.interval.max(1) as u64),
        timeout: Duration::from_secs(hc.timeout.max(1) as u64),
        healthy_threshold: hc.healthy.max(1) as u32,
        unhealthy_threshold: hc.unhealthy.max(1) as u32,
        matcher: hc.matcher.clone().unwrap_or_else(|| "200-399".into()),
    }
}

fn target(tg: &TgDoc, id: &str, port: u16, instances: &InstanceAddrs) -> Target {
    let (addr, reason) = if tg.target_type == "ip" {
        match id.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_loopback() => (Some(ip), None),
            _ => (
                None,
                Some("Target is not reachable from the host (openami reaches ip targets in 127.0.0.0/8 only)".to_string()),
            ),
        }
    } else {
        match instances.get(id) {
            Some((state, Some(ip))) if state == "running" => (Some(*ip), None),
            Some((state, _)) if state != "running" => {
                (None, Some(format!("Target is in the {state} state")))
            }
            Some(_) => (
                None,
                Some("The instance has no public address for the host to reach it".to_string()),
            ),
            None => (None, Some("Target is in the terminated state".to_string())),
        }
    };
    Target {
        id: id.to_string(),
        port,
        addr,
        unreachable_reason: reason,
    }
}

/// The whole data-plane configuration from the stored documents.
pub fn build_config(
    lbs: &[Stored<LbDoc>],
    listeners: &[Stored<ListenerDoc>],
    rules: &[Stored<RuleDoc>],
    tgs: &[Stored<TgDoc>],
    instances: &InstanceAddrs,
) -> Config {
    let mut config = Config::default();
    for lb in lbs {
        let Some(addr) = crate::load_balancers::address(&lb.doc) else {
            continue;
        };
        let mut mine: Vec<&Stored<ListenerDoc>> = listeners
            .iter()
            .filter(|l| l.doc.load_balancer_arn == lb.row.id)
            .collect();
        mine.sort_by_key(|l| l.doc.port);
        let listeners = mine
            .into_iter()
            .map(|l| {
                let mut own: Vec<&Stored<RuleDoc>> = rules
                    .iter()
                    .filter(|r| r.doc.listener_arn == l.row.id)
                    .collect();
                own.sort_by_key(|r| r.doc.priority);
                let mut out: Vec<Rule> = if l.doc.protocol == "TCP" {
                    Vec::new()
                } else {
                    own.into_iter()
                        .map(|r| Rule {
                            id: r.row.id.clone(),
                            conditions: r.doc.conditions.iter().map(condition).collect(),
                            action: action(&r.doc.actions),
                        })
                        .collect()
                };
                out.push(Rule {
                    id: l.doc.default_rule_arn.clone(),
                    conditions: Vec::new(),
                    action: action(&l.doc.actions),
                });
                Listener {
                    id: l.row.id.clone(),
                    port: l.doc.port,
                    protocol: protocol(&l.doc.protocol),
                    rules: out,
                    attributes: map_of(attributes::effective(
                        listener_table(&l.doc),
                        &l.doc.attributes,
                    )),
                }
            })
            .collect();
        config.load_balancers.push(LoadBalancer {
            id: lb.row.id.clone(),
            addr,
            attributes: map_of(attributes::effective(lb_table(&lb.doc), &lb.doc.attributes)),
            listeners,
        });
    }
    for tg in tgs {
        config.target_groups.push(TargetGroup {
            id: tg.row.id.clone(),
            protocol: protocol(&tg.doc.protocol),
            health_check: health_check(&tg.doc),
            deregistration_delay: Duration::from_secs(deregistration_delay(&tg.doc)),
            targets: tg
                .doc
                .targets
                .iter()
                .map(|t| target(&tg.doc, &t.id, t.port, instances))
                .collect(),
            attributes: map_of(attributes::effective(tg_table(&tg.doc), &tg.doc.attributes)),
        });
    }
    config
}

/// The state a load balancer shows given its listeners' bind errors.
fn lb_state(listeners: usize, failed: &[&BindError]) -> (&'static str, Option<String>) {
    if failed.is_empty() {
        ("active", None)
    } else {
        let why = failed
            .iter()
            .map(|e| format!("listener on {}: {}", e.addr, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        if failed.len() >= listeners {
            ("failed", Some(why))
        } else {
            ("active_impaired", Some(why))
        }
    }
}

impl Elb {
    /// Addresses of the instances that are targets, per owner.
    fn instance_addrs(&self, tgs: &[Stored<TgDoc>]) -> InstanceAddrs {
        let mut owners: Vec<Caller> = Vec::new();
        for tg in tgs {
            if tg.doc.target_type == "instance" && !tg.doc.targets.is_empty() {
                let c = Caller {
                    account_id: tg.row.account_id.clone(),
                    region: tg.row.region.clone(),
                };
                if !owners.contains(&c) {
                    owners.push(c);
                }
            }
        }
        let mut out = InstanceAddrs::new();
        for c in owners {
            match self
                .cloud
                .describe_instances(&engine_caller(&c), &[], &[], &Page::default())
            {
                Ok((views, _)) => {
                    for v in views {
                        let ip = v.public_ip().and_then(|s| s.parse().ok());
                        out.insert(v.id.clone(), (v.state.clone(), ip));
                    }
                }
                Err(e) => {
                    tracing::warn!(account = %c.account_id, error = %e, "elb resync: listing instances")
                }
            }
        }
        out
    }

    /// Removes listeners whose load balancer is gone and rules whose listener is gone (what
    /// a crash in the middle of a delete can leave behind). Run at open.
    pub(crate) fn remove_orphans(&self) -> awsquery::QueryResult<()> {
        let _g = self.guard();
        let lbs = self.list_all::<LbDoc>(LB_KIND)?;
        let listeners = self.list_all::<ListenerDoc>(LISTENER_KIND)?;
        let mut kept = Vec::new();
        for l in listeners {
            if lbs.iter().any(|lb| lb.row.id == l.doc.load_balancer_arn) {
                kept.push(l.row.id);
            } else {
                tracing::info!(listener = %l.row.id, "elb: removing a listener whose load balancer is gone");
                self.catalog()
                    .clear_tags(&l.doc.default_rule_arn)
                    .map_err(crate::model::db)?;
                self.remove(&l.row.id)?;
            }
        }
        for r in self.list_all::<RuleDoc>(RULE_KIND)? {
            if !kept.contains(&r.doc.listener_arn) {
                tracing::info!(rule = %r.row.id, "elb: removing a rule whose listener is gone");
                self.remove(&r.row.id)?;
            }
        }
        Ok(())
    }

    /// Rebuilds the data plane's configuration and applies it; records bind failures and
    /// moves load balancers from `provisioning` to `active`.
    pub(crate) fn resync(&self) -> Vec<BindError> {
        match self.try_resync() {
            Ok(errors) => errors,
            Err(e) => {
                tracing::warn!(error = %e, "elb resync failed");
                Vec::new()
            }
        }
    }

    fn try_resync(&self) -> awsquery::QueryResult<Vec<BindError>> {
        let _g = self.guard();
        let lbs = self.list_all::<LbDoc>(LB_KIND)?;
        let listeners = self.list_all::<ListenerDoc>(LISTENER_KIND)?;
        let rules = self.list_all::<RuleDoc>(RULE_KIND)?;
        let mut tgs = self.list_all::<TgDoc>(TG_KIND)?;
        let instances = self.instance_addrs(&tgs);
        // Terminated (or vanished) instances leave their groups, as on AWS; they drain.
        for tg in tgs.iter_mut().filter(|t| t.doc.target_type == "instance") {
            let before = tg.doc.targets.len();
            tg.doc.targets.retain(|t| {
                instances
                    .get(&t.id)
                    .is_some_and(|(state, _)| state != "terminated" && state != "shutting-down")
            });
            if tg.doc.targets.len() != before {
                self.update(&tg.row.id, &tg.row.state, &tg.doc)?;
            }
        }
        let config = build_config(&lbs, &listeners, &rules, &tgs, &instances);
        let errors = self.plane.balancer.apply(config);
        for e in &errors {
            tracing::warn!(error = %e, "elb: listener could not bind");
        }
        for lb in &lbs {
            let own: Vec<&Stored<ListenerDoc>> = listeners
                .iter()
                .filter(|l| l.doc.load_balancer_arn == lb.row.id)
                .collect();
            let failed: Vec<&BindError> = errors
                .iter()
                .filter(|e| own.iter().any(|l| l.row.id == e.listener))
                .collect();
            let (state, why) = lb_state(own.len(), &failed);
            if lb.row.state != state || lb.doc.bind_error != why {
                let mut doc = lb.doc.clone();
                doc.bind_error = why;
                self.update(&lb.row.id, state, &doc)?;
            }
        }
        // Tell the engine which groups load balancers use, so rules naming them open
        // instance ports to load balancer traffic.
        let mut groups: Vec<String> = lbs
            .iter()
            .flat_map(|l| l.doc.security_groups.iter().cloned())
            .collect();
        groups.sort();
        groups.dedup();
        if let Ok(mut last) = self.plane.groups.lock()
            && last.as_ref() != Some(&groups)
        {
            self.cloud.set_load_balancer_groups(groups.clone());
            *last = Some(groups);
        }
        Ok(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ForwardDoc, HealthCheckDoc, TargetDoc};
    use catalog::ResourceRow;

    fn row(id: &str) -> ResourceRow {
        ResourceRow {
            id: id.into(),
            kind: String::new(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            state: "active".into(),
            doc: String::new(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn config_from_documents() {
        let lb = Stored {
            row: row("lb"),
            doc: LbDoc {
                address: "127.102.0.1".into(),
                lb_type: "application".into(),
                ..Default::default()
            },
        };
        let fwd = ActionDoc {
            action_type: "forward".into(),
            forward: Some(ForwardDoc {
                groups: vec![("tg".into(), 3)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let l = Stored {
            row: row("l"),
            doc: ListenerDoc {
                load_balancer_arn: "lb".into(),
                port: 8080,
                protocol: "HTTP".into(),
                actions: vec![fwd],
                default_rule_arn: "default".into(),
                ..Default::default()
            },
        };
        let r = Stored {
            row: row("r"),
            doc: RuleDoc {
                listener_arn: "l".into(),
                priority: 5,
                conditions: vec![ConditionDoc {
                    field: "path-pattern".into(),
                    values: vec!["/api/*".into()],
                    ..Default::default()
                }],
                actions: vec![ActionDoc {
                    action_type: "fixed-response".into(),
                    fixed: Some(crate::model::FixedDoc {
                        status_code: "418".into(),
                        message_body: Some("tea".into()),
                        content_type: None,
                    }),
                    ..Default::default()
                }],
            },
        };
        let tg = Stored {
            row: row("tg"),
            doc: TgDoc {
                protocol: "HTTP".into(),
                target_type: "instance".into(),
                health_check: HealthCheckDoc {
                    enabled: true,
                    protocol: "HTTP".into(),
                    port: "traffic-port".into(),
                    interval: 10,
                    timeout: 5,
                    healthy: 2,
                    unhealthy: 2,
                    ..Default::default()
                },
                targets: vec![
                    TargetDoc {
                        id: "i-1".into(),
                        port: 80,
                        zone: None,
                    },
                    TargetDoc {
                        id: "i-2".into(),
                        port: 80,
                        zone: None,
                    },
                ],
                ..Default::default()
            },
        };
        let mut inst = InstanceAddrs::new();
        inst.insert(
            "i-1".into(),
            ("running".into(), Some(Ipv4Addr::new(127, 100, 0, 7))),
        );
        inst.insert("i-2".into(), ("stopped".into(), None));
        let c = build_config(&[lb], &[l], &[r], &[tg], &inst);
        let lst = &c.load_balancers[0].listeners[0];
        assert_eq!(lst.rules.len(), 2);
        assert_eq!(
            lst.rules[0].conditions,
            vec![Condition::PathPattern(vec!["/api/*".into()])]
        );
        assert!(matches!(
            lst.rules[0].action,
            Action::FixedResponse { status: 418, .. }
        ));
        assert_eq!(lst.rules[1].action, Action::Forward(vec![("tg".into(), 3)]));
        let g = &c.target_groups[0];
        assert_eq!(g.deregistration_delay, Duration::from_secs(300));
        assert_eq!(g.targets[0].addr, Some(Ipv4Addr::new(127, 100, 0, 7)));
        assert_eq!(g.targets[1].addr, None);
        assert_eq!(
            g.targets[1].unreachable_reason.as_deref(),
            Some("Target is in the stopped state")
        );
        assert_eq!(g.health_check.port, None);
        assert_eq!(
            c.load_balancers[0].attributes["idle_timeout.timeout_seconds"],
            "60"
        );
    }

    #[test]
    fn states_from_bind_errors() {
        let e = BindError {
            listener: "l".into(),
            addr: "127.102.0.1:80".parse().unwrap(),
            message: "in use".into(),
        };
        assert_eq!(lb_state(2, &[]).0, "active");
        assert_eq!(lb_state(2, &[&e]).0, "active_impaired");
        assert_eq!(lb_state(1, &[&e]).0, "failed");
    }
}
