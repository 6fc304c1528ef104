//! The records shared by the xvs eBPF programs and Rust.
//!
//! Every type here mirrors one in `bpf/include/xvs_abi.h`, field for field, with `#[repr(C)]`;
//! the constant assertions below fail the build if a size drifts, and opening a map through a
//! typed wrapper fails at load if the kernel's idea of the size differs. Addresses and ports are
//! kept in network byte order, as the programs read them from packets.
//!
//! This is the only crate besides the dataplane loader that needs `unsafe`: marking the types
//! as plain old data for aya.

// Fields mirror bpf/include/xvs_abi.h, which documents each one; the types are documented here.
#![allow(missing_docs)]

use core::mem::size_of;

/// The version of the map layouts. A release that changes any record bumps it, and pins its
/// maps under a directory of its own ([`pin_dir`]), so it never misreads an older layout.
pub const ABI_VERSION: u32 = 2;

/// The directory maps of this layout are pinned in, under `base` (xvsd's `/sys/fs/bpf/xvs`).
pub fn pin_dir(base: &std::path::Path) -> std::path::PathBuf {
    base.join(format!("v{ABI_VERSION}"))
}

/// Address family bytes used in keys.
pub const AF_INET: u8 = 4;
/// IPv6 family byte.
pub const AF_INET6: u8 = 6;

/// Scheduler numbers (`enum xvs_sched_kind`).
pub mod sched {
    #![allow(missing_docs)]
    pub const NONE: u8 = 0;
    pub const RR: u8 = 1;
    pub const WRR: u8 = 2;
    pub const LC: u8 = 3;
    pub const WLC: u8 = 4;
    pub const LBLC: u8 = 5;
    pub const LBLCR: u8 = 6;
    pub const DH: u8 = 7;
    pub const SH: u8 = 8;
    pub const SED: u8 = 9;
    pub const NQ: u8 = 10;
    pub const FO: u8 = 11;
    pub const OVF: u8 = 12;
    pub const MH: u8 = 13;
    pub const TWOS: u8 = 14;
}

/// Service flags (the kernel's `IP_VS_SVC_F_*`).
pub const SVC_F_PERSISTENT: u32 = 0x1;
/// One-packet scheduling.
pub const SVC_F_ONEPACKET: u32 = 0x4;
/// sh-fallback / mh-fallback.
pub const SVC_F_SCHED1: u32 = 0x8;
/// sh-port / mh-port.
pub const SVC_F_SCHED2: u32 = 0x10;
/// flag-3.
pub const SVC_F_SCHED3: u32 = 0x20;
/// Ours: only clients in `xvs_allow` may open connections.
pub const SVC_F_ALLOWLIST: u32 = 0x100;
/// Ours: a VRRP backup's service takes no new connections (established ones are kept).
pub const SVC_F_STANDBY: u32 = 0x200;
/// Ours: a firewall-mark service, keyed `{ addr: [mark, 0, 0, 0], port: 0, proto: 0 }`; its
/// templates are keyed `{ proto: 0, vaddr: [service id (network order), ..], vport: 0 }`.
pub const SVC_F_FWMARK: u32 = 0x400;
/// Ours: the sip persistence engine (templates in `xvs_tpl_sip`, keyed by the Call-ID too).
pub const SVC_F_SIP: u32 = 0x800;
/// The first two bytes of the source MAC the firewall-mark device's egress program writes
/// (the mark follows in network order).
pub const FWM_MAC: [u8; 2] = [0x02, 0x78];

/// Forwarding methods (the kernel's values).
pub const FWD_MASQ: u8 = 0;
/// Local node.
pub const FWD_LOCAL: u8 = 1;
/// IP-in-IP tunnel.
pub const FWD_TUNNEL: u8 = 2;
/// Direct routing.
pub const FWD_ROUTE: u8 = 3;

/// The real server is linked into its service.
pub const DEST_F_AVAILABLE: u32 = 0x1;
/// Tunnel: GUE, to the port in the flags' high 16 bits (no tunnel bit: IP-in-IP).
pub const DEST_F_TUN_GUE: u32 = 0x2;
/// Tunnel: GRE.
pub const DEST_F_TUN_GRE: u32 = 0x4;
/// Tunnel: `--tun-csum`.
pub const DEST_F_TUN_CSUM: u32 = 0x8;
/// Tunnel: `--tun-remcsum` (GUE).
pub const DEST_F_TUN_REMCSUM: u32 = 0x10;
/// Where the GUE port sits in a real server's flags.
pub const DEST_TUN_PORT_SHIFT: u32 = 16;

