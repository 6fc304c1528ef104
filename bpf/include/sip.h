/* The sip persistence engine's Call-ID parser (ip_vs_pe_sip.c's get_callid over conntrack's
 * ct_sip_get_header and callid_len), byte for byte as the kernel reads a UDP payload. It runs
 * as a state machine, one byte per bpf_loop step, over the payload copied into a per-CPU
 * buffer; crates/xvs-core/src/pe_sip.rs is the same algorithm written plainly, and both are
 * checked against the kernel's answers for the payloads in testdata/kernel/sip-payloads.txt.
 * Only the first XVS_SIP_MAX bytes of a payload are read.
 */
#ifndef XVS_SIP_H
#define XVS_SIP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "xvs_abi.h"

#define XVS_SIP_MAX 2048

enum sip_state {
	SIP_SCAN,    /* looking for a line terminator */
	SIP_CR,      /* just after a CR: an LF belongs to it */
	SIP_LINE,    /* at the first byte of a line */
	SIP_NAME,    /* matching "Call-Id" (k bytes matched) */
	SIP_COMPACT, /* after "i": the next byte must not be a letter */
	SIP_WS1,     /* blanks before the colon */
	SIP_WS2,     /* blanks after the colon */
	SIP_FOLD,    /* after a line terminator inside blanks: a folded line must follow */
	SIP_FOLD_CR, /* the same, after a CR */
	SIP_FOLD_WS, /* blanks that start the folded line */
	SIP_VALUE,   /* the Call-ID word */
	SIP_DOMAIN,  /* the word after its '@' */
	SIP_DONE,    /* found (off, len) or failed (len 0) */
};

struct sip_parse {
	__u8 buf[XVS_SIP_MAX];
	__u32 n;        /* payload bytes in buf */
	__u32 state;
	__u32 k;        /* name bytes matched */
	__u32 after;    /* SIP_FOLD*: 1 before the colon, 2 after it */
	__u32 dataoff;  /* where the current search started (get_callid's dataoff) */
	__u32 skip;     /* bytes before this are not looked at (a restarted search) */
	__u32 off;      /* the value's start */
	__u32 len;      /* word bytes; the value's length when done */
	__u32 dlen;     /* domain bytes */
	__u32 found;
	struct xvs_sip_key key; /* the template key pick() completes */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sip_parse);
} xvs_sip_scratch SEC(".maps");

/* The kernel's isalpha (lib/ctype.c): ASCII and Latin-1 letters. */
static __always_inline int sip_alpha(__u8 c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xc0 && c != 0xd7 && c != 0xf7);
}

/* iswordc */
static __always_inline int sip_word(__u8 c)
{
	return sip_alpha(c) || (c >= '0' && c <= '9') || c == '!' || c == '"' || c == '%' || (c >= '(' && c <= '+') ||
	       c == ':' || c == '<' || c == '>' || c == '?' || (c >= '[' && c <= ']') || c == '_' || c == '`' ||
	       c == '{' || c == '}' || c == '~' || (c >= '-' && c <= '/') || c == '\'';
}

static __always_inline __u8 sip_lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* An empty value (callid_len 0) at `v`: get_callid searches again from dataoff + v. The bytes
 * between are word bytes, never a line terminator, so resuming the scan here or there is the
 * same. */
static __always_inline void sip_restart(struct sip_parse *s, __u32 v, __u32 i, __u8 c)
{
	s->dataoff += v;
	s->skip = s->dataoff;
	s->state = SIP_SCAN;
	if (s->skip <= i && (c == '\r' || c == '\n'))
		s->state = SIP_CR + (c == '\n'); /* this byte ends a line: CR → SIP_CR, LF → SIP_LINE */
}

/* bpf_loop's context must be on the stack: it carries the per-CPU parse. */
struct sip_loop {
	struct sip_parse *s;
};

