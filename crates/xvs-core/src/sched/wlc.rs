//! wlc — weighted least connection (`ip_vs_wlc.c`, reference §2.4), ipvsadm's default.
//!
//! Minimises overhead / weight without dividing: a server replaces the candidate when
//! `overhead(cand) · w(d) > overhead(d) · w(cand)`. The first of equal ratios wins, and a
//! weight-0 server can never win.

use super::{weighted_least, SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct WeightedLeastConn;

impl Scheduler for WeightedLeastConn {
    fn kind(&self) -> SchedKind {
        SchedKind::Wlc
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        weighted_least(dests.iter(), crate::Dest::overhead)
    }
}
