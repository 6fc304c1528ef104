//! The whole of IPVS as a deterministic state machine: services, connections, persistence,
//! statistics and timers, driven by packets and time.
//!
//! [`Balancer`] is the reference model that the XDP dataplane is tested against, and what the
//! tests use to replay the kernel's behaviour. Call order, as for any sans-I/O machine:
//! feed packets with [`Balancer::handle_inbound`] (client → director) and
//! [`Balancer::handle_outbound`] (replies routed through the director), act on the returned
//! [`Verdict`], and call [`Balancer::handle_timeout`] whenever [`Balancer::poll_timeout`] says
//! so. Configuration changes go through [`Balancer::services`]'s methods.

use core::net::IpAddr;
use core::time::Duration;

use crate::addr::{mask_addr, Family};
use crate::conn::tcp::{next_state, TCP_STATES_NORMAL, TCP_STATES_SECURE};
use crate::conn::{
    sctp, Conn, ConnFlags, ConnId, ConnState, ConnTable, Direction, InKey, OutKey, SctpChunks, SctpState, TcpFlags,
    TcpState,
};
use crate::dest::DestId;
use crate::model::{ForwardMethod, Protocol, ServiceKey};
use crate::sched::{RandomSource, SchedEnv, SchedInput, SplitMix64};
use crate::service::{ServiceId, Services, FTP_PORT};
use crate::stats::{Stats, ESTIMATOR_INTERVAL};
use crate::sysctl::{Sysctl, Timeouts};
use crate::time::Instant;

/// The first timeout of a new connection, before its first state transition.
const INITIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// The timeout a connection that still controls others is re-armed with at expiry.
const CONTROL_RETRY: Duration = Duration::from_secs(60);
/// The FTP data port: never scheduled from the client side.
const FTP_DATA_PORT: u16 = 20;

/// The parts of a packet IPVS looks at.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Transport protocol.
    pub proto: Protocol,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP flags (ignored for UDP and SCTP).
    pub tcp: TcpFlags,
    /// The SCTP chunks the state machine reads (ignored for TCP and UDP).
    pub sctp: SctpChunks,
    /// Length of the IP packet, header included (what the byte counters add).
    pub len: u32,
    /// The firewall mark (0 without one).
    pub fwmark: u32,
    /// The SIP Call-ID of a UDP datagram's payload ([`crate::pe_sip::call_id`]), for services
    /// with the sip persistence engine.
    pub callid: Option<crate::pe_sip::CallId>,
}

impl Packet {
    /// A TCP packet with the given flags and a 60-byte length.
    pub fn tcp(src: (IpAddr, u16), dst: (IpAddr, u16), flags: u8) -> Packet {
        Packet {
            proto: Protocol::Tcp,
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            tcp: TcpFlags(flags),
            len: 60,
            fwmark: 0,
            callid: None,
            sctp: SctpChunks::default(),
        }
    }

    /// A UDP packet with a 60-byte length.
    pub fn udp(src: (IpAddr, u16), dst: (IpAddr, u16)) -> Packet {
        Packet {
            proto: Protocol::Udp,
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            tcp: TcpFlags(0),
            len: 60,
            fwmark: 0,
            callid: None,
            sctp: SctpChunks::default(),
        }
    }

    /// An SCTP packet carrying `chunks`, with a 60-byte length.
    pub fn sctp(src: (IpAddr, u16), dst: (IpAddr, u16), chunks: SctpChunks) -> Packet {
        Packet { proto: Protocol::Sctp, sctp: chunks, ..Packet::udp(src, dst) }
    }

    /// The address family.
    pub fn family(&self) -> Family {
        Family::of(&self.src)
    }

    /// A TCP SYN or an SCTP INIT: what may replace a closed connection (`is_new_conn`).
    fn opens_anew(&self) -> bool {
        match self.proto {
            Protocol::Tcp => self.tcp.syn(),
            Protocol::Sctp => self.sctp.is_init(),
            Protocol::Udp => false,
        }
    }
}

