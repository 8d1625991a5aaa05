//! Lifecycle hooks: PutLifecycleHook, DescribeLifecycleHooks, DeleteLifecycleHook,
//! CompleteLifecycleAction and RecordLifecycleActionHeartbeat. The controller holds
//! instances in `Pending:Wait` / `Terminating:Wait` until the action completes or its
//! heartbeat timeout applies the hook's DefaultResult.

use awsquery::{Caller, Params, QueryError, QueryResult, Xml};

use crate::AutoScaling;
use crate::controller::{LAUNCHING, TERMINATING};
use crate::model::Hook;

/// Handles the hook actions; `None` if `action` is not one.
pub fn call(
    svc: &AutoScaling,
    caller: &Caller,
    action: &str,
    p: &Params,
) -> QueryResult<Option<Option<String>>> {
    let empty = || Ok(Some(Some(String::new())));
    match action {
        "PutLifecycleHook" => {
            put(svc, caller, p)?;
            empty()
        }
        "DescribeLifecycleHooks" => describe(svc, caller, p).map(|x| Some(Some(x))),
        "DeleteLifecycleHook" => {
            let name = p.required("AutoScalingGroupName")?;
            let hook = p.required("LifecycleHookName")?;
            svc.update(caller, &name, |s| {
                let before = s.group.hooks.len();
                s.group.hooks.retain(|h| h.name != hook);
                if s.group.hooks.len() == before {
                    return Err(QueryError::validation(format!(
                        "No Lifecycle Hook found for name: {hook}"
                    )));
                }
                Ok(())
            })?;
            empty()
        }
        "CompleteLifecycleAction" => {
            let result = p.required("LifecycleActionResult")?;
            if result != "CONTINUE" && result != "ABANDON" {
                return Err(QueryError::validation(format!(
                    "Value '{result}' at 'lifecycleActionResult' failed to satisfy constraint: Member must be CONTINUE or ABANDON"
                )));
            }
            act(svc, caller, p, Some(result))?;
            empty()
        }
        "RecordLifecycleActionHeartbeat" => {
            act(svc, caller, p, None)?;
            empty()
        }
        _ => Ok(None),
    }
}

/// One hook from `LifecycleHookSpecificationList.member.N` or PutLifecycleHook.
pub fn parse_hook(p: &Params) -> QueryResult<Hook> {
    parse_hook_over(p, None)
}

/// A hook from a request; what it leaves out comes from `old` (PutLifecycleHook on an
/// existing hook) or the defaults.
fn parse_hook_over(p: &Params, old: Option<&Hook>) -> QueryResult<Hook> {
    let transition = match (p.string("LifecycleTransition"), old) {
        (Some(t), _) => t,
        (None, Some(o)) => o.transition.clone(),
        (None, None) => return Err(QueryError::missing("LifecycleTransition")),
    };
    if transition != LAUNCHING && transition != TERMINATING {
        return Err(QueryError::validation(format!(
            "Invalid Lifecycle Transition: {transition}"
        )));
    }
    let default_result = p
        .string("DefaultResult")
        .or_else(|| old.map(|o| o.default_result.clone()))
        .unwrap_or_else(|| "ABANDON".into());
    if default_result != "CONTINUE" && default_result != "ABANDON" {
        return Err(QueryError::validation(format!(
            "Invalid DefaultResult: {default_result}"
        )));
    }
    let heartbeat = p
        .int("HeartbeatTimeout")?
        .or_else(|| old.map(|o| o.heartbeat_timeout))
        .unwrap_or(3600);
    if !(30..=7200).contains(&heartbeat) {
        return Err(QueryError::validation(format!(
            "Heartbeat timeout must be between 30 and 7200 seconds, got {heartbeat}."
        )));
    }
    let keep = |k: &str, f: fn(&Hook) -> Option<String>| {
        p.string(k)
            .filter(|s| !s.is_empty())
            .or_else(|| if p.has(k) { None } else { old.and_then(f) })
    };
    Ok(Hook {
        name: p.required("LifecycleHookName")?,
        transition,
        notification_target_arn: keep("NotificationTargetARN", |o| {
            o.notification_target_arn.clone()
        }),
        role_arn: keep("RoleARN", |o| o.role_arn.clone()),
        notification_metadata: keep("NotificationMetadata", |o| o.notification_metadata.clone()),
        heartbeat_timeout: heartbeat,
        default_result,
    })
}

