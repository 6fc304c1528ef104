/* This file contains the connection table: keys for both families, the TCP/UDP/SCTP state
 * transitions with IPVS's tables (TCP's copied into xvs_config by xvsd from xvs-core, SCTP's
 * rendered from it into sctp_states.h), persistence
 * templates, and the accounting that binds and unbinds connections to real servers.
 *
 * Accounting is done only here, with atomic operations, by whoever creates or removes an entry
 * (the packet path or the sweep program), so ActiveConn/InActConn/PersistConn never depend on a
 * second writer.
 */
#ifndef XVS_CONN_H
#define XVS_CONN_H

#include "common.h"
#include "parse.h"
#include "sctp_states.h"

/* Directions of the state tables. */
#define DIR_INPUT 0
#define DIR_OUTPUT 1
#define DIR_INPUT_ONLY 2

#define XVS_FTP_PORT 21
/* The kernel re-arms a template that still controls connections with this timeout. */
#define XVS_TPL_RETRY_S 60

union conn_key {
	struct xvs_conn4_key k4;
	struct xvs_conn6_key k6;
};

union nat_key {
	struct xvs_nat4_key k4;
	struct xvs_nat6_key k6;
};

/* The client-side key of a packet from the client. */
static __always_inline void conn_key_in(const struct pkt *p, union conn_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (p->af == XVS_AF_INET) {
		k->k4.caddr = p->saddr[0];
		k->k4.vaddr = p->daddr[0];
		k->k4.cport = p->sport;
		k->k4.vport = p->dport;
		k->k4.proto = p->proto;
	} else {
		__builtin_memcpy(k->k6.caddr, p->saddr, 16);
		__builtin_memcpy(k->k6.vaddr, p->daddr, 16);
		k->k6.cport = p->sport;
		k->k6.vport = p->dport;
		k->k6.proto = p->proto;
	}
}

/* Compares two keys of family `af` word by word. */
static __always_inline int conn_key_eq(__u8 af, const union conn_key *a, const union conn_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	int words = af == XVS_AF_INET ? sizeof(a->k4) / 4 : sizeof(a->k6) / 4;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(a->k6) / 4); i++)
		if (i < words && x[i] != y[i])
			return 0;
	return 1;
}

static __always_inline struct xvs_conn *conn_lookup(__u8 af, const union conn_key *k)
{
	if (af == XVS_AF_INET)
		return bpf_map_lookup_elem(&xvs_conn4, &k->k4);
	return bpf_map_lookup_elem(&xvs_conn6, &k->k6);
}

static __always_inline long conn_update(__u8 af, const union conn_key *k, const struct xvs_conn *c)
{
	if (af == XVS_AF_INET)
		return bpf_map_update_elem(&xvs_conn4, &k->k4, c, BPF_ANY);
	return bpf_map_update_elem(&xvs_conn6, &k->k6, c, BPF_ANY);
}

/* Returns: 0 when this call removed the entry. */
static __always_inline long conn_delete(__u8 af, const union conn_key *k)
{
	if (af == XVS_AF_INET)
		return bpf_map_delete_elem(&xvs_conn4, &k->k4);
	return bpf_map_delete_elem(&xvs_conn6, &k->k6);
}

/* Inserts a new connection, failing with -EEXIST when another CPU got there first. */
static __always_inline long conn_insert(__u8 af, const union conn_key *k, const struct xvs_conn *c)
{
	if (af == XVS_AF_INET)
		return bpf_map_update_elem(&xvs_conn4, &k->k4, c, BPF_NOEXIST);
	long err = bpf_map_update_elem(&xvs_conn6, &k->k6, c, BPF_NOEXIST);
	/* Counted once in the table (the sweep skips tables nothing entered since it found them
	 * empty); IPv4 connections are counted by XVS_CNT_CONN_NEW. */
	if (!err)
		count(XVS_CNT_OTHER_NEW);
	return err;
}

