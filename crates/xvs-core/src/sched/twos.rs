//! twos — weighted random "power of two choices" (`ip_vs_twos.c`, reference §2.9).
//!
//! Two servers are drawn at random in proportion to their weights (two numbers in
//! `[0, Σ weight]`, each walked down the list subtracting weights until it reaches ≤ 0); the
//! second is taken if its overhead per weight is lower, else the first. The products are 32-bit
//! as in the kernel.

use super::{SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct TwoChoices;

impl Scheduler for TwoChoices {
    fn kind(&self) -> SchedKind {
        SchedKind::Twos
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, env: &mut SchedEnv<'_>) -> Option<DestId> {
        let mut total: i32 = 0;
        let mut choice1 = None;
        for (id, d) in dests.iter() {
            if d.is_usable() {
                total = total.wrapping_add(d.weight());
                choice1 = Some(id);
            }
        }
        let mut choice1 = choice1?;
        // Inclusive of `total`, as the kernel adds 1 before drawing.
        let bound = total.wrapping_add(1) as u32;
        let mut r1 = env.rng.below(bound) as i32;
        let mut r2 = env.rng.below(bound) as i32;
        let (mut w1, mut w2, mut oh1, mut oh2) = (-1i32, -1i32, 0i32, 0i32);
        let mut choice2 = None;
        for (id, d) in dests.iter() {
            if !d.is_usable() {
                continue;
            }
            let w = d.weight();
            r1 = r1.wrapping_sub(w);
            r2 = r2.wrapping_sub(w);
            if r1 <= 0 && w1 == -1 {
                choice1 = id;
                w1 = w;
                oh1 = d.overhead();
            }
            if r2 <= 0 && w2 == -1 {
                choice2 = Some(id);
                w2 = w;
                oh2 = d.overhead();
            }
            if w1 != -1 && w2 != -1 {
                break;
            }
        }
        match choice2 {
            Some(c2) if w2.wrapping_mul(oh1) > w1.wrapping_mul(oh2) => Some(c2),
            _ => Some(choice1),
        }
    }
}
