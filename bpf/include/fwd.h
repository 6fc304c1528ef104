/* This file contains what happens to a packet once its real server is known: the NAT rewrite
 * in both directions, the TTL, IP-in-IP encapsulation for the tunnel method, the next hop from
 * the kernel's FIB, and the ICMP errors the director itself sends (port unreachable when no
 * server can take a connection, fragmentation needed / packet too big before a tunnel).
 */
#ifndef XVS_FWD_H
#define XVS_FWD_H

#include <linux/if_ether.h>
#include "common.h"
#include "csum.h"
#include "parse.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef BPF_FIB_LOOKUP_SRC
#define BPF_FIB_LOOKUP_SRC (1U << 4)
#endif

/* The largest L4 offset the rewriters accept (Ethernet + IPv6 + extension headers). */
#define XVS_MAX_L4_OFF 512

/* Rewrites the destination address and port (NAT, client → server).
 * Returns: 0, or -1 if the headers are out of reach (the caller passes the packet). */
static __always_inline int rewrite_dst(struct xdp_md *ctx, struct pkt *p, const __u32 *addr, __u16 port)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u16 l4 = p->l4_off;
	if (l4 > XVS_MAX_L4_OFF)
		return -1;
	__u16 *l4sum = NULL;
	__u16 *dport = NULL;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4;
		if ((void *)(th + 1) > data_end)
			return -1;
		l4sum = &th->check;
		dport = &th->dest;
	} else if (p->proto == IPPROTO_SCTP) {
		/* SCTP's CRC32c covers no IP address, and xvsd only takes NAT servers on the service's
		 * port: nothing to update (sctp_dnat_handler neither, for an unchanged port). */
		__u16 *ports = data + l4;
		if ((void *)(ports + 2) > data_end)
			return -1;
		dport = &ports[1];
	} else {
		struct udphdr *uh = data + l4;
		if ((void *)(uh + 1) > data_end)
			return -1;
		/* A zero UDP checksum means "none" (IPv4, and IPv6 tunnels per RFC 6935): it stays. */
		if (uh->check)
			l4sum = &uh->check;
		dport = &uh->dest;
	}
	if (p->af == XVS_AF_INET) {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		if ((void *)(ip + 1) > data_end)
			return -1;
		csum_replace4(&ip->check, ip->daddr, addr[0]);
		if (l4sum)
			csum_replace4(l4sum, ip->daddr, addr[0]);
		ip->daddr = addr[0];
	} else {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__u32 old[4];
		__builtin_memcpy(old, &ip6->daddr, 16);
		if (l4sum)
			csum_replace16(l4sum, old, addr);
		__builtin_memcpy(&ip6->daddr, addr, 16);
	}
	if (l4sum)
		csum_replace2(l4sum, *dport, port);
	if (l4sum && p->proto == IPPROTO_UDP && *l4sum == 0)
		*l4sum = 0xffff; /* a computed zero is sent as all ones */
	*dport = port;
	__builtin_memcpy(p->daddr, addr, 16);
	p->dport = port;
	return 0;
}

/* Rewrites the source address and port (NAT, server → client: back to the VIP).
 * Returns: 0, or -1 if the headers are out of reach. */
static __always_inline int rewrite_src(struct xdp_md *ctx, struct pkt *p, const __u32 *addr, __u16 port)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u16 l4 = p->l4_off;
	if (l4 > XVS_MAX_L4_OFF)
		return -1;
	__u16 *l4sum = NULL;
	__u16 *sport = NULL;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4;
		if ((void *)(th + 1) > data_end)
			return -1;
		l4sum = &th->check;
		sport = &th->source;
	} else if (p->proto == IPPROTO_SCTP) {
		__u16 *ports = data + l4;
		if ((void *)(ports + 2) > data_end)
			return -1;
		sport = &ports[0];
	} else {
		struct udphdr *uh = data + l4;
		if ((void *)(uh + 1) > data_end)
			return -1;
		if (uh->check)
			l4sum = &uh->check;
		sport = &uh->source;
	}
	if (p->af == XVS_AF_INET) {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		if ((void *)(ip + 1) > data_end)
			return -1;
		csum_replace4(&ip->check, ip->saddr, addr[0]);
		if (l4sum)
			csum_replace4(l4sum, ip->saddr, addr[0]);
		ip->saddr = addr[0];
	} else {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__u32 old[4];
		__builtin_memcpy(old, &ip6->saddr, 16);
		if (l4sum)
			csum_replace16(l4sum, old, addr);
		__builtin_memcpy(&ip6->saddr, addr, 16);
	}
	if (l4sum)
		csum_replace2(l4sum, *sport, port);
	if (l4sum && p->proto == IPPROTO_UDP && *l4sum == 0)
		*l4sum = 0xffff;
	*sport = port;
	__builtin_memcpy(p->saddr, addr, 16);
	p->sport = port;
	return 0;
}

