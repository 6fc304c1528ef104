//! The trash of removed servers under lblc/lblcr: the dataplane schedules, so its table (not
//! the core's) says which removed servers an entry still names; those stay in the trash, as the
//! kernel's entries keep theirs (testdata/kernel/trash-lblc-6.12.txt).

use super::*;

impl Control {
    /// Tells the core which trashed servers the dataplane's lblc/lblcr entries name. Reads the
    /// table only when the trash check is due (every 60 s while it holds a server) and an
    /// lblc/lblcr service exists.
    pub(super) fn note_held_servers(&mut self, now: Instant) {
        let Some(dp) = self.dp.as_ref() else { return };
        if !self.lb.services.trash_may_be_held(now) {
            return;
        }
        match dp.director.lblc_slots() {
            Ok(slots) => {
                let held: Vec<xvs_core::DestId> =
                    self.lb.services.trash().filter(|(id, _)| slots.contains(&id.index())).map(|(id, _)| id).collect();
                self.lb.services.set_held_elsewhere(held);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the lblc table: removed servers it names may be freed"),
        }
    }
}
