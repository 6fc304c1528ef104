//! Numbers the kernel puts on the wire, with their kernel names.
//!
//! Flag bits come from `include/uapi/linux/ip_vs.h`, state numbers from
//! `include/net/ip_vs.h`, protocol constants from `net/netfilter/ipvs/ip_vs_sync.c`. They are
//! plain integers (not enums) because the wire carries whatever the master sends and the
//! backup must be able to name, count and reject values it does not know.

/// Connection flags (`IP_VS_CONN_F_*`), the `flags` field of a sync entry.
///
/// Version 1 carries all 32 bits of `cp->flags` minus [`HASHED`]; version 0 carries the
/// low 16 bits. A backup keeps only [`BACKUP_MASK`] and adds [`SYNC`].
pub mod conn_flags {
    /// Mask of the forwarding method in the low three bits.
    pub const FWD_MASK: u32 = 0x0007;
    /// Forwarding method: masquerading (NAT).
    pub const MASQ: u32 = 0x0000;
    /// Forwarding method: local node.
    pub const LOCALNODE: u32 = 0x0001;
    /// Forwarding method: IP-in-IP (or GUE/GRE) tunnelling.
    pub const TUNNEL: u32 = 0x0002;
    /// Forwarding method: direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// Forwarding method: cache bypass.
    pub const BYPASS: u32 = 0x0004;
    /// The entry was created by the sync daemon (set by the backup on receipt).
    pub const SYNC: u32 = 0x0020;
    /// The entry is in the hash table; never sent (the master clears it).
    pub const HASHED: u32 = 0x0040;
    /// No output packets are expected (DR/TUN: replies bypass the director).
    pub const NOOUTPUT: u32 = 0x0080;
    /// The connection is not established (counts as inactive on the real server).
    pub const INACTIVE: u32 = 0x0100;
    /// Output sequence numbers must be adjusted (an application helper resized a packet).
    pub const OUT_SEQ: u32 = 0x0200;
    /// Input sequence numbers must be adjusted.
    pub const IN_SEQ: u32 = 0x0400;
    /// Either sequence adjustment: when set, the entry carries sequence data.
    pub const SEQ_MASK: u32 = 0x0600;
    /// The client port is not known yet (persistence with port 0, e.g. FTP data).
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (`ipvsadm -o`): such connections are never synced.
    pub const ONE_PACKET: u32 = 0x2000;
    /// Bits a backup accepts from the wire (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
    /// Bits a backup updates on an entry it already has (`IP_VS_CONN_F_BACKUP_UPD_MASK`).
    pub const BACKUP_UPD_MASK: u32 = INACTIVE | SEQ_MASK;
    /// Use netfilter conntrack; bit 16, above what version 0 can carry.
    pub const NFCT: u32 = 1 << 16;
}

/// TCP connection states (`IP_VS_TCP_S_*`), the `state` field for protocol 6.
pub mod tcp_state {
    /// No state yet.
    pub const NONE: u16 = 0;
    /// Established.
    pub const ESTABLISHED: u16 = 1;
    /// SYN sent (output direction seen first).
    pub const SYN_SENT: u16 = 2;
    /// SYN received from the client.
    pub const SYN_RECV: u16 = 3;
    /// FIN seen.
    pub const FIN_WAIT: u16 = 4;
    /// Time wait.
    pub const TIME_WAIT: u16 = 5;
    /// Closed (RST seen).
    pub const CLOSE: u16 = 6;
    /// Close wait.
    pub const CLOSE_WAIT: u16 = 7;
    /// Last ACK.
    pub const LAST_ACK: u16 = 8;
    /// Listen.
    pub const LISTEN: u16 = 9;
    /// SYN+ACK seen.
    pub const SYNACK: u16 = 10;
    /// Number of TCP states (`IP_VS_TCP_S_LAST`); a backup skips entries at or above it.
    pub const LAST: u16 = 11;
}

/// UDP states (`IP_VS_UDP_S_*`): UDP has one.
pub mod udp_state {
    /// The only UDP state.
    pub const NORMAL: u16 = 0;
    /// Number of UDP states.
    pub const LAST: u16 = 1;
}

/// SCTP states (`enum ip_vs_sctp_states`, the kernel ≥ 3.12 numbering).
pub mod sctp_state {
    /// No state yet.
    pub const NONE: u16 = 0;
    /// First INIT seen.
    pub const INIT1: u16 = 1;
    /// INIT seen.
    pub const INIT: u16 = 2;
    /// COOKIE sent.
    pub const COOKIE_SENT: u16 = 3;
    /// COOKIE replied.
    pub const COOKIE_REPLIED: u16 = 4;
    /// Waiting for COOKIE.
    pub const COOKIE_WAIT: u16 = 5;
    /// COOKIE seen.
    pub const COOKIE: u16 = 6;
    /// COOKIE echoed.
    pub const COOKIE_ECHOED: u16 = 7;
    /// Established.
    pub const ESTABLISHED: u16 = 8;
    /// SHUTDOWN sent.
    pub const SHUTDOWN_SENT: u16 = 9;
    /// SHUTDOWN received.
    pub const SHUTDOWN_RECEIVED: u16 = 10;
    /// SHUTDOWN ACK sent.
    pub const SHUTDOWN_ACK_SENT: u16 = 11;
    /// Rejected (ABORT seen).
    pub const REJECTED: u16 = 12;
    /// Closed.
    pub const CLOSED: u16 = 13;
    /// Number of SCTP states.
    pub const LAST: u16 = 14;
}

/// Template states (`IP_VS_CTPL_S_*`): templates use the `state` field for their own bits.
pub mod tpl_state {
    /// Not yet assured.
    pub const NONE: u16 = 0;
    /// Assured: a connection through it got past the handshake.
    pub const ASSURED: u16 = 1;
    /// Number of template states; the kernel only logs (does not skip) larger values.
    pub const LAST: u16 = 2;
}

/// IP protocol numbers IPVS registers a handler for (`ip_vs_proto_get`).
pub mod proto {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// ESP (one state).
    pub const ESP: u8 = 50;
    /// AH (one state).
    pub const AH: u8 = 51;

    /// How many states the kernel's handler for `protocol` has, or `None` when IPVS has no
    /// handler for it (a backup then skips the entry: "BACKUP, Unsupported protocol").
    pub const fn num_states(protocol: u8) -> Option<u16> {
        match protocol {
            TCP => Some(super::tcp_state::LAST),
            UDP => Some(super::udp_state::LAST),
            SCTP => Some(super::sctp_state::LAST),
            ESP | AH => Some(1),
            _ => None,
        }
    }
}

/// The default multicast group, 224.0.0.81 (`IP_VS_SYNC_GROUP`).
pub const SYNC_GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 81);
/// The default UDP port (`IP_VS_SYNC_PORT`); sync thread `id` uses port `8848 + id`.
pub const SYNC_PORT: u16 = 8848;
/// The protocol version a version 1 header announces (`SYNC_PROTO_VER`).
pub const SYNC_PROTO_VER: u8 = 1;
/// The longest persistence-engine name (`IP_VS_PENAME_MAXLEN`).
pub const PENAME_MAXLEN: usize = 16;
/// The longest persistence-engine data (`IP_VS_PEDATA_MAXLEN`).
pub const PEDATA_MAXLEN: usize = 255;
