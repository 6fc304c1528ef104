/* This file contains the schedulers: the dataplane half of crates/xvs-core/src/sched. Hashing
 * schedulers index tables the core computed (sh, dh, mh); the others scan the service's list
 * of real servers with the counters the dataplane keeps, in the kernel's order and with the
 * kernel's arithmetic, so that on one CPU every choice equals the core's (tests/differential.rs).
 *
 * Scans use bpf_loop so that a service may hold thousands of servers without the verifier
 * unrolling anything. Shared cursors (rr, wrr) advance by compare-and-swap.
 */
#ifndef XVS_SCHED_H
#define XVS_SCHED_H

#include "common.h"

#define XVS_NO_DEST 0xffffffffu

/* Loads list position i of the list at `off` (see load_dest). */
static __always_inline int load_at(__u32 off, __u32 i, struct dview *d)
{
	__u32 key = off + i;
	struct xvs_dest_ref *ref = bpf_map_lookup_elem(&xvs_dest_lists, &key);
	if (!ref)
		return -1;
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &ref->id);
	if (!st)
		return -1;
	d->id = ref->id;
	d->weight = ref->weight;
	d->active = st->active;
	d->total = st->total;
	d->overload = st->overload;
	return 0;
}

/* ---- least-connection family: lc, wlc, sed, nq, fo, ovf (and wlc inside lblc/lblcr) ---- */

struct least_ctx {
	__u32 off;
	__u32 cnt;
	__u32 kind;
	__u32 exclude; /* a dest id the scan skips (the runner-up search of a trace), or XVS_NO_DEST */
	__u32 found;
	__u32 best; /* dest id */
	__s32 bw;   /* best's weight */
	__s64 boh;  /* best's overhead */
};

/* The schedulers that pick by the fewest connections over one scan of the list (least_cb). */
static __always_inline int sched_is_least(__u8 kind)
{
	switch (kind) {
	case XVS_SCHED_LC:
	case XVS_SCHED_WLC:
	case XVS_SCHED_SED:
	case XVS_SCHED_NQ:
	case XVS_SCHED_FO:
	case XVS_SCHED_OVF:
		return 1;
	}
	return 0;
}

static long least_cb(__u32 i, void *data)
{
	struct least_ctx *c = data;
	struct dview d;
	__s64 doh;

	if (i >= c->cnt || load_at(c->off, i, &d))
		return 1;
	if (d.id == c->exclude)
		return 0;
	switch (c->kind) {
	case XVS_SCHED_LC:
		if (d.overload || d.weight == 0)
			return 0;
		doh = overhead(&d);
		if (!c->found || doh < c->boh)
			goto take;
		return 0;
	case XVS_SCHED_SED:
	case XVS_SCHED_WLC:
		if (d.overload)
			return 0;
		doh = c->kind == XVS_SCHED_SED ? (__s32)(d.active + 1) : overhead(&d);
		if (!c->found) {
			if (d.weight > 0)
				goto take;
			return 0;
		}
		/* overhead/weight compared without dividing: h1*w2 > h2*w1 */
		if (c->boh * d.weight > doh * c->bw)
			goto take;
		return 0;
	case XVS_SCHED_NQ:
		if (d.overload || d.weight == 0)
			return 0;
		doh = (__s32)(d.active + 1);
		if (d.active == 0) {
			c->found = 1;
			c->best = d.id;
			return 1; /* an idle server is taken at once */
		}
		if (!c->found || c->boh * d.weight > doh * c->bw)
			goto take;
		return 0;
	case XVS_SCHED_FO:
		if (dest_usable(&d) && (!c->found || d.weight > c->bw))
			goto take_w;
		return 0;
	case XVS_SCHED_OVF:
		if (d.overload || d.active > d.weight || d.weight == 0)
			return 0;
		if (!c->found || d.weight > c->bw)
			goto take_w;
		return 0;
	}
	return 1;
take:
	c->boh = doh;
take_w:
	c->found = 1;
	c->best = d.id;
	c->bw = d.weight;
	return 0;
}

