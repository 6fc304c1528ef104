//! One VRRP instance (keepalived's `vrrp_instance`): the router state machine of RFC 5798
//! section 6.4, with keepalived's additions (preempt_delay, FAULT, gratuitous ARP rounds).
//!
//! Call [`Instance::start`] once, then feed it [`Instance::handle_advert`] for every
//! advertisement of its virtual router id, [`Instance::handle_timeout`] when
//! [`Instance::poll_timeout`] says, and [`Instance::set_fault`] / [`Instance::set_priority`]
//! from tracking. After each call, drain [`Instance::poll_event`] and carry the events out in
//! order: they are the instance's only outputs.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use xvs_core::Instant;

use crate::wire::{Advert, Version};

/// What an instance is doing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started yet.
    Init,
    /// Listening to a master, ready to take over.
    Backup,
    /// Owning the virtual addresses and advertising.
    Master,
    /// A tracked interface or script failed: neither owning nor able to take over.
    Fault,
    /// Stopped (the daemon is going away).
    Stop,
}

impl State {
    /// The name keepalived prints and passes to notify scripts.
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
            State::Stop => "STOP",
        }
    }
}

/// What the daemon must do for an instance, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Send this advertisement (to the group, or to each unicast peer).
    Send(Advert),
    /// Add the virtual addresses to their interfaces.
    AddAddresses,
    /// Remove the virtual addresses from their interfaces.
    RemoveAddresses,
    /// Announce the virtual addresses: this many gratuitous ARPs / unsolicited neighbour
    /// advertisements for each.
    Announce(u32),
    /// The instance changed state: log it, run its notify scripts.
    Changed {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
    },
}

/// How one instance behaves (the settings of a `vrrp_instance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id, 1–255.
    pub vrid: u8,
    /// Configured priority, 1–255 (255: this router owns the addresses).
    pub priority: u8,
    /// Advertisement interval in centiseconds.
    pub interval_cs: u16,
    /// Take over from a master of lower priority (keepalived's default; `nopreempt` clears it).
    pub preempt: bool,
    /// After start, and on first seeing a lower priority master, wait this long before
    /// preempting it.
    pub preempt_delay: Duration,
    /// `state MASTER`: start by claiming the addresses instead of listening first.
    pub start_master: bool,
    /// The virtual addresses advertised (one family: the instance's).
    pub addrs: Vec<IpAddr>,
    /// Version 2 simple password.
    pub password: Option<[u8; 8]>,
    /// This router's own address on the link: ties between equal priorities go to the
    /// higher address.
    pub own: IpAddr,
    /// Gratuitous ARPs / neighbour advertisements per address on becoming master.
    pub garp_repeat: u32,
    /// A second round of them this long after becoming master (0: none).
    pub garp_delay: Duration,
    /// Another round this often while master (0: never).
    pub garp_refresh: Duration,
    /// Refuse advertisements whose address list differs from ours (keepalived does unless
    /// `skip_check_adv_addr`).
    pub check_addrs: bool,
}

/// Why an advertisement for this instance's router id was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another protocol version.
    Version(u8),
    /// Password missing, unexpected or wrong.
    Auth,
    /// Version 2 with another interval (version 3 learns the master's instead).
    Interval(u16),
    /// Another list of addresses.
    Addresses,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Version(v) => write!(f, "version {v} advertisement for a version mismatch"),
            Refused::Auth => write!(f, "authentication mismatch"),
            Refused::Interval(cs) => write!(f, "advertisement interval mismatch ({} s)", cs / 100),
            Refused::Addresses => write!(f, "virtual addresses differ from ours"),
        }
    }
}

/// Counters of one instance.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Advertisements sent.
    pub sent: u64,
    /// Advertisements accepted.
    pub received: u64,
    /// Advertisements refused (see [`Refused`]) by this instance.
    pub invalid: u64,
    /// State changes.
    pub transitions: u64,
    /// Times it became master.
    pub became_master: u64,
    /// Priority-0 advertisements received (a master stepping down).
    pub priority_zero_received: u64,
}

