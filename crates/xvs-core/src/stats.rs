//! Statistics and the rate estimator (reference §6).
//!
//! IPVS counts, for every real server, every service and in total: connections created, packets
//! and bytes in (client → server) and out (server → client, NAT only). Zeroing does not reset
//! the counters; it remembers their values and shows the difference from then on. Rates come
//! from an exponentially weighted moving average sampled every two seconds, in fixed point,
//! exactly as `ip_vs_est.c` computes it so that `--rate` shows the same numbers.

use core::time::Duration;

/// How often the estimator samples the counters.
pub const ESTIMATOR_INTERVAL: Duration = Duration::from_secs(2);

/// The five counters IPVS keeps per object.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Counters {
    /// Connections created (not templates).
    pub conns: u64,
    /// Packets from clients.
    pub inpkts: u64,
    /// Packets from real servers (seen only with NAT).
    pub outpkts: u64,
    /// Bytes from clients, IP header included.
    pub inbytes: u64,
    /// Bytes from real servers, IP header included.
    pub outbytes: u64,
}

impl Counters {
    fn wrapping_sub(&self, o: &Counters) -> Counters {
        Counters {
            conns: self.conns.wrapping_sub(o.conns),
            inpkts: self.inpkts.wrapping_sub(o.inpkts),
            outpkts: self.outpkts.wrapping_sub(o.outpkts),
            inbytes: self.inbytes.wrapping_sub(o.inbytes),
            outbytes: self.outbytes.wrapping_sub(o.outbytes),
        }
    }

    /// Adds `o` to these counters.
    pub fn accumulate(&mut self, o: &Counters) {
        self.conns = self.conns.wrapping_add(o.conns);
        self.inpkts = self.inpkts.wrapping_add(o.inpkts);
        self.outpkts = self.outpkts.wrapping_add(o.outpkts);
        self.inbytes = self.inbytes.wrapping_add(o.inbytes);
        self.outbytes = self.outbytes.wrapping_add(o.outbytes);
    }
}

/// Per-second rates as `--rate` shows them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Incoming packets per second.
    pub inpps: u64,
    /// Outgoing packets per second.
    pub outpps: u64,
    /// Incoming bytes per second.
    pub inbps: u64,
    /// Outgoing bytes per second.
    pub outbps: u64,
}

/// The moving averages of one stats object, in the kernel's fixed point: connection and packet
/// rates scaled by 2^10, byte rates by 2^5.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Counters,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

impl Estimator {
    /// Folds one two-second sample into the averages: `avg += ((delta << k) - avg) >> 2`, with
    /// k = 9 for counts (delta/2 s × 2^10 per second) and k = 4 for bytes (× 2^5).
    pub fn sample(&mut self, now: &Counters) {
        fn step(avg: &mut i64, last: &mut u64, cur: u64, shift: u32) {
            let delta = cur.wrapping_sub(*last) as i64;
            *last = cur;
            let rate = delta.wrapping_shl(shift);
            *avg += (rate - *avg) >> 2; // arithmetic shift, as the kernel's s64
        }
        step(&mut self.cps, &mut self.last.conns, now.conns, 9);
        step(&mut self.inpps, &mut self.last.inpkts, now.inpkts, 9);
        step(&mut self.outpps, &mut self.last.outpkts, now.outpkts, 9);
        step(&mut self.inbps, &mut self.last.inbytes, now.inbytes, 4);
        step(&mut self.outbps, &mut self.last.outbytes, now.outbytes, 4);
    }

    /// Restarts the averages from `now` (what `-Z` does).
    pub fn reset(&mut self, now: &Counters) {
        *self = Estimator { last: *now, ..Estimator::default() };
    }

    /// The rates, rounded as `ip_vs_read_estimator` rounds them.
    pub fn rates(&self) -> Rates {
        let count = |v: i64| ((v + 0x1FF) >> 10).max(0) as u64;
        let bytes = |v: i64| ((v + 0xF) >> 5).max(0) as u64;
        Rates {
            cps: count(self.cps),
            inpps: count(self.inpps),
            outpps: count(self.outpps),
            inbps: bytes(self.inbps),
            outbps: bytes(self.outbps),
        }
    }
}

/// Counters, their zero point and their estimator: the statistics of one object.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    current: Counters,
    zero: Counters,
    est: Estimator,
}

impl Stats {
    /// The counters since the last zeroing.
    pub fn counters(&self) -> Counters {
        self.current.wrapping_sub(&self.zero)
    }

    /// The raw running totals, never zeroed.
    pub fn raw(&self) -> Counters {
        self.current
    }

    /// The estimated rates.
    pub fn rates(&self) -> Rates {
        self.est.rates()
    }

    /// Zeroes the shown counters and the rates (`-Z`).
    pub fn zero(&mut self) {
        self.zero = self.current;
        self.est.reset(&self.current);
    }

    /// Takes one estimator sample of the running totals.
    pub fn sample(&mut self) {
        self.est.sample(&self.current);
    }

    /// Replaces the running totals, for counters kept elsewhere (the dataplane's per-CPU maps).
    pub fn set_raw(&mut self, raw: Counters) {
        self.current = raw;
    }

    pub(crate) fn add_conn(&mut self) {
        self.current.conns += 1;
    }

    pub(crate) fn add_in(&mut self, bytes: u32) {
        self.current.inpkts += 1;
        self.current.inbytes += u64::from(bytes);
    }

    pub(crate) fn add_out(&mut self, bytes: u32) {
        self.current.outpkts += 1;
        self.current.outbytes += u64::from(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(conns: u64, pkts: u64, bytes: u64) -> Counters {
        Counters { conns, inpkts: pkts, outpkts: 0, inbytes: bytes, outbytes: 0 }
    }

    #[test]
    fn steady_rate_converges_just_below_the_true_rate() {
        // 100 conn/s, 1000 pkt/s, 64000 B/s, sampled every 2 s. The kernel's average stops
        // 3 fixed-point units short (`(rate - avg) >> 2` is 0 below 4); the rounding hides it
        // for counts (×2^10) but not for bytes (×2^5): 64000 B/s shows as 63999.
        let mut e = Estimator::default();
        for i in 1..=40u64 {
            e.sample(&c(200 * i, 2000 * i, 128_000 * i));
        }
        let r = e.rates();
        assert_eq!((r.cps, r.inpps, r.inbps), (100, 1000, 63999));
    }

    #[test]
    fn first_sample_is_a_quarter_of_the_rate() {
        // avg = (delta << 9) >> 2 after one sample: 8 conns in 2 s → 4/s → shows 1/s.
        let mut e = Estimator::default();
        e.sample(&c(8, 0, 0));
        assert_eq!(e.cps, (8 << 9) >> 2);
        assert_eq!(e.rates().cps, 1);
    }

    #[test]
    fn zero_keeps_running_totals_but_shows_differences() {
        let mut s = Stats::default();
        s.add_conn();
        s.add_in(60);
        s.zero();
        s.add_in(40);
        assert_eq!(s.counters(), c(0, 1, 40));
        assert_eq!(s.raw(), c(1, 2, 100));
        assert_eq!(s.rates(), Rates::default());
    }
}
