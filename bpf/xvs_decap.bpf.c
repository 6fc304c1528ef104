// SPDX-License-Identifier: GPL-2.0
/* The real-server side of the tunnel method: an XDP program that strips the outer IPv4 or IPv6
 * header from IP-in-IP packets sent by an xvs director, so the inner packet (addressed to the
 * VIP the real server holds on its loopback) reaches the stack as if it had arrived directly.
 * Many hosts have no ipip/ip6_tnl module; this needs none.
 *
 * Only packets whose inner destination is listed in xvs_decap_vips are decapsulated; anything
 * else passes untouched, so the program cannot be used to smuggle traffic to other addresses.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
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

/* Packets decapsulated (index 0) and passed untouched (index 1), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} xvs_decap_stats SEC(".maps");

static __always_inline int done(__u32 which, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&xvs_decap_stats, &which);
	if (c)
		*c += 1;
	return verdict;
}

SEC("xdp")
int xvs_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	__u32 vip[4] = {};
	int outer_len;
	__u16 inner_proto;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *outer = (void *)(eth + 1);
		if ((void *)(outer + 1) > data_end || outer->ihl != 5)
			return XDP_PASS;
		if (outer->protocol != IPPROTO_IPIP)
			return XDP_PASS;
		if (outer->frag_off & bpf_htons(0x3fff))
			return done(1, XDP_PASS); /* a fragment of a tunnel packet: the kernel's */
		struct iphdr *inner = (void *)(outer + 1);
		if ((void *)(inner + 1) > data_end)
			return XDP_PASS;
		vip[0] = inner->daddr;
		outer_len = sizeof(*outer);
		inner_proto = bpf_htons(ETH_P_IP);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *outer = (void *)(eth + 1);
		if ((void *)(outer + 1) > data_end || outer->nexthdr != IPPROTO_IPV6)
			return XDP_PASS;
		struct ipv6hdr *inner = (void *)(outer + 1);
		if ((void *)(inner + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(vip, &inner->daddr, 16);
		outer_len = sizeof(*outer);
		inner_proto = bpf_htons(ETH_P_IPV6);
	} else {
		return XDP_PASS;
	}
	if (!bpf_map_lookup_elem(&xvs_decap_vips, vip))
		return done(1, XDP_PASS);

	/* Move the Ethernet header forward over the outer IP header, then drop the front. */
	struct ethhdr copy;
	__builtin_memcpy(&copy, eth, sizeof(copy));
	if (bpf_xdp_adjust_head(ctx, outer_len))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth, &copy, sizeof(copy));
	eth->h_proto = inner_proto;
	return done(0, XDP_PASS);
}
