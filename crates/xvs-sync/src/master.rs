//! The sending end: which connections to put on the wire, and when.
//!
//! # How the kernel decides, and why xvs decides differently
//!
//! The kernel's master runs `ip_vs_sync_conn_needed` on every packet a connection receives.
//! With the default sysctls (`sync_threshold` 3, `sync_period` 50, `sync_refresh_period` 0)
//! a connection is sent at its 3rd, 53rd, 103rd … packet, and a TCP (or SCTP) connection is
//! also sent at once when it moves to FIN_WAIT, CLOSE_WAIT, CLOSE or TIME_WAIT. TCP is only
//! ever sent in those states and ESTABLISHED (never SYN_RECV); UDP and other protocols in
//! any state. A persistence template is sent each time a connection it controls is
//! examined. Connections with `ONE_PACKET` are never sent.
//!
//! xvs's dataplane cannot call out per packet, so this master sees periodic snapshots of the
//! whole table instead of packets, and it decides by *change and age*:
//!
//! * an entry is sent when it is new, or when its state, flags, destination, sequence data
//!   or persistence data differ from what was last sent for it;
//! * an unchanged entry is sent again by the [`Refresh`] policy. The default re-sends it once
//!   half of its timeout has passed since it was last sent (never more often than every
//!   10 s). The backup restarts an entry's timer at each update with the timeout the entry
//!   carries, so an entry the master still has is refreshed with at least half a timeout of
//!   life to spare, and the backup's copy can never expire first as long as snapshots come
//!   more often than every half timeout. The kernel's packet-count rule cannot promise that:
//!   an established connection that sends fewer than 50 packets in 15 minutes expires on the
//!   backup while the master keeps it. The cost is one entry per connection per half
//!   timeout (for 1M established TCP connections at 900 s, about 2.2k entries/s, 60
//!   datagrams/s), which is small next to the per-packet traffic the kernel's rule causes;
//! * entries that vanish from a snapshot are forgotten; the protocol has no delete message,
//!   and the backup's copy expires by its own timer, as with the kernel;
//! * the kernel's state filter is kept: TCP and SCTP connections are only sent in the states
//!   the kernel sends (other states are not worth a backup entry: a half-open connection
//!   cannot be taken over), and `ONE_PACKET` connections never;
//! * templates are sent like connections (new, changed, refreshed): the backup needs them
//!   to keep persistence, and re-sending one per controlled packet is the per-packet
//!   behaviour this design avoids.
//!
//! Memory is bounded by [`MasterConfig::max_tracked`]: past it, new entries are neither
//! tracked nor sent (counted in [`MasterStats::untracked`]).
//!
//! # Use
//!
//! ```
//! # use xvs_sync::*;
//! let mut m = Master::new(MasterConfig { syncid: 7, ..MasterConfig::default() });
//! let now = Instant::from_secs(1);
//! m.handle_snapshot(now, std::iter::empty());
//! while let Some(datagram) = m.poll_transmit(now) {
//!     // send `datagram` to 224.0.0.81:8848
//! #   let _ = datagram;
//! }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use crate::consts::{conn_flags, proto, sctp_state, tcp_state};
use crate::wire::{MessageBuilder, PeData, SeqData, SyncConn};
use xvs_core::time::Instant;

/// When to re-send an entry that has not changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Once half of the entry's timeout has passed since it was last sent, but not sooner
    /// than `min` (the kernel's `sync_refresh_period` code uses the same half-timeout with a
    /// 10 s floor) and not later than `max`, so that a backup that joins (or comes back after
    /// a crash with empty tables) learns every connection within `max`. The default: 10 s and
    /// 30 s.
    HalfTimeout {
        /// The shortest interval between two sends of an unchanged entry.
        min: Duration,
        /// The longest.
        max: Duration,
    },
    /// At this fixed period, whatever the timeout.
    Every(Duration),
    /// Never: only new and changed entries are sent.
    Never,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh::HalfTimeout { min: Duration::from_secs(10), max: Duration::from_secs(30) }
    }
}