static __always_inline __u32 sched_least(const struct xvs_svc *svc, __u32 kind)
{
	struct least_ctx c = { .off = svc->dests_off, .cnt = svc->dests_cnt, .kind = kind, .exclude = XVS_NO_DEST };
	bpf_loop(XVS_SCAN_MAX, least_cb, &c, 0);
	return c.found ? c.best : XVS_NO_DEST;
}

/* For a trace: the load of the server `won` that schedule() chose, and for the
 * least-connection family the server it would have chosen without `won` (the runner-up), so
 * the trace can say why ("wlc: rs2 overhead 3/1 < rs1 7/3"). Only traced packets pay for it. */
__attribute__((noinline)) int sched_explain(const struct xvs_svc *svc, __u32 won, struct xvs_trace_ev *t)
{
	if (!svc || !t)
		return 0;
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &won);
	struct xvs_dest *d = bpf_map_lookup_elem(&xvs_dests, &won);
	if (st && d) {
		t->win_weight = d->weight;
		t->win_active = st->active;
		t->win_total = st->total;
		t->flags |= XVS_TR_F_WIN;
	}
	if (!sched_is_least(svc->sched))
		return 0;
	struct least_ctx c = { .off = svc->dests_off, .cnt = svc->dests_cnt, .kind = svc->sched, .exclude = won };
	bpf_loop(XVS_SCAN_MAX, least_cb, &c, 0);
	if (!c.found)
		return 0;
	__u32 alt = c.best;
	st = bpf_map_lookup_elem(&xvs_dest_state, &alt);
	d = bpf_map_lookup_elem(&xvs_dests, &alt);
	if (st && d) {
		t->alt_id = alt;
		t->alt_weight = d->weight;
		t->alt_active = st->active;
		t->alt_total = st->total;
		t->flags |= XVS_TR_F_ALT;
	}
	return 0;
}

/* ---- rr ---- */

struct find_ctx {
	__u32 off;
	__u32 cnt;
	__u32 want; /* dest id */
	__u32 pos;  /* result: position, or cnt when absent */
};

static long find_cb(__u32 i, void *data)
{
	struct find_ctx *c = data;
	if (i >= c->cnt)
		return 1;
	__u32 key = c->off + i;
	struct xvs_dest_ref *ref = bpf_map_lookup_elem(&xvs_dest_lists, &key);
	if (!ref)
		return 1;
	if (ref->id == c->want) {
		c->pos = i;
		return 1;
	}
	return 0;
}

/* The list position of dest `id`, or cnt when it is not in the list. */
static __always_inline __u32 find_pos(const struct xvs_svc *svc, __u32 id)
{
	struct find_ctx c = { .off = svc->dests_off, .cnt = svc->dests_cnt, .want = id, .pos = svc->dests_cnt };
	bpf_loop(XVS_SCAN_MAX, find_cb, &c, 0);
	return c.pos;
}

struct rr_ctx {
	__u32 off;
	__u32 cnt;
	__u32 start;
	__u32 found;
	__u32 best;
	__u32 best_pos;
};

static long rr_cb(__u32 i, void *data)
{
	struct rr_ctx *c = data;
	struct dview d;
	if (i >= c->cnt || c->cnt == 0)
		return 1;
	__u32 pos = (c->start + i) % c->cnt;
	if (load_at(c->off, pos, &d))
		return 1;
	if (dest_usable(&d)) {
		c->found = 1;
		c->best = d.id;
		c->best_pos = pos;
		return 1;
	}
	return 0;
}

/* ip_vs_rr_schedule: the first usable server after the cursor, circularly, the cursor's own
 * server last. The cursor is a server id, so list republication cannot misplace it. */
