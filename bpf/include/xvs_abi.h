/* This file contains the records that the eBPF programs share with Rust: map keys and values,
 * constants and flag bits. crates/xvs-abi/src/lib.rs mirrors every struct with #[repr(C)] and
 * checks its size at compile time; change both together.
 *
 * Byte order: addresses and ports are in network order exactly as they sit in packets; every
 * other field is in host order. IPv4 addresses use addr[0] of a 4-word array (the rest zero).
 */
#ifndef XVS_ABI_H
#define XVS_ABI_H

#include <linux/types.h>

/* Address families as stored in keys (not AF_* values, to keep them one byte). */
#define XVS_AF_INET 4
#define XVS_AF_INET6 6

/* Scheduler kinds; the numbering is ours (xvs_core::SchedKind maps to it in xvs-abi). */
enum xvs_sched_kind {
	XVS_SCHED_NONE = 0,
	XVS_SCHED_RR = 1,
	XVS_SCHED_WRR = 2,
	XVS_SCHED_LC = 3,
	XVS_SCHED_WLC = 4,
	XVS_SCHED_LBLC = 5,
	XVS_SCHED_LBLCR = 6,
	XVS_SCHED_DH = 7,
	XVS_SCHED_SH = 8,
	XVS_SCHED_SED = 9,
	XVS_SCHED_NQ = 10,
	XVS_SCHED_FO = 11,
	XVS_SCHED_OVF = 12,
	XVS_SCHED_MH = 13,
	XVS_SCHED_TWOS = 14,
};

/* Service flags, with the kernel's IP_VS_SVC_F_* values. */
#define XVS_SVC_F_PERSISTENT 0x1
#define XVS_SVC_F_ONEPACKET 0x4
#define XVS_SVC_F_SCHED1 0x8  /* sh-fallback / mh-fallback */
#define XVS_SVC_F_SCHED2 0x10 /* sh-port / mh-port */
#define XVS_SVC_F_ALLOWLIST 0x100 /* ours: only clients in xvs_allow may open connections */
#define XVS_SVC_F_STANDBY 0x200   /* ours: a VRRP backup's service: no new connections, established ones kept */
#define XVS_SVC_F_SIP 0x800       /* ours: the sip persistence engine (templates keyed by Call-ID) */
#define XVS_PEDATA_MAX 255        /* IP_VS_PEDATA_MAXLEN: the longest Call-ID */
#define XVS_SVC_F_FWMARK 0x400    /* ours: a firewall-mark service, keyed { addr = { mark }, port 0, proto 0 };
				   * its templates are keyed { proto 0, vaddr = { service id }, vport 0 } */

/* The source MAC that the firewall-mark device's egress program (xvs_fwm_stamp) writes: these two
 * bytes, then the packet's mark (network order). Only xvs_lb_fwm reads it, on the peer. */
#define XVS_FWM_MAC0 0x02
#define XVS_FWM_MAC1 0x78

/* Forwarding methods, with the kernel's IP_VS_CONN_F_* values. */
#define XVS_FWD_MASQ 0
#define XVS_FWD_LOCAL 1
#define XVS_FWD_TUNNEL 2
#define XVS_FWD_ROUTE 3

/* Real server flags. The tunnel's settings live here too, so that the record keeps its layout
 * (pinned tables of an earlier xvsd are adopted as they are): no tunnel bit is IP-in-IP, and
 * the high 16 bits hold the GUE destination port (host order). */
#define XVS_DEST_F_AVAILABLE 0x1    /* linked into its service (cleared when removed) */
#define XVS_DEST_F_TUN_GUE 0x2      /* tunnel: GUE (outer UDP to the port in the high bits) */
#define XVS_DEST_F_TUN_GRE 0x4      /* tunnel: GRE */
#define XVS_DEST_F_TUN_CSUM 0x8     /* --tun-csum: outer UDP checksum (GUE), checksum field (GRE) */
#define XVS_DEST_F_TUN_REMCSUM 0x10 /* --tun-remcsum (GUE): sent as csum (see fwd.h) */
#define XVS_DEST_TUN_PORT_SHIFT 16

