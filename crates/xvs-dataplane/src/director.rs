//! The director program (`bpf/xvs_lb.bpf.c`): loading with the configured table sizes, the
//! maps as typed handles, attaching to interfaces, running the sweep, and `BPF_PROG_TEST_RUN`.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use xvs_abi as abi;

use crate::error::{Context, Error};

/// Table sizes and where the maps are pinned.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The bpffs directory maps are pinned in; a director loaded again with the same directory
    /// adopts the same tables (connections, counters, services).
    pub pin_dir: PathBuf,
    /// Services (and slots in the per-service arrays).
    pub max_services: u32,
    /// Real servers (and entries in the list pool).
    pub max_dests: u32,
    /// Connections per address family (the size of each connection and reply table). Nothing
    /// evicts a connection to make room: a full table refuses new ones. Entries take memory
    /// when present (the tables are not preallocated); the bucket array, 16 bytes per entry
    /// rounded up to a power of two, is taken at load.
    pub max_conns: u32,
    /// Connections not yet assured (TCP before ESTABLISHED, UDP before a second packet), both
    /// families together, at most: past it new flows are refused, so a SYN flood can hold at
    /// most this much of a table and never takes an established connection's place.
    pub max_half: u32,
    /// The director's own ICMP errors (unreachable, time exceeded, too big) per second and CPU
    /// (0: no limit), as the kernel's `net.ipv4.icmp_msgs_per_sec`.
    pub icmp_rate: u32,
    /// ... in bursts of at most this many (`net.ipv4.icmp_msgs_burst`).
    pub icmp_burst: u32,
    /// Buckets in the sh/dh/mh pool (one mh service takes 4093).
    pub table_slots: u32,
    /// Which connection and reply tables take all their memory when they are created
    /// (ignored for tables already pinned: they keep how they were made).
    pub prealloc: Prealloc,
    /// Walk large connection tables in steps by batch reads even where their iterators load
    /// (the fallback where the kernel refuses iterator programs; tests use it to cover both).
    pub batch_walk: bool,
}

/// Whether the connection and NAT reply tables are preallocated. Preallocated, a table takes
/// `max_conns` entries of memory when it is created (about 90 bytes an IPv4 connection and 80
/// a reply, 110 and 130 for IPv6) and a new connection takes a free entry from a per-CPU list;
/// otherwise each entry is allocated as its connection arrives. Either way nothing evicts a
/// connection: a full table refuses new ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prealloc {
    /// Memory follows the connections present (the default).
    #[default]
    None,
    /// The IPv4 tables (`xvs_conn4`, `xvs_nat4`) are preallocated.
    Ipv4,
    /// The IPv4 and IPv6 tables are preallocated.
    All,
}

impl Prealloc {
    /// The tables this setting preallocates: name, key size, value size.
    fn tables(self) -> &'static [(&'static str, usize, usize)] {
        use std::mem::size_of;
        const V4: [(&str, usize, usize); 2] = [
            ("xvs_conn4", size_of::<abi::Conn4Key>(), size_of::<abi::Conn>()),
            ("xvs_nat4", size_of::<abi::Nat4Key>(), size_of::<abi::Conn4Key>()),
        ];
        const ALL: [(&str, usize, usize); 4] = [
            V4[0],
            V4[1],
            ("xvs_conn6", size_of::<abi::Conn6Key>(), size_of::<abi::Conn>()),
            ("xvs_nat6", size_of::<abi::Nat6Key>(), size_of::<abi::Conn6Key>()),
        ];
        match self {
            Prealloc::None => &[],
            Prealloc::Ipv4 => &V4,
            Prealloc::All => &ALL,
        }
    }
}

impl LoadOptions {
    /// Defaults: 128k services, 256k real servers, 4M connections per family and 256k not yet
    /// assured (memory is taken per entry present: docs/dataplane.md), 4M scheduler buckets.
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            pin_dir: pin_dir.into(),
            max_services: 131_072,
            max_dests: 262_144,
            max_conns: 4_194_304,
            max_half: 262_144,
            icmp_rate: 1000,
            icmp_burst: 50,
            table_slots: 4_194_304,
            prealloc: Prealloc::None,
            batch_walk: false,
        }
    }

    /// Small tables for tests.
    pub fn small(pin_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            pin_dir: pin_dir.into(),
            max_services: 1024,
            max_dests: 8192,
            max_conns: 65_536,
            max_half: 16_384,
            icmp_rate: 1000,
            icmp_burst: 50,
            table_slots: 65_536,
            prealloc: Prealloc::None,
            batch_walk: false,
        }
    }
}

