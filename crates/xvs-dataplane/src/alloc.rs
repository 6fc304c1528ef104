//! Best-fit allocation of ranges in the list and table pools, with a quarantine: a range a
//! service stops using may still be read by a packet that looked the service up a moment ago,
//! so it is reused only after a grace period.
//!
//! Free ranges are indexed by start (to coalesce neighbours) and by length (to find the
//! smallest that fits in O(log n)): publishing hundreds of thousands of services leaves many
//! small holes, and scanning them on every allocation made installing 100k services quadratic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a released range waits before reuse. An XDP program runs for microseconds inside
/// an RCU read section; this is three orders of magnitude longer.
pub const GRACE: Duration = Duration::from_millis(50);

/// Free ranges of a pool of `cap` slots.
#[derive(Debug)]
pub struct RangeAlloc {
    /// start → length.
    by_start: BTreeMap<u32, u32>,
    /// (length, start).
    by_len: BTreeSet<(u32, u32)>,
    /// Released ranges in release order (so the oldest are at the front).
    quarantine: VecDeque<(Instant, u32, u32)>,
    cap: u32,
}

impl RangeAlloc {
    /// A pool of `cap` slots, all free.
    pub fn new(cap: u32) -> Self {
        let mut a = RangeAlloc { by_start: BTreeMap::new(), by_len: BTreeSet::new(), quarantine: VecDeque::new(), cap };
        if cap > 0 {
            a.insert(0, cap);
        }
        a
    }

    fn insert(&mut self, start: u32, len: u32) {
        self.by_start.insert(start, len);
        self.by_len.insert((len, start));
    }

    fn remove(&mut self, start: u32, len: u32) {
        self.by_start.remove(&start);
        self.by_len.remove(&(len, start));
    }

    /// Slots in the pool.
    pub fn capacity(&self) -> u32 {
        self.cap
    }

    /// Slots free right now (not counting the quarantine).
    pub fn available(&self) -> u32 {
        self.by_start.values().sum()
    }

    /// Takes `len` consecutive slots. When only quarantined ranges could satisfy the request,
    /// waits out their grace period (at most [`GRACE`]); `None` when the pool is really full.
    pub fn alloc(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return Some(0);
        }
        self.reclaim();
        if let Some(start) = self.take(len) {
            return Some(start);
        }
        // Wait for quarantined ranges one by one (oldest first), never freeing one before its
        // own grace period is over.
        while let Some(&(released, _, _)) = self.quarantine.front() {
            std::thread::sleep((released + GRACE).saturating_duration_since(Instant::now()));
            self.reclaim();
            if let Some(start) = self.take(len) {
                return Some(start);
            }
        }
        None
    }

    fn take(&mut self, len: u32) -> Option<u32> {
        let &(flen, start) = self.by_len.range((len, 0)..).next()?;
        self.remove(start, flen);
        if flen > len {
            self.insert(start + len, flen - len);
        }
        Some(start)
    }

    /// Marks a range as taken (ranges found in use when adopting a running dataplane).
    pub fn reserve(&mut self, start: u32, len: u32) -> bool {
        if len == 0 {
            return true;
        }
        let Some((&fs, &fl)) = self.by_start.range(..=start).next_back() else { return false };
        if fs + fl < start + len {
            return false;
        }
        self.remove(fs, fl);
        if start > fs {
            self.insert(fs, start - fs);
        }
        if fs + fl > start + len {
            self.insert(start + len, fs + fl - start - len);
        }
        true
    }

    /// Gives a range back after the grace period.
    pub fn release(&mut self, start: u32, len: u32) {
        if len > 0 {
            self.quarantine.push_back((Instant::now(), start, len));
        }
    }

    /// Frees the quarantined ranges whose grace period is over.
    pub fn reclaim(&mut self) {
        let now = Instant::now();
        while let Some(&(t, start, len)) = self.quarantine.front() {
            if t + GRACE > now {
                break;
            }
            self.quarantine.pop_front();
            self.free_now(start, len);
        }
    }

    fn free_now(&mut self, mut start: u32, mut len: u32) {
        if let Some((&ps, &pl)) = self.by_start.range(..start).next_back() {
            if ps + pl == start {
                self.remove(ps, pl);
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.by_start.get(&(start + len)) {
            self.remove(start + len, nl);
            len += nl;
        }
        self.insert(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_reused_only_after_the_grace_period_and_coalesce() {
        let mut a = RangeAlloc::new(10);
        let x = a.alloc(4).unwrap();
        let y = a.alloc(4).unwrap();
        assert_eq!((x, y), (0, 4));
        a.release(x, 4);
        a.release(y, 4);
        a.reclaim();
        assert_eq!(a.available(), 2, "still in quarantine");
        let t = Instant::now();
        assert_eq!(a.alloc(10), Some(0), "waits out the grace, then coalesces");
        assert!(t.elapsed() >= GRACE / 2);
        assert_eq!(a.alloc(1), None, "really full");
    }

    #[test]
    fn best_fit_reuses_small_holes_first() {
        let mut a = RangeAlloc::new(100);
        let x = a.alloc(1).unwrap();
        let _y = a.alloc(5).unwrap();
        let z = a.alloc(2).unwrap();
        let _w = a.alloc(5).unwrap();
        a.free_now(x, 1);
        a.free_now(z, 2);
        assert_eq!(a.alloc(2), Some(z), "the 2-slot hole, not the big tail");
        assert_eq!(a.alloc(1), Some(x));
        assert!(a.reserve(50, 10));
        assert!(!a.reserve(55, 10), "taken");
        assert_eq!(a.available(), 100 - 13 - 10);
    }
}
