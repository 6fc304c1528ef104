//! Connections and persistence templates (reference §3): the entries, their indexes for the two
//! directions, their expiry timers, and the state machines that set their timeouts.

pub mod sctp;
pub mod tcp;

use core::net::IpAddr;
use core::time::Duration;
use std::collections::{BTreeSet, HashMap};

use crate::addr::Family;
use crate::arena::{Arena, RawId};
use crate::dest::DestId;
use crate::model::ForwardMethod;
use crate::time::Instant;

pub use sctp::{SctpChunks, SctpState};
pub use tcp::{Direction, TcpFlags, TcpState, TcpTimeouts};

/// The identity of a connection or template.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(RawId);

/// Connection flags, with the kernel's bit values (reference §0.3).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnFlags(pub u32);

impl ConnFlags {
    /// Mask of the forwarding method bits.
    pub const FWD_MASK: u32 = 0x7;
    /// No reply seen yet; also set for every non-NAT method (the director sees one direction).
    pub const NOOUTPUT: u32 = 0x80;
    /// Not counted in ActiveConn.
    pub const INACTIVE: u32 = 0x100;
    /// A persistence template.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling: freed as soon as the packet is sent.
    pub const ONE_PACKET: u32 = 0x2000;

    /// True if every bit of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    /// The forwarding method in the low bits.
    pub fn method(self) -> ForwardMethod {
        match self.0 & Self::FWD_MASK {
            0 => ForwardMethod::Masq,
            1 => ForwardMethod::Local,
            2 => ForwardMethod::Tunnel,
            3 => ForwardMethod::Route,
            _ => ForwardMethod::Bypass,
        }
    }

    /// The flags a new connection inherits from a real server using `method`.
    pub fn for_method(method: ForwardMethod) -> ConnFlags {
        let mut f = method.bits() | Self::INACTIVE;
        if method != ForwardMethod::Masq {
            f |= Self::NOOUTPUT;
        }
        ConnFlags(f)
    }
}

/// The protocol state of a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// A TCP connection.
    Tcp(TcpState),
    /// A UDP connection (one state, "UDP").
    Udp,
    /// An SCTP association.
    Sctp(SctpState),
    /// A template before any of its connections reached ESTABLISHED (or saw a UDP reply).
    TemplateNone,
    /// A template whose connections were confirmed.
    TemplateAssured,
}

impl ConnState {
    /// The name `ipvsadm -Lc` prints.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Tcp(s) => s.name(),
            ConnState::Udp => "UDP",
            ConnState::Sctp(s) => s.name(),
            ConnState::TemplateNone => "NONE",
            ConnState::TemplateAssured => "ASSURED",
        }
    }

    /// True for states counted in ActiveConn.
    pub fn is_active(self) -> bool {
        match self {
            ConnState::Tcp(s) => s.is_active(),
            ConnState::Sctp(s) => s.is_active(),
            _ => false,
        }
    }
}

/// The lookup key of a connection in the client → server direction: protocol number (0 for a
/// fwmark template), client, virtual address and port.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct InKey {
    /// IP protocol number (`0` is "IP", used by fwmark templates).
    pub proto: u8,
    /// Client address (the masked source network for templates).
    pub caddr: IpAddr,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual address (the fwmark as an address for fwmark templates).
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
}

/// The lookup key of a reply: protocol, client, and the address/port the reply comes from
/// (the real server for NAT, the virtual address otherwise).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutKey {
    /// IP protocol number.
    pub proto: u8,
    /// Client address.
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Source address of the reply.
    pub raddr: IpAddr,
    /// Source port of the reply.
    pub rport: u16,
}

/// A connection or a persistence template.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Where it is looked up from the client side.
    pub key: InKey,
    /// Address family of the client side.
    pub af: Family,
    /// Real server address (0 for a bypass connection).
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// Flags (method, template, active, one-packet).
    pub flags: ConnFlags,
    /// Protocol state.
    pub state: ConnState,
    /// The timeout armed after each packet.
    pub timeout: Duration,
    /// When the timer fires.
    pub expires: Instant,
    /// The template that controls this connection.
    pub control: Option<ConnId>,
    /// Number of connections this one controls.
    pub n_control: u32,
    /// The real server it is bound to.
    pub dest: Option<DestId>,
    /// The packet's firewall mark when it was created.
    pub fwmark: u32,
    /// Packets received from the client.
    pub in_pkts: u64,
    /// True while findable (killed templates are not).
    pub(crate) hashed: bool,
    /// A template's persistence-engine data (the sip engine's Call-ID), part of its key.
    pub pe_data: Option<crate::pe_sip::CallId>,
}

