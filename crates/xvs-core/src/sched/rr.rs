//! rr — round robin (`ip_vs_rr.c`, reference §2.1).
//!
//! A cursor remembers the server picked last (initially the list head). Each pick walks the list
//! circularly from the server after the cursor and takes the first one that is not overloaded
//! and has a positive weight; the walk ends after looking at the cursor's own server, so a lone
//! usable server is picked again. Because new servers go to the head of the list, a fresh
//! service hands its first connection to the server added last.

use super::{DestChange, SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

/// Round-robin state: the cursor, `None` standing for the list head.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    cursor: Option<DestId>,
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedKind {
        SchedKind::Rr
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        let n = dests.len();
        // Start after the cursor; from the head, one pass covers everything.
        let start = self.cursor.and_then(|c| dests.position(c)).map_or(0, |p| p + 1);
        let picked = (0..n).map(|i| dests.at((start + i) % n)).find(|(_, d)| d.is_usable()).map(|(id, _)| id);
        if picked.is_some() {
            self.cursor = picked;
        }
        picked
    }

    fn dests_changed(&mut self, change: DestChange, _: &DestView<'_>) {
        // Only removal matters: a cursor on the removed server steps back to its predecessor,
        // so the next pick continues where it would have.
        if let DestChange::Removed { id, prev } = change {
            if self.cursor == Some(id) {
                self.cursor = prev;
            }
        }
    }
}
