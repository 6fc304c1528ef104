//! The sip persistence engine (`ip_vs_pe_sip.c`): a persistent UDP service whose templates are
//! keyed by the SIP Call-ID of the datagram as well as the (masked) client, so that every
//! message of a call reaches the same real server whatever port or proxy it comes through.
//!
//! [`call_id`] finds the Call-ID exactly as the kernel's `get_callid` does with conntrack's
//! header parser (`ct_sip_get_header`, `callid_len`): byte for byte, including its quirks — the
//! first line is never a header, a name is matched as a case-insensitive prefix, a line that
//! names the header but has no colon ends the search, and the value must be followed at once by
//! CR or LF. A datagram without one is dropped by a service with the engine (not scheduled
//! by source address instead).

/// `IP_VS_PEDATA_MAXLEN`: the longest Call-ID kept.
pub const MAX_LEN: usize = 255;

/// A Call-ID: up to [`MAX_LEN`] bytes, compared as bytes.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct CallId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl CallId {
    /// The Call-ID's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// A Call-ID of these bytes (at most [`MAX_LEN`]).
    pub fn new(value: &[u8]) -> Option<CallId> {
        if value.is_empty() || value.len() > MAX_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_LEN];
        bytes[..value.len()].copy_from_slice(value);
        Some(CallId { len: value.len() as u8, bytes })
    }
}

