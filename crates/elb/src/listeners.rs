//! Listeners (CreateListener, DescribeListeners, ModifyListener, DeleteListener, their
//! attributes and certificates) and the actions listeners and rules share: forward (one
//! group or weighted groups), redirect and fixed-response.

use std::collections::BTreeMap;

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};

use crate::Elb;
use crate::attributes;
use crate::load_balancers::{next_marker, page};
use crate::model::{
    self, ActionDoc, FixedDoc, ForwardDoc, LISTENER_KIND, LbDoc, ListenerDoc, RULE_KIND,
    RedirectDoc, RuleDoc, Stored, TgDoc, db, listener_not_found,
};

/// The attribute table of a listener's protocol.
pub fn listener_table(doc: &ListenerDoc) -> &'static [attributes::Spec] {
    if doc.protocol == "TCP" {
        attributes::LISTENER_TCP
    } else {
        attributes::LISTENER_HTTP
    }
}

fn check_listener_protocol(lb: &LbDoc, protocol: &str) -> QueryResult<()> {
    match (lb.lb_type.as_str(), protocol) {
        ("application", "HTTP") | ("network", "TCP") => Ok(()),
        (_, "HTTPS" | "TLS") => Err(QueryError::new(
            "UnsupportedProtocol",
            format!(
                "Listener protocol '{protocol}' needs certificates, which openami does not have (use HTTP or TCP)"
            ),
        )),
        ("network", "UDP" | "TCP_UDP" | "QUIC" | "TCP_QUIC") => Err(QueryError::new(
            "UnsupportedProtocol",
            format!("Listener protocol '{protocol}' is not supported by openami (TCP is)"),
        )),
        ("application", _) => Err(QueryError::new(
            "IncompatibleProtocols",
            format!("Listener protocol '{protocol}' must be one of 'HTTPS, HTTP'"),
        )),
        _ => Err(QueryError::new(
            "IncompatibleProtocols",
            format!("Listener protocol '{protocol}' must be one of 'UDP, TLS, TCP_UDP, TCP'"),
        )),
    }
}

fn lb_suffix(lb_arn: &str) -> &str {
    lb_arn.split_once(":loadbalancer/").map_or("", |(_, s)| s)
}

impl Elb {
    /// The caller's listener, or `ListenerNotFound`.
    pub(crate) fn listener(&self, caller: &Caller, arn: &str) -> QueryResult<Stored<ListenerDoc>> {
        self.get(caller, LISTENER_KIND, arn)?
            .ok_or_else(listener_not_found)
    }

