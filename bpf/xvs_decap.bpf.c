// SPDX-License-Identifier: GPL-2.0
/* The real-server side of the tunnel method: an XDP program that strips what an xvs director
 * (or kernel IPVS) puts in front of a packet — an outer IPv4 or IPv6 header, and for GUE the
 * UDP and GUE headers, for GRE the GRE header — so that the inner packet (addressed to the VIP
 * the real server holds on its loopback) reaches the stack as if it had arrived directly.
 * Many hosts have no ipip, ip6_tnl, fou or gre module; this needs none. Both families are
 * taken inside both (4-in-6, 6-in-4), as the kernel's tunnels allow.
 *
 * Only packets whose inner destination is listed in xvs_decap_vips are decapsulated, and GUE
 * only on the UDP ports listed in xvs_decap_ports; anything else passes untouched, so the
 * program cannot be used to smuggle traffic to other addresses. The outer UDP or GRE checksum
 * is not verified: the inner packet's own checksums are, by the stack, as after the kernel's
 * decapsulation of a packet sent without one. GUE options (remote checksum offload) and GRE
 * keys or sequence numbers are not stripped: such packets go to the kernel.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

/* Inner destination addresses (VIPs, IPv4 in word 0) that may be decapsulated. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32[4]);
	__type(value, __u8);
} xvs_decap_vips SEC(".maps");

/* UDP destination ports (network order) that carry GUE. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} xvs_decap_ports SEC(".maps");

/* Packets decapsulated (index 0) and passed untouched (index 1), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} xvs_decap_stats SEC(".maps");

#define GRE_CSUM 0x8000
#define GRE_VERSION_AND_FLAGS 0xffff /* anything but C: key, sequence, routing, version */

static __always_inline int done(__u32 which, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&xvs_decap_stats, &which);
	if (c)
		*c += 1;
	return verdict;
}

/* What follows the outer IP header, at `l4` (its protocol `proto`): the length of the tunnel
 * header and the inner family (IPPROTO_IPIP or IPPROTO_IPV6), or -1 if it is not a tunnel
 * this program takes. */
static __always_inline int tunnel_header(void *l4, void *data_end, __u8 proto, __u8 *inner)
{
	if (proto == IPPROTO_IPIP || proto == IPPROTO_IPV6) {
		*inner = proto;
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		__u8 *g = (void *)(uh + 1);
		if ((void *)(g + 4) > data_end || !bpf_map_lookup_elem(&xvs_decap_ports, &uh->dest))
			return -1;
		/* GUE version 0, a data message, no options. */
		if (g[0] != 0 || (g[1] != IPPROTO_IPIP && g[1] != IPPROTO_IPV6))
			return -1;
		*inner = g[1];
		return sizeof(*uh) + 4;
	}
	if (proto == IPPROTO_GRE) {
		__be16 *g = l4;
		if ((void *)(g + 2) > data_end)
			return -1;
		__u16 flags = bpf_ntohs(g[0]);
		if (flags & GRE_VERSION_AND_FLAGS & ~GRE_CSUM)
			return -1;
		if (g[1] == bpf_htons(ETH_P_IP))
			*inner = IPPROTO_IPIP;
		else if (g[1] == bpf_htons(ETH_P_IPV6))
			*inner = IPPROTO_IPV6;
		else
			return -1;
		return (flags & GRE_CSUM) ? 8 : 4;
	}
	return -1;
}

SEC("xdp")
int xvs_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	__u32 vip[4] = {};
	int outer_len, tun;
	__u8 inner;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *outer = (void *)(eth + 1);
		if ((void *)(outer + 1) > data_end || outer->ihl != 5)
			return XDP_PASS;
		if (outer->protocol != IPPROTO_IPIP && outer->protocol != IPPROTO_IPV6 && outer->protocol != IPPROTO_UDP &&
		    outer->protocol != IPPROTO_GRE)
			return XDP_PASS;
		if (outer->frag_off & bpf_htons(0x3fff))
			return done(1, XDP_PASS); /* a fragment of a tunnel packet: the kernel's */
		outer_len = sizeof(*outer);
		tun = tunnel_header(outer + 1, data_end, outer->protocol, &inner);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *outer = (void *)(eth + 1);
		if ((void *)(outer + 1) > data_end)
			return XDP_PASS;
		if (outer->nexthdr != IPPROTO_IPIP && outer->nexthdr != IPPROTO_IPV6 && outer->nexthdr != IPPROTO_UDP &&
		    outer->nexthdr != IPPROTO_GRE)
			return XDP_PASS;
		outer_len = sizeof(*outer);
		tun = tunnel_header(outer + 1, data_end, outer->nexthdr, &inner);
	} else {
		return XDP_PASS;
	}
	if (tun < 0)
		return XDP_PASS; /* UDP or GRE, but not a tunnel of ours */
	int strip = outer_len + tun;
	if (strip > 60)
		return XDP_PASS;
	void *in = data + sizeof(*eth) + strip;
	if (inner == IPPROTO_IPIP) {
		struct iphdr *ip = in;
		if ((void *)(ip + 1) > data_end)
			return done(1, XDP_PASS);
		vip[0] = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = in;
		if ((void *)(ip6 + 1) > data_end)
			return done(1, XDP_PASS);
		__builtin_memcpy(vip, &ip6->daddr, 16);
	}
	if (!bpf_map_lookup_elem(&xvs_decap_vips, vip))
		return done(1, XDP_PASS);

	/* Move the Ethernet header forward over the outer headers, then drop the front. */
	struct ethhdr copy;
	__builtin_memcpy(&copy, eth, sizeof(copy));
	if (bpf_xdp_adjust_head(ctx, strip))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth, &copy, sizeof(copy));
	eth->h_proto = inner == IPPROTO_IPIP ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	return done(0, XDP_PASS);
}
