//! Between the dataplane's tables and the sync protocol's entries: what a master sends of its
//! tables, and the install records a backup makes of what it receives.

use std::net::IpAddr;

use xvs_abi as abi;
use xvs_core::{Balancer, Protocol, ServiceKey, TcpState, Timeouts};
use xvs_dataplane::{addr_words, words_addr, ConnTables};
use xvs_sync::{conn_flags as F, SyncConn};

/// The protocol's forwarding-method bits of a dataplane method.
fn method_flags(method: u8) -> u32 {
    match method {
        abi::FWD_MASQ => F::MASQ,
        abi::FWD_TUNNEL => F::TUNNEL,
        abi::FWD_LOCAL => F::LOCALNODE,
        _ => F::DROUTE,
    }
}

/// Every assured connection and every template of the tables, as the kernel's master would
/// describe them. Unassured connections (half-open, or a flood's) are not sent: the backup
/// would only have to expire them.
pub fn collect(t: &ConnTables, timeouts: &Timeouts) -> Vec<SyncConn> {
    let dests = t.dest_cache();
    let dest = |id: u32| dests.get(id).filter(|d| d.gen != 0);
    let timeout = |s: u8| -> u32 {
        let d = if s == abi::UDP_STATE {
            timeouts.udp
        } else if let Some(st) = crate::conns::sctp_state(s) {
            st.timeout()
        } else {
            TcpState::from_u8(s).map_or(std::time::Duration::ZERO, |st| timeouts.tcp.get(st))
        };
        d.as_secs() as u32
    };
    // Firewall-mark services' connections carry the mark, and their templates the mark as the
    // virtual address, as the kernel's do (the dataplane keys templates by service slot).
    let marks = t.fwmarks();
    let mut out = Vec::new();
    let mut conn = |proto: u8, caddr: IpAddr, cport: u16, vaddr: IpAddr, vport: u16, c: &abi::Conn| {
        if c.flags & (abi::CONN_F_HALF | abi::CONN_F_DEAD) != 0 {
            return;
        }
        let Some(d) = dest(c.dest_id) else { return };
        if d.gen != c.gen {
            return;
        }
        let dport = if d.port == 0 || c.flags & abi::CONN_F_KEEPPORT != 0 { vport } else { u16::from_be(d.port) };
        let mut flags = method_flags(c.method);
        if c.flags & abi::CONN_F_INACTIVE != 0 {
            flags |= F::INACTIVE;
        }
        if c.flags & abi::CONN_F_NOOUTPUT != 0 {
            flags |= F::NOOUTPUT;
        }
        // The kernel's numbering: SCTP states from 0, not from the dataplane's base.
        let state = match crate::conns::sctp_state(c.state) {
            _ if c.state == abi::UDP_STATE => xvs_sync::udp_state::NORMAL,
            Some(st) => u16::from(st as u8),
            None => u16::from(c.state),
        };
        out.push(SyncConn {
            protocol: proto,
            flags,
            state,
            caddr,
            cport,
            vaddr,
            vport,
            daddr: words_addr(d.af, &d.addr),
            dport,
            fwmark: marks.get(&c.svc_id).copied().unwrap_or(0),
            timeout_s: timeout(c.state),
            seq: None,
            pe: None,
        });
    };
    let v4 = |w: u32| words_addr(abi::AF_INET, &[w, 0, 0, 0]);
    for (k, c) in xvs_dataplane::batch::hash_entries(&t.conn4) {
        conn(k.proto, v4(k.caddr), u16::from_be(k.cport), v4(k.vaddr), u16::from_be(k.vport), &c);
    }
    for (k, c) in xvs_dataplane::batch::hash_entries(&t.conn6) {
        let a = |w: &[u32; 4]| words_addr(abi::AF_INET6, w);
        conn(k.proto, a(&k.caddr), u16::from_be(k.cport), a(&k.vaddr), u16::from_be(k.vport), &c);
    }
    // Templates go first: a backup installs them before the connections they control, which
    // then count against them.
    let mut templates = Vec::new();
    let mut tpl = |proto: u8, caddr: IpAddr, vaddr: IpAddr, vport: u16, tp: &abi::Tpl| {
        let Some(d) = dest(tp.dest_id) else { return };
        if d.gen != tp.gen {
            return;
        }
        let mark = if proto == 0 {
            let slot = match vaddr {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(a) => u32::from_be_bytes(a.octets()[..4].try_into().expect("4 bytes")),
            };
            let Some(m) = marks.get(&slot).copied() else { return };
            Some(m)
        } else {
            None
        };
        let vaddr = match (mark, vaddr) {
            (Some(m), IpAddr::V4(_)) => IpAddr::from(m.to_be_bytes()),
            (Some(m), IpAddr::V6(_)) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&m.to_be_bytes());
                IpAddr::from(b)
            }
            (None, v) => v,
        };
        templates.push(SyncConn {
            protocol: proto,
            // As the kernel's master sends them: templates are never active.
            flags: F::TEMPLATE | F::INACTIVE | method_flags(d.method),
            state: u16::from(tp.state),
            caddr,
            cport: 0,
            vaddr,
            vport,
            daddr: words_addr(d.af, &d.addr),
            dport: if mark.is_some() { 0 } else { u16::from_be(d.port) },
            fwmark: mark.unwrap_or(0),
            timeout_s: tp.timeout,
            seq: None,
            pe: None,
        });
    };
    for (k, tp) in xvs_dataplane::batch::hash_entries(&t.tpl4) {
        tpl(k.proto, v4(k.caddr), v4(k.vaddr), u16::from_be(k.vport), &tp);
    }
    for (k, tp) in xvs_dataplane::batch::hash_entries(&t.tpl6) {
        let a = |w: &[u32; 4]| words_addr(abi::AF_INET6, w);
        tpl(k.proto, a(&k.caddr), a(&k.vaddr), u16::from_be(k.vport), &tp);
    }
    templates.append(&mut out);
    templates
}