/* Decrements the TTL / hop limit as a router does.
 * Returns: 0, or -1 when it would reach zero (the kernel then sends time exceeded). */
static __always_inline int dec_ttl(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	if (p->af == XVS_AF_INET) {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		if ((void *)(ip + 1) > data_end || ip->ttl <= 1)
			return -1;
		/* TTL is the high byte of the 16-bit word it shares with the protocol. */
		csum_replace2(&ip->check, bpf_htons((__u16)ip->ttl << 8), bpf_htons((__u16)(ip->ttl - 1) << 8));
		ip->ttl--;
	} else {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
			return -1;
		ip6->hop_limit--;
	}
	return 0;
}

/* The per-CPU FIB parameters (see xvs_fib_scratch). */
static __always_inline struct bpf_fib_lookup *fib_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&xvs_fib_scratch, &zero);
}

/* Looks up the next hop towards `dst` (of family `af`) as the kernel would route it.
 * @tot_len: the length the packet will have (for the MTU check).
 * @flags: BPF_FIB_LOOKUP_* (SRC to learn the source address for an outer header).
 * Returns: bpf_fib_lookup's result code; *fib holds MACs, egress ifindex, MTU or source. */
static __always_inline long fib_lookup(struct xdp_md *ctx, const struct pkt *p, __u8 af, const __u32 *dst,
				       __u16 tot_len, struct bpf_fib_lookup *fib, __u32 flags)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = p->ifindex;
	fib->tot_len = tot_len;
	if (af == XVS_AF_INET) {
		fib->family = AF_INET;
		fib->ipv4_dst = dst[0];
	} else {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_dst, dst, 16);
	}
	long rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), flags);
	if (rc < 0 && (flags & BPF_FIB_LOOKUP_SRC) && af == p->af) {
		/* Kernels before 6.7 do not report the source address: look up without it and
		 * use the VIP as the outer source (the real server's decapsulation ignores it).
		 * A tunnel of the other family needs the real source: none without it. */
		__u32 ifindex = fib->ifindex;
		__builtin_memset(fib, 0, sizeof(*fib));
		fib->ifindex = p->ifindex;
		fib->tot_len = tot_len;
		fib->family = af == XVS_AF_INET ? AF_INET : AF_INET6;
		if (af == XVS_AF_INET) {
			fib->ipv4_dst = dst[0];
		} else {
			__builtin_memcpy(fib->ipv6_dst, dst, 16);
		}
		(void)ifindex;
		rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), flags & ~BPF_FIB_LOOKUP_SRC);
		if (af == XVS_AF_INET)
			fib->ipv4_src = p->daddr[0];
		else
			__builtin_memcpy(fib->ipv6_src, p->daddr, 16);
	}
	return rc;
}

/* The cached next hop towards real server `dest_id` at `addr`, into *fib (out interface, MACs,
 * tunnel source) as a FIB lookup would leave them. Returns 1 on a hit. */