/* The reply key of a connection: (real server address and port, client address and port). */
static __always_inline void nat_key_of(__u8 af, const union conn_key *k, const __u32 *raddr, __u16 rport,
				       union nat_key *n)
{
	__builtin_memset(n, 0, sizeof(*n));
	if (af == XVS_AF_INET) {
		n->k4.raddr = raddr[0];
		n->k4.caddr = k->k4.caddr;
		n->k4.rport = rport;
		n->k4.cport = k->k4.cport;
		n->k4.proto = k->k4.proto;
	} else {
		__builtin_memcpy(n->k6.raddr, raddr, 16);
		__builtin_memcpy(n->k6.caddr, k->k6.caddr, 16);
		n->k6.rport = rport;
		n->k6.cport = k->k6.cport;
		n->k6.proto = k->k6.proto;
	}
}

/* The reply key of a packet from a real server to a client. */
static __always_inline void nat_key_out(const struct pkt *p, union nat_key *n)
{
	__builtin_memset(n, 0, sizeof(*n));
	if (p->af == XVS_AF_INET) {
		n->k4.raddr = p->saddr[0];
		n->k4.caddr = p->daddr[0];
		n->k4.rport = p->sport;
		n->k4.cport = p->dport;
		n->k4.proto = p->proto;
	} else {
		__builtin_memcpy(n->k6.raddr, p->saddr, 16);
		__builtin_memcpy(n->k6.caddr, p->daddr, 16);
		n->k6.rport = p->sport;
		n->k6.cport = p->dport;
		n->k6.proto = p->proto;
	}
}

/* Copies the connection key a reply entry points at into *k (the copy is made inside each
 * family's branch, where the verifier knows the value's size).
 * Returns: 1 if the entry exists. */
static __always_inline int nat_get(__u8 af, const union nat_key *n, union conn_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (af == XVS_AF_INET) {
		struct xvs_conn4_key *v = bpf_map_lookup_elem(&xvs_nat4, &n->k4);
		if (!v)
			return 0;
		k->k4 = *v;
		return 1;
	}
	struct xvs_conn6_key *v = bpf_map_lookup_elem(&xvs_nat6, &n->k6);
	if (!v)
		return 0;
	k->k6 = *v;
	return 1;
}

static __always_inline long nat_update(__u8 af, const union nat_key *n, const union conn_key *k)
{
	if (af == XVS_AF_INET)
		return bpf_map_update_elem(&xvs_nat4, &n->k4, &k->k4, BPF_ANY);
	return bpf_map_update_elem(&xvs_nat6, &n->k6, &k->k6, BPF_ANY);
}

static __always_inline void nat_delete(__u8 af, const union nat_key *n)
{
	if (af == XVS_AF_INET)
		bpf_map_delete_elem(&xvs_nat4, &n->k4);
	else
		bpf_map_delete_elem(&xvs_nat6, &n->k6);
}

/* The template key of a connection (reference §3.6): protocol, masked client, cport 0, the
 * virtual address, and the virtual port for a normal service (0 for FTP and port-0 ones). */
static __always_inline void tpl_key(__u8 af, const union conn_key *k, const struct xvs_svc *svc, __u16 svc_port,
				    union conn_key *t)
{
	__builtin_memcpy(t, k, sizeof(*t));
	if (svc->flags & XVS_SVC_F_FWMARK) {
		/* ip_vs_sched_persist: one template for every port and protocol the mark covers, its
		 * virtual address the mark (here the service's id, which stands for its mark). */
		if (af == XVS_AF_INET) {
			t->k4.caddr &= svc->netmask[0];
			t->k4.cport = 0;
			t->k4.vport = 0;
			t->k4.vaddr = bpf_htonl(svc->id);
			t->k4.proto = 0;
		} else {
#pragma unroll
			for (int i = 0; i < 4; i++) {
				t->k6.caddr[i] &= svc->netmask[i];
				t->k6.vaddr[i] = 0;
			}
			t->k6.vaddr[0] = bpf_htonl(svc->id);
			t->k6.cport = 0;
			t->k6.vport = 0;
			t->k6.proto = 0;
		}
		return;
	}
	if (af == XVS_AF_INET) {
		t->k4.caddr &= svc->netmask[0];
		t->k4.cport = 0;
		if (t->k4.vport != svc_port || bpf_ntohs(svc_port) == XVS_FTP_PORT)
			t->k4.vport = 0;
	} else {
#pragma unroll
		for (int i = 0; i < 4; i++)
			t->k6.caddr[i] &= svc->netmask[i];
		t->k6.cport = 0;
		if (t->k6.vport != svc_port || bpf_ntohs(svc_port) == XVS_FTP_PORT)
			t->k6.vport = 0;
	}
}

