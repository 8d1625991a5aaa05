//! Listener rules: CreateRule, DescribeRules (with the listener's default rule last),
//! ModifyRule, DeleteRule, SetRulePriorities, and the conditions (path-pattern,
//! host-header, http-header, http-request-method, query-string, source-ip) in both the
//! legacy `Values` and the `*Config` forms.

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};

use crate::Elb;
use crate::listeners::actions_xml;
use crate::load_balancers::{next_marker, page};
use crate::model::{
    self, ActionDoc, ConditionDoc, LISTENER_KIND, ListenerDoc, RULE_KIND, RuleDoc, Stored, db,
    rule_not_found,
};

/// Rules per listener (besides the default rule).
const MAX_RULES: usize = 100;
/// Condition values per rule.
const MAX_VALUES: usize = 5;

fn config_name(field: &str) -> QueryResult<&'static str> {
    Ok(match field {
        "path-pattern" => "PathPatternConfig",
        "host-header" => "HostHeaderConfig",
        "http-header" => "HttpHeaderConfig",
        "http-request-method" => "HttpRequestMethodConfig",
        "query-string" => "QueryStringConfig",
        "source-ip" => "SourceIpConfig",
        _ => {
            return Err(QueryError::validation(format!(
                "Condition field '{field}' must be one of '[http-header, http-request-method, host-header, path-pattern, query-string, source-ip]'"
            )));
        }
    })
}

/// Parses and checks `Conditions.member.N`.
pub fn parse_conditions(p: &Params) -> QueryResult<Vec<ConditionDoc>> {
    let raw = p.structs("Conditions")?;
    let mut out: Vec<ConditionDoc> = Vec::new();
    let mut total = 0;
    for c in raw {
        let field = c.required("Field")?;
        let cfg_name = config_name(&field)?;
        let cfg = c.nested(cfg_name);
        if c.has("RegexValues") || cfg.has("RegexValues") {
            return Err(QueryError::validation(
                "Regular expression condition values are not supported by openami",
            ));
        }
        let mut doc = ConditionDoc {
            field: field.clone(),
            ..Default::default()
        };
        match field.as_str() {
            "query-string" => {
                for kv in cfg.structs("Values")? {
                    let v = kv.required("Value")?;
                    doc.query.push((kv.string("Key"), v));
                }
                total += doc.query.len();
            }
            _ => {
                doc.values = if cfg.has("Values") {
                    cfg.strings("Values")?
                } else {
                    c.strings("Values")?
                };
                if field == "http-header" {
                    let name = cfg.string("HttpHeaderName").ok_or_else(|| {
                        QueryError::validation(
                            "An HTTP header name must be specified for an 'http-header' condition",
                        )
                    })?;
                    doc.header_name = Some(name);
                }
                total += doc.values.len();
            }
        }
        if doc.values.is_empty() && doc.query.is_empty() {
            return Err(QueryError::validation(format!(
                "A condition value must be specified for the '{field}' condition"
            )));
        }
        for v in &doc.values {
            check_value(&field, v)?;
        }
        let single = [
            "path-pattern",
            "host-header",
            "http-request-method",
            "source-ip",
        ];
        if single.contains(&field.as_str()) && out.iter().any(|o| o.field == field) {
            return Err(QueryError::validation(format!(
                "A rule can only have one '{field}' condition"
            )));
        }
        out.push(doc);
    }
    if out.is_empty() {
        return Err(QueryError::validation(
            "A rule must have at least one condition",
        ));
    }
    if total > MAX_VALUES {
        return Err(QueryError::validation(format!(
            "A rule can only have '{MAX_VALUES}' condition values"
        )));
    }
    Ok(out)
}

