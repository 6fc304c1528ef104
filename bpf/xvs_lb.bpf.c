// SPDX-License-Identifier: GPL-2.0
/* The director: an XDP program that balances TCP and UDP connections to virtual services the
 * way IPVS does (docs/dataplane.md walks through it), and the sweep program that xvsd runs
 * every second to expire connections and templates.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "include/common.h"
#include "include/parse.h"
#include "include/csum.h"
#include "include/conn.h"
#include "include/sched.h"
#include "include/fwd.h"
#include "include/icmp.h"
#include "include/sip.h"

char LICENSE[] SEC("license") = "GPL";

struct bpf_map;

/* The packet being processed and its lookup keys, per CPU: kept off the stack, whose 512
 * bytes the nested calls below share. XDP programs do not nest on a CPU. */
struct scratch {
	struct pkt p;
	union conn_key k;
	union nat_key n;
	union conn_key fk;
	union nat_key rn;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} xvs_scratch SEC(".maps");

/* The IPv4 DF bit of the packet (IPv6 packets are never fragmented on the way). */
static __always_inline int may_fragment(struct xdp_md *ctx, const struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	if (p->af != XVS_AF_INET || (void *)(ip + 1) > data_end)
		return 0;
	return !(ip->frag_off & bpf_htons(IP_DF));
}

/* The route towards the real server is narrower than the packet: the client learns it from us
 * (reference §5.1, §5.3). A packet that may be fragmented is dropped: XDP cannot fragment. */
static __always_inline int too_big(struct xdp_md *ctx, struct pkt *p, __u32 mtu)
{
	count_reason(XVS_R_FRAG_NEEDED);
	if (may_fragment(ctx, p))
		return XDP_DROP;
	return icmp_reply(ctx, p, ICMP_TOO_BIG, mtu);
}

/* Takes a packet of an existing connection to its real server. */
/* A global function (verified once, on its own): every new or existing connection's packet
 * ends here. */
__attribute__((noinline)) int forward(struct xdp_md *ctx, struct pkt *p, union conn_key *k, struct xvs_conn *c)
{
	if (!p || !k || !c)
		return XDP_PASS;
	__u32 now = p->now;
	int is_new = p->is_new;
	__u32 dest_id = c->dest_id;
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst)
		return XDP_PASS;
	__u8 old_state = c->state;
	/* The fast path: an established connection's plain ACK leaves state and flags as they are
	 * in every table (input, input-only, secure), and a UDP flow has one state; the state
	 * machine is only walked for the packets that can move it. */
	if (!(old_state == XVS_TCP_S_ESTABLISHED && p->proto == IPPROTO_TCP && p->tcp_flags == XVS_TCP_ACK) &&
	    old_state != XVS_UDP_S)
		conn_transition(p->af, k, c, DIR_INPUT, p->tcp_flags);
	if (!is_new && old_state == XVS_UDP_S)
		conn_assure(c); /* a UDP flow's second packet */
	/* "Last seen" is rewritten at most once a second unless the state moved: a shared entry
	 * written on every packet would bounce its cache line between CPUs. */
	if (is_new || c->state != old_state || (__s32)(now - c->seen) >= 1000)
		c->seen = now;
	if (dst->flags & XVS_DEST_F_AVAILABLE)
		count_stats(dest_id, dst->svc_id, p->ip_len, 0, is_new);

	__u8 method = c->method;
	if (method == XVS_FWD_LOCAL)
		return XDP_PASS;
	/* A packet through the firewall-mark device was forwarded by the kernel already, which
	 * checked and decremented its TTL. */
	int fwm = p->fwm;
	if (!fwm && p->ttl <= 1) {
		count_reason(XVS_R_TTL);
		return icmp_reply(ctx, p, ICMP_TTL, 0);
	}

	/* The route first: the checks it answers (MTU) come before any rewrite. */
	struct bpf_fib_lookup *fib = fib_scratch();
	if (!fib)
		return XDP_PASS;
	__u8 tunnel = method == XVS_FWD_TUNNEL;
	__u16 hdr = tunnel ? tun_overhead(dst) : 0;
	long rc = BPF_FIB_LKUP_RET_SUCCESS;
	if (!nexthop_get(p, dest_id, dst->addr, p->ip_len + hdr, tunnel, fib)) {
		rc = fib_lookup(ctx, p, dst->af, dst->addr, p->ip_len + hdr, fib, tunnel ? BPF_FIB_LOOKUP_SRC : 0);
		if (rc == BPF_FIB_LKUP_RET_SUCCESS)
			nexthop_put(p, dest_id, dst->addr, tunnel, fib);
	}
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return too_big(ctx, p, fib->mtu_result - hdr);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED && method != XVS_FWD_TUNNEL) {
		/* The real server is this host: deliver locally, NAT rewritten first (§5.4). */
		if (method == XVS_FWD_MASQ && rewrite_dst(ctx, p, dst->addr, conn_rport(p->af, k, c, dst)))
			return XDP_DROP;
		return XDP_PASS;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		count_reason(XVS_R_NO_ROUTE);
		return XDP_DROP;
	}
	if (!fwm && dec_ttl(ctx, p)) {
		count_reason(XVS_R_BAD_PACKET);
		return XDP_DROP;
	}
	if (method == XVS_FWD_MASQ) {
		if (rewrite_dst(ctx, p, dst->addr, conn_rport(p->af, k, c, dst))) {
			count_reason(XVS_R_BAD_PACKET);
			return XDP_DROP;
		}
	} else if (method == XVS_FWD_TUNNEL) {
		if (encap(ctx, p, dst, fib)) {
			count_reason(XVS_R_BAD_PACKET);
			return XDP_DROP;
		}
	}
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return xmit(ctx, p, fib);
	count_reason(XVS_R_NO_NEIGH);
	neigh_miss(p, dst->af, fib);
	/* NAT and tunnel packets are now addressed to the real server: the kernel forwards them
	 * and resolves the neighbour. A direct-routing packet still carries the VIP and would be
	 * delivered here; xvsd keeps real servers' neighbour entries warm, so this is a first
	 * packet to a server nobody has talked to yet, and the client retransmits. */
	return method == XVS_FWD_ROUTE ? XDP_DROP : XDP_PASS;
}

/* A reply from a NAT real server: back to the client with the VIP as its source. */
__attribute__((noinline)) int reply(struct xdp_md *ctx, struct pkt *p, union conn_key *kp)
{
	if (!p || !kp)
		return XDP_PASS;
	__u32 now = p->now;
	union conn_key k = *kp;
	struct xvs_conn *c = conn_lookup(p->af, &k);
	if (!c)
		return XDP_PASS;
	__u32 dest_id = c->dest_id;
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst || dst->gen != c->gen) {
		count_reason(XVS_R_STALE_DEST);
		return XDP_PASS;
	}
	__u8 old_state = c->state;
	conn_transition(p->af, &k, c, DIR_OUTPUT, p->tcp_flags);
	if (old_state == XVS_UDP_S)
		conn_assure(c); /* a UDP flow with a reply */
	if (c->state != old_state || (__s32)(now - c->seen) >= 1000)
		c->seen = now;
	if (dst->flags & XVS_DEST_F_AVAILABLE)
		count_stats(dest_id, dst->svc_id, p->ip_len, 1, 0);

	__u32 vaddr[4] = {};
	__u16 vport;
	if (p->af == XVS_AF_INET) {
		vaddr[0] = k.k4.vaddr;
		vport = k.k4.vport;
	} else {
		__builtin_memcpy(vaddr, k.k6.vaddr, 16);
		vport = k.k6.vport;
	}
	if (p->ttl <= 1) {
		count_reason(XVS_R_TTL);
		return icmp_reply(ctx, p, ICMP_TTL, 0);
	}
	struct bpf_fib_lookup *fib = fib_scratch();
	if (!fib)
		return XDP_PASS;
	long rc = fib_lookup(ctx, p, p->af, p->daddr, p->ip_len, fib, 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return too_big(ctx, p, fib->mtu_result);
	if (dec_ttl(ctx, p) || rewrite_src(ctx, p, vaddr, vport)) {
		count_reason(XVS_R_BAD_PACKET);
		return XDP_DROP;
	}
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return xmit(ctx, p, fib);
	count_reason(rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XVS_R_NO_NEIGH : XVS_R_NO_ROUTE);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		neigh_miss(p, p->af, fib);
	/* The rewritten reply is routable by the kernel when the VIP is not one of its addresses;
	 * when it is (a VRRP master), the kernel drops it and xvsd resolves the neighbour. */
	return XDP_PASS;
}

