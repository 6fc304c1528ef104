//! The helper programs: the real servers' decapsulation program (`bpf/xvs_decap.bpf.c`) and the
//! pass and bare-forwarder programs of labs and benchmarks (`bpf/xvs_aux.bpf.c`).

use std::net::IpAddr;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::error::{Context, Error};
use crate::publish::addr_words;

static XVS_DECAP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xvs_decap.o"));
static XVS_AUX: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xvs_aux.o"));

fn load(bytes: &[u8], what: &str) -> Result<Ebpf, Error> {
    EbpfLoader::new().load(bytes).ctx(|| format!("load {what}"))
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, Error> {
    let p: Result<&mut Xdp, aya::programs::ProgramError> =
        ebpf.program_mut(name).ok_or_else(|| Error::Unsupported(format!("no program {name}")))?.try_into();
    p.ctx(|| format!("program {name} is not XDP"))
}

fn attach(prog: &mut Xdp, ifname: &str, native: bool) -> Result<XdpMode, Error> {
    if native && prog.attach(ifname, XdpMode::Driver).is_ok() {
        return Ok(XdpMode::Driver);
    }
    prog.attach(ifname, XdpMode::Skb).ctx(|| format!("attach to {ifname}"))?;
    Ok(XdpMode::Skb)
}

/// The real-server decapsulation program. Attach it to the interface the tunnel arrives on and
/// allow the VIPs the server holds; it stays attached while this value lives.
pub struct Decap {
    ebpf: Ebpf,
    vips: HashMap<MapData, [u32; 4], u8>,
    ports: HashMap<MapData, u16, u8>,
}

impl Decap {
    /// Loads and verifies the program.
    pub fn load() -> Result<Decap, Error> {
        let mut ebpf = load(XVS_DECAP, "the decapsulation program (bpf/xvs_decap.bpf.c)")?;
        xdp(&mut ebpf, "xvs_decap")?.load().ctx(|| "verify xvs_decap".into())?;
        let map = ebpf.take_map("xvs_decap_vips").ok_or_else(|| Error::Unsupported("no map xvs_decap_vips".into()))?;
        let vips: Result<HashMap<MapData, [u32; 4], u8>, aya::maps::MapError> = map.try_into();
        let vips = vips.ctx(|| "open xvs_decap_vips".into())?;
        let map =
            ebpf.take_map("xvs_decap_ports").ok_or_else(|| Error::Unsupported("no map xvs_decap_ports".into()))?;
        let ports: Result<HashMap<MapData, u16, u8>, aya::maps::MapError> = map.try_into();
        let ports = ports.ctx(|| "open xvs_decap_ports".into())?;
        Ok(Decap { ebpf, vips, ports })
    }

    /// Takes GUE on UDP port `port` (the real servers' `--tun-port`).
    pub fn allow_gue_port(&mut self, port: u16) -> Result<(), Error> {
        self.ports.insert(port.to_be(), 1, 0).ctx(|| format!("allow GUE port {port}"))
    }

    /// Packets decapsulated and packets passed untouched, since it was loaded.
    pub fn counts(&self) -> Result<(u64, u64), Error> {
        let map =
            self.ebpf.map("xvs_decap_stats").ok_or_else(|| Error::Unsupported("no map xvs_decap_stats".into()))?;
        let arr: Result<aya::maps::PerCpuArray<&MapData, u64>, aya::maps::MapError> = map.try_into();
        let arr = arr.ctx(|| "open xvs_decap_stats".into())?;
        let sum =
            |i: u32| -> Result<u64, Error> { Ok(arr.get(&i, 0).ctx(|| "read xvs_decap_stats".into())?.iter().sum()) };
        Ok((sum(0)?, sum(1)?))
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN), for tests.
    pub fn run(&mut self, frame: &[u8]) -> Result<crate::RunResult, Error> {
        Ok(crate::director::run(xdp(&mut self.ebpf, "xvs_decap")?, frame, 1, 1)?.0)
    }

    /// Lets tunnel packets for `vip` through.
    pub fn allow(&mut self, vip: IpAddr) -> Result<(), Error> {
        self.vips.insert(addr_words(&vip), 1, 0).ctx(|| format!("allow {vip}"))
    }

    /// Attaches to `ifname` (native mode when the driver has it).
    pub fn attach(&mut self, ifname: &str) -> Result<XdpMode, Error> {
        attach(xdp(&mut self.ebpf, "xvs_decap")?, ifname, true)
    }
}

/// The pass program (and the bare forwarder of the benchmark).
pub struct Aux {
    ebpf: Ebpf,
}

/// Where the bare forwarder sends frames.
#[derive(Copy, Clone, Debug, Default)]
#[repr(C)]
pub struct BareCfg {
    /// Destination MAC.
    pub dmac: [u8; 6],
    /// Source MAC.
    pub smac: [u8; 6],
    /// Egress interface, 0 for XDP_TX.
    pub ifindex: u32,
}

// SAFETY: a #[repr(C)] struct of byte arrays and a u32 with no padding (16 bytes).
unsafe impl aya::Pod for BareCfg {}
const _: () = assert!(core::mem::size_of::<BareCfg>() == 16);

impl Aux {
    /// Loads and verifies the helper programs.
    pub fn load() -> Result<Aux, Error> {
        let mut ebpf = load(XVS_AUX, "the helper programs (bpf/xvs_aux.bpf.c)")?;
        for name in ["xvs_pass", "xvs_bare", "xvs_gen", "xvs_sink"] {
            xdp(&mut ebpf, name)?.load().ctx(|| format!("verify {name}"))?;
        }
        Ok(Aux { ebpf })
    }

    /// Attaches the pass program to `ifname` in native mode: a veth peer needs one so that
    /// frames redirected into the veth are delivered (lab-notes.md).
    pub fn attach_pass(&mut self, ifname: &str) -> Result<XdpMode, Error> {
        attach(xdp(&mut self.ebpf, "xvs_pass")?, ifname, true)
    }

    /// Configures and attaches the bare forwarder to `ifname`.
    pub fn attach_bare(&mut self, ifname: &str, cfg: BareCfg) -> Result<XdpMode, Error> {
        let map = self.ebpf.map_mut("xvs_bare_cfg").ok_or_else(|| Error::Unsupported("no map xvs_bare_cfg".into()))?;
        let arr: Result<Array<&mut MapData, BareCfg>, aya::maps::MapError> = map.try_into();
        arr.ctx(|| "open xvs_bare_cfg".into())?.set(0, cfg, 0).ctx(|| "write xvs_bare_cfg".into())?;
        attach(xdp(&mut self.ebpf, "xvs_bare")?, ifname, true)
    }

    /// Attaches the sink (counts frames and drops them) to `ifname`.
    pub fn attach_sink(&mut self, ifname: &str) -> Result<XdpMode, Error> {
        attach(xdp(&mut self.ebpf, "xvs_sink")?, ifname, true)
    }

    /// Frames the sink has counted, over all CPUs.
    pub fn sink_count(&self) -> Result<u64, Error> {
        let map = self.ebpf.map("xvs_sink_count").ok_or_else(|| Error::Unsupported("no map xvs_sink_count".into()))?;
        let arr: Result<aya::maps::PerCpuArray<&MapData, u64>, aya::maps::MapError> = map.try_into();
        let values = arr.ctx(|| "open xvs_sink_count".into())?.get(&0, 0).ctx(|| "read xvs_sink_count".into())?;
        Ok(values.iter().sum())
    }

    /// Sets the generator's frame: an IPv4 TCP packet without options, 54 bytes.
    pub fn set_gen_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
        let f: [u8; 56] = {
            let mut b = [0u8; 56];
            if frame.len() != 54 {
                return Err(Error::Unsupported(format!("the generator sends 54-byte frames, not {}", frame.len())));
            }
            b[..54].copy_from_slice(frame);
            b
        };
        let map =
            self.ebpf.map_mut("xvs_gen_frame").ok_or_else(|| Error::Unsupported("no map xvs_gen_frame".into()))?;
        let arr: Result<Array<&mut MapData, [u8; 56]>, aya::maps::MapError> = map.try_into();
        arr.ctx(|| "open xvs_gen_frame".into())?.set(0, f, 0).ctx(|| "write xvs_gen_frame".into())
    }

    /// Sends the frame set with [`Aux::set_gen_frame`] (`frame` gives its length) out of
    /// interface `ifindex` (of the calling thread's namespace) `count` times with live-frame
    /// BPF_PROG_RUN, and returns how long it took.
    pub fn generate(&self, frame: &[u8], ifindex: u32, count: u32) -> Result<std::time::Duration, Error> {
        let p: Result<&Xdp, aya::programs::ProgramError> =
            self.ebpf.program("xvs_gen").ok_or_else(|| Error::Unsupported("no program xvs_gen".into()))?.try_into();
        let prog = p.ctx(|| "xvs_gen is not XDP".into())?;
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let opts = aya::programs::TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: count,
            attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        };
        let start = std::time::Instant::now();
        aya::programs::TestRun::test_run(prog, opts).ctx(|| "live-frames BPF_PROG_RUN".into())?;
        Ok(start.elapsed())
    }

    /// Runs helper program `name` (`xvs_pass`, an empty program: the yardstick's floor) on
    /// `frame`.
    pub fn test_run(&self, name: &str, frame: &[u8]) -> Result<crate::RunResult, Error> {
        let p: Result<&Xdp, aya::programs::ProgramError> =
            self.ebpf.program(name).ok_or_else(|| Error::Unsupported(format!("no program {name}")))?.try_into();
        crate::director::run(p.ctx(|| format!("{name} is not XDP"))?, frame, 1, 1).map(|(r, _)| r)
    }

    /// The kernel's run statistics of helper program `name`: total run time (ns) and run
    /// count, kept while BPF statistics are enabled (`aya::sys::enable_stats`).
    pub fn run_stats(&self, name: &str) -> Result<(u64, u64), Error> {
        let p = self.ebpf.program(name).ok_or_else(|| Error::Unsupported(format!("no program {name}")))?;
        let info = p.info().ctx(|| format!("read {name}'s info"))?;
        Ok((info.run_time().as_nanos() as u64, info.run_count()))
    }

    /// Runs the bare forwarder once on `frame` (the benchmark's floor).
    pub fn bare_test_run(&self, frame: &[u8], repeat: u32) -> Result<(crate::RunResult, std::time::Duration), Error> {
        let p: Result<&Xdp, aya::programs::ProgramError> =
            self.ebpf.program("xvs_bare").ok_or_else(|| Error::Unsupported("no program xvs_bare".into()))?.try_into();
        crate::director::run(p.ctx(|| "xvs_bare is not XDP".into())?, frame, 1, repeat)
    }
}