fn check_value(field: &str, v: &str) -> QueryResult<()> {
    let bad =
        |why: &str| QueryError::validation(format!("Condition value '{v}' is not valid: {why}"));
    match field {
        "path-pattern" if v.is_empty() || v.len() > 128 => Err(bad("1 to 128 characters")),
        "host-header" if v.is_empty() || v.len() > 128 => Err(bad("1 to 128 characters")),
        "http-request-method"
            if v.is_empty()
                || v.len() > 40
                || !v
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c == '-') =>
        {
            Err(bad("A-Z, hyphen and underscore only"))
        }
        "source-ip" if engine::vpc::Cidr::parse(v, false).is_none() => {
            Err(bad("an IPv4 CIDR such as 192.0.2.0/24"))
        }
        _ => Ok(()),
    }
}

fn parse_priority(text: &str) -> QueryResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|n| (1..=50000).contains(n))
        .ok_or_else(|| {
            QueryError::validation(format!(
                "Priority '{text}' must be an integer between 1 and 50000"
            ))
        })
}

fn priority_in_use(n: i64) -> QueryError {
    QueryError::new(
        "PriorityInUse",
        format!("Priority '{n}' is currently in use"),
    )
}

/// A rule as DescribeRules shows it (the default rule has no row of its own).
struct RuleView {
    arn: String,
    priority: Option<i64>,
    conditions: Vec<ConditionDoc>,
    actions: Vec<ActionDoc>,
}

fn default_rule(l: &Stored<ListenerDoc>) -> RuleView {
    RuleView {
        arn: l.doc.default_rule_arn.clone(),
        priority: None,
        conditions: Vec::new(),
        actions: l.doc.actions.clone(),
    }
}

fn view(r: &Stored<RuleDoc>) -> RuleView {
    RuleView {
        arn: r.row.id.clone(),
        priority: Some(r.doc.priority),
        conditions: r.doc.conditions.clone(),
        actions: r.doc.actions.clone(),
    }
}

impl Elb {
    fn rule(&self, caller: &Caller, arn: &str) -> QueryResult<Stored<RuleDoc>> {
        self.get(caller, RULE_KIND, arn)?.ok_or_else(rule_not_found)
    }

    fn is_default_rule(&self, caller: &Caller, arn: &str) -> QueryResult<bool> {
        Ok(self
            .list::<ListenerDoc>(caller, LISTENER_KIND)?
            .iter()
            .any(|l| l.doc.default_rule_arn == arn))
    }

    fn rules_of(&self, caller: &Caller, listener: &str) -> QueryResult<Vec<Stored<RuleDoc>>> {
        let mut v: Vec<_> = self
            .list::<RuleDoc>(caller, RULE_KIND)?
            .into_iter()
            .filter(|r| r.doc.listener_arn == listener)
            .collect();
        v.sort_by_key(|r| r.doc.priority);
        Ok(v)
    }

    fn rule_actions(
        &self,
        caller: &Caller,
        p: &Params,
        l: &Stored<ListenerDoc>,
    ) -> QueryResult<Vec<ActionDoc>> {
        let lb = self.lb(caller, &l.doc.load_balancer_arn)?;
        self.parse_actions(
            caller,
            p,
            "Actions",
            &l.doc.load_balancer_arn,
            &lb.doc,
            &l.doc.protocol,
        )
    }

    pub(crate) fn create_rule(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let listener_arn = p.required("ListenerArn")?;
        let priority = parse_priority(&p.required("Priority")?)?;
        let conditions = parse_conditions(p)?;
        let tags = p.tags("Tags")?;
        crate::misc::check_tags(&tags)?;
        let _g = self.guard();
        let l = self.listener(caller, &listener_arn)?;
        if l.doc.protocol == "TCP" {
            return Err(QueryError::new(
                "InvalidConfigurationRequest",
                "Rules are not supported for TCP listeners",
            ));
        }
        let actions = self.rule_actions(caller, p, &l)?;
        let existing = self.rules_of(caller, &listener_arn)?;
        if existing.iter().any(|r| r.doc.priority == priority) {
            return Err(priority_in_use(priority));
        }
        if existing.len() >= MAX_RULES {
            return Err(QueryError::new(
                "TooManyRules",
                format!(
                    "You've reached the limit on the number of rules per listener ({MAX_RULES})"
                ),
            ));
        }
        let suffix = listener_arn.split_once(":listener/").map_or("", |(_, s)| s);
        let arn = model::arn(
            caller,
            &format!("listener-rule/{suffix}/{}", model::new_hex_id()),
        );
        let doc = RuleDoc {
            listener_arn,
            priority,
            conditions,
            actions,
        };
        let row = self.insert(caller, RULE_KIND, &arn, "active", &doc)?;
        if !tags.is_empty() {
            self.catalog().set_tags(&arn, &tags).map_err(db)?;
        }
        Ok(rules_xml(&[view(&Stored { row, doc })]))
    }

