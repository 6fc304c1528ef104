/* This file contains the maps of the director program. Sizes are defaults; the loader sets the
 * real ones from xvsd's configuration before loading (aya's set_max_entries). Every map is
 * pinned by name under xvsd's pin directory, so a restarted xvsd finds the same tables and
 * forwarding never stops (docs/dataplane.md, "hitless restart").
 */
#ifndef XVS_MAPS_H
#define XVS_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "xvs_abi.h"

#ifndef XVS_MAX_SERVICES
#define XVS_MAX_SERVICES 131072 /* services, and slots in the per-service arrays */
#endif
#ifndef XVS_MAX_DESTS
#define XVS_MAX_DESTS 262144 /* real servers, and entries in the list pool */
#endif
#ifndef XVS_MAX_CONNS
#define XVS_MAX_CONNS 1048576 /* connections per family */
#endif
#ifndef XVS_TABLE_SLOTS
#define XVS_TABLE_SLOTS 4194304 /* sh/dh/mh bucket pool: 1024 mh services or 16384 sh/dh */
#endif

#define XVS_PIN __uint(pinning, LIBBPF_PIN_BY_NAME)

/* (family, protocol, VIP, port) → service. No preallocation: an update swaps the element under
 * RCU, so a reader holding the old value is never overwritten (publication is atomic). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_SERVICES);
	__type(key, struct xvs_svc_key);
	__type(value, struct xvs_svc);
	XVS_PIN;
} xvs_services SEC(".maps");

/* Per-service scheduler state (rr cursor, wrr position), by service id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct xvs_sched_state);
	XVS_PIN;
} xvs_sched_state SEC(".maps");

/* Per-service persistence netmask and timeout by id, for the sweep (it sees only ids). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct xvs_svc);
	XVS_PIN;
} xvs_svc_by_id SEC(".maps");

/* The pool of service server lists; a service owns [dests_off, dests_off + dests_cnt). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct xvs_dest_ref);
	XVS_PIN;
} xvs_dest_lists SEC(".maps");

/* The pool of sh/dh/mh buckets: each slot holds a position in the service's list, or ~0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_TABLE_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	XVS_PIN;
} xvs_sched_tables SEC(".maps");

/* Real servers by id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct xvs_dest);
	XVS_PIN;
} xvs_dests SEC(".maps");

/* Real server connection counters by id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct xvs_dest_state);
	XVS_PIN;
} xvs_dest_state SEC(".maps");

/* Statistics by real server id and by service id, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct xvs_stats);
	XVS_PIN;
} xvs_dest_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XVS_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct xvs_stats);
	XVS_PIN;
} xvs_svc_stats SEC(".maps");

/* Connections, client side. Plain hash tables, never LRU: nothing but expiry, a reset, a
 * flush or the early drop of unassured entries (XVS_CONN_F_HALF) ever removes a connection, so a
 * flood of new flows cannot push out an established one; a full table refuses new entries.
 * No preallocation by default: memory follows the entries present, so the sizes can be large
 * (xvsd --prealloc-conns creates these four tables preallocated before the loader adopts
 * them). The loader sizes them max_conns. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_CONNS);
	__type(key, struct xvs_conn4_key);
	__type(value, struct xvs_conn);
	XVS_PIN;
} xvs_conn4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_CONNS);
	__type(key, struct xvs_conn6_key);
	__type(value, struct xvs_conn);
	XVS_PIN;
} xvs_conn6 SEC(".maps");

/* NAT replies: (real server, client) → the connection's key. Inserted and removed with their
 * connection, sized as the connection tables. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_CONNS);
	__type(key, struct xvs_nat4_key);
	__type(value, struct xvs_conn4_key);
	XVS_PIN;
} xvs_nat4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_CONNS);
	__type(key, struct xvs_nat6_key);
	__type(value, struct xvs_conn6_key);
	XVS_PIN;
} xvs_nat6 SEC(".maps");

/* Persistence templates; keys as connections, with cport 0 (reference §3.6). Removed only by
 * their timer (when they control no connection) or, while never assured, by the early drop. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_CONNS / 4);
	__type(key, struct xvs_conn4_key);
	__type(value, struct xvs_tpl);
	XVS_PIN;
} xvs_tpl4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_CONNS / 4);
	__type(key, struct xvs_conn6_key);
	__type(value, struct xvs_tpl);
	XVS_PIN;
} xvs_tpl6 SEC(".maps");

/* Templates of services with the sip persistence engine (both families). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_CONNS / 4);
	__type(key, struct xvs_sip_key);
	__type(value, struct xvs_tpl);
	XVS_PIN;
} xvs_tpl_sip SEC(".maps");

/* lblc/lblcr: destination address → server(s). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct xvs_lblc_key);
	__type(value, struct xvs_lblc);
	XVS_PIN;
} xvs_lblc SEC(".maps");

/* Allowed client prefixes of services with XVS_SVC_F_ALLOWLIST. */
#ifndef XVS_MAX_ALLOW
#define XVS_MAX_ALLOW 65536
#endif
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XVS_MAX_ALLOW);
	__type(key, struct xvs_allow_key);
	__type(value, __u32);
	XVS_PIN;
} xvs_allow SEC(".maps");