/// Why a received entry was not installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No service of this director matches it.
    NoService,
    /// The service has no such real server.
    NoServer,
    /// Something xvs does not balance (mixed families, an unknown protocol).
    Unsupported,
}

/// The install record of a received entry, against this director's services: the service
/// by (protocol, VIP, port), or the port-0 service of the VIP (persistent any-port services and
/// their templates), or by its firewall mark; and its real server by address and port (for a
/// firewall-mark service, whose connections keep the packet's port, by address).
pub fn to_install(lb: &Balancer, c: &SyncConn) -> Result<abi::InstallRec, Skip> {
    if c.caddr.is_ipv4() != c.vaddr.is_ipv4() || c.vaddr.is_ipv4() != c.daddr.is_ipv4() {
        return Err(Skip::Unsupported);
    }
    let proto = if c.fwmark != 0 && c.is_template() {
        Protocol::Tcp // an "IP" template: its protocol is none
    } else {
        Protocol::from_number(c.protocol).ok_or(Skip::Unsupported)?
    };
    let af = if c.vaddr.is_ipv4() { xvs_core::Family::V4 } else { xvs_core::Family::V6 };
    let (sid, fwmark) = if c.fwmark != 0 {
        let sid = lb.services.find(&ServiceKey::Fwmark { af, mark: c.fwmark }).ok_or(Skip::NoService)?;
        (sid, true)
    } else {
        let find = |port: u16| lb.services.find(&ServiceKey::Addr { proto, addr: c.vaddr, port });
        (find(c.vport).or_else(|| find(0)).ok_or(Skip::NoService)?, false)
    };
    let did = match lb.services.find_dest(sid, &c.daddr, c.dport) {
        Some(d) => d,
        None if fwmark => lb
            .services
            .get(sid)
            .and_then(|s| {
                s.dest_ids().iter().copied().find(|d| lb.services.dest(*d).is_some_and(|d| d.addr() == c.daddr))
            })
            .ok_or(Skip::NoServer)?,
        None => return Err(Skip::NoServer),
    };
    let svc = lb.services.get(sid);
    let keepport =
        if fwmark { svc.is_some_and(|s| s.persistence().is_some()) } else { svc.is_some_and(|s| s.key().port() == 0) };
    let mut flags = 0u8;
    if c.flags & F::NOOUTPUT != 0 {
        flags |= abi::CONN_F_NOOUTPUT;
    }
    if keepport {
        flags |= abi::CONN_F_KEEPPORT;
    }
    let (kind, state) = if c.is_template() {
        (abi::INSTALL_TPL, c.state.min(1) as u8)
    } else if proto == Protocol::Udp {
        (abi::INSTALL_CONN, abi::UDP_STATE)
    } else if proto == Protocol::Sctp {
        let s = xvs_core::SctpState::from_u8(u8::try_from(c.state).unwrap_or(u8::MAX)).ok_or(Skip::Unsupported)?;
        (abi::INSTALL_CONN, abi::SCTP_STATE_BASE + s as u8)
    } else {
        let s = c.state.min(u16::from(abi::UDP_STATE - 1)) as u8;
        (abi::INSTALL_CONN, s)
    };
    // A firewall-mark template is keyed by its service's slot here (see xvs_abi::SVC_F_FWMARK).
    let (vaddr, vport, proto) = if fwmark && c.is_template() {
        ([sid.index().to_be(), 0, 0, 0], 0, 0)
    } else {
        (addr_words(&c.vaddr), c.vport.to_be(), c.protocol)
    };
    Ok(abi::InstallRec {
        caddr: addr_words(&c.caddr),
        vaddr,
        cport: c.cport.to_be(),
        vport,
        proto,
        af: if c.vaddr.is_ipv4() { abi::AF_INET } else { abi::AF_INET6 },
        kind,
        state,
        flags,
        dest_id: did.index(),
        svc_id: sid.index(),
        timeout_s: if c.timeout_s == 0 { 180 } else { c.timeout_s },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_core::{DestConfig, Family, ForwardMethod, Instant, SchedKind, ServiceConfig};

    fn conn(fwmark: u32, template: bool) -> SyncConn {
        SyncConn {
            protocol: if template { 0 } else { 6 },
            flags: F::DROUTE | if template { F::TEMPLATE } else { 0 },
            state: 1,
            caddr: "198.18.1.100".parse().unwrap(),
            cport: if template { 0 } else { 40000 },
            vaddr: if template { "0.0.0.7".parse().unwrap() } else { "198.18.0.100".parse().unwrap() },
            vport: if template { 0 } else { 8443 },
            daddr: "198.18.2.2".parse().unwrap(),
            dport: if template { 0 } else { 8443 },
            fwmark,
            timeout_s: 300,
            seq: None,
            pe: None,
        }
    }

    #[test]
    fn firewall_mark_entries_find_their_service_by_mark() {
        let mut lb = Balancer::default();
        let key = ServiceKey::Fwmark { af: Family::V4, mark: 7 };
        let mut cfg = ServiceConfig::new(Family::V4, SchedKind::Rr);
        cfg.persistence = Some(300);
        let sid = lb.add_service(key, cfg, Instant::ZERO).unwrap();
        lb.services.add_dest(&key, "198.18.2.2".parse().unwrap(), 0, DestConfig::new(ForwardMethod::Route)).unwrap();

        let c = to_install(&lb, &conn(7, false)).unwrap();
        assert_eq!((c.svc_id, c.kind, c.proto), (sid.index(), abi::INSTALL_CONN, 6));
        assert_eq!((u16::from_be(c.vport), c.flags & abi::CONN_F_KEEPPORT), (8443, abi::CONN_F_KEEPPORT));
        let t = to_install(&lb, &conn(7, true)).unwrap();
        assert_eq!((t.kind, t.proto, t.vport), (abi::INSTALL_TPL, 0, 0));
        assert_eq!(t.vaddr, [sid.index().to_be(), 0, 0, 0], "keyed by the service's slot, as the dataplane keys it");
        assert_eq!(to_install(&lb, &conn(8, false)), Err(Skip::NoService));
    }

    #[test]
    fn sctp_states_travel_in_the_kernels_numbering() {
        let mut lb = Balancer::default();
        let key = ServiceKey::sctp("198.18.0.100".parse().unwrap(), 8443);
        lb.add_service(key, ServiceConfig::new(Family::V4, SchedKind::Rr), Instant::ZERO).unwrap();
        lb.services.add_dest(&key, "198.18.2.2".parse().unwrap(), 8443, DestConfig::new(ForwardMethod::Route)).unwrap();
        let mut c = conn(0, false);
        c.protocol = 132;
        c.state = xvs_sync::sctp_state::ESTABLISHED;
        let rec = to_install(&lb, &c).unwrap();
        assert_eq!((rec.proto, rec.state), (132, abi::SCTP_STATE_BASE + 8), "ESTABLISHED in the dataplane's numbering");
        assert_eq!(crate::conns::sctp_state(rec.state), Some(xvs_core::SctpState::Established));
        c.state = xvs_sync::sctp_state::LAST;
        assert_eq!(to_install(&lb, &c), Err(Skip::Unsupported), "no such SCTP state");
    }
}
