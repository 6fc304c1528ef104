//! Connections shared by the scenario tests.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr};
use xvs_sync::*;

/// An IPv4 address.
pub fn ip4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Client `i` on a NAT TCP service, ESTABLISHED, 900 s.
pub fn tcp(i: u16) -> SyncConn {
    SyncConn {
        protocol: proto::TCP,
        flags: conn_flags::MASQ,
        state: tcp_state::ESTABLISHED,
        caddr: ip4(198, 18, 1, 2),
        cport: 10000 + i,
        vaddr: ip4(198, 18, 0, 100),
        vport: 80,
        daddr: ip4(198, 18, 2, 2),
        dport: 80,
        fwmark: 0,
        timeout_s: 900,
        seq: None,
        pe: None,
    }
}

/// A persistence template for client 198.18.1.2 on port 0 of 198.18.0.100, 360 s.
pub fn template() -> SyncConn {
    SyncConn {
        protocol: proto::TCP,
        flags: conn_flags::TEMPLATE | conn_flags::DROUTE,
        state: tpl_state::NONE,
        caddr: ip4(198, 18, 1, 2),
        cport: 0,
        vaddr: ip4(198, 18, 0, 100),
        vport: 0,
        daddr: ip4(198, 18, 2, 2),
        dport: 0,
        fwmark: 0,
        timeout_s: 360,
        seq: None,
        pe: None,
    }
}
