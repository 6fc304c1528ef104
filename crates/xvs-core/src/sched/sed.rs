//! sed — shortest expected delay (`ip_vs_sed.c`, reference §2.5).
//!
//! wlc with `active + 1` as the overhead: inactive connections do not count, so a server with
//! many idle connections is not penalised.

use super::{weighted_least, SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct ShortestExpectedDelay;

/// `ip_vs_sed_dest_overhead`: the expected delay is proportional to the active connections + 1.
pub(crate) fn sed_overhead(d: &crate::Dest) -> i32 {
    d.activeconns.wrapping_add(1)
}

impl Scheduler for ShortestExpectedDelay {
    fn kind(&self) -> SchedKind {
        SchedKind::Sed
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        weighted_least(dests.iter(), sed_overhead)
    }
}
