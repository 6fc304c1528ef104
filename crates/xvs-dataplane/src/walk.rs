//! The connection tables walked in steps (bpf/xvs_lb.bpf.c, "the sweep in steps"): a map
//! element iterator per table, read a bounded number of bytes at a time, one byte per
//! connection visited. Each read resumes where the last stopped, so a pass over millions of
//! connections is spread over seconds, in preemptible reads of a few milliseconds, instead of
//! one walk of most of a second with preemption off.
//!
//! aya 0.14 loads iterator programs but attaches them without a map: the link (with the map in
//! its `iter_info`) and the iterator's file are made here with the `bpf()` system call.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use aya::maps::MapData;
use aya::Ebpf;

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

/// The two connection tables' iterators (IPv4, IPv6).
pub struct ConnWalk {
    tables: [Table; 2],
    buf: Vec<u8>,
}

impl std::fmt::Debug for ConnWalk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnWalk").finish_non_exhaustive()
    }
}

impl ConnWalk {
    /// Loads the iterator programs of `ebpf` and links them to the connection tables. Fails on
    /// a kernel without BTF or map element iterators (Linux 5.9).
    pub(crate) fn load(ebpf: &mut Ebpf, conn4: &MapData, conn6: &MapData) -> Result<ConnWalk, Error> {
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
        Ok(ConnWalk { tables, buf: Vec::new() })
    }

    /// Forgets the passes in progress: the next steps start at the tables' beginnings.
    pub fn restart(&mut self) {
        for t in &mut self.tables {
            t.pass = None;
        }
    }

    /// Visits up to `budget` connections of table `table` (0: IPv4, 1: IPv6), from where the
    /// last step stopped, removing those expired as of the last run of the sweep program
    /// (which writes the packet path's clock for the steps: run it first).
    ///
    /// A pass may miss a connection, or see one twice: a read resumes at its bucket by position,
    /// which moves when entries before it were removed, and a removed entry may be reused at once
    /// by a packet on the same CPU while the walk stands on it. What a pass misses, the next one
    /// visits (an expiry at most one pass late); nothing is removed that has not expired.
    pub fn step(&mut self, table: usize, budget: usize) -> Result<WalkStep, Error> {
        let t = &mut self.tables[table];
        if t.pass.is_none() {
            t.pass =
                Some(iter_create(t.link.as_raw_fd()).map_err(|e| Error::Unsupported(format!("bpf_iter_create: {e}")))?);
        }
        let Some(pass) = t.pass.as_mut() else { unreachable!() };
        self.buf.resize(budget.clamp(1, READ_MAX), 0);
        let mut step = WalkStep::default();
        let mut want = budget.max(1);
        while want > 0 {
            let n = want.min(self.buf.len());
            // Each read is one run of the iterator over at most n connections.
            let got = match pass.read(&mut self.buf[..n]) {
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
            step.expired += self.buf[..got].iter().filter(|&&b| b == 1).count() as u64;
            want -= got;
        }
        Ok(step)
    }
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