/// Connection flags.
pub const CONN_F_INACTIVE: u8 = 0x1;
/// No reply seen (DR/TUN, or NAT before the first reply).
pub const CONN_F_NOOUTPUT: u8 = 0x2;
/// Controlled by a persistence template.
pub const CONN_F_CTL: u8 = 0x4;
/// Has a NAT reply entry.
pub const CONN_F_NAT: u8 = 0x8;
/// Keeps the packet's port (port-0 service).
pub const CONN_F_KEEPPORT: u8 = 0x10;
/// Not yet assured (TCP before ESTABLISHED, UDP before a second packet): counted in the
/// half-open gauge and open to the early drop.
pub const CONN_F_HALF: u8 = 0x20;
/// Claimed for removal.
pub const CONN_F_DEAD: u8 = 0x40;

/// The UDP state number (after the 11 TCP states).
pub const UDP_STATE: u8 = 11;
/// SCTP states are this plus the kernel's SCTP state number (0..13).
pub const SCTP_STATE_BASE: u8 = 16;
/// Template states.
pub const TPL_S_ASSURED: u8 = 1;

/// Configuration flags (`XVS_CFG_*`).
pub mod cfg {
    #![allow(missing_docs)]
    pub const EXPIRE_NODEST: u32 = 0x1;
    pub const EXPIRE_QUIESCENT: u32 = 0x2;
    pub const SLOPPY_TCP: u32 = 0x4;
    pub const SECURE_TCP: u32 = 0x8;
    pub const REUSE_1: u32 = 0x10;
    pub const REUSE_2: u32 = 0x20;
    pub const SLOPPY_SCTP: u32 = 0x40;
}

/// Sweep flags.
pub const SWEEP_LBLC_FULL: u32 = 0x1;
/// Remove everything.
pub const SWEEP_ALL: u32 = 0x2;
/// Drop unassured connections and templates idle for `early_ms` (the half-open gauge is high).
pub const SWEEP_EARLY: u32 = 0x8;
/// Only apply a threshold edit to one server's overload flag.
pub const SWEEP_RETHRESH: u32 = 0x10;
/// Also remove NAT reply entries whose connection is gone.
pub const SWEEP_NAT_GC: u32 = 0x20;
/// Sweep flag: also remove the connections of server `dest_id` of generation `gen`.
pub const SWEEP_DEST: u32 = 0x40;
/// Sweep flags: tables left alone this time (ignored with `SWEEP_ALL` and `SWEEP_DEST`), in the
/// order of [`TABLES`].
pub const SWEEP_SKIP_CONN4: u32 = 0x100;
#[allow(missing_docs)]
pub const SWEEP_SKIP_CONN6: u32 = 0x200;
#[allow(missing_docs)]
pub const SWEEP_SKIP_TPL4: u32 = 0x400;
#[allow(missing_docs)]
pub const SWEEP_SKIP_TPL6: u32 = 0x800;
#[allow(missing_docs)]
pub const SWEEP_SKIP_SIP: u32 = 0x1000;
/// The tables the sweep walks, as bits of [`SweepOut::held`] (`XVS_TABLE_*`); the skip flag of
/// the table with bit `1 << i` is `SWEEP_SKIP_CONN4 << i`.
pub const TABLES: [&str; 5] = ["xvs_conn4", "xvs_conn6", "xvs_tpl4", "xvs_tpl6", "xvs_tpl_sip"];

/// Global counters (`enum xvs_counter`).
pub mod counter {
    #![allow(missing_docs)]
    pub const CONN_NEW: u32 = 0;
    pub const CONN_DEL: u32 = 1;
    pub const SWEEPS: u32 = 2;
    pub const EARLY_DROP: u32 = 3;
    pub const ICMP_LIMITED: u32 = 4;
    pub const SIP_NO_CALLID: u32 = 5;
    pub const TRACE_LOST: u32 = 6;
    /// Entries put in the IPv6 connection table or a template table.
    pub const OTHER_NEW: u32 = 7;
}

/// Why a packet left the fast path (`enum xvs_reason`); the names are metrics labels.
pub const REASONS: [(u32, &str); 16] = [
    (0, "fragment"),
    (1, "no_route"),
    (2, "no_neigh"),
    (3, "no_dest"),
    (4, "dest_gone"),
    (5, "conn_table_full"),
    (6, "ttl"),
    (7, "frag_needed"),
    (8, "bad_packet"),
    (9, "unsupported"),
    (10, "table_full"),
    (11, "half_open_full"),
    (12, "stale_dest"),
    (13, "not_allowed"),
    (14, "standby"),
    (15, "other_host"),
];
/// Size of the reasons array.
pub const REASON_MAX: u32 = 16;

macro_rules! pod {
    ($($t:ty = $size:expr),* $(,)?) => {
        $(
            const _: () = assert!(size_of::<$t>() == $size, concat!("size of ", stringify!($t)));
            // SAFETY: a #[repr(C)] struct of integers and integer arrays with explicit padding
            // fields: every bit pattern is valid and there are no implicit padding bytes.
            unsafe impl aya::Pod for $t {}
        )*
    };
}

