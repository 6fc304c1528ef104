//! Picking a running dataplane back up: a restarted xvsd reads the services, real servers and
//! tunables it finds in the pinned maps, re-creates them in the core in the same slots (the
//! connections refer to servers by slot), and primes its publisher with what is published, so
//! nothing is rewritten and no packet notices the restart.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use xvs_abi as abi;
use xvs_core::conn::TcpState;
use xvs_core::{
    DestConfig, DestId, ForwardMethod, Netmask, Protocol, SchedFlags, SchedKind, ServiceConfig, ServiceId, ServiceKey,
    Services, Sysctl, Timeouts,
};

use crate::director::Director;
use crate::error::{Context, Error};
use crate::publish::{words_addr, Published, Publisher};

/// A service found in the maps.
#[derive(Clone, Debug)]
pub struct Adopted {
    /// Its slot (service id).
    pub slot: u32,
    /// Its key.
    pub key: ServiceKey,
    /// Its configuration.
    pub config: ServiceConfig,
    /// Its real servers in list order: slot, address, port, configuration.
    pub dests: Vec<(u32, IpAddr, u16, DestConfig)>,
    /// The published record.
    pub record: abi::Svc,
}

fn sched_kind(n: u8) -> Option<SchedKind> {
    use abi::sched as s;
    Some(match n {
        s::RR => SchedKind::Rr,
        s::WRR => SchedKind::Wrr,
        s::LC => SchedKind::Lc,
        s::WLC => SchedKind::Wlc,
        s::LBLC => SchedKind::Lblc,
        s::LBLCR => SchedKind::Lblcr,
        s::DH => SchedKind::Dh,
        s::SH => SchedKind::Sh,
        s::SED => SchedKind::Sed,
        s::NQ => SchedKind::Nq,
        s::FO => SchedKind::Fo,
        s::OVF => SchedKind::Ovf,
        s::MH => SchedKind::Mh,
        s::TWOS => SchedKind::Twos,
        _ => return None,
    })
}

fn method(n: u8) -> ForwardMethod {
    match n {
        abi::FWD_MASQ => ForwardMethod::Masq,
        abi::FWD_LOCAL => ForwardMethod::Local,
        abi::FWD_TUNNEL => ForwardMethod::Tunnel,
        _ => ForwardMethod::Route,
    }
}

/// Reads every published service.
pub fn read_published(dp: &Director) -> Result<Vec<Adopted>, Error> {
    let mut out = Vec::new();
    // Allowed sources by service slot.
    let mut allowed: std::collections::HashMap<u32, Vec<(u32, [u32; 4])>> = std::collections::HashMap::new();
    for k in dp.maps.allow.keys() {
        let k = k.ctx(|| "read xvs_allow".into())?;
        let data = k.data();
        allowed.entry(data.svc_id).or_default().push((k.prefix_len().saturating_sub(32), data.addr));
    }
    for item in dp.maps.services.iter() {
        let (k, rec) = item.ctx(|| "read xvs_services".into())?;
        let key = if rec.flags & abi::SVC_F_FWMARK != 0 {
            let af = if k.af == abi::AF_INET { xvs_core::Family::V4 } else { xvs_core::Family::V6 };
            ServiceKey::Fwmark { af, mark: k.addr[0] }
        } else {
            let addr = words_addr(k.af, &k.addr);
            let proto = Protocol::from_number(k.proto)
                .ok_or_else(|| Error::Unsupported(format!("protocol {} in xvs_services", k.proto)))?;
            ServiceKey::Addr { proto, addr, port: u16::from_be(k.port) }
        };
        let mut flags = 0u8;
        if rec.flags & abi::SVC_F_SCHED1 != 0 {
            flags |= 1;
        }
        if rec.flags & abi::SVC_F_SCHED2 != 0 {
            flags |= 2;
        }
        if rec.flags & abi::SVC_F_SCHED3 != 0 {
            flags |= 4;
        }
        let netmask = if k.af == abi::AF_INET {
            Netmask::V4(Ipv4Addr::from(rec.netmask[0].to_ne_bytes()))
        } else {
            let IpAddr::V6(m) = words_addr(abi::AF_INET6, &rec.netmask) else { unreachable!("a v6 mask") };
            Netmask::V6(u128::from(m).count_ones() as u8)
        };
        let config = ServiceConfig {
            scheduler: sched_kind(rec.sched),
            flags: SchedFlags::from_bits(flags),
            persistence: (rec.flags & abi::SVC_F_PERSISTENT != 0).then_some(rec.timeout),
            netmask,
            one_packet: rec.flags & abi::SVC_F_ONEPACKET != 0,
            pe: (rec.flags & abi::SVC_F_SIP != 0).then(|| "sip".to_string()),
            allowed_sources: {
                let mut v: Vec<xvs_core::SourcePrefix> = allowed
                    .remove(&rec.id)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(len, a)| xvs_core::SourcePrefix::new(words_addr(k.af, &a), len as u8).ok())
                    .collect();
                v.sort();
                v
            },
        };
        let mut dests = Vec::new();
        for i in 0..rec.dests_cnt {
            let r = dp.maps.dest_lists.get(&(rec.dests_off + i), 0).ctx(|| "read xvs_dest_lists".into())?;
            let d = dp.maps.dests.get(&r.id, 0).ctx(|| "read xvs_dests".into())?;
            let mut c = DestConfig::new(method(d.method)).weight(r.weight).thresholds(d.u_thresh, d.l_thresh_cfg);
            c.tunnel = crate::publish::tunnel_of(d.flags);
            dests.push((r.id, words_addr(d.af, &d.addr), u16::from_be(d.port), c));
        }
        out.push(Adopted { slot: rec.id, key, config, dests, record: rec });
    }
    out.sort_by_key(|a| a.slot);
    Ok(out)
}