    /// Parses and checks `name.member.N` actions for a listener of `protocol` on `lb`
    /// (`lb_arn`): exactly one terminal action; groups exist, speak the protocol, live in
    /// the load balancer's VPC and serve no other load balancer.
    pub(crate) fn parse_actions(
        &self,
        caller: &Caller,
        p: &Params,
        name: &str,
        lb_arn: &str,
        lb: &LbDoc,
        protocol: &str,
    ) -> QueryResult<Vec<ActionDoc>> {
        let raw = p.structs(name)?;
        if raw.is_empty() {
            return Err(QueryError::missing(name));
        }
        let mut out = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let t = a.required("Type")?;
            let order = a.int_in("Order", 1, 50000)?.or(Some(i as i64 + 1));
            let mut doc = ActionDoc {
                action_type: t.clone(),
                order,
                ..Default::default()
            };
            match t.as_str() {
                "forward" => {
                    doc.target_group_arn = a.string("TargetGroupArn");
                    let fc = a.nested("ForwardConfig");
                    let groups = fc.structs("TargetGroups")?;
                    if !groups.is_empty() {
                        let mut f = ForwardDoc::default();
                        for g in groups {
                            let w = g.int_in("Weight", 0, 999)?.unwrap_or(1);
                            f.groups.push((g.required("TargetGroupArn")?, w));
                        }
                        let st = fc.nested("TargetGroupStickinessConfig");
                        f.stickiness = st.bool("Enabled")?.unwrap_or(false);
                        f.stickiness_seconds = st.int_in("DurationSeconds", 1, 604800)?;
                        if let Some(single) = &doc.target_group_arn
                            && (f.groups.len() != 1 || &f.groups[0].0 != single)
                        {
                            return Err(QueryError::validation(
                                "You cannot specify both a target group ARN and a forward config with different target groups",
                            ));
                        }
                        doc.forward = Some(f);
                    }
                    if doc.target_groups().is_empty() {
                        return Err(QueryError::validation(
                            "A target group ARN must be specified for a forward action",
                        ));
                    }
                    self.check_forward(caller, &doc.target_groups(), lb_arn, lb, protocol)?;
                }
                "redirect" | "fixed-response" if lb.lb_type == "network" => {
                    return Err(QueryError::new(
                        "InvalidLoadBalancerAction",
                        format!("Action type '{t}' is not supported by network load balancers"),
                    ));
                }
                "redirect" => {
                    let r = a.nested("RedirectConfig");
                    let status = r
                        .string("StatusCode")
                        .ok_or_else(|| QueryError::missing("RedirectConfig.StatusCode"))?;
                    if status != "HTTP_301" && status != "HTTP_302" {
                        return Err(QueryError::validation(format!(
                            "Redirect status code '{status}' must be 'HTTP_301' or 'HTTP_302'"
                        )));
                    }
                    let doc_r = RedirectDoc {
                        protocol: r.string("Protocol"),
                        port: r.string("Port"),
                        host: r.string("Host"),
                        path: r.string("Path"),
                        query: r.string("Query"),
                        status_code: status,
                    };
                    if let Some(proto) = &doc_r.protocol
                        && !["HTTP", "HTTPS", "#{protocol}"].contains(&proto.as_str())
                    {
                        return Err(QueryError::validation(format!(
                            "Redirect protocol '{proto}' must be 'HTTP', 'HTTPS' or '#{{protocol}}'"
                        )));
                    }
                    if let Some(path) = &doc_r.path
                        && !path.starts_with('/')
                    {
                        return Err(QueryError::validation("Redirect path must start with '/'"));
                    }
                    doc.redirect = Some(doc_r);
                }
                "fixed-response" => {
                    let f = a.nested("FixedResponseConfig");
                    let status = f
                        .string("StatusCode")
                        .ok_or_else(|| QueryError::missing("FixedResponseConfig.StatusCode"))?;
                    let ok = status.len() == 3
                        && status.chars().all(|c| c.is_ascii_digit())
                        && matches!(status.as_bytes()[0], b'2' | b'4' | b'5');
                    if !ok {
                        return Err(QueryError::validation(format!(
                            "Fixed response status code '{status}' must be a 2XX, 4XX or 5XX code"
                        )));
                    }
                    let ct = f.string("ContentType");
                    const TYPES: [&str; 5] = [
                        "text/plain",
                        "text/css",
                        "text/html",
                        "application/javascript",
                        "application/json",
                    ];
                    if let Some(c) = &ct
                        && !TYPES.contains(&c.as_str())
                    {
                        return Err(QueryError::validation(format!(
                            "Fixed response content type '{c}' must be one of {}",
                            TYPES.join(", ")
                        )));
                    }
                    let body = f.string("MessageBody");
                    if body.as_ref().is_some_and(|b| b.len() > 1024) {
                        return Err(QueryError::validation(
                            "Fixed response message body cannot be longer than 1024 characters",
                        ));
                    }
                    doc.fixed = Some(FixedDoc {
                        message_body: body,
                        status_code: status,
                        content_type: ct,
                    });
                }
                "authenticate-oidc" | "authenticate-cognito" | "jwt-validation" => {
                    return Err(QueryError::new(
                        "InvalidLoadBalancerAction",
                        format!("Action type '{t}' is not supported by openami"),
                    ));
                }
                _ => {
                    return Err(QueryError::validation(format!(
                        "Action type '{t}' is not valid"
                    )));
                }
            }
            out.push(doc);
        }
        if out.len() > 1 {
            return Err(QueryError::new(
                "InvalidLoadBalancerAction",
                "Exactly one of the actions forward, redirect and fixed-response must be specified",
            ));
        }
        out.sort_by_key(|a| a.order);
        Ok(out)
    }

    fn check_forward(
        &self,
        caller: &Caller,
        groups: &[String],
        lb_arn: &str,
        lb: &LbDoc,
        protocol: &str,
    ) -> QueryResult<()> {
        let usage = self.usage(caller)?;
        for arn in groups {
            let tg: Stored<TgDoc> = self.tg(caller, arn)?;
            let want = if protocol == "TCP" { "TCP" } else { "HTTP" };
            if tg.doc.protocol != want {
                return Err(QueryError::new(
                    "IncompatibleProtocols",
                    format!(
                        "Target group '{arn}' has protocol '{}', which is not compatible with the listener protocol '{protocol}'",
                        tg.doc.protocol
                    ),
                ));
            }
            if tg.doc.vpc_id != lb.vpc_id {
                return Err(QueryError::new(
                    "InvalidConfigurationRequest",
                    format!(
                        "Target group '{arn}' is not in the load balancer's VPC '{}'",
                        lb.vpc_id
                    ),
                ));
            }
            if usage
                .get(arn)
                .is_some_and(|lbs| lbs.iter().any(|l| l != lb_arn))
            {
                return Err(QueryError::new(
                    "TargetGroupAssociationLimit",
                    format!(
                        "The following target groups cannot be associated with more than one load balancer: {arn}"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn create_listener(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let lb_arn = p.required("LoadBalancerArn")?;
        let guard = self.guard();
        let lb = self.lb(caller, &lb_arn)?;
        let protocol = p.string("Protocol").unwrap_or_else(|| {
            if lb.doc.lb_type == "network" {
                "TCP".into()
            } else {
                "HTTP".into()
            }
        });
        if p.has("Certificates") && !p.strings("Certificates").unwrap_or_default().is_empty() {
            return Err(QueryError::new(
                "CertificateNotFound",
                "openami has no certificate service; listeners with certificates are not supported",
            ));
        }
        check_listener_protocol(&lb.doc, &protocol)?;
        let port = p
            .int_in("Port", 1, 65535)?
            .ok_or_else(|| QueryError::validation("A listener port must be specified"))?
            as u16;
        let listeners = self.list::<ListenerDoc>(caller, LISTENER_KIND)?;
        let mine: Vec<_> = listeners
            .iter()
            .filter(|l| l.doc.load_balancer_arn == lb_arn)
            .collect();
        if mine.iter().any(|l| l.doc.port == port) {
            return Err(QueryError::new(
                "DuplicateListener",
                format!("A listener already exists on this port for this load balancer '{lb_arn}'"),
            ));
        }
        if mine.len() >= 50 {
            return Err(QueryError::new(
                "TooManyListeners",
                "You've reached the limit on the number of listeners per load balancer (50)",
            ));
        }
        let actions =
            self.parse_actions(caller, p, "DefaultActions", &lb_arn, &lb.doc, &protocol)?;
        let tags = p.tags("Tags")?;
        crate::misc::check_tags(&tags)?;
        let lid = model::new_hex_id();
        let suffix = lb_suffix(&lb_arn);
        let arn = model::arn(caller, &format!("listener/{suffix}/{lid}"));
        let doc = ListenerDoc {
            load_balancer_arn: lb_arn.clone(),
            port,
            protocol,
            actions,
            attributes: BTreeMap::new(),
            default_rule_arn: model::arn(
                caller,
                &format!("listener-rule/{suffix}/{lid}/{}", model::new_hex_id()),
            ),
        };
        let row = self.insert(caller, LISTENER_KIND, &arn, "active", &doc)?;
        if !tags.is_empty() {
            self.catalog().set_tags(&arn, &tags).map_err(db)?;
        }
        drop(guard);
        // A listener that cannot bind (port taken, or below 1024 without the right) is
        // not kept: the caller learns why now rather than from a failed state.
        if let Some(e) = self.resync().into_iter().find(|e| e.listener == arn) {
            let guard = self.guard();
            self.remove(&arn)?;
            drop(guard);
            let _ = self.resync();
            return Err(QueryError::new(
                "InvalidConfigurationRequest",
                format!("The listener cannot bind {}: {}", e.addr, e.message),
            ));
        }
        let mut x = Xml::new();
        x.members("Listeners", &[Stored { row, doc }], listener_xml);
        Ok(x.finish())
    }

    pub(crate) fn describe_listeners(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arns = p.strings("ListenerArns")?;
        let lb = p.string("LoadBalancerArn");
        let all = self.list::<ListenerDoc>(caller, LISTENER_KIND)?;
        let out: Vec<Stored<ListenerDoc>> = if !arns.is_empty() {
            let mut v = Vec::new();
            for a in &arns {
                v.push(
                    all.iter()
                        .find(|s| &s.row.id == a)
                        .cloned()
                        .ok_or_else(listener_not_found)?,
                );
            }
            v
        } else if let Some(lb) = lb {
            self.lb(caller, &lb)?;
            all.into_iter()
                .filter(|s| s.doc.load_balancer_arn == lb)
                .collect()
        } else {
            return Err(QueryError::validation(
                "You must specify either listener ARNs or a load balancer ARN",
            ));
        };
        let (items, next) = page(out, p)?;
        let mut x = Xml::new();
        x.members("Listeners", &items, listener_xml);
        next_marker(&mut x, next);
        Ok(x.finish())
    }

    pub(crate) fn modify_listener(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("ListenerArn")?;
        let _g = self.guard();
        let mut l = self.listener(caller, &arn)?;
        let lb = self.lb(caller, &l.doc.load_balancer_arn)?;
        if let Some(protocol) = p.string("Protocol") {
            check_listener_protocol(&lb.doc, &protocol)?;
            l.doc.protocol = protocol;
        }
        if let Some(port) = p.int_in("Port", 1, 65535)? {
            let port = port as u16;
            let clash = self
                .list::<ListenerDoc>(caller, LISTENER_KIND)?
                .into_iter()
                .any(|o| {
                    o.doc.load_balancer_arn == l.doc.load_balancer_arn
                        && o.row.id != arn
                        && o.doc.port == port
                });
            if clash {
                return Err(QueryError::new(
                    "DuplicateListener",
                    format!(
                        "A listener already exists on this port for this load balancer '{}'",
                        l.doc.load_balancer_arn
                    ),
                ));
            }
            l.doc.port = port;
        }
        if p.has("DefaultActions") {
            let protocol = l.doc.protocol.clone();
            l.doc.actions = self.parse_actions(
                caller,
                p,
                "DefaultActions",
                &l.doc.load_balancer_arn,
                &lb.doc,
                &protocol,
            )?;
        }
        self.update(&arn, &l.row.state, &l.doc)?;
        let mut x = Xml::new();
        x.members("Listeners", &[l], listener_xml);
        Ok(x.finish())
    }

    pub(crate) fn delete_listener(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("ListenerArn")?;
        let _g = self.guard();
        let l = self.listener(caller, &arn)?;
        self.remove_listener(caller, &l)?;
        Ok(String::new())
    }

    /// Deletes a listener with its rules and their tags (the caller holds the lock).
    pub(crate) fn remove_listener(
        &self,
        caller: &Caller,
        l: &Stored<ListenerDoc>,
    ) -> QueryResult<()> {
        for r in self.list::<RuleDoc>(caller, RULE_KIND)? {
            if r.doc.listener_arn == l.row.id {
                self.remove(&r.row.id)?;
            }
        }
        self.catalog()
            .clear_tags(&l.doc.default_rule_arn)
            .map_err(db)?;
        self.remove(&l.row.id)
    }

    pub(crate) fn describe_listener_attributes(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let l = self.listener(caller, &p.required("ListenerArn")?)?;
        Ok(attributes::xml(&attributes::effective(
            listener_table(&l.doc),
            &l.doc.attributes,
        )))
    }

    pub(crate) fn modify_listener_attributes(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        let arn = p.required("ListenerArn")?;
        let _g = self.guard();
        let mut l = self.listener(caller, &arn)?;
        let pairs = attributes::parse(p, listener_table(&l.doc), "Listener")?;
        for (k, v) in &pairs {
            l.doc.attributes.insert(k.clone(), v.clone());
        }
        self.update(&arn, &l.row.state, &l.doc)?;
        Ok(attributes::xml(&pairs))
    }

    pub(crate) fn describe_listener_certificates(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> QueryResult<String> {
        self.listener(caller, &p.required("ListenerArn")?)?;
        let mut x = Xml::new();
        x.elem("Certificates", |_| {});
        Ok(x.finish())
    }
}

/// `<Actions>`-style list of actions.
pub fn actions_xml(x: &mut Xml, name: &str, actions: &[ActionDoc]) {
    x.members(name, actions, |x, a| {
        x.text("Type", &a.action_type);
        let groups: Vec<(String, i64)> = match (&a.forward, &a.target_group_arn) {
            (Some(f), _) => f.groups.clone(),
            (None, Some(t)) => vec![(t.clone(), 1)],
            _ => Vec::new(),
        };
        let single = a
            .target_group_arn
            .clone()
            .or_else(|| (groups.len() == 1).then(|| groups[0].0.clone()));
        x.opt("TargetGroupArn", single);
        x.opt("Order", a.order);
        if let Some(r) = &a.redirect {
            x.elem("RedirectConfig", |x| {
                x.opt("Protocol", r.protocol.as_deref())
                    .opt("Port", r.port.as_deref())
                    .opt("Host", r.host.as_deref())
                    .opt("Path", r.path.as_deref())
                    .opt("Query", r.query.as_deref())
                    .text("StatusCode", &r.status_code);
            });
        }
        if let Some(f) = &a.fixed {
            x.elem("FixedResponseConfig", |x| {
                x.opt("MessageBody", f.message_body.as_deref())
                    .text("StatusCode", &f.status_code)
                    .opt("ContentType", f.content_type.as_deref());
            });
        }
        if a.action_type == "forward" {
            let (sticky, secs) = a
                .forward
                .as_ref()
                .map_or((false, None), |f| (f.stickiness, f.stickiness_seconds));
            x.elem("ForwardConfig", |x| {
                x.members("TargetGroups", &groups, |x, (arn, w)| {
                    x.text("TargetGroupArn", arn).text("Weight", &w.to_string());
                });
                x.elem("TargetGroupStickinessConfig", |x| {
                    x.text("Enabled", if sticky { "true" } else { "false" });
                    x.opt("DurationSeconds", secs);
                });
            });
        }
    });
}

/// One `Listener` structure.
pub fn listener_xml(x: &mut Xml, s: &Stored<ListenerDoc>) {
    x.text("ListenerArn", &s.row.id)
        .text("LoadBalancerArn", &s.doc.load_balancer_arn)
        .text("Port", &s.doc.port.to_string())
        .text("Protocol", &s.doc.protocol);
    actions_xml(x, "DefaultActions", &s.doc.actions);
}