static __always_inline struct xvs_tpl *tpl_lookup(__u8 af, const union conn_key *t)
{
	if (af == XVS_AF_INET)
		return bpf_map_lookup_elem(&xvs_tpl4, &t->k4);
	return bpf_map_lookup_elem(&xvs_tpl6, &t->k6);
}

/* Inserts a template, failing with -EEXIST when another CPU created one first. */
static __always_inline long tpl_insert(__u8 af, const union conn_key *t, const struct xvs_tpl *v)
{
	long err = af == XVS_AF_INET ? bpf_map_update_elem(&xvs_tpl4, &t->k4, v, BPF_NOEXIST)
				     : bpf_map_update_elem(&xvs_tpl6, &t->k6, v, BPF_NOEXIST);
	if (!err)
		count(XVS_CNT_OTHER_NEW); /* once in the table: see conn_insert */
	return err;
}

/* Returns: 0 when this call removed the template. */
static __always_inline long tpl_delete(__u8 af, const union conn_key *t)
{
	if (af == XVS_AF_INET)
		return bpf_map_delete_elem(&xvs_tpl4, &t->k4);
	return bpf_map_delete_elem(&xvs_tpl6, &t->k6);
}

/* The template controlling connection `k` of service `svc_id`, if it is still the one that
 * bound it (a replacement template points at another server). */
static __always_inline struct xvs_tpl *tpl_of_conn(__u8 af, const union conn_key *k, const struct xvs_conn *c)
{
	__u32 sid = c->svc_id;
	struct xvs_svc *svc = bpf_map_lookup_elem(&xvs_svc_by_id, &sid);
	if (!svc)
		return NULL;
	__u16 svc_port = svc->port;
	union conn_key t;
	tpl_key(af, k, svc, svc_port, &t);
	struct xvs_tpl *tpl = tpl_lookup(af, &t);
	if (!tpl || tpl->dest_id != c->dest_id || tpl->gen != c->gen)
		return NULL;
	return tpl;
}

/* Milliseconds from `then` to `now` on the wrapping 32-bit clock. A stamp slightly in the future
 * (written by another CPU after this packet read the clock) is 0 ms old, not 49 days: ages up to
 * 46 days are told apart from those, and every timeout ipvsadm accepts (31 days at most) fits. */
static __always_inline __u32 age_ms(__u32 now, __u32 then)
{
	__u32 age = now - then;
	return age > 0xF0000000u ? 0 : age;
}

/* The half-open gauge: connections that carry XVS_CONN_F_HALF. */
static __always_inline struct xvs_gauges *gauges(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&xvs_gauges, &zero);
}

static __always_inline void half_add(__s64 n)
{
	struct xvs_gauges *g = gauges();
	if (g)
		__sync_fetch_and_add(&g->half, n);
}

/* A connection is assured (TCP reached ESTABLISHED, UDP saw a second packet): it leaves the
 * half-open gauge and can no longer be dropped early. Exactly one CPU clears the flag. */
static __always_inline void conn_assure(struct xvs_conn *c)
{
	__u32 *word = (__u32 *)&c->state;
	for (int attempt = 0; attempt < 4; attempt++) {
		__u32 old = *word;
		__u8 flags = (old >> 8) & 0xff;
		if (!(flags & XVS_CONN_F_HALF) || (flags & XVS_CONN_F_DEAD))
			return;
		__u32 neww = old & ~((__u32)XVS_CONN_F_HALF << 8);
		if (__sync_val_compare_and_swap(word, old, neww) == old) {
			half_add(-1);
			return;
		}
	}
}

/* Claims a connection for removal: only the CPU that sets XVS_CONN_F_DEAD removes it and does
 * its accounting, so a promotion or a transition racing with the removal cannot be counted
 * twice. Returns: 1 if this call claimed it. */
static __always_inline int conn_claim(struct xvs_conn *c)
{
	__u32 *word = (__u32 *)&c->state;
	for (int attempt = 0; attempt < 8; attempt++) {
		__u32 old = *word;
		if ((old >> 8) & XVS_CONN_F_DEAD)
			return 0;
		if (__sync_val_compare_and_swap(word, old, old | ((__u32)XVS_CONN_F_DEAD << 8)) == old)
			return 1;
	}
	return 0;
}