/* Connection flags (our bits, stored in one byte). */
#define XVS_CONN_F_INACTIVE 0x1 /* not counted in ActiveConn */
#define XVS_CONN_F_NOOUTPUT 0x2 /* no reply seen: DR/TUN, or NAT before the first reply */
#define XVS_CONN_F_CTL 0x4      /* controlled by a persistence template */
#define XVS_CONN_F_NAT 0x8      /* has a reverse (reply) entry */
#define XVS_CONN_F_KEEPPORT 0x10 /* keeps the packet's port (port-0 service): not the server's */
#define XVS_CONN_F_HALF 0x20     /* not yet assured (TCP before ESTABLISHED, UDP before its second
				  * packet): counted in the half-open gauge, may be dropped early */
#define XVS_CONN_F_DEAD 0x40     /* claimed for removal: no transition or promotion any more */

/* Connection states: TCP states 0..10 as the kernel numbers them, then UDP. */
#define XVS_TCP_S_NONE 0
#define XVS_TCP_S_ESTABLISHED 1
#define XVS_TCP_S_SYN_SENT 2
#define XVS_TCP_S_SYN_RECV 3
#define XVS_TCP_S_CLOSE 6
#define XVS_TCP_S_SYNACK 10
#define XVS_TCP_S_LAST 11
#define XVS_UDP_S 11
#define XVS_STATES 12
/* SCTP states: the kernel's numbers (0..13) from here on (bpf/include/sctp_states.h). */
#define XVS_SCTP_S_BASE 16
#define XVS_SCTP_S_ESTABLISHED (XVS_SCTP_S_BASE + 8)
#define XVS_SCTP_S_CLOSED (XVS_SCTP_S_BASE + 13)

/* Template states. */
#define XVS_TPL_S_NONE 0
#define XVS_TPL_S_ASSURED 1

/* A service key: (family, protocol, virtual address, port). 20 bytes. */
struct xvs_svc_key {
	__u32 addr[4];
	__u16 port;
	__u8 proto;
	__u8 af;
};

/* A service as the dataplane needs it. Published whole (a hash-map update is atomic), so a
 * packet sees the old or the new list and table, never a mix. 60 bytes. */
struct xvs_svc {
	__u32 id;        /* index of this service in the per-service arrays */
	__u32 flags;     /* XVS_SVC_F_* */
	__u32 netmask[4];/* persistence mask: IPv4 in netmask[0], IPv6 expanded from the prefix */
	__u32 timeout;   /* persistence timeout, seconds */
	__u32 dests_off; /* first entry in xvs_dest_lists */
	__u32 dests_cnt; /* number of entries */
	__u32 table_off; /* first slot in xvs_sched_tables */
	__u32 table_len; /* 0, 256 (sh, dh) or 4093 (mh) */
	__s32 wrr_mw;    /* wrr: max weight - (gcd - 1) */
	__s32 wrr_di;    /* wrr: gcd of the positive weights */
	__u16 port;      /* virtual port, network order (also in the key; the sweep sees ids) */
	__u8 sched;      /* enum xvs_sched_kind */
	__u8 af;
	__u8 proto;
	__u8 pad[3];
};

/* One real server in a service's list, in the kernel's order (newest first). Lists are
 * republished whole with their service, so a scheduler sees one consistent set of weights.
 * 8 bytes. */
struct xvs_dest_ref {
	__u32 id; /* index into xvs_dests, xvs_dest_state, xvs_dest_stats */
	__s32 weight;
};

/* A real server's identity and parameters. Address and port never change for an id; the
 * other fields are single words that xvsd rewrites in place on an edit. 48 bytes. */
struct xvs_dest {
	__u32 addr[4];
	__u16 port;     /* network order; 0 = the packet's port */
	__u8 af;
	__u8 method;    /* XVS_FWD_* */
	__u32 svc_id;   /* the service it belongs to (statistics) */
	__u32 flags;    /* XVS_DEST_F_* */
	__s32 weight;   /* current weight (lblc, templates of quiesced servers) */
	__u32 u_thresh; /* -x, 0 = none */
	__u32 l_thresh; /* the lower threshold in use: -y, or x - x/4 */
	__u32 l_thresh_cfg; /* -y as configured (0: derived), for a restarted xvsd */
	__u32 gen;      /* raised each time a new server takes this slot; connections carry it */
};

