//! The 14 IPVS schedulers, one module each, behind one small trait (reference §2).
//!
//! A scheduler picks a real server for a new connection. It sees the service's servers in the
//! kernel's list order — the newest first — with their weights, flags and connection counters,
//! and keeps whatever state it needs between calls (a cursor, a hash table). Like the kernel's
//! `struct ip_vs_scheduler`, the only mandatory operation is [`Scheduler::schedule`]; the hooks
//! that rebuild tables when servers come, go or change have no-op defaults.
//!
//! Arithmetic follows the kernel's types on purpose (32-bit `int` overheads, 64-bit products in
//! comparisons) so that ties and overflows fall the same way.

mod dh;
mod fo;
mod lblc;
mod lblcr;
mod lc;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod twos;
mod wlc;
mod wrr;

pub use dh::DH_TABLE_SIZE;
pub use lblc::LBLC_TABLE_MAX;
pub use mh::{mh_hash, MH_TABLE_SIZE};
pub use sh::SH_TABLE_SIZE;

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;
use core::time::Duration;

use crate::dest::{DestId, DestView};
use crate::model::{Error, Protocol, SchedFlags};
use crate::time::Instant;

/// The name of a scheduler, as `-s` takes it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchedKind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (ipvsadm's default).
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted fail-over.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Maglev hashing.
    Mh,
    /// Weighted random power of two choices.
    Twos,
}

impl SchedKind {
    /// Every scheduler, in the order of the kernel's Kconfig.
    pub const ALL: [SchedKind; 14] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Fo,
        SchedKind::Ovf,
        SchedKind::Lblc,
        SchedKind::Lblcr,
        SchedKind::Dh,
        SchedKind::Sh,
        SchedKind::Mh,
        SchedKind::Sed,
        SchedKind::Nq,
        SchedKind::Twos,
    ];

    /// The name `-s` takes and listings print.
    pub const fn name(self) -> &'static str {
        match self {
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Lblc => "lblc",
            SchedKind::Lblcr => "lblcr",
            SchedKind::Dh => "dh",
            SchedKind::Sh => "sh",
            SchedKind::Sed => "sed",
            SchedKind::Nq => "nq",
            SchedKind::Fo => "fo",
            SchedKind::Ovf => "ovf",
            SchedKind::Mh => "mh",
            SchedKind::Twos => "twos",
        }
    }
}

impl fmt::Display for SchedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        SchedKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| Error::SchedulerNotFound(s.to_string()))
    }
}

/// What a scheduler may look at in the packet that opens a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SchedInput {
    /// Transport protocol.
    pub proto: Protocol,
    /// Source address (the client).
    pub saddr: IpAddr,
    /// Destination address (the VIP, or the original target for fwmark caches).
    pub daddr: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// True when scheduling from the header embedded in an ICMP error, whose direction is
    /// reversed: hashing schedulers then key on the destination.
    pub inverse: bool,
}

impl SchedInput {
    /// The client address and port as seen by hashing schedulers (sh, mh).
    pub fn client(&self) -> (IpAddr, u16) {
        if self.inverse {
            (self.daddr, self.dport)
        } else {
            (self.saddr, self.sport)
        }
    }
}

/// A source of random numbers (only twos draws any). The core has no I/O, so randomness is an
/// input like time: tests pass a seeded generator, the daemon a seeded one from the OS.
pub trait RandomSource {
    /// A uniformly distributed 32-bit number.
    fn next_u32(&mut self) -> u32;

    /// A uniformly distributed number below `n` (n > 0), by multiply-shift as the kernel's
    /// `get_random_u32_below` does for its fast path.
    fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
    }
}

/// A small deterministic generator (SplitMix64) for tests and for seeding from the OS.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl RandomSource for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

/// Everything a scheduler may consult besides the servers and the packet.
pub struct SchedEnv<'a> {
    /// The current time.
    pub now: Instant,
    /// The service's scheduler flags (they can change without rebinding the scheduler).
    pub flags: SchedFlags,
    /// `lblc_expiration` / `lblcr_expiration`.
    pub expiration: Duration,
    /// Randomness, for twos.
    pub rng: &'a mut dyn RandomSource,
}

/// A change to the service's list of servers, passed to the scheduler after it happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DestChange {
    /// A server was inserted at the head of the list (new or revived from the trash).
    Added(DestId),
    /// A server's configuration was edited in place.
    Updated(DestId),
    /// A server left the list; `prev` is the server that was before it (`None`: it was first).
    Removed {
        /// The removed server.
        id: DestId,
        /// Its predecessor in the list before removal.
        prev: Option<DestId>,
    },
}

