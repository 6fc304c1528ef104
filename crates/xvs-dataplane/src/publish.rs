//! Mirrors the core's services and real servers into the director's maps.
//!
//! A change is published in an order that keeps every packet consistent: real server records
//! first, then a fresh copy of the service's list and bucket table in unused pool ranges, and
//! last the service record itself, whose single hash-map update switches packets from the old
//! list and table to the new ones. The old ranges are reused only after a grace period.

use std::collections::HashMap;
use std::net::IpAddr;

use aya::maps::IterableMap;
use xvs_abi as abi;
use xvs_core::sched::SchedTable;
use xvs_core::{
    ConnFlags, DestId, Family, ForwardMethod, Netmask, SchedFlags, SchedKind, ServiceId, ServiceKey, Services,
    SourcePrefix, Sysctl, Timeouts,
};

use crate::alloc::RangeAlloc;
use crate::batch;
use crate::director::Director;
use crate::error::{Context, Error};

/// The address as four network-order words (IPv4 in the first).
pub fn addr_words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// The inverse of [`addr_words`].
pub fn words_addr(af: u8, w: &[u32; 4]) -> IpAddr {
    if af == abi::AF_INET {
        IpAddr::from(w[0].to_ne_bytes())
    } else {
        let mut o = [0u8; 16];
        for (i, word) in w.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::from(o)
    }
}

/// The dataplane's number for a scheduler.
pub fn sched_number(k: Option<SchedKind>) -> u8 {
    use abi::sched as s;
    match k {
        None => s::NONE,
        Some(SchedKind::Rr) => s::RR,
        Some(SchedKind::Wrr) => s::WRR,
        Some(SchedKind::Lc) => s::LC,
        Some(SchedKind::Wlc) => s::WLC,
        Some(SchedKind::Lblc) => s::LBLC,
        Some(SchedKind::Lblcr) => s::LBLCR,
        Some(SchedKind::Dh) => s::DH,
        Some(SchedKind::Sh) => s::SH,
        Some(SchedKind::Sed) => s::SED,
        Some(SchedKind::Nq) => s::NQ,
        Some(SchedKind::Fo) => s::FO,
        Some(SchedKind::Ovf) => s::OVF,
        Some(SchedKind::Mh) => s::MH,
        Some(SchedKind::Twos) => s::TWOS,
    }
}

/// The service key the dataplane looks packets up with.
pub fn svc_key(key: &ServiceKey) -> Result<abi::SvcKey, Error> {
    match key {
        ServiceKey::Addr { proto, addr, port } => Ok(abi::SvcKey {
            addr: addr_words(addr),
            port: port.to_be(),
            proto: proto.number(),
            af: if addr.is_ipv4() { abi::AF_INET } else { abi::AF_INET6 },
        }),
        ServiceKey::Fwmark { af, mark } => Ok(abi::SvcKey {
            addr: [*mark, 0, 0, 0],
            port: 0,
            proto: 0,
            af: if *af == xvs_core::Family::V4 { abi::AF_INET } else { abi::AF_INET6 },
        }),
    }
}

fn netmask_words(m: &Netmask) -> [u32; 4] {
    match m {
        Netmask::V4(a) => [u32::from_ne_bytes(a.octets()), 0, 0, 0],
        Netmask::V6(plen) => {
            let bits: u128 = if *plen == 0 { 0 } else { u128::MAX << (128 - u32::from(*plen).min(128)) };
            addr_words(&IpAddr::V6(bits.into()))
        }
    }
}

fn method_number(m: ForwardMethod) -> u8 {
    match m {
        ForwardMethod::Masq => abi::FWD_MASQ,
        ForwardMethod::Local => abi::FWD_LOCAL,
        ForwardMethod::Tunnel => abi::FWD_TUNNEL,
        // Bypass is never configured on a real server; route is the closest action.
        ForwardMethod::Route | ForwardMethod::Bypass => abi::FWD_ROUTE,
    }
}