/* A reply of a direct-routing or tunnel connection that passes back through the director (the
 * real server routes through it): its source is the VIP, and the kernel's out lookup finds the
 * connection by it, counts the packet and moves the state with the full table (so a connection
 * the client closes reaches TIME_WAIT: testdata/kernel/dr-replies-6.12.txt). The packet goes on
 * to the kernel, which forwards it, as before.
 * Returns: 1 when it was such a reply. */
__attribute__((noinline)) int observe_reply(struct pkt *p, union conn_key *rk)
{
	if (!p || !rk)
		return 0;
	__builtin_memset(rk, 0, sizeof(*rk));
	if (p->af == XVS_AF_INET) {
		rk->k4.caddr = p->daddr[0];
		rk->k4.vaddr = p->saddr[0];
		rk->k4.cport = p->dport;
		rk->k4.vport = p->sport;
		rk->k4.proto = p->proto;
	} else {
		__builtin_memcpy(rk->k6.caddr, p->daddr, 16);
		__builtin_memcpy(rk->k6.vaddr, p->saddr, 16);
		rk->k6.cport = p->dport;
		rk->k6.vport = p->sport;
		rk->k6.proto = p->proto;
	}
	struct xvs_conn *c = conn_lookup(p->af, rk);
	struct xvs_cfg *cfg = config();
	if (!c || !cfg || (c->flags & XVS_CONN_F_NAT) || conn_expired(c, cfg, p->now))
		return 0;
	__u32 dest_id = c->dest_id;
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst || dst->gen != c->gen)
		return 0;
	__u8 old_state = c->state;
	conn_transition(p->af, rk, c, DIR_OUTPUT, p->tcp_flags);
	if (old_state == XVS_UDP_S)
		conn_assure(c);
	if (c->state != old_state || (__s32)(p->now - c->seen) >= 1000)
		c->seen = p->now;
	if (dst->flags & XVS_DEST_F_AVAILABLE)
		count_stats(dest_id, dst->svc_id, p->ip_len, 1, 0);
	return 1;
}

/* Removes a connection that can no longer carry packets (expired, closed and reused, or its
 * server gone), with its accounting. The packet path and the sweep may race for the same
 * entry: only the one whose delete succeeds does the accounting, from a copy taken before
 * (the freed element may be reused at once).
 * Returns: 1 if this call removed it. */
static __always_inline int drop_conn(__u8 af, union conn_key *k, struct xvs_conn *c)
{
	if (!conn_claim(c))
		return 0;
	struct xvs_conn copy = *c;
	if (conn_delete(af, k))
		return 0;
	conn_release(af, k, &copy);
	return 1;
}

/* The service a new connection to (daddr, dport) belongs to: exact match, then port 0; for a
 * packet that came through the firewall-mark device, the service of its mark only. */
static __always_inline struct xvs_svc *find_service(const struct pkt *p)
{
	struct xvs_svc_key sk = {};
	if (p->fwm) {
		sk.addr[0] = p->fwmark;
		sk.af = p->af;
		return bpf_map_lookup_elem(&xvs_services, &sk);
	}
	__builtin_memcpy(sk.addr, p->daddr, 16);
	sk.port = p->dport;
	sk.proto = p->proto;
	sk.af = p->af;
	struct xvs_svc *svc = bpf_map_lookup_elem(&xvs_services, &sk);
	if (svc)
		return svc;
	sk.port = 0;
	return bpf_map_lookup_elem(&xvs_services, &sk);
}

/* Picks a server for a new connection, through the persistence template when the service is
 * persistent (reference §3.6). On success *ctl says the connection is controlled by a template
 * (whose n_control this call raised): 1 when the template chose the server, 2 when the server
 * was scheduled and the template made or replaced.
 * Returns: a dest id or XVS_NO_DEST; XVS_EMPTY when the template table refused an entry. */
__attribute__((noinline)) __u32 pick(const struct xvs_svc *svc, struct pkt *p, union conn_key *k, int *ctl)
{
	struct xvs_cfg *cfg = config();
	if (!svc || !p || !k || !ctl || !cfg)
		return XVS_EMPTY;
	__u32 now = p->now;
	*ctl = 0;
	if (!(svc->flags & XVS_SVC_F_PERSISTENT))
		return schedule(svc, p, cfg);
	union conn_key t;
	tpl_key(p->af, k, svc, svc->port, &t);
	struct xvs_tpl *tpl = tpl_lookup(p->af, &t);
	__u32 dest_id = XVS_NO_DEST;
	if (tpl && ((__u64)age_ms(now, tpl->since) < (__u64)tpl->timeout * 1000 || (__s32)tpl->n_control > 0)) {
		__u32 id = tpl->dest_id;
		struct xvs_dest *d = bpf_map_lookup_elem(&xvs_dests, &id);
		if (d && d->gen == tpl->gen && (d->flags & XVS_DEST_F_AVAILABLE) &&
		    !((cfg->flags & XVS_CFG_EXPIRE_QUIESCENT) && d->weight == 0))
			dest_id = id;
	}
	int made = 0;
	if (dest_id == XVS_NO_DEST) {
		dest_id = schedule(svc, p, cfg);
		if (dest_id == XVS_NO_DEST)
			return dest_id;
		made = 1;
		if (tpl) {
			/* Invalid (server gone or quiesced) or expired: replace it. Its server stops
			 * counting it now; the kernel would keep it counted until its timer fired. */
			struct xvs_tpl old = *tpl;
			if (!tpl_delete(p->af, &t)) {
				struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &old.dest_id);
				struct xvs_dest *od = bpf_map_lookup_elem(&xvs_dests, &old.dest_id);
				if (st && od && od->gen == old.gen)
					__sync_fetch_and_add(&st->persist, -1);
			}
		}
		struct xvs_dest *nd = bpf_map_lookup_elem(&xvs_dests, &dest_id);
		if (!nd)
			return XVS_EMPTY;
		struct xvs_tpl nt = { .dest_id = dest_id, .since = now, .timeout = svc->timeout, .gen = nd->gen };
		long err = tpl_insert(p->af, &t, &nt);
		if (!err) {
			struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &dest_id);
			if (st)
				__sync_fetch_and_add(&st->persist, 1);
		} else if (err != -17 /* EEXIST: another CPU created it; use theirs */) {
			return XVS_EMPTY;
		}
		tpl = tpl_lookup(p->af, &t);
		if (!tpl)
			return XVS_EMPTY;
		dest_id = tpl->dest_id;
	}
	/* Each new connection restarts the persistence window. */
	__sync_fetch_and_add(&tpl->n_control, 1);
	tpl->since = now;
	*ctl = made ? 2 : 1; /* a trace tells a new template from an existing one */
	return dest_id;
}

/* pick() for a service with the sip persistence engine: the template is keyed by the Call-ID
 * sip_call_id found as well (xvs_tpl_sip). Connections are not counted against it (a
 * connection cannot name its template: the key holds the Call-ID); each one scheduled through
 * it restarts its window, which one-packet scheduling, the usual way with SIP, does for every
 * datagram. */
