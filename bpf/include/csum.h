/* This file contains one's-complement checksum helpers for incremental updates (RFC 1624).
 * Every value is handled in network byte order as it sits in the packet; one's-complement
 * arithmetic does not care about byte order as long as all operands agree.
 */
#ifndef XVS_CSUM_H
#define XVS_CSUM_H

#include <linux/types.h>

/* Adds with end-around carry. */
static __always_inline __u32 csum_add(__u32 csum, __u32 addend)
{
	csum += addend;
	return csum + (csum < addend);
}

/* Folds a 32-bit sum to 16 bits and inverts it. */
static __always_inline __u16 csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

/* Updates checksum *sum for a 32-bit field changing from `from` to `to`. */
static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u32 c = (__u16)~*sum;
	c = csum_add(c, ~from);
	c = csum_add(c, to);
	*sum = csum_fold(c);
}

/* Updates checksum *sum for a 16-bit field changing from `from` to `to`. */
static __always_inline void csum_replace2(__u16 *sum, __u16 from, __u16 to)
{
	__u32 c = (__u16)~*sum;
	c = csum_add(c, (__u16)~from);
	c = csum_add(c, to);
	*sum = csum_fold(c);
}

/* Updates *sum for an IPv6 address (four words) changing from `from` to `to`. */
static __always_inline void csum_replace16(__u16 *sum, const __u32 *from, const __u32 *to)
{
	__u32 c = (__u16)~*sum;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		c = csum_add(c, ~from[i]);
		c = csum_add(c, to[i]);
	}
	*sum = csum_fold(c);
}

/* The IPv4 header checksum of a 20-byte header, computed from scratch. */
static __always_inline __u16 ipv4_csum(const __u16 *hdr)
{
	__u32 c = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		c += hdr[i];
	return csum_fold(c);
}

#endif