    pub(crate) fn describe_rules(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arns = p.strings("RuleArns")?;
        let mut out = Vec::new();
        if !arns.is_empty() {
            let listeners = self.list::<ListenerDoc>(caller, LISTENER_KIND)?;
            for a in &arns {
                if let Some(l) = listeners.iter().find(|l| &l.doc.default_rule_arn == a) {
                    out.push(default_rule(l));
                } else {
                    out.push(view(&self.rule(caller, a)?));
                }
            }
        } else if let Some(la) = p.string("ListenerArn") {
            let l = self.listener(caller, &la)?;
            out.extend(self.rules_of(caller, &la)?.iter().map(view));
            out.push(default_rule(&l));
        } else {
            return Err(QueryError::validation(
                "You must specify either listener ARNs or rule ARNs",
            ));
        }
        let (items, next) = page(out, p)?;
        let mut x = Xml::new();
        x.raw(&rules_xml(&items));
        next_marker(&mut x, next);
        Ok(x.finish())
    }

    pub(crate) fn modify_rule(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("RuleArn")?;
        let _g = self.guard();
        if self.is_default_rule(caller, &arn)? {
            return Err(QueryError::new(
                "OperationNotPermitted",
                "The default rule cannot be modified with ModifyRule; use ModifyListener",
            ));
        }
        let mut r = self.rule(caller, &arn)?;
        if p.has("Conditions") {
            r.doc.conditions = parse_conditions(p)?;
        }
        if p.has("Actions") {
            let l = self.listener(caller, &r.doc.listener_arn)?;
            r.doc.actions = self.rule_actions(caller, p, &l)?;
        }
        self.update(&arn, &r.row.state, &r.doc)?;
        Ok(rules_xml(&[view(&r)]))
    }

    pub(crate) fn delete_rule(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let arn = p.required("RuleArn")?;
        let _g = self.guard();
        if self.is_default_rule(caller, &arn)? {
            return Err(QueryError::new(
                "OperationNotPermitted",
                format!("Default rule '{arn}' cannot be deleted"),
            ));
        }
        self.rule(caller, &arn)?;
        self.remove(&arn)?;
        Ok(String::new())
    }

    pub(crate) fn set_rule_priorities(&self, caller: &Caller, p: &Params) -> QueryResult<String> {
        let pairs = p.structs("RulePriorities")?;
        if pairs.is_empty() {
            return Err(QueryError::missing("RulePriorities"));
        }
        let _g = self.guard();
        let mut changed: Vec<Stored<RuleDoc>> = Vec::new();
        for pair in pairs {
            let arn = pair.required("RuleArn")?;
            let prio = parse_priority(&pair.required("Priority")?)?;
            if self.is_default_rule(caller, &arn)? {
                return Err(QueryError::new(
                    "OperationNotPermitted",
                    "The priority of the default rule cannot be changed",
                ));
            }
            let mut r = self.rule(caller, &arn)?;
            if changed.iter().any(|c| c.row.id == arn) {
                return Err(QueryError::validation(format!(
                    "Rule '{arn}' is given more than once"
                )));
            }
            r.doc.priority = prio;
            changed.push(r);
        }
        // The final priorities of every affected listener must stay unique.
        let mut listeners: Vec<String> =
            changed.iter().map(|c| c.doc.listener_arn.clone()).collect();
        listeners.dedup();
        for la in &listeners {
            let mut seen = Vec::new();
            for r in self.rules_of(caller, la)? {
                let prio = changed
                    .iter()
                    .find(|c| c.row.id == r.row.id)
                    .map_or(r.doc.priority, |c| c.doc.priority);
                if seen.contains(&prio) {
                    return Err(priority_in_use(prio));
                }
                seen.push(prio);
            }
        }
        for c in &changed {
            self.update(&c.row.id, &c.row.state, &c.doc)?;
        }
        let views: Vec<RuleView> = changed.iter().map(view).collect();
        Ok(rules_xml(&views))
    }
}