/// A table that a hashing scheduler keeps, exposed so that the dataplane can index the same
/// table instead of computing its own.
#[derive(Copy, Clone, Debug)]
pub enum SchedTable<'a> {
    /// The scheduler keeps no table the dataplane needs.
    None,
    /// A bucket table (sh: 256, dh: 256, mh: 4093 slots) of server ids.
    Buckets(&'a [Option<DestId>]),
}

/// A scheduler bound to one service.
pub trait Scheduler: fmt::Debug + Send {
    /// Which scheduler this is.
    fn kind(&self) -> SchedKind;

    /// Picks a server for a new connection, or `None` ("no destination available").
    fn schedule(&mut self, dests: &DestView<'_>, input: &SchedInput, env: &mut SchedEnv<'_>) -> Option<DestId>;

    /// Called after the list of servers changed (the kernel's add/del/upd_dest hooks).
    fn dests_changed(&mut self, _change: DestChange, _dests: &DestView<'_>) {}

    /// Runs periodic work due at `now` (lblc/lblcr garbage collection).
    fn handle_timeout(&mut self, _now: Instant, _dests: &DestView<'_>, _expiration: Duration) {}

    /// Adds to `out` the servers the scheduler's own table names (lblc/lblcr entries): the
    /// kernel counts those as references, which keep a removed server in the trash
    /// (testdata/kernel/trash-lblc-6.12.txt).
    fn held(&self, _out: &mut Vec<DestId>) {}

    /// When [`Scheduler::handle_timeout`] next needs to run.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The table the dataplane indexes, for hashing schedulers.
    fn table(&self) -> SchedTable<'_> {
        SchedTable::None
    }

    /// The wrr state `(current weight, max weight, gcd)`, for the dataplane.
    fn wrr_state(&self) -> Option<(i32, i32, i32)> {
        None
    }
}

/// The most servers one mh service can hold: one per table slot (the kernel's EINVAL beyond).
pub fn max_dests(kind: SchedKind) -> usize {
    match kind {
        SchedKind::Mh => MH_TABLE_SIZE,
        _ => usize::MAX,
    }
}

/// Binds a new scheduler of `kind` to a service whose servers are `dests` (the kernel's
/// `init_service`), at `now`.
pub fn bind(kind: SchedKind, dests: &DestView<'_>, now: Instant) -> Box<dyn Scheduler> {
    match kind {
        SchedKind::Rr => Box::new(rr::RoundRobin::default()),
        SchedKind::Wrr => Box::new(wrr::WeightedRoundRobin::new(dests)),
        SchedKind::Lc => Box::new(lc::LeastConn),
        SchedKind::Wlc => Box::new(wlc::WeightedLeastConn),
        SchedKind::Sed => Box::new(sed::ShortestExpectedDelay),
        SchedKind::Nq => Box::new(nq::NeverQueue),
        SchedKind::Fo => Box::new(fo::FailOver),
        SchedKind::Ovf => Box::new(ovf::Overflow),
        SchedKind::Twos => Box::new(twos::TwoChoices),
        SchedKind::Lblc => Box::new(lblc::Lblc::new(now)),
        SchedKind::Lblcr => Box::new(lblcr::Lblcr::new(now)),
        SchedKind::Dh => Box::new(dh::DestHash::new(dests)),
        SchedKind::Sh => Box::new(sh::SourceHash::new(dests)),
        SchedKind::Mh => Box::new(mh::Maglev::new(dests)),
    }
}

/// The weighted-least-connection pick shared by wlc, lblc and lblcr: the first server that is
/// not overloaded and has a positive weight is the candidate; a later server that is not
/// overloaded replaces it when `overhead(cand) * w(d) > overhead(d) * w(cand)`, i.e. when its
/// overhead per weight is strictly lower. Products are 64-bit so that they cannot overflow, and
/// since the left side is 0 for weight 0, a quiesced server never wins.
pub(crate) fn weighted_least<'a>(
    dests: impl Iterator<Item = (DestId, &'a crate::Dest)>,
    overhead: impl Fn(&crate::Dest) -> i32,
) -> Option<DestId> {
    let mut least: Option<(DestId, i64, i64)> = None; // (id, overhead, weight)
    for (id, d) in dests {
        if d.is_overloaded() {
            continue;
        }
        match least {
            None if d.weight() > 0 => least = Some((id, i64::from(overhead(d)), i64::from(d.weight()))),
            None => {}
            Some((_, loh, lw)) => {
                let doh = i64::from(overhead(d));
                if loh * i64::from(d.weight()) > doh * lw {
                    least = Some((id, doh, i64::from(d.weight())));
                }
            }
        }
    }
    least.map(|(id, _, _)| id)
}
