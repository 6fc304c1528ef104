// SPDX-License-Identifier: GPL-2.0
/* Helper programs for labs and benchmarks.
 *
 * xvs_pass: returns XDP_PASS. Native XDP on veth delivers frames sent with XDP_TX or
 *   XDP_REDIRECT only when the receiving peer runs an XDP program (lab-notes.md), so labs
 *   attach this one to every veth peer of a director.
 * xvs_bare: the benchmark's "physical reference": parses Ethernet and IP, writes the MACs from
 *   a one-entry config and sends the frame on — no lookup at all. Anything xvs_lb does beyond
 *   this is the cost of load balancing.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int xvs_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Where xvs_bare sends frames: destination and source MAC, egress ifindex (0 = XDP_TX). */
struct bare_cfg {
	unsigned char dmac[ETH_ALEN];
	unsigned char smac[ETH_ALEN];
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bare_cfg);
} xvs_bare_cfg SEC(".maps");

SEC("xdp")
int xvs_bare(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
	} else {
		return XDP_PASS;
	}
	__u32 zero = 0;
	struct bare_cfg *c = bpf_map_lookup_elem(&xvs_bare_cfg, &zero);
	if (!c)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, c->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, c->smac, ETH_ALEN);
	if (!c->ifindex)
		return XDP_TX;
	return bpf_redirect(c->ifindex, 0);
}
