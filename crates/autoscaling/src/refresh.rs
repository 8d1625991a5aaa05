//! Instance refresh (placeholder until implemented).

use std::collections::HashMap;

use awsquery::{Caller, Params, QueryResult};
use engine::instances::InstanceView;

use crate::AutoScaling;
use crate::model::Group;

/// Handles the refresh actions; `None` if `action` is not one.
pub fn call(
    _svc: &AutoScaling,
    _caller: &Caller,
    _action: &str,
    _p: &Params,
) -> QueryResult<Option<Option<String>>> {
    Ok(None)
}

/// Advances the active refresh; returns how many instances above desired it wants.
pub fn tick(
    _svc: &AutoScaling,
    _caller: &Caller,
    _g: &mut Group,
    _views: &HashMap<String, InstanceView>,
    _now: i64,
) -> i64 {
    0
}
