//! lc — least connection (`ip_vs_lc.c`, reference §2.3).
//!
//! The usable server with the smallest overhead (256·active + total); weights matter only as
//! zero or not. Strict `<`, so of equal overheads the first in list order — the newest — wins.

use super::{SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct LeastConn;

impl Scheduler for LeastConn {
    fn kind(&self) -> SchedKind {
        SchedKind::Lc
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        let mut least: Option<(DestId, i32)> = None;
        for (id, d) in dests.iter() {
            if d.is_overloaded() || d.weight() == 0 {
                continue;
            }
            let doh = d.overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((id, doh));
            }
        }
        least.map(|(id, _)| id)
    }
}
