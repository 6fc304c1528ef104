//! Katran's XDP balancer (third_party/katran, built by build.rs) as a peer in the yardstick:
//! loaded with aya beside xvs, its maps filled for one VIP and the lab's real servers the way
//! Katran's own control plane fills them — the VIP, the real servers (indexes from 1), a
//! Maglev ring of 65537 slots, the next hop's MAC, and one LRU per CPU — and run with the
//! same frames.
//!
//! Katran encapsulates in IP-in-IP and sends the packet back out of the interface it came in
//! on (`XDP_TX`) to the next hop; its new flows always take the Maglev ring, its established
//! flows its per-CPU LRU.

use std::net::{Ipv4Addr, SocketAddrV4};

use aya::maps::{Array, ArrayOfMaps, HashMap, MapData};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader, Pod};

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/katran.o"));

/// Slots of a Maglev ring (Katran's `RING_SIZE`).
const RING: u32 = 65537;

/// `struct vip_definition`: the address (IPv4 in the first four bytes), the port in network
/// order, the protocol.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct VipDefinition {
    addr: [u8; 16],
    port: u16,
    proto: u8,
    pad: u8,
}

/// `struct vip_meta`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct VipMeta {
    flags: u32,
    vip_num: u32,
}

/// `struct real_definition`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RealDefinition {
    addr: [u8; 16],
    flags: u8,
    pad: [u8; 3],
}

/// `struct ctl_value`: a MAC in its first six bytes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CtlValue {
    mac: [u8; 6],
    pad: [u8; 2],
}

// SAFETY: plain `repr(C)` records of integers and byte arrays, without padding the kernel
// would read uninitialised (every padding byte is an explicit field).
unsafe impl Pod for VipDefinition {}
// SAFETY: as above.
unsafe impl Pod for VipMeta {}
// SAFETY: as above.
unsafe impl Pod for RealDefinition {}
// SAFETY: as above.
unsafe impl Pod for CtlValue {}

