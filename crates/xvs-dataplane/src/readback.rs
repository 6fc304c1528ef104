//! Reading the dataplane's counters back into the core's terms.

use xvs_abi as abi;
use xvs_core::{Counters, DestCounters, DestId, ServiceId};

use aya::maps::IterableMap;

use crate::batch;
use crate::director::Director;
use crate::error::{Context, Error};

fn sum(values: impl IntoIterator<Item = abi::Stats>) -> Counters {
    let mut c = Counters::default();
    for v in values {
        c.conns += v.conns;
        c.inpkts += v.inpkts;
        c.outpkts += v.outpkts;
        c.inbytes += v.inbytes;
        c.outbytes += v.outbytes;
    }
    c
}

impl Director {
    /// A real server's statistics, summed over CPUs.
    pub fn dest_stats(&self, id: DestId) -> Result<Counters, Error> {
        let v = self.maps.dest_stats.get(&id.index(), 0).ctx(|| "read xvs_dest_stats".into())?;
        Ok(sum(v.iter().copied()))
    }

    /// A service's statistics, summed over CPUs.
    pub fn svc_stats(&self, id: ServiceId) -> Result<Counters, Error> {
        let v = self.maps.svc_stats.get(&id.index(), 0).ctx(|| "read xvs_svc_stats".into())?;
        Ok(sum(v.iter().copied()))
    }

    /// A real server's connection counters.
    pub fn dest_counters(&self, id: DestId) -> Result<DestCounters, Error> {
        dest_counters(self.maps.dest_state.get(&id.index(), 0).ctx(|| "read xvs_dest_state".into())?)
    }

    /// Packets that left the fast path, by reason label.
    pub fn reasons(&self) -> Result<Vec<(&'static str, u64)>, Error> {
        abi::REASONS
            .iter()
            .map(|(i, name)| {
                let v = self.maps.reasons.get(i, 0).ctx(|| "read xvs_reasons".into())?;
                Ok((*name, v.iter().sum()))
            })
            .collect()
    }

    /// A global counter (`xvs_abi::counter::*`), summed over CPUs.
    pub fn counter(&self, which: u32) -> Result<u64, Error> {
        let v = self.maps.counters.get(&which, 0).ctx(|| "read xvs_counters".into())?;
        Ok(v.iter().sum())
    }
}

/// The counter maps opened a second time from their pins, so a daemon can read them without
/// holding the lock that guards its configuration (reading every counter of 100k services
/// takes about a second of system calls).
pub struct CounterReader {
    svc_stats: aya::maps::PerCpuArray<aya::maps::MapData, abi::Stats>,
    dest_stats: aya::maps::PerCpuArray<aya::maps::MapData, abi::Stats>,
    dest_state: aya::maps::Array<aya::maps::MapData, abi::DestState>,
}

impl CounterReader {
    /// A real server's statistics, summed over CPUs.
    pub fn dest_stats(&self, id: DestId) -> Result<Counters, Error> {
        let v = self.dest_stats.get(&id.index(), 0).ctx(|| "read xvs_dest_stats".into())?;
        Ok(sum(v.iter().copied()))
    }

    /// A service's statistics, summed over CPUs.
    pub fn svc_stats(&self, id: ServiceId) -> Result<Counters, Error> {
        let v = self.svc_stats.get(&id.index(), 0).ctx(|| "read xvs_svc_stats".into())?;
        Ok(sum(v.iter().copied()))
    }

    /// A real server's connection counters.
    pub fn dest_counters(&self, id: DestId) -> Result<DestCounters, Error> {
        dest_counters(self.dest_state.get(&id.index(), 0).ctx(|| "read xvs_dest_state".into())?)
    }

    /// The statistics of services `ids`, read in batches up to the highest slot (one call per
    /// element where the kernel has no batches); a service whose slot cannot be read is left out.
    pub fn svc_stats_many(&self, ids: &[ServiceId]) -> Vec<(ServiceId, Counters)> {
        let n = ids.iter().map(|i| i.index() + 1).max().unwrap_or(0);
        let cpus = batch::possible_cpus();
        match batch::lookup_percpu_array::<abi::Stats>(self.svc_stats.map(), cpus, n) {
            Ok(all) => ids
                .iter()
                .filter_map(|id| all.get(id.index() as usize).map(|v| (*id, sum(v.iter().copied()))))
                .collect(),
            Err(_) => ids.iter().filter_map(|id| self.svc_stats(*id).ok().map(|c| (*id, c))).collect(),
        }
    }

