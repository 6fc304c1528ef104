//! VRRP advertisements on the wire: version 2 (RFC 3768, IPv4, with keepalived's simple
//! password) and version 3 (RFC 5798, IPv4 and IPv6).
//!
//! ```text
//!  0               1               2               3
//! |Ver=2|Type=1| VRID | Priority | Count IP | Auth Type | Adver Int (s) | Checksum |
//! |Ver=3|Type=1| VRID | Priority | Count IP | Rsvd(4) Max Adver Int (cs, 12 bits)  | Checksum |
//! | addresses: Count × 4 (IPv4) or × 16 (IPv6)                                     |
//! | v2 only: authentication data, 8 bytes                                          |
//! ```
//!
//! The version-2 checksum covers the VRRP message only; the version-3 checksum also covers the
//! IP pseudo-header (for IPv4 too), which is why [`Advert::parse`] and [`Advert::emit`] take
//! the packet's source and destination. [`Advert::parse`] never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// IP protocol number of VRRP.
pub const PROTO: u8 = 112;
/// The IPv4 multicast group of VRRP.
pub const GROUP4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP.
pub const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit every advertisement is sent with and multicast ones must arrive with.
pub const TTL: u8 = 255;
/// The only packet type, ADVERTISEMENT.
const TYPE_ADVERT: u8 = 1;
/// The fixed header, before the addresses.
const HEADER_LEN: usize = 8;
/// Version 2's authentication data.
const AUTH_LEN: usize = 8;
/// Version 2's authentication types (2, IPsec AH, is refused).
const AUTH_NONE: u8 = 0;
const AUTH_PASS: u8 = 1;

/// The protocol version.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in seconds, optional simple password.
    V2,
    /// RFC 5798: IPv4 and IPv6, interval in centiseconds, no authentication.
    V3,
}

impl Version {
    /// The number in the header.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// Why an advertisement was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// Shorter than its header or than its address count says.
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    /// Not version 2 or 3.
    #[error("unknown VRRP version {0}")]
    Version(u8),
    /// Not an ADVERTISEMENT.
    #[error("unknown VRRP packet type {0}")]
    Type(u8),
    /// The checksum does not match.
    #[error("bad checksum")]
    Checksum,
    /// Version 2 over IPv6, which does not exist.
    #[error("VRRP version 2 is IPv4 only")]
    V2OverIpv6,
    /// Version 2 with IPsec AH or an unknown authentication type.
    #[error("unsupported authentication type {0}")]
    AuthType(u8),
    /// An interval of 0.
    #[error("advertisement interval 0")]
    Interval,
}

/// A parsed advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id, 1–255.
    pub vrid: u8,
    /// The sender's priority: 0 = it stops being master, 255 = it owns the addresses.
    pub priority: u8,
    /// The advertisement interval in centiseconds (version 2 carries whole seconds).
    pub interval_cs: u16,
    /// Version 2 simple password (8 bytes, zero padded), when the sender uses one.
    pub password: Option<[u8; AUTH_LEN]>,
    /// The virtual addresses, in the sender's order, all of the packet's family.
    pub addrs: Vec<IpAddr>,
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IP pseudo-header version 3 checksums over.
fn pseudo(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, PROTO]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (s, d) => {
            p.extend_from_slice(&v6(s).octets());
            p.extend_from_slice(&v6(d).octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, PROTO]);
        }
    }
    p
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