__attribute__((noinline)) __u32 pick_sip(const struct xvs_svc *svc, struct pkt *p, union conn_key *k, int *ctl)
{
	struct xvs_cfg *cfg = config();
	if (!svc || !p || !k || !ctl || !cfg)
		return XVS_EMPTY;
	*ctl = 0;
	__u32 now = p->now;
	struct xvs_sip_key *sk = sip_key(p->af, k, svc);
	if (!sk)
		return XVS_EMPTY;
	struct xvs_tpl *tpl = bpf_map_lookup_elem(&xvs_tpl_sip, sk);
	if (tpl && (__u64)age_ms(now, tpl->since) < (__u64)tpl->timeout * 1000) {
		__u32 id = tpl->dest_id;
		struct xvs_dest *d = bpf_map_lookup_elem(&xvs_dests, &id);
		if (d && d->gen == tpl->gen && (d->flags & XVS_DEST_F_AVAILABLE) &&
		    !((cfg->flags & XVS_CFG_EXPIRE_QUIESCENT) && d->weight == 0)) {
			/* A call that came back: never taken by early drop under a flood. */
			tpl->state = XVS_TPL_S_ASSURED;
			tpl->since = now;
			return id;
		}
	}
	__u32 dest_id = schedule(svc, p, cfg);
	if (dest_id == XVS_NO_DEST)
		return dest_id;
	if (tpl) {
		struct xvs_tpl old = *tpl;
		if (!bpf_map_delete_elem(&xvs_tpl_sip, sk)) {
			struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &old.dest_id);
			struct xvs_dest *od = bpf_map_lookup_elem(&xvs_dests, &old.dest_id);
			if (st && od && od->gen == old.gen)
				__sync_fetch_and_add(&st->persist, -1);
		}
	}
	struct xvs_dest *nd = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!nd)
		return XVS_EMPTY;
	struct xvs_tpl nt = { .dest_id = dest_id, .since = now, .timeout = svc->timeout, .gen = nd->gen };
	long err = bpf_map_update_elem(&xvs_tpl_sip, sk, &nt, BPF_NOEXIST);
	if (!err) {
		count(XVS_CNT_OTHER_NEW); /* once in the table: see conn_insert */
		struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &dest_id);
		if (st)
			__sync_fetch_and_add(&st->persist, 1);
		return dest_id;
	}
	if (err != -17 /* EEXIST: another CPU made it; use theirs */)
		return XVS_EMPTY;
	tpl = bpf_map_lookup_elem(&xvs_tpl_sip, sk);
	return tpl ? tpl->dest_id : XVS_EMPTY;
}

/* Gives back the n_control that pick() took, when the connection is not created after all. */
__attribute__((noinline)) int unpick(const struct xvs_svc *svc, __u8 af, union conn_key *k, __u32 dest_id)
{
	if (!svc || !k)
		return 0;
	union conn_key t;
	tpl_key(af, k, svc, svc->port, &t);
	struct xvs_tpl *tpl = tpl_lookup(af, &t);
	if (tpl && tpl->dest_id == dest_id && (__s32)tpl->n_control > 0)
		__sync_fetch_and_add(&tpl->n_control, -1);
	return 0;
}

/* The packet matches the running trace's filter (forward: from the client to the service;
 * a NAT reply: to the client). */
static __always_inline int trace_match(const struct xvs_trace_filter *f, const struct pkt *p)
{
	__u32 fl = f->flags;
	if ((fl & XVS_TF_PROTO) && p->proto != f->proto)
		return 0;
	if ((fl & (XVS_TF_CADDR | XVS_TF_VADDR)) && p->af != f->af)
		return 0;
	int fwd = (!(fl & XVS_TF_CADDR) || (p->saddr[0] == f->caddr[0] && p->saddr[1] == f->caddr[1] &&
					     p->saddr[2] == f->caddr[2] && p->saddr[3] == f->caddr[3])) &&
		  (!(fl & XVS_TF_CPORT) || p->sport == f->cport) &&
		  (!(fl & XVS_TF_VADDR) || (p->daddr[0] == f->vaddr[0] && p->daddr[1] == f->vaddr[1] &&
					     p->daddr[2] == f->vaddr[2] && p->daddr[3] == f->vaddr[3])) &&
		  (!(fl & XVS_TF_VPORT) || p->dport == f->vport);
	if (fwd)
		return 1;
	return (fl & XVS_TF_CADDR) && p->daddr[0] == f->caddr[0] && p->daddr[1] == f->caddr[1] &&
	       p->daddr[2] == f->caddr[2] && p->daddr[3] == f->caddr[3] &&
	       (!(fl & XVS_TF_CPORT) || p->dport == f->cport);
}

/* Starts the record of this packet when a trace runs and it matches; NULL otherwise. With no
 * trace running this costs one array lookup (inlined by the verifier) and a test. */
static __always_inline struct trace_cur *trace_start(const struct pkt *p)
{
	__u32 zero = 0;
	struct xvs_trace_filter *f = bpf_map_lookup_elem(&xvs_trace_ctl, &zero);
	if (likely(!f || !f->on) || !trace_match(f, p))
		return NULL;
	struct trace_cur *t = bpf_map_lookup_elem(&xvs_trace_cur, &zero);
	if (!t)
		return NULL;
	__builtin_memset(&t->ev, 0, sizeof(t->ev));
	t->ev.ts_ns = bpf_ktime_get_ns();
	__builtin_memcpy(t->ev.saddr, p->saddr, 16);
	__builtin_memcpy(t->ev.daddr, p->daddr, 16);
	t->ev.sport = p->sport;
	t->ev.dport = p->dport;
	t->ev.af = p->af;
	t->ev.proto = p->proto;
	t->ev.tcp_flags = p->tcp_flags;
	t->ev.ifindex = p->ifindex;
	t->ev.svc_id = XVS_NO_DEST;
	t->ev.dest_id = XVS_NO_DEST;
	t->ev.reason = XVS_TR_NO_REASON;
	t->on = 1;
	return t;
}

/* Sends the record with the verdict; a full ring buffer loses it (counted). */
static __always_inline void trace_end(struct trace_cur *t, int verdict)
{
	t->ev.verdict = verdict;
	if (bpf_ringbuf_output(&xvs_trace, &t->ev, sizeof(t->ev), 0))
		count(XVS_CNT_TRACE_LOST);
	t->on = 0;
}

/* A connection's fields in the trace record. */
static __always_inline void trace_conn(struct xvs_trace_ev *tr, const struct xvs_conn *c, __u8 kind)
{
	tr->conn = kind;
	tr->svc_id = c->svc_id;
	tr->dest_id = c->dest_id;
	tr->method = c->method;
	tr->state = c->state;
}

static __always_inline int handle_l4(struct xdp_md *ctx, struct scratch *sc, const struct xvs_cfg *cfg,
				     struct xvs_trace_ev *tr)
{
	struct pkt *p = &sc->p;
	union conn_key *kp = &sc->k;
	conn_key_in(p, kp);
	__u32 now = p->now;
	/* A TCP SYN or an SCTP INIT: may open a connection, or replace a closed one (is_new_conn). */
	int is_syn = p->proto == IPPROTO_TCP ? (p->tcp_flags & XVS_TCP_SYN)
		     : p->proto == IPPROTO_SCTP ? (p->tcp_flags & XVS_SCTP_EV_MASK) == XVS_SCTP_EV_INIT
						 : 0;
	int is_new = 0, onepacket = 0;
	/* A closed connection a new SYN replaces. The kernel expires it from its timer, after the
	 * packet: it still counts against its server while the new SYN is scheduled
	 * (testdata/kernel/reuse-6.12.txt). Removed right after the pick, before the new entry
	 * takes its key, and on every way out before that. */
	struct xvs_conn *old = NULL;

