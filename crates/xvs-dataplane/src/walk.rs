//! The connection tables walked in steps (bpf/xvs_lb.bpf.c, "the sweep in steps"): a map
//! element iterator per table, read a bounded number of bytes at a time, one byte per
//! connection visited. Each read resumes where the last stopped, so a pass over millions of
//! connections is spread over seconds, in preemptible reads of a few milliseconds, instead of
//! one walk of most of a second with preemption off.
//!
//! aya 0.14 loads iterator programs but attaches them without a map: the link (with the map in
//! its `iter_info`) and the iterator's file are made here with the `bpf()` system call.
//!
//! Where the kernel refuses iterator programs (some lockdown or LSM policies answer EPERM to
//! any), the same steps are taken with batch reads: a slice of the table's buckets is read
//! (`BPF_MAP_LOOKUP_BATCH`, resumed at the bucket the last read stopped before), and the keys of
//! the connections that may have expired go to `xvs_sweep_keys`, which expires them as the
//! iterator would.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use aya::maps::MapData;
use aya::programs::Xdp;
use aya::Ebpf;
use xvs_abi as abi;

use crate::error::Error;

/// Connections one read visits at most: below the kernel's buffer of the iterator's output
/// (8 pages), so a read ends when it has what it asked for, never on a full buffer (which
/// would visit the next connection twice, the first visit's byte lost).
const READ_MAX: usize = 16 << 10;

/// What one step of a walk did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct WalkStep {
    /// Connections visited.
    pub seen: u64,
    /// Connections this step removed (expired), with their accounting.
    pub expired: u64,
    /// The step reached the end of the table: the next one starts a new pass.
    pub finished: bool,
}

/// One table's iterator: its link, and the pass in progress.
struct Table {
    link: OwnedFd,
    pass: Option<File>,
}

/// How the two connection tables (IPv4, IPv6) are walked.
enum Walker {
    /// Their iterators.
    Iter { tables: [Table; 2], buf: Vec<u8> },
    /// Batch reads, the keys expired by `xvs_sweep_keys`.
    Batch(Box<BatchWalk>),
}

/// The walk by batch reads: the tables, the program that expires keys, the packet path's clock
/// as the sweep program last wrote it and the timeouts (to hand over only the connections
/// that may have expired), the bucket each table's pass resumes at (`None`: a new pass), and
/// why the iterators are not used.
struct BatchWalk {
    maps: [MapData; 2],
    prog: Xdp,
    clock: aya::maps::Array<MapData, u32>,
    config: aya::maps::Array<MapData, abi::Cfg>,
    next: [Option<u32>; 2],
    why: String,
}

/// The two connection tables' stepwise walk.
pub struct ConnWalk {
    walker: Walker,
}

impl std::fmt::Debug for ConnWalk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnWalk").finish_non_exhaustive()
    }
}

impl ConnWalk {
    /// Loads the iterator programs of `ebpf` and links them to the connection tables; where
    /// that fails (a kernel without BTF or map element iterators, before Linux 5.9, or one that
    /// refuses iterator programs), or with `batch`, walks by batch reads and `xvs_sweep_keys`,
    /// both tried once first. Fails when neither can be had.
    pub(crate) fn load(
        ebpf: &mut Ebpf,
        conn4: &MapData,
        conn6: &MapData,
        config: &MapData,
        batch: bool,
    ) -> Result<ConnWalk, Error> {
        let why = if batch {
            "asked for (LoadOptions::batch_walk)".to_string()
        } else {
            match Self::load_iter(ebpf, conn4, conn6) {
                Ok(w) => return Ok(w),
                Err(e) => e.to_string(),
            }
        };
        Self::load_batch(ebpf, [conn4, conn6], config, why.clone())
            .map_err(|e| Error::Unsupported(format!("{why}; and no batch walk either: {e}")))
    }

