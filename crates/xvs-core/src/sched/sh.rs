//! sh — source hashing (`ip_vs_sh.c`, reference §2.13).
//!
//! 256 buckets, refilled on every change: walking the list in order, each server takes
//! `max(weight, 1)` consecutive buckets (so a quiesced server keeps one), cycling until the
//! table is full. The client address (plus its port with `sh-port`) picks the bucket with
//! `hash_32(port + addr, 8)`. Without `sh-fallback` an unusable server means no server; with it,
//! the kernel probes on from the original bucket — and because it adds the hash a second time,
//! probe `k` visits bucket `(k + 2·h) mod 256`. We reproduce that quirk: it decides which server
//! a client falls back to.

use super::{DestChange, SchedEnv, SchedInput, SchedKind, SchedTable, Scheduler};
use crate::addr::{addr_fold, hash_32};
use crate::dest::{DestId, DestView};
use crate::model::SchedFlags;

/// Number of sh buckets (`IP_VS_SH_TAB_BITS` = 8).
pub const SH_TABLE_SIZE: usize = 256;

#[derive(Debug)]
pub(crate) struct SourceHash {
    buckets: Vec<Option<DestId>>,
}

/// `ip_vs_sh_hashkey`.
fn hashkey(addr: u32, port: u16, offset: u32) -> usize {
    (offset.wrapping_add(hash_32(u32::from(port).wrapping_add(addr), 8)) & 0xff) as usize
}

impl SourceHash {
    pub(crate) fn new(dests: &DestView<'_>) -> Self {
        let mut s = SourceHash { buckets: vec![None; SH_TABLE_SIZE] };
        s.reassign(dests);
        s
    }

    fn reassign(&mut self, dests: &DestView<'_>) {
        if dests.is_empty() {
            self.buckets.fill(None);
            return;
        }
        let (mut p, mut count) = (0usize, 0i32);
        for b in self.buckets.iter_mut() {
            let (id, d) = dests.at(p);
            *b = Some(id);
            count += 1;
            if count >= d.weight() {
                p = (p + 1) % dests.len();
                count = 0;
            }
        }
    }
}

impl Scheduler for SourceHash {
    fn kind(&self) -> SchedKind {
        SchedKind::Sh
    }

    fn schedule(&mut self, dests: &DestView<'_>, input: &SchedInput, env: &mut SchedEnv<'_>) -> Option<DestId> {
        let (addr, port) = input.client();
        let port = if env.flags.contains(SchedFlags::SCHED2) { port } else { 0 };
        let fold = addr_fold(&addr);
        let usable = |id: DestId| dests.get(id).is_some_and(|d| d.is_usable());
        let ihash = hashkey(fold, port, 0);
        let first = self.buckets[ihash]?;
        if usable(first) {
            return Some(first);
        }
        if !env.flags.contains(SchedFlags::SCHED1) {
            return None;
        }
        for offset in 0..SH_TABLE_SIZE as u32 {
            let roffset = (offset + ihash as u32) % SH_TABLE_SIZE as u32;
            let id = self.buckets[hashkey(fold, port, roffset)]?;
            if usable(id) {
                return Some(id);
            }
        }
        None
    }

    fn dests_changed(&mut self, _: DestChange, dests: &DestView<'_>) {
        self.reassign(dests);
    }

    fn table(&self) -> SchedTable<'_> {
        SchedTable::Buckets(&self.buckets)
    }
}