/// What the dataplane currently holds for one service.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) key: abi::SvcKey,
    pub(crate) dests_off: u32,
    pub(crate) dests: Vec<(DestId, i32)>,
    pub(crate) table_off: u32,
    pub(crate) table_len: u32,
    /// The scheduler state as last written, to tell whether packets moved it since.
    pub(crate) sched_written: abi::SchedState,
    pub(crate) sched: u8,
    pub(crate) generation: u64,
    /// Allowed source prefixes written for it.
    pub(crate) allowed: Vec<SourcePrefix>,
    /// True while the dataplane's wrr weight equals the core's (no packet moved it since the
    /// core's hooks last set it).
    pub(crate) wrr_synced: bool,
}

/// Keeps the director's maps equal to a [`Services`] table.
#[derive(Debug)]
pub struct Publisher {
    pub(crate) lists: RangeAlloc,
    pub(crate) tables: RangeAlloc,
    pub(crate) published: HashMap<ServiceId, Published>,
    /// Thresholds last written per real server; a server not here is new to its slot.
    pub(crate) thresholds: HashMap<DestId, (u32, u32)>,
    /// The slot generation of each real server written (connections carry it).
    pub(crate) gens: HashMap<DestId, u32>,
    /// Services on standby: this director is a VRRP backup for their VIP.
    pub(crate) standby: std::collections::HashSet<ServiceKey>,
    /// New services' writes held back for one batch each map (see [`Publisher::begin_batch`]).
    pub(crate) staged: Option<Staged>,
}

/// The writes that publish new services, held until [`Publisher::flush`] writes each map's in
/// one batch, in the order one publication writes them: real servers, lists, tables, scheduler
/// state, then the service records that switch them on. Only services new to the dataplane are
/// staged: nothing live points at what they write until their record lands, so writing all
/// their servers before all their lists is the same as writing service by service.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    dests: Vec<(u32, abi::Dest)>,
    /// Slots whose counters start from zero.
    fresh: Vec<u32>,
    lists: Vec<(u32, abi::DestRef)>,
    tables: Vec<(u32, u32)>,
    sched_state: Vec<(u32, abi::SchedState)>,
    svc_by_id: Vec<(u32, abi::Svc)>,
    services: Vec<(abi::SvcKey, abi::Svc)>,
    /// Generations of the real-server slots, read a chunk at a time (slot → generation).
    gens: HashMap<u32, u32>,
}

/// Real-server records read at once when a new server's slot generation is needed in a batch.
const GEN_CHUNK: u32 = 4096;

impl Publisher {
    /// A publisher for a director loaded with `dp`'s sizes, with nothing published.
    pub fn new(dp: &Director) -> Self {
        Publisher {
            lists: RangeAlloc::new(dp.options.max_dests),
            tables: RangeAlloc::new(dp.options.table_slots),
            published: HashMap::new(),
            thresholds: HashMap::new(),
            gens: HashMap::new(),
            standby: std::collections::HashSet::new(),
            staged: None,
        }
    }

    /// From now until [`Publisher::end_batch`], services new to the dataplane are published
    /// with one write per map for all of them, at the next [`Publisher::flush`]; any other
    /// change flushes what is held first. A bulk of 100k new services takes a few dozen system
    /// calls instead of about fifteen a service.
    pub fn begin_batch(&mut self) {
        self.staged.get_or_insert_with(Staged::default);
    }

