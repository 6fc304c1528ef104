//! The trash of removed servers under lblc/lblcr: the dataplane schedules, so its table (not
//! the core's) says which removed servers an entry still names; those stay in the trash, as the
//! kernel's entries keep theirs (testdata/kernel/trash-lblc-6.12.txt).

use std::collections::HashSet;

use super::*;

impl Control {
    /// Tells the core which trashed servers the dataplane's lblc/lblcr entries name, when the
    /// trash check is due (every 60 s while it holds a server). Only the entries of services
    /// that schedule by lblc or lblcr now count: a deleted or rescheduled service's entries
    /// hold nothing, as the kernel flushes them with the scheduler.
    pub(super) fn note_held_servers(&mut self, now: Instant) {
        let Some(dp) = self.dp.as_ref() else { return };
        if !self.lb.services.trash_check_due(now) {
            return;
        }
        let locality: HashSet<u32> = self.lb.services.locality_services().map(|s| s.index()).collect();
        if locality.is_empty() {
            self.lb.services.set_held_elsewhere([]);
            return;
        }
        match dp.director.lblc_slots() {
            Ok(slots) => {
                let slots: HashSet<u32> =
                    slots.into_iter().filter(|(svc, _)| locality.contains(svc)).map(|(_, d)| d).collect();
                let held: Vec<xvs_core::DestId> =
                    self.lb.services.trash().filter(|(id, _)| slots.contains(&id.index())).map(|(id, _)| id).collect();
                self.lb.services.set_held_elsewhere(held);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the lblc table: removed servers are kept as it last said")
            }
        }
    }
}