/// The hash map flag of a table that allocates its entries as they are inserted.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Creates and pins, before the loader runs, the tables `prealloc` asks for that are not pinned
/// yet: the loader then adopts them as it adopts any pinned map. (The object's definitions say
/// BPF_F_NO_PREALLOC, and aya sets no map flags at load.)
fn prealloc_tables(pin_dir: &Path, prealloc: Prealloc, room: u32) -> Result<(), Error> {
    const BPF_MAP_TYPE_HASH: u32 = 1;
    let mut made = Vec::new();
    for &(name, key, value) in prealloc.tables() {
        let path = pin_dir.join(name);
        if path.exists() {
            continue;
        }
        let def = aya_obj::Map::new_from_params(BPF_MAP_TYPE_HASH, key as u32, value as u32, room, 0);
        let created = aya::maps::MapData::create(def, name, None)
            .map_err(|e| {
                let mb = (u64::from(room) * (48 + key + value.next_multiple_of(8)) as u64) >> 20;
                format!("preallocate {name} ({room} entries, about {mb} MB): {e}; lower --max-conns or preallocate fewer tables")
            })
            .and_then(|m| m.pin(&path).map_err(|e| format!("pin {}: {e}", path.display())));
        if let Err(e) = created {
            // None half made: the next start with other settings makes them all afresh.
            for p in &made {
                let _ = std::fs::remove_file(p);
            }
            return Err(Error::Unsupported(e));
        }
        made.push(path);
    }
    Ok(())
}

static XVS_LB: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xvs_lb.o"));

/// Typed handles on the director's maps.
#[allow(missing_docs)]
pub struct Maps {
    pub services: HashMap<MapData, abi::SvcKey, abi::Svc>,
    pub svc_by_id: Array<MapData, abi::Svc>,
    pub sched_state: Array<MapData, abi::SchedState>,
    pub dest_lists: Array<MapData, abi::DestRef>,
    pub tables: Array<MapData, u32>,
    pub dests: Array<MapData, abi::Dest>,
    pub dest_state: Array<MapData, abi::DestState>,
    pub dest_stats: PerCpuArray<MapData, abi::Stats>,
    pub svc_stats: PerCpuArray<MapData, abi::Stats>,
    pub conn4: HashMap<MapData, abi::Conn4Key, abi::Conn>,
    pub conn6: HashMap<MapData, abi::Conn6Key, abi::Conn>,
    pub nat4: HashMap<MapData, abi::Nat4Key, abi::Conn4Key>,
    pub nat6: HashMap<MapData, abi::Nat6Key, abi::Conn6Key>,
    pub tpl4: HashMap<MapData, abi::Conn4Key, abi::Tpl>,
    pub tpl6: HashMap<MapData, abi::Conn6Key, abi::Tpl>,
    pub lblc: HashMap<MapData, abi::LblcKey, abi::Lblc>,
    pub config: Array<MapData, abi::Cfg>,
    pub reasons: PerCpuArray<MapData, u64>,
    pub counters: PerCpuArray<MapData, u64>,
    pub gauges: Array<MapData, abi::Gauges>,
    pub allow: aya::maps::LpmTrie<MapData, abi::AllowKey, u32>,
    pub neigh_miss: Array<MapData, abi::NeighMiss>,
    pub if_macs: Array<MapData, abi::IfMac>,
    pub trace_ctl: Array<MapData, abi::TraceFilter>,
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map, Error> {
    ebpf.take_map(name).ok_or_else(|| Error::Unsupported(format!("the director object has no map {name}")))
}

macro_rules! typed {
    ($ebpf:expr, $name:literal) => {{
        let typed: Result<_, aya::maps::MapError> = take($ebpf, $name)?.try_into();
        typed.ctx(|| format!("open map {}", $name))?
    }};
}

/// The loaded director: its maps and its two programs.
pub struct Director {
    ebpf: Ebpf,
    /// The maps.
    pub maps: Maps,
    /// Where the maps are pinned.
    pub pin_dir: PathBuf,
    /// Table sizes it was loaded with.
    pub options: LoadOptions,
    /// The interfaces it was attached to.
    interfaces: Vec<String>,
    /// The trace ring buffer's reader, while no trace holds it.
    pub(crate) trace_ring: Option<crate::trace::TraceReader>,
    /// The connection tables' stepwise walk (shared with a [`crate::SweepRunner`]), or why
    /// this kernel has none (then the sweep walks them in one go).
    pub(crate) walk: std::sync::Arc<std::sync::Mutex<Result<crate::ConnWalk, String>>>,
}

/// How [`Director::attach_pinned`] attached.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link in this mode.
    New(XdpMode),
    /// The program replaced an earlier one on an existing link.
    Replaced,
}