	struct xvs_conn *c = conn_lookup(p->af, kp);
	if (c) {
		__u32 id = c->dest_id;
		struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
		/* A slot that holds another server now counts as its server gone: never send this
		 * connection there. */
		int stale = dst && dst->gen != c->gen;
		if (stale)
			dst = NULL;
		int reuse = cfg->flags & (XVS_CFG_REUSE_1 | XVS_CFG_REUSE_2);
		if (conn_expired(c, cfg, now)) {
			drop_conn(p->af, kp, c);
			c = NULL;
		} else if (is_syn && dst &&
			   (((cfg->flags & XVS_CFG_EXPIRE_NODEST) && dst->weight == 0) ||
			    (reuse && !(c->flags & XVS_CONN_F_CTL) &&
			     (c->state == 5 /* TIME_WAIT */ || c->state == XVS_TCP_S_CLOSE ||
			      c->state == XVS_SCTP_S_CLOSED ||
			      ((cfg->flags & XVS_CFG_REUSE_2) && c->state == 4 /* FIN_WAIT */ &&
			       (c->flags & XVS_CONN_F_NOOUTPUT)))))) {
			/* A new connection on the 4-tuple of a closed one (conn_reuse_mode), or on one
			 * whose server was quiesced (expire_nodest_conn). */
			old = c;
			c = NULL;
		} else if (!dst || !(dst->flags & XVS_DEST_F_AVAILABLE)) {
			if (!(cfg->flags & XVS_CFG_EXPIRE_NODEST)) {
				count_reason(stale ? XVS_R_STALE_DEST : XVS_R_DEST_GONE);
				return XDP_DROP;
			}
			drop_conn(p->af, kp, c);
			c = NULL;
		}
		if (c)
			goto out;
	}

	/* A reply goes to its client, never to a virtual service's address and port: a first
	 * packet for a service (a SYN, an INIT) is no reply, and skips the reply table (a lookup
	 * that misses in a table of millions of buckets: about a fifth of a new flow's time). Replies
	 * keep the order: the reply table first, then the service. */
	struct xvs_svc *svc = NULL;
	int svc_looked_up = 0;
	if (is_syn && !(p->proto == IPPROTO_TCP && (p->tcp_flags & XVS_TCP_ACK))) {
		svc = find_service(p);
		svc_looked_up = 1;
	}
	if (!old && !svc) {
		nat_key_out(p, &sc->n);
		if (nat_get(p->af, &sc->n, &sc->fk)) {
			int v = reply(ctx, p, &sc->fk);
			if (tr) {
				struct xvs_conn *rc = conn_lookup(p->af, &sc->fk);
				if (rc)
					trace_conn(tr, rc, XVS_TR_REPLY);
			}
			return v;
		}
	}

	if (p->proto == IPPROTO_TCP &&
	    !((is_syn || (cfg->flags & XVS_CFG_SLOPPY_TCP)) && !(p->tcp_flags & XVS_TCP_RST))) {
		if (old)
			drop_conn(p->af, kp, old); /* a SYN with RST: replaces, opens nothing */
		else if (!p->fwm)
			observe_reply(p, &sc->fk);
		return XDP_PASS;
	}
	/* sctp_conn_schedule: an INIT, or with sloppy_sctp any first chunk but an ABORT
	 * (testdata/kernel/sctp-6.12.txt, "which first chunk opens a connection"). */
	if (p->proto == IPPROTO_SCTP && ((p->tcp_flags & XVS_SCTP_FIRST_ABORT) ||
					 !(is_syn || (cfg->flags & XVS_CFG_SLOPPY_SCTP)))) {
		if (!p->fwm)
			observe_reply(p, &sc->fk);
		return XDP_PASS;
	}
	if (!svc_looked_up)
		svc = find_service(p);
	if (tr && svc)
		tr->svc_id = svc->id;
	if (!svc && !old && !p->fwm && observe_reply(p, &sc->fk))
		return XDP_PASS;
	if (!svc || p->sport == bpf_htons(20)) {
		/* No service (any more), or active FTP data, never scheduled from the client side */
		if (old)
			drop_conn(p->af, kp, old);
		return XDP_PASS;
	}
	if (svc->flags & XVS_SVC_F_STANDBY) {
		/* This director is a VRRP backup for the service: its master schedules. */
		if (old)
			drop_conn(p->af, kp, old);
		count_reason(XVS_R_STANDBY);
		return XDP_PASS;
	}
	if (svc->flags & XVS_SVC_F_ALLOWLIST) {
		/* The firewall never sees VIP traffic (XDP runs first): the service's own list. */
		struct xvs_allow_key ak = { .prefixlen = 32 + (p->af == XVS_AF_INET ? 32 : 128), .svc_id = svc->id };
		__builtin_memcpy(ak.addr, p->saddr, 16);
		if (!bpf_map_lookup_elem(&xvs_allow, &ak)) {
			if (old)
				drop_conn(p->af, kp, old);
			count_reason(XVS_R_NOT_ALLOWED);
			return XDP_DROP;
		}
	}
	int fwmark = svc->flags & XVS_SVC_F_FWMARK;
	if (!fwmark && svc->port != p->dport && !(svc->flags & XVS_SVC_F_PERSISTENT)) {
		/* port 0 without persistence: "port zero only supported in persistent services" */
		if (old)
			drop_conn(p->af, kp, old);
		count_reason(XVS_R_NO_DEST);
		return icmp_reply(ctx, p, ICMP_PORT_UNREACH, 0);
	}

	/* Not assured connections are bounded (a spoofed SYN flood): refused past the limit, so
	 * they never take the room of established ones, which nothing evicts. */
	struct xvs_gauges *g = gauges();
	int one_packet = (svc->flags & XVS_SVC_F_ONEPACKET) && p->proto == IPPROTO_UDP;
	if (g && !one_packet && g->half >= (__s64)cfg->max_half) {
		if (old)
			drop_conn(p->af, kp, old);
		count_reason(XVS_R_HALF_FULL);
		return XDP_DROP;
	}

	int sip = (svc->flags & (XVS_SVC_F_SIP | XVS_SVC_F_PERSISTENT)) == (XVS_SVC_F_SIP | XVS_SVC_F_PERSISTENT);
	if (sip) {
		/* ip_vs_sip_fill_param: a UDP datagram with a Call-ID, or it is dropped, unanswered. */
		__u32 start = p->l4_off + 8, end = p->l3_off + p->ip_len;
		if (p->proto != IPPROTO_UDP || end <= start || !sip_call_id(ctx, start, end - start)) {
			if (old)
				drop_conn(p->af, kp, old);
			count(XVS_CNT_SIP_NO_CALLID);
			return XDP_DROP;
		}
	}

