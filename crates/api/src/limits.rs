//! Per-request limits: a request rate limit per account and a cap on EBS direct
//! `PutSnapshotBlock` calls in flight per snapshot.
//!
//! * **Rate**: a token bucket per account (`--rate-limit` tokens per second, `--rate-burst`
//!   tokens at most), taken after SigV4 verification so that unauthenticated requests
//!   never spend an account's budget. A refused call answers the service's throttling
//!   error: EC2 `RequestLimitExceeded` (HTTP 503), the query services `Throttling` (400),
//!   SSM `ThrottlingException` (400), EBS direct `RequestThrottledException`
//!   (`ACCOUNT_THROTTLED`, 400). Off when the rate is 0.
//! * **Uploads**: at most `--ebs-upload-concurrency` blocks of one snapshot are written at
//!   once; more answer `RequestThrottledException` (`RESOURCE_LEVEL_THROTTLE`) before
//!   anything is stored, so the client's retry loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::Ec2Error;
use engine::ebs::EbsError;

/// The operator's limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitConfig {
    /// Requests per second per account; 0 disables the rate limit.
    pub rate: f64,
    /// Bucket size (requests an idle account may make at once); at least 1.
    pub burst: f64,
    /// PutSnapshotBlock calls in flight per snapshot; 0 disables the cap.
    pub ebs_upload_concurrency: usize,
}

/// The limits' state, shared by every request path.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    config: LimitConfig,
    /// Per account: tokens left and when they were counted.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Per snapshot: blocks being written.
    uploads: Arc<Mutex<HashMap<String, usize>>>,
}

impl Limits {
    pub(crate) fn new(config: LimitConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Takes one token from `account`'s bucket; false when it is empty.
    pub(crate) fn admit(&self, account: &str) -> bool {
        self.admit_at(account, Instant::now())
    }

    fn admit_at(&self, account: &str, now: Instant) -> bool {
        let rate = self.config.rate;
        if rate <= 0.0 {
            return true;
        }
        let burst = self.config.burst.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.entry(account.to_string()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// EC2's refusal of a call over the account's rate.
    pub(crate) fn ec2_admit(&self, account: &str) -> Result<(), Ec2Error> {
        if self.admit(account) {
            return Ok(());
        }
        Err(Ec2Error {
            code: "RequestLimitExceeded".into(),
            message: "Request limit exceeded.".into(),
            status: 503,
        })
    }

    /// The query services' refusal (`Throttling`, 400).
    pub(crate) fn query_admit(&self, account: &str) -> Result<(), awsquery::QueryError> {
        if self.admit(account) {
            return Ok(());
        }
        Err(awsquery::QueryError::new("Throttling", "Rate exceeded").with_status(400))
    }

    /// EBS direct's refusal (`RequestThrottledException`, `ACCOUNT_THROTTLED`).
    pub(crate) fn ebs_admit(&self, account: &str) -> Result<(), EbsError> {
        if self.admit(account) {
            return Ok(());
        }
        Err(throttled("ACCOUNT_THROTTLED", "Rate exceeded."))
    }

    /// A slot for writing one block of `snapshot`, released when dropped; a throttling
    /// error when the snapshot already has its maximum of blocks in flight.
    pub(crate) fn upload_slot(&self, snapshot: &str) -> Result<UploadSlot, EbsError> {
        let cap = self.config.ebs_upload_concurrency;
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let in_flight = uploads.entry(snapshot.to_string()).or_insert(0);
        if cap > 0 && *in_flight >= cap {
            return Err(throttled(
                "RESOURCE_LEVEL_THROTTLE",
                &format!(
                    "Too many concurrent PutSnapshotBlock requests for {snapshot} (at most {cap}); retry."
                ),
            ));
        }
        *in_flight += 1;
        Ok(UploadSlot {
            uploads: Arc::clone(&self.uploads),
            snapshot: snapshot.to_string(),
        })
    }
}

fn throttled(reason: &'static str, message: &str) -> EbsError {
    EbsError {
        kind: "RequestThrottledException",
        status: 400,
        reason: Some(reason),
        message: message.to_string(),
    }
}

/// One block write in flight (see [`Limits::upload_slot`]).
pub(crate) struct UploadSlot {
    uploads: Arc<Mutex<HashMap<String, usize>>>,
    snapshot: String,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = uploads.get_mut(&self.snapshot) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                uploads.remove(&self.snapshot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refuses_past_burst_and_refills() {
        let limits = Limits::new(LimitConfig {
            rate: 2.0,
            burst: 3.0,
            ebs_upload_concurrency: 0,
        });
        let t = Instant::now();
        assert!((0..3).all(|_| limits.admit_at("a", t)));
        assert!(!limits.admit_at("a", t));
        assert!(limits.admit_at("b", t), "accounts have their own buckets");
        assert!(limits.admit_at("a", t + Duration::from_millis(500)));
        assert!(!limits.admit_at("a", t + Duration::from_millis(500)));
    }

    #[test]
    fn off_by_default() {
        let limits = Limits::new(LimitConfig::default());
        assert!((0..10_000).all(|_| limits.admit("a")));
    }

    #[test]
    fn upload_slots_are_capped_and_released() {
        let limits = Limits::new(LimitConfig {
            ebs_upload_concurrency: 2,
            ..LimitConfig::default()
        });
        let a = limits.upload_slot("snap-1").unwrap();
        let _b = limits.upload_slot("snap-1").unwrap();
        let e = limits.upload_slot("snap-1").err().unwrap();
        assert_eq!(
            (e.kind, e.reason),
            ("RequestThrottledException", Some("RESOURCE_LEVEL_THROTTLE"))
        );
        assert!(limits.upload_slot("snap-2").is_ok());
        drop(a);
        assert!(limits.upload_slot("snap-1").is_ok());
    }
}
