/* This file contains the handling of ICMP errors about tracked connections (reference §5.5):
 * "fragmentation needed", "packet too big", unreachables and time exceeded quote the header of
 * the packet they are about; the director finds that packet's connection and delivers the error
 * to the host that sent it.
 *
 *  - Towards a real server: an error sent to the VIP about a packet the VIP "sent" to a client
 *    (a reply). NAT: the outer destination and the quoted source become the real server's
 *    address and port. DR/TUN: the error goes unchanged to the real server (by MAC or tunnel),
 *    which sent the reply itself.
 *  - Towards a client (NAT): an error from a real server about a packet from the client. The
 *    outer source and the quoted destination become the VIP and its port.
 *
 * The quoted transport checksum is left as the kernel leaves it; the quoted IP header checksum,
 * the outer header checksum and the ICMP checksum are updated incrementally. Quoted headers
 * with options or extension headers are left to the kernel.
 */
#ifndef XVS_ICMP_H
#define XVS_ICMP_H

#include "common.h"
#include "conn.h"
#include "csum.h"
#include "fwd.h"

/* Offsets with 20-byte IPv4 headers / 40-byte IPv6 headers, outer and quoted. */
#define ICMP4_OFF (14 + 20)
#define EMB4_OFF (ICMP4_OFF + 8)
#define EMB4_L4 (EMB4_OFF + 20)
#define ICMP6_OFF (14 + 40)
#define EMB6_OFF (ICMP6_OFF + 8)
#define EMB6_L4 (EMB6_OFF + 40)

static __always_inline int icmp_is_error(const struct pkt *p)
{
	if (p->af == XVS_AF_INET)
		return p->icmp_type == XVS_ICMP_DEST_UNREACH || p->icmp_type == 4 /* source quench */ ||
		       p->icmp_type == XVS_ICMP_TIME_EXCEEDED;
	return p->icmp_type < 128;
}

