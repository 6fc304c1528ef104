//! IPVS's `net.ipv4.vs.*` settings: `xvsadm sysctl NAME=VALUE`, the `[sysctl]` of a file, and
//! their values in snapshots.

use std::collections::BTreeMap;

use super::*;

impl Control {
    /// Sets one setting; the dataplane gets it at once, or nothing changes.
    pub(super) fn set_sysctl(&mut self, name: &str, value: u64) -> Response {
        let old = self.lb.sysctl.clone();
        if let Err(e) = self.lb.sysctl.set(name, value) {
            return api_error(&Error::Invalid(e));
        }
        if let Err(e) = self.write_config() {
            self.lb.sysctl = old;
            let _ = self.write_config();
            return dp_error(&e);
        }
        tracing::info!(name, value, "sysctl set");
        Response::Ok
    }

    /// Every setting by name.
    pub(super) fn sysctl_values(&self) -> BTreeMap<String, u64> {
        xvs_core::Sysctl::NAMES.iter().filter_map(|n| Some((n.to_string(), self.lb.sysctl.get(n)?))).collect()
    }
}

/// The settings `wanted` asks for over `current`, and a change line for each that differs.
pub(super) fn planned(
    current: &xvs_core::Sysctl,
    wanted: &BTreeMap<String, u64>,
) -> Result<(xvs_core::Sysctl, Vec<String>), String> {
    let mut next = current.clone();
    let mut changes = Vec::new();
    for (name, value) in wanted {
        next.set(name, *value).map_err(|e| format!("sysctl: {e}"))?;
        if current.get(name) != next.get(name) {
            changes.push(format!("~ sysctl {name} {value}"));
        }
    }
    Ok((next, changes))
}