/// One VRRP instance.
#[derive(Debug)]
pub struct Instance {
    cfg: Config,
    state: State,
    /// Priority after tracking (the configured one until [`Instance::set_priority`]).
    priority: u8,
    /// The interval the master advertises (version 3 learns it).
    master_interval_cs: u16,
    /// The current master's address and priority, as last heard.
    master: Option<(IpAddr, u8)>,
    /// Backup: when the master is declared down.
    down_at: Option<Instant>,
    /// Master: the next advertisement.
    advert_at: Option<Instant>,
    /// Master: the next round of announcements.
    announce_at: Option<Instant>,
    /// No preemption before this (preempt_delay).
    preempt_after: Option<Instant>,
    /// A tracked interface or script of its own failed.
    fault: bool,
    /// Another member of its sync group is in FAULT.
    group_fault: bool,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Instance {
    /// An instance in [`State::Init`].
    pub fn new(cfg: Config) -> Instance {
        Instance {
            priority: cfg.priority,
            master_interval_cs: cfg.interval_cs,
            cfg,
            state: State::Init,
            master: None,
            down_at: None,
            advert_at: None,
            announce_at: None,
            preempt_after: None,
            fault: false,
            group_fault: false,
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its priority now (after tracking).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The master last heard (address, priority), or this router when it is master.
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        match self.state {
            State::Master => Some((self.cfg.own, self.priority)),
            State::Backup => self.master,
            _ => None,
        }
    }

    /// The interval the current master advertises, in centiseconds.
    pub fn master_interval_cs(&self) -> u16 {
        self.master_interval_cs
    }

    /// Its counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The next event to carry out.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Instance::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.down_at, self.advert_at, self.announce_at].into_iter().flatten().min()
    }

    /// Starts the instance as keepalived does: the owner of the addresses (priority 255)
    /// claims them at once; `state MASTER` listens for one interval (plus 1/256 of the skew
    /// base) before claiming them; the others listen for three intervals plus the skew.
    pub fn start(&mut self, now: Instant) {
        if self.state != State::Init {
            return;
        }
        if !self.cfg.preempt_delay.is_zero() {
            self.preempt_after = Some(now + self.cfg.preempt_delay);
        }
        if self.fault || self.group_fault {
            self.goto(State::Fault, now);
        } else if self.cfg.priority == 255 {
            self.goto(State::Master, now);
        } else {
            self.goto(State::Backup, now);
            if self.cfg.start_master {
                self.down_at = Some(now + self.interval() + self.skew_base() / 256);
            }
        }
    }

    /// Stops the instance: a master says so with a priority-0 advertisement (its backups take
    /// over after their skew time instead of three intervals) and gives up its addresses.
    pub fn stop(&mut self, now: Instant) {
        if self.state == State::Master {
            self.send(0);
        }
        if self.state != State::Stop && self.state != State::Init {
            self.goto(State::Stop, now);
        }
    }

    /// A tracked interface or script failed (`true`) or recovered (`false`).
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        self.fault = fault;
        self.apply_fault(now);
    }

    /// Another member of the instance's sync group is in FAULT (`true`), or none is.
    pub fn set_group_fault(&mut self, now: Instant, fault: bool) {
        self.group_fault = fault;
        self.apply_fault(now);
    }

    /// True when its own tracking (not its group) holds it in FAULT.
    pub fn own_fault(&self) -> bool {
        self.fault
    }

    /// True when its master-down timer has run out (a backup about to claim the addresses).
    pub fn down_due(&self, now: Instant) -> bool {
        self.state == State::Backup && self.down_at.is_some_and(|t| t <= now)
    }

    /// True when, as a backup, it hears a master it would not preempt (its timer is running
    /// on that master's advertisements).
    pub fn hears_master(&self, now: Instant) -> bool {
        self.state == State::Backup && self.master.is_some() && self.down_at.is_some_and(|t| t > now)
    }

    /// A sync group held it back: wait for another master-down interval, as keepalived does
    /// when not every member of the group may become master.
    pub fn restart_down_timer(&mut self, now: Instant) {
        if self.state == State::Backup {
            self.down_at = Some(now + self.down_interval());
        }
    }

    /// Follows its sync group to MASTER or BACKUP (keepalived's sync groups move together):
    /// a backup becomes master at once; a master steps back to backup (without a priority-0
    /// advertisement, as when it yields to a higher priority).
    pub fn follow(&mut self, now: Instant, to: State) {
        match (self.state, to) {
            (State::Backup, State::Master) => self.goto(State::Master, now),
            (State::Master, State::Backup) => self.goto(State::Backup, now),
            _ => {}
        }
    }

