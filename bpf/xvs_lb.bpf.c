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

char LICENSE[] SEC("license") = "GPL";

struct bpf_map;

/* Takes a packet of an existing connection to its real server. */
static __always_inline int forward(struct xdp_md *ctx, struct pkt *p, union conn_key *k, struct xvs_conn *c,
				   const struct xvs_cfg *cfg, __u32 now, int is_new)
{
	__u32 dest_id = c->dest_id;
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst)
		return XDP_PASS;
	__u8 old_state = c->state;
	conn_transition(p->af, k, c, cfg, DIR_INPUT, p->tcp_flags);
	/* "Last seen" is rewritten at most once a second unless the state moved: a shared entry
	 * written on every packet would bounce its cache line between CPUs. */
	if (is_new || c->state != old_state || (__s32)(now - c->seen) >= 1000)
		c->seen = now;
	if (dst->flags & XVS_DEST_F_AVAILABLE)
		count_stats(dest_id, dst->svc_id, p->ip_len, 0, is_new);

	__u8 method = c->method;
	if (method == XVS_FWD_LOCAL)
		return XDP_PASS;
	if (dec_ttl(ctx, p)) {
		count_reason(XVS_R_TTL);
		return XDP_DROP;
	}

	struct bpf_fib_lookup fib;
	long rc;
	if (method == XVS_FWD_MASQ) {
		__u16 dport = dst->port ? dst->port : p->dport;
		if (rewrite_dst(ctx, p, dst->addr, dport)) {
			count_reason(XVS_R_BAD_PACKET);
			return XDP_DROP;
		}
		rc = fib_lookup(ctx, p, dst->addr, p->ip_len, &fib, 0);
		if (rc == BPF_FIB_LKUP_RET_SUCCESS)
			return xmit(ctx, p, &fib);
		/* The rewritten packet is routable: the kernel forwards it and resolves the
		 * neighbour, or delivers it to a real server on the director itself. */
		count_reason(rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XVS_R_NO_NEIGH : XVS_R_NO_ROUTE);
		return XDP_PASS;
	}
	if (method == XVS_FWD_ROUTE) {
		rc = fib_lookup(ctx, p, dst->addr, p->ip_len, &fib, 0);
		if (rc == BPF_FIB_LKUP_RET_SUCCESS)
			return xmit(ctx, p, &fib);
		if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
			return XDP_PASS; /* the real server is this host */
		/* The packet still carries the VIP: handing it to the kernel would deliver it here.
		 * xvsd keeps real servers' neighbour entries warm, so this is the first packet of a
		 * server nobody has talked to yet; the client retransmits. */
		count_reason(rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XVS_R_NO_NEIGH : XVS_R_NO_ROUTE);
		return XDP_DROP;
	}
	if (method == XVS_FWD_TUNNEL) {
		__u16 hdr = p->af == XVS_AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
		if (dst->af != p->af) {
			count_reason(XVS_R_UNSUPPORTED);
			return XDP_DROP;
		}
		rc = fib_lookup(ctx, p, dst->addr, p->ip_len + hdr, &fib, BPF_FIB_LOOKUP_SRC);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
			/* The tunnel lowers the path MTU: the client learns it from us (reference §5.3). */
			count_reason(XVS_R_FRAG_NEEDED);
			void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
			if (p->af == XVS_AF_INET) {
				struct iphdr *ip = data + sizeof(struct ethhdr);
				if ((void *)(ip + 1) > data_end || !(ip->frag_off & bpf_htons(IP_DF)))
					return XDP_DROP;
			}
			return icmp_reply(ctx, p, 1, fib.mtu_result - hdr);
		}
		if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
			count_reason(XVS_R_NO_ROUTE);
			return XDP_DROP;
		}
		if (encap(ctx, p, dst->addr, &fib)) {
			count_reason(XVS_R_BAD_PACKET);
			return XDP_DROP;
		}
		if (rc == BPF_FIB_LKUP_RET_SUCCESS)
			return xmit(ctx, p, &fib);
		count_reason(XVS_R_NO_NEIGH);
		return XDP_PASS; /* the outer packet is routable by the kernel */
	}
	return XDP_PASS;
}

