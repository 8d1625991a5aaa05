//! The arithmetic of simple and step scaling: what a policy's adjustment makes of the
//! current desired capacity, and which step of a step policy a metric value selects.

use serde::{Deserialize, Serialize};

/// How `ScalingAdjustment` is read (`AdjustmentType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the wire names
pub enum AdjustmentType {
    /// Add the adjustment (negative removes).
    ChangeInCapacity,
    /// The adjustment is the new capacity.
    ExactCapacity,
    /// Add this percentage of the current capacity.
    PercentChangeInCapacity,
}

impl AdjustmentType {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<AdjustmentType> {
        match s {
            "ChangeInCapacity" => Some(Self::ChangeInCapacity),
            "ExactCapacity" => Some(Self::ExactCapacity),
            "PercentChangeInCapacity" => Some(Self::PercentChangeInCapacity),
            _ => None,
        }
    }
}

/// One step of a step scaling policy (bounds relative to the breach threshold).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Step {
    /// `MetricIntervalLowerBound` (none: minus infinity).
    pub lower: Option<f64>,
    /// `MetricIntervalUpperBound` (none: plus infinity).
    pub upper: Option<f64>,
    /// `ScalingAdjustment`.
    pub adjustment: i64,
}

/// The new capacity (before clamping to min and max) for an adjustment of `current`.
/// Percentages as AWS rounds them: a change between 0 and 1 instance (in either
/// direction) becomes 1, larger ones are truncated toward zero; then a
/// `MinAdjustmentMagnitude` raises a smaller change to it.
pub fn adjusted(
    current: i64,
    kind: AdjustmentType,
    adjustment: i64,
    min_magnitude: Option<i64>,
) -> i64 {
    match kind {
        AdjustmentType::ChangeInCapacity => current.saturating_add(adjustment),
        AdjustmentType::ExactCapacity => adjustment,
        AdjustmentType::PercentChangeInCapacity => {
            let raw = current as f64 * adjustment as f64 / 100.0;
            let mut change = if raw == 0.0 {
                0
            } else if raw.abs() < 1.0 {
                raw.signum() as i64
            } else {
                raw.trunc() as i64
            };
            if let Some(m) = min_magnitude
                && change != 0
                && change.abs() < m
            {
                change = change.signum() * m;
            }
            current.saturating_add(change)
        }
    }
}

/// `value` clamped to `[min, max]` (policies never fail on the bounds; they stop at them).
pub fn clamp(value: i64, min: i64, max: i64) -> i64 {
    value.max(min).min(max.max(min))
}

/// The step a metric value selects, given the breach threshold. Above the threshold a
/// step's lower bound is inclusive and its upper exclusive; below it, the reverse.
pub fn select_step(steps: &[Step], metric: f64, threshold: f64) -> Option<&Step> {
    let d = metric - threshold;
    steps.iter().find(|s| {
        let lower = s.lower.unwrap_or(f64::NEG_INFINITY);
        let upper = s.upper.unwrap_or(f64::INFINITY);
        if d >= 0.0 {
            lower <= d && d < upper
        } else {
            lower < d && d <= upper
        }
    })
}