fn conditions_xml(x: &mut Xml, conditions: &[ConditionDoc]) {
    x.members("Conditions", conditions, |x, c| {
        x.text("Field", &c.field);
        if c.field == "path-pattern" || c.field == "host-header" {
            x.strings("Values", &c.values);
        }
        let Ok(cfg) = config_name(&c.field) else {
            return;
        };
        x.elem(cfg, |x| {
            if c.field == "query-string" {
                x.members("Values", &c.query, |x, (k, v)| {
                    x.opt("Key", k.as_deref()).text("Value", v);
                });
            } else {
                x.opt("HttpHeaderName", c.header_name.as_deref());
                x.strings("Values", &c.values);
            }
        });
    });
}

fn rules_xml(rules: &[RuleView]) -> String {
    let mut x = Xml::new();
    x.members("Rules", rules, |x, r| {
        x.text("RuleArn", &r.arn).text(
            "Priority",
            &r.priority
                .map_or_else(|| "default".to_string(), |n| n.to_string()),
        );
        conditions_xml(x, &r.conditions);
        actions_xml(x, "Actions", &r.actions);
        x.text(
            "IsDefault",
            if r.priority.is_none() {
                "true"
            } else {
                "false"
            },
        );
    });
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_both_forms() {
        let p = Params::from_pairs([
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/api/*"),
            ("Conditions.member.2.Field", "http-header"),
            (
                "Conditions.member.2.HttpHeaderConfig.HttpHeaderName",
                "X-Env",
            ),
            (
                "Conditions.member.2.HttpHeaderConfig.Values.member.1",
                "prod",
            ),
            ("Conditions.member.3.Field", "query-string"),
            (
                "Conditions.member.3.QueryStringConfig.Values.member.1.Key",
                "v",
            ),
            (
                "Conditions.member.3.QueryStringConfig.Values.member.1.Value",
                "1",
            ),
        ]);
        let c = parse_conditions(&p).unwrap();
        assert_eq!(c[0].values, vec!["/api/*".to_string()]);
        assert_eq!(c[1].header_name.as_deref(), Some("X-Env"));
        assert_eq!(c[2].query, vec![(Some("v".to_string()), "1".to_string())]);
        let mut x = Xml::new();
        conditions_xml(&mut x, &c);
        let s = x.finish();
        assert!(s.contains(
            "<PathPatternConfig><Values><member>/api/*</member></Values></PathPatternConfig>"
        ));

        let p = Params::from_pairs([
            ("Conditions.member.1.Field", "source-ip"),
            (
                "Conditions.member.1.SourceIpConfig.Values.member.1",
                "not-a-cidr",
            ),
        ]);
        assert!(parse_conditions(&p).is_err());
        let p = Params::from_pairs([("Conditions.member.1.Field", "cookie")]);
        assert!(parse_conditions(&p).is_err());
        let mut pairs = vec![(
            "Conditions.member.1.Field".to_string(),
            "host-header".to_string(),
        )];
        for i in 1..=6 {
            pairs.push((
                format!("Conditions.member.1.Values.member.{i}"),
                format!("h{i}.example.com"),
            ));
        }
        let p = Params::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        assert!(parse_conditions(&p).is_err());
        assert!(parse_priority("0").is_err());
        assert_eq!(parse_priority("50000").unwrap(), 50000);
    }
}
