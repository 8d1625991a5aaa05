//! GetInstanceUefiData: an instance that boots with legacy BIOS has no UEFI variable store,
//! which EC2 answers with no `UefiData`. openami's UEFI machines keep their variables in
//! OVMF's own format, not EC2's (the python-uefivars "AMZNUEFI" blob), so exporting them
//! is refused rather than answered in a format clients cannot read.

use super::doc_of;
use crate::{Caller, Cloud, Ec2Error, Ec2Result};

impl Cloud {
    /// GetInstanceUefiData: `None` for an instance without a UEFI variable store.
    pub fn instance_uefi_data(&self, caller: &Caller, id: &str) -> Ec2Result<Option<String>> {
        let row = self.owned_instance(caller, id)?;
        let d = doc_of(&row)?;
        match d.boot_mode.as_deref() {
            None | Some("legacy-bios") => Ok(None),
            Some(_) => Err(Ec2Error::client(
                "UnsupportedOperation",
                format!("Exporting the UEFI variable store of '{id}' is not supported by openami"),
            )),
        }
    }
}