/* A reply from a NAT real server: back to the client with the VIP as its source. */
static __always_inline int reply(struct xdp_md *ctx, struct pkt *p, union conn_key *fk, const struct xvs_cfg *cfg,
				 __u32 now)
{
	union conn_key k = {};
	if (p->af == XVS_AF_INET)
		k.k4 = fk->k4;
	else
		k.k6 = fk->k6;
	struct xvs_conn *c = conn_lookup(p->af, &k);
	if (!c)
		return XDP_PASS;
	__u32 dest_id = c->dest_id;
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst)
		return XDP_PASS;
	__u8 old_state = c->state;
	conn_transition(p->af, &k, c, cfg, DIR_OUTPUT, p->tcp_flags);
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
	if (dec_ttl(ctx, p)) {
		count_reason(XVS_R_TTL);
		return XDP_DROP;
	}
	if (rewrite_src(ctx, p, vaddr, vport)) {
		count_reason(XVS_R_BAD_PACKET);
		return XDP_DROP;
	}
	struct bpf_fib_lookup fib;
	long rc = fib_lookup(ctx, p, p->daddr, p->ip_len, &fib, 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return xmit(ctx, p, &fib);
	count_reason(rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XVS_R_NO_NEIGH : XVS_R_NO_ROUTE);
	return XDP_PASS;
}

/* Removes a connection that can no longer carry packets (expired, closed and reused, or its
 * server gone), with its accounting. */
static __always_inline void drop_conn(__u8 af, union conn_key *k, struct xvs_conn *c)
{
	conn_release(af, k, c);
	conn_delete(af, k);
}

/* The service a new connection to (daddr, dport) belongs to: exact match, then port 0. */
static __always_inline struct xvs_svc *find_service(const struct pkt *p)
{
	struct xvs_svc_key sk = {};
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
 * persistent (reference §3.6). On success *ctl says the connection is controlled by a template.
 * Returns: a dest id or XVS_NO_DEST; XVS_EMPTY when the template table refused an entry. */
static __always_inline __u32 pick(const struct xvs_svc *svc, struct pkt *p, union conn_key *k,
				  const struct xvs_cfg *cfg, __u32 now, int *ctl)
{
	*ctl = 0;
	if (!(svc->flags & XVS_SVC_F_PERSISTENT))
		return schedule(svc, p, cfg);
	union conn_key t;
	tpl_key(p->af, k, svc, svc->port, &t);
	struct xvs_tpl *tpl = tpl_lookup(p->af, &t);
	__u32 dest_id = XVS_NO_DEST;
	if (tpl && ((__s32)(now - tpl->expires) < 0 || (__s32)tpl->n_control > 0)) {
		__u32 id = tpl->dest_id;
		struct xvs_dest *d = bpf_map_lookup_elem(&xvs_dests, &id);
		if (d && (d->flags & XVS_DEST_F_AVAILABLE) &&
		    !((cfg->flags & XVS_CFG_EXPIRE_QUIESCENT) && d->weight == 0))
			dest_id = id;
	}
	if (dest_id == XVS_NO_DEST) {
		if (tpl) {
			/* The template is invalid: its server stops counting it now. */
			__u32 old = tpl->dest_id;
			struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &old);
			if (st)
				__sync_fetch_and_add(&st->persist, -1);
		}
		dest_id = schedule(svc, p, cfg);
		if (dest_id == XVS_NO_DEST)
			return dest_id;
		struct xvs_tpl nt = { .dest_id = dest_id, .expires = now + svc->timeout * 1000, .timeout = svc->timeout };
		if (tpl_update(p->af, &t, &nt))
			return XVS_EMPTY;
		struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &dest_id);
		if (st)
			__sync_fetch_and_add(&st->persist, 1);
		tpl = tpl_lookup(p->af, &t);
		if (!tpl)
			return XVS_EMPTY;
	}
	/* Each new connection restarts the persistence window. */
	__sync_fetch_and_add(&tpl->n_control, 1);
	tpl->expires = now + tpl->timeout * 1000;
	*ctl = 1;
	return dest_id;
}