/// The result of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The XDP action (`XDP_PASS` = 2, `XDP_TX` = 3, `XDP_REDIRECT` = 4, `XDP_DROP` = 1).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

/// XDP action numbers.
pub mod action {
    #![allow(missing_docs)]
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
}

impl Director {
    /// Loads and verifies the director, creating its maps or adopting those pinned in
    /// `options.pin_dir`.
    pub fn load(options: LoadOptions) -> Result<Director, Error> {
        if crate::bpffs::ensure_mounted(&options.pin_dir)? {
            eprintln!("xvs: bpffs was not mounted; mounted it at {}", crate::bpffs::DEFAULT_MOUNT);
        }
        std::fs::create_dir_all(&options.pin_dir)
            .map_err(|e| Error::Unsupported(format!("create pin directory {}: {e}", options.pin_dir.display())))?;
        let room = options.max_conns;
        prealloc_tables(&options.pin_dir, options.prealloc, room)?;
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(&options.pin_dir)
            .map_max_entries("xvs_services", options.max_services)
            .map_max_entries("xvs_sched_state", options.max_services)
            .map_max_entries("xvs_svc_by_id", options.max_services)
            .map_max_entries("xvs_svc_stats", options.max_services)
            .map_max_entries("xvs_dest_lists", options.max_dests)
            .map_max_entries("xvs_dests", options.max_dests)
            .map_max_entries("xvs_dest_state", options.max_dests)
            .map_max_entries("xvs_dest_stats", options.max_dests)
            .map_max_entries("xvs_conn4", room)
            .map_max_entries("xvs_conn6", room)
            .map_max_entries("xvs_nat4", room)
            .map_max_entries("xvs_nat6", room)
            .map_max_entries("xvs_tpl4", (room / 4).max(1024))
            .map_max_entries("xvs_tpl6", (room / 4).max(1024))
            .map_max_entries("xvs_tpl_sip", (room / 4).max(1024))
            .map_max_entries("xvs_sched_tables", options.table_slots);
        let mut ebpf = loader.load(XVS_LB).ctx(|| "load the director program (bpf/xvs_lb.bpf.c)".into())?;
        for name in ["xvs_lb", "xvs_lb_fwm", "xvs_sweep", "xvs_install"] {
            let prog: Result<&mut Xdp, aya::programs::ProgramError> = ebpf
                .program_mut(name)
                .ok_or_else(|| Error::Unsupported(format!("the director object has no program {name}")))?
                .try_into();
            let prog = prog.ctx(|| format!("program {name} is not XDP"))?;
            // The verifier gives up with EAGAIN when a signal is pending for the loading
            // thread (a child process exiting elsewhere in the process, say); try again.
            let mut attempt = 0;
            loop {
                match prog.load() {
                    Err(aya::programs::ProgramError::LoadError { io_error, .. })
                        if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < 8 =>
                    {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    r => break r.ctx(|| format!("verify {name}"))?,
                }
            }
        }
        {
            let stamp: Result<&mut aya::programs::SchedClassifier, aya::programs::ProgramError> = ebpf
                .program_mut("xvs_fwm_stamp")
                .ok_or_else(|| Error::Unsupported("the director object has no program xvs_fwm_stamp".into()))?
                .try_into();
            stamp
                .ctx(|| "program xvs_fwm_stamp is not a TC classifier".into())?
                .load()
                .ctx(|| "verify xvs_fwm_stamp".into())?;
        }
        let maps = Maps {
            services: typed!(&mut ebpf, "xvs_services"),
            svc_by_id: typed!(&mut ebpf, "xvs_svc_by_id"),
            sched_state: typed!(&mut ebpf, "xvs_sched_state"),
            dest_lists: typed!(&mut ebpf, "xvs_dest_lists"),
            tables: typed!(&mut ebpf, "xvs_sched_tables"),
            dests: typed!(&mut ebpf, "xvs_dests"),
            dest_state: typed!(&mut ebpf, "xvs_dest_state"),
            dest_stats: typed!(&mut ebpf, "xvs_dest_stats"),
            svc_stats: typed!(&mut ebpf, "xvs_svc_stats"),
            conn4: typed!(&mut ebpf, "xvs_conn4"),
            conn6: typed!(&mut ebpf, "xvs_conn6"),
            nat4: typed!(&mut ebpf, "xvs_nat4"),
            nat6: typed!(&mut ebpf, "xvs_nat6"),
            tpl4: typed!(&mut ebpf, "xvs_tpl4"),
            tpl6: typed!(&mut ebpf, "xvs_tpl6"),
            lblc: typed!(&mut ebpf, "xvs_lblc"),
            config: typed!(&mut ebpf, "xvs_config"),
            reasons: typed!(&mut ebpf, "xvs_reasons"),
            counters: typed!(&mut ebpf, "xvs_counters"),
            gauges: typed!(&mut ebpf, "xvs_gauges"),
            allow: typed!(&mut ebpf, "xvs_allow"),
            neigh_miss: typed!(&mut ebpf, "xvs_neigh_miss"),
            if_macs: typed!(&mut ebpf, "xvs_if_macs"),
            trace_ctl: typed!(&mut ebpf, "xvs_trace_ctl"),
        };
        let trace_ring = Some(crate::trace::TraceReader::new(typed!(&mut ebpf, "xvs_trace")));
        let pin_dir = options.pin_dir.clone();
        use aya::maps::IterableMap;
        let walk =
            crate::ConnWalk::load(&mut ebpf, maps.conn4.map(), maps.conn6.map(), maps.config.map(), options.batch_walk)
                .map_err(|e| e.to_string());
        let walk = std::sync::Arc::new(std::sync::Mutex::new(walk));
        Ok(Director { ebpf, maps, pin_dir, options, interfaces: Vec::new(), trace_ring, walk })
    }

    /// How the connection and reply tables in use were made: for each (`xvs_conn4`, `xvs_nat4`,
    /// `xvs_conn6`, `xvs_nat6`), whether it is preallocated and its size. Tables adopted from
    /// an earlier run keep how they were made, whatever this run's options say.
    pub fn conn_table_kinds(&self) -> Result<Vec<(&'static str, bool, u32)>, Error> {
        use aya::maps::IterableMap;
        let m = &self.maps;
        let tables: [(&'static str, &MapData); 4] = [
            ("xvs_conn4", m.conn4.map()),
            ("xvs_nat4", m.nat4.map()),
            ("xvs_conn6", m.conn6.map()),
            ("xvs_nat6", m.nat6.map()),
        ];
        tables
            .into_iter()
            .map(|(name, map)| {
                let info = map.info().map_err(|e| Error::Unsupported(format!("{name}'s info: {e}")))?;
                Ok((name, info.map_flags() & BPF_F_NO_PREALLOC == 0, info.max_entries()))
            })
            .collect()
    }

    /// Why large connection tables are walked in steps by batch reads rather than by their
    /// iterators (a kernel that refuses iterator programs), if they are.
    pub fn walk_batch_reason(&self) -> Option<String> {
        self.walk.lock().ok().and_then(|w| w.as_ref().ok().and_then(|w| w.batch_reason().map(str::to_string)))
    }

    /// Why the connection tables cannot be walked in steps on this kernel (then every sweep
    /// walks them in one go), or None.
    pub fn walk_unavailable(&self) -> Option<String> {
        self.walk.lock().map_or_else(|_| Some("poisoned".into()), |w| w.as_ref().err().cloned())
    }

    pub(crate) fn prog(&self, name: &str) -> Result<&Xdp, Error> {
        let p: Result<&Xdp, aya::programs::ProgramError> =
            self.ebpf.program(name).ok_or_else(|| Error::Unsupported(format!("no program {name}")))?.try_into();
        p.ctx(|| format!("program {name} is not XDP"))
    }

    /// The kernel's run statistics of the director program: total run time (ns) and run count,
    /// kept while BPF statistics are enabled (`aya::sys::enable_stats`). Unlike a
    /// BPF_PROG_TEST_RUN duration, they hold the program's own time only.
    pub fn run_stats(&self) -> Result<(u64, u64), Error> {
        let info = self.prog("xvs_lb")?.info().ctx(|| "read xvs_lb's info".into())?;
        Ok((info.run_time().as_nanos() as u64, info.run_count()))
    }

    fn prog_mut(&mut self, name: &str) -> Result<&mut Xdp, Error> {
        let p: Result<&mut Xdp, aya::programs::ProgramError> =
            self.ebpf.program_mut(name).ok_or_else(|| Error::Unsupported(format!("no program {name}")))?.try_into();
        p.ctx(|| format!("program {name} is not XDP"))
    }

    /// Attaches the director to interface `ifname` in native mode, or generic mode when the
    /// driver has no native XDP (`native` false forces generic). Returns the mode used.
    pub fn attach(&mut self, ifname: &str, native: bool) -> Result<XdpMode, Error> {
        self.note_interface(ifname)?;
        let prog = self.prog_mut("xvs_lb")?;
        if native {
            match prog.attach(ifname, XdpMode::Driver) {
                Ok(_) => return Ok(XdpMode::Driver),
                Err(e) => {
                    let fallback = prog.attach(ifname, XdpMode::Skb);
                    return fallback
                        .map(|_| XdpMode::Skb)
                        .ctx(|| format!("attach to {ifname} (native mode failed too: {e})"));
                }
            }
        }
        prog.attach(ifname, XdpMode::Skb).ctx(|| format!("attach to {ifname} in generic mode"))?;
        Ok(XdpMode::Skb)
    }

    /// Attaches to `ifname` with the link pinned at `link_path`, so it stays attached when this
    /// process exits; if a link is pinned there already (an earlier xvsd), this program is
    /// swapped into it atomically — no packet goes unhandled during a restart.
    pub fn attach_pinned(&mut self, ifname: &str, native: bool, link_path: &Path) -> Result<Attached, Error> {
        use aya::programs::links::{FdLink, PinnedLink};
        self.note_interface(ifname)?;
        use aya::programs::xdp::XdpLink;
        let linkerr = |what: String| move |e: &dyn std::fmt::Display| Error::Unsupported(format!("{what}: {e}"));
        let prog = self.prog_mut("xvs_lb")?;
        if link_path.exists() {
            let pinned = PinnedLink::from_pin(link_path)
                .map_err(|e| linkerr(format!("open the pinned link {}", link_path.display()))(&e))?;
            let fd: FdLink = pinned.into();
            let link = XdpLink::try_from(fd).map_err(|e| linkerr("the pinned link is not an XDP link".into())(&e))?;
            let id = prog.attach_to_link(link).ctx(|| format!("replace the program on {ifname}"))?;
            // The pin keeps the link; this process's handle can go.
            let taken = prog.take_link(id).ctx(|| "take the link".into())?;
            drop(FdLink::try_from(taken).map_err(|e| linkerr("the link".into())(&e))?);
            return Ok(Attached::Replaced);
        }
        let (id, mode) = match native.then(|| prog.attach(ifname, XdpMode::Driver)) {
            Some(Ok(id)) => (id, XdpMode::Driver),
            _ => (prog.attach(ifname, XdpMode::Skb).ctx(|| format!("attach to {ifname}"))?, XdpMode::Skb),
        };
        let link = prog.take_link(id).ctx(|| "take the link".into())?;
        let fd = FdLink::try_from(link)
            .map_err(|e| linkerr(format!("this kernel attaches XDP to {ifname} without a BPF link"))(&e))?;
        if let Some(dir) = link_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| linkerr(format!("create {}", dir.display()))(&e))?;
        }
        fd.pin(link_path).map_err(|e| linkerr(format!("pin the link at {}", link_path.display()))(&e))?;
        Ok(Attached::New(mode))
    }