	int ctl;
	__u32 dest_id = sip ? pick_sip(svc, p, kp, &ctl) : pick(svc, p, kp, &ctl);
	if (tr) {
		/* Before the replaced connection goes: the loads the scheduler compared. */
		tr->sched = svc->sched;
		tr->flags |= (old ? XVS_TR_F_REPLACED : 0) | (ctl == 1 ? XVS_TR_F_TPL_HIT : 0) |
			     (ctl == 2 ? XVS_TR_F_TPL_NEW : 0);
		if (dest_id < XVS_EMPTY) {
			tr->dest_id = dest_id;
			if (ctl != 1)
				sched_explain(svc, dest_id, tr);
		}
	}
	if (old)
		drop_conn(p->af, kp, old);
	if (dest_id == XVS_EMPTY) {
		count_reason(XVS_R_TABLE_FULL);
		return XDP_DROP;
	}
	if (dest_id == XVS_NO_DEST) {
		count_reason(XVS_R_NO_DEST);
		if (bpf_ntohs(svc->port) == XVS_FTP_PORT && bpf_ntohs(p->dport) != XVS_FTP_PORT)
			return XDP_PASS;
		return icmp_reply(ctx, p, ICMP_PORT_UNREACH, 0);
	}
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst) {
		if (ctl)
			unpick(svc, p->af, kp, dest_id);
		return XDP_PASS;
	}

	struct xvs_conn nc = {
		.dest_id = dest_id,
		.seen = now,
		.svc_id = svc->id,
		.state = p->proto == IPPROTO_UDP ? XVS_UDP_S : p->proto == IPPROTO_SCTP ? XVS_SCTP_S_BASE : XVS_TCP_S_NONE,
		.flags = XVS_CONN_F_INACTIVE | XVS_CONN_F_HALF,
		.method = dst->method,
		.gen = dst->gen,
	};
	if (ctl)
		nc.flags |= XVS_CONN_F_CTL;
	if (dst->method != XVS_FWD_MASQ)
		nc.flags |= XVS_CONN_F_NOOUTPUT;
	/* A port-0 service keeps the packet's port; so does a persistent firewall-mark service
	 * (ip_vs_sched_persist), a plain one only when its server has no port. */
	if (fwmark ? (svc->flags & XVS_SVC_F_PERSISTENT) : p->dport != svc->port)
		nc.flags |= XVS_CONN_F_KEEPPORT;

	if (p->proto == IPPROTO_SCTP && dst->method == XVS_FWD_MASQ && conn_rport(p->af, kp, &nc, dst) != p->dport) {
		/* SCTP's CRC32c covers the ports and is not recomputed here. xvsd refuses such a
		 * server for an SCTP service; behind a firewall mark it can only take no SCTP. */
		if (ctl)
			unpick(svc, p->af, kp, dest_id);
		count_reason(XVS_R_UNSUPPORTED);
		return XDP_DROP;
	}
	if ((svc->flags & XVS_SVC_F_ONEPACKET) && p->proto == IPPROTO_UDP) {
		/* One-packet scheduling: nothing is remembered but the template, if any. */
		if (ctl)
			unpick(svc, p->af, kp, dest_id);
		c = &nc;
		is_new = 1;
		onepacket = 1;
		goto out;
	}

	if (dst->method == XVS_FWD_MASQ) {
		nc.flags |= XVS_CONN_F_NAT;
		nat_key_of(p->af, kp, dst->addr, conn_rport(p->af, kp, &nc, dst), &sc->rn);
		if (nat_update(p->af, &sc->rn, kp)) {
			if (ctl)
				unpick(svc, p->af, kp, dest_id);
			count_reason(XVS_R_TABLE_FULL);
			return XDP_DROP;
		}
	}
	long err = conn_insert(p->af, kp, &nc);
	if (err) {
		if (ctl)
			unpick(svc, p->af, kp, dest_id);
		if (err == -17 /* EEXIST */) {
			/* The same first packet on another CPU created it a moment ago. */
			c = conn_lookup(p->af, kp);
			if (!c)
				return XDP_PASS;
			goto out;
		}
		if (nc.flags & XVS_CONN_F_NAT)
			nat_delete(p->af, &sc->rn);
		count_reason(XVS_R_CONN_FULL);
		return XDP_DROP;
	}
	count(XVS_CNT_CONN_NEW);
	half_add(1);
	dest_bind(dest_id, dst);
	c = conn_lookup(p->af, kp);
	if (!c)
		return XDP_PASS;
	is_new = 1;
out:
	/* Keeps the compiler from computing addresses inside c before its null checks above
	 * (the verifier refuses arithmetic on a pointer that may be null). */
	asm volatile("" : "+r"(c));
	p->is_new = is_new;
	int v = forward(ctx, p, kp, c);
	if (tr) {
		__u8 fl = tr->flags;
		trace_conn(tr, c, onepacket ? XVS_TR_ONEPACKET : is_new ? XVS_TR_NEW : XVS_TR_HIT);
		tr->flags = fl;
	}
	return v;
}

/* The frame is unicast to a MAC that is not the ingress interface's (see xvs_if_macs). */
static __always_inline int for_another_host(struct xdp_md *ctx, void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || (eth->h_dest[0] & 1))
		return 0; /* broadcast and multicast: the kernel decides */
	__u32 slot = ctx->ingress_ifindex & (XVS_IF_SLOTS - 1);
	struct xvs_if_mac *m = bpf_map_lookup_elem(&xvs_if_macs, &slot);
	if (!m || !m->ifindex || m->ifindex != ctx->ingress_ifindex)
		return 0;
	return *(__u32 *)eth->h_dest != *(__u32 *)m->mac || *(__u16 *)(eth->h_dest + 4) != *(__u16 *)(m->mac + 4);
}

SEC("xdp")
int xvs_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&xvs_scratch, &zero);
	if (!sc)
		return XDP_PASS;
	struct pkt *pp = &sc->p;
	__builtin_memset(pp, 0, sizeof(*pp));
	int r = parse_packet(data, data_end, pp);
	if ((r == PARSE_OK || r == PARSE_ICMP) && for_another_host(ctx, data, data_end)) {
		count_reason(XVS_R_OTHER_HOST);
		return XDP_PASS;
	}
	pp->ifindex = ctx->ingress_ifindex;
	pp->now = now_ms();
	switch (r) {
	case PARSE_OK:
		break;
	case PARSE_ICMP:
		return handle_icmp(ctx, pp);
	case PARSE_FRAGMENT:
		count_reason(XVS_R_FRAGMENT);
		return XDP_PASS;
	case PARSE_BAD:
		count_reason(XVS_R_BAD_PACKET);
		return XDP_PASS;
	default:
		return XDP_PASS;
	}
	struct xvs_cfg *cfg = config();
	if (!cfg)
		return XDP_PASS;
	struct trace_cur *t = trace_start(pp);
	/* One call (not one per case): the verifier walks handle_l4 once. */
	int v = handle_l4(ctx, sc, cfg, t ? &t->ev : NULL);
	if (t)
		trace_end(t, v);
	return v;
}

/* ---- firewall-mark services ----
 *
 * XDP runs before netfilter, so a packet's mark is unknown here. xvsd routes marked packets
 * (policy rules "fwmark M", one per firewall-mark service) to a veth device, xvs-fwm: its
 * egress program writes the mark into the frame's source MAC, and xvs_lb_fwm, attached to the
 * peer, balances the packet by it. Only a connection's first packet takes this way: the next
 * ones find the connection in XDP on the interface they arrive on (docs/dataplane.md). */

SEC("classifier")
int xvs_fwm_stamp(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 mark = skb->mark;
	/* Unmarked: the kernel's own packets on the device (IPv6 router solicitations, say). */
	if ((void *)(eth + 1) > data_end || !mark)
		return 2; /* TC_ACT_SHOT */
	eth->h_source[0] = XVS_FWM_MAC0;
	eth->h_source[1] = XVS_FWM_MAC1;
	__u32 m = bpf_htonl(mark);
	__builtin_memcpy(eth->h_source + 2, &m, 4);
	return 0; /* TC_ACT_OK */
}

/* An answer the director built for the client (ICMP unreachable or too big), sent back the way
 * the client is routed: bouncing it into xvs-fwm would make it a packet from a local address
 * arriving from outside, which the kernel drops. */
static __always_inline int fwm_send_back(struct xdp_md *ctx, struct pkt *p)
{
	struct bpf_fib_lookup *fib = fib_scratch();
	if (!fib)
		return XDP_DROP;
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	long rc = fib_lookup(ctx, p, p->af, p->saddr, (__u16)(data_end - data - sizeof(struct ethhdr)), fib, 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_DROP;
	return xmit(ctx, p, fib);
}

SEC("xdp")
int xvs_lb_fwm(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&xvs_scratch, &zero);
	if (!sc)
		return XDP_DROP;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_source[0] != XVS_FWM_MAC0 || eth->h_source[1] != XVS_FWM_MAC1)
		return XDP_DROP;
	__u32 mark;
	__builtin_memcpy(&mark, eth->h_source + 2, 4);
	struct pkt *pp = &sc->p;
	__builtin_memset(pp, 0, sizeof(*pp));
	if (parse_packet(data, data_end, pp) != PARSE_OK)
		return XDP_DROP; /* ICMP, fragments, other protocols: nothing a service balances */
	pp->ifindex = ctx->ingress_ifindex;
	pp->now = now_ms();
	pp->fwm = 1;
	pp->fwmark = bpf_ntohl(mark);
	struct xvs_cfg *cfg = config();
	if (!cfg)
		return XDP_DROP;
	struct trace_cur *t = trace_start(pp);
	int r = handle_l4(ctx, sc, cfg, t ? &t->ev : NULL);
	if (r == XDP_TX) {
		r = fwm_send_back(ctx, &sc->p);
	} else if (r == XDP_PASS) {
		/* Nothing may go back to the kernel from here: it would route the packet by its
		 * mark into xvs-fwm again. */
		count_reason(XVS_R_UNSUPPORTED);
		r = XDP_DROP;
	}
	if (t)
		trace_end(t, r);
	return r;
}