    fn apply_fault(&mut self, now: Instant) {
        let fault = self.fault || self.group_fault;
        match (fault, self.state) {
            (true, State::Master) => {
                self.send(0);
                self.goto(State::Fault, now);
            }
            (true, State::Backup) => self.goto(State::Fault, now),
            (false, State::Fault) if self.cfg.priority == 255 => self.goto(State::Master, now),
            (false, State::Fault) => self.goto(State::Backup, now),
            _ => {}
        }
    }

    /// The priority after tracking weights (clamped to 1–254 unless the configured priority is
    /// 255, which tracking never changes, as keepalived).
    pub fn set_priority(&mut self, now: Instant, priority: u8) {
        let p = if self.cfg.priority == 255 { 255 } else { priority.clamp(1, 254) };
        if p == self.priority {
            return;
        }
        self.priority = p;
        // A master that falls below its backups tells them at once, so that they can preempt
        // without waiting for the next advertisement.
        if self.state == State::Master {
            self.send(p);
            self.advert_at = Some(now + self.interval());
        }
    }

    /// An advertisement with this instance's router id, from `src`. The caller has checked
    /// the checksum and the TTL.
    pub fn handle_advert(&mut self, now: Instant, src: IpAddr, adv: &Advert) -> Result<(), Refused> {
        if let Err(r) = self.check(adv) {
            self.stats.invalid += 1;
            return Err(r);
        }
        self.stats.received += 1;
        if adv.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        match self.state {
            State::Backup => {
                if adv.priority == 0 {
                    // The master steps down: take over after the skew time only.
                    self.master = None;
                    self.down_at = Some(now + self.skew());
                } else if !self.cfg.preempt || adv.priority >= self.priority || self.preempt_waits(now) {
                    if adv.priority >= self.priority {
                        // keepalived cancels a pending preempt_delay on a master it may not
                        // preempt; the next lower one starts it again.
                        self.preempt_after = None;
                    }
                    self.master = Some((src, adv.priority));
                    if self.cfg.version == Version::V3 {
                        self.master_interval_cs = adv.interval_cs;
                    }
                    self.down_at = Some(now + self.down_interval());
                }
                // Otherwise a lower priority master: let the timer run out and preempt it.
            }
            State::Master => {
                if adv.priority == 0 {
                    // Another master stepped down: make sure the backups hear us now.
                    self.send(self.priority);
                    self.advert_at = Some(now + self.interval());
                } else if adv.priority > self.priority || (adv.priority == self.priority && higher(src, self.cfg.own)) {
                    self.master = Some((src, adv.priority));
                    if self.cfg.version == Version::V3 {
                        self.master_interval_cs = adv.interval_cs;
                    }
                    self.goto(State::Backup, now);
                } else {
                    // A lower priority master (just started, or not hearing us): answer at
                    // once and announce the addresses again, as keepalived does, so that the
                    // link's switches and neighbours follow us rather than it.
                    self.send(self.priority);
                    self.advert_at = Some(now + self.interval());
                    self.events.push_back(Event::Announce(self.cfg.garp_repeat));
                }
            }
            // Fault, Init and Stop listen to nobody.
            _ => {}
        }
        Ok(())
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.down_at.is_some_and(|t| t <= now) && self.state == State::Backup {
            self.goto(State::Master, now);
        }
        if self.advert_at.is_some_and(|t| t <= now) && self.state == State::Master {
            self.send(self.priority);
            self.advert_at = Some(now + self.interval());
        }
        if self.announce_at.is_some_and(|t| t <= now) && self.state == State::Master {
            self.events.push_back(Event::Announce(self.cfg.garp_repeat));
            self.announce_at = (!self.cfg.garp_refresh.is_zero()).then(|| now + self.cfg.garp_refresh);
        }
    }

