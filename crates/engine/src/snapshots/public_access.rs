//! Block public access for snapshots: Get/Enable/DisableSnapshotBlockPublicAccess, a
//! per-account, per-region setting (crate::settings).
//!
//! - `block-new-sharing`: no snapshot may newly be shared with `all`; those already
//!   public stay public.
//! - `block-all-sharing`: the same, and snapshots already shared with `all` are treated as
//!   private (their `createVolumePermission` still says `all`, as on AWS, but nobody else
//!   sees them, creates volumes from them or reads them through the EBS direct API).
//! - `unblocked` (the default).

use catalog::ResourceRow;

use super::Grantee;
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

/// The setting that holds the state.
const SNAPSHOT_BPA: &str = "snapshot-block-public-access";

const STATES: &[&str] = &["block-all-sharing", "block-new-sharing", "unblocked"];

impl Cloud {
    /// GetSnapshotBlockPublicAccessState.
    pub fn snapshot_block_public_access_state(&self, caller: &Caller) -> Ec2Result<String> {
        self.region(&caller.region)?;
        self.snapshot_bpa(&caller.account_id, &caller.region)
    }

    fn snapshot_bpa(&self, account_id: &str, region: &str) -> Ec2Result<String> {
        Ok(self
            .account_setting(SNAPSHOT_BPA, account_id, region)?
            .unwrap_or_else(|| "unblocked".to_string()))
    }

    /// EnableSnapshotBlockPublicAccess: the new state.
    pub fn enable_snapshot_block_public_access(
        &self,
        caller: &Caller,
        state: &str,
    ) -> Ec2Result<String> {
        self.region(&caller.region)?;
        if !STATES.contains(&state) {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({state}) for parameter State is invalid. Valid values: {}",
                STATES.join(", ")
            )));
        }
        self.set_account_setting(caller, SNAPSHOT_BPA, state)?;
        Ok(state.to_string())
    }

    /// DisableSnapshotBlockPublicAccess: `unblocked`.
    pub fn disable_snapshot_block_public_access(&self, caller: &Caller) -> Ec2Result<String> {
        self.enable_snapshot_block_public_access(caller, "unblocked")
    }

    /// Refuses to share a snapshot of the caller's with `all` while block public access
    /// for snapshots is on.
    pub(crate) fn check_public_sharing(&self, caller: &Caller, add: &[Grantee]) -> Ec2Result<()> {
        if add.contains(&Grantee::All)
            && self.snapshot_bpa(&caller.account_id, &caller.region)? != "unblocked"
        {
            return Err(Ec2Error::client(
                "OperationNotPermitted",
                "You can't publicly share this snapshot because block public access for snapshots is enabled for this account and Region. To publicly share the snapshot, you must call the DisableSnapshotBlockPublicAccess API.",
            ));
        }
        Ok(())
    }

    /// A snapshot's grantees as they take effect: without `all` while its owner blocks
    /// all public sharing.
    pub(crate) fn effective_grantees(
        &self,
        row: &ResourceRow,
        grantees: &[String],
    ) -> Ec2Result<Vec<String>> {
        if grantees.iter().any(|g| g == "all")
            && self.snapshot_bpa(&row.account_id, &row.region)? == "block-all-sharing"
        {
            return Ok(grantees.iter().filter(|g| *g != "all").cloned().collect());
        }
        Ok(grantees.to_vec())
    }
}