    /// The connection counters and statistics of real servers `ids`, as
    /// [`CounterReader::svc_stats_many`] reads them.
    #[allow(clippy::type_complexity)]
    pub fn dests_many(&self, ids: &[DestId]) -> Vec<(DestId, Option<DestCounters>, Option<Counters>)> {
        let n = ids.iter().map(|i| i.index() + 1).max().unwrap_or(0);
        let cpus = batch::possible_cpus();
        let state = batch::lookup_array::<abi::DestState>(self.dest_state.map(), n);
        let stats = batch::lookup_percpu_array::<abi::Stats>(self.dest_stats.map(), cpus, n);
        match (state, stats) {
            (Ok(state), Ok(stats)) => ids
                .iter()
                .map(|id| {
                    let i = id.index() as usize;
                    let c = state.get(i).and_then(|s| dest_counters(*s).ok());
                    (*id, c, stats.get(i).map(|v| sum(v.iter().copied())))
                })
                .collect(),
            _ => ids.iter().map(|id| (*id, self.dest_counters(*id).ok(), self.dest_stats(*id).ok())).collect(),
        }
    }
}

fn dest_counters(s: abi::DestState) -> Result<DestCounters, Error> {
    let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    Ok(DestCounters {
        active: clamp(s.active),
        inactive: clamp(s.total - s.active),
        persistent: clamp(s.persist),
        overloaded: s.overload != 0,
    })
}

/// The connection and template tables (and the real servers they name) opened a second time
/// from their pins, so that listing a million connections (`-Lc`) never holds the daemon's lock.
#[allow(missing_docs)]
pub struct ConnTables {
    pub conn4: aya::maps::HashMap<aya::maps::MapData, abi::Conn4Key, abi::Conn>,
    pub conn6: aya::maps::HashMap<aya::maps::MapData, abi::Conn6Key, abi::Conn>,
    pub tpl4: aya::maps::HashMap<aya::maps::MapData, abi::Conn4Key, abi::Tpl>,
    pub tpl6: aya::maps::HashMap<aya::maps::MapData, abi::Conn6Key, abi::Tpl>,
    pub dests: aya::maps::Array<aya::maps::MapData, abi::Dest>,
    pub services: aya::maps::HashMap<aya::maps::MapData, abi::SvcKey, abi::Svc>,
}

/// Real servers read once each while a table is walked: thousands of connections share a few
/// servers, and a `bpf()` call per connection was most of a walk's time.
pub struct DestCache<'a> {
    dests: &'a aya::maps::Array<aya::maps::MapData, abi::Dest>,
    seen: std::cell::RefCell<std::collections::HashMap<u32, Option<abi::Dest>>>,
}

impl DestCache<'_> {
    /// Real server slot `id`, as read the first time it was asked for.
    pub fn get(&self, id: u32) -> Option<abi::Dest> {
        *self.seen.borrow_mut().entry(id).or_insert_with(|| self.dests.get(&id, 0).ok())
    }
}

impl ConnTables {
    /// A reader of real servers for one walk of the tables ([`DestCache`]).
    pub fn dest_cache(&self) -> DestCache<'_> {
        DestCache { dests: &self.dests, seen: Default::default() }
    }

    /// Firewall-mark services' marks by service slot: their templates carry the slot where the
    /// kernel's carry the mark.
    pub fn fwmarks(&self) -> std::collections::HashMap<u32, u32> {
        self.services
            .iter()
            .flatten()
            .filter(|(_, s)| s.flags & abi::SVC_F_FWMARK != 0)
            .map(|(k, s)| (s.id, k.addr[0]))
            .collect()
    }
}

pub(crate) fn open_pinned<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    d: &Director,
    name: &str,
) -> Result<T, Error> {
    let data = aya::maps::MapData::from_pin(d.map_path(name)).ctx(|| format!("open the pinned {name}"))?;
    let map = aya::maps::Map::from_map_data(data).ctx(|| format!("open {name}"))?;
    T::try_from(map).ctx(|| format!("open {name}"))
}

impl Director {
    /// Opens the connection tables again (see [`ConnTables`]).
    pub fn conn_tables(&self) -> Result<ConnTables, Error> {
        Ok(ConnTables {
            conn4: open_pinned(self, "xvs_conn4")?,
            conn6: open_pinned(self, "xvs_conn6")?,
            tpl4: open_pinned(self, "xvs_tpl4")?,
            tpl6: open_pinned(self, "xvs_tpl6")?,
            dests: open_pinned(self, "xvs_dests")?,
            services: open_pinned(self, "xvs_services")?,
        })
    }

    /// Opens the counter maps again (see [`CounterReader`]).
    pub fn counter_reader(&self) -> Result<CounterReader, Error> {
        Ok(CounterReader {
            svc_stats: open_pinned(self, "xvs_svc_stats")?,
            dest_stats: open_pinned(self, "xvs_dest_stats")?,
            dest_state: open_pinned(self, "xvs_dest_state")?,
        })
    }
}