/* Global gauges (the half-open count). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xvs_gauges);
	XVS_PIN;
} xvs_gauges SEC(".maps");

/* The director's own ICMP errors: a token bucket per CPU, as the kernel's icmp_global limit. */
struct xvs_icmp_bucket {
	__u64 last_ns;
	__u32 tokens;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xvs_icmp_bucket);
} xvs_icmp_limit SEC(".maps");

/* Per-CPU scratch space for the FIB lookup's 64-byte parameters: the stack of an XDP program
 * and its calls is limited to 512 bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_fib_lookup);
} xvs_fib_scratch SEC(".maps");

/* The next hop towards each real server, per CPU, kept for XVS_NH_TTL_MS: the FIB lookup is
 * half of an established packet's cost. Direct-mapped by real-server slot; an entry counts
 * only for the same slot, server address and ingress interface, and for packets within the
 * MTU the FIB reported, so a route or neighbour change is seen within the TTL. */
#define XVS_NH_SLOTS 4096
#define XVS_NH_TTL_MS 1000
struct xvs_nexthop {
	__u32 dest_id;
	__u32 addr[4];
	__u32 in_ifindex;
	__u32 out_ifindex;
	__u32 src[4]; /* the outer source of tunnels */
	__u32 stamp;  /* ms of CLOCK_MONOTONIC; 0: empty */
	__u16 mtu;
	__u8 dmac[6];
	__u8 smac[6];
	__u8 tunnel; /* looked up for a tunnel (with its source address) */
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XVS_NH_SLOTS);
	__type(key, __u32);
	__type(value, struct xvs_nexthop);
} xvs_nexthop SEC(".maps");

/* Next hops the FIB had no neighbour for, for xvsd to resolve: the kernel resolves a neighbour
 * only for packets it sends itself, and a NAT reply passed to it from a VIP the host holds is
 * dropped as a martian. Direct-mapped by address, newest wins. */
#define XVS_NEIGH_SLOTS 64
struct xvs_neigh_miss {
	__u32 addr[4];
	__u32 ifindex;
	__u32 stamp; /* ms of CLOCK_MONOTONIC_COARSE; 0: empty */
	__u8 af;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_NEIGH_SLOTS);
	__type(key, __u32);
	__type(value, struct xvs_neigh_miss);
} xvs_neigh_miss SEC(".maps");

/* The MAC of each interface the director is attached to, direct-mapped by ifindex, written by
 * xvsd at attach and refreshed every second: a unicast frame for another MAC (a flooding
 * switch, a promiscuous interface) is not the director's to forward, as the kernel drops it
 * (PACKET_OTHERHOST) before IPVS would see it. An empty or foreign slot: no check. */
#define XVS_IF_SLOTS 256
struct xvs_if_mac {
	__u32 ifindex;
	__u8 mac[6];
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XVS_IF_SLOTS);
	__type(key, __u32);
	__type(value, struct xvs_if_mac);
} xvs_if_macs SEC(".maps");

/* Tunables and the TCP state tables. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xvs_cfg);
	XVS_PIN;
} xvs_config SEC(".maps");

/* Packets that left the fast path, by enum xvs_reason, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XVS_R_MAX);
	__type(key, __u32);
	__type(value, __u64);
	XVS_PIN;
} xvs_reasons SEC(".maps");

/* Global counters by enum xvs_counter, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XVS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	XVS_PIN;
} xvs_counters SEC(".maps");

#endif
