//! Where scaling policies evaluate: the controller calls [`tick`] once a second after it
//! has processed every group. Policies (simple, step, target tracking) and scheduled
//! actions read groups with `AutoScaling::group`/`all_groups` and change capacity with
//! `AutoScaling::set_desired`, which records the cause in the next activities.

use crate::AutoScaling;

/// Evaluates scaling policies (none yet).
pub fn tick(_svc: &AutoScaling) {}
