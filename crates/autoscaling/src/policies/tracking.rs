//! Target tracking: the metric periods a group's policies see, and the decision a history
//! of them makes (a pure function, so the rule is testable and deterministic).
//!
//! The rule (documented in the module above): scale out when the last
//! `out_periods` values all exceed the target, to `ceil(n × metric / target)` where `n`
//! is the number of instances the metric was measured on; scale in when the last
//! `in_periods` values are all below 0.9 × target, to the smallest capacity that keeps
//! the projected metric at or below the target (never below min, and only when nothing
//! is warming up). A period without data is no data: it breaks a run, except for
//! `ALBRequestCountPerTarget`, where no data counts as zero.

use std::collections::{HashMap, VecDeque};

use engine::instances::CpuSample;

/// How many periods a decision needs (from the environment, see [`Tuning::from_env`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Length of one metric period in milliseconds (CloudWatch's 60 s by default).
    pub period_ms: i64,
    /// Consecutive periods above the target before scaling out (3).
    pub out_periods: usize,
    /// Consecutive periods below 0.9 × target before scaling in (15).
    pub in_periods: usize,
}

fn env_number(name: &str, default: i64, min: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= min)
        .unwrap_or(default)
}

impl Tuning {
    /// `OPENAMI_ASG_METRIC_PERIOD_SECONDS` (60), `OPENAMI_ASG_SCALE_OUT_PERIODS` (3) and
    /// `OPENAMI_ASG_SCALE_IN_PERIODS` (15): AWS's alarm windows unless a test shortens them.
    pub fn from_env() -> Tuning {
        Tuning {
            period_ms: env_number("OPENAMI_ASG_METRIC_PERIOD_SECONDS", 60, 1) * 1000,
            out_periods: env_number("OPENAMI_ASG_SCALE_OUT_PERIODS", 3, 1) as usize,
            in_periods: env_number("OPENAMI_ASG_SCALE_IN_PERIODS", 15, 1) as usize,
        }
    }

    /// How many periods of history a policy keeps.
    pub fn keep(&self) -> usize {
        self.out_periods.max(self.in_periods)
    }
}

/// What one policy says about its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vote {
    /// Raise desired capacity to this.
    Out(i64),
    /// Lower desired capacity to this.
    In(i64),
    /// Leave it.
    Hold,
}

/// The inputs of a decision besides the history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Situation {
    /// `TargetValue`.
    pub target: f64,
    /// Instances the latest value was measured on (InService, past their warmup).
    pub measured: i64,
    /// The group's desired capacity now.
    pub desired: i64,
    /// Its bounds.
    pub min: i64,
    /// Its bounds.
    pub max: i64,
    /// `DisableScaleIn`.
    pub disable_scale_in: bool,
    /// Nothing is warming up or pending and the last change is older than the warmup.
    pub scale_in_allowed: bool,
    /// A period without data counts as zero (`ALBRequestCountPerTarget`).
    pub no_data_is_zero: bool,
}

/// A policy's vote on its history (oldest first).
pub fn vote(history: &[Option<f64>], s: &Situation, tuning: &Tuning) -> Vote {
    if s.target <= 0.0 {
        return Vote::Hold;
    }
    let tail = |n: usize| -> Option<Vec<f64>> {
        if history.len() < n {
            return None;
        }
        history[history.len() - n..]
            .iter()
            .map(|v| v.or(if s.no_data_is_zero { Some(0.0) } else { None }))
            .collect()
    };
    let needed = |metric: f64| -> i64 {
        let raw = s.measured as f64 * metric / s.target;
        // Tolerate floating noise so that exactly-on-target stays put.
        (raw - 1e-9).ceil().max(0.0) as i64
    };
    if let Some(values) = tail(tuning.out_periods)
        && values.iter().all(|v| *v > s.target)
        && s.measured > 0
    {
        let latest = values[values.len() - 1];
        let want = needed(latest).min(s.max);
        return if want > s.desired {
            Vote::Out(want)
        } else {
            Vote::Hold
        };
    }
    if s.disable_scale_in || !s.scale_in_allowed {
        return Vote::Hold;
    }
    if let Some(values) = tail(tuning.in_periods)
        && values.iter().all(|v| *v < 0.9 * s.target)
    {
        let latest = values[values.len() - 1];
        let want = needed(latest).max(s.min);
        return if want < s.desired {
            Vote::In(want)
        } else {
            Vote::Hold
        };
    }
    Vote::Hold
}

/// The group's decision from its policies' votes: out if any says out (to the largest),
/// in only if every policy says in (to the largest of their capacities).
pub fn combine(votes: &[Vote]) -> Vote {
    let out = votes
        .iter()
        .filter_map(|v| if let Vote::Out(n) = v { Some(*n) } else { None })
        .max();
    if let Some(n) = out {
        return Vote::Out(n);
    }
    if !votes.is_empty() && votes.iter().all(|v| matches!(v, Vote::In(_))) {
        let n = votes
            .iter()
            .filter_map(|v| if let Vote::In(n) = v { Some(*n) } else { None })
            .max();
        if let Some(n) = n {
            return Vote::In(n);
        }
    }
    Vote::Hold
}