/// Reads the timeouts and tunables the running dataplane uses.
pub fn read_config(dp: &Director) -> Result<Option<(Timeouts, Sysctl)>, Error> {
    let cfg = dp.maps.config.get(&0, 0).ctx(|| "read xvs_config".into())?;
    if cfg.timeout_ms.iter().all(|t| *t == 0) {
        return Ok(None); // never written: a fresh dataplane
    }
    let mut t = Timeouts::new();
    for (i, ms) in cfg.timeout_ms.iter().take(TcpState::ALL.len()).enumerate() {
        t.tcp.0[i] = Duration::from_millis(u64::from(*ms));
    }
    t.udp = Duration::from_millis(u64::from(cfg.timeout_ms[usize::from(abi::UDP_STATE)]));
    let f = cfg.flags;
    let s = Sysctl {
        conn_reuse_mode: u32::from(f & abi::cfg::REUSE_1 != 0) | (u32::from(f & abi::cfg::REUSE_2 != 0) << 1),
        expire_nodest_conn: f & abi::cfg::EXPIRE_NODEST != 0,
        expire_quiescent_template: f & abi::cfg::EXPIRE_QUIESCENT != 0,
        sloppy_tcp: f & abi::cfg::SLOPPY_TCP != 0,
        sloppy_sctp: f & abi::cfg::SLOPPY_SCTP != 0,
        secure_tcp: f & abi::cfg::SECURE_TCP != 0,
        lblc_expiration: Duration::from_secs(u64::from(cfg.lblc_expire_s)),
        lblcr_expiration: Duration::from_secs(u64::from(cfg.lblcr_expire_s)),
        ..Sysctl::default()
    };
    Ok(Some((t, s)))
}

/// A removed real server that connections or templates in the tables still refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusyRemoved {
    /// Its slot.
    pub slot: u32,
    /// The service its connections were made to (protocol, virtual address and port).
    pub svc_key: ServiceKey,
    /// Its address and port.
    pub addr: IpAddr,
    /// Port (0: the packet's).
    pub port: u16,
    /// Its configuration as last published.
    pub config: DestConfig,
    /// Connections and templates found referring to it.
    pub refs: u64,
}