static long sip_step(__u64 index, void *ctx)
{
	struct sip_parse *s = ((struct sip_loop *)ctx)->s;
	if (!s)
		return 1;
	__u32 i = (__u32)index;
	if (i >= s->n || s->state == SIP_DONE)
		return 1;
	if (i < s->skip)
		return 0;
	__u8 c = s->buf[i & (XVS_SIP_MAX - 1)];
	switch (s->state) {
	case SIP_CR:
		if (c == '\n') {
			s->state = SIP_LINE;
			return 0;
		}
		/* fall through: this byte starts the line */
	case SIP_LINE:
		if (c == ' ' || c == '\t') {
			s->state = SIP_SCAN; /* a continuation line */
			return 0;
		}
		if (sip_lower(c) == 'c' && s->n - i >= 7) {
			s->state = SIP_NAME;
			s->k = 1;
			return 0;
		}
		if (sip_lower(c) == 'i' && s->n - i >= 2) {
			s->state = SIP_COMPACT;
			return 0;
		}
		s->state = SIP_SCAN;
		return 0;
	case SIP_NAME: {
		const char name[8] = "call-id";
		__u32 k = s->k & 7;
		if (sip_lower(c) == (__u8)name[k]) {
			s->k = k + 1;
			if (s->k == 7)
				s->state = SIP_WS1;
			return 0;
		}
		break; /* not the name: this byte is scanned */
	}
	case SIP_COMPACT:
		if (!sip_alpha(c)) {
			s->state = SIP_WS1;
			goto ws1;
		}
		break;
	case SIP_WS1:
	ws1:
		if (c == ' ' || c == '\t')
			return 0;
		if (c == '\r' || c == '\n') {
			s->after = 1;
			s->state = c == '\r' ? SIP_FOLD_CR : SIP_FOLD;
			return 0;
		}
		if (c != ':' || i + 1 >= s->n) {
			s->state = SIP_DONE; /* a header without its colon ends the search */
			return 1;
		}
		s->state = SIP_WS2;
		return 0;
	case SIP_FOLD_CR:
		if (c == '\n') {
			s->state = SIP_FOLD;
			return 0;
		}
		/* fall through */
	case SIP_FOLD:
		if (c != ' ' && c != '\t') {
			s->state = SIP_DONE; /* not a folded line: nothing found */
			return 1;
		}
		s->state = SIP_FOLD_WS;
		return 0;
	case SIP_FOLD_WS:
		if (c == ' ' || c == '\t')
			return 0;
		/* sip_skip_whitespace stops after one folded line break */
		if (s->after == 1) {
			if (c != ':' || i + 1 >= s->n) {
				s->state = SIP_DONE;
				return 1;
			}
			s->state = SIP_WS2;
			return 0;
		}
		goto value;
	case SIP_WS2:
		if (c == ' ' || c == '\t')
			return 0;
		if (c == '\r' || c == '\n') {
			s->after = 2;
			s->state = c == '\r' ? SIP_FOLD_CR : SIP_FOLD;
			return 0;
		}
	value:
		s->off = i;
		s->len = 0;
		s->state = SIP_VALUE;
		/* fall through */
	case SIP_VALUE:
		if (sip_word(c)) {
			s->len++;
			return 0;
		}
		if (s->len && c == '@') {
			s->dlen = 0;
			s->state = SIP_DOMAIN;
			return 0;
		}
		if (!s->len) {
			sip_restart(s, s->off, i, c);
			return 0;
		}
		goto done;
	case SIP_DOMAIN:
		if (sip_word(c)) {
			s->dlen++;
			return 0;
		}
		if (!s->dlen) {
			sip_restart(s, s->off, i, c);
			return 0;
		}
		s->len += 1 + s->dlen;
		goto done;
	default:
		break;
	}
	/* SIP_SCAN, and the bytes a failed name match leaves */
	if (c == '\r')
		s->state = SIP_CR;
	else if (c == '\n')
		s->state = SIP_LINE;
	else
		s->state = SIP_SCAN;
	return 0;
done:
	/* get_callid: at most 255 bytes, followed at once by CR or LF */
	s->found = s->len <= XVS_PEDATA_MAX && (c == '\r' || c == '\n');
	s->state = SIP_DONE;
	return 1;
}

/* Finds the Call-ID of the UDP payload at [start, start + n) of the frame.
 * Returns: the per-CPU parse with found set and the value at buf[off, off + len), or NULL. */
static __always_inline struct sip_parse *sip_call_id(struct xdp_md *ctx, __u32 start, __u32 n)
{
	__u32 zero = 0;
	struct sip_parse *s = bpf_map_lookup_elem(&xvs_sip_scratch, &zero);
	if (!s || n == 0)
		return NULL;
	if (n > XVS_SIP_MAX)
		n = XVS_SIP_MAX;
	if (bpf_xdp_load_bytes(ctx, start, s->buf, n))
		return NULL;
	s->n = n;
	s->state = SIP_SCAN;
	s->k = 0;
	s->after = 0;
	s->dataoff = 0;
	s->skip = 0;
	s->off = 0;
	s->len = 0;
	s->dlen = 0;
	s->found = 0;
	struct sip_loop loop = { .s = s };
	bpf_loop(XVS_SIP_MAX, sip_step, &loop, 0);
	if (!s->found)
		return NULL;
	/* The Call-ID into the template key, the rest of which pick() fills. */
	__builtin_memset(&s->key, 0, sizeof(s->key));
	__u32 len = s->len & 0xff;
	if (!len || bpf_xdp_load_bytes(ctx, start + s->off, s->key.callid, len))
		return NULL;
	s->key.len = len;
	return s;
}

/* The sip template key of a new connection: the masked client and the virtual address and
 * port as tpl_key makes them, with the Call-ID sip_call_id found. */
static __always_inline struct xvs_sip_key *sip_key(__u8 af, const union conn_key *k, const struct xvs_svc *svc)
{
	__u32 zero = 0;
	struct sip_parse *s = bpf_map_lookup_elem(&xvs_sip_scratch, &zero);
	if (!s)
		return NULL;
	union conn_key t;
	tpl_key(af, k, svc, svc->port, &t);
	if (af == XVS_AF_INET) {
		s->key.caddr[0] = t.k4.caddr;
		s->key.vaddr[0] = t.k4.vaddr;
		s->key.vport = t.k4.vport;
		s->key.proto = t.k4.proto;
	} else {
		__builtin_memcpy(s->key.caddr, t.k6.caddr, 16);
		__builtin_memcpy(s->key.vaddr, t.k6.vaddr, 16);
		s->key.vport = t.k6.vport;
		s->key.proto = t.k6.proto;
	}
	s->key.af = af;
	return &s->key;
}

#endif