/* ActiveConn counts TCP ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK and SCTP ESTABLISHED. */
static __always_inline int state_active(__u8 s)
{
	return s == XVS_TCP_S_ESTABLISHED || s == XVS_TCP_S_SYN_SENT || s == XVS_TCP_S_SYN_RECV ||
	       s == XVS_TCP_S_SYNACK || s == XVS_SCTP_S_ESTABLISHED;
}

/* The handshake completed (conntrack's ASSURED): TCP or SCTP ESTABLISHED. */
static __always_inline int state_established(__u8 s)
{
	return s == XVS_TCP_S_ESTABLISHED || s == XVS_SCTP_S_ESTABLISHED;
}

/* The timeout of a connection in state `s`, in ms (SCTP's are the kernel's fixed ones). */
static __always_inline __u32 state_timeout(const struct xvs_cfg *cfg, __u8 s)
{
	if (s < 16)
		return cfg->timeout_ms[s & 15];
	__u32 i = s - XVS_SCTP_S_BASE;
	return i < XVS_SCTP_STATES ? xvs_sctp_timeout_ms[i] : 0;
}

/* The next state and flags of a connection for one packet (set_tcp_state); returns the
 * packed word (state in the low byte, flags in the next, as in struct xvs_conn). */
static __always_inline __u32 next_word(__u32 word, const struct xvs_cfg *cfg, int dir, __u8 tcp_flags)
{
	__u8 state = word & 0xff, flags = (word >> 8) & 0xff;
	if (state == XVS_UDP_S || (flags & XVS_CONN_F_DEAD))
		return word;
	if (flags & XVS_CONN_F_NOOUTPUT) {
		if (dir == DIR_OUTPUT)
			flags &= ~XVS_CONN_F_NOOUTPUT;
		else
			dir = DIR_INPUT_ONLY;
	}
	__u8 next = XVS_TCP_S_CLOSE;
	if (state >= XVS_SCTP_S_BASE) {
		/* set_sctp_state: the event parse_packet found, the kernel's table. */
		__u32 cur = state - XVS_SCTP_S_BASE, sev = tcp_flags & XVS_SCTP_EV_MASK;
		if (cur >= XVS_SCTP_STATES || dir < 0 || dir > 2)
			return word;
		if (sev >= XVS_SCTP_EVENTS)
			sev = 0;
		next = XVS_SCTP_S_BASE + xvs_sctp_next[dir][sev][cur];
		goto moved;
	}
	int ev = -1;
	if (tcp_flags & XVS_TCP_RST)
		ev = 3;
	else if (tcp_flags & XVS_TCP_SYN)
		ev = 0;
	else if (tcp_flags & XVS_TCP_FIN)
		ev = 1;
	else if (tcp_flags & XVS_TCP_ACK)
		ev = 2;
	__u8 cur = state < XVS_TCP_S_LAST ? state : XVS_TCP_S_NONE;
	if (ev >= 0 && dir >= 0 && dir < 3) {
		int secure = (cfg->flags & XVS_CFG_SECURE_TCP) ? 1 : 0;
		next = cfg->tcp_next[secure][dir][ev][cur];
	}
moved:
	if (next != state) {
		if (state_active(next))
			flags &= ~XVS_CONN_F_INACTIVE;
		else
			flags |= XVS_CONN_F_INACTIVE;
	}
	/* The handshake completed: the connection is assured (conntrack's ASSURED). */
	if (state_established(next))
		flags &= ~XVS_CONN_F_HALF;
	return (word & 0xffff0000) | next | ((__u32)flags << 8);
}

/* Runs the state machine for one packet (set_tcp_state / udp_state_transition).
 * @dir: DIR_INPUT or DIR_OUTPUT; INPUT becomes INPUT_ONLY while no reply was seen.
 * The state and flags change together by compare-and-swap: a NAT connection's two directions
 * may be processed on two CPUs at once, and only the CPU whose change lands moves the
 * server's active count. */