static __always_inline __u32 sched_rr(const struct xvs_svc *svc, struct xvs_sched_state *st)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		__u32 cur = st->rr_cursor;
		struct rr_ctx c = { .off = svc->dests_off, .cnt = svc->dests_cnt };
		if (cur) {
			/* The cursor's position: the hint when that position still holds the cursor's
			 * server (O(1)), else found by walking the list (it was republished). */
			__u32 hint = st->rr_pos, pos = svc->dests_cnt;
			struct dview h;
			if (hint && hint <= svc->dests_cnt && !load_at(svc->dests_off, hint - 1, &h) && h.id == cur - 1)
				pos = hint - 1;
			else
				pos = find_pos(svc, cur - 1);
			c.start = pos < svc->dests_cnt ? pos + 1 : 0;
		}
		bpf_loop(XVS_SCAN_MAX, rr_cb, &c, 0);
		if (!c.found)
			return XVS_NO_DEST;
		/* Another CPU moved the cursor meanwhile: start again from where it left it, and
		 * after a few tries take this pick anyway rather than refuse the connection. */
		if (__sync_val_compare_and_swap(&st->rr_cursor, cur, c.best + 1) == cur || attempt == 3) {
			st->rr_pos = c.best_pos + 1;
			return c.best;
		}
	}
	return XVS_NO_DEST;
}

/* ---- wrr ---- */

struct wrr_ctx {
	__u32 off;
	__u32 cnt;
	__u32 from;   /* first position of this pass */
	__s32 level;  /* weight a server needs in this pass */
	__s32 maxu;   /* max weight of the usable servers (first loop) */
	__u32 found;
	__u32 best;
};

static long wrr_max_cb(__u32 i, void *data)
{
	struct wrr_ctx *c = data;
	struct dview d;
	if (i >= c->cnt || load_at(c->off, i, &d))
		return 1;
	if (!d.overload && d.weight > c->maxu)
		c->maxu = d.weight;
	return 0;
}

static long wrr_pass_cb(__u32 i, void *data)
{
	struct wrr_ctx *c = data;
	struct dview d;
	__u32 pos = c->from + i;
	if (pos >= c->cnt || load_at(c->off, pos, &d))
		return 1;
	if (!d.overload && d.weight >= c->level) {
		c->found = 1;
		c->best = d.id;
		return 1;
	}
	return 0;
}

/* ip_vs_wrr_schedule, without walking weight levels that no usable server reaches: a pass at a
 * level above the largest usable weight finds nothing, so we jump to the first level on the
 * grid mw, mw-di, ... that one reaches. The first match in scan order — hence the pick — is
 * the kernel's; when nothing is usable the cursor and weight end where the kernel leaves them.
 * The core keeps the literal kernel loop; the differential tests compare the two. */
static __always_inline __u32 sched_wrr(const struct xvs_svc *svc, struct xvs_sched_state *st)
{
	__s32 mw = svc->wrr_mw, di = svc->wrr_di;
	if (mw <= 0 || di <= 0)
		return XVS_NO_DEST;
	for (int attempt = 0; attempt < 4; attempt++) {
		__u64 old = st->wrr;
		__u32 cl = old >> 32; /* dest id + 1, 0 = head */
		__s32 cw = (__s32)(__u32)old;
		struct wrr_ctx c = { .off = svc->dests_off, .cnt = svc->dests_cnt };
		__u32 last_pos = cl ? find_pos(svc, cl - 1) : svc->dests_cnt;
		int at_head = last_pos >= svc->dests_cnt;
		__u64 next;

		bpf_loop(XVS_SCAN_MAX, wrr_max_cb, &c, 0);
		if (c.maxu <= 0) {
			/* All overloaded or quiesced: the kernel ends on the last pass. */
			if (cw <= di && !at_head)
				next = (__u64)cl << 32 | ((((__u32)mw - 1) % (__u32)di) + 1);
			else
				next = (__u64)mw;
			__sync_val_compare_and_swap(&st->wrr, old, next);
			return XVS_NO_DEST;
		}
		if (cw <= 0 || cw > mw)
			cw = mw;
		/* The rest of the current pass, after the cursor. */
		c.from = at_head ? 0 : last_pos + 1;
		c.level = cw;
		bpf_loop(XVS_SCAN_MAX, wrr_pass_cb, &c, 0);
		if (!c.found) {
			/* Next level, wrapping, then down to one the best usable server reaches. */
			cw -= di;
			if (cw <= 0)
				cw = mw;
			if (cw > c.maxu) {
				__s32 steps = (__s32)(((__u32)(cw - c.maxu) + (__u32)di - 1) / (__u32)di);
				cw -= steps * di;
				if (cw <= 0)
					cw = (__s32)(((__u32)mw - 1) % (__u32)di) + 1;
			}
			c.from = 0;
			c.level = cw;
			bpf_loop(XVS_SCAN_MAX, wrr_pass_cb, &c, 0);
			if (!c.found)
				return XVS_NO_DEST;
		}
		next = (__u64)(c.best + 1) << 32 | (__u32)cw;
		if (__sync_val_compare_and_swap(&st->wrr, old, next) == old || attempt == 3)
			return c.best;
	}
	return XVS_NO_DEST;
}