/* A real server's connection counters, changed only with atomic operations by the programs.
 * InActConn = total - active. 32 bytes. */
struct xvs_dest_state {
	__s64 active;
	__s64 total;
	__s64 persist;
	__u32 overload; /* 1 while the upper threshold holds new connections off */
	__u32 pad;
};

/* Per-scheduler state of a service, changed with compare-and-swap. 16 bytes. */
struct xvs_sched_state {
	__u64 wrr;       /* (cursor dest id + 1) << 32 | current weight; cursor 0 = list head */
	__u32 rr_cursor; /* dest id + 1 of the last pick, 0 = list head */
	__u32 rr_pos;    /* its list position + 1: a hint, valid while that position holds it */
};

/* Statistics, per CPU, per service and per real server (reference §6). 40 bytes. */
struct xvs_stats {
	__u64 conns;
	__u64 inpkts;
	__u64 outpkts;
	__u64 inbytes;
	__u64 outbytes;
};

/* The client-side key of an IPv4 connection (the kernel's "in" direction). 16 bytes. The same
 * layout keys templates (cport 0, caddr masked, vaddr/vport as reference §3.6). */
struct xvs_conn4_key {
	__u32 caddr;
	__u32 vaddr;
	__u16 cport;
	__u16 vport;
	__u8 proto;
	__u8 pad[3];
};

/* The client-side key of an IPv6 connection. 40 bytes. */
struct xvs_conn6_key {
	__u32 caddr[4];
	__u32 vaddr[4];
	__u16 cport;
	__u16 vport;
	__u8 proto;
	__u8 pad[3];
};

/* A connection. 20 bytes. With the 16-byte IPv4 key that is 36 bytes per connection; NAT adds
 * a 32-byte reply entry (xvs_nat4_key → xvs_conn4_key). */
struct xvs_conn {
	__u32 dest_id;
	__u32 seen;   /* last packet, milliseconds of CLOCK_MONOTONIC (coarse), wraps after 49 days */
	__u32 svc_id;
	__u8 state;   /* XVS_TCP_S_*, XVS_UDP_S or XVS_SCTP_S_BASE + the SCTP state */
	__u8 flags;   /* XVS_CONN_F_* */
	__u8 method;  /* forwarding method, fixed when the connection is created */
	__u8 pad;
	__u32 gen;    /* the server slot's generation when it was scheduled (xvs_dest.gen) */
};

/* The key of a NAT reply: real server → client. 16 / 40 bytes; the value is the connection's
 * client-side key. */
struct xvs_nat4_key {
	__u32 raddr;
	__u32 caddr;
	__u16 rport;
	__u16 cport;
	__u8 proto;
	__u8 pad[3];
};

struct xvs_nat6_key {
	__u32 raddr[4];
	__u32 caddr[4];
	__u16 rport;
	__u16 cport;
	__u8 proto;
	__u8 pad[3];
};

/* A persistence template. 24 bytes. */
struct xvs_tpl {
	__u32 dest_id;
	__u32 since;     /* ms of CLOCK_MONOTONIC when its timer was last armed */
	__u32 timeout;   /* seconds armed on each new connection; 60 after its first deferred expiry */
	__u32 n_control; /* connections it controls (atomic) */
	__u8 state;      /* XVS_TPL_S_* */
	__u8 pad[3];
	__u32 gen;       /* the server slot's generation (xvs_dest.gen) */
};

/* A template of a service with the sip persistence engine: the masked client, the virtual
 * address and port (as tpl_key), and the Call-ID. 296 bytes. */
struct xvs_sip_key {
	__u32 caddr[4];
	__u32 vaddr[4];
	__u16 vport;
	__u8 proto;
	__u8 af;
	__u32 len;
	__u8 callid[256];
};

/* lblc/lblcr: which servers took a destination address. Key: service id + address. */
#define XVS_LBLCR_SET 4
struct xvs_lblc_key {
	__u32 svc_id;
	__u32 addr[4];
};

struct xvs_lblc {
	__u32 dest[XVS_LBLCR_SET]; /* dest id + 1, most recently inserted first; lblc uses dest[0] */
	__u32 lastuse;             /* seconds of CLOCK_MONOTONIC */
	__u32 lastmod;
};