/// A service key.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SvcKey {
    pub addr: [u32; 4],
    pub port: u16,
    pub proto: u8,
    pub af: u8,
}

/// A published service.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Svc {
    pub id: u32,
    pub flags: u32,
    pub netmask: [u32; 4],
    pub timeout: u32,
    pub dests_off: u32,
    pub dests_cnt: u32,
    pub table_off: u32,
    pub table_len: u32,
    pub wrr_mw: i32,
    pub wrr_di: i32,
    pub port: u16,
    pub sched: u8,
    pub af: u8,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// A list entry.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DestRef {
    pub id: u32,
    pub weight: i32,
}

/// A real server.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Dest {
    pub addr: [u32; 4],
    pub port: u16,
    pub af: u8,
    pub method: u8,
    pub svc_id: u32,
    pub flags: u32,
    pub weight: i32,
    pub u_thresh: u32,
    pub l_thresh: u32,
    pub l_thresh_cfg: u32,
    pub gen: u32,
}

/// A real server's connection counters.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DestState {
    pub active: i64,
    pub total: i64,
    pub persist: i64,
    pub overload: u32,
    pub pad: u32,
}

/// Scheduler state of a service.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedState {
    pub wrr: u64,
    pub rr_cursor: u32,
    pub rr_pos: u32,
}

/// Statistics of one CPU.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// IPv4 connection (and template) key.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conn4Key {
    pub caddr: u32,
    pub vaddr: u32,
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// IPv6 connection (and template) key.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conn6Key {
    pub caddr: [u32; 4],
    pub vaddr: [u32; 4],
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// A connection.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    pub dest_id: u32,
    pub seen: u32,
    pub svc_id: u32,
    pub state: u8,
    pub flags: u8,
    pub method: u8,
    pub pad: u8,
    pub gen: u32,
}

/// IPv4 NAT reply key.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Nat4Key {
    pub raddr: u32,
    pub caddr: u32,
    pub rport: u16,
    pub cport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// IPv6 NAT reply key.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Nat6Key {
    pub raddr: [u32; 4],
    pub caddr: [u32; 4],
    pub rport: u16,
    pub cport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// A persistence template.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Tpl {
    pub dest_id: u32,
    pub since: u32,
    pub timeout: u32,
    pub n_control: u32,
    pub state: u8,
    pub pad: [u8; 3],
    pub gen: u32,
}

/// lblc/lblcr key.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LblcKey {
    pub svc_id: u32,
    pub addr: [u32; 4],
}

/// lblc/lblcr entry.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Lblc {
    pub dest: [u32; 4],
    pub lastuse: u32,
    pub lastmod: u32,
}

/// Tunables and the TCP state tables.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Cfg {
    pub timeout_ms: [u32; 16],
    pub tcp_next: [[[[u8; 11]; 4]; 3]; 2],
    pub flags: u32,
    pub lblc_expire_s: u32,
    pub lblcr_expire_s: u32,
    pub max_half: u32,
    pub icmp_rate: u32,
    pub icmp_burst: u32,
}

/// Input of the sweep program.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepArgs {
    pub flags: u32,
    pub early_ms: u32,
    pub dest_id: u32,
    pub u_thresh: u32,
    pub l_thresh: u32,
    pub gen: u32,
}

/// Output of the sweep program.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepOut {
    pub seen: u64,
    pub expired: u64,
    pub tpl_seen: u64,
    pub tpl_expired: u64,
    pub lblc_expired: u64,
    pub early_dropped: u64,
    pub half: i64,
    /// The tables walked that held an entry (bit `i`: [`TABLES`]`[i]`).
    pub held: u64,
}

/// The data of an allowed-source key (the trie's prefix length comes first, in aya's `Key`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowKey {
    pub svc_id: u32,
    pub addr: [u32; 4],
}

/// A synchronised connection or template for the install program (`struct xvs_install_rec`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallRec {
    pub caddr: [u32; 4],
    pub vaddr: [u32; 4],
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    pub af: u8,
    pub kind: u8,
    pub state: u8,
    pub flags: u8,
    pub result: u8,
    pub pad: u16,
    pub dest_id: u32,
    pub svc_id: u32,
    pub timeout_s: u32,
    pub pad2: [u32; 2],
}

/// A connection's key for the key sweep program (`struct xvs_sweep_key`): the sweep in steps
/// on a kernel that refuses iterator programs.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepKey {
    /// A [`Conn4Key`] (first 16 bytes) or a [`Conn6Key`], as bytes in words.
    pub key: [u32; 10],
    pub af: u8,
    /// Out: 1 if the run removed it.
    pub result: u8,
    pub pad: [u8; 2],
}