static __always_inline int nexthop_get(const struct pkt *p, __u32 dest_id, const __u32 *addr, __u16 tot_len,
				       __u8 tunnel, struct bpf_fib_lookup *fib)
{
	__u32 slot = dest_id & (XVS_NH_SLOTS - 1);
	struct xvs_nexthop *nh = bpf_map_lookup_elem(&xvs_nexthop, &slot);
	if (!nh || !nh->stamp || nh->dest_id != dest_id || nh->in_ifindex != p->ifindex || nh->tunnel != tunnel)
		return 0;
	if ((__u32)(p->now - nh->stamp) >= XVS_NH_TTL_MS || tot_len > nh->mtu)
		return 0;
	if (nh->addr[0] != addr[0] || nh->addr[1] != addr[1] || nh->addr[2] != addr[2] || nh->addr[3] != addr[3])
		return 0;
	fib->ifindex = nh->out_ifindex;
	__builtin_memcpy(fib->dmac, nh->dmac, ETH_ALEN);
	__builtin_memcpy(fib->smac, nh->smac, ETH_ALEN);
	__builtin_memcpy(fib->ipv6_src, nh->src, 16); /* ipv4_src shares the first word */
	return 1;
}

/* Remembers a successful FIB lookup towards real server `dest_id` at `addr`. */
static __always_inline void nexthop_put(const struct pkt *p, __u32 dest_id, const __u32 *addr, __u8 tunnel,
					const struct bpf_fib_lookup *fib)
{
	__u32 slot = dest_id & (XVS_NH_SLOTS - 1);
	struct xvs_nexthop *nh = bpf_map_lookup_elem(&xvs_nexthop, &slot);
	if (!nh)
		return;
	nh->dest_id = dest_id;
	__builtin_memcpy(nh->addr, addr, 16);
	nh->in_ifindex = p->ifindex;
	nh->out_ifindex = fib->ifindex;
	__builtin_memcpy(nh->src, fib->ipv6_src, 16);
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->mtu = fib->mtu_result;
	nh->tunnel = tunnel;
	nh->stamp = p->now ? p->now : 1;
}

/* Records a next hop without a neighbour entry (the FIB left it in the lookup's destination)
 * for xvsd to resolve; at most one write per address per 100 ms. */
static __always_inline void neigh_miss(const struct pkt *p, __u8 af, const struct bpf_fib_lookup *fib)
{
	__u32 a0 = af == XVS_AF_INET ? fib->ipv4_dst : fib->ipv6_dst[3];
	__u32 slot = (a0 ^ (a0 >> 16) ^ (a0 >> 24)) & (XVS_NEIGH_SLOTS - 1);
	struct xvs_neigh_miss *m = bpf_map_lookup_elem(&xvs_neigh_miss, &slot);
	if (!m)
		return;
	__u32 now = p->now ? p->now : 1;
	int same = af == XVS_AF_INET ? m->addr[0] == fib->ipv4_dst
					 : m->addr[0] == fib->ipv6_dst[0] && m->addr[1] == fib->ipv6_dst[1] &&
						   m->addr[2] == fib->ipv6_dst[2] && m->addr[3] == fib->ipv6_dst[3];
	if (m->af == af && same && (__u32)(now - m->stamp) < 100)
		return;
	m->af = af;
	if (af == XVS_AF_INET) {
		m->addr[0] = fib->ipv4_dst;
		m->addr[1] = m->addr[2] = m->addr[3] = 0;
	} else {
		__builtin_memcpy(m->addr, fib->ipv6_dst, 16);
	}
	m->ifindex = fib->ifindex;
	m->stamp = now;
}

/* Sends the frame to the next hop the FIB found: writes the MACs, then XDP_TX on the ingress
 * interface or XDP_REDIRECT to another. */
