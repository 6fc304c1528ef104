// SPDX-License-Identifier: GPL-2.0
/* Helper programs for labs and benchmarks.
 *
 * xvs_pass: returns XDP_PASS. Native XDP on veth delivers frames sent with XDP_TX or
 *   XDP_REDIRECT only when the receiving peer runs an XDP program (lab-notes.md), so labs
 *   attach this one to every veth peer of a director.
 * xvs_bare: the benchmark's "physical reference": parses Ethernet and IP, writes the MACs from
 *   a one-entry config and sends the frame on — no lookup at all. Anything xvs_lb does beyond
 *   this is the cost of load balancing.
 * xvs_gen: the benchmark's traffic generator: run with BPF_F_TEST_XDP_LIVE_FRAMES, it sends
 *   its frame out of the interface it is run on (XDP_TX), millions of times a second. Live
 *   frames are recycled pages that the receiver may have rewritten (a NAT director does), so
 *   it writes the frame afresh from xvs_gen_frame each time.
 * xvs_sink: the benchmark's receiver: counts IPv4 frames per CPU and drops them (the rest,
 *   ARP among it, goes to the stack).
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

/* The generator's frame: an IPv4 TCP packet without options (14 + 20 + 20 bytes). */
#define XVS_GEN_LEN 54
struct gen_frame {
	unsigned char data[XVS_GEN_LEN];
	unsigned char pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_frame);
} xvs_gen_frame SEC(".maps");

SEC("xdp")
int xvs_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_frame *f = bpf_map_lookup_elem(&xvs_gen_frame, &zero);
	if (!f || data + XVS_GEN_LEN > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, f->data, XVS_GEN_LEN);
	return XDP_TX;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} xvs_sink_count SEC(".maps");

SEC("xdp")
int xvs_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	/* ARP and IPv6 neighbour discovery go on: the director must keep resolving this host. */
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&xvs_sink_count, &zero);
	if (n)
		*n += 1;
	return XDP_DROP;
}