/// What the sampler remembers of one group between ticks (in memory: a restart starts
/// new periods, as a new CloudWatch alarm would).
#[derive(Debug, Default)]
pub struct GroupMetrics {
    /// When the current period began.
    pub period_start_ms: i64,
    /// Per instance: when and what its CPU counter read at the start of its period.
    pub cpu: HashMap<String, (i64, CpuSample)>,
    /// Per target group ARN: its request counter at the start of the period.
    pub requests: HashMap<String, u64>,
    /// Per policy ARN: its metric values, oldest first.
    pub history: HashMap<String, VecDeque<Option<f64>>>,
}

impl GroupMetrics {
    /// Appends a period's value to a policy's history, keeping `keep` values.
    pub fn push(&mut self, policy_arn: &str, value: Option<f64>, keep: usize) {
        let h = self.history.entry(policy_arn.to_string()).or_default();
        h.push_back(value);
        while h.len() > keep.max(1) {
            h.pop_front();
        }
    }

    /// Forgets every policy's history (after the group's capacity changed, a new run of
    /// periods must build up before the next decision).
    pub fn reset_history(&mut self) {
        self.history.clear();
    }
}

/// Mean of some values (`None` when there are none).
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tuning = Tuning {
        period_ms: 60_000,
        out_periods: 3,
        in_periods: 5,
    };

    fn sit(measured: i64, desired: i64) -> Situation {
        Situation {
            target: 50.0,
            measured,
            desired,
            min: 1,
            max: 10,
            disable_scale_in: false,
            scale_in_allowed: true,
            no_data_is_zero: false,
        }
    }

    #[test]
    fn scale_out_needs_consecutive_breaches() {
        let s = sit(2, 2);
        assert_eq!(
            vote(&[Some(90.0), Some(90.0)], &s, &T),
            Vote::Hold,
            "two periods are not enough"
        );
        assert_eq!(
            vote(&[Some(90.0), Some(40.0), Some(90.0)], &s, &T),
            Vote::Hold
        );
        assert_eq!(
            vote(&[Some(90.0), None, Some(90.0)], &s, &T),
            Vote::Hold,
            "no data breaks a run"
        );
        // ceil(2 × 90 / 50) = 4.
        assert_eq!(
            vote(&[Some(80.0), Some(90.0), Some(90.0)], &s, &T),
            Vote::Out(4)
        );
        // Bounded by max.
        assert_eq!(vote(&[Some(100.0); 3], &sit(8, 8), &T), Vote::Out(10));
        // Warming instances already counted in desired: no further scale out.
        assert_eq!(vote(&[Some(90.0); 3], &sit(2, 4), &T), Vote::Hold);
        assert_eq!(
            vote(&[Some(90.0); 3], &sit(0, 0), &T),
            Vote::Hold,
            "nothing measured"
        );
    }

    #[test]
    fn scale_in_is_slow_and_bounded() {
        let s = sit(4, 4);
        assert_eq!(
            vote(&[Some(10.0); 4], &s, &T),
            Vote::Hold,
            "four periods are not enough"
        );
        // ceil(4 × 20 / 50) = 2.
        assert_eq!(vote(&[Some(20.0); 5], &s, &T), Vote::In(2));
        // 44 is below 0.9 × 50 = 45: ceil(4 × 44 / 50) = 4 → nothing to remove.
        assert_eq!(vote(&[Some(44.0); 5], &s, &T), Vote::Hold);
        assert_eq!(
            vote(&[Some(46.0); 5], &s, &T),
            Vote::Hold,
            "above 0.9 × target"
        );
        assert_eq!(
            vote(&[Some(0.0); 5], &s, &T),
            Vote::In(1),
            "never below min"
        );
        assert_eq!(
            vote(&[None; 5], &s, &T),
            Vote::Hold,
            "no scale in on missing data"
        );
        let mut alb = s;
        alb.no_data_is_zero = true;
        assert_eq!(
            vote(&[None; 5], &alb, &T),
            Vote::In(1),
            "ALB: no data is zero"
        );
        let mut off = s;
        off.disable_scale_in = true;
        assert_eq!(vote(&[Some(0.0); 5], &off, &T), Vote::Hold);
        let mut warming = s;
        warming.scale_in_allowed = false;
        assert_eq!(vote(&[Some(0.0); 5], &warming, &T), Vote::Hold);
    }

    #[test]
    fn several_policies() {
        assert_eq!(
            combine(&[Vote::Out(3), Vote::In(1), Vote::Out(5)]),
            Vote::Out(5)
        );
        assert_eq!(combine(&[Vote::In(2), Vote::Hold]), Vote::Hold);
        assert_eq!(combine(&[Vote::In(2), Vote::In(3)]), Vote::In(3));
        assert_eq!(combine(&[]), Vote::Hold);
    }

    #[test]
    fn history_is_bounded() {
        let mut g = GroupMetrics::default();
        for i in 0..10 {
            g.push("p", Some(f64::from(i)), 3);
        }
        assert_eq!(
            g.history["p"].iter().copied().collect::<Vec<_>>(),
            [Some(7.0), Some(8.0), Some(9.0)]
        );
        g.reset_history();
        assert!(g.history.is_empty());
        assert_eq!(mean(&[1.0, 3.0]), Some(2.0));
        assert_eq!(mean(&[]), None);
    }
}
