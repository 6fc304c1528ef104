//! mh — Maglev hashing (`ip_vs_mh.c`, reference §2.14; Eisenbud et al., NSDI 2016, §3.4).
//!
//! A lookup table of M = 4093 slots (the kernel's default `IP_VS_MH_TAB_INDEX` 12) is filled
//! from per-server permutations: each server's `offset` and `skip` come from SipHash-1-3 of its
//! address and port under two fixed keys, and servers take turns claiming their next free
//! preferred slot, `turns` slots per round in proportion to their last non-zero weight (scaled
//! down so the largest is at most 63). The client address (and port with `mh-port`) hashed with
//! the first key picks a slot. Quiescing a server (weight 0) keeps its slots — the table uses
//! `last_weight` — so its clients get no server, or with `mh-fallback` a re-hash per probe.
//!
//! The kernel's `hsiphash` on 64-bit machines is SipHash-1-3 over the 4 bytes of a host-order
//! `u32`, truncated to 32 bits; [`mh_hash`] is that function, shared with the dataplane tests.

use core::hash::Hasher;
use core::net::IpAddr;

use siphasher::sip::SipHasher13;

use super::{DestChange, SchedEnv, SchedInput, SchedKind, SchedTable, Scheduler};
use crate::addr::addr_fold;
use crate::dest::{DestId, DestView};
use crate::model::SchedFlags;

/// Slots in the lookup table: the prime for `CONFIG_IP_VS_MH_TAB_INDEX` = 12.
pub const MH_TABLE_SIZE: usize = 4093;
/// `IP_VS_MH_TAB_BITS`: weights are shifted so that weight/gcd fits in this many bits.
const MH_TAB_BITS: u32 = 12 / 2;
/// The fixed key for offsets and lookups: `(2654435761, 2654435761)`.
pub(crate) const HASH1: (u64, u64) = (2_654_435_761, 2_654_435_761);
/// The fixed key for skips: `(2654446892, 2654446892)`.
pub(crate) const HASH2: (u64, u64) = (2_654_446_892, 2_654_446_892);

/// `ip_vs_mh_hashkey`: SipHash-1-3 of `offset + port + addr_fold(addr)` (a little-endian `u32`)
/// under `key`, truncated to 32 bits.
pub fn mh_hash(key: (u64, u64), addr: &IpAddr, port: u16, offset: u32) -> u32 {
    let v = offset.wrapping_add(u32::from(port)).wrapping_add(addr_fold(addr));
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    h.write(&v.to_le_bytes());
    h.finish() as u32
}

#[derive(Debug)]
pub(crate) struct Maglev {
    lookup: Vec<Option<DestId>>,
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `fls`: 1-based index of the highest set bit, 0 for 0.
fn fls(x: i32) -> i32 {
    32 - (x as u32).leading_zeros() as i32
}

impl Maglev {
    pub(crate) fn new(dests: &DestView<'_>) -> Self {
        let mut s = Maglev { lookup: vec![None; MH_TABLE_SIZE] };
        s.reassign(dests);
        s
    }

    fn reassign(&mut self, dests: &DestView<'_>) {
        let m = MH_TABLE_SIZE as u32;
        let g =
            dests
                .iter()
                .map(|(_, d)| d.last_weight())
                .filter(|w| *w > 0)
                .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
        if g < 1 {
            self.lookup.fill(None);
            return;
        }
        let max = dests.iter().map(|(_, d)| d.last_weight()).max().unwrap_or(0);
        let rshift = (fls(max / g) - MH_TAB_BITS as i32).max(0);
        struct Setup {
            id: DestId,
            skip: u32,
            perm: u32,
            turns: i32,
        }
        let mut setup: Vec<Setup> = dests
            .iter()
            .map(|(id, d)| {
                let lw = d.last_weight();
                let offset = mh_hash(HASH1, &d.addr(), d.port(), 0) % m;
                let skip = mh_hash(HASH2, &d.addr(), d.port(), 0) % (m - 1) + 1;
                let scaled = (lw / g) >> rshift;
                let turns = if scaled != 0 { scaled } else { i32::from(lw != 0) };
                Setup { id, skip, perm: offset, turns }
            })
            .collect();
        let mut taken = vec![false; MH_TABLE_SIZE];
        let mut filled = 0usize;
        // Rounds over the list; each server claims `turns` slots per round. The table always
        // fills because at least one server has turns ≥ 1 (g ≥ 1).
        'fill: loop {
            for s in setup.iter_mut() {
                for _ in 0..s.turns.max(0) {
                    let mut c = s.perm;
                    while taken[c as usize] {
                        s.perm += s.skip;
                        if s.perm >= m {
                            s.perm -= m;
                        }
                        c = s.perm;
                    }
                    taken[c as usize] = true;
                    self.lookup[c as usize] = Some(s.id);
                    filled += 1;
                    if filled == MH_TABLE_SIZE {
                        break 'fill;
                    }
                }
            }
        }
    }
}

impl Scheduler for Maglev {
    fn kind(&self) -> SchedKind {
        SchedKind::Mh
    }

    fn schedule(&mut self, dests: &DestView<'_>, input: &SchedInput, env: &mut SchedEnv<'_>) -> Option<DestId> {
        let (addr, port) = input.client();
        let port = if env.flags.contains(SchedFlags::SCHED2) { port } else { 0 };
        let m = MH_TABLE_SIZE as u32;
        let usable = |id: DestId| dests.get(id).is_some_and(|d| d.is_usable());
        let ihash = mh_hash(HASH1, &addr, port, 0) % m;
        let first = self.lookup[ihash as usize]?;
        if usable(first) {
            return Some(first);
        }
        if !env.flags.contains(SchedFlags::SCHED1) {
            return None;
        }
        for offset in 0..m {
            let roffset = (offset + ihash) % m;
            let id = self.lookup[(mh_hash(HASH1, &addr, port, roffset) % m) as usize]?;
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
        SchedTable::Buckets(&self.lookup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash13_matches_the_reference_vector() {
        // SipHash-1-3, key 00..0f, empty message (from the reference implementation's
        // vectors_sip13 table, first entry): 0xabac0158050fc4dc.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let h = SipHasher13::new_with_keys(k0, k1);
        assert_eq!(h.finish(), 0xabac_0158_050f_c4dc);
    }

    #[test]
    fn fls_matches_the_kernel() {
        assert_eq!((fls(0), fls(1), fls(63), fls(64)), (0, 1, 6, 7));
    }
}