    fn check(&self, adv: &Advert) -> Result<(), Refused> {
        if adv.version != self.cfg.version {
            return Err(Refused::Version(adv.version.number()));
        }
        if adv.version == Version::V2 {
            if adv.password != self.cfg.password {
                return Err(Refused::Auth);
            }
            if adv.interval_cs != self.cfg.interval_cs {
                return Err(Refused::Interval(adv.interval_cs));
            }
        }
        // A priority-0 advertisement is accepted whatever it lists: it only says "I stop".
        if self.cfg.check_addrs && adv.priority != 0 {
            let ours: Vec<&IpAddr> = self.cfg.addrs.iter().filter(|a| a.is_ipv4() == self.cfg.own.is_ipv4()).collect();
            if adv.addrs.len() != ours.len() || !adv.addrs.iter().all(|a| ours.contains(&a)) {
                return Err(Refused::Addresses);
            }
        }
        Ok(())
    }

    /// Within preempt_delay: a lower priority master is still obeyed.
    fn preempt_waits(&mut self, now: Instant) -> bool {
        if self.cfg.preempt_delay.is_zero() {
            return false;
        }
        match self.preempt_after {
            Some(t) => now < t,
            None => {
                self.preempt_after = Some(now + self.cfg.preempt_delay);
                true
            }
        }
    }

    fn goto(&mut self, to: State, now: Instant) {
        let from = self.state;
        if from == to {
            return;
        }
        if from == State::Master {
            self.events.push_back(Event::RemoveAddresses);
        }
        self.state = to;
        self.stats.transitions += 1;
        self.down_at = None;
        self.advert_at = None;
        self.announce_at = None;
        match to {
            State::Master => {
                self.stats.became_master += 1;
                self.master = None;
                self.master_interval_cs = self.cfg.interval_cs;
                // preempt_delay starts again at the next lower priority master.
                self.preempt_after = None;
                // The advertisement first, so that an old master releases the addresses
                // before our announcements reach the link (keepalived's order).
                self.send(self.priority);
                self.events.push_back(Event::AddAddresses);
                self.events.push_back(Event::Announce(self.cfg.garp_repeat));
                self.advert_at = Some(now + self.interval());
                self.announce_at = if !self.cfg.garp_delay.is_zero() {
                    Some(now + self.cfg.garp_delay)
                } else if !self.cfg.garp_refresh.is_zero() {
                    Some(now + self.cfg.garp_refresh)
                } else {
                    None
                };
            }
            State::Backup => {
                self.master_interval_cs =
                    if self.cfg.version == Version::V3 { self.master_interval_cs } else { self.cfg.interval_cs };
                self.down_at = Some(now + self.down_interval());
            }
            State::Fault | State::Stop | State::Init => self.master = None,
        }
        self.events.push_back(Event::Changed { from, to });
    }

    fn send(&mut self, priority: u8) {
        self.stats.sent += 1;
        self.events.push_back(Event::Send(Advert {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval_cs: self.cfg.interval_cs,
            password: self.cfg.password,
            addrs: self.cfg.addrs.iter().filter(|a| a.is_ipv4() == self.cfg.own.is_ipv4()).copied().collect(),
        }));
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.interval_cs) * 10)
    }

    /// Skew_Time: version 3 scales the master's interval by (256 − priority)/256; version 2
    /// uses (256 − priority)/256 of a second.
    fn skew(&self) -> Duration {
        self.skew_base() * (256 - u32::from(self.priority)) / 256
    }

    /// What the skew scales: the master's interval (version 3) or one second (version 2,
    /// whatever the interval).
    fn skew_base(&self) -> Duration {
        match self.cfg.version {
            Version::V3 => Duration::from_millis(u64::from(self.master_interval_cs) * 10),
            Version::V2 => Duration::from_secs(1),
        }
    }

    /// Master_Down_Interval: three of the master's intervals plus the skew.
    fn down_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.master_interval_cs) * 30) + self.skew()
    }
}

