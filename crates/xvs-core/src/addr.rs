//! Address families and the small hashes IPVS builds from addresses.

use core::net::IpAddr;

/// An address family: every service, real server and connection belongs to one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The unspecified address of this family (`0.0.0.0` or `::`).
    pub fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::from([0u8; 4]),
            Family::V6 => IpAddr::from([0u8; 16]),
        }
    }
}

/// The kernel's `addr_fold`: an IPv4 address as a host-order `u32`, or the XOR of the four
/// 32-bit words of an IPv6 address. Every IPVS hash of an address starts from this value
/// (`ntohl(addr_fold)`), and since XOR commutes with a byte swap, folding host-order words
/// gives the same number.
pub fn addr_fold(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            a.octets().chunks_exact(4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]])).fold(0, |acc, w| acc ^ w)
        }
    }
}

/// The kernel's `hash_32(val, bits)`: multiply by the 32-bit golden ratio and keep the top `bits`.
pub fn hash_32(val: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// Applies a persistence netmask to a client address (the template's "source network").
///
/// IPv4 masks are ANDed as given (the kernel does not require them to be contiguous); IPv6 masks
/// are prefix lengths.
pub fn mask_addr(addr: &IpAddr, mask: &crate::Netmask) -> IpAddr {
    match (addr, mask) {
        (IpAddr::V4(a), crate::Netmask::V4(m)) => IpAddr::V4((u32::from(*a) & u32::from(*m)).into()),
        (IpAddr::V6(a), crate::Netmask::V6(plen)) => {
            let plen = u32::from(*plen).min(128);
            let bits = u128::from(*a);
            let kept = if plen == 0 { 0 } else { bits & (u128::MAX << (128 - plen)) };
            IpAddr::V6(kept.into())
        }
        // A mask of the other family cannot be configured (validation rejects it); keep the
        // whole address rather than guess.
        _ => *addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_of_ipv4_is_the_host_order_value() {
        assert_eq!(addr_fold(&"198.18.0.1".parse().unwrap()), 0xC612_0001);
    }

    #[test]
    fn fold_of_ipv6_xors_the_words() {
        let a: IpAddr = "2001:2::1:0:0:5".parse().unwrap();
        // words 2001:0002, 0000:0000, 0001:0000, 0000:0005
        assert_eq!(addr_fold(&a), 0x2001_0002 ^ 0x0001_0000 ^ 5);
    }

    #[test]
    fn hash_32_matches_the_kernel_formula() {
        // (1 * 0x61C88647) >> 24 = 0x61
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 10), 0);
    }

    #[test]
    fn ipv6_prefix_mask() {
        let a: IpAddr = "2001:2::abcd:1".parse().unwrap();
        assert_eq!(mask_addr(&a, &crate::Netmask::V6(64)), "2001:2::".parse::<IpAddr>().unwrap());
        assert_eq!(mask_addr(&a, &crate::Netmask::V6(128)), a);
    }
}