/* ---- the sweep ---- */

/* The packet path's clock as of the last sweep, for the stepwise walk that follows it (an
 * iterator may not read the coarse clock, and one read per step costs less than one per
 * connection). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xvs_walk_clock SEC(".maps");

struct sweep_ctx {
	__u32 now;
	__u32 flags;
	__u32 early_ms;
	__u32 dest_id; /* XVS_SWEEP_DEST */
	__u32 gen;
	__u64 seen;
	__u64 expired;
	__u64 tpl_seen;
	__u64 tpl_expired;
	__u64 lblc_expired;
	__u64 early_dropped;
};

static __always_inline long sweep_one(__u8 af, union conn_key *k, struct xvs_conn *c, struct sweep_ctx *sc)
{
	struct xvs_cfg *cfg = config();
	if (!cfg)
		return 1;
	sc->seen++;
	/* A deleted server's connections, with expire_nodest_conn: the kernel (>= 5.9) expires
	 * them when the server is deleted (testdata/kernel/nodest-flush-6.12.txt). */
	int of_dest = (sc->flags & XVS_SWEEP_DEST) && c->dest_id == sc->dest_id && c->gen == sc->gen;
	if ((sc->flags & XVS_SWEEP_ALL) || of_dest || conn_expired(c, cfg, sc->now)) {
		sc->expired += drop_conn(af, k, c);
		return 0;
	}
	/* Early drop (conntrack's early_drop, IPVS's drop_entry): while the half-open gauge is
	 * high, unassured entries idle for early_ms go; assured ones are never touched. */
	if ((sc->flags & XVS_SWEEP_EARLY) && (c->flags & XVS_CONN_F_HALF) && age_ms(sc->now, c->seen) >= sc->early_ms) {
		int n = drop_conn(af, k, c);
		sc->expired += n;
		sc->early_dropped += n;
	}
	return 0;
}

static long sweep_conn4(struct bpf_map *map, struct xvs_conn4_key *key, struct xvs_conn *c, struct sweep_ctx *sc)
{
	union conn_key k = {};
	k.k4 = *key;
	return sweep_one(XVS_AF_INET, &k, c, sc);
}

static long sweep_conn6(struct bpf_map *map, struct xvs_conn6_key *key, struct xvs_conn *c, struct sweep_ctx *sc)
{
	union conn_key k = {};
	k.k6 = *key;
	return sweep_one(XVS_AF_INET6, &k, c, sc);
}

/* A template's timer: expired and still controlling connections → 60 s more, and 60 s from
 * then on; expired and idle → removed (ip_vs_conn_expire). Under early drop, a template that
 * controls nothing and was never assured goes at once (a flood's spoofed sources make them). */
static __always_inline int sweep_tpl(struct xvs_tpl *t, struct sweep_ctx *sc)
{
	sc->tpl_seen++;
	if (sc->flags & XVS_SWEEP_ALL)
		return 1;
	if ((sc->flags & XVS_SWEEP_EARLY) && t->state != XVS_TPL_S_ASSURED && (__s32)t->n_control <= 0 &&
	    age_ms(sc->now, t->since) >= sc->early_ms) {
		sc->early_dropped++;
		return 1;
	}
	if ((__u64)age_ms(sc->now, t->since) < (__u64)t->timeout * 1000)
		return 0;
	if ((__s32)t->n_control > 0) {
		t->timeout = XVS_TPL_RETRY_S;
		t->since = sc->now;
		return 0;
	}
	return 1;
}

/* A template the sweep removed: its server stops counting it. */
static __always_inline void tpl_released(__u32 id, __u32 gen, struct sweep_ctx *sc)
{
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
	struct xvs_dest *d = bpf_map_lookup_elem(&xvs_dests, &id);
	if (st && d && d->gen == gen)
		__sync_fetch_and_add(&st->persist, -1);
	sc->tpl_expired++;
}

static long sweep_tpl4(struct bpf_map *map, struct xvs_conn4_key *key, struct xvs_tpl *t, struct sweep_ctx *sc)
{
	__u32 id = t->dest_id, gen = t->gen;
	if (sweep_tpl(t, sc) && !bpf_map_delete_elem(map, key))
		tpl_released(id, gen, sc);
	return 0;
}

static long sweep_tpl6(struct bpf_map *map, struct xvs_conn6_key *key, struct xvs_tpl *t, struct sweep_ctx *sc)
{
	__u32 id = t->dest_id, gen = t->gen;
	if (sweep_tpl(t, sc) && !bpf_map_delete_elem(map, key))
		tpl_released(id, gen, sc);
	return 0;
}

static long sweep_tpl_sip(struct bpf_map *map, struct xvs_sip_key *key, struct xvs_tpl *t, struct sweep_ctx *sc)
{
	__u32 id = t->dest_id, gen = t->gen;
	if (sweep_tpl(t, sc) && !bpf_map_delete_elem(map, key))
		tpl_released(id, gen, sc);
	return 0;
}

/* Reply entries whose connection is gone (its server's slot was taken by another server before
 * it was removed, so its removal could not name the entry). */
static long sweep_nat4(struct bpf_map *map, struct xvs_nat4_key *key, struct xvs_conn4_key *owner, struct sweep_ctx *sc)
{
	if (!bpf_map_lookup_elem(&xvs_conn4, owner))
		bpf_map_delete_elem(map, key);
	return 0;
}

static long sweep_nat6(struct bpf_map *map, struct xvs_nat6_key *key, struct xvs_conn6_key *owner, struct sweep_ctx *sc)
{
	if (!bpf_map_lookup_elem(&xvs_conn6, owner))
		bpf_map_delete_elem(map, key);
	return 0;
}

/* lblc/lblcr entries unused for their expiration go at the 30-minute full check. */
static long sweep_lblc(struct bpf_map *map, struct xvs_lblc_key *key, struct xvs_lblc *e, struct sweep_ctx *sc)
{
	struct xvs_cfg *cfg = config();
	__u32 sid = key->svc_id;
	struct xvs_svc *svc = bpf_map_lookup_elem(&xvs_svc_by_id, &sid);
	if (!cfg)
		return 1;
	__u32 exp = svc && svc->sched == XVS_SCHED_LBLCR ? cfg->lblcr_expire_s : cfg->lblc_expire_s;
	if ((sc->flags & XVS_SWEEP_ALL) || !svc || (__s32)(sc->now / 1000 - e->lastuse) >= (__s32)exp) {
		bpf_map_delete_elem(map, key);
		sc->lblc_expired++;
	}
	return 0;
}

/* A threshold edit (reference §3.7): no upper threshold clears the overload flag, reaching it
 * sets it, falling below the lower one clears it. Done here, in the kernel, so that only the
 * flag is written: the counters beside it keep moving under packets. */
static __always_inline void rethreshold(const struct xvs_sweep_args *a)
{
	__u32 id = a->dest_id;
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
	if (!st)
		return;
	__s64 total = st->total;
	if (total < 0)
		total = 0;
	if (a->u_thresh == 0)
		st->overload = 0;
	else if (total >= a->u_thresh)
		st->overload = 1;
	else if (total < a->l_thresh)
		st->overload = 0;
}

/* Walks table `table` (XVS_TABLE_* order: conn4, conn6, tpl4, tpl6, sip); returns 1 when it held
 * an entry. A global function, verified once on its own: five optional walks inline multiplied
 * the verifier's states past its limit. */
