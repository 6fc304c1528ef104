//! wrr — weighted round robin (`ip_vs_wrr.c`, reference §2.2).
//!
//! State: the current server `cl` (initially the head), the current weight `cw`, `di` = gcd of
//! the positive weights, and `mw` = max weight − (di − 1). A pick scans forward from `cl` for a
//! server that is not overloaded with weight ≥ cw; at the end of the list `cw` drops by `di`,
//! wrapping to `mw`. With weights {A:4, B:3, C:2} (list order) that yields A A B A B C A B C.
//!
//! The state is updated incrementally on every change of the list, exactly as the kernel does,
//! and the scan below is a literal port of the kernel loop including its termination rule
//! ("stop only after every server was checked at weight ≥ 1"). A consequence worth knowing:
//! after adding a weight-3 server then a weight-1 server, `cw` is 1, not 3, so the first pick
//! is the weight-1 server — observed on real kernels (reference §11).

use super::{DestChange, SchedEnv, SchedInput, SchedKind, Scheduler};
use crate::dest::{DestId, DestView};

#[derive(Debug)]
pub(crate) struct WeightedRoundRobin {
    /// The server picked last; `None` is the list head.
    cl: Option<DestId>,
    cw: i32,
    mw: i32,
    di: i32,
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `(di, mw)` for the current weights.
fn weights(dests: &DestView<'_>) -> (i32, i32) {
    let mut g = 0;
    let mut max = 0;
    for (_, d) in dests.iter() {
        let w = d.weight();
        if w > 0 {
            g = if g > 0 { gcd(w, g) } else { w };
        }
        max = max.max(w);
    }
    let di = if g > 0 { g } else { 1 };
    (di, max - (di - 1))
}

impl WeightedRoundRobin {
    pub(crate) fn new(dests: &DestView<'_>) -> Self {
        let (di, mw) = weights(dests);
        WeightedRoundRobin { cl: None, cw: mw, mw, di }
    }
}

/// A position in the circular list: the head sentinel or an index.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Pos {
    Head,
    At(usize),
}

impl Scheduler for WeightedRoundRobin {
    fn kind(&self) -> SchedKind {
        SchedKind::Wrr
    }

    fn schedule(&mut self, dests: &DestView<'_>, _: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        if self.mw == 0 {
            return None;
        }
        let n = dests.len();
        let last = match self.cl.and_then(|c| dests.position(c)) {
            Some(p) => Pos::At(p),
            None => Pos::Head,
        };
        let mut pos = last;
        let mut stop = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let from = match pos {
                Pos::Head => 0,
                Pos::At(p) => p + 1,
            };
            for i in from..n {
                let (id, d) = dests.at(i);
                if !d.is_overloaded() && d.weight() >= self.cw {
                    self.cl = Some(id);
                    return Some(id);
                }
                if stop == Some(Pos::At(i)) {
                    self.cl = Some(id);
                    return None; // all destinations are overloaded
                }
            }
            pos = Pos::Head;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last == Pos::Head {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last != Pos::Head {
                // The first pass at weight ≥ 1 began after `last`; finish it up to `last`.
                stop = Some(last);
            }
        }
    }

    fn dests_changed(&mut self, _: DestChange, dests: &DestView<'_>) {
        self.cl = None;
        let (di, mw) = weights(dests);
        self.di = di;
        self.mw = mw;
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn wrr_state(&self) -> Option<(i32, i32, i32)> {
        Some((self.cw, self.mw, self.di))
    }
}
