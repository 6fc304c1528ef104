//! nq — never queue (`ip_vs_nq.c`, reference §2.6).
//!
//! An idle server (no active connection) is taken at once, first in list order; otherwise the
//! shortest expected delay `(active + 1) / weight`, first of equals.

use super::sed::sed_overhead;
use super::{SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct NeverQueue;

impl Scheduler for NeverQueue {
    fn kind(&self) -> SchedKind {
        SchedKind::Nq
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        let mut least: Option<(DestId, i64, i64)> = None;
        for (id, d) in dests.iter() {
            if d.is_overloaded() || d.weight() == 0 {
                continue;
            }
            if d.active_conns() == 0 {
                return Some(id);
            }
            let doh = i64::from(sed_overhead(d));
            let w = i64::from(d.weight());
            if least.is_none_or(|(_, loh, lw)| loh * w > doh * lw) {
                least = Some((id, doh, w));
            }
        }
        least.map(|(id, _, _)| id)
    }
}