/// Checks a step policy's steps as AWS does: each lower bound below its upper bound, at
/// most one open end on each side, and no overlaps or gaps between consecutive steps.
pub fn validate_steps(steps: &[Step]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("StepAdjustments is required for StepScaling policies.".into());
    }
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_by(|a, b| {
        a.lower
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&b.lower.unwrap_or(f64::NEG_INFINITY))
    });
    if steps.iter().filter(|s| s.lower.is_none()).count() > 1 {
        return Err("Only one step adjustment can have a null lower bound.".into());
    }
    if steps.iter().filter(|s| s.upper.is_none()).count() > 1 {
        return Err("Only one step adjustment can have a null upper bound.".into());
    }
    if steps.iter().all(|s| s.lower.is_some() && s.upper.is_some()) {
        return Err("At least one step adjustment must have a null lower or upper bound.".into());
    }
    for s in &sorted {
        if let (Some(l), Some(u)) = (s.lower, s.upper)
            && l >= u
        {
            return Err(format!(
                "The lower bound ({l}) of a step adjustment must be less than its upper bound ({u})."
            ));
        }
    }
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        match (a.upper, b.lower) {
            (Some(u), Some(l)) if u == l => {}
            (Some(u), Some(l)) if u > l => {
                return Err("Step adjustment intervals must not overlap.".into());
            }
            _ => return Err("Step adjustment intervals must not have gaps.".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use AdjustmentType::*;

    #[test]
    fn adjustments_and_rounding() {
        assert_eq!(adjusted(3, ChangeInCapacity, 2, None), 5);
        assert_eq!(adjusted(3, ChangeInCapacity, -5, None), -2);
        assert_eq!(adjusted(3, ExactCapacity, 7, None), 7);
        // 10% of 4 = 0.4 → 1; 50% of 5 = 2.5 → 2; -10% of 4 → -1; -50% of 5 → -2.
        assert_eq!(adjusted(4, PercentChangeInCapacity, 10, None), 5);
        assert_eq!(adjusted(5, PercentChangeInCapacity, 50, None), 7);
        assert_eq!(adjusted(4, PercentChangeInCapacity, -10, None), 3);
        assert_eq!(adjusted(5, PercentChangeInCapacity, -50, None), 3);
        assert_eq!(adjusted(0, PercentChangeInCapacity, 50, None), 0);
        // MinAdjustmentMagnitude raises small percentage changes.
        assert_eq!(adjusted(10, PercentChangeInCapacity, 10, Some(3)), 13);
        assert_eq!(adjusted(10, PercentChangeInCapacity, -10, Some(3)), 7);
        assert_eq!(adjusted(10, PercentChangeInCapacity, 50, Some(3)), 15);
        assert_eq!(clamp(-2, 1, 4), 1);
        assert_eq!(clamp(9, 1, 4), 4);
        assert_eq!(clamp(3, 1, 4), 3);
    }

    fn step(lower: Option<f64>, upper: Option<f64>, adjustment: i64) -> Step {
        Step {
            lower,
            upper,
            adjustment,
        }
    }

    #[test]
    fn steps() {
        let steps = [
            step(None, Some(-10.0), -2),
            step(Some(-10.0), Some(0.0), -1),
            step(Some(0.0), Some(10.0), 1),
            step(Some(10.0), None, 3),
        ];
        assert!(validate_steps(&steps).is_ok());
        assert_eq!(
            select_step(&steps, 55.0, 50.0).map(|s| s.adjustment),
            Some(1)
        );
        assert_eq!(
            select_step(&steps, 50.0, 50.0).map(|s| s.adjustment),
            Some(1)
        );
        assert_eq!(
            select_step(&steps, 60.0, 50.0).map(|s| s.adjustment),
            Some(3)
        );
        assert_eq!(
            select_step(&steps, 45.0, 50.0).map(|s| s.adjustment),
            Some(-1)
        );
        assert_eq!(
            select_step(&steps, 41.0, 50.0).map(|s| s.adjustment),
            Some(-1)
        );
        assert_eq!(
            select_step(&steps, 40.0, 50.0).map(|s| s.adjustment),
            Some(-2),
            "upper bound inclusive below the threshold"
        );
        let only_up = [step(Some(0.0), None, 1)];
        assert_eq!(select_step(&only_up, 40.0, 50.0), None);
        assert!(validate_steps(&only_up).is_ok());
        assert!(validate_steps(&[]).is_err());
        assert!(
            validate_steps(&[step(Some(0.0), Some(5.0), 1), step(Some(6.0), None, 2)]).is_err(),
            "gap"
        );
        assert!(
            validate_steps(&[step(Some(0.0), Some(7.0), 1), step(Some(6.0), None, 2)]).is_err(),
            "overlap"
        );
        assert!(validate_steps(&[step(None, Some(0.0), 1), step(None, Some(5.0), 2)]).is_err());
        assert!(
            validate_steps(&[step(Some(0.0), Some(5.0), 1)]).is_err(),
            "no open end"
        );
        assert!(
            validate_steps(&[step(Some(5.0), Some(5.0), 1), step(Some(5.0), None, 1)]).is_err()
        );
    }
}