static __always_inline int handle_l4(struct xdp_md *ctx, struct pkt *p, const struct xvs_cfg *cfg)
{
	union conn_key k;
	conn_key_in(p, &k);
	__u32 now = now_ms();
	int is_syn = p->proto == IPPROTO_TCP && (p->tcp_flags & XVS_TCP_SYN);

	struct xvs_conn *c = conn_lookup(p->af, &k);
	if (c) {
		__u32 id = c->dest_id;
		struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
		int reuse = cfg->flags & (XVS_CFG_REUSE_1 | XVS_CFG_REUSE_2);
		if (conn_expired(c, cfg, now)) {
			drop_conn(p->af, &k, c);
			c = NULL;
		} else if (reuse && is_syn && dst &&
			   (((cfg->flags & XVS_CFG_EXPIRE_NODEST) && dst->weight == 0) ||
			    (!(c->flags & XVS_CONN_F_CTL) &&
			     (c->state == 5 /* TIME_WAIT */ || c->state == XVS_TCP_S_CLOSE ||
			      ((cfg->flags & XVS_CFG_REUSE_2) && c->state == 4 /* FIN_WAIT */ &&
			       (c->flags & XVS_CONN_F_NOOUTPUT)))))) {
			/* A new connection on the 4-tuple of a closed one (conn_reuse_mode). */
			drop_conn(p->af, &k, c);
			c = NULL;
		} else if (!dst || !(dst->flags & XVS_DEST_F_AVAILABLE)) {
			if (!(cfg->flags & XVS_CFG_EXPIRE_NODEST)) {
				count_reason(XVS_R_DEST_GONE);
				return XDP_DROP;
			}
			drop_conn(p->af, &k, c);
			c = NULL;
		}
		if (c)
			return forward(ctx, p, &k, c, cfg, now, 0);
	}

	union nat_key n;
	nat_key_out(p, &n);
	union conn_key *fk = nat_lookup(p->af, &n);
	if (fk)
		return reply(ctx, p, fk, cfg, now);

	if (p->proto == IPPROTO_TCP &&
	    !((is_syn || (cfg->flags & XVS_CFG_SLOPPY_TCP)) && !(p->tcp_flags & XVS_TCP_RST)))
		return XDP_PASS;
	struct xvs_svc *svc = find_service(p);
	if (!svc)
		return XDP_PASS;
	if (p->sport == bpf_htons(20))
		return XDP_PASS; /* active FTP data is never scheduled from the client side */
	if (svc->port != p->dport && !(svc->flags & XVS_SVC_F_PERSISTENT)) {
		/* port 0 without persistence: "port zero only supported in persistent services" */
		count_reason(XVS_R_NO_DEST);
		return icmp_reply(ctx, p, 0, 0);
	}

	int ctl;
	__u32 dest_id = pick(svc, p, &k, cfg, now, &ctl);
	if (dest_id == XVS_EMPTY) {
		count_reason(XVS_R_TABLE_FULL);
		return XDP_DROP;
	}
	if (dest_id == XVS_NO_DEST) {
		count_reason(XVS_R_NO_DEST);
		if (bpf_ntohs(svc->port) == XVS_FTP_PORT && bpf_ntohs(p->dport) != XVS_FTP_PORT)
			return XDP_PASS;
		return icmp_reply(ctx, p, 0, 0);
	}
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &dest_id);
	if (!dst)
		return XDP_PASS;

	struct xvs_conn nc = {
		.dest_id = dest_id,
		.seen = now,
		.svc_id = svc->id,
		.state = p->proto == IPPROTO_UDP ? XVS_UDP_S : XVS_TCP_S_NONE,
		.flags = XVS_CONN_F_INACTIVE,
		.method = dst->method,
	};
	if (ctl)
		nc.flags |= XVS_CONN_F_CTL;
	if (dst->method != XVS_FWD_MASQ)
		nc.flags |= XVS_CONN_F_NOOUTPUT;

	if ((svc->flags & XVS_SVC_F_ONEPACKET) && p->proto == IPPROTO_UDP) {
		/* One-packet scheduling: nothing is remembered; the template, if any, is. */
		if (ctl) {
			struct xvs_tpl *t = tpl_lookup(p->af, &k); /* never matches: cport is set */
			(void)t;
			union conn_key tk;
			tpl_key(p->af, &k, svc, svc->port, &tk);
			t = tpl_lookup(p->af, &tk);
			if (t && (__s32)t->n_control > 0)
				__sync_fetch_and_add(&t->n_control, -1);
		}
		return forward(ctx, p, &k, &nc, cfg, now, 1);
	}

	__u16 rport = dst->port ? dst->port : p->dport;
	if (dst->method == XVS_FWD_MASQ) {
		union nat_key rn;
		nat_key_of(p->af, &k, dst->addr, rport, &rn);
		if (nat_update(p->af, &rn, &k)) {
			count_reason(XVS_R_TABLE_FULL);
			return XDP_DROP;
		}
		nc.flags |= XVS_CONN_F_NAT;
	}
	if (conn_update(p->af, &k, &nc)) {
		count_reason(XVS_R_CONN_FULL);
		return XDP_DROP;
	}
	count(XVS_CNT_CONN_NEW);
	dest_bind(dest_id, dst);
	c = conn_lookup(p->af, &k);
	if (!c)
		return XDP_PASS;
	return forward(ctx, p, &k, c, cfg, now, 1);
}