/* Tunables and tables from the core, written by xvsd. */
#define XVS_CFG_EXPIRE_NODEST 0x1
#define XVS_CFG_EXPIRE_QUIESCENT 0x2
#define XVS_CFG_SLOPPY_TCP 0x4
#define XVS_CFG_SECURE_TCP 0x8
#define XVS_CFG_REUSE_1 0x10 /* conn_reuse_mode bit 0 */
#define XVS_CFG_REUSE_2 0x20 /* conn_reuse_mode bit 1 */
#define XVS_CFG_SLOPPY_SCTP 0x40

struct xvs_cfg {
	__u32 timeout_ms[16];   /* by state: TCP 0..10, UDP 11 */
	__u8 tcp_next[2][3][4][XVS_TCP_S_LAST]; /* [secure][dir][event][state] → state */
	__u32 flags;            /* XVS_CFG_* */
	__u32 lblc_expire_s;
	__u32 lblcr_expire_s;
	__u32 max_half;         /* connections not yet assured, at most (both families) */
	__u32 icmp_rate;        /* the director's own ICMP errors per second and CPU; 0: no limit */
	__u32 icmp_burst;       /* and in one burst */
};

/* Global counters (per CPU), indexed by enum xvs_counter. */
enum xvs_counter {
	XVS_CNT_CONN_NEW = 0,    /* connections inserted */
	XVS_CNT_CONN_DEL = 1,    /* connections removed by expiry or replacement */
	XVS_CNT_SWEEPS = 2,
	XVS_CNT_EARLY_DROP = 3,  /* unassured connections removed early because the gauge was high */
	XVS_CNT_ICMP_LIMITED = 4, /* ICMP errors of the director's own not sent (rate limit) */
	XVS_CNT_SIP_NO_CALLID = 5, /* datagrams to a sip service without a Call-ID (dropped, as the kernel) */
	XVS_CNT_TRACE_LOST = 6,  /* trace records the ring buffer had no room for (xvsadm trace) */
	XVS_CNT_OTHER_NEW = 7,   /* entries put in the IPv6 connection table or a template table */
	XVS_CNT_MAX = 8,
};

/* Why a packet did not take the fast path. Each is also a metrics label; numbers are never
 * reused (mirrored in crates/xvs-abi/src/lib.rs, DropReason). */
enum xvs_reason {
	XVS_R_FRAGMENT = 0,       /* passed: a fragment (no ports) */
	XVS_R_NO_ROUTE = 1,       /* passed: fib lookup failed */
	XVS_R_NO_NEIGH = 2,       /* dropped (DR) or passed (NAT/TUN): neighbour unresolved */
	XVS_R_NO_DEST = 3,        /* ICMP unreachable sent: no usable real server */
	XVS_R_DEST_GONE = 4,      /* dropped: the connection's real server was removed */
	XVS_R_CONN_FULL = 5,      /* dropped: the connection table refused the entry */
	XVS_R_TTL = 6,            /* passed: TTL would expire, the kernel answers */
	XVS_R_FRAG_NEEDED = 7,    /* ICMP sent: too big for the tunnel */
	XVS_R_BAD_PACKET = 8,     /* passed: malformed header */
	XVS_R_UNSUPPORTED = 9,    /* passed: a case the dataplane leaves to the kernel */
	XVS_R_TABLE_FULL = 10,    /* dropped: a template or reply entry could not be stored */
	XVS_R_HALF_FULL = 11,     /* dropped: too many connections not yet assured (a SYN flood) */
	XVS_R_STALE_DEST = 12,    /* dropped: the connection's server slot now holds another server */
	XVS_R_NOT_ALLOWED = 13,   /* dropped: the client is not in the service's allowed sources */
	XVS_R_STANDBY = 14,       /* passed: a new connection to a service on standby (VRRP backup) */
	XVS_R_OTHER_HOST = 15,    /* passed: a frame addressed to another host's MAC (the kernel drops it) */
	XVS_R_MAX = 16,
};

/* The key of a service's allowed source prefix (LPM trie): the service id, then the address.
 * The trie's prefix length counts the 32 bits of svc_id first. */
struct xvs_allow_key {
	__u32 prefixlen;
	__u32 svc_id;
	__u32 addr[4];
};