    /// Writes what [`Publisher::begin_batch`] held, map by map.
    pub fn flush(&mut self, dp: &mut Director) -> Result<(), Error> {
        let Some(st) = self.staged.as_mut() else { return Ok(()) };
        let st = std::mem::take(st);
        // The generations read stay true: only this publisher writes real-server records.
        self.staged.as_mut().expect("batching").gens = st.gens;
        let cpus = nr_cpus();
        let zeros = vec![abi::Stats::default(); cpus];
        let m = &mut dp.maps;
        write_batch(&mut m.dests, &st.dests, |m, v| batch::update(m.map(), v), |m, (k, v)| m.set(*k, *v, 0))
            .ctx(|| "write xvs_dests".into())?;
        let states: Vec<(u32, abi::DestState)> = st.fresh.iter().map(|k| (*k, abi::DestState::default())).collect();
        write_batch(&mut m.dest_state, &states, |m, v| batch::update(m.map(), v), |m, (k, v)| m.set(*k, *v, 0))
            .ctx(|| "reset xvs_dest_state".into())?;
        let stats: Vec<(u32, &[abi::Stats])> = st.fresh.iter().map(|k| (*k, &zeros[..])).collect();
        write_batch(
            &mut m.dest_stats,
            &stats,
            |m, v| batch::update_percpu(m.map(), cpus, v),
            |m, (k, v)| {
                let values = aya::maps::PerCpuValues::try_from(v.to_vec()).map_err(|e| {
                    aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "per-CPU values", io_error: e })
                })?;
                m.set(*k, values, 0)
            },
        )
        .ctx(|| "reset xvs_dest_stats".into())?;
        write_batch(&mut m.dest_lists, &st.lists, |m, v| batch::update(m.map(), v), |m, (k, v)| m.set(*k, *v, 0))
            .ctx(|| "write xvs_dest_lists".into())?;
        write_batch(&mut m.tables, &st.tables, |m, v| batch::update(m.map(), v), |m, (k, v)| m.set(*k, *v, 0))
            .ctx(|| "write xvs_sched_tables".into())?;
        write_batch(
            &mut m.sched_state,
            &st.sched_state,
            |m, v| batch::update(m.map(), v),
            |m, (k, v)| m.set(*k, *v, 0),
        )
        .ctx(|| "write xvs_sched_state".into())?;
        write_batch(&mut m.svc_by_id, &st.svc_by_id, |m, v| batch::update(m.map(), v), |m, (k, v)| m.set(*k, *v, 0))
            .ctx(|| "write xvs_svc_by_id".into())?;
        write_batch(&mut m.services, &st.services, |m, v| batch::update(m.map(), v), |m, (k, v)| m.insert(k, v, 0))
            .ctx(|| "publish services".into())?;
        Ok(())
    }

    /// Flushes and stops batching.
    pub fn end_batch(&mut self, dp: &mut Director) -> Result<(), Error> {
        let r = self.flush(dp);
        self.staged = None;
        r
    }

    /// The generation in real-server slot `idx` now, from the batch's reads when batching.
    fn slot_gen(&mut self, dp: &Director, idx: u32) -> Result<u32, Error> {
        let Some(st) = self.staged.as_mut() else {
            return Ok(dp.maps.dests.get(&idx, 0).ctx(|| "read xvs_dests".into())?.gen);
        };
        if let Some(g) = st.gens.get(&idx) {
            return Ok(*g);
        }
        let start = idx - idx % GEN_CHUNK;
        match batch::lookup_array_from::<abi::Dest>(dp.maps.dests.map(), start, GEN_CHUNK) {
            Ok(recs) => st.gens.extend(recs.iter().enumerate().map(|(i, r)| (start + i as u32, r.gen))),
            Err(_) => {
                let g = dp.maps.dests.get(&idx, 0).ctx(|| "read xvs_dests".into())?.gen;
                st.gens.insert(idx, g);
            }
        }
        Ok(st.gens.get(&idx).copied().unwrap_or(0))
    }

    /// The dataplane slot and generation of real server `did` while it is published.
    pub fn dest_slot(&self, did: DestId) -> Option<(u32, u32)> {
        self.gens.get(&did).map(|g| (did.index(), *g))
    }

    /// The service `key` is on standby.
    pub fn is_standby(&self, key: &ServiceKey) -> bool {
        self.standby.contains(key)
    }

    /// Puts services on standby (no new connections; established and synchronised ones are
    /// still forwarded) or back in service, republishing those that exist; a service added
    /// later is published with its standby state.
    pub fn set_standby(
        &mut self,
        dp: &mut Director,
        services: &Services,
        keys: &[ServiceKey],
        standby: bool,
    ) -> Result<(), Error> {
        for k in keys {
            let changed = if standby { self.standby.insert(*k) } else { self.standby.remove(k) };
            if let (true, Some(id)) = (changed, services.find(k)) {
                self.publish(dp, services, id)?;
            }
        }
        Ok(())
    }

    /// Checks that a service can be carried by the dataplane before the core accepts it.
    pub fn check_service(key: &ServiceKey) -> Result<(), Error> {
        svc_key(key).map(|_| ())
    }

    /// Checks that a real server can be carried by the dataplane before the core accepts it.
    /// The dataplane never sums a whole SCTP packet: its CRC32c covers the ports, so a NAT
    /// server of an SCTP service listens on the service's port (or has none); and a tunnel's
    /// outer checksum would need the packet's one's-complement sum, so an SCTP service's
    /// tunnels go without one.
    pub fn check_dest(key: &ServiceKey, port: u16, config: &xvs_core::DestConfig) -> Result<(), Error> {
        use xvs_core::{ForwardMethod, Protocol, TunnelCsum};
        if key.protocol() != Protocol::Sctp {
            return Ok(());
        }
        if config.method == ForwardMethod::Tunnel && config.tunnel.csum != TunnelCsum::None {
            return Err(Error::Unsupported(
                "an SCTP service's tunnel goes without an outer checksum (--tun-nocsum): the dataplane \
                 does not sum whole SCTP packets"
                    .into(),
            ));
        }
        let svc_port = key.port();
        if config.method == ForwardMethod::Masq && port != 0 && svc_port != 0 && port != svc_port {
            return Err(Error::Unsupported(format!(
                "an SCTP NAT real server must use the service's port {svc_port}, not {port}: the dataplane \
                 does not recompute SCTP's checksum (direct routing and tunnels take any port)"
            )));
        }
        Ok(())
    }

    /// Writes the tunables and the TCP state tables from the core.
    pub fn write_config(dp: &mut Director, timeouts: &Timeouts, sysctl: &Sysctl) -> Result<(), Error> {
        use xvs_core::conn::tcp::{TCP_STATES_NORMAL, TCP_STATES_SECURE};
        let mut cfg = abi::Cfg::default();
        for (i, t) in timeouts.tcp.0.iter().enumerate() {
            cfg.timeout_ms[i] = u32::try_from(t.as_millis()).unwrap_or(u32::MAX);
        }
        cfg.timeout_ms[usize::from(abi::UDP_STATE)] = u32::try_from(timeouts.udp.as_millis()).unwrap_or(u32::MAX);
        for (s, table) in [&TCP_STATES_NORMAL, &TCP_STATES_SECURE].into_iter().enumerate() {
            for (d, dir) in table.iter().enumerate() {
                for (e, ev) in dir.iter().enumerate() {
                    for (st, next) in ev.iter().enumerate() {
                        cfg.tcp_next[s][d][e][st] = *next as u8;
                    }
                }
            }
        }
        let f = &mut cfg.flags;
        let set = |f: &mut u32, on: bool, bit: u32| {
            if on {
                *f |= bit
            }
        };
        set(f, sysctl.expire_nodest_conn, abi::cfg::EXPIRE_NODEST);
        set(f, sysctl.expire_quiescent_template, abi::cfg::EXPIRE_QUIESCENT);
        set(f, sysctl.sloppy_tcp, abi::cfg::SLOPPY_TCP);
        set(f, sysctl.sloppy_sctp, abi::cfg::SLOPPY_SCTP);
        set(f, sysctl.secure_tcp, abi::cfg::SECURE_TCP);
        set(f, sysctl.conn_reuse_mode & 1 != 0, abi::cfg::REUSE_1);
        set(f, sysctl.conn_reuse_mode & 2 != 0, abi::cfg::REUSE_2);
        cfg.lblc_expire_s = u32::try_from(sysctl.lblc_expiration.as_secs()).unwrap_or(u32::MAX);
        cfg.lblcr_expire_s = u32::try_from(sysctl.lblcr_expiration.as_secs()).unwrap_or(u32::MAX);
        cfg.max_half = dp.options.max_half;
        cfg.icmp_rate = dp.options.icmp_rate;
        cfg.icmp_burst = dp.options.icmp_burst;
        dp.maps.config.set(0, cfg, 0).ctx(|| "write xvs_config".into())
    }

    /// Publishes service `id` as it is now in `services` (new, or changed in any way).
    pub fn publish(&mut self, dp: &mut Director, services: &Services, id: ServiceId) -> Result<(), Error> {
        let svc =
            services.get(id).ok_or_else(|| Error::Unsupported("publishing a service that does not exist".into()))?;
        let key = svc_key(svc.key())?;
        let view = services.view(id).expect("a live service has a view");
        let sid = id.index();
        if sid >= dp.options.max_services {
            return Err(Error::Capacity(format!(
                "service slot {sid} is beyond the dataplane's {} (raise max_services)",
                dp.options.max_services
            )));
        }

        let dests: Vec<(DestId, i32)> = view.iter().map(|(d, r)| (d, r.weight())).collect();
        // Held for a batch only when nothing live points at what it writes: a service new to
        // the dataplane, all its servers new to their slots. Anything else sees the maps as
        // they are, what was held written first.
        let staged = self.staged.is_some()
            && !self.published.contains_key(&id)
            && dests.iter().all(|(d, _)| !self.thresholds.contains_key(d));
        if !staged {
            self.flush(dp)?;
        }

        // 1. Real server records.
        for (did, d) in view.iter() {
            let idx = did.index();
            if idx >= dp.options.max_dests {
                return Err(Error::Capacity(format!(
                    "real server slot {idx} is beyond the dataplane's {} (raise max_dests)",
                    dp.options.max_dests
                )));
            }
            let c = d.config();
            if Family::of(&d.addr()) != svc.key().family() && c.method != ForwardMethod::Tunnel {
                return Err(Error::Unsupported(
                    "a real server of the other address family is reached only through a tunnel".into(),
                ));
            }
            let fresh = !self.thresholds.contains_key(&did);
            let gen = match self.gens.get(&did) {
                Some(g) if !fresh => *g,
                // A new server in this slot: a generation its last owner's connections and
                // templates do not carry, so none of them ever reaches this server.
                _ => self.slot_gen(dp, idx)?.wrapping_add(1).max(1),
            };
            let rec = abi::Dest {
                addr: addr_words(&d.addr()),
                port: d.port().to_be(),
                af: if d.addr().is_ipv4() { abi::AF_INET } else { abi::AF_INET6 },
                method: method_number(c.method),
                svc_id: sid,
                flags: abi::DEST_F_AVAILABLE | tunnel_flags(&c.tunnel),
                weight: c.weight,
                u_thresh: c.u_threshold,
                l_thresh: d.l_threshold_val(),
                l_thresh_cfg: c.l_threshold,
                gen,
            };
            let thresholds = (c.u_threshold, d.l_threshold_val());
            if let Some(st) = self.staged.as_mut().filter(|_| staged) {
                st.dests.push((idx, rec));
                st.fresh.push(idx);
                st.gens.insert(idx, gen);
                self.thresholds.insert(did, thresholds);
                self.gens.insert(did, gen);
                continue;
            }
            // The record (with its generation) first: from then on the last owner's
            // connections leave this slot's counters alone, so zeroing them cannot race.
            dp.maps.dests.set(idx, rec, 0).ctx(|| format!("write real server {}", d.addr()))?;
            if let Some(st) = self.staged.as_mut() {
                st.gens.insert(idx, gen);
            }
            match self.thresholds.get(&did) {
                None => {
                    // A new server in this slot: it starts from zero, whatever the slot's last
                    // owner left behind.
                    dp.maps.dest_state.set(idx, abi::DestState::default(), 0).ctx(|| "reset xvs_dest_state".into())?;
                    let zeros = aya::maps::PerCpuValues::try_from(vec![abi::Stats::default(); nr_cpus()])
                        .map_err(|e| Error::Unsupported(format!("per-CPU values: {e}")))?;
                    dp.maps.dest_stats.set(idx, zeros, 0).ctx(|| "reset xvs_dest_stats".into())?;
                }
                Some(old) if *old != thresholds => dp.rethreshold(idx, c.u_threshold, d.l_threshold_val())?,
                Some(_) => {}
            }
            self.thresholds.insert(did, thresholds);
            self.gens.insert(did, gen);
        }
        let old = self.published.get(&id).cloned();
        if let Some(o) = &old {
            for (gone, _) in o.dests.iter().filter(|(g, _)| !dests.iter().any(|(d, _)| d == g)) {
                self.mark_unavailable(dp, *gone)?;
            }
        }

        // 2. The list, in a fresh range.
        let n = dests.len() as u32;
        let dests_off = self.lists.alloc(n).ok_or_else(|| {
            Error::Capacity(format!(
                "no room for {n} more list entries (raise max_dests, now {})",
                self.lists.capacity()
            ))
        })?;
        for (i, (did, w)) in dests.iter().enumerate() {
            let entry = (dests_off + i as u32, abi::DestRef { id: did.index(), weight: *w });
            match self.staged.as_mut().filter(|_| staged) {
                Some(st) => st.lists.push(entry),
                None => dp.maps.dest_lists.set(entry.0, entry.1, 0).ctx(|| "write xvs_dest_lists".into())?,
            }
        }

        // 3. The bucket table of sh, dh and mh.
        let (mut table_off, mut table_len) = (0, 0);
        if let Some(SchedTable::Buckets(b)) = svc.scheduler().map(|s| s.table()) {
            table_len = b.len() as u32;
            table_off = match self.tables.alloc(table_len) {
                Some(off) => off,
                None => {
                    self.lists.release(dests_off, n);
                    return Err(Error::Capacity(format!(
                        "no room for a {table_len}-bucket table (raise table_slots, now {})",
                        self.tables.capacity()
                    )));
                }
            };
            let pos: HashMap<DestId, u32> = dests.iter().enumerate().map(|(i, (d, _))| (*d, i as u32)).collect();
            for (i, slot) in b.iter().enumerate() {
                let v = slot.and_then(|d| pos.get(&d).copied()).unwrap_or(u32::MAX);
                match self.staged.as_mut().filter(|_| staged) {
                    Some(st) => st.tables.push((table_off + i as u32, v)),
                    None => dp.maps.tables.set(table_off + i as u32, v, 0).ctx(|| "write xvs_sched_tables".into())?,
                }
            }
        }

        // 4. Scheduler state that must follow the list (rr cursor, wrr position).
        let cfg = svc.config();
        let sched = sched_number(cfg.scheduler);
        let (cw_core, mw, di) = svc.scheduler().and_then(|s| s.wrr_state()).unwrap_or((0, 0, 0));
        // A new service's state starts from nothing, whatever the slot held: no need to read it.
        let current = if staged {
            abi::SchedState::default()
        } else {
            dp.maps.sched_state.get(&sid, 0).ctx(|| "read xvs_sched_state".into())?
        };
        let list_changed = old.as_ref().is_none_or(|o| o.generation != svc.generation() || o.sched != sched);
        let mut state = current;
        if old.as_ref().is_none_or(|o| o.sched != sched) {
            state = abi::SchedState::default();
        }
        let mut wrr_synced = old.as_ref().is_some_and(|o| o.wrr_synced);
        if sched == abi::sched::WRR && list_changed {
            let fresh = old.as_ref().is_none_or(|o| o.sched != sched);
            let untouched = old.as_ref().is_some_and(|o| o.sched_written == current);
            let cw = if fresh || (untouched && wrr_synced) {
                // No packet moved the state since the core's hooks last set it: the core
                // followed every change exactly as the kernel's hooks would.
                cw_core
            } else {
                // Packets moved it (or it had already drifted from the core): apply the
                // kernel's rule once to where it is now.
                let cw = (current.wrr & 0xffff_ffff) as u32 as i32;
                if cw > mw || cw == 0 {
                    mw
                } else if di > 1 {
                    (cw / di) * di + 1
                } else {
                    cw
                }
            };
            wrr_synced = cw == cw_core;
            state.wrr = u64::from(cw as u32); // cursor back to the head
        }
        if sched == abi::sched::RR && state.rr_cursor != 0 {
            if let Some(o) = &old {
                let cur = state.rr_cursor - 1;
                if !dests.iter().any(|(d, _)| d.index() == cur) {
                    // The cursor's server left: step back to its predecessor (ip_vs_rr_del_dest).
                    let pos = o.dests.iter().position(|(d, _)| d.index() == cur);
                    let prev =
                        pos.and_then(|p| o.dests[..p].iter().rev().find(|(d, _)| dests.iter().any(|(n, _)| n == d)));
                    state.rr_cursor = prev.map_or(0, |(d, _)| d.index() + 1);
                }
            }
        }
        match self.staged.as_mut().filter(|_| staged) {
            Some(st) => st.sched_state.push((sid, state)),
            None if state != current => {
                dp.maps.sched_state.set(sid, state, 0).ctx(|| "write xvs_sched_state".into())?
            }
            None => {}
        }

        // 5. The service record: the switch.
        let mut flags = 0;
        if matches!(svc.key(), ServiceKey::Fwmark { .. }) {
            flags |= abi::SVC_F_FWMARK;
        }
        if cfg.pe.as_deref() == Some("sip") {
            flags |= abi::SVC_F_SIP;
        }
        if cfg.persistence.is_some() {
            flags |= abi::SVC_F_PERSISTENT;
        }
        if cfg.one_packet {
            flags |= abi::SVC_F_ONEPACKET;
        }
        if cfg.flags.contains(SchedFlags::SCHED1) {
            flags |= abi::SVC_F_SCHED1;
        }
        if cfg.flags.contains(SchedFlags::SCHED2) {
            flags |= abi::SVC_F_SCHED2;
        }
        if cfg.flags.contains(SchedFlags::SCHED3) {
            flags |= abi::SVC_F_SCHED3;
        }
        // Allowed sources: new prefixes before the record that may start using them, stale
        // ones after it no longer does.
        let allowed = cfg.allowed_sources.clone();
        let old_allowed = old.as_ref().map(|o| o.allowed.clone()).unwrap_or_default();
        for p in allowed.iter().filter(|p| !old_allowed.contains(p)) {
            dp.maps
                .allow
                .insert(&allow_key(sid, p), 1, 0)
                .map_err(|e| Error::Capacity(format!("allowed source {p}: {e} (the table holds 65536 prefixes)")))?;
        }
        if !allowed.is_empty() {
            flags |= abi::SVC_F_ALLOWLIST;
        }
        if self.standby.contains(svc.key()) {
            flags |= abi::SVC_F_STANDBY;
        }
        let rec = abi::Svc {
            id: sid,
            flags,
            netmask: netmask_words(&cfg.netmask),
            timeout: cfg.persistence.unwrap_or(0),
            dests_off,
            dests_cnt: n,
            table_off,
            table_len,
            wrr_mw: mw,
            wrr_di: di,
            port: key.port,
            sched,
            af: key.af,
            proto: key.proto,
            pad: [0; 3],
        };
        match self.staged.as_mut().filter(|_| staged) {
            Some(st) => {
                st.svc_by_id.push((sid, rec));
                st.services.push((key, rec));
            }
            None => {
                dp.maps.svc_by_id.set(sid, rec, 0).ctx(|| "write xvs_svc_by_id".into())?;
                dp.maps.services.insert(key, rec, 0).ctx(|| format!("publish service {}", svc.key()))?;
            }
        }

        for p in old_allowed.iter().filter(|p| !allowed.contains(p)) {
            let _ = dp.maps.allow.remove(&allow_key(sid, p));
        }
        if let Some(o) = &old {
            self.lists.release(o.dests_off, o.dests.len() as u32);
            self.tables.release(o.table_off, o.table_len);
        }
        self.published.insert(
            id,
            Published {
                key,
                dests_off,
                dests,
                table_off,
                table_len,
                sched_written: state,
                sched,
                generation: svc.generation(),
                allowed,
                wrr_synced,
            },
        );
        Ok(())
    }

    fn mark_unavailable(&self, dp: &mut Director, id: DestId) -> Result<(), Error> {
        let mut rec = dp.maps.dests.get(&id.index(), 0).ctx(|| "read xvs_dests".into())?;
        rec.flags &= !abi::DEST_F_AVAILABLE;
        dp.maps.dests.set(id.index(), rec, 0).ctx(|| "write xvs_dests".into())
    }

    /// Removes a service that the core no longer has; its servers become unavailable (their
    /// connections follow `expire_nodest_conn`).
    pub fn unpublish(&mut self, dp: &mut Director, id: ServiceId) -> Result<(), Error> {
        self.flush(dp)?;
        let Some(o) = self.published.remove(&id) else { return Ok(()) };
        match dp.maps.services.remove(&o.key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e).ctx(|| "remove a service".into()),
        }
        for (d, _) in &o.dests {
            self.mark_unavailable(dp, *d)?;
        }
        for p in &o.allowed {
            let _ = dp.maps.allow.remove(&allow_key(id.index(), p));
        }
        self.lists.release(o.dests_off, o.dests.len() as u32);
        self.tables.release(o.table_off, o.table_len);
        Ok(())
    }

    /// Makes the dataplane hold exactly the services of `services`: publishes each one and
    /// removes the rest. Used at start-up and after bulk changes.
    pub fn sync_all(&mut self, dp: &mut Director, services: &Services) -> Result<(), Error> {
        let live: Vec<ServiceId> = services.iter().map(|(id, _)| id).collect();
        let set: std::collections::HashSet<ServiceId> = live.iter().copied().collect();
        let stale: Vec<ServiceId> = self.published.keys().filter(|id| !set.contains(id)).copied().collect();
        for id in stale {
            self.unpublish(dp, id)?;
        }
        for id in live {
            self.publish(dp, services, id)?;
        }
        Ok(())
    }

    /// Services currently published.
    pub fn published(&self) -> usize {
        self.published.len()
    }
}