/* Sends a rewritten or forwarded error on, towards `dst`. */
static __always_inline int icmp_send(struct xdp_md *ctx, struct pkt *p, const __u32 *dst)
{
	struct bpf_fib_lookup *fib = fib_scratch();
	if (!fib)
		return XDP_PASS;
	if (dec_ttl(ctx, p)) {
		count_reason(XVS_R_TTL);
		return XDP_DROP;
	}
	long rc = fib_lookup(ctx, p, p->af, dst, p->ip_len, fib, 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return xmit(ctx, p, fib);
	count_reason(rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XVS_R_NO_NEIGH : XVS_R_NO_ROUTE);
	return XDP_PASS;
}

/* Forwards an error about a DR/TUN connection to its real server, unchanged. */
static __always_inline int icmp_to_direct(struct xdp_md *ctx, struct pkt *p, const struct xvs_dest *dst, __u8 method)
{
	struct bpf_fib_lookup *fib = fib_scratch();
	if (!fib)
		return XDP_PASS;
	if (dec_ttl(ctx, p)) {
		count_reason(XVS_R_TTL);
		return XDP_DROP;
	}
	__u16 hdr = method == XVS_FWD_TUNNEL ? tun_overhead(dst) : 0;
	long rc = fib_lookup(ctx, p, dst->af, dst->addr, p->ip_len + hdr, fib,
			     method == XVS_FWD_TUNNEL ? BPF_FIB_LOOKUP_SRC : 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		count_reason(rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XVS_R_NO_NEIGH : XVS_R_NO_ROUTE);
		return XDP_DROP;
	}
	if (method == XVS_FWD_TUNNEL && encap(ctx, p, dst, fib))
		return XDP_DROP;
	return xmit(ctx, p, fib);
}

static __always_inline int handle_icmp4(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + 14;
	struct xvs_icmphdr *ic = data + ICMP4_OFF;
	struct iphdr *emb = data + EMB4_OFF;
	__u16 *ports = data + EMB4_L4;
	if ((void *)(ports + 2) > data_end)
		return XDP_PASS;
	if (ip->ihl != 5 || emb->ihl != 5 || (emb->protocol != IPPROTO_TCP && emb->protocol != IPPROTO_UDP &&
						      emb->protocol != IPPROTO_SCTP))
		return XDP_PASS;

	/* Towards a real server: the quoted packet went VIP → client. */
	union conn_key k = {};
	k.k4.caddr = emb->daddr;
	k.k4.cport = ports[1];
	k.k4.vaddr = emb->saddr;
	k.k4.vport = ports[0];
	k.k4.proto = emb->protocol;
	struct xvs_conn *c = conn_lookup(XVS_AF_INET, &k);
	if (c) {
		__u32 id = c->dest_id;
		struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
		if (!dst || dst->gen != c->gen)
			return XDP_PASS;
		if (c->method != XVS_FWD_MASQ)
			return icmp_to_direct(ctx, p, dst, c->method);
		__u32 raddr = dst->addr[0];
		__u16 rport = dst->port ? dst->port : k.k4.vport;
		__u32 old_addr = emb->saddr;
		__u16 old_check = emb->check;
		csum_replace4(&ip->check, ip->daddr, raddr);
		ip->daddr = raddr;
		csum_replace4(&emb->check, old_addr, raddr);
		emb->saddr = raddr;
		csum_replace4(&ic->checksum, old_addr, raddr);
		csum_replace2(&ic->checksum, old_check, emb->check);
		csum_replace2(&ic->checksum, ports[0], rport);
		ports[0] = rport;
		p->daddr[0] = raddr;
		return icmp_send(ctx, p, p->daddr);
	}

	/* Towards a client: the quoted packet went client → real server (NAT). */
	union nat_key n = {};
	n.k4.raddr = emb->daddr;
	n.k4.caddr = emb->saddr;
	n.k4.rport = ports[1];
	n.k4.cport = ports[0];
	n.k4.proto = emb->protocol;
	union conn_key fk;
	if (!nat_get(XVS_AF_INET, &n, &fk))
		return XDP_PASS;
	__u32 vaddr = fk.k4.vaddr;
	__u16 vport = fk.k4.vport;
	__u32 old_addr = emb->daddr;
	__u16 old_check = emb->check;
	csum_replace4(&ip->check, ip->saddr, vaddr);
	ip->saddr = vaddr;
	csum_replace4(&emb->check, old_addr, vaddr);
	emb->daddr = vaddr;
	csum_replace4(&ic->checksum, old_addr, vaddr);
	csum_replace2(&ic->checksum, old_check, emb->check);
	csum_replace2(&ic->checksum, ports[1], vport);
	ports[1] = vport;
	p->saddr[0] = vaddr;
	return icmp_send(ctx, p, p->daddr);
}

static __always_inline int handle_icmp6(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + 14;
	struct xvs_icmphdr *ic = data + ICMP6_OFF;
	struct ipv6hdr *emb = data + EMB6_OFF;
	__u16 *ports = data + EMB6_L4;
	if ((void *)(ports + 2) > data_end)
		return XDP_PASS;
	if (ip6->nexthdr != IPPROTO_ICMPV6 || (emb->nexthdr != IPPROTO_TCP && emb->nexthdr != IPPROTO_UDP &&
								emb->nexthdr != IPPROTO_SCTP))
		return XDP_PASS;
	__u32 old[4], new[4];

	union conn_key k = {};
	__builtin_memcpy(k.k6.caddr, &emb->daddr, 16);
	__builtin_memcpy(k.k6.vaddr, &emb->saddr, 16);
	k.k6.cport = ports[1];
	k.k6.vport = ports[0];
	k.k6.proto = emb->nexthdr;
	struct xvs_conn *c = conn_lookup(XVS_AF_INET6, &k);
	if (c) {
		__u32 id = c->dest_id;
		struct xvs_dest *dst = bpf_map_lookup_elem(&xvs_dests, &id);
		if (!dst || dst->gen != c->gen)
			return XDP_PASS;
		if (c->method != XVS_FWD_MASQ)
			return icmp_to_direct(ctx, p, dst, c->method);
		__u16 rport = dst->port ? dst->port : k.k6.vport;
		__u32 outer[4];
		__builtin_memcpy(outer, &ip6->daddr, 16);
		__builtin_memcpy(old, &emb->saddr, 16);
		__builtin_memcpy(new, dst->addr, 16);
		/* Two changes in the checksummed data: the pseudo-header's destination and the
		 * quoted source. */
		csum_replace16(&ic->checksum, outer, new);
		csum_replace16(&ic->checksum, old, new);
		csum_replace2(&ic->checksum, ports[0], rport);
		__builtin_memcpy(&ip6->daddr, new, 16);
		__builtin_memcpy(&emb->saddr, new, 16);
		ports[0] = rport;
		__builtin_memcpy(p->daddr, new, 16);
		return icmp_send(ctx, p, p->daddr);
	}

	union nat_key n = {};
	__builtin_memcpy(n.k6.raddr, &emb->daddr, 16);
	__builtin_memcpy(n.k6.caddr, &emb->saddr, 16);
	n.k6.rport = ports[1];
	n.k6.cport = ports[0];
	n.k6.proto = emb->nexthdr;
	union conn_key fk;
	if (!nat_get(XVS_AF_INET6, &n, &fk))
		return XDP_PASS;
	__u16 vport = fk.k6.vport;
	__u32 outer[4];
	__builtin_memcpy(outer, &ip6->saddr, 16);
	__builtin_memcpy(old, &emb->daddr, 16);
	__builtin_memcpy(new, fk.k6.vaddr, 16);
	csum_replace16(&ic->checksum, outer, new);
	csum_replace16(&ic->checksum, old, new);
	csum_replace2(&ic->checksum, ports[1], vport);
	__builtin_memcpy(&ip6->saddr, new, 16);
	__builtin_memcpy(&emb->daddr, new, 16);
	ports[1] = vport;
	__builtin_memcpy(p->saddr, new, 16);
	return icmp_send(ctx, p, p->daddr);
}

/* An ICMP or ICMPv6 message reached the director.
 * Returns: the XDP action; messages that are not errors about a tracked connection pass. */
__attribute__((noinline)) int handle_icmp(struct xdp_md *ctx, struct pkt *p)
{
	if (!p)
		return XDP_PASS;
	if (!icmp_is_error(p))
		return XDP_PASS;
	return p->af == XVS_AF_INET ? handle_icmp4(ctx, p) : handle_icmp6(ctx, p);
}

#endif