/// Where a client packet goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The connection it belongs to.
    pub conn: ConnId,
    /// The real server.
    pub dest: DestId,
    /// How it gets there.
    pub method: ForwardMethod,
    /// Real server address (NAT rewrites the destination to it; DR/TUN route to it).
    pub daddr: IpAddr,
    /// Real server port (NAT rewrites the destination port to it).
    pub dport: u16,
    /// True when this packet created the connection.
    pub new: bool,
}

/// Why a packet was dropped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The connection's real server was removed and `expire_nodest_conn` is off.
    DestUnavailable,
    /// A NAT real server sent a packet that matches no connection (`nat_icmp_send`).
    UnknownReply,
    /// The client is not in the service's allowed sources.
    NotAllowed,
    /// A service with the sip persistence engine got a packet without a Call-ID (or not UDP):
    /// the kernel drops it without an ICMP error.
    NoCallId,
}

/// What to do with a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Not IPVS's business: hand it to the local stack unchanged.
    Pass,
    /// Forward to a real server.
    Forward(Forward),
    /// A NAT reply: rewrite the source to the virtual address and port, then route it.
    Reply {
        /// The connection.
        conn: ConnId,
        /// New source address.
        vaddr: IpAddr,
        /// New source port.
        vport: u16,
    },
    /// A reply on a non-NAT connection: counted, passed unchanged.
    Observed {
        /// The connection.
        conn: ConnId,
    },
    /// No real server: send ICMP port unreachable to the client and drop.
    Unreachable,
    /// Dropped silently.
    Drop(DropReason),
}

/// The reference model of IPVS. See the module documentation for the call order.
pub struct Balancer {
    /// Services and real servers.
    pub services: Services,
    /// Connections and templates.
    pub conns: ConnTable,
    /// Tunables.
    pub sysctl: Sysctl,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Totals over every service.
    pub total: Stats,
    rng: Box<dyn RandomSource + Send>,
    next_estimation: Option<Instant>,
}

impl core::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Balancer").field("services", &self.services.len()).field("conns", &self.conns.len()).finish()
    }
}

impl Default for Balancer {
    fn default() -> Self {
        Balancer::new(0x5eed)
    }
}

enum Scheduled {
    Conn(ConnId),
    /// The scheduler found no server.
    NoDest,
    /// The packet is not to be scheduled (FTP data from the server side, port mismatch).
    Ignored,
    /// Dropped without an answer (the sip engine found no Call-ID).
    Drop(DropReason),
}

