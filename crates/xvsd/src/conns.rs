//! The connection table as `ipvsadm -Lc` shows it, read from the dataplane's maps.

use std::net::IpAddr;

use xvs_abi as abi;
use xvs_api::ConnState;
use xvs_core::{Instant, SctpState, TcpState, Timeouts};
use xvs_dataplane::{words_addr, ConnTables};

/// Milliseconds of CLOCK_MONOTONIC_COARSE, the clock the dataplane stamps entries with.
pub fn dataplane_now_ms() -> u32 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).expect("the coarse clock exists");
    (t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000) as u32
}

fn state_name(s: u8) -> &'static str {
    if s == abi::UDP_STATE {
        "UDP"
    } else if let Some(st) = sctp_state(s) {
        st.name()
    } else {
        TcpState::from_u8(s).map_or("NONE", TcpState::name)
    }
}

/// The SCTP state a dataplane state byte stands for (`xvs_abi::SCTP_STATE_BASE` onwards).
pub fn sctp_state(s: u8) -> Option<SctpState> {
    s.checked_sub(abi::SCTP_STATE_BASE).and_then(SctpState::from_u8)
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "TCP",
        17 => "UDP",
        132 => "SCTP",
        _ => "IP",
    }
}

fn remaining(timeout_ms: u64, idle_ms: u32) -> u64 {
    timeout_ms.saturating_sub(u64::from(idle_ms)) / 1000
}

/// Every connection and template, with the seconds each has left.
pub fn list(dp: &ConnTables, timeouts: &Timeouts, _now: Instant) -> Vec<ConnState> {
    let now = dataplane_now_ms();
    let dests = dp.dest_cache();
    let dest = |id: u32| dests.get(id);
    let timeout = |s: u8| -> u64 {
        if s == abi::UDP_STATE {
            timeouts.udp.as_millis() as u64
        } else if let Some(st) = sctp_state(s) {
            st.timeout().as_millis() as u64
        } else {
            TcpState::from_u8(s).map_or(0, |st| timeouts.tcp.get(st).as_millis() as u64)
        }
    };
    let mut out = Vec::new();
    let mut push = |proto: u8, caddr: IpAddr, cport: u16, vaddr: IpAddr, vport: u16, c: &abi::Conn| {
        let Some(d) = dest(c.dest_id) else { return };
        let dport = if d.port == 0 || c.flags & abi::CONN_F_KEEPPORT != 0 { vport } else { u16::from_be(d.port) };
        out.push(ConnState {
            proto: proto_name(proto).into(),
            expires: remaining(timeout(c.state), now.wrapping_sub(c.seen)),
            state: state_name(c.state).into(),
            caddr,
            cport,
            vaddr,
            vport,
            daddr: words_addr(d.af, &d.addr),
            dport,
        });
    };
    for (k, c) in xvs_dataplane::batch::hash_entries(&dp.conn4) {
        let a = |w: u32| words_addr(abi::AF_INET, &[w, 0, 0, 0]);
        push(k.proto, a(k.caddr), u16::from_be(k.cport), a(k.vaddr), u16::from_be(k.vport), &c);
    }
    for (k, c) in xvs_dataplane::batch::hash_entries(&dp.conn6) {
        push(
            k.proto,
            words_addr(abi::AF_INET6, &k.caddr),
            u16::from_be(k.cport),
            words_addr(abi::AF_INET6, &k.vaddr),
            u16::from_be(k.vport),
            &c,
        );
    }
    let mut tpl = |proto: u8, caddr: IpAddr, vaddr: IpAddr, vport: u16, t: &abi::Tpl| {
        let Some(d) = dest(t.dest_id) else { return };
        out.push(ConnState {
            proto: proto_name(proto).into(),
            expires: remaining(u64::from(t.timeout) * 1000, now.wrapping_sub(t.since)),
            state: if t.state == abi::TPL_S_ASSURED { "ASSURED" } else { "NONE" }.into(),
            caddr,
            cport: 0,
            vaddr,
            vport,
            daddr: words_addr(d.af, &d.addr),
            dport: if vport == 0 { 0 } else { u16::from_be(d.port) },
        });
    };
    // A firewall-mark template names its service's slot; the kernel shows the mark as the
    // virtual address (IPv4: mark 1 is 0.0.0.1; IPv6: the mark in the first four bytes).
    let marks = if dp.tpl4.iter().next().is_some() || dp.tpl6.iter().next().is_some() {
        dp.fwmarks()
    } else {
        Default::default()
    };
    let mark_of = |proto: u8, vaddr: &[u32; 4]| -> Option<u32> {
        if proto != 0 {
            return None;
        }
        marks.get(&u32::from_be(vaddr[0])).copied()
    };
    for (k, t) in xvs_dataplane::batch::hash_entries(&dp.tpl4) {
        let a = |w: u32| words_addr(abi::AF_INET, &[w, 0, 0, 0]);
        let vaddr = mark_of(k.proto, &[k.vaddr, 0, 0, 0]).map_or(a(k.vaddr), |m| IpAddr::from(m.to_be_bytes()));
        tpl(k.proto, a(k.caddr), vaddr, u16::from_be(k.vport), &t);
    }
    for (k, t) in xvs_dataplane::batch::hash_entries(&dp.tpl6) {
        let vaddr = mark_of(k.proto, &k.vaddr).map_or(words_addr(abi::AF_INET6, &k.vaddr), |m| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&m.to_be_bytes());
            IpAddr::from(b)
        });
        tpl(k.proto, words_addr(abi::AF_INET6, &k.caddr), vaddr, u16::from_be(k.vport), &t);
    }
    out
}
