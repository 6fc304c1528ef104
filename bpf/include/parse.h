/* This file contains the packet parser: Ethernet, IPv4 (with options) or IPv6 (with up to four
 * extension headers), the TCP, UDP or SCTP ports, and what IPVS's state machines read: TCP's
 * flags, SCTP's first chunks. Everything the rest of the program needs is
 * copied into struct pkt, so later stages never re-read headers they have not bounds-checked.
 */
#ifndef XVS_PARSE_H
#define XVS_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "xvs_abi.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000

/* TCP flag bits as IPVS orders its events (reference §3.4). */
#define XVS_TCP_FIN 0x01
#define XVS_TCP_SYN 0x02
#define XVS_TCP_RST 0x04
#define XVS_TCP_ACK 0x10

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif
/* For SCTP, tcp_flags holds the state table's event (low four bits, XVS_SCTP_EV_*) and this bit
 * when the first chunk is an ABORT (which never opens a connection, even with sloppy_sctp). */
#define XVS_SCTP_FIRST_ABORT 0x80
#define XVS_SCTP_EV_INIT 1
#define XVS_SCTP_EV_MASK 0x0f
#define XVS_SCTP_CID_INIT 1
#define XVS_SCTP_CID_ABORT 6
#define XVS_SCTP_CID_COOKIE_ECHO 10
#define XVS_SCTP_CID_COOKIE_ACK 11
/* How far the chunk after a COOKIE_ECHO or COOKIE_ACK is looked for (a bundled ABORT). */
#define XVS_SCTP_MAX_SECOND 0x3ff0

/* The event a chunk type stands for (the kernel's sctp_events; unknown types are DATA). */
static __always_inline __u8 sctp_event(__u8 type)
{
	switch (type) {
	case 1: return 1;  /* INIT */
	case 2: return 2;  /* INIT_ACK */
	case 10: return 3; /* COOKIE_ECHO */
	case 11: return 4; /* COOKIE_ACK */
	case 7: return 5;  /* SHUTDOWN */
	case 8: return 6;  /* SHUTDOWN_ACK */
	case 14: return 7; /* SHUTDOWN_COMPLETE */
	case 9: return 8;  /* ERROR */
	case 6: return 9;  /* ABORT */
	default: return 0; /* DATA, SACK, HEARTBEAT(_ACK), ECNE, CWR, others */
	}
}

/* ICMP and ICMPv6 headers: <linux/icmp.h> drags in libc socket headers, so these are ours. */
struct xvs_icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 unused;
	__u16 mtu; /* next-hop MTU of "fragmentation needed"; the ICMPv6 too-big MTU spans both */
};
#define XVS_ICMP_DEST_UNREACH 3
#define XVS_ICMP_PORT_UNREACH 3
#define XVS_ICMP_FRAG_NEEDED 4
#define XVS_ICMP_TIME_EXCEEDED 11
#define XVS_ICMPV6_DEST_UNREACH 1
#define XVS_ICMPV6_PKT_TOOBIG 2
#define XVS_ICMPV6_PORT_UNREACH 4
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

/* Extension headers skipped before the transport header. */
#define XVS_MAX_EXT_HDRS 4

struct pkt {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;    /* network order */
	__u16 dport;    /* network order */
	__u16 l3_off;   /* from the start of the frame */
	__u16 l4_off;
	__u16 ip_len;   /* IP packet length, header included (what statistics count) */
	__u8 af;        /* XVS_AF_INET or XVS_AF_INET6 */
	__u8 proto;     /* transport protocol */
	__u8 tcp_flags; /* XVS_TCP_*; for SCTP the event and XVS_SCTP_FIRST_ABORT */
	__u8 ttl;
	__u8 icmp_type; /* for ICMP/ICMPv6 */
	__u8 fwm;       /* came through the firewall-mark device (xvs_lb_fwm): the kernel routed it */
	__u32 ifindex;  /* the interface it arrived on */
	__u32 fwmark;   /* the packet's firewall mark (only with fwm) */
	__u32 now;      /* ms of CLOCK_MONOTONIC when processing began */
	__u32 is_new;   /* set when this packet created its connection */
};

enum parse_result {
	PARSE_OK = 0,      /* TCP, UDP or SCTP with ports */
	PARSE_ICMP,        /* an ICMP or ICMPv6 message */
	PARSE_OTHER,       /* not IP, or another protocol: not ours */
	PARSE_FRAGMENT,    /* a fragment */
	PARSE_BAD,         /* malformed */
};

/* Parses the frame at [data, data_end).
 * @p: filled on PARSE_OK and PARSE_ICMP (addresses, protocol, offsets).
 * Returns: enum parse_result. Never reads outside the frame. */
