//! fo — weighted fail-over (`ip_vs_fo.c`, reference §2.7).
//!
//! All new connections go to the usable server with the highest weight (the first of equals);
//! lowering its weight or overloading it fails over to the next.

use super::{SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct FailOver;

impl Scheduler for FailOver {
    fn kind(&self) -> SchedKind {
        SchedKind::Fo
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        let mut best: Option<(DestId, i32)> = None;
        for (id, d) in dests.iter() {
            if d.is_usable() && best.is_none_or(|(_, w)| d.weight() > w) {
                best = Some((id, d.weight()));
            }
        }
        best.map(|(id, _)| id)
    }
}
