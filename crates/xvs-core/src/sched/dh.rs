//! dh — destination hashing (`ip_vs_dh.c`, reference §2.12).
//!
//! 256 buckets filled round robin with the servers in list order, one bucket each, cycling;
//! weights are ignored and an edit does not refill the table (the kernel has no `upd_dest`
//! hook for dh). A packet's destination address picks the bucket with `hash_32(addr, 8)`; the
//! server there is used only if it is available, has a positive weight and is not overloaded —
//! there is no fallback.

use super::{DestChange, SchedEnv, SchedInput, SchedKind, SchedTable, Scheduler};
use crate::addr::{addr_fold, hash_32};
use crate::dest::{DestId, DestView};

/// Number of dh buckets (`IP_VS_DH_TAB_BITS` = 8).
pub const DH_TABLE_SIZE: usize = 256;

#[derive(Debug)]
pub(crate) struct DestHash {
    buckets: Vec<Option<DestId>>,
}

impl DestHash {
    pub(crate) fn new(dests: &DestView<'_>) -> Self {
        let mut s = DestHash { buckets: vec![None; DH_TABLE_SIZE] };
        s.reassign(dests);
        s
    }

    fn reassign(&mut self, dests: &DestView<'_>) {
        let n = dests.len();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = (n > 0).then(|| dests.ids()[i % n]);
        }
    }
}

impl Scheduler for DestHash {
    fn kind(&self) -> SchedKind {
        SchedKind::Dh
    }

    fn schedule(&mut self, dests: &DestView<'_>, input: &SchedInput, _: &mut SchedEnv<'_>) -> Option<DestId> {
        let bucket = hash_32(addr_fold(&input.daddr), 8) as usize;
        let id = self.buckets[bucket]?;
        let d = dests.get(id)?;
        (d.is_available() && d.is_usable()).then_some(id)
    }

    fn dests_changed(&mut self, change: DestChange, dests: &DestView<'_>) {
        if !matches!(change, DestChange::Updated(_)) {
            self.reassign(dests);
        }
    }

    fn table(&self) -> SchedTable<'_> {
        SchedTable::Buckets(&self.buckets)
    }
}
