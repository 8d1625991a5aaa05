//! A running VM's network at runtime: host forwards added and removed through the human
//! monitor (QMP has no native command for them), and screenshots.

use serde_json::json;

use super::Vm;
use crate::error::{Error, Result};
use crate::qemu;
use crate::spec::HostForward;

impl Vm {
    /// Adds a host port forward to the running VM's network (HMP `hostfwd_add`; QMP has
    /// no native command). Fails if the VM has no NIC or QEMU cannot listen there.
    pub fn add_host_forward(&mut self, fwd: HostForward) -> Result<()> {
        let Some(net) = &self.state.spec.network else {
            return Err(Error::InvalidSpec("the VM has no NIC".into()));
        };
        if net.host_forwards.contains(&fwd) {
            return Ok(());
        }
        self.hmp(&format!("hostfwd_add {} {}", qemu::NETDEV, fwd.rule()))?;
        if let Some(net) = &mut self.state.spec.network {
            net.host_forwards.push(fwd);
        }
        self.save()
    }

    /// Removes a host port forward from the running VM's network (HMP `hostfwd_remove`).
    pub fn remove_host_forward(&mut self, fwd: &HostForward) -> Result<()> {
        let Some(net) = &self.state.spec.network else {
            return Ok(());
        };
        if !net.host_forwards.contains(fwd) {
            return Ok(());
        }
        let rule = format!(
            "hostfwd_remove {} {}:{}:{}",
            qemu::NETDEV,
            fwd.proto.as_str(),
            fwd.host_addr,
            fwd.host_port
        );
        self.hmp(&rule)?;
        if let Some(net) = &mut self.state.spec.network {
            net.host_forwards.retain(|f| f != fwd);
        }
        self.save()
    }

    /// Runs a human monitor command; its text output, or an error when it printed one
    /// (HMP reports failures as text).
    fn hmp(&self, command: &str) -> Result<String> {
        let out = self.qmp()?.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command })),
        )?;
        let text = out.as_str().unwrap_or_default().trim().to_string();
        let lower = text.to_ascii_lowercase();
        if lower.contains("could not") || lower.contains("invalid") || lower.contains("error") {
            return Err(Error::Launch {
                message: format!("{command}: {text}"),
            });
        }
        Ok(text)
    }

    /// A PNG of the VM's screen (QMP `screendump`), or an error when the VM has no display.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let path = self.run_dir.join("screen.png");
        self.qmp()?.execute(
            "screendump",
            Some(json!({ "filename": path.to_string_lossy(), "format": "png" })),
        )?;
        let data = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let _ = std::fs::remove_file(&path);
        Ok(data)
    }
}