/// `a` > `b` as addresses of one family (the RFC's "primary IP address" tie-break).
fn higher(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a > b,
        (IpAddr::V6(a), IpAddr::V6(b)) => a > b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(priority: u8) -> Config {
        Config {
            version: Version::V3,
            vrid: 51,
            priority,
            interval_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            start_master: false,
            addrs: vec![ip("198.18.0.100")],
            password: None,
            own: ip("198.18.1.2"),
            garp_repeat: 5,
            garp_delay: Duration::from_secs(5),
            garp_refresh: Duration::ZERO,
            check_addrs: true,
        }
    }

    fn advert(priority: u8) -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority,
            interval_cs: 100,
            password: None,
            addrs: vec![ip("198.18.0.100")],
        }
    }

    fn drain(i: &mut Instance) -> Vec<Event> {
        std::iter::from_fn(|| i.poll_event()).collect()
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn a_backup_takes_over_after_three_intervals_and_the_skew() {
        let mut i = Instance::new(cfg(100));
        i.start(at(0));
        assert_eq!(i.state(), State::Backup);
        // 3 s + (256 − 100)/256 s = 3.609375 s.
        assert_eq!(i.poll_timeout(), Some(at(3609) + Duration::from_micros(375)));
        i.handle_timeout(at(3609));
        assert_eq!(i.state(), State::Backup);
        drain(&mut i);
        i.handle_timeout(at(3610));
        assert_eq!(i.state(), State::Master);
        let ev = drain(&mut i);
        assert!(matches!(&ev[0], Event::Send(a) if a.priority == 100));
        assert_eq!(ev[1], Event::AddAddresses);
        assert_eq!(ev[2], Event::Announce(5));
        assert_eq!(ev[3], Event::Changed { from: State::Backup, to: State::Master });
        // Adverts every interval, and the second round of announcements after 5 s.
        i.handle_timeout(at(4610));
        assert!(matches!(drain(&mut i)[..], [Event::Send(_)]));
        for t in [5610, 6610, 7610] {
            i.handle_timeout(at(t));
        }
        i.handle_timeout(at(8610));
        assert!(drain(&mut i).contains(&Event::Announce(5)));
    }

    #[test]
    fn adverts_of_a_higher_master_hold_a_backup_and_priority_zero_hastens_it() {
        let mut i = Instance::new(cfg(100));
        i.start(at(0));
        for t in (0..10).map(|k| k * 1000) {
            i.handle_advert(at(t), ip("198.18.1.3"), &advert(200)).unwrap();
            i.handle_timeout(at(t + 999));
        }
        assert_eq!(i.state(), State::Backup);
        assert_eq!(i.master(), Some((ip("198.18.1.3"), 200)));
        i.handle_advert(at(10_000), ip("198.18.1.3"), &advert(0)).unwrap();
        // Skew only: 0.609 s.
        i.handle_timeout(at(10_610));
        assert_eq!(i.state(), State::Master);
    }

    #[test]
    fn preemption_nopreempt_and_preempt_delay() {
        // A backup of higher priority ignores a lower master and takes over.
        let mut i = Instance::new(cfg(150));
        i.start(at(0));
        for t in (0..5).map(|k| k * 1000) {
            i.handle_advert(at(t), ip("198.18.1.3"), &advert(100)).unwrap();
        }
        i.handle_timeout(at(4000));
        assert_eq!(i.state(), State::Master);
        // nopreempt: it follows the lower master.
        let mut i = Instance::new(Config { preempt: false, ..cfg(150) });
        i.start(at(0));
        for t in (0..10).map(|k| k * 1000) {
            i.handle_advert(at(t), ip("198.18.1.3"), &advert(100)).unwrap();
            i.handle_timeout(at(t + 999));
        }
        assert_eq!(i.state(), State::Backup);
        // preempt_delay 5 s from start: obeys the lower master until then (and again 5 s from
        // the next lower master after a higher one cancelled it).
        let mut i = Instance::new(Config { preempt_delay: Duration::from_secs(5), ..cfg(150) });
        i.start(at(0));
        for t in (0..10).map(|k| k * 1000) {
            i.handle_advert(at(t), ip("198.18.1.3"), &advert(100)).unwrap();
            i.handle_timeout(at(t + 999));
            if i.state() == State::Master {
                assert!(t >= 5000, "preempted at {t}");
                return;
            }
        }
        panic!("never preempted");
    }

    #[test]
    fn a_master_yields_to_higher_priority_and_to_a_higher_address_at_equal_priority() {
        let mut i = Instance::new(Config { start_master: true, ..cfg(100) });
        i.start(at(0));
        // `state MASTER`: one interval and 1/256 s (version 3: of the interval) of listening.
        assert_eq!(i.state(), State::Backup);
        assert_eq!(i.poll_timeout(), Some(at(1003) + Duration::from_nanos(906_250)));
        i.handle_timeout(at(1004));
        assert_eq!(i.state(), State::Master);
        drain(&mut i);
        i.handle_advert(at(1010), ip("198.18.1.1"), &advert(100)).unwrap();
        assert_eq!(i.state(), State::Master, "lower address, same priority");
        // It answers a lower master at once and announces again.
        let ev = drain(&mut i);
        assert!(matches!(&ev[..], [Event::Send(a), Event::Announce(5)] if a.priority == 100), "{ev:?}");
        i.handle_advert(at(1020), ip("198.18.1.1"), &advert(99)).unwrap();
        assert_eq!(i.state(), State::Master);
        i.handle_advert(at(1030), ip("198.18.1.9"), &advert(100)).unwrap();
        assert_eq!(i.state(), State::Backup);
        let ev = drain(&mut i);
        assert!(ev.contains(&Event::RemoveAddresses));
        assert_eq!(*ev.last().unwrap(), Event::Changed { from: State::Master, to: State::Backup });
    }

    #[test]
    fn faults_and_stops_send_priority_zero_and_release_the_addresses() {
        let mut i = Instance::new(Config { start_master: true, ..cfg(100) });
        i.start(at(0));
        i.handle_timeout(at(1100));
        assert_eq!(i.state(), State::Master);
        drain(&mut i);
        i.set_fault(at(1200), true);
        let ev = drain(&mut i);
        assert!(matches!(&ev[0], Event::Send(a) if a.priority == 0));
        assert!(ev.contains(&Event::RemoveAddresses));
        assert_eq!(i.state(), State::Fault);
        assert_eq!(i.poll_timeout(), None);
        // Adverts are ignored in FAULT; recovery goes to BACKUP.
        i.handle_advert(at(1300), ip("198.18.1.3"), &advert(50)).unwrap();
        i.set_fault(at(1400), false);
        assert_eq!(i.state(), State::Backup);
        i.handle_timeout(at(5100));
        assert_eq!(i.state(), State::Master);
        drain(&mut i);
        i.stop(at(6000));
        let ev = drain(&mut i);
        assert!(matches!(&ev[0], Event::Send(a) if a.priority == 0));
        assert_eq!(i.state(), State::Stop);
    }

    #[test]
    fn tracking_priority_is_clamped_and_a_master_advertises_it_at_once() {
        let mut i = Instance::new(Config { start_master: true, ..cfg(100) });
        i.start(at(0));
        i.handle_timeout(at(1100));
        drain(&mut i);
        i.set_priority(at(1110), 0);
        assert_eq!(i.priority(), 1);
        assert!(matches!(&drain(&mut i)[..], [Event::Send(a)] if a.priority == 1));
        i.set_priority(at(1120), 255);
        assert_eq!(i.priority(), 254);
        let mut owner = Instance::new(cfg(255));
        owner.set_priority(at(0), 10);
        assert_eq!(owner.priority(), 255);
    }

    #[test]
    fn mismatches_are_refused_and_counted() {
        let mut i = Instance::new(Config { version: Version::V2, password: Some(*b"secret\0\0"), ..cfg(100) });
        i.start(at(0));
        let good = Advert { version: Version::V2, password: Some(*b"secret\0\0"), ..advert(200) };
        assert_eq!(i.handle_advert(at(1), ip("198.18.1.3"), &good), Ok(()));
        let bad = Advert { password: Some(*b"wrong\0\0\0"), ..good.clone() };
        assert_eq!(i.handle_advert(at(2), ip("198.18.1.3"), &bad), Err(Refused::Auth));
        let bad = Advert { interval_cs: 200, ..good.clone() };
        assert_eq!(i.handle_advert(at(3), ip("198.18.1.3"), &bad), Err(Refused::Interval(200)));
        let bad = Advert { addrs: vec![ip("198.18.0.101")], ..good.clone() };
        assert_eq!(i.handle_advert(at(4), ip("198.18.1.3"), &bad), Err(Refused::Addresses));
        assert_eq!(i.handle_advert(at(5), ip("198.18.1.3"), &advert(200)), Err(Refused::Version(3)));
        assert_eq!(i.stats().invalid, 4);
        assert_eq!(i.stats().received, 1);
    }
}