__attribute__((noinline)) int sweep_walk(struct sweep_ctx *sc, __u32 table)
{
	if (!sc)
		return 0;
	/* The callbacks take a pointer to the stack. */
	struct sweep_ctx c = *sc;
	__u64 before = c.seen + c.tpl_seen;
	switch (table) {
	case 0:
		bpf_for_each_map_elem(&xvs_conn4, sweep_conn4, &c, 0);
		break;
	case 1:
		bpf_for_each_map_elem(&xvs_conn6, sweep_conn6, &c, 0);
		break;
	case 2:
		bpf_for_each_map_elem(&xvs_tpl4, sweep_tpl4, &c, 0);
		break;
	case 3:
		bpf_for_each_map_elem(&xvs_tpl6, sweep_tpl6, &c, 0);
		break;
	default:
		bpf_for_each_map_elem(&xvs_tpl_sip, sweep_tpl_sip, &c, 0);
		break;
	}
	*sc = c;
	return c.seen + c.tpl_seen != before;
}

/* Run by xvsd with BPF_PROG_TEST_RUN about once a second. Its "packet" carries struct
 * xvs_sweep_args in and struct xvs_sweep_out back. */
SEC("xdp")
int xvs_sweep(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct xvs_sweep_args *args = data;
	struct xvs_sweep_out *out = (void *)(args + 1);
	if ((void *)(out + 1) > data_end)
		return XDP_ABORTED;
	if (args->flags & XVS_SWEEP_RETHRESH) {
		rethreshold(args);
		return XDP_PASS;
	}
	struct sweep_ctx sc = {
		.now = now_ms(), .flags = args->flags, .early_ms = args->early_ms, .dest_id = args->dest_id, .gen = args->gen
	};
	__u32 zero = 0;
	__u32 *clock = bpf_map_lookup_elem(&xvs_walk_clock, &zero);
	if (clock)
		*clock = sc.now;
	/* A walk costs its table's bucket count, full or empty: xvsd skips a table the last walk
	 * found empty and nothing entered since (XVS_SWEEP_SKIP_*); a flush or a server's removal
	 * walks everything. Each table walked says whether it held anything. */
	__u32 skip = sc.flags & (XVS_SWEEP_ALL | XVS_SWEEP_DEST) ? 0 : sc.flags;
	out->held = 0;
	if (!(skip & XVS_SWEEP_SKIP_CONN4) && sweep_walk(&sc, 0))
		out->held |= XVS_TABLE_CONN4;
	if (!(skip & XVS_SWEEP_SKIP_CONN6) && sweep_walk(&sc, 1))
		out->held |= XVS_TABLE_CONN6;
	if (!(skip & XVS_SWEEP_SKIP_TPL4) && sweep_walk(&sc, 2))
		out->held |= XVS_TABLE_TPL4;
	if (!(skip & XVS_SWEEP_SKIP_TPL6) && sweep_walk(&sc, 3))
		out->held |= XVS_TABLE_TPL6;
	if (!(skip & XVS_SWEEP_SKIP_SIP) && sweep_walk(&sc, 4))
		out->held |= XVS_TABLE_SIP;
	if (sc.flags & (XVS_SWEEP_NAT_GC | XVS_SWEEP_ALL)) {
		bpf_for_each_map_elem(&xvs_nat4, sweep_nat4, &sc, 0);
		bpf_for_each_map_elem(&xvs_nat6, sweep_nat6, &sc, 0);
	}
	if (sc.flags & (XVS_SWEEP_LBLC_FULL | XVS_SWEEP_ALL))
		bpf_for_each_map_elem(&xvs_lblc, sweep_lblc, &sc, 0);
	out->seen = sc.seen;
	out->expired = sc.expired;
	out->tpl_seen = sc.tpl_seen;
	out->tpl_expired = sc.tpl_expired;
	out->lblc_expired = sc.lblc_expired;
	out->early_dropped = sc.early_dropped;
	struct xvs_gauges *g = gauges();
	out->half = g ? g->half : 0;
	__u32 which = XVS_CNT_EARLY_DROP;
	__u64 *early = bpf_map_lookup_elem(&xvs_counters, &which);
	if (early)
		*early += sc.early_dropped;
	count(XVS_CNT_SWEEPS);
	return XDP_PASS;
}

/* ---- the sweep in steps ----
 *
 * A walk of a table of millions of connections takes most of a second with preemption off
 * (docs/benchmarks.md, "Scale of state"). Past a size, xvsd walks the connection tables with
 * these iterators instead: each read() of the iterator's file visits as many connections as it
 * asks bytes for (one byte each: 1 when this visit removed it, 0 otherwise) and the next read
 * resumes where it stopped, so a pass over the table is spread over several seconds.
 * Only plain expiry: early drops, flushes and a server's removal still walk in one go. */

/* The kernel's context of a map element iterator (struct bpf_iter__bpf_map_elem; its layout is
 * fixed: the verifier checks these offsets against the kernel's BTF). */
struct bpf_iter_meta {
	void *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	void *map;
	void *key;
	void *value;
};

/* One connection of the walk: removed, with its accounting, if it has expired. The entry is
 * looked up again before it is claimed: the iterator's copy of the value is a buffer on which
 * the claim's atomic operation is not allowed, and it is rare (only expired entries pay). */
static __always_inline int sweep_step(__u8 af, const union conn_key *k, const struct xvs_conn *v, void *seq)
{
	struct xvs_cfg *cfg = config();
	__u32 zero = 0;
	__u32 *clock = bpf_map_lookup_elem(&xvs_walk_clock, &zero);
	__u8 out = 0;
	__u32 now = clock ? *clock : 0;
	if (clock && cfg && conn_expired(v, cfg, now)) {
		union conn_key key = *k;
		struct xvs_conn *c = conn_lookup(af, &key);
		if (c && conn_expired(c, cfg, now))
			out = drop_conn(af, &key, c);
	}
	bpf_seq_write(seq, &out, 1);
	return 0;
}

SEC("iter/bpf_map_elem")
int xvs_sweep_iter4(struct bpf_iter__bpf_map_elem *ctx)
{
	struct xvs_conn4_key *key = ctx->key;
	struct xvs_conn *v = ctx->value;
	if (!key || !v)
		return 0; /* the end of the walk */
	union conn_key k = {};
	k.k4 = *key;
	return sweep_step(XVS_AF_INET, &k, v, ctx->meta->seq);
}

SEC("iter/bpf_map_elem")
int xvs_sweep_iter6(struct bpf_iter__bpf_map_elem *ctx)
{
	struct xvs_conn6_key *key = ctx->key;
	struct xvs_conn *v = ctx->value;
	if (!key || !v)
		return 0;
	union conn_key k = {};
	k.k6 = *key;
	return sweep_step(XVS_AF_INET6, &k, v, ctx->meta->seq);
}

/* The sweep in steps where the kernel refuses iterator programs: xvsd reads a connection
 * table a slice of buckets at a time (BPF_MAP_LOOKUP_BATCH) and hands here the keys of the
 * connections whose copies looked idle about as long as their timeout (all of them in SCTP
 * states); each is looked up again, checked against the clock the sweep program wrote, claimed
 * and removed with its accounting, as the iterator does. Records with another af are left. */
SEC("xdp")
int xvs_sweep_keys(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct xvs_cfg *cfg = config();
	__u32 zero = 0;
	__u32 *clock = bpf_map_lookup_elem(&xvs_walk_clock, &zero);
	if (!cfg || !clock)
		return XDP_ABORTED;
	__u32 now = *clock;
	for (int i = 0; i < XVS_SWEEP_KEYS_MAX; i++) {
		struct xvs_sweep_key *rp = data;
		if ((void *)(rp + 1) > data_end)
			break;
		union conn_key key = {};
		__u8 af = rp->af, out = 0;
		if (af == XVS_AF_INET)
			__builtin_memcpy(&key.k4, rp->key, sizeof(key.k4));
		else if (af == XVS_AF_INET6)
			__builtin_memcpy(&key.k6, rp->key, sizeof(key.k6));
		if (af == XVS_AF_INET || af == XVS_AF_INET6) {
			struct xvs_conn *c = conn_lookup(af, &key);
			if (c && conn_expired(c, cfg, now))
				out = drop_conn(af, &key, c);
		}
		rp->result = out;
		data = rp + 1;
	}
	return XDP_PASS;
}