/// Finds the real servers that connections or templates refer to (with the slot's current
/// generation) but that no published service lists: servers removed while busy. A restarted
/// daemon puts them back in its trash so their slots are not given to other servers while
/// their connections live.
pub fn read_busy_removed(dp: &Director, adopted: &[Adopted]) -> Result<Vec<BusyRemoved>, Error> {
    use std::collections::{BTreeMap, HashSet};
    let listed: HashSet<u32> = adopted.iter().flat_map(|a| a.dests.iter().map(|d| d.0)).collect();
    let mut found: BTreeMap<u32, (ServiceKey, u64)> = BTreeMap::new();
    // Firewall-mark services by slot: their connections carry VIPs and ports of their own, and
    // their templates the service's slot.
    let fwmarks: std::collections::HashMap<u32, ServiceKey> =
        adopted.iter().filter(|a| matches!(a.key, ServiceKey::Fwmark { .. })).map(|a| (a.slot, a.key)).collect();
    let mut dests = std::collections::HashMap::new();
    let mut note = |dest_id: u32,
                    gen: u32,
                    svc_id: Option<u32>,
                    proto: u8,
                    af: u8,
                    vaddr: &[u32; 4],
                    vport: u16|
     -> Result<(), Error> {
        if listed.contains(&dest_id) {
            return Ok(());
        }
        // Each removed server once, however many connections it still has.
        let Some(d) = *dests.entry(dest_id).or_insert_with(|| dp.maps.dests.get(&dest_id, 0).ok()) else {
            return Ok(());
        };
        if d.gen != gen || d.gen == 0 {
            return Ok(());
        }
        let fwmark = match (svc_id, proto) {
            (Some(id), _) => fwmarks.get(&id),
            (None, 0) => fwmarks.get(&u32::from_be(vaddr[0])),
            _ => None,
        };
        let key = match fwmark {
            Some(k) => *k,
            None => {
                let Some(proto) = Protocol::from_number(proto) else { return Ok(()) };
                ServiceKey::Addr { proto, addr: words_addr(af, vaddr), port: u16::from_be(vport) }
            }
        };
        found.entry(dest_id).or_insert((key, 0)).1 += 1;
        Ok(())
    };
    // Read in batches (4 M connections are 4 M lookups by key); the first error `note` meets
    // is kept and returned once the reads are done.
    let mut failed = None;
    let mut keep = |r: Result<(), Error>| {
        if let (None, Err(e)) = (&failed, r) {
            failed = Some(e);
        }
    };
    crate::batch::each_entry(&dp.maps.conn4, |k, c| {
        keep(note(c.dest_id, c.gen, Some(c.svc_id), k.proto, abi::AF_INET, &[k.vaddr, 0, 0, 0], k.vport))
    })
    .ctx(|| "read xvs_conn4".into())?;
    crate::batch::each_entry(&dp.maps.conn6, |k, c| {
        keep(note(c.dest_id, c.gen, Some(c.svc_id), k.proto, abi::AF_INET6, &k.vaddr, k.vport))
    })
    .ctx(|| "read xvs_conn6".into())?;
    crate::batch::each_entry(&dp.maps.tpl4, |k, t| {
        keep(note(t.dest_id, t.gen, None, k.proto, abi::AF_INET, &[k.vaddr, 0, 0, 0], k.vport))
    })
    .ctx(|| "read xvs_tpl4".into())?;
    crate::batch::each_entry(&dp.maps.tpl6, |k, t| {
        keep(note(t.dest_id, t.gen, None, k.proto, abi::AF_INET6, &k.vaddr, k.vport))
    })
    .ctx(|| "read xvs_tpl6".into())?;
    if let Some(e) = failed {
        return Err(e);
    }
    let mut out = Vec::new();
    for (slot, (svc_key, refs)) in found {
        let d = dp.maps.dests.get(&slot, 0).ctx(|| "read xvs_dests".into())?;
        let mut config = DestConfig::new(method(d.method)).weight(d.weight).thresholds(d.u_thresh, d.l_thresh_cfg);
        config.tunnel = crate::publish::tunnel_of(d.flags);
        out.push(BusyRemoved {
            slot,
            svc_key,
            addr: words_addr(d.af, &d.addr),
            port: u16::from_be(d.port),
            config,
            refs,
        });
    }
    Ok(out)
}

impl Publisher {
    /// Takes a removed server found busy at adoption ([`read_busy_removed`]), re-created in the
    /// core as `id`: its slot keeps its generation and counters, and adding the server back
    /// revives it with its connections.
    pub fn adopt_removed(&mut self, dp: &Director, id: DestId, busy: &BusyRemoved) -> Result<(), Error> {
        let rec = dp.maps.dests.get(&busy.slot, 0).ctx(|| "read xvs_dests".into())?;
        self.thresholds.insert(id, (rec.u_thresh, rec.l_thresh));
        self.gens.insert(id, rec.gen);
        Ok(())
    }

    /// A publisher that knows what `adopted` says is published (as re-created in `services`):
    /// its pool ranges are taken, its scheduler state is left as packets left it, and its
    /// servers keep their counters.
    pub fn adopt(dp: &Director, services: &Services, adopted: &[Adopted]) -> Result<Publisher, Error> {
        let mut p = Publisher::new(dp);
        // By slot, once: a lookup per adopted service (not a scan: 100,000s of them).
        let by_slot: HashMap<u32, ServiceId> = services.iter().map(|(id, _)| (id.index(), id)).collect();
        for a in adopted {
            let Some(&id) = by_slot.get(&a.slot) else { continue };
            let svc = services.get(id).expect("listed");
            let view = services.view(id).expect("listed");
            let dests: Vec<(DestId, i32)> = view.iter().map(|(d, r)| (d, r.weight())).collect();
            let rec = &a.record;
            if !p.lists.reserve(rec.dests_off, rec.dests_cnt) || !p.tables.reserve(rec.table_off, rec.table_len) {
                return Err(Error::Unsupported("the pinned tables overlap; start with empty pins".into()));
            }
            let state = dp.maps.sched_state.get(&a.slot, 0).ctx(|| "read xvs_sched_state".into())?;
            for (d, r) in view.iter() {
                p.thresholds.insert(d, (r.config().u_threshold, r.l_threshold_val()));
                let rec = dp.maps.dests.get(&d.index(), 0).ctx(|| "read xvs_dests".into())?;
                p.gens.insert(d, rec.gen);
            }
            let key = crate::publish::svc_key(svc.key())?;
            p.published.insert(
                id,
                Published {
                    key,
                    dests_off: rec.dests_off,
                    dests,
                    table_off: rec.table_off,
                    table_len: rec.table_len,
                    sched_written: state,
                    sched: rec.sched,
                    generation: svc.generation(),
                    allowed: svc.config().allowed_sources.clone(),
                    wrr_synced: false,
                },
            );
        }
        Ok(p)
    }
}