impl Balancer {
    /// An empty balancer whose random choices (twos) come from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Balancer::with_rng(Box::new(SplitMix64(seed)))
    }

    /// An empty balancer drawing random numbers from `rng`.
    pub fn with_rng(rng: Box<dyn RandomSource + Send>) -> Self {
        Balancer {
            services: Services::new(),
            conns: ConnTable::default(),
            sysctl: Sysctl::default(),
            timeouts: Timeouts::new(),
            total: Stats::default(),
            rng,
            next_estimation: None,
        }
    }

    /// Starts the rate estimator if it is not running (it runs once a service exists).
    fn start_estimation(&mut self, now: Instant) {
        if self.next_estimation.is_none() && !self.services.is_empty() {
            self.next_estimation = Some(now + ESTIMATOR_INTERVAL);
        }
    }

    /// Starts the estimator when services exist that were not added through
    /// [`Balancer::add_service`] (a configuration restored into [`Balancer::services`]).
    pub fn add_service_hook_estimator(&mut self, now: Instant) {
        self.start_estimation(now);
    }

    /// Adds a service (see [`Services::add_service`]) and starts the estimator.
    pub fn add_service(
        &mut self,
        key: ServiceKey,
        config: crate::ServiceConfig,
        now: Instant,
    ) -> Result<ServiceId, crate::Error> {
        let id = self.services.add_service(key, config, now)?;
        self.start_estimation(now);
        Ok(id)
    }

    /// Zeroes one service's statistics, or all including the totals (`-Z`).
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), crate::Error> {
        self.services.zero(key)?;
        if key.is_none() {
            self.total.zero();
        }
        Ok(())
    }

    /// When [`Balancer::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.conns.next_expiry(), self.services.poll_timeout(), self.next_estimation].into_iter().flatten().min()
    }

    /// Runs everything due at `now`: connection expiry, the trash, scheduler collectors and
    /// the estimator.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(id) = self.conns.pop_due(now) {
            self.expire(id, now);
        }
        self.services.handle_timeout(now, self.sysctl.lblc_expiration, self.sysctl.lblcr_expiration);
        while let Some(t) = self.next_estimation.filter(|t| *t <= now) {
            if self.sysctl.run_estimation {
                self.sample_estimators();
            }
            self.next_estimation = Some(t + ESTIMATOR_INTERVAL);
        }
    }

    fn sample_estimators(&mut self) {
        self.total.sample();
        let ids: Vec<ServiceId> = self.services.iter().map(|(id, _)| id).collect();
        for id in ids {
            let svc = self.services.get_mut(id).expect("listed services are live");
            svc.stats.sample();
            let dests = svc.dests.clone();
            for d in dests {
                if let Some(d) = self.services.dest_mut(d) {
                    d.stats.sample();
                }
            }
        }
    }

    /// The connection timer fired (`ip_vs_conn_expire`): a connection that still controls
    /// others waits 60 s more; otherwise it is removed, detached from its template and unbound
    /// from its real server.
    fn expire(&mut self, id: ConnId, now: Instant) {
        let c = self.conns.get_mut(id).expect("a due timer belongs to a live connection");
        if c.n_control > 0 {
            c.timeout = CONTROL_RETRY;
            self.conns.rearm(id, now);
            return;
        }
        let c = self.conns.remove(id).expect("a live connection");
        if let Some(ct) = c.control {
            if let Some(t) = self.conns.get_mut(ct) {
                t.n_control -= 1;
            }
        }
        if let Some(d) = c.dest.and_then(|d| self.services.dest_mut(d)) {
            d.unbind(c.is_template(), c.is_active());
        }
    }

    /// Expires a connection at once (reuse and no-destination rescheduling).
    fn expire_now(&mut self, id: ConnId, now: Instant) {
        self.expire(id, now);
    }

    /// A packet from a client (the in-hook, reference §1.1).
    pub fn handle_inbound(&mut self, now: Instant, pkt: &Packet) -> Verdict {
        let key =
            InKey { proto: pkt.proto.number(), caddr: pkt.src, cport: pkt.sport, vaddr: pkt.dst, vport: pkt.dport };
        let mut cp = self.conns.lookup_in(&key);
        // A closed connection a new SYN replaces: ip_vs_conn_expire_now only re-arms its timer,
        // which fires after this packet, so it still counts against its server while the new one
        // is scheduled (testdata/kernel/reuse-6.12.txt).
        let mut replaced = None;

        if let Some(id) = cp {
            if pkt.opens_anew() {
                let c = self.conns.get(id).expect("looked up");
                let dest_weight0 = c.dest.and_then(|d| self.services.dest(d)).is_some_and(|d| d.weight() == 0);
                // Since Linux 5.14 the quiesced-server case does not depend on conn_reuse_mode.
                let resched = (self.sysctl.expire_nodest_conn && dest_weight0)
                    || (self.sysctl.conn_reuse_mode != 0 && self.new_conn_expected(c));
                if resched {
                    if c.n_control == 0 {
                        replaced = Some(id);
                    }
                    cp = None;
                }
            }
        }
        if let Some(id) = cp {
            let c = self.conns.get(id).expect("looked up");
            let available = c.dest.and_then(|d| self.services.dest(d)).is_some_and(|d| d.is_available());
            if c.dest.is_some() && !available {
                if !self.sysctl.expire_nodest_conn {
                    return Verdict::Drop(DropReason::DestUnavailable);
                }
                self.expire_now(id, now);
                cp = None;
            }
        }
        let new = cp.is_none();
        let id = match cp {
            Some(id) => id,
            None => {
                let opened = self.open(now, pkt);
                if let Some(old) = replaced {
                    self.expire_now(old, now);
                }
                match opened {
                    Ok(id) => id,
                    Err(v) => return v,
                }
            }
        };

        self.in_stats(id, pkt.len);
        self.transition(id, Direction::Input, pkt);
        let c = self.conns.get_mut(id).expect("live connection");
        c.in_pkts += 1;
        let dest = c.dest.expect("scheduled connections have a real server");
        let fwd = Forward { conn: id, dest, method: c.flags.method(), daddr: c.daddr, dport: c.dport, new };
        self.release(id, now);
        Verdict::Forward(fwd)
    }

    /// A new connection for `pkt` (no connection matched it), or the verdict without one.
    fn open(&mut self, now: Instant, pkt: &Packet) -> Result<ConnId, Verdict> {
        let may_open = match pkt.proto {
            Protocol::Tcp => (pkt.tcp.syn() || self.sysctl.sloppy_tcp) && !pkt.tcp.rst(),
            // sctp_conn_schedule: an INIT, or any first chunk but an ABORT with sloppy_sctp
            // (recorded: testdata/kernel/sctp-6.*.txt, "which first chunk opens a connection").
            Protocol::Sctp => (pkt.sctp.is_init() || self.sysctl.sloppy_sctp) && !pkt.sctp.is_abort(),
            Protocol::Udp => true,
        };
        if !may_open {
            return Err(Verdict::Pass);
        }
        let Some(svc) = self.services.lookup(pkt.family(), pkt.proto, &pkt.dst, pkt.dport, pkt.fwmark) else {
            return Err(Verdict::Pass);
        };
        let allowed = &self.services.get(svc).expect("found").config().allowed_sources;
        if !allowed.is_empty() && !allowed.iter().any(|p| p.contains(&pkt.src)) {
            return Err(Verdict::Drop(DropReason::NotAllowed));
        }
        match self.schedule(svc, pkt, now) {
            Scheduled::Conn(id) => Ok(id),
            Scheduled::Ignored => Err(Verdict::Pass),
            Scheduled::Drop(r) => Err(Verdict::Drop(r)),
            Scheduled::NoDest => {
                let svc_port = self.services.get(svc).map_or(0, |s| s.key().port());
                if svc_port == FTP_PORT && pkt.dport != FTP_PORT {
                    return Err(Verdict::Pass);
                }
                Err(Verdict::Unreachable)
            }
        }
    }

    /// A packet from a real server routed through the director (the out-hook, §1.2).
    pub fn handle_outbound(&mut self, now: Instant, pkt: &Packet) -> Verdict {
        let key =
            OutKey { proto: pkt.proto.number(), caddr: pkt.dst, cport: pkt.dport, raddr: pkt.src, rport: pkt.sport };
        let Some(id) = self.conns.lookup_out(&key) else {
            if self.sysctl.nat_icmp_send && !pkt.tcp.rst() && self.is_nat_real_server(&pkt.src, pkt.sport) {
                return Verdict::Drop(DropReason::UnknownReply);
            }
            return Verdict::Pass;
        };
        self.out_stats(id, pkt.len);
        self.transition(id, Direction::Output, pkt);
        let c = self.conns.get(id).expect("live connection");
        let verdict = if c.flags.method() == ForwardMethod::Masq {
            Verdict::Reply { conn: id, vaddr: c.key.vaddr, vport: c.key.vport }
        } else {
            Verdict::Observed { conn: id }
        };
        self.release(id, now);
        verdict
    }

    fn is_nat_real_server(&self, addr: &IpAddr, port: u16) -> bool {
        self.services.iter().any(|(id, _)| {
            self.services.view(id).is_some_and(|v| {
                v.iter().any(|(_, d)| d.method() == ForwardMethod::Masq && d.addr() == *addr && d.port() == port)
            })
        })
    }

    /// `is_new_conn_expected`: a SYN on a closed, uncontrolled TCP connection starts anew.
    fn new_conn_expected(&self, c: &Conn) -> bool {
        if c.control.is_some() {
            return false;
        }
        match c.state {
            ConnState::Tcp(TcpState::TimeWait | TcpState::Close) => true,
            ConnState::Tcp(TcpState::FinWait) => {
                self.sysctl.conn_reuse_mode & 2 != 0 && c.flags.has(ConnFlags::NOOUTPUT)
            }
            ConnState::Sctp(SctpState::Closed) => true,
            _ => false,
        }
    }

    /// `ip_vs_conn_put`: re-arm the timer, or free a one-packet connection at once.
    fn release(&mut self, id: ConnId, now: Instant) {
        let c = self.conns.get(id).expect("live connection");
        if c.flags.has(ConnFlags::ONE_PACKET) {
            self.expire(id, now);
        } else {
            self.conns.rearm(id, now);
        }
    }

    fn in_stats(&mut self, id: ConnId, len: u32) {
        let Some(dest) = self.conns.get(id).and_then(|c| c.dest) else {
            return;
        };
        let Some(d) = self.services.dest_mut(dest).filter(|d| d.is_available()) else {
            return;
        };
        d.stats.add_in(len);
        let svc = d.service().expect("available real servers belong to a service");
        if let Some(s) = self.services.get_mut(svc) {
            s.stats.add_in(len);
        }
        self.total.add_in(len);
    }

    fn out_stats(&mut self, id: ConnId, len: u32) {
        let Some(dest) = self.conns.get(id).and_then(|c| c.dest) else {
            return;
        };
        let Some(d) = self.services.dest_mut(dest).filter(|d| d.is_available()) else {
            return;
        };
        d.stats.add_out(len);
        let svc = d.service().expect("available real servers belong to a service");
        if let Some(s) = self.services.get_mut(svc) {
            s.stats.add_out(len);
        }
        self.total.add_out(len);
    }

    /// Runs the protocol state machine for one packet and sets the connection's timeout.
    fn transition(&mut self, id: ConnId, dir: Direction, pkt: &Packet) {
        let c = self.conns.get_mut(id).expect("live connection");
        match c.state {
            ConnState::Udp => {
                c.timeout = self.timeouts.udp;
                if dir == Direction::Output {
                    self.assure_template(id);
                }
                return;
            }
            ConnState::TemplateNone | ConnState::TemplateAssured => return,
            ConnState::Tcp(_) | ConnState::Sctp(_) => {}
        }
        // While no reply was seen (DR, TUN, NAT before its first reply), the input-only table.
        let mut dir = dir;
        if c.flags.has(ConnFlags::NOOUTPUT) {
            if dir == Direction::Output {
                c.flags.0 &= !ConnFlags::NOOUTPUT;
            } else {
                dir = Direction::InputOnly;
            }
        }
        let (new, timeout) = match c.state {
            ConnState::Tcp(state) => {
                let table = if self.sysctl.secure_tcp { &TCP_STATES_SECURE } else { &TCP_STATES_NORMAL };
                let new = next_state(table, dir, pkt.tcp, state);
                (ConnState::Tcp(new), self.timeouts.tcp.get(new))
            }
            ConnState::Sctp(state) => {
                let new = sctp::next_state(dir, pkt.sctp, state);
                (ConnState::Sctp(new), new.timeout())
            }
            _ => unreachable!("only TCP and SCTP have a state table"),
        };
        if new != c.state {
            if c.is_active() != new.is_active() {
                if new.is_active() {
                    c.flags.0 &= !ConnFlags::INACTIVE;
                } else {
                    c.flags.0 |= ConnFlags::INACTIVE;
                }
                if let Some(d) = c.dest.and_then(|d| self.services.dest_mut(d)) {
                    d.set_active(new.is_active());
                }
            }
            if matches!(new, ConnState::Tcp(TcpState::Established) | ConnState::Sctp(SctpState::Established)) {
                self.assure_template(id);
            }
        }
        let c = self.conns.get_mut(id).expect("live connection");
        c.state = new;
        c.timeout = timeout;
    }

    fn assure_template(&mut self, id: ConnId) {
        let ct = self.conns.get(id).and_then(|c| c.control);
        if let Some(t) = ct.and_then(|ct| self.conns.get_mut(ct)) {
            if t.is_template() {
                t.state = ConnState::TemplateAssured;
            }
        }
    }

    fn sched_input(pkt: &Packet) -> SchedInput {
        SchedInput {
            proto: pkt.proto,
            saddr: pkt.src,
            daddr: pkt.dst,
            sport: pkt.sport,
            dport: pkt.dport,
            inverse: false,
        }
    }

    fn run_scheduler(&mut self, svc: ServiceId, pkt: &Packet, now: Instant) -> Option<DestId> {
        let exp = if self.services.get(svc).and_then(|s| s.config().scheduler) == Some(crate::SchedKind::Lblcr) {
            self.sysctl.lblcr_expiration
        } else {
            self.sysctl.lblc_expiration
        };
        let mut env = SchedEnv { now, flags: Default::default(), expiration: exp, rng: &mut *self.rng };
        self.services.schedule(svc, &Self::sched_input(pkt), &mut env)
    }

    /// `ip_vs_schedule`: picks a real server and creates the connection (and, for persistent
    /// services, finds or creates the template first).
    fn schedule(&mut self, svc_id: ServiceId, pkt: &Packet, now: Instant) -> Scheduled {
        if pkt.sport == FTP_DATA_PORT {
            return Scheduled::Ignored;
        }
        let svc = self.services.get(svc_id).expect("looked up");
        let skey = *svc.key();
        let one_packet = svc.config().one_packet && pkt.proto == Protocol::Udp;
        let persistent = svc.persistence();
        let netmask = svc.config().netmask;
        let mut flags = if one_packet { ConnFlags::ONE_PACKET } else { 0 };

        // ip_vs_conn_fill_param_persist: the engine's data, or the packet is dropped.
        let pe_data = match (persistent, svc.config().pe.as_deref()) {
            (Some(_), Some("sip")) => match (pkt.proto, pkt.callid) {
                (Protocol::Udp, Some(id)) => Some(id),
                _ => return Scheduled::Drop(DropReason::NoCallId),
            },
            _ => None,
        };
        let (dest, dport, control) = if let Some(ptimeout) = persistent {
            // ip_vs_sched_persist: the template key.
            let snet = mask_addr(&pkt.src, &netmask);
            let (proto, vaddr, vport) = if pkt.dport == skey.port() {
                (pkt.proto.number(), pkt.dst, if skey.port() != FTP_PORT { pkt.dport } else { 0 })
            } else if let ServiceKey::Fwmark { mark, af } = skey {
                let vaddr = match af {
                    Family::V4 => IpAddr::from(mark.to_be_bytes()),
                    Family::V6 => {
                        let mut b = [0u8; 16];
                        b[..4].copy_from_slice(&mark.to_be_bytes());
                        IpAddr::from(b)
                    }
                };
                (0, vaddr, 0)
            } else {
                (pkt.proto.number(), pkt.dst, 0)
            };
            let tkey = InKey { proto, caddr: snet, cport: 0, vaddr, vport };
            let valid = self.conns.lookup_template_pe(&tkey, pe_data.as_ref()).filter(|t| {
                let dest = self.conns.get(*t).and_then(|c| c.dest).and_then(|d| self.services.dest(d));
                dest.is_some_and(|d| d.is_available() && !(self.sysctl.expire_quiescent_template && d.weight() == 0))
            });
            if let Some(t) = self.conns.lookup_template_pe(&tkey, pe_data.as_ref()) {
                if valid.is_none() {
                    self.conns.unhash_template(t);
                }
            }
            let (tid, dest) = match valid {
                Some(t) => (t, self.conns.get(t).and_then(|c| c.dest).expect("valid templates have a server")),
                None => {
                    let Some(dest) = self.run_scheduler(svc_id, pkt, now) else {
                        return Scheduled::NoDest;
                    };
                    let d = self.services.dest(dest).expect("scheduled servers are live");
                    let tdport = if pkt.dport == skey.port() && skey.port() != FTP_PORT { d.port() } else { 0 };
                    let conn = Conn {
                        key: tkey,
                        af: pkt.family(),
                        daddr: d.addr(),
                        dport: tdport,
                        flags: ConnFlags(ConnFlags::TEMPLATE | ConnFlags::for_method(d.method()).0),
                        state: ConnState::TemplateNone,
                        timeout: ptimeout,
                        expires: now + ptimeout,
                        control: None,
                        n_control: 0,
                        dest: Some(dest),
                        fwmark: pkt.fwmark,
                        in_pkts: 0,
                        hashed: true,
                        pe_data,
                    };
                    self.services.dest_mut(dest).expect("live").bind(true, false);
                    (self.conns.insert(conn), dest)
                }
            };
            let d = self.services.dest(dest).expect("template servers are live");
            let dport = if pkt.dport == skey.port() && d.port() != 0 { d.port() } else { pkt.dport };
            (dest, dport, Some(tid))
        } else {
            if !matches!(skey, ServiceKey::Fwmark { .. }) && pkt.dport != skey.port() {
                // A port-0 service that is not persistent cannot be scheduled; the kernel
                // logs "port zero only supported in persistent services" and refuses.
                return Scheduled::NoDest;
            }
            let Some(dest) = self.run_scheduler(svc_id, pkt, now) else {
                return Scheduled::NoDest;
            };
            let d = self.services.dest(dest).expect("scheduled servers are live");
            let dport = if d.port() != 0 { d.port() } else { pkt.dport };
            (dest, dport, None)
        };

        let d = self.services.dest(dest).expect("live");
        flags |= ConnFlags::for_method(d.method()).0;
        let state = match pkt.proto {
            Protocol::Udp => ConnState::Udp,
            Protocol::Sctp => ConnState::Sctp(SctpState::None),
            Protocol::Tcp => ConnState::Tcp(TcpState::None),
        };
        let conn = Conn {
            key: InKey {
                proto: pkt.proto.number(),
                caddr: pkt.src,
                cport: pkt.sport,
                vaddr: pkt.dst,
                vport: pkt.dport,
            },
            af: pkt.family(),
            daddr: d.addr(),
            dport,
            flags: ConnFlags(flags),
            state,
            timeout: INITIAL_TIMEOUT,
            expires: now + INITIAL_TIMEOUT,
            control,
            n_control: 0,
            dest: Some(dest),
            fwmark: pkt.fwmark,
            in_pkts: 0,
            hashed: true,
            pe_data: None,
        };
        let id = self.conns.insert(conn);
        let d = self.services.dest_mut(dest).expect("live");
        d.bind(false, false);
        d.stats.add_conn();
        if let Some(t) = control {
            self.conns.get_mut(t).expect("live template").n_control += 1;
            // Releasing the template restarts its persistence window.
            self.conns.rearm(t, now);
        }
        if let Some(s) = self.services.get_mut(svc_id) {
            s.stats.add_conn();
        }
        self.total.add_conn();
        Scheduled::Conn(id)
    }
}