__attribute__((noinline)) int conn_transition(__u8 af, const union conn_key *k, struct xvs_conn *c, int dir,
						__u8 tcp_flags)
{
	struct xvs_cfg *cfg = config();
	if (!k || !c || !cfg)
		return 0;
	if (c->state == XVS_UDP_S) {
		if (dir == DIR_OUTPUT && (c->flags & XVS_CONN_F_CTL)) {
			struct xvs_tpl *t = tpl_of_conn(af, k, c);
			if (t)
				t->state = XVS_TPL_S_ASSURED;
		}
		return 0;
	}
	__u32 *word = (__u32 *)&c->state;
	for (int attempt = 0; attempt < 4; attempt++) {
		__u32 old = *word;
		__u32 neww = next_word(old, cfg, dir, tcp_flags);
		if (neww == old)
			return 0;
		if (__sync_val_compare_and_swap(word, old, neww) != old)
			continue;
		int was = !((old >> 8) & XVS_CONN_F_INACTIVE), now = !((neww >> 8) & XVS_CONN_F_INACTIVE);
		if (was != now) {
			__u32 id = c->dest_id;
			struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
			struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
			if (st && dst && dst->gen == c->gen)
				__sync_fetch_and_add(&st->active, now ? 1 : -1);
		}
		if (((old >> 8) & XVS_CONN_F_HALF) && !((neww >> 8) & XVS_CONN_F_HALF))
			half_add(-1);
		if (state_established(neww & 0xff) && (neww & 0xff) != (old & 0xff) &&
		    (c->flags & XVS_CONN_F_CTL)) {
			struct xvs_tpl *t = tpl_of_conn(af, k, c);
			if (t)
				t->state = XVS_TPL_S_ASSURED;
		}
		return 0;
	}
	return 0;
}

/* The real server port a connection uses, and the one its reply entry is keyed by. */
static __always_inline __u16 conn_rport(__u8 af, const union conn_key *k, const struct xvs_conn *c,
					const struct xvs_dest *dst)
{
	__u16 vport = af == XVS_AF_INET ? k->k4.vport : k->k6.vport;
	if ((c->flags & XVS_CONN_F_KEEPPORT) || !dst->port)
		return vport;
	return dst->port;
}

/* Binds a new connection to its server: total + 1, and the overload flag when the total
 * reaches the upper threshold exactly (reference §3.7). */
static __always_inline void dest_bind(__u32 dest_id, const struct xvs_dest *dst)
{
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &dest_id);
	if (!st)
		return;
	__s64 total = __sync_fetch_and_add(&st->total, 1) + 1;
	if (dst->u_thresh && total == dst->u_thresh)
		st->overload = 1;
}

/* Unbinds a connection that goes away: active - 1 if it was active, total - 1, and the
 * overload flag cleared when the total was exactly the lower threshold. Releases its template.
 * Shared by the packet path (replacing an expired entry) and the sweep. */
__attribute__((noinline)) int conn_release(__u8 af, const union conn_key *k, const struct xvs_conn *c)
{
	if (!k || !c)
		return 0;
	__u32 id = c->dest_id;
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
	if (c->flags & XVS_CONN_F_HALF)
		half_add(-1);
	if (c->flags & XVS_CONN_F_CTL) {
		struct xvs_tpl *t = tpl_of_conn(af, k, c);
		if (t && (__s32)t->n_control > 0)
			__sync_fetch_and_add(&t->n_control, -1);
	}
	count_atomic(XVS_CNT_CONN_DEL);
	/* A slot that another server took since: neither its counters nor its address are this
	 * connection's (its reply entry is left to the sweep's orphan pass). */
	if (!dst || dst->gen != c->gen)
		return 0;
	if (st) {
		if (!(c->flags & XVS_CONN_F_INACTIVE))
			__sync_fetch_and_add(&st->active, -1);
		__s64 before = __sync_fetch_and_add(&st->total, -1);
		if (st->overload && before == dst->l_thresh)
			st->overload = 0;
	}
	if (c->flags & XVS_CONN_F_NAT) {
		union nat_key n;
		nat_key_of(af, k, dst->addr, conn_rport(af, k, c, dst), &n);
		/* Only our own reply entry: another VIP's connection may share it. */
		union conn_key owner;
		if (nat_get(af, &n, &owner) && conn_key_eq(af, &owner, k))
			nat_delete(af, &n);
	}
	return 0;
}

/* True once a connection has been idle longer than its state's timeout. */
static __always_inline int conn_expired(const struct xvs_conn *c, const struct xvs_cfg *cfg, __u32 now)
{
	return age_ms(now, c->seen) >= state_timeout(cfg, c->state);
}

#endif