/* ---- twos ---- */

struct twos_ctx {
	__u32 off;
	__u32 cnt;
	__s32 total;
	__u32 last;
	__s32 r1, r2;
	__s32 w1, w2;
	__s32 oh1, oh2;
	__u32 c1, c2;
	__u32 has2;
};

static long twos_sum_cb(__u32 i, void *data)
{
	struct twos_ctx *c = data;
	struct dview d;
	if (i >= c->cnt || load_at(c->off, i, &d))
		return 1;
	if (dest_usable(&d)) {
		c->total += d.weight;
		c->last = d.id;
	}
	return 0;
}

static long twos_pick_cb(__u32 i, void *data)
{
	struct twos_ctx *c = data;
	struct dview d;
	if (i >= c->cnt || load_at(c->off, i, &d))
		return 1;
	if (!dest_usable(&d))
		return 0;
	c->r1 -= d.weight;
	c->r2 -= d.weight;
	if (c->r1 <= 0 && c->w1 == -1) {
		c->c1 = d.id;
		c->w1 = d.weight;
		c->oh1 = overhead(&d);
	}
	if (c->r2 <= 0 && c->w2 == -1) {
		c->c2 = d.id;
		c->has2 = 1;
		c->w2 = d.weight;
		c->oh2 = overhead(&d);
	}
	return c->w1 != -1 && c->w2 != -1;
}

/* ip_vs_twos_schedule: two weighted random draws, the less loaded per weight wins. */
static __always_inline __u32 sched_twos(const struct xvs_svc *svc)
{
	struct twos_ctx c = { .off = svc->dests_off, .cnt = svc->dests_cnt, .last = XVS_NO_DEST, .w1 = -1, .w2 = -1 };
	bpf_loop(XVS_SCAN_MAX, twos_sum_cb, &c, 0);
	if (c.last == XVS_NO_DEST)
		return XVS_NO_DEST;
	__u32 bound = (__u32)c.total + 1;
	c.c1 = c.last;
	c.r1 = bpf_get_prandom_u32() % bound;
	c.r2 = bpf_get_prandom_u32() % bound;
	bpf_loop(XVS_SCAN_MAX, twos_pick_cb, &c, 0);
	if (c.has2 && (__s32)((__u32)c.w2 * (__u32)c.oh1) > (__s32)((__u32)c.w1 * (__u32)c.oh2))
		return c.c2;
	return c.c1;
}

/* ---- sh, dh, mh: tables from the core ---- */

/* The server in bucket `slot` of the service's table, if it may take a connection.
 * Returns: the dest id; XVS_NO_DEST for an unusable server; XVS_NO_DEST - 1 for an empty
 * bucket (which ends a fallback probe). */
#define XVS_EMPTY (XVS_NO_DEST - 1)
static __always_inline __u32 bucket_dest(__u32 table_off, __u32 dests_off, __u32 slot)
{
	__u32 key = table_off + slot;
	__u32 *pos = bpf_map_lookup_elem(&xvs_sched_tables, &key);
	struct dview d;
	if (!pos || *pos == XVS_NO_DEST || load_at(dests_off, *pos, &d))
		return XVS_EMPTY;
	return dest_usable(&d) ? d.id : XVS_NO_DEST;
}

/* ip_vs_sh_hashkey. */
static __always_inline __u32 sh_hash(__u32 fold, __u16 port, __u32 offset)
{
	return (offset + hash_32((__u32)port + fold, 8)) & 255;
}

struct probe_ctx {
	__u32 table_off;
	__u32 dests_off;
	__u32 fold;
	__u16 port;
	__u32 ihash;
	__u32 result;
};