SEC("xdp")
int xvs_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct pkt p = {};
	int r = parse_packet(data, data_end, &p);
	p.ifindex = ctx->ingress_ifindex;
	switch (r) {
	case PARSE_OK:
		break;
	case PARSE_ICMP:
		return handle_icmp(ctx, &p);
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
	return handle_l4(ctx, &p, cfg);
}

/* ---- the sweep ---- */

struct sweep_ctx {
	__u32 now;
	__u32 flags;
	__u64 seen;
	__u64 expired;
	__u64 tpl_seen;
	__u64 tpl_expired;
	__u64 lblc_expired;
};

static __always_inline long sweep_one(__u8 af, union conn_key *k, struct xvs_conn *c, struct sweep_ctx *sc)
{
	struct xvs_cfg *cfg = config();
	if (!cfg)
		return 1;
	sc->seen++;
	if ((sc->flags & XVS_SWEEP_ALL) || conn_expired(c, cfg, sc->now)) {
		drop_conn(af, k, c);
		sc->expired++;
		return 0;
	}
	if (sc->flags & XVS_SWEEP_RECOUNT) {
		__u32 id = c->dest_id;
		struct xvs_recount *r = bpf_map_lookup_elem(&xvs_recount, &id);
		if (r) {
			r->total++;
			if (!(c->flags & XVS_CONN_F_INACTIVE))
				r->active++;
		}
		if (c->flags & XVS_CONN_F_CTL) {
			struct xvs_tpl *t = tpl_of_conn(af, k, c);
			if (t)
				__sync_fetch_and_add(&t->n_control, 1);
		}
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
 * then on; expired and idle → removed (ip_vs_conn_expire). */
static __always_inline int sweep_tpl(struct xvs_tpl *t, struct sweep_ctx *sc)
{
	sc->tpl_seen++;
	if (sc->flags & XVS_SWEEP_RECOUNT) {
		/* Recount: the connection pass counted n_control from zero; count the template. */
		__u32 id = t->dest_id;
		struct xvs_recount *r = bpf_map_lookup_elem(&xvs_recount, &id);
		if (r)
			r->persist++;
		return 0;
	}
	if (!(sc->flags & XVS_SWEEP_ALL) && (__s32)(sc->now - t->expires) < 0)
		return 0;
	if (!(sc->flags & XVS_SWEEP_ALL) && (__s32)t->n_control > 0) {
		t->timeout = XVS_TPL_RETRY_S;
		t->expires = sc->now + XVS_TPL_RETRY_S * 1000;
		return 0;
	}
	__u32 id = t->dest_id;
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
	if (st)
		__sync_fetch_and_add(&st->persist, -1);
	sc->tpl_expired++;
	return 1;
}

static long sweep_tpl4(struct bpf_map *map, struct xvs_conn4_key *key, struct xvs_tpl *t, struct sweep_ctx *sc)
{
	if (sweep_tpl(t, sc))
		bpf_map_delete_elem(map, key);
	return 0;
}

static long sweep_tpl6(struct bpf_map *map, struct xvs_conn6_key *key, struct xvs_tpl *t, struct sweep_ctx *sc)
{
	if (sweep_tpl(t, sc))
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

/* Recount, first pass: zero the scratch counts and the templates' n_control. */
static long recount_zero_cb(__u32 i, void *data)
{
	struct xvs_recount *r = bpf_map_lookup_elem(&xvs_recount, &i);
	if (!r)
		return 1;
	r->active = r->total = r->persist = 0;
	return 0;
}

static long tpl_zero4(struct bpf_map *map, struct xvs_conn4_key *key, struct xvs_tpl *t, void *data)
{
	t->n_control = 0;
	return 0;
}

static long tpl_zero6(struct bpf_map *map, struct xvs_conn6_key *key, struct xvs_tpl *t, void *data)
{
	t->n_control = 0;
	return 0;
}

/* Recount, last pass: the counters become what the tables hold. */
static long recount_apply_cb(__u32 i, void *data)
{
	struct xvs_recount *r = bpf_map_lookup_elem(&xvs_recount, &i);
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &i);
	if (!r || !st)
		return 1;
	st->active = r->active;
	st->total = r->total;
	st->persist = r->persist;
	return 0;
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
	struct sweep_ctx sc = { .now = now_ms(), .flags = args->flags };
	if (sc.flags & XVS_SWEEP_RECOUNT) {
		/* Counters drift only when the LRU tables evict entries silently; xvsd asks for a
		 * recount when the sweep sees fewer entries than were inserted and not removed. */
		bpf_loop(1 << 20, recount_zero_cb, NULL, 0);
		bpf_for_each_map_elem(&xvs_tpl4, tpl_zero4, NULL, 0);
		bpf_for_each_map_elem(&xvs_tpl6, tpl_zero6, NULL, 0);
	}
	bpf_for_each_map_elem(&xvs_conn4, sweep_conn4, &sc, 0);
	bpf_for_each_map_elem(&xvs_conn6, sweep_conn6, &sc, 0);
	bpf_for_each_map_elem(&xvs_tpl4, sweep_tpl4, &sc, 0);
	bpf_for_each_map_elem(&xvs_tpl6, sweep_tpl6, &sc, 0);
	if (sc.flags & (XVS_SWEEP_LBLC_FULL | XVS_SWEEP_ALL))
		bpf_for_each_map_elem(&xvs_lblc, sweep_lblc, &sc, 0);
	if (sc.flags & XVS_SWEEP_RECOUNT)
		bpf_loop(1 << 20, recount_apply_cb, NULL, 0);
	out->seen = sc.seen;
	out->expired = sc.expired;
	out->tpl_seen = sc.tpl_seen;
	out->tpl_expired = sc.tpl_expired;
	out->lblc_expired = sc.lblc_expired;
	count(XVS_CNT_SWEEPS);
	return XDP_PASS;
}