static __always_inline int parse_packet(void *data, void *data_end, struct pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_BAD;
	__u16 off = sizeof(*eth);
	__u8 proto;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return PARSE_BAD;
		if (ip->version != 4 || ip->ihl < 5)
			return PARSE_BAD;
		__u16 hlen = ip->ihl * 4;
		__u16 tot = bpf_ntohs(ip->tot_len);
		if (tot < hlen || data + off + tot > data_end)
			return PARSE_BAD;
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return PARSE_FRAGMENT;
		p->af = XVS_AF_INET;
		p->saddr[0] = ip->saddr;
		p->daddr[0] = ip->daddr;
		p->saddr[1] = p->saddr[2] = p->saddr[3] = 0;
		p->daddr[1] = p->daddr[2] = p->daddr[3] = 0;
		p->l3_off = off;
		p->ip_len = tot;
		p->ttl = ip->ttl;
		proto = ip->protocol;
		off += hlen;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return PARSE_BAD;
		if (ip6->version != 6)
			return PARSE_BAD;
		__u16 plen = bpf_ntohs(ip6->payload_len);
		if (data + off + sizeof(*ip6) + plen > data_end)
			return PARSE_BAD;
		p->af = XVS_AF_INET6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		p->l3_off = off;
		p->ip_len = sizeof(*ip6) + plen;
		p->ttl = ip6->hop_limit;
		proto = ip6->nexthdr;
		off += sizeof(*ip6);
#pragma unroll
		for (int i = 0; i < XVS_MAX_EXT_HDRS; i++) {
			if (proto == IPPROTO_FRAGMENT)
				return PARSE_FRAGMENT;
			if (proto != IPPROTO_HOPOPTS && proto != IPPROTO_ROUTING && proto != IPPROTO_DSTOPTS)
				break;
			struct ipv6_opt_hdr *ext = data + off;
			if ((void *)(ext + 1) > data_end)
				return PARSE_BAD;
			/* A routing header with segments left: the destination is a waypoint, not the
			 * packet's final one, so it is not a VIP's packet to balance (the kernel's). */
			if (proto == IPPROTO_ROUTING) {
				__u8 *rh = (void *)ext;
				if ((void *)(rh + 4) > data_end)
					return PARSE_BAD;
				if (rh[3])
					return PARSE_OTHER;
			}
			proto = ext->nexthdr;
			off += (ext->hdrlen + 1) * 8;
		}
		if (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING || proto == IPPROTO_DSTOPTS ||
		    proto == IPPROTO_FRAGMENT)
			return PARSE_OTHER; /* more extension headers than we walk: the kernel's */
	} else {
		return PARSE_OTHER;
	}

	p->proto = proto;
	p->l4_off = off;
	p->tcp_flags = 0;
	p->sport = p->dport = 0;
	if (off > 1500)
		return PARSE_BAD;
	/* Transport headers must lie within the IP packet, not in the frame's Ethernet padding. */
	__u32 l4_room = (__u32)p->l3_off + p->ip_len;
	if (off > l4_room)
		return PARSE_BAD;
	l4_room -= off;

	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = data + off;
		if ((void *)(th + 1) > data_end)
			return PARSE_BAD;
		if (th->doff < 5 || th->doff * 4 > l4_room)
			return PARSE_BAD;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = (th->fin ? XVS_TCP_FIN : 0) | (th->syn ? XVS_TCP_SYN : 0) |
			       (th->rst ? XVS_TCP_RST : 0) | (th->ack ? XVS_TCP_ACK : 0);
		return PARSE_OK;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = data + off;
		if ((void *)(uh + 1) > data_end)
			return PARSE_BAD;
		if (bpf_ntohs(uh->len) < sizeof(*uh) || bpf_ntohs(uh->len) > l4_room)
			return PARSE_BAD;
		p->sport = uh->source;
		p->dport = uh->dest;
		return PARSE_OK;
	}
	if (proto == IPPROTO_SCTP) {
		/* The common header (ports, tag, checksum), then at least one chunk header: the
		 * kernel drops an SCTP packet without one. */
		__u8 *sh = data + off;
		if ((void *)(sh + 16) > data_end || l4_room < 16)
			return PARSE_BAD;
		p->sport = *(__u16 *)sh;
		p->dport = *(__u16 *)(sh + 2);
		__u8 first = sh[12], type = first;
		/* An ABORT bundled after a COOKIE_ECHO or COOKIE_ACK is the event (set_sctp_state). */
		if (first == XVS_SCTP_CID_COOKIE_ECHO || first == XVS_SCTP_CID_COOKIE_ACK) {
			__u32 clen = bpf_ntohs(*(__u16 *)(sh + 14));
			__u32 next = 12 + ((clen + 3) & ~3u);
			if (clen >= 4 && next <= XVS_SCTP_MAX_SECOND && next + 4 <= l4_room) {
				__u8 *second = sh + next;
				if ((void *)(second + 4) <= data_end && second[0] == XVS_SCTP_CID_ABORT)
					type = XVS_SCTP_CID_ABORT;
			}
		}
		p->tcp_flags = sctp_event(type) | (first == XVS_SCTP_CID_ABORT ? XVS_SCTP_FIRST_ABORT : 0);
		return PARSE_OK;
	}
	if ((proto == IPPROTO_ICMP && p->af == XVS_AF_INET) || (proto == IPPROTO_ICMPV6 && p->af == XVS_AF_INET6)) {
		struct xvs_icmphdr *ic = data + off;
		if ((void *)(ic + 1) > data_end || sizeof(*ic) > l4_room)
			return PARSE_BAD;
		p->icmp_type = ic->type;
		return PARSE_ICMP;
	}
	return PARSE_OTHER;
}

#endif