    fn load_batch(ebpf: &mut Ebpf, conns: [&MapData; 2], config: &MapData, why: String) -> Result<ConnWalk, Error> {
        let unsupported = |what: &str, e: &dyn std::fmt::Display| Error::Unsupported(format!("{what}: {e}"));
        let name = "xvs_sweep_keys";
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or_else(|| Error::Unsupported(format!("the director object has no program {name}")))?
            .try_into()
            .map_err(|e| unsupported(name, &e))?;
        prog.load().map_err(|e| unsupported(&format!("verify {name}"), &e))?;
        // Handles of its own: the walk runs without the director's lock.
        let info = prog.info().map_err(|e| unsupported(name, &e))?;
        let prog = Xdp::from_program_info(info, name.into(), aya_obj::programs::XdpAttachType::Interface)
            .map_err(|e| unsupported(&format!("open {name} again"), &e))?;
        let dup = |m: &MapData| -> Result<MapData, Error> {
            let fd = m.fd().as_fd().try_clone_to_owned().map_err(|e| unsupported("dup", &e))?;
            MapData::from_fd(fd).map_err(|e| unsupported("open a map again", &e))
        };
        let clock = ebpf.map("xvs_walk_clock").ok_or_else(|| Error::Unsupported("no map xvs_walk_clock".into()))?;
        let clock = match clock {
            aya::maps::Map::Array(m) => dup(m)?,
            _ => return Err(Error::Unsupported("xvs_walk_clock is not an array".into())),
        };
        let walk = BatchWalk {
            maps: [dup(conns[0])?, dup(conns[1])?],
            prog,
            clock: aya::maps::Array::try_from(aya::maps::Map::Array(clock))
                .map_err(|e| unsupported("xvs_walk_clock", &e))?,
            config: aya::maps::Array::try_from(aya::maps::Map::Array(dup(config)?))
                .map_err(|e| unsupported("xvs_config", &e))?,
            next: [None; 2],
            why,
        };
        // Tried once: a batch read, and a run of the program with a record it ignores.
        let mut probe: Vec<(abi::Conn4Key, abi::Conn)> = Vec::new();
        crate::batch::read_hash_from(&walk.maps[0], None, 1, &mut probe)
            .map_err(|e| unsupported("a batch read", &e))?;
        walk.expire(&[abi::SweepKey::default()])?;
        Ok(ConnWalk { walker: Walker::Batch(Box::new(walk)) })
    }

    /// Why the tables are walked by batch reads rather than by their iterators, if they are.
    pub fn batch_reason(&self) -> Option<&str> {
        match &self.walker {
            Walker::Iter { .. } => None,
            Walker::Batch(b) => Some(&b.why),
        }
    }