/* Input of the sweep program, passed as its packet data. */
struct xvs_sweep_args {
	__u32 flags;     /* XVS_SWEEP_* */
	__u32 early_ms;  /* XVS_SWEEP_EARLY: unassured entries idle this long go */
	__u32 dest_id;   /* XVS_SWEEP_RETHRESH, XVS_SWEEP_DEST: the server */
	__u32 u_thresh;  /* XVS_SWEEP_RETHRESH: its new thresholds */
	__u32 l_thresh;
	__u32 gen;       /* XVS_SWEEP_DEST: the server slot's generation */
};
#define XVS_SWEEP_LBLC_FULL 0x1 /* the 30-minute lblc/lblcr expiry check is due */
#define XVS_SWEEP_ALL 0x2       /* remove every connection (flush) */
#define XVS_SWEEP_EARLY 0x8     /* the half-open gauge is high: drop unassured entries early */
#define XVS_SWEEP_RETHRESH 0x10 /* only apply a threshold edit to one server's overload flag */
#define XVS_SWEEP_NAT_GC 0x20   /* also remove reply entries whose connection is gone */
#define XVS_SWEEP_DEST 0x40     /* also remove the connections of one server (expire_nodest_conn) */
/* Tables the sweep leaves alone this time (ignored with XVS_SWEEP_ALL and XVS_SWEEP_DEST). */
#define XVS_SWEEP_SKIP_CONN4 0x100
#define XVS_SWEEP_SKIP_CONN6 0x200
#define XVS_SWEEP_SKIP_TPL4 0x400
#define XVS_SWEEP_SKIP_TPL6 0x800
#define XVS_SWEEP_SKIP_SIP 0x1000
/* xvs_sweep_out.held: the tables walked that held an entry. */
#define XVS_TABLE_CONN4 0x1
#define XVS_TABLE_CONN6 0x2
#define XVS_TABLE_TPL4 0x4
#define XVS_TABLE_TPL6 0x8
#define XVS_TABLE_SIP 0x10

/* Output of the sweep program, in its packet data after the args. */
struct xvs_sweep_out {
	__u64 seen;
	__u64 expired;
	__u64 tpl_seen;
	__u64 tpl_expired;
	__u64 lblc_expired;
	__u64 early_dropped; /* unassured connections and templates removed by XVS_SWEEP_EARLY */
	__s64 half;          /* the half-open gauge after the sweep */
	__u64 held;          /* XVS_TABLE_*: the tables walked that held an entry */
};

/* One connection or template handed to the install program (a synchronised copy of another
 * director's), in its packet data; up to XVS_INSTALL_MAX per run. 64 bytes. */
struct xvs_install_rec {
	__u32 caddr[4]; /* IPv4: word 0 */
	__u32 vaddr[4];
	__u16 cport;    /* network order; 0 for a template */
	__u16 vport;
	__u8 proto;
	__u8 af;        /* XVS_AF_INET or XVS_AF_INET6 */
	__u8 kind;      /* XVS_INSTALL_CONN or XVS_INSTALL_TPL */
	__u8 state;     /* connection: XVS_TCP_S_*, XVS_UDP_S or XVS_SCTP_S_BASE + n; template: XVS_TPL_S_* */
	__u8 flags;     /* connection: XVS_CONN_F_INACTIVE, _NOOUTPUT, _KEEPPORT as the master had them */
	__u8 result;    /* out: XVS_INSTALLED_* */
	__u16 pad;
	__u32 dest_id;  /* the server's slot on this director */
	__u32 svc_id;   /* the service's slot on this director */
	__u32 timeout_s; /* template: its timeout */
	__u32 pad2[2];
};
#define XVS_INSTALL_MAX 48
#define XVS_INSTALL_CONN 1
#define XVS_INSTALL_TPL 2
#define XVS_INSTALLED_NEW 1     /* created, with its accounting */
#define XVS_INSTALLED_UPDATED 2 /* present already: state and timer refreshed */
#define XVS_INSTALLED_NO_DEST 3 /* no server in that slot */
#define XVS_INSTALLED_FULL 4    /* the table is full */
#define XVS_INSTALLED_BAD 5     /* a record that is not a connection or template */

/* A connection's key handed to xvs_sweep_keys (the sweep in steps on a kernel without
 * iterator programs), in its packet data; up to XVS_SWEEP_KEYS_MAX per run. 44 bytes. */