static __always_inline int xmit(struct xdp_md *ctx, const struct pkt *p, const struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	if (fib->ifindex == p->ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

/* The bytes a real server's tunnel adds in front of the packet: the outer IP header, and UDP
 * with the GUE base header (8 + 4) or the GRE header (4, 8 with the checksum field). */
static __always_inline __u16 tun_overhead(const struct xvs_dest *dst)
{
	__u16 ip = dst->af == XVS_AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	if (dst->flags & XVS_DEST_F_TUN_GUE)
		return ip + sizeof(struct udphdr) + 4;
	if (dst->flags & XVS_DEST_F_TUN_GRE)
		return ip + ((dst->flags & XVS_DEST_F_TUN_CSUM) ? 8 : 4);
	return ip;
}

/* The outer UDP source port of a GUE packet: a hash of the inner flow in the kernel's
 * ephemeral range (as udp_flow_src_port), the same for every packet of a connection and
 * spread over connections, so that real servers' receive-side scaling spreads them too. */
static __always_inline __u16 flow_port(const struct pkt *p)
{
	__u32 h = p->proto;
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = (h ^ p->saddr[i] ^ (p->daddr[i] * 0x9e3779b1)) * 0x85ebca6b;
	h ^= ((__u32)p->sport << 16) | p->dport;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return bpf_htons((__u16)((((__u64)h * (60999 - 32768)) >> 32) + 32768));
}

/* The one's-complement sum of the whole inner packet, from its headers alone: checksums that
 * are right make the IPv4 header sum to zero and the transport segment to the complement of
 * its pseudo-header (the kernel's local checksum offload does the same, lco_csum).
 * Returns: 0 with *sum set, or -1 when the headers do not tell (an IPv4 UDP datagram sent
 * without a checksum, IPv6 extension headers): the outer packet then goes without one. */
static __always_inline int inner_sum(struct xdp_md *ctx, const struct pkt *p, __u32 *sum)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u16 l4 = p->l4_off;
	if (l4 > XVS_MAX_L4_OFF || p->l3_off != sizeof(struct ethhdr))
		return -1;
	__u32 s = 0;
	__u16 l4len = p->ip_len - (l4 - p->l3_off);
	if (p->af == XVS_AF_INET6) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if ((void *)(ip6 + 1) > data_end || l4 != sizeof(struct ethhdr) + sizeof(*ip6))
			return -1;
		s = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)ip6, sizeof(*ip6), 0);
	}
	if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4;
		if ((void *)(uh + 1) > data_end || (!uh->check && p->af == XVS_AF_INET))
			return -1;
	} else if (p->proto == IPPROTO_TCP) {
		/* nothing to read: the checksum is in the segment's sum */
	} else if (p->proto == IPPROTO_ICMP) {
		/* No pseudo-header: a right ICMP checksum makes the message sum to zero. */
		*sum = s;
		return 0;
	} else if (p->proto != IPPROTO_ICMPV6) {
		return -1; /* ICMPv6 goes on: it has the pseudo-header */
	}
	__u32 ph = 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		ph = csum_add(ph, p->saddr[i]);
		ph = csum_add(ph, p->daddr[i]);
	}
	ph = csum_add(ph, bpf_htons(p->proto));
	ph = csum_add(ph, bpf_htons(l4len));
	/* csum_fold gives the complement of the folded pseudo-header sum: the segment's sum. */
	*sum = csum_add(s, csum_fold(ph));
	return 0;
}

/* Encapsulates the packet for the tunnel method, as kernel IPVS does: IP-in-IP (protocol 4
 * for IPv4 inside, 41 for IPv6), GUE (UDP to the real server's port, a per-flow source port,
 * the GUE base header naming the inner protocol) or GRE (protocol 0x0800 / 0x86dd). The
 * outer header is of the real server's family, which may differ from the packet's (4-in-6,
 * 6-in-4); its source is the route's, TTL and DSCP/ECN come from the inner header, DF from an
 * IPv4 inner header (set for IPv6 inside). --tun-csum fills the outer UDP checksum (GUE) or
 * GRE's checksum field; --tun-remcsum is sent as --tun-csum: remote checksum offload moves a
 * checksum left partial by the sender, and a forwarded packet's checksums are complete (the
 * kernel, too, adds the remote-checksum option only to partial ones).
 * Returns: 0, or -1 if the frame could not grow. */