impl Refresh {
    /// How long after being sent an unchanged entry with `timeout_s` is due again.
    fn interval(self, timeout_s: u32) -> Option<Duration> {
        match self {
            Refresh::HalfTimeout { min, max } => {
                Some((Duration::from_secs(u64::from(timeout_s)) / 2).min(max).max(min))
            }
            Refresh::Every(d) => Some(d),
            Refresh::Never => None,
        }
    }
}

/// Master settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterConfig {
    /// Sync ID put in every message (`--syncid`).
    pub syncid: u8,
    /// Longest message, the UDP payload (see [`crate::sync_maxlen`]; default 1472).
    pub maxlen: usize,
    /// When to re-send unchanged entries.
    pub refresh: Refresh,
    /// Most entries tracked at once; past it new entries are not sent.
    pub max_tracked: usize,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            syncid: 0,
            maxlen: crate::sync_maxlen(crate::Role::Master, false, 1500, 0),
            refresh: Refresh::default(),
            max_tracked: 4 << 20,
        }
    }
}

/// What identifies an entry across snapshots: the kernel's lookup key for a connection
/// (`ip_vs_conn_in_get`: protocol, client, virtual) or a template (`ip_vs_ct_in_get`, which
/// also matches the fwmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Template or connection.
    pub template: bool,
    /// IP protocol.
    pub protocol: u8,
    /// Client address.
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Firewall mark.
    pub fwmark: u32,
}

impl ConnKey {
    /// The key of `c`.
    pub fn of(c: &SyncConn) -> ConnKey {
        ConnKey {
            template: c.is_template(),
            protocol: c.protocol,
            caddr: c.caddr,
            cport: c.cport,
            vaddr: c.vaddr,
            vport: c.vport,
            fwmark: c.fwmark,
        }
    }
}

/// The parts of an entry whose change makes it worth sending at once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    state: u16,
    flags: u32,
    daddr: IpAddr,
    dport: u16,
    seq: Option<SeqData>,
    pe: Option<PeData>,
}

impl Sent {
    fn of(c: &SyncConn) -> Sent {
        Sent {
            state: c.state,
            flags: c.flags & !conn_flags::HASHED,
            daddr: c.daddr,
            dport: c.dport,
            seq: c.seq,
            pe: c.pe.clone(),
        }
    }
}

#[derive(Debug)]
struct Tracked {
    conn: SyncConn,
    /// What was last put on the wire, and when; `None` until the first send.
    sent: Option<(Sent, Instant)>,
    /// In the send queue.
    queued: bool,
    /// The snapshot that last contained it.
    generation: u64,
}

/// Counters for metrics; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MasterStats {
    /// Snapshots handled.
    pub snapshots: u64,
    /// Datagrams returned by [`Master::poll_transmit`].
    pub datagrams: u64,
    /// Entries sent (each send of an entry counts).
    pub entries_sent: u64,
    /// Entries sent because they were new.
    pub new: u64,
    /// Entries sent because they changed.
    pub changed: u64,
    /// Entries sent because their refresh was due.
    pub refreshed: u64,
    /// Entries forgotten because a snapshot no longer had them.
    pub forgotten: u64,
    /// Entries not tracked (and not sent) because [`MasterConfig::max_tracked`] was reached.
    pub untracked: u64,
    /// Entries that could not be encoded (mixed address families, bad PE data).
    pub unencodable: u64,
}

/// A sync master.
///
/// Call [`Master::handle_snapshot`] with the whole connection table, then
/// [`Master::poll_transmit`] until it returns `None`, sending each datagram. Repeat at least
/// every few seconds: refreshes are only decided at snapshots.
#[derive(Debug)]
pub struct Master {
    cfg: MasterConfig,
    tracked: HashMap<ConnKey, Tracked>,
    queue: VecDeque<ConnKey>,
    generation: u64,
    stats: MasterStats,
}