struct xvs_sweep_key {
	__u32 key[10]; /* struct xvs_conn4_key (its first 16 bytes) or struct xvs_conn6_key */
	__u8 af;       /* XVS_AF_INET or XVS_AF_INET6 */
	__u8 result;   /* out: 1 if this run removed it (expired), else 0 */
	__u8 pad[2];
};
#define XVS_SWEEP_KEYS_MAX 64

/* Global gauges, changed atomically by the programs. */
struct xvs_gauges {
	__s64 half; /* connections with XVS_CONN_F_HALF */
	__s64 pad[7];
};

/* ---- packet trace (xvsadm trace) ----
 * xvsd writes the filter (xvs_trace_ctl, one entry); while `on`, each packet it matches is
 * followed through the director and one record per packet goes to the ring buffer xvs_trace.
 * Neither map is pinned: a trace ends with the xvsd that ran it. */
#define XVS_TF_CADDR 0x1 /* the client's address (either direction: NAT replies go to it) */
#define XVS_TF_CPORT 0x2 /* the client's port */
#define XVS_TF_VADDR 0x4 /* the virtual address (towards it) */
#define XVS_TF_VPORT 0x8 /* the virtual port */
#define XVS_TF_PROTO 0x10

/* 48 bytes. */
struct xvs_trace_filter {
	__u32 on;
	__u32 flags;    /* XVS_TF_* */
	__u32 caddr[4]; /* IPv4: word 0 */
	__u32 vaddr[4];
	__u16 cport;    /* network order */
	__u16 vport;
	__u8 af;        /* with an address: its family */
	__u8 proto;
	__u16 pad;
};

/* What the packet met in the connection table. */
enum xvs_trace_conn {
	XVS_TR_NONE = 0,      /* no connection: passed or dropped before one was found or made */
	XVS_TR_HIT = 1,       /* an existing connection */
	XVS_TR_NEW = 2,       /* a new connection, just scheduled */
	XVS_TR_REPLY = 3,     /* a NAT reply from a real server */
	XVS_TR_ONEPACKET = 4, /* scheduled and not kept (one-packet scheduling) */
};
#define XVS_TR_F_REPLACED 0x1 /* it replaced a closed connection on the same addresses and ports */
#define XVS_TR_F_TPL_HIT 0x2  /* the persistence template chose the server */
#define XVS_TR_F_TPL_NEW 0x4  /* the server was scheduled and a new template made */
#define XVS_TR_F_ALT 0x8      /* alt_* hold the runner-up of a least-connection pick */
#define XVS_TR_F_WIN 0x10     /* win_* hold the chosen server's load at the pick */
#define XVS_TR_NO_REASON 0xff

/* One traced packet. 112 bytes. */
struct xvs_trace_ev {
	__u64 ts_ns;      /* CLOCK_MONOTONIC */
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;      /* network order */
	__u16 dport;
	__u8 af;
	__u8 proto;
	__u8 tcp_flags;   /* as struct pkt has them */
	__u8 verdict;     /* the XDP action returned */
	__u32 ifindex;
	__u32 svc_id;     /* 0xffffffff: no service */
	__u32 dest_id;    /* 0xffffffff: no server */
	__u8 conn;        /* enum xvs_trace_conn */
	__u8 flags;       /* XVS_TR_F_* */
	__u8 reason;      /* enum xvs_reason, or XVS_TR_NO_REASON */
	__u8 sched;       /* enum xvs_sched_kind of the service that scheduled */
	__u8 state;       /* the connection's state after the packet */
	__u8 method;      /* XVS_FWD_* */
	__u16 pad;
	__s32 win_weight; /* the chosen server at the pick (XVS_TR_F_WIN) */
	__s64 win_active;
	__s64 win_total;
	__s32 alt_weight; /* the runner-up (XVS_TR_F_ALT) */
	__u32 alt_id;
	__s64 alt_active;
	__s64 alt_total;
};
_Static_assert(sizeof(struct xvs_trace_filter) == 48, "xvs_trace_filter: crates/xvs-abi expects 48 bytes");
_Static_assert(sizeof(struct xvs_trace_ev) == 112, "xvs_trace_ev: crates/xvs-abi expects 112 bytes");

#endif