/// MurmurHash3's x64 finaliser mixing of two 64-bit words (what Katran's Maglev uses to place
/// a real server's permutation).
fn murmur64(a: u64, b: u64, seed: u64) -> u64 {
    let (c1, c2) = (0x87c3_7b91_1142_53d5u64, 0x4cf5_ad43_2745_937fu64);
    let (mut h1, mut h2) = (seed, seed);
    h1 ^= a.wrapping_mul(c1).rotate_left(31).wrapping_mul(c2);
    h1 = h1.rotate_left(27).wrapping_add(h2).wrapping_mul(5).wrapping_add(0x52dc_e729);
    h2 ^= b.wrapping_mul(c2).rotate_left(33).wrapping_mul(c1);
    h2 = h2.rotate_left(31).wrapping_add(h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    h1 ^= 16;
    h2 ^= 16;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    let fmix = |mut k: u64| {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    };
    fmix(h1).wrapping_add(fmix(h2))
}

/// A Maglev ring of [`RING`] slots over real servers `1..=n` of equal weight: each takes the
/// next free slot of its own permutation in turn (the Maglev paper's table, as Katran builds
/// it), until every slot is taken.
fn maglev(n: u32) -> Vec<u32> {
    let ring = u64::from(RING);
    let perms: Vec<(u64, u64)> = (1..=n)
        .map(|i| {
            let h = murmur64(u64::from(i), 0x9e37_79b9_7f4a_7c15, 0);
            (murmur64(h, 42, 0) % ring, murmur64(h, 2_718_281_828, 2307) % (ring - 1) + 1)
        })
        .collect();
    let mut slots = vec![0u32; RING as usize];
    let mut next = vec![0u64; n as usize];
    let mut filled = 0;
    while filled < RING {
        for (i, (offset, skip)) in perms.iter().enumerate() {
            let mut cur = (offset + next[i] * skip) % ring;
            while slots[cur as usize] != 0 {
                next[i] += 1;
                cur = (offset + next[i] * skip) % ring;
            }
            slots[cur as usize] = i as u32 + 1;
            next[i] += 1;
            filled += 1;
            if filled == RING {
                break;
            }
        }
    }
    slots
}

/// Katran, loaded and configured.
pub struct Katran {
    ebpf: Ebpf,
    /// The per-CPU LRU tables (the kernel holds them through `lru_mapping`; kept for clarity).
    _lrus: Vec<MapData>,
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map, String> {
    ebpf.map_mut(name).ok_or_else(|| format!("Katran has no map {name}"))
}

impl Katran {
    /// Loads Katran with one TCP VIP `vip`, `reals` behind it, and `next_hop` (the MAC its
    /// encapsulated packets go to), in the calling thread's namespace.
    pub fn load(vip: SocketAddrV4, reals: &[Ipv4Addr], next_hop: [u8; 6]) -> Result<Katran, String> {
        let mut ebpf = EbpfLoader::new()
            // One VIP's ring, not 512 (128 MiB), and no QUIC server ids (64 MiB).
            .map_max_entries("ch_rings", RING)
            .map_max_entries("server_id_map", 1)
            .load(OBJECT)
            .map_err(|e| format!("load Katran: {e}"))?;
        {
            let p: &mut Xdp = ebpf
                .program_mut("balancer_ingress")
                .ok_or("Katran has no balancer_ingress")?
                .try_into()
                .map_err(|e| format!("balancer_ingress: {e}"))?;
            p.load().map_err(|e| format!("verify Katran: {e}"))?;
        }
        let mut key = VipDefinition { port: vip.port().to_be(), proto: 6, ..Default::default() };
        key.addr[..4].copy_from_slice(&vip.ip().octets());
        let mut vips: HashMap<_, VipDefinition, VipMeta> =
            HashMap::try_from(map(&mut ebpf, "vip_map")?).map_err(|e| e.to_string())?;
        vips.insert(key, VipMeta { flags: 0, vip_num: 0 }, 0).map_err(|e| format!("vip_map: {e}"))?;
        let mut table: Array<_, RealDefinition> =
            Array::try_from(map(&mut ebpf, "reals")?).map_err(|e| e.to_string())?;
        for (i, r) in reals.iter().enumerate() {
            let mut d = RealDefinition::default();
            d.addr[..4].copy_from_slice(&r.octets());
            table.set(i as u32 + 1, d, 0).map_err(|e| format!("reals: {e}"))?;
        }
        let mut rings: Array<_, u32> = Array::try_from(map(&mut ebpf, "ch_rings")?).map_err(|e| e.to_string())?;
        for (slot, real) in maglev(reals.len() as u32).into_iter().enumerate() {
            rings.set(slot as u32, real, 0).map_err(|e| format!("ch_rings: {e}"))?;
        }
        let mut ctl: Array<_, CtlValue> = Array::try_from(map(&mut ebpf, "ctl_array")?).map_err(|e| e.to_string())?;
        ctl.set(0, CtlValue { mac: next_hop, pad: [0; 2] }, 0).map_err(|e| format!("ctl_array: {e}"))?;
        // One LRU per CPU, as Katran's control plane makes them (without them every CPU
        // shares a 1000-entry fallback table).
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e.to_string())?;
        let mut lrus = Vec::new();
        let mut outer: ArrayOfMaps<_, MapData> =
            ArrayOfMaps::try_from(map(&mut ebpf, "lru_mapping")?).map_err(|e| e.to_string())?;
        for cpu in 0..cpus as u32 {
            // BPF_MAP_TYPE_LRU_HASH, struct flow_key (40 bytes) → struct real_pos_lru (16).
            let def = aya_obj::Map::new_from_params(9, 40, 16, 1_000_000, 0);
            let m = MapData::create(def, &format!("katran_lru{cpu}"), None).map_err(|e| format!("LRU: {e}"))?;
            outer.set(cpu, &m, 0).map_err(|e| format!("lru_mapping: {e}"))?;
            lrus.push(m);
        }
        Ok(Katran { ebpf, _lrus: lrus })
    }

    fn prog(&self) -> Result<&Xdp, String> {
        self.ebpf
            .program("balancer_ingress")
            .ok_or("Katran has no balancer_ingress")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())
    }

    /// Runs the program once on `frame`; its action.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, String> {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat: 1, ..Default::default() };
        self.prog()?.test_run(opts).map(|r| r.return_value).map_err(|e| format!("Katran test run: {e}"))
    }

    /// The kernel's run statistics of the program: total run time (ns) and run count.
    pub fn run_stats(&self) -> Result<(u64, u64), String> {
        let info = self.prog()?.info().map_err(|e| e.to_string())?;
        Ok((info.run_time().as_nanos() as u64, info.run_count()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_full_and_even() {
        let ring = maglev(4);
        let mut counts = [0u32; 5];
        for r in &ring {
            counts[*r as usize] += 1;
        }
        assert_eq!(counts[0], 0, "no empty slot");
        for c in &counts[1..] {
            assert!((16_380..=16_390).contains(c), "{counts:?}");
        }
        assert!(maglev(1).iter().all(|r| *r == 1));
    }
}