/// The trie key of prefix `p` of service slot `sid`: the service id's 32 bits, then the prefix.
pub(crate) fn allow_key(sid: u32, p: &SourcePrefix) -> aya::maps::lpm_trie::Key<abi::AllowKey> {
    aya::maps::lpm_trie::Key::new(32 + u32::from(p.len), abi::AllowKey { svc_id: sid, addr: addr_words(&p.addr) })
}

/// Writes `entries` with one batch (`batched`), or one call each (`one`) where the kernel
/// refuses the batch: it stops at the first element it cannot write, and the calls one by one
/// redo the lot (each write sets a whole value) and name what failed.
fn write_batch<M, T>(
    map: &mut M,
    entries: &[T],
    batched: impl FnOnce(&M, &[T]) -> Result<(), aya::maps::MapError>,
    mut one: impl FnMut(&mut M, &T) -> Result<(), aya::maps::MapError>,
) -> Result<(), aya::maps::MapError> {
    if entries.is_empty() || batched(map, entries).is_ok() {
        return Ok(());
    }
    entries.iter().try_for_each(|e| one(map, e))
}

fn nr_cpus() -> usize {
    aya::util::nr_cpus().map(|n| n.max(1)).unwrap_or(1)
}

/// A tunnel's settings as the dataplane keeps them in a real server's flags (`xvs_abi.h`).
pub fn tunnel_flags(t: &xvs_core::Tunnel) -> u32 {
    use xvs_core::{TunnelCsum, TunnelKind};
    let kind = match t.kind {
        TunnelKind::Ipip => return 0,
        TunnelKind::Gue => abi::DEST_F_TUN_GUE | (u32::from(t.port) << abi::DEST_TUN_PORT_SHIFT),
        TunnelKind::Gre => abi::DEST_F_TUN_GRE,
    };
    kind | match t.csum {
        TunnelCsum::None => 0,
        TunnelCsum::Csum => abi::DEST_F_TUN_CSUM,
        TunnelCsum::Remcsum => abi::DEST_F_TUN_REMCSUM,
    }
}

