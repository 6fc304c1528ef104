//! Services on standby while this director is a VRRP backup for their VIP: no new
//! connections; established and synchronised ones are still forwarded.

use super::*;

impl Control {
    /// Puts the services `keys` on standby, or back in service. Services not configured (yet)
    /// take the state when they are.
    pub fn set_standby(&mut self, keys: &[ServiceKey], standby: bool) -> Result<(), String> {
        let Some(dp) = self.dp.as_mut() else { return Ok(()) };
        dp.publisher.set_standby(&mut dp.director, &self.lb.services, keys, standby).map_err(|e| e.to_string())
    }
}