static long sh_probe_cb(__u32 off, void *data)
{
	struct probe_ctx *c = data;
	__u32 roff = (off + c->ihash) % 256;
	__u32 r = bucket_dest(c->table_off, c->dests_off, sh_hash(c->fold, c->port, roff));
	if (r == XVS_NO_DEST)
		return 0;
	c->result = r == XVS_EMPTY ? XVS_NO_DEST : r;
	return 1;
}

static __always_inline __u32 sched_sh(const struct xvs_svc *svc, const struct pkt *p)
{
	__u16 port = (svc->flags & XVS_SVC_F_SCHED2) ? bpf_ntohs(p->sport) : 0;
	__u32 fold = addr_fold(p->saddr, p->af);
	__u32 ihash = sh_hash(fold, port, 0);
	__u32 r = bucket_dest(svc->table_off, svc->dests_off, ihash);
	if (r != XVS_NO_DEST)
		return r == XVS_EMPTY ? XVS_NO_DEST : r;
	if (!(svc->flags & XVS_SVC_F_SCHED1))
		return XVS_NO_DEST;
	/* The kernel adds the hash a second time: probe k visits (k + 2*ihash) mod 256. */
	struct probe_ctx c = { .table_off = svc->table_off, .dests_off = svc->dests_off, .fold = fold, .port = port, .ihash = ihash, .result = XVS_NO_DEST };
	bpf_loop(256, sh_probe_cb, &c, 0);
	return c.result;
}

static __always_inline __u32 sched_dh(const struct xvs_svc *svc, const struct pkt *p)
{
	__u32 r = bucket_dest(svc->table_off, svc->dests_off, hash_32(addr_fold(p->daddr, p->af), 8));
	return r == XVS_EMPTY ? XVS_NO_DEST : r;
}

/* SipHash-1-3 of one little-endian u32 under (k0, k1), truncated: the kernel's hsiphash on
 * 64-bit machines, as ip_vs_mh.c uses it. */
#define XVS_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define XVS_SIPROUND                                                                               \
	do {                                                                                       \
		v0 += v1; v1 = XVS_ROTL(v1, 13); v1 ^= v0; v0 = XVS_ROTL(v0, 32);                  \
		v2 += v3; v3 = XVS_ROTL(v3, 16); v3 ^= v2;                                         \
		v0 += v3; v3 = XVS_ROTL(v3, 21); v3 ^= v0;                                         \
		v2 += v1; v1 = XVS_ROTL(v1, 17); v1 ^= v2; v2 = XVS_ROTL(v2, 32);                  \
	} while (0)