/// The tunnel settings kept in a real server's flags (see [`tunnel_flags`]).
pub fn tunnel_of(flags: u32) -> xvs_core::Tunnel {
    use xvs_core::{Tunnel, TunnelCsum, TunnelKind};
    let (kind, port) = if flags & abi::DEST_F_TUN_GUE != 0 {
        (TunnelKind::Gue, (flags >> abi::DEST_TUN_PORT_SHIFT) as u16)
    } else if flags & abi::DEST_F_TUN_GRE != 0 {
        (TunnelKind::Gre, 0)
    } else {
        (TunnelKind::Ipip, 0)
    };
    let csum = if flags & abi::DEST_F_TUN_REMCSUM != 0 {
        TunnelCsum::Remcsum
    } else if flags & abi::DEST_F_TUN_CSUM != 0 {
        TunnelCsum::Csum
    } else {
        TunnelCsum::None
    };
    Tunnel { kind, port, csum }
}

/// The connection flags the core would give a new connection to a server using `method`, as
/// the dataplane stores them (used by tests comparing the two).
pub fn conn_flags_for(method: ForwardMethod) -> u8 {
    let core = ConnFlags::for_method(method);
    let mut f = 0;
    if core.has(ConnFlags::INACTIVE) {
        f |= abi::CONN_F_INACTIVE;
    }
    if core.has(ConnFlags::NOOUTPUT) {
        f |= abi::CONN_F_NOOUTPUT;
    }
    f
}