static __always_inline int encap(struct xdp_md *ctx, struct pkt *p, const struct xvs_dest *dst,
				 const struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 flags = dst->flags;
	__u8 outer6 = dst->af == XVS_AF_INET6;
	int gue = flags & XVS_DEST_F_TUN_GUE, gre = !gue && (flags & XVS_DEST_F_TUN_GRE);
	__u32 isum = 0;
	int csum = (gue || gre) && (flags & (XVS_DEST_F_TUN_CSUM | XVS_DEST_F_TUN_REMCSUM)) && !inner_sum(ctx, p, &isum);
	__u16 tun = gue ? sizeof(struct udphdr) + 4 : gre ? (csum ? 8 : 4) : 0;
	__u16 iphl = outer6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	__u16 inner_len = p->ip_len;
	__u8 inner_proto = p->af == XVS_AF_INET ? IPPROTO_IPIP : IPPROTO_IPV6;
	__u16 gre_proto = p->af == XVS_AF_INET ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	__u16 fport = flow_port(p);
	__u16 sport = gue ? fport : 0;

	/* What the outer header copies from the inner one, read before the frame moves. The MACs
	 * move with the frame's new start: the kernel must still see its own MAC as the
	 * destination if the packet is handed to it. */
	struct ethhdr saved;
	if (data + sizeof(saved) > data_end)
		return -1;
	__builtin_memcpy(&saved, data, sizeof(saved));
	__u8 tos, ttl;
	__be16 df;
	__be32 first; /* IPv6 inside: version, traffic class, flow label */
	if (p->af == XVS_AF_INET) {
		struct iphdr *in = data + sizeof(struct ethhdr);
		if ((void *)(in + 1) > data_end)
			return -1;
		tos = in->tos;
		ttl = in->ttl;
		df = in->frag_off & bpf_htons(IP_DF);
		/* For an IPv6 outer header: the flow label from the flow's hash, as ECMP keys on it. */
		first = bpf_htonl(0x60000000 | ((__u32)tos << 20) | bpf_ntohs(fport));
	} else {
		struct ipv6hdr *in = data + sizeof(struct ethhdr);
		if ((void *)(in + 1) > data_end)
			return -1;
		first = *(__be32 *)in;
		tos = (bpf_ntohl(first) >> 20) & 0xff;
		ttl = in->hop_limit;
		df = bpf_htons(IP_DF);
	}

	if (bpf_xdp_adjust_head(ctx, -(int)(iphl + tun)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(eth, &saved, sizeof(saved));
	__u8 next = gue ? IPPROTO_UDP : gre ? IPPROTO_GRE : inner_proto;
	__u16 payload = tun + inner_len;
	__u32 ph = 0; /* the outer pseudo-header, for GUE's UDP checksum */
	void *t;
	if (!outer6) {
		struct iphdr *outer = data + sizeof(*eth);
		if ((void *)(outer + 1) > data_end)
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IP);
		outer->version = 4;
		outer->ihl = 5;
		outer->tos = tos;
		outer->tot_len = bpf_htons(sizeof(*outer) + payload);
		outer->frag_off = df;
		/* A fragmentable outer packet needs an ID that does not repeat; with DF, 0 is fine
		 * (RFC 6864). */
		outer->id = df ? 0 : (__u16)bpf_get_prandom_u32();
		outer->ttl = ttl;
		outer->protocol = next;
		outer->saddr = fib->ipv4_src;
		outer->daddr = dst->addr[0];
		outer->check = 0;
		outer->check = ipv4_csum((__u16 *)outer);
		ph = csum_add(csum_add(outer->saddr, outer->daddr), bpf_htons(IPPROTO_UDP));
		t = outer + 1;
	} else {
		struct ipv6hdr *outer = data + sizeof(*eth);
		if ((void *)(outer + 1) > data_end)
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)outer = first;
		outer->payload_len = bpf_htons(payload);
		outer->nexthdr = next;
		outer->hop_limit = ttl;
		__builtin_memcpy(&outer->saddr, fib->ipv6_src, 16);
		__builtin_memcpy(&outer->daddr, dst->addr, 16);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			ph = csum_add(ph, fib->ipv6_src[i]);
			ph = csum_add(ph, dst->addr[i]);
		}
		ph = csum_add(ph, bpf_htons(IPPROTO_UDP));
		t = outer + 1;
	}
	if (gue) {
		struct udphdr *uh = t;
		__u8 *g = (void *)(uh + 1);
		if ((void *)(g + 4) > data_end)
			return -1;
		uh->source = sport;
		uh->dest = bpf_htons((__u16)(flags >> XVS_DEST_TUN_PORT_SHIFT));
		uh->len = bpf_htons(payload);
		uh->check = 0;
		g[0] = 0; /* version 0, not a control message, no options */
		g[1] = inner_proto;
		g[2] = 0;
		g[3] = 0;
		if (csum) {
			__u32 c = csum_add(ph, uh->len);
			c = csum_add(c, *(__u32 *)uh);       /* ports */
			c = csum_add(c, uh->len);
			c = csum_add(c, *(__u32 *)g);
			c = csum_add(c, isum);
			__u16 v = csum_fold(c);
			uh->check = v ? v : 0xffff;
		}
	} else if (gre) {
		__be16 *g = t;
		if ((void *)(g + 4) > data_end)
			return -1;
		g[0] = csum ? bpf_htons(0x8000) : 0;
		g[1] = gre_proto;
		if (csum) {
			g[2] = 0;
			g[3] = 0;
			g[2] = csum_fold(csum_add(csum_add(isum, g[0]), g[1]));
		}
	}
	return 0;
}