    fn load_iter(ebpf: &mut Ebpf, conn4: &MapData, conn6: &MapData) -> Result<ConnWalk, Error> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| Error::Unsupported(format!("the kernel's BTF: {e}")))?;
        let mut link = |name: &str, map: &MapData| -> Result<Table, Error> {
            let prog: &mut aya::programs::Iter = ebpf
                .program_mut(name)
                .ok_or_else(|| Error::Unsupported(format!("the director object has no program {name}")))?
                .try_into()
                .map_err(|e| Error::Unsupported(format!("program {name} is not an iterator: {e}")))?;
            prog.load("bpf_map_elem", &btf).map_err(|e| Error::Unsupported(format!("verify {name}: {e:?}")))?;
            let fd = prog.fd().map_err(|e| Error::Unsupported(format!("{name}: {e}")))?;
            let link = link_create(fd.as_fd().as_raw_fd(), map.fd().as_fd().as_raw_fd())
                .map_err(|e| Error::Unsupported(format!("link {name} to its table: {e}")))?;
            Ok(Table { link, pass: None })
        };
        let tables = [link("xvs_sweep_iter4", conn4)?, link("xvs_sweep_iter6", conn6)?];
        Ok(ConnWalk { walker: Walker::Iter { tables, buf: Vec::new() } })
    }

    /// Forgets the passes in progress: the next steps start at the tables' beginnings.
    pub fn restart(&mut self) {
        match &mut self.walker {
            Walker::Iter { tables, .. } => {
                for t in tables {
                    t.pass = None;
                }
            }
            Walker::Batch(b) => b.next = [None; 2],
        }
    }

    /// Visits up to `budget` connections of table `table` (0: IPv4, 1: IPv6), from where the
    /// last step stopped, removing those expired as of the last run of the sweep program
    /// (which writes the packet path's clock for the steps: run it first).
    ///
    /// With iterators, a pass may miss a connection, or see one twice: a read resumes in its
    /// bucket by position, which moves when entries before it were removed, and a removed entry
    /// may be reused at once (by a packet on any CPU) while the walk stands on it. Batch reads
    /// resume at a bucket, which does not move. What a pass misses, the next one
    /// visits (an expiry at most one pass late); nothing is removed that has not expired.
    pub fn step(&mut self, table: usize, budget: usize) -> Result<WalkStep, Error> {
        let (tables, buf) = match &mut self.walker {
            Walker::Iter { tables, buf } => (tables, buf),
            Walker::Batch(b) => return b.step(table, budget),
        };
        let t = &mut tables[table];
        if t.pass.is_none() {
            t.pass =
                Some(iter_create(t.link.as_raw_fd()).map_err(|e| Error::Unsupported(format!("bpf_iter_create: {e}")))?);
        }
        let Some(pass) = t.pass.as_mut() else { unreachable!() };
        buf.resize(budget.clamp(1, READ_MAX), 0);
        let mut step = WalkStep::default();
        let mut want = budget.max(1);
        while want > 0 {
            let n = want.min(buf.len());
            // Each read is one run of the iterator over at most n connections.
            let got = match pass.read(&mut buf[..n]) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    t.pass = None; // a new pass next time
                    return Err(Error::Unsupported(format!("read the connection table's iterator: {e}")));
                }
            };
            if got == 0 {
                step.finished = true;
                t.pass = None;
                break;
            }
            step.seen += got as u64;
            step.expired += buf[..got].iter().filter(|&&b| b == 1).count() as u64;
            want -= got;
        }
        Ok(step)
    }
}

impl BatchWalk {
    /// One step of table `table` (0: IPv4, 1: IPv6): about `budget` connections read from where
    /// the last step stopped; those idle about as long as their state's timeout or longer go
    /// through `xvs_sweep_keys`, which expires them if they have.
    fn step(&mut self, table: usize, budget: usize) -> Result<WalkStep, Error> {
        let read = |e: aya::maps::MapError| Error::Unsupported(format!("read the connection table in batches: {e}"));
        // The clock the sweep program wrote before this step, and the timeouts it uses.
        let now = self.clock.get(&0, 0).map_err(read)?;
        let cfg = self.config.get(&0, 0).map_err(read)?;
        // An age of more than 0xF0000000 ms is a "last seen" written after the clock (age_ms).
        // SCTP states time out by a table of the program's own: always handed over.
        let due = |c: &abi::Conn| {
            let age = now.wrapping_sub(c.seen);
            let age = if age > 0xF000_0000 { 0 } else { age };
            usize::from(c.state) >= cfg.timeout_ms.len()
                || age >= cfg.timeout_ms[usize::from(c.state)].saturating_sub(1000)
        };
        let (map, next) = (&self.maps[table], self.next[table]);
        let mut keys: Vec<abi::SweepKey> = Vec::new();
        let (seen, resume) = if table == 0 {
            let mut out: Vec<(abi::Conn4Key, abi::Conn)> = Vec::new();
            let r = crate::batch::read_hash_from(map, next, budget, &mut out).map_err(read)?;
            keys.extend(out.iter().filter(|(_, c)| due(c)).map(|(k, _)| sweep_key(abi::AF_INET, k)));
            (out.len(), r)
        } else {
            let mut out: Vec<(abi::Conn6Key, abi::Conn)> = Vec::new();
            let r = crate::batch::read_hash_from(map, next, budget, &mut out).map_err(read)?;
            keys.extend(out.iter().filter(|(_, c)| due(c)).map(|(k, _)| sweep_key(abi::AF_INET6, k)));
            (out.len(), r)
        };
        let expired = self.expire(&keys)?;
        self.next[table] = resume;
        Ok(WalkStep { seen: seen as u64, expired, finished: resume.is_none() })
    }