impl Conn {
    /// True for a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags.has(ConnFlags::TEMPLATE)
    }

    /// True while counted in ActiveConn (the kernel's !INACTIVE).
    pub fn is_active(&self) -> bool {
        !self.flags.has(ConnFlags::INACTIVE)
    }

    /// The reply-side key.
    pub fn out_key(&self) -> OutKey {
        let (raddr, rport) = if self.flags.method() == ForwardMethod::Masq {
            (self.daddr, self.dport)
        } else {
            (self.key.vaddr, self.key.vport)
        };
        OutKey { proto: self.key.proto, caddr: self.key.caddr, cport: self.key.cport, raddr, rport }
    }
}

/// The connection table: connections and templates, two indexes and a timer queue.
#[derive(Debug, Default)]
pub struct ConnTable {
    conns: Arena<Conn>,
    by_in: HashMap<InKey, ConnId>,
    templates: HashMap<(InKey, Option<crate::pe_sip::CallId>), ConnId>,
    by_out: HashMap<OutKey, ConnId>,
    timers: BTreeSet<(Instant, ConnId)>,
}

impl ConnTable {
    /// Number of entries (connections and templates).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.conns.len() == 0
    }

    /// An entry by id.
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id.0)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.0)
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns.iter().map(|(id, c)| (ConnId(id), c))
    }

    /// The connection for a client → server packet.
    pub fn lookup_in(&self, key: &InKey) -> Option<ConnId> {
        self.by_in.get(key).copied()
    }

    /// The connection for a reply.
    pub fn lookup_out(&self, key: &OutKey) -> Option<ConnId> {
        self.by_out.get(key).copied()
    }

    /// The template with this key.
    pub fn lookup_template(&self, key: &InKey) -> Option<ConnId> {
        self.lookup_template_pe(key, None)
    }

    /// The template with this key and persistence-engine data (the sip engine's Call-ID).
    pub fn lookup_template_pe(&self, key: &InKey, pe: Option<&crate::pe_sip::CallId>) -> Option<ConnId> {
        self.templates.get(&(*key, pe.copied())).copied()
    }

    /// Inserts an entry (hashed unless it is a one-packet connection) with its timer at
    /// `conn.expires`.
    pub(crate) fn insert(&mut self, mut conn: Conn) -> ConnId {
        let one_packet = conn.flags.has(ConnFlags::ONE_PACKET);
        conn.hashed = !one_packet;
        let template = conn.is_template();
        let key = conn.key;
        let pe = conn.pe_data;
        let out = conn.out_key();
        let expires = conn.expires;
        let id = ConnId(self.conns.insert(conn));
        if !one_packet {
            if template {
                self.templates.insert((key, pe), id);
            } else {
                self.by_in.insert(key, id);
                self.by_out.insert(out, id);
            }
        }
        self.timers.insert((expires, id));
        id
    }

    /// Re-arms the timer of `id` to `now + timeout`.
    pub(crate) fn rearm(&mut self, id: ConnId, now: Instant) {
        let c = self.conns.get_mut(id.0).expect("rearming a live connection");
        self.timers.remove(&(c.expires, id));
        c.expires = now + c.timeout;
        self.timers.insert((c.expires, id));
    }

    /// Makes a template unfindable without stopping its timer ("killed in place").
    pub(crate) fn unhash_template(&mut self, id: ConnId) {
        let c = self.conns.get_mut(id.0).expect("a live template");
        if c.hashed {
            c.hashed = false;
            if self.templates.get(&(c.key, c.pe_data)) == Some(&id) {
                self.templates.remove(&(c.key, c.pe_data));
            }
            c.key.vport = 0xffff;
            c.key.cport = 0;
            c.dport = 0xffff;
        }
    }

    /// Removes an entry from the indexes, the timers and the table.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let c = self.conns.remove(id.0)?;
        self.timers.remove(&(c.expires, id));
        if c.hashed {
            if c.is_template() {
                if self.templates.get(&(c.key, c.pe_data)) == Some(&id) {
                    self.templates.remove(&(c.key, c.pe_data));
                }
            } else if self.by_in.get(&c.key) == Some(&id) {
                self.by_in.remove(&c.key);
            }
            let out = c.out_key();
            if !c.is_template() && self.by_out.get(&out) == Some(&id) {
                self.by_out.remove(&out);
            }
        }
        Some(c)
    }

    /// The earliest timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// The first entry whose timer is due at `now`.
    pub(crate) fn pop_due(&self, now: Instant) -> Option<ConnId> {
        self.timers.first().filter(|(t, _)| *t <= now).map(|(_, id)| *id)
    }
}