/* The key of an install record, for connections and templates alike. */
static __always_inline void install_key(const struct xvs_install_rec *r, union conn_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (r->af == XVS_AF_INET) {
		k->k4.caddr = r->caddr[0];
		k->k4.vaddr = r->vaddr[0];
		k->k4.cport = r->cport;
		k->k4.vport = r->vport;
		k->k4.proto = r->proto;
	} else {
		__builtin_memcpy(k->k6.caddr, r->caddr, 16);
		__builtin_memcpy(k->k6.vaddr, r->vaddr, 16);
		k->k6.cport = r->cport;
		k->k6.vport = r->vport;
		k->k6.proto = r->proto;
	}
}

/* A synchronised connection: created with the accounting a packet's would get (the server's
 * total, its active count, the reply entry, the template's count), or, when present already,
 * its state and timer refreshed with the active count moved as a transition would. Never marked
 * half-open: the master assured it before sending it. */
__attribute__((noinline)) int install_conn(const struct xvs_install_rec *r)
{
	if (!r)
		return XVS_INSTALLED_BAD;
	__u8 af = r->af;
	__u32 dest_id = r->dest_id;
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst || !dst->gen)
		return XVS_INSTALLED_NO_DEST;
	union conn_key k;
	install_key(r, &k);
	__u8 state = r->state;
	__u8 inactive = state_active(state) ? 0 : XVS_CONN_F_INACTIVE;
	__u32 now = now_ms();
	struct xvs_conn *c = conn_lookup(af, &k);
	if (c && c->dest_id == dest_id && c->gen == dst->gen) {
		__u32 *word = (__u32 *)&c->state;
		for (int attempt = 0; attempt < 4; attempt++) {
			__u32 old = *word;
			__u8 flags = (old >> 8) & 0xff;
			if (flags & XVS_CONN_F_DEAD)
				break;
			__u8 nflags = (flags & ~(XVS_CONN_F_INACTIVE | XVS_CONN_F_HALF)) | inactive;
			__u32 neww = (old & 0xffff0000) | state | ((__u32)nflags << 8);
			if (__sync_val_compare_and_swap(word, old, neww) != old)
				continue;
			if ((flags & XVS_CONN_F_INACTIVE) != inactive) {
				struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &dest_id);
				if (st)
					__sync_fetch_and_add(&st->active, inactive ? -1 : 1);
			}
			if (flags & XVS_CONN_F_HALF)
				half_add(-1);
			break;
		}
		c->seen = now;
		return XVS_INSTALLED_UPDATED;
	}
	if (c && conn_claim(c)) {
		/* Bound to another server here: this one's copy is older than the master's. */
		struct xvs_conn old = *c;
		if (!conn_delete(af, &k))
			conn_release(af, &k, &old);
	}
	struct xvs_conn nc = {
		.dest_id = dest_id,
		.seen = now,
		.svc_id = r->svc_id,
		.state = state,
		.flags = (r->flags & (XVS_CONN_F_NOOUTPUT | XVS_CONN_F_KEEPPORT)) | inactive,
		.method = dst->method,
		.gen = dst->gen,
	};
	/* The template's count first, given back if the connection is not made: the sweep may
	 * remove a template that controls nothing at any moment (the packet path does the same). */
	struct xvs_tpl *tpl = tpl_of_conn(af, &k, &nc);
	if (tpl) {
		nc.flags |= XVS_CONN_F_CTL;
		__sync_fetch_and_add(&tpl->n_control, 1);
	}
	union nat_key n;
	if (dst->method == XVS_FWD_MASQ) {
		nc.flags |= XVS_CONN_F_NAT;
		nat_key_of(af, &k, dst->addr, conn_rport(af, &k, &nc, dst), &n);
		if (nat_update(af, &n, &k)) {
			if (tpl)
				__sync_fetch_and_add(&tpl->n_control, -1);
			return XVS_INSTALLED_FULL;
		}
	}
	long err = conn_insert(af, &k, &nc);
	if (err) {
		if (tpl)
			__sync_fetch_and_add(&tpl->n_control, -1);
		/* -EEXIST: a packet made the same connection a moment ago; the reply entry (same
		 * key) is its own now. Otherwise remove ours, and only ours. */
		if (err == -17)
			return XVS_INSTALLED_UPDATED;
		union conn_key owner;
		if ((nc.flags & XVS_CONN_F_NAT) && nat_get(af, &n, &owner) && conn_key_eq(af, &owner, &k))
			nat_delete(af, &n);
		return XVS_INSTALLED_FULL;
	}
	count(XVS_CNT_CONN_NEW);
	dest_bind(dest_id, dst);
	if (!inactive) {
		struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &dest_id);
		if (st)
			__sync_fetch_and_add(&st->active, 1);
	}
	return XVS_INSTALLED_NEW;
}

/* A synchronised persistence template: the same server's refreshes its timer; another
 * server's is replaced (that server stops counting it). */
__attribute__((noinline)) int install_tpl(const struct xvs_install_rec *r)
{
	if (!r)
		return XVS_INSTALLED_BAD;
	__u8 af = r->af;
	__u32 dest_id = r->dest_id;
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst || !dst->gen)
		return XVS_INSTALLED_NO_DEST;
	union conn_key t;
	install_key(r, &t);
	__u32 now = now_ms();
	struct xvs_tpl *tpl = tpl_lookup(af, &t);
	if (tpl && tpl->dest_id == dest_id && tpl->gen == dst->gen) {
		tpl->since = now;
		tpl->timeout = r->timeout_s;
		if (r->state == XVS_TPL_S_ASSURED)
			tpl->state = XVS_TPL_S_ASSURED;
		return XVS_INSTALLED_UPDATED;
	}
	if (tpl) {
		struct xvs_tpl old = *tpl;
		if (!tpl_delete(af, &t)) {
			struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &old.dest_id);
			struct xvs_dest *od = bpf_map_lookup_elem(&xvs_dests, &old.dest_id);
			if (st && od && od->gen == old.gen)
				__sync_fetch_and_add(&st->persist, -1);
		}
	}
	struct xvs_tpl nt = {
		.dest_id = dest_id,
		.since = now,
		.timeout = r->timeout_s,
		.state = r->state == XVS_TPL_S_ASSURED ? XVS_TPL_S_ASSURED : XVS_TPL_S_NONE,
		.gen = dst->gen,
	};
	long err = tpl_insert(af, &t, &nt);
	if (err)
		return err == -17 ? XVS_INSTALLED_UPDATED : XVS_INSTALLED_FULL;
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &dest_id);
	if (st)
		__sync_fetch_and_add(&st->persist, 1);
	return XVS_INSTALLED_NEW;
}

/* Run by xvsd with BPF_PROG_TEST_RUN for connections and templates another director
 * synchronised to this one. Its "packet" is an array of struct xvs_install_rec; each record's
 * result is written back into it. */
SEC("xdp")
int xvs_install(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	for (int i = 0; i < XVS_INSTALL_MAX; i++) {
		struct xvs_install_rec *rp = data;
		if ((void *)(rp + 1) > data_end)
			break;
		struct xvs_install_rec r = *rp;
		int res = XVS_INSTALLED_BAD;
		if ((r.af == XVS_AF_INET || r.af == XVS_AF_INET6) && r.kind == XVS_INSTALL_CONN)
			res = install_conn(&r);
		else if ((r.af == XVS_AF_INET || r.af == XVS_AF_INET6) && r.kind == XVS_INSTALL_TPL)
			res = install_tpl(&r);
		rp->result = res;
		data = rp + 1;
	}
	return XDP_PASS;
}