/* How much of the offending packet an ICMP error quotes: its IP header and 8 bytes (IPv4),
 * or the IPv6 header and 8 bytes. */
#define XVS_ICMP_QUOTE4 (sizeof(struct iphdr) + 8)
#define XVS_ICMP_QUOTE6 (sizeof(struct ipv6hdr) + 8)

/* The errors the director itself sends. */
enum icmp_kind {
	ICMP_PORT_UNREACH = 0, /* no real server can take the connection */
	ICMP_TOO_BIG = 1,      /* fragmentation needed / packet too big, with the MTU */
	ICMP_TTL = 2,          /* time exceeded in transit */
};

/* Turns the frame into an ICMP error back to its sender, out of the interface it came in on:
 * destination unreachable (port unreachable, or fragmentation needed with `mtu`) or time
 * exceeded; for IPv6, destination unreachable, packet too big or time exceeded. The source of
 * the error is the address the packet was sent to (the VIP).
 * Returns: XDP_TX, or XDP_DROP if the frame could not be rebuilt. */
/* The director's own ICMP errors, at most cfg->icmp_rate a second per CPU in bursts of
 * cfg->icmp_burst (as the kernel's net.ipv4.icmp_msgs_per_sec and icmp_msgs_burst), so that
 * spoofed packets cannot turn the director into a reflector. Returns: 1 when one may be sent. */
static __always_inline int icmp_allowed(void)
{
	__u32 zero = 0;
	struct xvs_icmp_bucket *b = bpf_map_lookup_elem(&xvs_icmp_limit, &zero);
	struct xvs_cfg *cfg = config();
	if (!b || !cfg)
		return 0;
	__u32 rate = cfg->icmp_rate, burst = cfg->icmp_burst;
	if (!rate)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	__u64 add = (now - b->last_ns) / (1000000000ull / rate);
	if (add) {
		__u64 t = b->tokens + add;
		b->tokens = t > burst ? burst : t;
		b->last_ns = now;
	}
	if (!b->tokens) {
		count(XVS_CNT_ICMP_LIMITED);
		return 0;
	}
	b->tokens--;
	return 1;
}

