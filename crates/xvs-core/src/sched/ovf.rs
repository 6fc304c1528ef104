//! ovf — weighted overflow (`ip_vs_ovf.c`, reference §2.8).
//!
//! Like fo, but a server whose active connections exceed its weight is full and skipped, so
//! traffic overflows to the next-highest weight. A weight-3 server takes a fourth connection
//! (the test is `active > weight`), as observed on real kernels.

use super::{SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct Overflow;

impl Scheduler for Overflow {
    fn kind(&self) -> SchedKind {
        SchedKind::Ovf
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        let mut best: Option<(DestId, i32)> = None;
        for (id, d) in dests.iter() {
            let w = d.weight();
            if d.is_overloaded() || d.activeconns > w || w == 0 {
                continue;
            }
            if best.is_none_or(|(_, bw)| w > bw) {
                best = Some((id, w));
            }
        }
        best.map(|(id, _)| id)
    }
}