/// Whether the kernel would ever send `c` (`ip_vs_sync_conn_needed`'s state filter).
fn syncable(c: &SyncConn) -> bool {
    if c.flags & conn_flags::ONE_PACKET != 0 {
        return false;
    }
    if c.is_template() {
        return true;
    }
    let states: &[u16] = match c.protocol {
        proto::TCP => &[
            tcp_state::ESTABLISHED,
            tcp_state::FIN_WAIT,
            tcp_state::CLOSE,
            tcp_state::CLOSE_WAIT,
            tcp_state::TIME_WAIT,
        ],
        proto::SCTP => &[
            sctp_state::ESTABLISHED,
            sctp_state::SHUTDOWN_SENT,
            sctp_state::SHUTDOWN_RECEIVED,
            sctp_state::SHUTDOWN_ACK_SENT,
            sctp_state::CLOSED,
        ],
        _ => return true,
    };
    states.contains(&c.state)
}

impl Master {
    /// A master with `cfg`.
    pub fn new(cfg: MasterConfig) -> Self {
        Master { cfg, tracked: HashMap::new(), queue: VecDeque::new(), generation: 0, stats: MasterStats::default() }
    }

    /// The configuration.
    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> MasterStats {
        self.stats
    }

    /// Entries tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// Entries waiting to be sent.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Takes a snapshot of every current connection and template at `now`: queues the new,
    /// changed and refresh-due ones, and forgets those no longer present.
    ///
    /// An entry listed twice counts once (the last copy wins).
    pub fn handle_snapshot(&mut self, now: Instant, conns: impl IntoIterator<Item = SyncConn>) {
        self.generation += 1;
        self.stats.snapshots += 1;
        let generation = self.generation;
        for conn in conns {
            if !syncable(&conn) {
                continue;
            }
            let key = ConnKey::of(&conn);
            let refresh = self.cfg.refresh;
            if !self.tracked.contains_key(&key) && self.tracked.len() >= self.cfg.max_tracked {
                self.stats.untracked += 1;
                continue;
            }
            let t = self.tracked.entry(key).or_insert_with(|| Tracked {
                conn: conn.clone(),
                sent: None,
                queued: false,
                generation,
            });
            t.generation = generation;
            let due = match &t.sent {
                None => true,
                Some((sent, at)) => {
                    *sent != Sent::of(&conn)
                        || refresh.interval(conn.timeout_s).is_some_and(|i| now.saturating_duration_since(*at) >= i)
                }
            };
            t.conn = conn;
            if due && !t.queued {
                t.queued = true;
                self.queue.push_back(key);
            }
        }
        let before = self.tracked.len();
        self.tracked.retain(|_, t| t.generation == generation);
        self.stats.forgotten += (before - self.tracked.len()) as u64;
        // Keys of forgotten entries stay in the queue; poll_transmit skips them.
        if self.queue.len() > self.tracked.len() {
            let tracked = &self.tracked;
            self.queue.retain(|k| tracked.contains_key(k));
        }
    }

    /// The next datagram to send at `now`, or `None` when nothing is due.
    ///
    /// Each datagram is a version 1 message of at most [`MasterConfig::maxlen`] bytes.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut builder = MessageBuilder::new(self.cfg.syncid, self.cfg.maxlen);
        while let Some(key) = self.queue.front().copied() {
            let Some(t) = self.tracked.get_mut(&key) else {
                self.queue.pop_front();
                continue;
            };
            if !builder.fits(&t.conn) {
                break;
            }
            self.queue.pop_front();
            t.queued = false;
            match builder.push(&t.conn) {
                Ok(_finished) => {
                    // `fits` was checked, so nothing was finished here.
                    let now_sent = Sent::of(&t.conn);
                    match &t.sent {
                        None => self.stats.new += 1,
                        Some((s, _)) if *s != now_sent => self.stats.changed += 1,
                        Some(_) => self.stats.refreshed += 1,
                    }
                    t.sent = Some((now_sent, now));
                    self.stats.entries_sent += 1;
                }
                Err(_) => {
                    // It will not encode any better next time; stop retrying until it changes.
                    t.sent = Some((Sent::of(&t.conn), now));
                    self.stats.unencodable += 1;
                }
            }
        }
        let datagram = builder.finish()?;
        self.stats.datagrams += 1;
        Some(datagram)
    }
}