__attribute__((noinline)) int icmp_reply(struct xdp_md *ctx, struct pkt *p, enum icmp_kind kind, __u32 mtu)
{
	/* A global function: verified once on its own, not at each of its callers. */
	if (!p || !icmp_allowed())
		return XDP_DROP;
	int too_big = kind == ICMP_TOO_BIG;
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	unsigned char mac[ETH_ALEN * 2];
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(mac + ETH_ALEN, eth->h_dest, ETH_ALEN);

	if (p->af == XVS_AF_INET) {
		struct iphdr *orig = data + sizeof(*eth);
		if ((void *)(orig + 1) > data_end)
			return XDP_DROP;
		/* Quote a 20-byte header and 8 bytes; a packet with options is not answered. */
		if (orig->ihl != 5)
			return XDP_DROP;
		__u32 hdrs = sizeof(struct iphdr) + sizeof(struct xvs_icmphdr);
		__u32 new_len = sizeof(struct ethhdr) + hdrs + XVS_ICMP_QUOTE4;
		if (bpf_xdp_adjust_head(ctx, -(int)hdrs))
			return XDP_DROP;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + new_len > data_end)
			return XDP_DROP;
		if (bpf_xdp_adjust_tail(ctx, (int)new_len - (int)(data_end - data)))
			return XDP_DROP;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		eth = data;
		struct iphdr *ip = (void *)(eth + 1);
		struct xvs_icmphdr *ic = (void *)(ip + 1);
		void *q = (void *)(ic + 1);
		if (q + XVS_ICMP_QUOTE4 > data_end)
			return XDP_DROP;
		__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, mac + ETH_ALEN, ETH_ALEN);
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = 0;
		ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*ic) + XVS_ICMP_QUOTE4);
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = 64;
		ip->protocol = IPPROTO_ICMP;
		ip->saddr = p->daddr[0];
		ip->daddr = p->saddr[0];
		ip->check = 0;
		ip->check = ipv4_csum((__u16 *)ip);
		ic->type = kind == ICMP_TTL ? XVS_ICMP_TIME_EXCEEDED : XVS_ICMP_DEST_UNREACH;
		ic->code = kind == ICMP_TTL ? 0 : too_big ? XVS_ICMP_FRAG_NEEDED : XVS_ICMP_PORT_UNREACH;
		ic->checksum = 0;
		ic->unused = 0;
		ic->mtu = too_big ? bpf_htons((__u16)mtu) : 0;
		__s64 sum = bpf_csum_diff(0, 0, (void *)ic, sizeof(*ic) + XVS_ICMP_QUOTE4, 0);
		if (sum < 0)
			return XDP_DROP;
		ic->checksum = csum_fold((__u32)sum);
		return XDP_TX;
	}

	/* IPv6: a 40-byte IPv6 header and an 8-byte ICMPv6 header in front of the quote. */
	__u32 hdrs = sizeof(struct ipv6hdr) + 8;
	__u32 new_len = sizeof(struct ethhdr) + hdrs + XVS_ICMP_QUOTE6;
	if (bpf_xdp_adjust_head(ctx, -(int)hdrs))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + new_len > data_end)
		return XDP_DROP;
	if (bpf_xdp_adjust_tail(ctx, (int)new_len - (int)(data_end - data)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct xvs_icmphdr *ic6 = (void *)(ip6 + 1);
	void *q = (void *)(ic6 + 1);
	if (q + XVS_ICMP_QUOTE6 > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac + ETH_ALEN, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	*(__u32 *)ip6 = bpf_htonl(0x60000000);
	ip6->payload_len = bpf_htons(8 + XVS_ICMP_QUOTE6);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, p->daddr, 16);
	__builtin_memcpy(&ip6->daddr, p->saddr, 16);
	ic6->type = kind == ICMP_TTL ? 3 : too_big ? XVS_ICMPV6_PKT_TOOBIG : XVS_ICMPV6_DEST_UNREACH;
	ic6->code = kind == ICMP_PORT_UNREACH ? XVS_ICMPV6_PORT_UNREACH : 0;
	ic6->checksum = 0;
	*(__u32 *)&ic6->unused = too_big ? bpf_htonl(mtu) : 0;
	/* Checksum over the pseudo-header (addresses, length, next header) and the message. */
	__u32 ph[2] = { bpf_htonl(8 + XVS_ICMP_QUOTE6), bpf_htonl(IPPROTO_ICMPV6) };
	__s64 sum = bpf_csum_diff(0, 0, (void *)&ip6->saddr, 32, 0);
	sum = bpf_csum_diff(0, 0, ph, sizeof(ph), sum);
	sum = bpf_csum_diff(0, 0, (void *)ic6, 8 + XVS_ICMP_QUOTE6, sum);
	if (sum < 0)
		return XDP_DROP;
	ic6->checksum = csum_fold((__u32)sum);
	return XDP_TX;
}

#endif