static __always_inline __u32 siphash13_u32(__u32 v, __u64 k0, __u64 k1)
{
	__u64 v0 = 0x736f6d6570736575ULL ^ k0;
	__u64 v1 = 0x646f72616e646f6dULL ^ k1;
	__u64 v2 = 0x6c7967656e657261ULL ^ k0;
	__u64 v3 = 0x7465646279746573ULL ^ k1;
	__u64 b = ((__u64)4 << 56) | v;
	v3 ^= b;
	XVS_SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	XVS_SIPROUND;
	XVS_SIPROUND;
	XVS_SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

#define XVS_MH_SIZE 4093
#define XVS_MH_K1 2654435761ULL

static __always_inline __u32 mh_hash(__u32 fold, __u16 port, __u32 offset)
{
	return siphash13_u32(offset + port + fold, XVS_MH_K1, XVS_MH_K1) % XVS_MH_SIZE;
}

static long mh_probe_cb(__u32 off, void *data)
{
	struct probe_ctx *c = data;
	__u32 roff = (off + c->ihash) % XVS_MH_SIZE;
	__u32 r = bucket_dest(c->table_off, c->dests_off, mh_hash(c->fold, c->port, roff));
	if (r == XVS_NO_DEST)
		return 0;
	c->result = r == XVS_EMPTY ? XVS_NO_DEST : r;
	return 1;
}

static __always_inline __u32 sched_mh(const struct xvs_svc *svc, const struct pkt *p)
{
	__u16 port = (svc->flags & XVS_SVC_F_SCHED2) ? bpf_ntohs(p->sport) : 0;
	__u32 fold = addr_fold(p->saddr, p->af);
	__u32 ihash = mh_hash(fold, port, 0);
	__u32 r = bucket_dest(svc->table_off, svc->dests_off, ihash);
	if (r != XVS_NO_DEST)
		return r == XVS_EMPTY ? XVS_NO_DEST : r;
	if (!(svc->flags & XVS_SVC_F_SCHED1))
		return XVS_NO_DEST;
	struct probe_ctx c = { .table_off = svc->table_off, .dests_off = svc->dests_off, .fold = fold, .port = port, .ihash = ihash, .result = XVS_NO_DEST };
	bpf_loop(XVS_MH_SIZE, mh_probe_cb, &c, 0);
	return c.result;
}

/* ---- lblc, lblcr ---- */

struct ovl_ctx {
	__u32 off;
	__u32 cnt;
	__u32 any;
};

static long half_cb(__u32 i, void *data)
{
	struct ovl_ctx *c = data;
	struct dview d;
	if (i >= c->cnt || load_at(c->off, i, &d))
		return 1;
	if (d.active * 2 < d.weight) {
		c->any = 1;
		return 1;
	}
	return 0;
}

/* lblc's "overloaded": more active connections than its weight while some server of the
 * service is below half its weight. */
static __always_inline int lblc_overloaded(const struct xvs_svc *svc, __u32 id)
{
	struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
	if (!st || !dst)
		return 1;
	if (st->active <= dst->weight)
		return 0;
	struct ovl_ctx c = { .off = svc->dests_off, .cnt = svc->dests_cnt };
	bpf_loop(XVS_SCAN_MAX, half_cb, &c, 0);
	return c.any;
}

/* A server an lblc entry may keep using: in the service, weight > 0, not lblc-overloaded. */
static __always_inline int lblc_keeps(const struct xvs_svc *svc, __u32 id)
{
	struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
	if (!dst || !(dst->flags & XVS_DEST_F_AVAILABLE) || dst->svc_id != svc->id || dst->weight <= 0)
		return 0;
	return !lblc_overloaded(svc, id);
}

static __always_inline __u32 sched_lblc(const struct xvs_svc *svc, const struct pkt *p)
{
	struct xvs_lblc_key key = { .svc_id = svc->id };
	__builtin_memcpy(key.addr, p->daddr, 16);
	struct xvs_lblc *e = bpf_map_lookup_elem(&xvs_lblc, &key);
	__u32 now = now_ms() / 1000;
	if (e) {
		e->lastuse = now;
		if (e->dest[0] && lblc_keeps(svc, e->dest[0] - 1))
			return e->dest[0] - 1;
	}
	__u32 d = sched_least(svc, XVS_SCHED_WLC);
	if (d == XVS_NO_DEST)
		return d;
	struct xvs_lblc v = { .dest = { d + 1 }, .lastuse = now, .lastmod = now };
	bpf_map_update_elem(&xvs_lblc, &key, &v, BPF_ANY);
	return d;
}

/* The weighted least / most loaded member of an lblcr set (ip_vs_dest_set_min/max). */
static __always_inline __u32 lblcr_set_pick(const struct xvs_lblc *e, int most, __u32 svc_id)
{
	__u32 best = XVS_NO_DEST;
	__s64 boh = 0;
	__s32 bw = 0;
#pragma unroll
	for (int i = 0; i < XVS_LBLCR_SET; i++) {
		__u32 id = e->dest[i];
		if (!id)
			continue;
		id -= 1;
		struct xvs_dest_state *st = bpf_map_lookup_elem(&xvs_dest_state, &id);
		struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
		if (!st || !dst)
			continue;
		struct dview d = { .id = id, .weight = dst->weight, .active = st->active, .total = st->total };
		__s64 doh = overhead(&d);
		/* A slot reused by another service's server is not ours any more. */
		int avail = (dst->flags & XVS_DEST_F_AVAILABLE) && dst->svc_id == svc_id;
		if (most) {
			if (best == XVS_NO_DEST) {
				if (d.weight > 0)
					goto take;
			} else if (boh * d.weight < doh * bw && d.weight > 0) {
				goto take;
			}
			continue;
		}
		if (st->overload)
			continue;
		if (best == XVS_NO_DEST) {
			if (d.weight > 0 && avail)
				goto take;
		} else if (boh * d.weight > doh * bw && avail) {
			goto take;
		}
		continue;
take:
		best = id;
		boh = doh;
		bw = d.weight;
	}
	return best;
}

static __always_inline __u32 sched_lblcr(const struct xvs_svc *svc, const struct pkt *p, const struct xvs_cfg *cfg)
{
	struct xvs_lblc_key key = { .svc_id = svc->id };
	__builtin_memcpy(key.addr, p->daddr, 16);
	struct xvs_lblc *e = bpf_map_lookup_elem(&xvs_lblc, &key);
	__u32 now = now_ms() / 1000;
	if (!e) {
		__u32 d = sched_least(svc, XVS_SCHED_WLC);
		if (d == XVS_NO_DEST)
			return d;
		struct xvs_lblc v = { .dest = { d + 1 }, .lastuse = now, .lastmod = now };
		bpf_map_update_elem(&xvs_lblc, &key, &v, BPF_ANY);
		return d;
	}
	e->lastuse = now;
	__u32 d = lblcr_set_pick(e, 0, svc->id);
	int size = 0;
#pragma unroll
	for (int i = 0; i < XVS_LBLCR_SET; i++)
		size += e->dest[i] != 0;
	if (size > 1 && (__s32)(now - e->lastmod) > (__s32)cfg->lblcr_expire_s) {
		__u32 m = lblcr_set_pick(e, 1, svc->id);
		if (m != XVS_NO_DEST) {
#pragma unroll
			for (int i = 0; i < XVS_LBLCR_SET; i++)
				if (e->dest[i] == m + 1)
					e->dest[i] = 0;
			e->lastmod = now; /* only when a member actually left */
		}
	}
	if (d != XVS_NO_DEST && !lblc_overloaded(svc, d))
		return d;
	d = sched_least(svc, XVS_SCHED_WLC);
	if (d == XVS_NO_DEST)
		return d;
#pragma unroll
	for (int i = 0; i < XVS_LBLCR_SET; i++)
		if (e->dest[i] == d + 1)
			return d;
	/* Insert at the head (newest first, as the kernel's list): shift towards the first free
	 * slot, or drop the oldest member when the set is full. */
	int hole = XVS_LBLCR_SET - 1;
#pragma unroll
	for (int i = XVS_LBLCR_SET - 1; i >= 0; i--)
		if (!e->dest[i])
			hole = i;
#pragma unroll
	for (int i = XVS_LBLCR_SET - 1; i > 0; i--)
		if (i <= hole)
			e->dest[i] = e->dest[i - 1];
	e->dest[0] = d + 1;
	e->lastmod = now;
	return d;
}

/* Picks a real server for a new connection of `svc`.
 * Returns: a dest id, or XVS_NO_DEST. */
__attribute__((noinline)) __u32 schedule(const struct xvs_svc *svc, const struct pkt *p, const struct xvs_cfg *cfg)
{
	if (!svc || !p || !cfg)
		return XVS_NO_DEST;
	__u32 id = svc->id;
	struct xvs_sched_state *st;

	if (sched_is_least(svc->sched))
		return sched_least(svc, svc->sched);
	switch (svc->sched) {
	case XVS_SCHED_RR:
		st = bpf_map_lookup_elem(&xvs_sched_state, &id);
		return st ? sched_rr(svc, st) : XVS_NO_DEST;
	case XVS_SCHED_WRR:
		st = bpf_map_lookup_elem(&xvs_sched_state, &id);
		return st ? sched_wrr(svc, st) : XVS_NO_DEST;
	case XVS_SCHED_TWOS:
		return sched_twos(svc);
	case XVS_SCHED_SH:
		return sched_sh(svc, p);
	case XVS_SCHED_DH:
		return sched_dh(svc, p);
	case XVS_SCHED_MH:
		return sched_mh(svc, p);
	case XVS_SCHED_LBLC:
		return sched_lblc(svc, p);
	case XVS_SCHED_LBLCR:
		return sched_lblcr(svc, p, cfg);
	}
	return XVS_NO_DEST;
}

#endif