    /// Attaches the firewall-mark path: `xvs_fwm_stamp` on the egress of `dev`, the device
    /// marked packets are routed to, and `xvs_lb_fwm` (generic XDP) on its veth peer `peer`.
    /// Both links are pinned under `link_dir` (bpffs refuses dots in names: `DEV-tc`, `PEER-xdp`), so they outlive this process; pinned links of an
    /// earlier xvsd get this process's programs swapped in.
    pub fn attach_fwmark(&mut self, dev: &str, peer: &str, link_dir: &Path) -> Result<(), Error> {
        use aya::programs::links::{FdLink, PinnedLink};
        use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
        use aya::programs::xdp::XdpLink;
        use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
        let linkerr = |what: String| {
            move |e: &dyn std::error::Error| {
                let mut msg = format!("{what}: {e}");
                let mut src = e.source();
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                Error::Unsupported(msg)
            }
        };
        std::fs::create_dir_all(link_dir).map_err(|e| linkerr(format!("create {}", link_dir.display()))(&e))?;

        let tc_pin = link_dir.join(format!("{dev}-tc"));
        let prog: Result<&mut SchedClassifier, aya::programs::ProgramError> = self
            .ebpf
            .program_mut("xvs_fwm_stamp")
            .ok_or_else(|| Error::Unsupported("no program xvs_fwm_stamp".into()))?
            .try_into();
        let prog = prog.ctx(|| "program xvs_fwm_stamp".into())?;
        // A pinned link whose device was deleted meanwhile cannot take the program: unpinned,
        // and attached afresh.
        let replaced = PinnedLink::from_pin(&tc_pin).ok().and_then(|old| {
            let link = SchedClassifierLink::try_from(FdLink::from(old)).ok()?;
            prog.attach_to_link(link).ok()
        });
        if replaced.is_none() {
            let _ = std::fs::remove_file(&tc_pin);
        }
        let id = match replaced {
            Some(id) => id,
            None => prog
                .attach_with_options(dev, TcAttachType::Egress, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .ctx(|| format!("attach to {dev}'s egress (TCX, Linux 6.6 or later)"))?,
        };
        let link = prog.take_link(id).ctx(|| "take the link".into())?;
        let fd = FdLink::try_from(link).map_err(|e| linkerr("the TCX link".into())(&e))?;
        if !tc_pin.exists() {
            fd.pin(&tc_pin).map_err(|e| linkerr(format!("pin {}", tc_pin.display()))(&e))?;
        }

        let xdp_pin = link_dir.join(format!("{peer}-xdp"));
        let prog = self.prog_mut("xvs_lb_fwm")?;
        let replaced = PinnedLink::from_pin(&xdp_pin).ok().and_then(|old| {
            let link = XdpLink::try_from(FdLink::from(old)).ok()?;
            prog.attach_to_link(link).ok()
        });
        if replaced.is_none() {
            let _ = std::fs::remove_file(&xdp_pin);
        }
        let id = match replaced {
            Some(id) => id,
            // Generic: what it redirects leaves as an ordinary packet through any driver.
            None => prog.attach(peer, XdpMode::Skb).ctx(|| format!("attach to {peer}"))?,
        };
        let link = prog.take_link(id).ctx(|| "take the link".into())?;
        let fd = FdLink::try_from(link).map_err(|e| linkerr("the XDP link".into())(&e))?;
        if !xdp_pin.exists() {
            fd.pin(&xdp_pin).map_err(|e| linkerr(format!("pin {}", xdp_pin.display()))(&e))?;
        }
        Ok(())
    }

    /// Runs the firewall-mark entry (`xvs_lb_fwm`) once on `frame`, as if it came from the
    /// firewall-mark device with the mark stamped in its source MAC, arriving on `ifindex`.
    pub fn test_run_fwm(&self, frame: &[u8], ifindex: u32) -> Result<RunResult, Error> {
        run(self.prog("xvs_lb_fwm")?, frame, ifindex, 1).map(|(r, _)| r)
    }

    /// Records `ifname`'s MAC for the other-host check (see `xvs_if_macs`), and remembers the
    /// interface for [`Director::refresh_macs`]. Attaching does it; tests that only run the
    /// program call it themselves.
    pub fn note_interface(&mut self, ifname: &str) -> Result<(), Error> {
        if !self.interfaces.iter().any(|i| i == ifname) {
            self.interfaces.push(ifname.to_string());
        }
        self.write_mac(ifname)
    }

    fn write_mac(&mut self, ifname: &str) -> Result<(), Error> {
        // From this network namespace (sysfs would show the one it was mounted in).
        let Ok(index) = nix::net::if_::if_nametoindex(ifname) else { return Ok(()) };
        let mac = nix::ifaddrs::getifaddrs().ok().and_then(|mut addrs| {
            addrs.find_map(|a| {
                let link = a.address.as_ref()?.as_link_addr()?;
                (a.interface_name == ifname && link.halen() == 6).then(|| link.addr()).flatten()
            })
        });
        // Not Ethernet (no 6-byte address): no check on it.
        let rec = match mac {
            Some(mac) => abi::IfMac { ifindex: index, mac, pad: [0; 2] },
            None => abi::IfMac::default(),
        };
        let slot = index & (abi::IF_SLOTS - 1);
        if self.maps.if_macs.get(&slot, 0).ok() != Some(rec) {
            self.maps.if_macs.set(slot, rec, 0).ctx(|| format!("record the MAC of {ifname}"))?;
        }
        Ok(())
    }

    /// Reads the attached interfaces' MACs again (a MAC can change while attached).
    pub fn refresh_macs(&mut self) -> Result<(), Error> {
        for i in self.interfaces.clone() {
            self.write_mac(&i)?;
        }
        Ok(())
    }

    /// Runs the director once on `frame` as if it arrived on interface `ifindex`.
    pub fn test_run(&self, frame: &[u8], ifindex: u32) -> Result<RunResult, Error> {
        run(self.prog("xvs_lb")?, frame, ifindex, 1).map(|(r, _)| r)
    }

    /// Runs the director `repeat` times on `frame` and returns the kernel's average time per
    /// run (the buffer is not reset between repeats: see lab-notes).
    pub fn test_run_timed(
        &self,
        frame: &[u8],
        ifindex: u32,
        repeat: u32,
    ) -> Result<(RunResult, std::time::Duration), Error> {
        run(self.prog("xvs_lb")?, frame, ifindex, repeat)
    }

    /// Runs the sweep: expires connections and templates whose time is up, with their
    /// accounting; `flags` are `xvs_abi::SWEEP_*`.
    pub fn sweep(&self, flags: u32) -> Result<abi::SweepOut, Error> {
        self.sweep_with(abi::SweepArgs { flags, ..Default::default() })
    }

    /// Applies a threshold edit to server slot `dest_id`'s overload flag in the kernel, where
    /// only the flag is written (a read-modify-write from here would overwrite the counters
    /// that packets move meanwhile).
    pub fn rethreshold(&self, dest_id: u32, u_thresh: u32, l_thresh: u32) -> Result<(), Error> {
        let args = abi::SweepArgs { flags: abi::SWEEP_RETHRESH, dest_id, u_thresh, l_thresh, ..Default::default() };
        self.sweep_with(args).map(|_| ())
    }

    /// Connections not yet assured, now (the half-open gauge).
    pub fn half_open(&self) -> Result<i64, Error> {
        Ok(self.maps.gauges.get(&0, 0).ctx(|| "read xvs_gauges".into())?.half)
    }

    /// Runs the sweep program with `args`.
    pub fn sweep_with(&self, args: abi::SweepArgs) -> Result<abi::SweepOut, Error> {
        run_sweep(self.prog("xvs_sweep")?, args)
    }

    /// The server slots the lblc/lblcr table names, with the service slot of each entry: a
    /// removed server an entry names stays in the trash, as the kernel's entries hold a
    /// reference to theirs.
    pub fn lblc_slots(&self) -> Result<std::collections::HashSet<(u32, u32)>, Error> {
        let mut slots = std::collections::HashSet::new();
        for entry in self.maps.lblc.iter() {
            let (k, e) = entry.ctx(|| "read the lblc table".into())?;
            slots.extend(e.dest.iter().filter(|d| **d != 0).map(|d| (k.svc_id, d - 1)));
        }
        Ok(slots)
    }

    /// Next hops the dataplane found no neighbour for, newer than `after` (milliseconds of
    /// CLOCK_MONOTONIC_COARSE, as the dataplane stamps): (address, interface index, stamp).
    /// The kernel resolves a neighbour only for what it sends itself, so xvsd makes it send
    /// something there.
    pub fn neigh_misses(&self, after: u32) -> Vec<(std::net::IpAddr, u32, u32)> {
        (0..abi::NEIGH_SLOTS)
            .filter_map(|i| self.maps.neigh_miss.get(&i, 0).ok())
            .filter(|m| m.stamp != 0 && (m.stamp.wrapping_sub(after) as i32) > 0)
            .map(|m| (crate::words_addr(m.af, &m.addr), m.ifindex, m.stamp))
            .collect()
    }

    /// Installs connections and templates synchronised from another director, with their
    /// accounting done by the kernel program as a packet's would be; returns each record's
    /// result (`xvs_abi::INSTALLED_*`), in order.
    pub fn install(&self, recs: &[abi::InstallRec]) -> Result<Vec<u8>, Error> {
        let prog = self.prog("xvs_install")?;
        let mut out = Vec::with_capacity(recs.len());
        for chunk in recs.chunks(abi::INSTALL_MAX) {
            let n = size_of::<abi::InstallRec>();
            let mut input = vec![0u8; std::mem::size_of_val(chunk)];
            for (i, r) in chunk.iter().enumerate() {
                // SAFETY: InstallRec is plain old data (xvs-abi).
                let b: &[u8] = unsafe { core::slice::from_raw_parts(r as *const abi::InstallRec as *const u8, n) };
                input[i * n..(i + 1) * n].copy_from_slice(b);
            }
            let (r, _) = run(prog, &input, 1, 1)?;
            let at = core::mem::offset_of!(abi::InstallRec, result);
            out.extend((0..chunk.len()).map(|i| r.frame.get(i * n + at).copied().unwrap_or(abi::INSTALLED_BAD)));
        }
        Ok(out)
    }

    /// The pin directory's path for a named map.
    pub fn map_path(&self, name: &str) -> PathBuf {
        Path::new(&self.pin_dir).join(name)
    }
}

use core::mem::size_of;

/// Runs the sweep program `prog` with `args` and reads what it wrote back.
pub(crate) fn run_sweep(prog: &Xdp, args: abi::SweepArgs) -> Result<abi::SweepOut, Error> {
    let mut input = [0u8; 128];
    // SAFETY: SweepArgs is plain old data (xvs-abi); the buffer is larger than it.
    let bytes: &[u8] = unsafe {
        core::slice::from_raw_parts(&args as *const abi::SweepArgs as *const u8, size_of::<abi::SweepArgs>())
    };
    input[..bytes.len()].copy_from_slice(bytes);
    let (r, _) = run(prog, &input, 1, 1)?;
    let off = size_of::<abi::SweepArgs>();
    let raw = &r.frame[off..off + size_of::<abi::SweepOut>()];
    let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Ok(abi::SweepOut {
        seen: word(0),
        expired: word(1),
        tpl_seen: word(2),
        tpl_expired: word(3),
        lblc_expired: word(4),
        early_dropped: word(5),
        half: word(6) as i64,
        held: word(7),
    })
}

pub(crate) fn run(
    prog: &Xdp,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
) -> Result<(RunResult, std::time::Duration), Error> {
    // XDP programs may grow the frame (encapsulation, ICMP): leave room.
    let mut out = vec![0u8; frame.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    // The kernel wants data = 0 and data_end = the frame's length.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: if ifindex > 1 { Some(&ctx) } else { None },
        repeat,
        ..Default::default()
    };
    let res = prog.test_run(opts).ctx(|| "BPF_PROG_TEST_RUN".into())?;
    out.truncate(res.data_size_out as usize);
    Ok((RunResult { action: res.return_value, frame: out }, res.duration))
}
