/* This file contains the connection table: keys for both families, the TCP/UDP state
 * transitions with IPVS's tables (copied into xvs_config by xvsd from xvs-core), persistence
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

static __always_inline void conn_delete(__u8 af, const union conn_key *k)
{
	if (af == XVS_AF_INET)
		bpf_map_delete_elem(&xvs_conn4, &k->k4);
	else
		bpf_map_delete_elem(&xvs_conn6, &k->k6);
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

static __always_inline union conn_key *nat_lookup(__u8 af, const union nat_key *n)
{
	if (af == XVS_AF_INET)
		return bpf_map_lookup_elem(&xvs_nat4, &n->k4);
	return bpf_map_lookup_elem(&xvs_nat6, &n->k6);
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

static __always_inline long tpl_update(__u8 af, const union conn_key *t, const struct xvs_tpl *v)
{
	if (af == XVS_AF_INET)
		return bpf_map_update_elem(&xvs_tpl4, &t->k4, v, BPF_ANY);
	return bpf_map_update_elem(&xvs_tpl6, &t->k6, v, BPF_ANY);
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
	if (!tpl || tpl->dest_id != c->dest_id)
		return NULL;
	return tpl;
}

static __always_inline int state_active(__u8 s)
{
	return s == XVS_TCP_S_ESTABLISHED || s == XVS_TCP_S_SYN_SENT || s == XVS_TCP_S_SYN_RECV ||
	       s == XVS_TCP_S_SYNACK;
}

/* The timeout of a connection in state `s`, in ms. */
static __always_inline __u32 state_timeout(const struct xvs_cfg *cfg, __u8 s)
{
	return s < 16 ? cfg->timeout_ms[s & 15] : 0;
}

/* Runs the state machine for one packet (set_tcp_state / udp_state_transition).
 * @dir: DIR_INPUT or DIR_OUTPUT; INPUT becomes INPUT_ONLY while no reply was seen. */
static __always_inline void conn_transition(__u8 af, const union conn_key *k, struct xvs_conn *c,
					    const struct xvs_cfg *cfg, int dir, __u8 tcp_flags)
{
	if (c->state == XVS_UDP_S) {
		if (dir == DIR_OUTPUT && (c->flags & XVS_CONN_F_CTL)) {
			struct xvs_tpl *t = tpl_of_conn(af, k, c);
			if (t)
				t->state = XVS_TPL_S_ASSURED;
		}
		return;
	}
	if (c->flags & XVS_CONN_F_NOOUTPUT) {
		if (dir == DIR_OUTPUT)
			c->flags &= ~XVS_CONN_F_NOOUTPUT;
		else
			dir = DIR_INPUT_ONLY;
	}
	__u8 next = XVS_TCP_S_CLOSE;
	int ev = -1;
	if (tcp_flags & XVS_TCP_RST)
		ev = 3;
	else if (tcp_flags & XVS_TCP_SYN)
		ev = 0;
	else if (tcp_flags & XVS_TCP_FIN)
		ev = 1;
	else if (tcp_flags & XVS_TCP_ACK)
		ev = 2;
	__u8 cur = c->state;
	if (cur >= XVS_TCP_S_LAST)
		cur = XVS_TCP_S_NONE;
	if (ev >= 0 && dir >= 0 && dir < 3) {
		int secure = (cfg->flags & XVS_CFG_SECURE_TCP) ? 1 : 0;
		next = cfg->tcp_next[secure][dir][ev][cur];
	}
	if (next == c->state)
		return;
	int was = !(c->flags & XVS_CONN_F_INACTIVE), now = state_active(next);
	if (was != now) {
		__u32 id = c->dest_id;
		struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
		if (st)
			__sync_fetch_and_add(&st->active, now ? 1 : -1);
		if (now)
			c->flags &= ~XVS_CONN_F_INACTIVE;
		else
			c->flags |= XVS_CONN_F_INACTIVE;
	}
	if (next == XVS_TCP_S_ESTABLISHED && (c->flags & XVS_CONN_F_CTL)) {
		struct xvs_tpl *t = tpl_of_conn(af, k, c);
		if (t)
			t->state = XVS_TPL_S_ASSURED;
	}
	c->state = next;
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
static __always_inline void conn_release(__u8 af, const union conn_key *k, const struct xvs_conn *c)
{
	__u32 id = c->dest_id;
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
	if (st && dst) {
		if (!(c->flags & XVS_CONN_F_INACTIVE))
			__sync_fetch_and_add(&st->active, -1);
		__s64 before = __sync_fetch_and_add(&st->total, -1);
		if (st->overload && before == dst->l_thresh)
			st->overload = 0;
	}
	if (c->flags & XVS_CONN_F_CTL) {
		struct xvs_tpl *t = tpl_of_conn(af, k, c);
		if (t && (__s32)t->n_control > 0)
			__sync_fetch_and_add(&t->n_control, -1);
	}
	if ((c->flags & XVS_CONN_F_NAT) && dst) {
		union nat_key n;
		__u16 rport = dst->port;
		if (!rport)
			rport = af == XVS_AF_INET ? k->k4.vport : k->k6.vport;
		nat_key_of(af, k, dst->addr, rport, &n);
		nat_delete(af, &n);
	}
	count(XVS_CNT_CONN_DEL);
}

/* True once a connection has been idle longer than its state's timeout. */
static __always_inline int conn_expired(const struct xvs_conn *c, const struct xvs_cfg *cfg, __u32 now)
{
	return (__s32)(now - c->seen) >= (__s32)state_timeout(cfg, c->state);
}

#endif
