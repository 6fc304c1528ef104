//! First-fit allocation of ranges in the list and table pools, with a quarantine: a range a
//! service stops using may still be read by a packet that looked the service up a moment ago,
//! so it is reused only after a grace period.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a released range waits before reuse. An XDP program runs for microseconds inside
/// an RCU read section; this is three orders of magnitude longer.
pub const GRACE: Duration = Duration::from_millis(50);

/// Free ranges of a pool of `cap` slots.
#[derive(Debug)]
pub struct RangeAlloc {
    free: BTreeMap<u32, u32>,
    quarantine: Vec<(Instant, u32, u32)>,
    cap: u32,
}

impl RangeAlloc {
    /// A pool of `cap` slots, all free.
    pub fn new(cap: u32) -> Self {
        let mut free = BTreeMap::new();
        if cap > 0 {
            free.insert(0, cap);
        }
        RangeAlloc { free, quarantine: Vec::new(), cap }
    }

    /// Slots in the pool.
    pub fn capacity(&self) -> u32 {
        self.cap
    }

    /// Slots free right now (not counting the quarantine).
    pub fn available(&self) -> u32 {
        self.free.values().sum()
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
        let oldest = self.quarantine.iter().map(|(t, _, _)| *t).min()?;
        std::thread::sleep((oldest + GRACE).saturating_duration_since(Instant::now()));
        // Everything released before now is reusable after this wait.
        let all = self.quarantine.drain(..).collect::<Vec<_>>();
        for (_, start, len) in all {
            self.free_now(start, len);
        }
        self.take(len)
    }

    fn take(&mut self, len: u32) -> Option<u32> {
        let (&start, &flen) = self.free.iter().find(|(_, l)| **l >= len)?;
        self.free.remove(&start);
        if flen > len {
            self.free.insert(start + len, flen - len);
        }
        Some(start)
    }

    /// Marks a range as taken (ranges found in use when adopting a running dataplane).
    pub fn reserve(&mut self, start: u32, len: u32) -> bool {
        if len == 0 {
            return true;
        }
        let Some((&fs, &fl)) = self.free.range(..=start).next_back() else { return false };
        if fs + fl < start + len {
            return false;
        }
        self.free.remove(&fs);
        if start > fs {
            self.free.insert(fs, start - fs);
        }
        if fs + fl > start + len {
            self.free.insert(start + len, fs + fl - start - len);
        }
        true
    }

    /// Gives a range back after the grace period.
    pub fn release(&mut self, start: u32, len: u32) {
        if len > 0 {
            self.quarantine.push((Instant::now(), start, len));
        }
    }

    /// Frees the quarantined ranges whose grace period is over.
    pub fn reclaim(&mut self) {
        let now = Instant::now();
        let (ready, wait): (Vec<_>, Vec<_>) = self.quarantine.drain(..).partition(|(t, _, _)| *t + GRACE <= now);
        self.quarantine = wait;
        for (_, start, len) in ready {
            self.free_now(start, len);
        }
    }

    fn free_now(&mut self, mut start: u32, mut len: u32) {
        if let Some((&ps, &pl)) = self.free.range(..start).next_back() {
            if ps + pl == start {
                self.free.remove(&ps);
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += nl;
        }
        self.free.insert(start, len);
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
}
