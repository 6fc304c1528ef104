/* This file contains small helpers shared by every stage: the clock, the configuration, the
 * counters, and access to a service's list of real servers.
 */
#ifndef XVS_COMMON_H
#define XVS_COMMON_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xvs_abi.h"
#include "xvs_maps.h"

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* The most servers one service's scans visit (bpf_loop bound); mh tables reach 4093 anyway. */
#define XVS_SCAN_MAX 4096

/* Milliseconds of CLOCK_MONOTONIC. The coarse clock is enough for timeouts counted in seconds
 * and avoids reading the clock source on every packet. */
static __always_inline __u32 now_ms(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() / 1000000);
}

static __always_inline struct xvs_cfg *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&xvs_config, &zero);
}

/* ---- packet trace (xvsadm trace; docs/operations.md) ---- */

/* The filter xvsd sets; `on` is 0 while no trace runs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xvs_trace_filter);
} xvs_trace_ctl SEC(".maps");

/* One record per traced packet, read by xvsd. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} xvs_trace SEC(".maps");

/* The record of the packet being traced on this CPU; `on` only between trace_start and
 * trace_end (XDP programs do not nest on a CPU). */
struct trace_cur {
	__u32 on;
	__u32 pad;
	struct xvs_trace_ev ev;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trace_cur);
} xvs_trace_cur SEC(".maps");

/* The record of the packet being traced, or NULL. For the slow paths only (a lookup). */
static __always_inline struct xvs_trace_ev *trace_now(void)
{
	__u32 zero = 0;
	struct trace_cur *t = bpf_map_lookup_elem(&xvs_trace_cur, &zero);
	return t && t->on ? &t->ev : NULL;
}

/* Counts a packet that left the fast path, by reason. */
static __always_inline void count_reason(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&xvs_reasons, &reason);
	if (c)
		*c += 1;
	struct xvs_trace_ev *t = trace_now();
	if (t)
		t->reason = reason;
}

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&xvs_counters, &which);
	if (c)
		*c += 1;
}

/* count(), for code the stepwise sweep runs too: an iterator runs with bottom halves on, so
 * the packet path may interrupt it on its CPU between the read and the write of the slot. */
static __always_inline void count_atomic(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&xvs_counters, &which);
	if (c)
		__sync_fetch_and_add(c, 1);
}

/* Adds one packet of `len` bytes (and a connection when `conn`) to a server's and its
 * service's statistics; `out` selects the reply direction. */
static __always_inline void count_stats(__u32 dest_id, __u32 svc_id, __u32 len, int out, int conn)
{
	struct xvs_stats *s = bpf_map_lookup_elem(&xvs_dest_stats, &dest_id);
	if (s) {
		s->conns += conn;
		if (out) {
			s->outpkts++;
			s->outbytes += len;
		} else {
			s->inpkts++;
			s->inbytes += len;
		}
	}
	s = bpf_map_lookup_elem(&xvs_svc_stats, &svc_id);
	if (s) {
		s->conns += conn;
		if (out) {
			s->outpkts++;
			s->outbytes += len;
		} else {
			s->inpkts++;
			s->inbytes += len;
		}
	}
}

/* A real server of a service as schedulers see it. */
struct dview {
	__u32 id;
	__s32 weight;
	__s64 active;
	__s64 total;
	__u32 overload;
};

/* Not overloaded and a positive weight: what most schedulers require. */
static __always_inline int dest_usable(const struct dview *d)
{
	return !d->overload && d->weight > 0;
}

/* ip_vs_dest_conn_overhead: (active << 8) + total, in the kernel's 32-bit int. */
static __always_inline __s32 overhead(const struct dview *d)
{
	return (__s32)(((__u32)d->active << 8) + (__u32)d->total);
}

/* The kernel's addr_fold as a host-order word. */
static __always_inline __u32 addr_fold(const __u32 *a, __u8 af)
{
	if (af == XVS_AF_INET)
		return bpf_ntohl(a[0]);
	return bpf_ntohl(a[0] ^ a[1] ^ a[2] ^ a[3]);
}

/* The kernel's hash_32. */
static __always_inline __u32 hash_32(__u32 v, __u32 bits)
{
	return (v * 0x61C88647u) >> (32 - bits);
}

#endif