/// A next hop the dataplane found no neighbour for (`struct xvs_neigh_miss`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NeighMiss {
    pub addr: [u32; 4],
    pub ifindex: u32,
    pub stamp: u32,
    pub af: u8,
    pub pad: [u8; 3],
}

/// An attached interface's MAC (`struct xvs_if_mac`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IfMac {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}

/// Slots of the interface-MAC array (direct-mapped by ifindex).
pub const IF_SLOTS: u32 = 256;

/// Slots of the neighbour-miss array.
pub const NEIGH_SLOTS: u32 = 64;

/// Records per run of the install program.
pub const INSTALL_MAX: usize = 48;
/// Keys per run of the key sweep program (`XVS_SWEEP_KEYS_MAX`).
pub const SWEEP_KEYS_MAX: usize = 64;
/// An install record of a connection.
pub const INSTALL_CONN: u8 = 1;
/// An install record of a template.
pub const INSTALL_TPL: u8 = 2;
/// Created, with its accounting.
pub const INSTALLED_NEW: u8 = 1;
/// Present already: state and timer refreshed.
pub const INSTALLED_UPDATED: u8 = 2;
/// No server in that slot.
pub const INSTALLED_NO_DEST: u8 = 3;
/// The table is full.
pub const INSTALLED_FULL: u8 = 4;
/// Not a connection or template record.
pub const INSTALLED_BAD: u8 = 5;

/// Trace filter flags (`XVS_TF_*`).
pub mod trace_filter {
    #![allow(missing_docs)]
    pub const CADDR: u32 = 0x1;
    pub const CPORT: u32 = 0x2;
    pub const VADDR: u32 = 0x4;
    pub const VPORT: u32 = 0x8;
    pub const PROTO: u32 = 0x10;
}

/// The running trace's filter (`struct xvs_trace_filter`): `on` 0 while no trace runs.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub on: u32,
    pub flags: u32,
    pub caddr: [u32; 4],
    pub vaddr: [u32; 4],
    pub cport: u16,
    pub vport: u16,
    pub af: u8,
    pub proto: u8,
    pub pad: u16,
}

/// What a traced packet met in the connection table (`enum xvs_trace_conn`).
pub mod trace_conn {
    #![allow(missing_docs)]
    pub const NONE: u8 = 0;
    pub const HIT: u8 = 1;
    pub const NEW: u8 = 2;
    pub const REPLY: u8 = 3;
    pub const ONEPACKET: u8 = 4;
}

/// Trace record flags (`XVS_TR_F_*`).
pub mod trace_flags {
    #![allow(missing_docs)]
    pub const REPLACED: u8 = 0x1;
    pub const TPL_HIT: u8 = 0x2;
    pub const TPL_NEW: u8 = 0x4;
    pub const ALT: u8 = 0x8;
    pub const WIN: u8 = 0x10;
}

/// A trace record's `reason` when the packet was not counted under one.
pub const TRACE_NO_REASON: u8 = 0xff;

/// One traced packet (`struct xvs_trace_ev`), as the ring buffer hands it over.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceEvent {
    pub ts_ns: u64,
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub af: u8,
    pub proto: u8,
    pub tcp_flags: u8,
    pub verdict: u8,
    pub ifindex: u32,
    pub svc_id: u32,
    pub dest_id: u32,
    pub conn: u8,
    pub flags: u8,
    pub reason: u8,
    pub sched: u8,
    pub state: u8,
    pub method: u8,
    pub pad: u16,
    pub win_weight: i32,
    pub win_active: i64,
    pub win_total: i64,
    pub alt_weight: i32,
    pub alt_id: u32,
    pub alt_active: i64,
    pub alt_total: i64,
}

/// Global gauges.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub half: i64,
    pub pad: [i64; 7],
}

pod! {
    SvcKey = 20,
    Svc = 60,
    DestRef = 8,
    Dest = 48,
    DestState = 32,
    SchedState = 16,
    Stats = 40,
    Conn4Key = 16,
    Conn6Key = 40,
    Conn = 20,
    Nat4Key = 16,
    Nat6Key = 40,
    Tpl = 24,
    LblcKey = 20,
    Lblc = 24,
    Cfg = 352,
    SweepArgs = 24,
    SweepOut = 64,
    Gauges = 64,
    AllowKey = 20,
    InstallRec = 64,
    SweepKey = 44,
    NeighMiss = 28,
    IfMac = 12,
    TraceFilter = 48,
    TraceEvent = 112,
}

/// Bytes of key and value one IPv4 connection takes (connection entry only; NAT doubles it).
pub const CONN4_BYTES: usize = size_of::<Conn4Key>() + size_of::<Conn>();
/// Bytes of key and value one IPv6 connection takes.
pub const CONN6_BYTES: usize = size_of::<Conn6Key>() + size_of::<Conn>();