impl core::fmt::Debug for CallId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CallId({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The kernel's `isalpha` (`lib/ctype.c`): ASCII letters and the Latin-1 letters.
fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic() || (c >= 0xc0 && c != 0xd7 && c != 0xf7)
}

/// `iswordc`: the bytes a Call-ID word is made of.
fn is_word(c: u8) -> bool {
    is_alpha(c)
        || c.is_ascii_digit()
        || matches!(c, b'!' | b'"' | b'%' | b'('..=b'+' | b':' | b'<' | b'>' | b'?' | b'['..=b']' | b'_')
        || matches!(c, b'`' | b'{' | b'}' | b'~' | b'-'..=b'/' | b'\'')
}

fn word_len(d: &[u8], at: usize) -> usize {
    d[at.min(d.len())..].iter().take_while(|c| is_word(**c)).count()
}

/// `callid_len`: a word, and `@` and a second word when one follows.
fn callid_len(d: &[u8], at: usize) -> usize {
    let len = word_len(d, at);
    let end = at + len;
    if len == 0 || end == d.len() || d[end] != b'@' {
        return len;
    }
    let domain = word_len(d, end + 1);
    if domain == 0 {
        return 0;
    }
    len + 1 + domain
}

/// `sip_follow_continuation` from the line terminator at `at`: the first byte of the folded
/// line's text, or None when the next line is not a continuation.
fn follow_continuation(d: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    if i >= d.len() {
        return None;
    }
    if d[i - 1] == b'\r' && d[i] == b'\n' {
        i += 1;
        if i >= d.len() {
            return None;
        }
    }
    if d[i] != b' ' && d[i] != b'\t' {
        return None;
    }
    while i < d.len() && (d[i] == b' ' || d[i] == b'\t') {
        i += 1;
    }
    Some(i)
}

/// `sip_skip_whitespace`: past blanks and one folded line break.
fn skip_whitespace(d: &[u8], mut i: usize) -> Option<usize> {
    while i < d.len() {
        match d[i] {
            b' ' | b'\t' => i += 1,
            b'\r' | b'\n' => return follow_continuation(d, i),
            _ => break,
        }
    }
    Some(i)
}

enum Header {
    /// Not found (0).
    None,
    /// A Call-ID header with an empty value (-1): where its value would start.
    Empty(usize),
    /// Found (1): offset and length.
    Found(usize, usize),
}

/// `ct_sip_get_header(..., SIP_HDR_CALL_ID, ...)` from offset `from`.
fn get_header(d: &[u8], from: usize) -> Header {
    let limit = d.len();
    let mut i = from;
    while i < limit {
        // Find the beginning of a line.
        if d[i] != b'\r' && d[i] != b'\n' {
            i += 1;
            continue;
        }
        i += 1;
        if i >= limit {
            break;
        }
        if d[i - 1] == b'\r' && d[i] == b'\n' {
            i += 1;
            if i >= limit {
                break;
            }
        }
        // Continuation lines are skipped.
        if d[i] == b' ' || d[i] == b'\t' {
            i += 1;
            continue;
        }
        // The name, or the compact name followed by a non-letter.
        if limit - i >= 7 && d[i..i + 7].eq_ignore_ascii_case(b"Call-Id") {
            i += 7;
        } else if limit - i >= 2 && d[i].eq_ignore_ascii_case(&b'i') && !is_alpha(d[i + 1]) {
            i += 1;
        } else {
            i += 1;
            continue;
        }
        // The colon, with blanks around it; a header without one ends the search.
        let Some(j) = skip_whitespace(d, i) else { break };
        if j >= limit || d[j] != b':' {
            break;
        }
        if j + 1 >= limit {
            break;
        }
        let Some(v) = skip_whitespace(d, j + 1) else { break };
        let len = if v < limit { callid_len(d, v) } else { 0 };
        if len == 0 {
            return Header::Empty(v);
        }
        return Header::Found(v, len);
    }
    Header::None
}

/// The Call-ID of a UDP payload (the bytes after the UDP header, to the end of the IP packet),
/// or None where the kernel's `get_callid` fails.
pub fn call_id(payload: &[u8]) -> Option<CallId> {
    let mut dataoff = 0usize;
    let (off, len) = loop {
        if dataoff > payload.len() {
            return None;
        }
        match get_header(payload, dataoff) {
            Header::Found(off, len) => break (off, len),
            Header::None => return None,
            // The kernel adds the (absolute) offset to where it started.
            Header::Empty(off) => dataoff += off,
        }
    };
    if len > MAX_LEN || off + len == payload.len() {
        return None;
    }
    if payload[off + len] != b'\r' && payload[off + len] != b'\n' {
        return None;
    }
    CallId::new(&payload[off..off + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &[u8]) -> Option<String> {
        call_id(p).map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned())
    }

    #[test]
    fn a_request_s_call_id_is_found() {
        let invite = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP pc33.example.com\r\n\
                       Call-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\n\r\n";
        assert_eq!(id(invite).as_deref(), Some("a84b4c76e66710@pc33.example.com"));
    }

    #[test]
    fn names_values_and_line_ends_as_the_kernel_reads_them() {
        let cases: &[(&[u8], Option<&str>)] = &[
            // Case-insensitive, compact form, blanks around the colon, LF-only lines.
            (b"X\ncall-id  :\tabc\n", Some("abc")),
            (b"X\r\ni: abc@host\r\n", Some("abc@host")),
            (b"X\r\nI:abc\r\n", Some("abc")),
            // A folded value.
            (b"X\r\nCall-ID:\r\n  folded\r\n", Some("folded")),
            // The first line is never a header.
            (b"Call-ID: abc\r\n", None),
            // The value must end the line at once: a parameter or a blank after it fails.
            (b"X\r\nCall-ID: abc;tag=1\r\n", None),
            (b"X\r\nCall-ID: abc \r\n", None),
            // At the very end of the datagram, without a line terminator: refused.
            (b"X\r\nCall-ID: abc", None),
            // An empty domain makes the value empty: the search goes on from there.
            (b"X\r\nCall-ID: abc@\r\nCall-ID: second\r\n", Some("second")),
            // "i" followed by a letter is another header; "Call-IDx" is still Call-ID by
            // prefix, and without a colon it ends the search.
            (b"X\r\nIf-Match: 1\r\ni: abc\r\n", Some("abc")),
            (b"X\r\nCall-IDx: abc\r\n", None),
            (b"X\r\ni=1\r\ni: abc\r\n", None),
            // Continuation lines are not headers.
            (b"X\r\n i: abc\r\n", None),
            // Latin-1 letters are word bytes; a byte outside the set ends the value.
            (b"X\r\ni: caf\xe9\r\n", Some("caf\u{fffd}")),
            (b"X\r\ni: a$b\r\n", None),
        ];
        for (payload, want) in cases {
            assert_eq!(id(payload).as_deref(), *want, "{:?}", String::from_utf8_lossy(payload));
        }
    }

    #[test]
    fn at_most_255_bytes() {
        let mut p = b"X\r\ni: ".to_vec();
        p.extend(std::iter::repeat_n(b'a', 255));
        p.extend_from_slice(b"\r\n");
        assert_eq!(call_id(&p).map(|c| c.as_bytes().len()), Some(255));
        p.insert(10, b'a');
        assert_eq!(call_id(&p), None);
    }
}