    /// Runs `keys` through `xvs_sweep_keys`; how many it removed.
    fn expire(&self, keys: &[abi::SweepKey]) -> Result<u64, Error> {
        let n = std::mem::size_of::<abi::SweepKey>();
        let at = std::mem::offset_of!(abi::SweepKey, result);
        let mut expired = 0;
        for chunk in keys.chunks(abi::SWEEP_KEYS_MAX) {
            // SAFETY: SweepKey is plain old data (xvs-abi), without padding.
            let input: &[u8] =
                unsafe { std::slice::from_raw_parts(chunk.as_ptr().cast::<u8>(), std::mem::size_of_val(chunk)) };
            let (r, _) = crate::director::run(&self.prog, input, 1, 1)?;
            if r.action != crate::action::PASS {
                return Err(Error::Unsupported(format!("xvs_sweep_keys answered {}", r.action)));
            }
            expired += (0..chunk.len()).filter(|i| r.frame.get(i * n + at) == Some(&1)).count() as u64;
        }
        Ok(expired)
    }
}

/// The key sweep program's record of connection key `k`.
fn sweep_key<K: aya::Pod>(af: u8, k: &K) -> abi::SweepKey {
    let mut rec = abi::SweepKey { af, ..abi::SweepKey::default() };
    let size = std::mem::size_of::<K>().min(std::mem::size_of_val(&rec.key));
    // SAFETY: `K` is plain old data of `size` bytes, no more than `rec.key` holds.
    unsafe { std::ptr::copy_nonoverlapping((k as *const K).cast::<u8>(), rec.key.as_mut_ptr().cast::<u8>(), size) };
    rec
}

/// `union bpf_attr`'s `link_create` member.
type LinkAttr = aya_obj::generated::bpf_attr__bindgen_ty_14;

fn sys_bpf<T>(cmd: aya_obj::generated::bpf_cmd, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is an initialised prefix of `union bpf_attr` of the size given, and every
    // pointer it holds points at memory alive for the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint)
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both commands used here return a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// BPF_LINK_CREATE of iterator program `prog` over map `map` (`union bpf_iter_link_info`'s
/// `map.map_fd`, the only member xvs needs).
fn link_create(prog: i32, map: i32) -> std::io::Result<OwnedFd> {
    let info: [u32; 1] = [map as u32];
    // SAFETY: an all-zero `bpf_attr` member is valid (plain integers and unions of them).
    let mut attr: LinkAttr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_1.prog_fd = prog as u32;
    attr.attach_type = aya_obj::generated::bpf_attach_type::BPF_TRACE_ITER as u32;
    attr.__bindgen_anon_3.__bindgen_anon_1.iter_info = info.as_ptr() as u64;
    attr.__bindgen_anon_3.__bindgen_anon_1.iter_info_len = std::mem::size_of_val(&info) as u32;
    sys_bpf(aya_obj::generated::bpf_cmd::BPF_LINK_CREATE, &mut attr)
}

/// BPF_ITER_CREATE: a new pass of the iterator linked by `link`, as a file to read.
fn iter_create(link: i32) -> std::io::Result<File> {
    // SAFETY: as above.
    let mut attr: aya_obj::generated::bpf_attr__bindgen_ty_18 = unsafe { std::mem::zeroed() };
    attr.link_fd = link as u32;
    sys_bpf(aya_obj::generated::bpf_cmd::BPF_ITER_CREATE, &mut attr).map(File::from)
}