impl Advert {
    /// Parses the VRRP message of a packet from `src` to `dst` (the IP header already removed).
    /// Trailing bytes after the message (Ethernet padding) are ignored, as keepalived does.
    pub fn parse(src: IpAddr, dst: IpAddr, b: &[u8]) -> Result<Advert, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated(b.len()));
        }
        let version = match b[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            v => return Err(WireError::Version(v)),
        };
        if b[0] & 0x0f != TYPE_ADVERT {
            return Err(WireError::Type(b[0] & 0x0f));
        }
        let v4 = src.is_ipv4();
        if version == Version::V2 && !v4 {
            return Err(WireError::V2OverIpv6);
        }
        let count = usize::from(b[3]);
        let alen = if v4 { 4 } else { 16 };
        let len = HEADER_LEN + count * alen + if version == Version::V2 { AUTH_LEN } else { 0 };
        if b.len() < len {
            return Err(WireError::Truncated(b.len()));
        }
        let msg = &b[..len];
        let ok = match version {
            Version::V2 => checksum(&[msg]) == 0,
            // Older keepalived summed unicast version-3 adverts as if sent to the group;
            // keepalived 2.2 accepts both forms, and so do we.
            Version::V3 => {
                checksum(&[&pseudo(src, dst, len), msg]) == 0
                    || (v4 && checksum(&[&pseudo(src, IpAddr::V4(GROUP4), len), msg]) == 0)
            }
        };
        if !ok {
            return Err(WireError::Checksum);
        }
        let (interval_cs, password) = match version {
            Version::V2 => {
                let pw = match b[4] {
                    AUTH_NONE => None,
                    AUTH_PASS => {
                        let mut p = [0u8; AUTH_LEN];
                        p.copy_from_slice(&msg[len - AUTH_LEN..]);
                        Some(p)
                    }
                    t => return Err(WireError::AuthType(t)),
                };
                (u16::from(b[5]) * 100, pw)
            }
            Version::V3 => (u16::from_be_bytes([b[4], b[5]]) & 0x0fff, None),
        };
        if interval_cs == 0 {
            return Err(WireError::Interval);
        }
        let addrs = msg[HEADER_LEN..HEADER_LEN + count * alen]
            .chunks_exact(alen)
            .map(|c| match c.len() {
                4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16 bytes"))),
            })
            .collect();
        Ok(Advert { version, vrid: b[1], priority: b[2], interval_cs, password, addrs })
    }

    /// The message to send from `src` to `dst` (the kernel adds the IP header). Addresses of
    /// the other family are left out; at most 255 are sent.
    pub fn emit(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let v4 = src.is_ipv4();
        let addrs: Vec<&IpAddr> = self.addrs.iter().filter(|a| a.is_ipv4() == v4).take(255).collect();
        let mut b = vec![(self.version.number() << 4) | TYPE_ADVERT, self.vrid, self.priority, addrs.len() as u8];
        match self.version {
            Version::V2 => {
                b.push(if self.password.is_some() { AUTH_PASS } else { AUTH_NONE });
                b.push((self.interval_cs / 100).clamp(1, 255) as u8);
            }
            Version::V3 => b.extend_from_slice(&self.interval_cs.clamp(1, 0x0fff).to_be_bytes()),
        }
        b.extend_from_slice(&[0, 0]);
        for a in addrs {
            match a {
                IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            b.extend_from_slice(&self.password.unwrap_or_default());
        }
        let sum = match self.version {
            Version::V2 => checksum(&[&b]),
            Version::V3 => checksum(&[&pseudo(src, dst, b.len()), &b]),
        };
        b[6..8].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// Pads or cuts a password to the 8 bytes version 2 carries (keepalived keeps the first 8).
pub fn password(s: &str) -> [u8; AUTH_LEN] {
    let mut p = [0u8; AUTH_LEN];
    for (d, s) in p.iter_mut().zip(s.bytes()) {
        *d = s;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A version-2 advertisement as keepalived sends it for `virtual_router_id 51`, priority
    /// 100, advert_int 1, `auth_type PASS` / `auth_pass 1111`, one VIP 198.18.0.100.
    #[rustfmt::skip]
    static V2_PASS: [u8; 20] = [
        0x21, 51, 100, 1,        // version 2, type 1; VRID; priority; one address
        1, 1,                    // auth type PASS; interval 1 s
        0x00, 0x00,              // checksum (filled below)
        198, 18, 0, 100,         // the VIP
        b'1', b'1', b'1', b'1', 0, 0, 0, 0, // the password, zero padded
    ];

    #[test]
    fn v2_round_trip_and_checksum() {
        let (s, d) = (ip("198.18.1.2"), IpAddr::V4(GROUP4));
        let a = Advert {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            password: Some(password("1111")),
            addrs: vec![ip("198.18.0.100")],
        };
        let b = a.emit(s, d);
        assert_eq!(b[..6], V2_PASS[..6]);
        assert_eq!(b[8..], V2_PASS[8..]);
        assert_eq!(checksum(&[&b]), 0);
        assert_eq!(Advert::parse(s, d, &b).unwrap(), a);
        // Padding after the message is ignored.
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 26]);
        assert_eq!(Advert::parse(s, d, &padded).unwrap(), a);
        // One flipped bit anywhere is a bad checksum.
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(Advert::parse(s, d, &c).is_err(), "byte {i}");
        }
    }

    #[test]
    fn v3_checksum_covers_the_pseudo_header() {
        let (s, d) = (ip("198.18.1.2"), IpAddr::V4(GROUP4));
        let a = Advert {
            version: Version::V3,
            vrid: 7,
            priority: 150,
            interval_cs: 50,
            password: None,
            addrs: vec![ip("198.18.0.100"), ip("198.18.0.101")],
        };
        let b = a.emit(s, d);
        assert_eq!(b.len(), 8 + 8);
        assert_eq!(&b[4..6], &[0, 50]);
        assert_eq!(Advert::parse(s, d, &b).unwrap(), a);
        // From another source the same bytes fail: the pseudo-header is part of the sum.
        assert_eq!(Advert::parse(ip("198.18.1.3"), d, &b), Err(WireError::Checksum));
        // Unicast: summed with the peer as destination, or (older keepalived) the group.
        let peer = ip("198.18.1.3");
        assert_eq!(Advert::parse(s, peer, &a.emit(s, peer)).unwrap(), a);
        assert_eq!(Advert::parse(s, peer, &b).unwrap(), a);
        let (s6, d6) = (ip("fe80::1"), IpAddr::V6(GROUP6));
        let a6 = Advert { addrs: vec![ip("2001:2::100")], ..a };
        let b6 = a6.emit(s6, d6);
        assert_eq!(b6.len(), 8 + 16);
        assert_eq!(Advert::parse(s6, d6, &b6).unwrap(), a6);
    }

    #[test]
    fn malformed_is_refused_never_panics() {
        let (s, d) = (ip("198.18.1.2"), IpAddr::V4(GROUP4));
        assert_eq!(Advert::parse(s, d, &[0x21, 1, 1]), Err(WireError::Truncated(3)));
        assert_eq!(Advert::parse(s, d, &[0x41, 1, 1, 0, 0, 1, 0, 0]), Err(WireError::Version(4)));
        assert_eq!(Advert::parse(s, d, &[0x22, 1, 1, 0, 0, 1, 0, 0]), Err(WireError::Type(2)));
        assert_eq!(Advert::parse(s, d, &[0x21, 1, 1, 5, 0, 1, 0, 0]), Err(WireError::Truncated(8)));
        let v2 = Advert { version: Version::V2, vrid: 1, priority: 1, interval_cs: 100, password: None, addrs: vec![] };
        assert_eq!(Advert::parse(ip("fe80::1"), IpAddr::V6(GROUP6), &v2.emit(s, d)), Err(WireError::V2OverIpv6));
        // Every prefix and every byte value of a valid message, without a panic.
        let b = Advert { addrs: vec![ip("198.18.0.1"); 3], ..v2 }.emit(s, d);
        for n in 0..b.len() {
            let _ = Advert::parse(s, d, &b[..n]);
        }
        for i in 0..b.len() {
            for v in 0..=255u8 {
                let mut c = b.clone();
                c[i] = v;
                let _ = Advert::parse(s, d, &c);
            }
        }
    }
}