fn put(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let hook_name = p.required("LifecycleHookName")?;
    svc.update(caller, &name, |s| {
        let existing = s.group.hooks.iter().position(|h| h.name == hook_name);
        let hook = parse_hook_over(p, existing.map(|i| &s.group.hooks[i]))?;
        match existing {
            Some(i) => s.group.hooks[i] = hook,
            None => {
                if s.group.hooks.len() >= 50 {
                    return Err(QueryError::new(
                        "LimitExceeded",
                        "The maximum number of lifecycle hooks (50) for the group has been reached.",
                    ));
                }
                s.group.hooks.push(hook);
            }
        }
        Ok(())
    })
}

/// One `LifecycleHook`.
fn render_hook(x: &mut Xml, group: &str, h: &Hook) {
    x.text("LifecycleHookName", &h.name)
        .text("AutoScalingGroupName", group)
        .text("LifecycleTransition", &h.transition)
        .opt(
            "NotificationTargetARN",
            h.notification_target_arn.as_deref(),
        )
        .opt("RoleARN", h.role_arn.as_deref())
        .opt("NotificationMetadata", h.notification_metadata.as_deref())
        .text("HeartbeatTimeout", &h.heartbeat_timeout.to_string())
        .text("GlobalTimeout", &h.global_timeout().to_string())
        .text("DefaultResult", &h.default_result);
}

fn describe(svc: &AutoScaling, caller: &Caller, p: &Params) -> QueryResult<String> {
    let name = p.required("AutoScalingGroupName")?;
    let names = p.strings("LifecycleHookNames")?;
    let g = svc.find(caller, &name)?.group;
    let hooks: Vec<&Hook> = g
        .hooks
        .iter()
        .filter(|h| names.is_empty() || names.contains(&h.name))
        .collect();
    let mut x = Xml::new();
    x.members("LifecycleHooks", &hooks, |x, h| render_hook(x, &g.name, h));
    Ok(x.finish())
}

/// CompleteLifecycleAction (`result`) or RecordLifecycleActionHeartbeat (`None`).
fn act(svc: &AutoScaling, caller: &Caller, p: &Params, result: Option<String>) -> QueryResult<()> {
    let name = p.required("AutoScalingGroupName")?;
    let hook = p.required("LifecycleHookName")?;
    let token = p.string("LifecycleActionToken").filter(|s| !s.is_empty());
    let instance = p.string("InstanceId").filter(|s| !s.is_empty());
    if token.is_none() && instance.is_none() {
        return Err(QueryError::validation(
            "Either LifecycleActionToken or InstanceId must be specified.",
        ));
    }
    svc.update(caller, &name, |s| {
        let g = &mut s.group;
        let h = g
            .hooks
            .iter()
            .find(|h| h.name == hook)
            .cloned()
            .ok_or_else(|| {
                QueryError::validation(format!("No Lifecycle Hook found for name: {hook}"))
            })?;
        let now = catalog::now_ms();
        let m = g
            .instances
            .iter_mut()
            .find(|m| {
                m.wait.as_ref().is_some_and(|w| {
                    w.hook == hook
                        && w.result.is_none()
                        && (token.as_deref().is_none_or(|t| t == w.token))
                        && (instance.as_deref().is_none_or(|i| i == m.id))
                }) && (m.lifecycle == "Pending:Wait" || m.lifecycle == "Terminating:Wait")
            })
            .ok_or_else(|| {
                QueryError::validation(format!(
                    "No active Lifecycle Action found with token {}",
                    token.clone().or(instance.clone()).unwrap_or_default()
                ))
            })?;
        if let Some(w) = m.wait.as_mut() {
            match &result {
                Some(r) => w.result = Some(r.clone()),
                None => w.deadline_ms = now + h.heartbeat_timeout * 1000,
            }
        }
        Ok(())
    })
}
